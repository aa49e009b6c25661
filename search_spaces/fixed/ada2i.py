"""Ada2I (dissertation Section 4.1, Figure 4.2) as a degenerate nasmerc space.

Ada2I balances modalities at the feature level, at the modality level and in the optimisation:

1. **Modality encoding**: ``Z^m = phi(theta^(m), X^m)``, a Transformer encoder per modality over the
   utterances of a conversation (:class:`ModalityEncoder`).
2. **Adaptive Feature Weighting** (AFW, :class:`AFWLayer`, ``afw_layers`` layers). Each modality gives
   tensor-ring query and key cores ``G_Q^m``, ``G_K^m`` (an ``R x R`` core per utterance, the mode-1
   Khatri-Rao product of two rank-``R`` factor maps of ``Z^m``); their scaled element-wise interaction
   is ``Theta^m``; its mean over the conversation's utterances is the pooling matrix ``A^(m)``. The
   attention of modality ``m`` contracts ``Theta^m`` around the ring with the other modalities' pooling
   matrices (the fused higher-order tensor with every other modality's utterance mode pooled) and maps
   the ``R x R`` result to feature weights ``Att_m``; then ``Z_m^{f-adapt} = Att_m Z^m + beta Z^m``
   (``Att_m`` weighs every feature of every utterance). The feature-level loss ``L_feature`` aligns a
   per-modality weight-mapping network of ``Z^m`` with ``Att_m`` (L1).
3. **Adaptive Modality Weighting** (AMW, :class:`AMW`): L2-normalised features and output weights give
   every modality cosine logits ``s W^m Z_m / (||W^m|| ||Z_m||)`` (per class row of ``W^m``); their sum
   plus ``b`` is ``Z^{m-adapt}``, which an MLP turns into the prediction. The modality-level loss
   ``L_modal`` is the task loss of each modality's cosine logits.
4. **Gradient modulation**: ``s^m`` is the mean probability (softmax of the cosine logits) of the
   true class over the rows where ``m`` is observed, ``rho^m = s^m / min_j s^j`` and
   ``k^m = 1 - tanh(alpha rho^m)`` for ``rho^m > 1`` (1 otherwise, so the weakest modality is never
   slowed). In training the model registers a hook on every encoder output ``Z^m`` that multiplies its
   gradient by ``k^m``: every parameter of encoder ``m`` gets ``k^m`` times its gradient, as the
   paper's encoder update asks, with nothing changed in the trainer. For regression ``s^m`` is the
   mean ``exp(-|score - label|)``, the same "how well does ``m`` alone fit" read on a scale in (0, 1].

The joint loss ``L_cls + L_feature + L_modal`` is the trainer's task loss on the MLP's logits plus the
auxiliary losses ``feature`` and ``modal`` with weights ``feature_weight`` / ``modal_weight``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.heads import TaskHead, check_batch, masked_mean, present_mask, unimodal_outputs
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import loss_of

__all__ = ["Ada2IConfig", "Ada2ISpace", "Ada2INetwork", "AFWLayer", "AMW", "ModalityEncoder",
           "modulation_coefficients", "ada2i_default", "ada2i_paper", "PAPER_DIMS", "PAPER_PARAMS"]

#: IEMOCAP features of Ada2I (the authors' published IEMOCAP setting): text 768, audio 512, visual 1024.
PAPER_DIMS = {"text": 768, "audio": 512, "visual": 1024}
#: The paper reports no parameter count.
PAPER_PARAMS = None


@dataclass
class Ada2IConfig:
    """Sizes, loss weights and modulation of Ada2I (paper values in :func:`ada2i_paper`).

    - ``hidden_dim``: width of ``Z^m`` (each encoder projects its input to it, then runs
      ``encoder_layers`` Transformer layers of ``n_heads`` heads and FFN width ``ffn_dim``; no
      positional encoding, as the paper gives none).
    - ``rank``: tensor-ring rank ``R`` of the query / key cores; ``afw_layers``: stacked AFW layers.
    - ``beta``: the residual weight of ``Z = Att Z + beta Z``.
    - ``cosine_scale``: ``s`` multiplying the cosine logits of AMW (cosines lie in ``[-1, 1]``; the
      scale lets their softmax, used by ``L_modal`` and by ``s^m``, be confident).
    - ``mlp_hidden``: hidden width of the MLP on ``Z^{m-adapt}`` (0: one linear layer).
    - ``feature_weight``, ``modal_weight``: weights of ``L_feature`` and ``L_modal`` (1 and 1: the
      paper sums the three terms).
    - ``modulation``, ``alpha``: gradient modulation on or off and its ``alpha``.
    - ``gradient_noise``: also add Gaussian noise with the gradient's own standard deviation to the
      modulated gradient (OGM-GE's generalisation enhancement), here at the encoder output.
    - ``dropout``: encoders, AFW outputs and MLP.
    - ``unimodal_weight``: weight of the per-modality heads' task losses ``unimodal_{m}`` (0: not added).
    """

    hidden_dim: int = 64
    encoder_layers: int = 1
    n_heads: int = 4
    ffn_dim: int = 128
    rank: int = 4
    afw_layers: int = 2
    beta: float = 0.7
    cosine_scale: float = 10.0
    mlp_hidden: int = 64
    feature_weight: float = 1.0
    modal_weight: float = 1.0
    modulation: bool = True
    alpha: float = 0.1
    gradient_noise: bool = False
    dropout: float = 0.1
    unimodal_weight: float = 0.0


def ada2i_default() -> Ada2IConfig:
    """Small and CPU-fast: width 64, one Transformer layer of 4 heads per modality, rank 4, 2 AFW layers."""
    return Ada2IConfig()


def ada2i_paper() -> Ada2IConfig:
    """The authors' published IEMOCAP setting (the dissertation text gives no sizes): width 300, rank 11,
    ``beta = 0.012``, ``alpha = 0.037``, 2 AFW layers, 2 Transformer layers per encoder, dropout 0.5,
    gradient noise on. Given nowhere and chosen here: 6 heads (300 = 6 x 50), the Transformer's usual
    FFN width 2048, ``s = 10``, MLP hidden 300."""
    return Ada2IConfig(hidden_dim=300, encoder_layers=2, n_heads=6, ffn_dim=2048, rank=11, afw_layers=2,
                       beta=0.012, cosine_scale=10.0, mlp_hidden=300, alpha=0.037, gradient_noise=True,
                       dropout=0.5)


# -- gradient modulation ------------------------------------------------------------------------------
def modulation_coefficients(scores: Mapping[str, float], alpha: float) -> tuple[dict[str, float], dict[str, float]]:
    """``(rho, k)`` per modality from the scores ``s^m`` (Section 4.1).

    ``rho^m = s^m / min_j s^j``; ``k^m = 1 - tanh(alpha rho^m)`` when ``rho^m > 1``, else 1. A modality
    without a score (``nan``: not observed in the batch) gets ``rho = nan`` and ``k = 1``.
    """
    known = [s for s in scores.values() if math.isfinite(s) and s > 0]
    low = min(known) if known else float("nan")
    rho = {m: (s / low if math.isfinite(s) and s > 0 and known else float("nan")) for m, s in scores.items()}
    k = {m: (1.0 - math.tanh(alpha * r) if math.isfinite(r) and r > 1.0 else 1.0) for m, r in rho.items()}
    return rho, k


def _modulate(grad: Tensor, k: float, noise: bool, real: Tensor) -> Tensor:
    """The encoder-output gradient times ``k`` (plus OGM-GE noise on the real rows when asked)."""
    out = grad * k
    if noise:
        rows = out[real]
        std = float(rows.std()) if rows.numel() > 1 else 0.0
        out = out + torch.randn_like(out) * (std + 1e-8) * real.unsqueeze(-1).to(out.dtype)
    return out


# -- modules ----------------------------------------------------------------------------------------
class ModalityEncoder(nn.Module):
    """The modality encoder ``phi(theta^(m))`` of Section 4.1: ``Linear(D_m -> hidden)``, dropout, then a
    Transformer encoder over the rows (utterances) of each conversation."""

    def __init__(self, in_dim: int, cfg: Ada2IConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, cfg.hidden_dim)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.hidden_dim, cfg.n_heads, cfg.ffn_dim, cfg.dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.encoder_layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        z = self.transformer(self.drop(self.embed(x)), src_key_padding_mask=~mask)
        return z * keep


class AFWLayer(nn.Module):
    """One Adaptive Feature Weighting layer (Section 4.1; module docstring, item 2).

    ``query[m]`` / ``key[m]`` map ``Z^m`` to the two rank-``R`` factors whose outer product is the
    utterance's ``R x R`` tensor-ring core; ``Theta^m = G_Q^m * G_K^m / R`` (the ``1 / R`` is the
    ``1 / sqrt(R^2)`` of a scaled interaction over the core's ``R^2`` entries). ``attention[m]`` maps the
    ring contraction to ``Att_m``; ``weight_map[m]`` is the network ``L_feature`` aligns with ``Att_m``.
    """

    def __init__(self, modalities: tuple[str, ...], dim: int, rank: int, beta: float, dropout: float) -> None:
        super().__init__()
        self.modalities = modalities
        self.rank = rank
        self.beta = beta
        self.query = nn.ModuleDict({m: nn.Linear(dim, 2 * rank) for m in modalities})
        self.key = nn.ModuleDict({m: nn.Linear(dim, 2 * rank) for m in modalities})
        self.attention = nn.ModuleDict({m: nn.Linear(rank * rank, dim) for m in modalities})
        self.weight_map = nn.ModuleDict({m: nn.Linear(dim, dim) for m in modalities})
        self.drop = nn.Dropout(dropout)

    def core(self, factors: Tensor) -> Tensor:
        """``[B, N, 2R]`` factors -> ``[B, N, R, R]`` cores (mode-1 Khatri-Rao product of the two halves)."""
        left, right = factors.chunk(2, dim=-1)
        return left.unsqueeze(-1) * right.unsqueeze(-2)

    def interactions(self, states: Mapping[str, Tensor], mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``Theta^m`` ``[B, N, R, R]`` and the pooling matrices ``A^(m)`` ``[B, R, R]`` (mean over real rows)."""
        keep = mask.to(next(iter(states.values())).dtype)[..., None, None]
        count = keep.sum(1).clamp(min=1.0)
        theta, pooled = {}, {}
        for m in self.modalities:
            t = self.core(self.query[m](states[m])) * self.core(self.key[m](states[m])) / self.rank
            theta[m] = t * keep
            pooled[m] = theta[m].sum(1) / count
        return theta, pooled

    def weights(self, states: Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """``Att_m`` ``[B, N, d]``: ``Theta^m`` times the other modalities' ``A`` in ring order after ``m``."""
        theta, pooled = self.interactions(states, mask)
        mods, out = self.modalities, {}
        for idx, m in enumerate(mods):
            ring = theta[m]
            for other in mods[idx + 1:] + mods[:idx]:
                ring = ring @ pooled[other].unsqueeze(1)
            out[m] = self.attention[m](ring.flatten(-2))
        return out

    def forward(self, states: Mapping[str, Tensor], mask: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """``Z^{f-adapt}`` per modality and this layer's ``L_feature`` (mean over modalities)."""
        att = self.weights(states, mask)
        keep = mask.unsqueeze(-1).to(att[self.modalities[0]].dtype)
        real = mask.bool()
        out, losses = {}, []
        for m in self.modalities:
            out[m] = self.drop(att[m] * states[m] + self.beta * states[m]) * keep
            losses.append(F.l1_loss(self.weight_map[m](states[m])[real], att[m][real]))
        return out, torch.stack(losses).mean()


class AMW(nn.Module):
    """Adaptive Modality Weighting (Section 4.1): per-modality cosine logits and their sum plus ``b``."""

    def __init__(self, modalities: tuple[str, ...], dim: int, n_out: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.ModuleDict({m: nn.Linear(dim, n_out, bias=False) for m in modalities})
        self.bias = nn.Parameter(torch.zeros(n_out))

    def cosine_logits(self, states: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``s W^m z / (||W^m_c|| ||z||)`` per class row ``c``: ``[B, N, n_out]`` per modality."""
        return {m: self.scale * F.linear(F.normalize(states[m], dim=-1), F.normalize(lin.weight, dim=-1))
                for m, lin in self.weight.items()}

    def forward(self, logits: Mapping[str, Tensor]) -> Tensor:
        """``Z^{m-adapt} = sum_m cos-logits_m + b``."""
        return torch.stack(list(logits.values())).sum(0) + self.bias


class Ada2INetwork(nn.Module):
    """Ada2I (Section 4.1, Figure 4.2) for one data signature: encoders, AFW, AMW, the MLP, the joint
    loss's auxiliary terms and gradient modulation (module docstring). After each training forward
    ``last_rho`` / ``last_k`` hold the batch's ``rho^m`` and ``k^m``."""

    def __init__(self, signature: DataSignature, cfg: Ada2IConfig) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.task = signature.task
        self.utterance_level = signature.level == "utterance"
        self.cfg = cfg
        n_out = signature.n_outputs
        self.encoders = nn.ModuleDict({m: ModalityEncoder(signature.dims[m], cfg) for m in self.modalities})
        self.afw = nn.ModuleList(AFWLayer(self.modalities, cfg.hidden_dim, cfg.rank, cfg.beta, cfg.dropout)
                                 for _ in range(cfg.afw_layers))
        self.amw = AMW(self.modalities, cfg.hidden_dim, n_out, cfg.cosine_scale)
        self.head = TaskHead(n_out, signature, cfg.dropout, cfg.mlp_hidden)  # the MLP on Z^{m-adapt}
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(cfg.hidden_dim, signature, cfg.dropout)
                                             for m in self.modalities})
        self.last_rho: dict[str, float] = {}
        self.last_k: dict[str, float] = {}

    # -- per-modality readout ---------------------------------------------------------------------
    def observed(self, batch: Batch, modality: str) -> Tensor:
        """Where ``modality`` is observed: ``[B, L]`` rows, or ``[B]`` samples for utterance-level tasks."""
        rows = present_mask(batch, modality)
        return rows.any(1) if self.utterance_level else rows

    def readout(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Row logits ``[B, L, C]`` as outputs: pooled over frames at utterance level, squeezed for regression."""
        if self.utterance_level:
            logits = masked_mean(logits, mask)
        return logits.squeeze(-1) if self.task == "regression" else logits

    def true_class_scores(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, float]:
        """``s^m``: mean softmax probability of the label (regression: ``exp(-|error|)``) where ``m`` is observed."""
        scores = {}
        with torch.no_grad():
            for m, out in outputs.items():
                where = self.observed(batch, m)
                if not bool(where.any()):
                    scores[m] = float("nan")
                    continue
                pred, target = out[where], batch.labels[where]
                if self.task == "classification":
                    prob = pred.softmax(-1).gather(-1, target.long().unsqueeze(-1))
                else:
                    prob = torch.exp(-(pred - target.to(pred.dtype)).abs())
                scores[m] = float(prob.mean())
        return scores

    def modal_loss(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """``L_modal``: mean over modalities of each one's task loss where it is observed."""
        losses = []
        for m, out in outputs.items():
            where = self.observed(batch, m)
            if not bool(where.any()):
                continue
            losses.append(loss_of(out[where], batch.labels[where], self.task))
        return torch.stack(losses).mean() if losses else outputs[self.modalities[0]].sum() * 0.0

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("ada2i", self.signature, batch)
        mask = batch.mask.bool()
        encoded = {m: self.encoders[m](batch.features[m], mask) for m in self.modalities}  # Z^m
        states, feature_losses = dict(encoded), []
        for layer in self.afw:
            states, loss = layer(states, mask)
            feature_losses.append(loss)
        cosine = self.amw.cosine_logits(states)
        logits = self.head(self.amw(cosine), mask)
        outputs = {m: self.readout(c, mask) for m, c in cosine.items()}
        aux = {"feature": torch.stack(feature_losses).mean(), "modal": self.modal_loss(outputs, batch)}
        weights = {"feature": self.cfg.feature_weight, "modal": self.cfg.modal_weight}
        per_modality, unimodal, unimodal_weights = unimodal_outputs(self.unimodal_heads, encoded, batch, self.task,
                                                                    self.cfg.unimodal_weight)
        aux.update(unimodal)
        weights.update(unimodal_weights)
        if self.training and self.cfg.modulation and torch.is_grad_enabled():
            self.last_rho, self.last_k = modulation_coefficients(self.true_class_scores(outputs, batch),
                                                                 self.cfg.alpha)
            for m, z in encoded.items():
                if z.requires_grad and (self.last_k[m] != 1.0 or self.cfg.gradient_noise):
                    z.register_hook(partial(_modulate, k=self.last_k[m], noise=self.cfg.gradient_noise, real=mask))
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class Ada2ISpace(FixedSpace):
    """Ada2I (Section 4.1) as a space with nothing to choose: the architecture is empty."""

    name = "ada2i"
    Config = Ada2IConfig
    presets = {"default": ada2i_default, "paper": ada2i_paper}
    Model = Ada2INetwork

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        checks.positive(where, hidden_dim=cfg.hidden_dim, encoder_layers=cfg.encoder_layers, n_heads=cfg.n_heads,
                        ffn_dim=cfg.ffn_dim, rank=cfg.rank, afw_layers=cfg.afw_layers)
        checks.divisible(where, "hidden_dim", cfg.hidden_dim, "n_heads", cfg.n_heads)
        checks.at_least(where, 0, mlp_hidden=cfg.mlp_hidden)
        checks.non_negative(where, beta=cfg.beta, alpha=cfg.alpha, feature_weight=cfg.feature_weight,
                            modal_weight=cfg.modal_weight, unimodal_weight=cfg.unimodal_weight)
        checks.greater_than_zero(where, cosine_scale=cfg.cosine_scale)
        checks.dropout(where, cfg.dropout)
