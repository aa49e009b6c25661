"""MFMB-Net: a Multi-Focus-driven Multi-Branch network (Tao, Li, Zang, Gao, AAAI 2025), as a fixed space.

The model follows the paper's Methodology section (Figure 2):

1. **Unimodal encoders** (eq. 1): ``h_m = W_m X'_m + b_m`` per modality (:class:`MFMBNetwork`).
2. **Alignment** (eq. 2): the hybrid parallel attention :class:`HPA`, self-attention within each
   modality, then cross-attention from each modality to every other one, in parallel.
3. **Macro fusion** (eqs. 3-7, :class:`MacroFusion`): a Transformer per modality (eq. 3), then a
   coarse hub ``H_ker`` of ``k`` learnable tokens concatenated in turn with the visual, audio and
   text sequences and passed through one Transformer per stage (eqs. 4-6); the last hub is
   ``H_f`` (eq. 7).
4. **Micro fusion** (eqs. 8-13): per modality a BiLSTM + tanh and a memory-gated network
   (Conv1d + FFN, element-wise product; :class:`MemoryGate`), then the text-guided coarse-to-fine
   module for the text-visual and text-audio pairs (stack, rearrange, BatchNorm, two-layer MLP;
   :class:`CoarseToFine`); the pair outputs concatenated are ``H_fusion``.
5. **Reconstruction** (eqs. 14-15, :class:`Reconstruction`): per modality self-attention then a
   two-layer FFN mapping ``H_m`` back to the input features ``X_m``.
6. **Prediction** (eq. 16): ``H = H_f + H_fusion`` into one linear layer (:class:`TaskHead`).
7. **Objective** (eqs. 17-19): the trainer's task loss plus ``sum_m alpha_m L_gen^m``, with
   ``L_gen^m`` the SmoothL1 loss between the reconstruction and the complete features at the
   positions where modality ``m`` is missing (eq. 18); aux losses ``gen_{m}`` with weights
   ``alpha_m``, computed in training only.

The paper works on MSA samples whose rows are word / frame steps. In nasmerc the rows are the
utterances of a conversation (dialogue-level tasks) or the frames of one sample (utterance-level
tasks); every sequence operation of the paper runs over these rows. The hub is therefore one per
conversation: ``H_f`` (the mean of the ``k`` hub tokens) is the conversation's global summary and
is added to every utterance's local ``H_fusion`` row (eq. 16 per row). For utterance-level tasks
the head's mean over the frames gives ``H_f + mean(H_fusion)``, the paper's setting.

Modalities. The *guide* (``guide_modality``, text in the paper; the signature's first modality
when it has no text) leads the micro fusion and closes the hub's flow. The hub visits the other
modalities first, visual before audio before any other in signature order, then the guide: with
text + audio only it goes audio -> text; with audio + visual (no text) and audio listed first,
visual -> audio. The micro fusion has one coarse-to-fine pair (guide, q) per other modality q,
each of width ``hidden_dim / n_pairs`` so that ``H_fusion`` has the hub's width; a single-modality
signature runs the coarse-to-fine module on the guide alone.

Choices where the paper is silent (each also documented where it is made):

- eq. 1 is linear as written (no activation), followed by dropout. HPA: pre-norm residual
  self-attention, then the mean of the cross-attentions to the other modalities added as a second
  residual (``nasmerc.modules.AttentionOp``, multi-head with learned projections); no FFN.
- The Transformers of eqs. 3-6 are pre-norm Transformer layers (``MetaFormerBlock`` with
  multi-head self-attention). The hub starts as learned tokens (``N(0, 0.02^2)``); ``H_f`` is the
  mean over its ``k`` tokens.
- The micro stream reads the aligned ``H_m`` (both streams are parallel branches after the
  alignment). The gate of eq. 10 is the FFN output as written (no sigmoid). The rearrangement
  ``phi`` of eq. 12 puts the stacked sources on the channel axis; BatchNorm normalises each source
  over the real rows and features; eq. 13 then runs on the flattened ``[sources x d]`` row.
- Eq. 16's input: the text says the two streams are "concatenated" but writes
  ``H = H_f + H_fusion``; we sum (same width ``d``), as the equation writes.
- Reconstruction reads ``H_m``, eq. 14 is single-head with ``sqrt(hidden_dim)`` scaling;
  eq. 18 averages the SmoothL1 (beta 1) over the masked rows' elements, 0 when none is masked.
- Random masking (Implementation Details): the paper simulates incomplete data by independent
  random temporal masks per modality, masked features replaced by zeros (nasmerc has no [UNK] token
  for pre-extracted text features, so text is zeroed too). In nasmerc the trainer's missing schedule
  already drops modalities per row; ``temporal_mask_rate > 0`` adds the paper's independent masking
  inside the model in training mode (every row keeps at least one modality).
- The per-modality logits (``per_modality_logits``) come from a head per modality on the HPA
  self-attention states (the last purely unimodal representation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules import AttentionOp, MetaFormerBlock, RAttentionMixing, masked_softmax
from nasmerc.modules.encoders import BiRNN
from nasmerc.modules.heads import TaskHead, check_batch, unimodal_outputs
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import masked_mean

__all__ = ["MFMBConfig", "MFMBSpace", "MFMBNetwork", "mfmb_default", "mfmb_paper", "PAPER_DIMS", "PAPER_PARAMS",
           "hub_order", "generative_loss"]

#: The paper reports only CMU-MOSI / CMU-MOSEI (no IEMOCAP); these are its MOSI feature dims
#: (Feature Extraction: BERT 768, COVAREP 5, Facet 20).
PAPER_DIMS = {"text": 768, "audio": 5, "visual": 20}
#: The paper reports no parameter count.
PAPER_PARAMS = None

PAPER_HUB_ORDER = ("visual", "audio")


@dataclass
class MFMBConfig:
    """Sizes and loss weights of MFMB-Net (paper values in :func:`mfmb_paper`).

    - ``hidden_dim``: ``d``, the width of eq. 1 and of every stream (even: the BiLSTM of eq. 8 has
      ``d/2`` units per direction; divisible by the number of micro pairs).
    - ``n_heads``: heads of the HPA attentions (eq. 2); ``macro_heads`` of the Transformers of
      eqs. 3-6; ``ffn_ratio`` their FFN width relative to ``d``.
    - ``macro_layers``: layers of each per-modality Transformer of eq. 3; ``hub_layers``: layers of
      each stage Transformer of eqs. 4-6 (``theta_v``, ``theta_a``, ``theta_t``).
    - ``hub_tokens``: ``k``, the length of the coarse hub ``H_ker``.
    - ``gate_kernel``: kernel of the Conv1d of eq. 9 (odd); ``gate_ratio``: hidden width of the
      MGN's FFN relative to ``d``.
    - ``c2f_hidden``: output width of ``W_1`` in eq. 13.
    - ``recon_hidden``: hidden width of the reconstruction FFN of eq. 15.
    - ``guide_modality``: the modality that guides the micro fusion and closes the hub (text).
    - ``recon_weights``: ``alpha_m`` of eq. 19 for every modality of the signature.
    - ``temporal_mask_rate``: extra random masking in training (module docstring); 0 leaves
      the masking to the trainer's missing schedule.
    - ``unimodal_weight``: weight of the ``unimodal_{m}`` losses (0: the paper trains no unimodal head).
    - ``dropout``: after eq. 1, in the attentions, Transformers, MGN and head.
    """

    hidden_dim: int = 64
    n_heads: int = 2
    macro_heads: int = 2
    ffn_ratio: float = 2.0
    macro_layers: int = 1
    hub_layers: int = 1
    hub_tokens: int = 4
    gate_kernel: int = 3
    gate_ratio: float = 2.0
    c2f_hidden: int = 64
    recon_hidden: int = 64
    guide_modality: str = "text"
    recon_weights: dict[str, float] = field(default_factory=lambda: {"text": 1.0, "audio": 1.0, "visual": 1.0})
    temporal_mask_rate: float = 0.0
    unimodal_weight: float = 0.0
    dropout: float = 0.1


def mfmb_default() -> MFMBConfig:
    """Small and CPU-fast: width 64, 2 heads, one layer per Transformer, a hub of 4 tokens, alpha_m = 1."""
    return MFMBConfig()


def mfmb_paper() -> MFMBConfig:
    """The paper's sizes where it gives them, else the authors' released MOSI / MOSEI configuration.

    The paper gives no layer sizes (only Adam, lr 0.002, batch size 24, which are trainer settings).
    From the released configuration: width 90 (three 30-wide alignment outputs), 6 alignment heads,
    10 heads and 4 layers in the hub Transformers, a hub of 4 tokens, coarse-to-fine hidden 64,
    gate Conv1d kernel 3, dropout 0.2, and generation loss weights ``alpha`` = 5 / 2 / 20 for
    text / audio / visual. FFN ratios (4.0, Transformer convention) and the reconstruction hidden
    width (= width) are ours. Only sizes are taken from the release; the structure is the paper's.
    """
    return MFMBConfig(hidden_dim=90, n_heads=6, macro_heads=10, ffn_ratio=4.0, macro_layers=4, hub_layers=4,
                      hub_tokens=4, gate_kernel=3, gate_ratio=4.0, c2f_hidden=64, recon_hidden=90,
                      recon_weights={"text": 5.0, "audio": 2.0, "visual": 20.0}, dropout=0.2)


def guide_of(cfg: MFMBConfig, modalities: Sequence[str]) -> str:
    return cfg.guide_modality if cfg.guide_modality in modalities else modalities[0]


def hub_order(modalities: Sequence[str], guide: str) -> tuple[str, ...]:
    """The modalities in the hub's order (eqs. 4-6): visual, audio, any other, then the guide last."""
    others = [m for m in PAPER_HUB_ORDER if m in modalities and m != guide]
    others += [m for m in modalities if m not in PAPER_HUB_ORDER and m != guide]
    return (*others, guide)


def _keep(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.dtype).unsqueeze(-1)


class TransformerStack(nn.Module):
    """``n_layers`` pre-norm Transformer layers (multi-head self-attention + FFN) over the real rows."""

    def __init__(self, dim: int, n_heads: int, n_layers: int, ffn_ratio: float, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MetaFormerBlock(dim, RAttentionMixing(dim, n_heads), ffn_ratio, dropout)
                                    for _ in range(n_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, None, mask)
        return x


class HPA(nn.Module):
    """Hybrid parallel attention, eq. 2: ``H_m = HPA(h_m, h_m, h_m)``.

    Self-attention aligns each modality and learns its own dynamics,
    ``S_m = h_m + SelfAttn(LN(h_m))``; then each modality attends to every other one in parallel,
    ``H_m = S_m + mean_{n != m} CrossAttn(LN(S_m), LN(S_n))``. ``forward`` returns ``(S, H)``.
    """

    def __init__(self, modalities: Sequence[str], dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.norm_self = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.self_attn = nn.ModuleDict({m: AttentionOp(dim, n_heads) for m in modalities})
        self.norm_query = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.norm_key = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.cross = nn.ModuleDict({f"{m}_from_{n}": AttentionOp(dim, n_heads)
                                    for m in modalities for n in modalities if n != m})
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Mapping[str, Tensor], mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        s = {}
        for m in self.modalities:
            x = self.norm_self[m](h[m])
            s[m] = h[m] + self.drop(self.self_attn[m](x, x, mask))
        keys = {m: self.norm_key[m](s[m]) for m in self.modalities}
        out = {}
        for m in self.modalities:
            others = [n for n in self.modalities if n != m]
            if not others:
                out[m] = s[m]
                continue
            query = self.norm_query[m](s[m])
            cross = torch.stack([self.cross[f"{m}_from_{n}"](query, keys[n], mask) for n in others]).mean(0)
            out[m] = s[m] + self.drop(cross)
        return s, out


class MacroFusion(nn.Module):
    """The macro-fusion stream, eqs. 3-7.

    eq. 3: ``Hbar_m = Transformer(H_m)`` per modality; eqs. 4-6: ``[H'_m | H_ker'] =
    Transformer([Hbar_m | H_ker]; theta_m)`` for ``m`` in ``order`` (visual, audio, text), the hub
    part of each output feeding the next stage; eq. 7: ``H_f`` is the last hub ``[B, k, d]``.
    """

    def __init__(self, order: Sequence[str], dim: int, cfg: MFMBConfig) -> None:
        super().__init__()
        self.order = tuple(order)
        self.encoders = nn.ModuleDict({m: TransformerStack(dim, cfg.macro_heads, cfg.macro_layers, cfg.ffn_ratio,
                                                           cfg.dropout) for m in self.order})
        self.stages = nn.ModuleDict({m: TransformerStack(dim, cfg.macro_heads, cfg.hub_layers, cfg.ffn_ratio,
                                                         cfg.dropout) for m in self.order})
        self.hub = nn.Parameter(torch.randn(cfg.hub_tokens, dim) * 0.02)  # H_ker

    def forward(self, states: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        b, n = mask.shape
        hub = self.hub.unsqueeze(0).expand(b, -1, -1)
        joint_mask = torch.cat([mask, mask.new_ones(b, hub.shape[1])], dim=1)
        for m in self.order:
            bar = self.encoders[m](states[m], mask)  # eq. 3
            out = self.stages[m](torch.cat([bar, hub], dim=1), joint_mask)  # eqs. 4-6
            hub = out[:, n:]
        return hub  # eq. 7


class MemoryGate(nn.Module):
    """One modality of the micro stream, eqs. 8-10.

    eq. 8: ``Hc = tanh(BiLSTM(x))``; eq. 9: ``MGN = FFN(Conv1d(Hc))`` (FFN: Linear, ReLU, Linear);
    eq. 10: ``U_m = Hc * MGN`` element-wise. Padded rows are zero before the convolution, so a
    conversation's last utterances see the same zeros as at its true end.
    """

    def __init__(self, dim: int, kernel: int, ratio: float, dropout: float) -> None:
        super().__init__()
        self.lstm = BiRNN("lstm", dim, dim // 2)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        hidden = max(1, int(round(dim * ratio)))
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = _keep(mask, x)
        context = torch.tanh(self.lstm(x, mask)) * keep  # eq. 8
        gate = self.ffn(self.conv(context.transpose(1, 2)).transpose(1, 2))  # eq. 9
        return context * gate * keep  # eq. 10


def masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, mask: Tensor) -> Tensor:
    """``norm`` over the real rows of ``x`` ``[B, N, C, F]`` (channels ``C``); padded rows stay zero."""
    out = torch.zeros_like(x)
    out[mask] = norm(x[mask])
    return out


class CoarseToFine(nn.Module):
    """The text-guided coarse-to-fine module (Figure 3), eqs. 11-13.

    eq. 11: ``stack(U_t, U_q)`` ``[B, N, S, d]``; eq. 12: ``H_co = BN(phi(stack))``, ``phi`` puts the
    ``S`` sources on the channel axis of a BatchNorm over the real rows; eq. 13 on the flattened
    ``[S * d]`` row: ``H_k = ReLU(W_2 LN(ReLU(W_1 H_co + b_1)) + b_2)``.
    """

    def __init__(self, n_sources: int, dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_sources)
        self.w1 = nn.Linear(n_sources * dim, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.w2 = nn.Linear(hidden, out_dim)

    def forward(self, sources: Sequence[Tensor], mask: Tensor) -> Tensor:
        stacked = torch.stack(list(sources), dim=2)  # eq. 11
        coarse = masked_batch_norm(self.norm, stacked, mask).flatten(2)  # eq. 12
        fine = F.relu(self.w2(self.ln(F.relu(self.w1(coarse)))))  # eq. 13
        return fine * _keep(mask, fine)


class Reconstruction(nn.Module):
    """The reconstruction branch of one modality, eqs. 14-15.

    eq. 14: ``H* = softmax((W^Q H)(W^K H)^T / sqrt(d)) (W^V H)`` over the real rows (one head);
    eq. 15: ``H' = FFN(H*)``, two fully connected layers with a ReLU, to the input width ``D_m``.
    """

    def __init__(self, dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        scores = torch.matmul(self.query(h), self.key(h).transpose(1, 2)) * self.scale
        probs = masked_softmax(scores.unsqueeze(1), mask).squeeze(1)  # eq. 14
        return self.ffn(torch.matmul(probs, self.value(h) * _keep(mask, h)))  # eq. 15


def generative_loss(pred: Tensor, target: Tensor, missing: Tensor, resident: bool = False) -> Tensor:
    """Eq. 18: SmoothL1 between ``pred`` and ``target`` ``[B, N, D]`` at the ``missing`` rows ``[B, N]``.

    The mean over the masked rows' elements (the sum divided by their count); 0 when no row is masked.
    With ``resident`` (a batch of ``train.data=device``) the same mean as a masked sum, no host read.
    """
    if resident:
        return masked_mean(F.smooth_l1_loss(pred, target.to(pred.dtype), reduction="none"), missing)
    if not bool(missing.any()):
        return pred.sum() * 0.0
    return F.smooth_l1_loss(pred[missing], target[missing].to(pred.dtype))


class MFMBNetwork(nn.Module):
    """MFMB-Net for one data signature (module docstring); ``forward(batch) -> ModelOutput``."""

    def __init__(self, signature: DataSignature, cfg: MFMBConfig) -> None:
        super().__init__()
        mods = tuple(signature.modalities)
        d = cfg.hidden_dim
        self.signature = signature
        self.modalities = mods
        self.task = signature.task
        self.guide = guide_of(cfg, mods)
        self.order = hub_order(mods, self.guide)
        self.pairs = [(self.guide, q) for q in self.order[:-1]] or [(self.guide,)]
        self.mask_rate = float(cfg.temporal_mask_rate)
        self.recon_weights = {m: float(cfg.recon_weights[m]) for m in mods}
        self.unimodal_weight = float(cfg.unimodal_weight)
        self.encoders = nn.ModuleDict({m: nn.Linear(signature.dims[m], d) for m in mods})  # eq. 1
        self.drop = nn.Dropout(cfg.dropout)
        self.hpa = HPA(mods, d, cfg.n_heads, cfg.dropout)  # eq. 2
        self.macro = MacroFusion(self.order, d, cfg)  # eqs. 3-7
        self.gates = nn.ModuleDict({m: MemoryGate(d, cfg.gate_kernel, cfg.gate_ratio, cfg.dropout) for m in mods})
        self.c2f = nn.ModuleDict({"_".join(p): CoarseToFine(len(p), d, cfg.c2f_hidden, d // len(self.pairs))
                                  for p in self.pairs})  # eqs. 11-13
        self.reconstruct = nn.ModuleDict({m: Reconstruction(d, cfg.recon_hidden, signature.dims[m]) for m in mods})
        self.head = TaskHead(d, signature, cfg.dropout)  # eq. 16
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(d, signature, cfg.dropout) for m in mods})

    def temporal_mask(self, batch: Batch, present: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The paper's random masking: each observed modality of each real row dropped independently
        at ``temporal_mask_rate`` (torch's generator); a row never loses its last modality."""
        drop = torch.rand(present.shape, device=present.device) < self.mask_rate
        kept = present & ~drop
        emptied = batch.mask.bool() & ~kept.any(-1)
        kept = torch.where(emptied.unsqueeze(-1), present, kept)
        feats = {m: batch.features[m] * kept[..., i : i + 1].to(batch.features[m].dtype)
                 for i, m in enumerate(batch.modalities)}
        return feats, kept

    def encode(self, feats: Mapping[str, Tensor], mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Eqs. 1-2: the unimodal self-attention states ``S_m`` and the aligned ``H_m``."""
        h = {m: self.drop(self.encoders[m](feats[m])) * _keep(mask, feats[m]) for m in self.modalities}
        return self.hpa(h, mask)

    def fuse(self, aligned: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        """Eqs. 3-13 and the sum of eq. 16: ``H = H_f + H_fusion`` ``[B, N, d]``."""
        h_f = self.macro(aligned, mask).mean(1)  # eq. 7, the hub's k tokens averaged
        local = {m: self.gates[m](aligned[m], mask) for m in self.modalities}  # eqs. 8-10
        h_fusion = torch.cat([self.c2f["_".join(p)]([local[m] for m in p], mask) for p in self.pairs], dim=-1)
        return (h_fusion + h_f.unsqueeze(1)) * _keep(mask, h_fusion)

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("mfmb", self.signature, batch)
        mask = batch.mask.bool()
        present = batch.present.bool() & mask.unsqueeze(-1)
        feats: Mapping[str, Tensor] = batch.features
        if self.training and self.mask_rate > 0:
            feats, present = self.temporal_mask(batch, present)
        unimodal, aligned = self.encode(feats, mask)
        logits = self.head(self.fuse(aligned, mask), mask)  # eq. 16
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, unimodal, batch, self.task,
                                                      self.unimodal_weight)
        if self.training:  # eqs. 18-19
            for m in self.modalities:
                missing = mask & ~present[..., batch.modalities.index(m)]
                aux[f"gen_{m}"] = generative_loss(self.reconstruct[m](aligned[m], mask), batch.complete[m], missing,
                                                  batch.resident)
                weights[f"gen_{m}"] = self.recon_weights[m]
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class MFMBSpace(FixedSpace):
    """MFMB-Net as a degenerate space: nothing to choose, the empty architecture."""

    name = "mfmb"
    Config = MFMBConfig
    presets = {"default": mfmb_default, "paper": mfmb_paper}
    Model = MFMBNetwork

    def check_config(self) -> None:
        cfg, where, mods = self.config, self.where, self.signature.modalities
        d = cfg.hidden_dim
        checks.positive(where, hidden_dim=d, n_heads=cfg.n_heads)  # eqs. 1-2
        checks.divisible(where, "hidden_dim", d, "n_heads", cfg.n_heads)
        checks.positive(where, macro_heads=cfg.macro_heads, macro_layers=cfg.macro_layers,  # eqs. 3-7
                        hub_layers=cfg.hub_layers, hub_tokens=cfg.hub_tokens)
        checks.divisible(where, "hidden_dim", d, "macro_heads", cfg.macro_heads)
        checks.greater_than_zero(where, ffn_ratio=cfg.ffn_ratio)
        checks.even(where, "hidden_dim", d, "the BiLSTM of eq. 8 has hidden_dim / 2 units per direction")
        checks.odd_positive(where, gate_kernel=cfg.gate_kernel)  # eqs. 9-10
        checks.greater_than_zero(where, gate_ratio=cfg.gate_ratio)
        checks.positive(where, c2f_hidden=cfg.c2f_hidden)  # eqs. 11-13
        checks.divisible(where, "hidden_dim", d, "the number of micro-fusion pairs", max(1, len(mods) - 1))
        checks.positive(where, recon_hidden=cfg.recon_hidden)  # eqs. 14-15
        for m in mods:  # eq. 19
            if m not in cfg.recon_weights:
                raise NasmercError(f"{where}: recon_weights has no weight for modality {m!r} "
                                   f"(set recon_weights.{m}=...)")
            checks.non_negative(where, **{f"recon_weights.{m}": cfg.recon_weights[m]})
        checks.probability(where, temporal_mask_rate=cfg.temporal_mask_rate)
        checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)
        checks.dropout(where, cfg.dropout)
