"""CORECT: Relational Temporal GNN with auxiliary Cross-modality interaction, as a degenerate space.

The model follows Section 2.1 of the dissertation (Figure 2.2); the sizes the text leaves open come
from the authors' public training setting for IEMOCAP (see :func:`corect_paper`).

1. **Unimodal encoders.** ``x^a``, ``x^v`` from fully connected layers
   (``Linear -> ReLU -> Linear -> ReLU``), ``x^l`` from a Transformer encoder over the utterances of
   the conversation followed by a linear map to the hidden width.
2. **Speaker embedding.** ``X^tau = x^tau + eta * s`` with ``s`` a learned embedding of the speaker.
3. **RT-GCN.** A multimodal graph ``G(V, R, E)`` with one node per (utterance, modality); relations
   ``R_temp`` (past / future / self within the window ``[i - w_p, i + w_f]``, one triple per
   modality) and ``R_multi`` (the modalities of one utterance, one relation per ordered pair), built
   by :func:`nasmerc.modules.graph.multimodal_graph`. A relational graph convolution (``RGCNConv``)
   gives ``g^tau``; a graph-transformer layer (``TransformerConv``, multi-head, heads concatenated),
   BatchNorm and LeakyReLU give ``o^tau``.
4. **P-CM.** For every ordered pair ``beta -> alpha`` a cross-modal transformer ``CM^{beta->alpha}`` of
   ``D`` layers (queries from ``alpha``, keys and values from ``beta``); for each target ``alpha`` the
   outputs of its ``M - 1`` sources are concatenated and refined by self-attention layers (the
   public setting's three), giving ``Z_alpha``.
5. **Fusion and classifier.** ``H_i = [o_i^tau for tau; Z_alpha for alpha]`` (concatenation), then
   ``y_i = softmax(W_2 ReLU(W_1 H_i + b_1) + b_2)`` (a two-layer classifier, :class:`TaskHead`).

Only the modalities of the data signature are used: with two modalities there are 6 temporal and 2
cross-modal relations and two cross-modal transformers; with one, no P-CM. CORECT has no mechanism
for missing modalities: a dropped modality reaches its encoder as the zeros of the batch.

Choices of ours (the dissertation is silent): the Transformer over text has no positional encoding
(the graph carries the order, as in the public setting); the cross-modal and self-attention layers
are pre-LayerNorm blocks ``x + Attn(LN(x), LN(y))``, ``x + FFN(LN(x))`` with a final LayerNorm;
the default preset projects text to the hidden width before its Transformer, the paper preset runs
it at the feature width and projects after, as the public setting does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import RGCNConv, TransformerConv

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.encoders import FCEncoder
from nasmerc.modules.graph import multimodal_graph, n_relations, to_nodes, to_padded
from nasmerc.modules.heads import TaskHead, check_batch, speaker_ids, unimodal_outputs
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput

__all__ = ["CorectConfig", "CorectSpace", "CorectModel", "corect_default", "corect_paper", "PAPER_DIMS",
           "PAPER_PARAMS"]


@dataclass
class CorectConfig:
    """Sizes of CORECT (paper values in :func:`corect_paper`).

    - ``hidden_dim``: width of every unimodal embedding ``X^tau``, of the RGCN and of each
      graph-transformer head, of the P-CM and of the classifier's hidden layer.
    - ``text_layers``, ``text_heads``, ``text_ffn_dim``: the Transformer encoder over text.
      ``text_at_input_width``: run it at the text feature width and project to ``hidden_dim`` after
      (the public setting); otherwise project first and run it at ``hidden_dim`` (cheaper).
    - ``speaker_weight``: ``eta`` of ``X = x + eta * s``.
    - ``window_past``, ``window_future``: ``w_p``, ``w_f`` of the temporal relations (``-1``: the
      whole conversation on that side).
    - ``graph_heads``: heads of the graph-transformer layer (concatenated).
    - ``pcm_layers``: ``D``, layers of each cross-modal transformer ``CM^{beta->alpha}``;
      ``pcm_heads`` their heads; ``pcm_self_layers`` / ``pcm_self_heads``: the self-attention layers
      over each target's concatenated cross-modal features (``0`` layers: none);
      ``pcm_ffn_ratio``: feed-forward width over model width in both.
    - ``dropout``: in the text Transformer, the P-CM blocks and the classifier.
    - ``unimodal_weight``: weight of the per-modality task losses ``unimodal_{m}`` (0: CORECT trains
      none; the per-modality heads still give ``per_modality_logits``).
    """

    hidden_dim: int = 32
    text_layers: int = 1
    text_heads: int = 2
    text_ffn_dim: int = 64
    text_at_input_width: bool = False
    speaker_weight: float = 1.0
    window_past: int = 11
    window_future: int = 5
    graph_heads: int = 2
    pcm_layers: int = 1
    pcm_heads: int = 2
    pcm_self_layers: int = 1
    pcm_self_heads: int = 2
    pcm_ffn_ratio: float = 2.0
    dropout: float = 0.2
    unimodal_weight: float = 0.0


# -- presets and the paper's setting ---------------------------------------------------------------
#: IEMOCAP features of the public setting: sentence-BERT text (768), OpenSMILE audio (100), DenseNet visual (512).
PAPER_DIMS = {"text": 768, "audio": 100, "visual": 512}
#: The dissertation and the CORECT paper report no parameter count.
PAPER_PARAMS = None


def corect_default() -> CorectConfig:
    """Small and CPU-fast: width 32, one text layer, 2 graph heads, one P-CM and one self layer."""
    return CorectConfig()


def corect_paper() -> CorectConfig:
    """The authors' public IEMOCAP setting (the dissertation gives no sizes).

    Hidden size 100; text Transformer of 2 layers at the text width (768, 8 heads, PyTorch's default
    feed-forward 2048) then a linear map to 100; speaker embedding added (``eta = 1``); windows
    ``w_p = 11``, ``w_f = 5``; graph transformer with 7 heads; P-CM with ``D = 2`` cross-modal layers
    of 2 heads and 3 self-attention layers of 2 heads, feed-forward 4x; dropout 0.5.
    """
    return CorectConfig(hidden_dim=100, text_layers=2, text_heads=8, text_ffn_dim=2048, text_at_input_width=True,
                        speaker_weight=1.0, window_past=11, window_future=5, graph_heads=7, pcm_layers=2,
                        pcm_heads=2, pcm_self_layers=3, pcm_self_heads=2, pcm_ffn_ratio=4.0, dropout=0.5)


class TextTransformer(nn.Module):
    """The lexical encoder of Section 2.1: a Transformer encoder over the conversation's utterances.

    Padded utterances are ignored (key padding mask).

    At the feature width (``at_input_width``) it is followed by ``Linear(D -> hidden)``; otherwise it
    is preceded by it.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, heads: int, ffn_dim: int, dropout: float,
                 at_input_width: bool) -> None:
        super().__init__()
        width = in_dim if at_input_width else hidden
        self.into = nn.Identity() if at_input_width else nn.Linear(in_dim, hidden)
        layer = nn.TransformerEncoderLayer(width, heads, ffn_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, hidden) if at_input_width else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.out(self.encoder(self.into(x), src_key_padding_mask=~mask))


class AttentionBlock(nn.Module):
    """Pre-LayerNorm attention block: ``x + Attn(LN(x), LN(y), LN(y))`` then ``x + FFN(LN(x))``.

    With ``y=None`` it is self-attention (queries, keys and values from ``LN(x)``). Padded keys are
    ignored through ``pad`` (``[B, L]``, True on padding).
    """

    def __init__(self, dim: int, heads: int, ffn_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        inner = max(1, int(round(ffn_ratio * dim)))
        self.ffn = nn.Sequential(nn.Linear(dim, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor | None, pad: Tensor) -> Tensor:
        q = self.norm_q(x)
        kv = q if y is None else self.norm_kv(y)
        out, _ = self.attention(q, kv, kv, key_padding_mask=pad, need_weights=False)
        x = x + self.drop(out)
        return x + self.drop(self.ffn(self.norm_ff(x)))


class AttentionStack(nn.Module):
    """``layers`` :class:`AttentionBlock` s and a final LayerNorm; ``y`` (cross-modal) or none (self)."""

    def __init__(self, dim: int, heads: int, layers: int, ffn_ratio: float, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, ffn_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, y: Tensor | None, pad: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, y, pad)
        return self.norm(x)


class PairwiseCrossModal(nn.Module):
    """P-CM (Section 2.1): ``CM^{beta->alpha}`` for every ordered pair, then self-attention per target ``alpha``.

    ``forward`` returns ``[B, L, M (M - 1) hidden]``: for each target in modality order, its
    ``Z_alpha`` (the concatenated ``CM^{beta->alpha}`` outputs over the sources ``beta``, refined).
    """

    def __init__(self, modalities: tuple[str, ...], cfg: CorectConfig) -> None:
        super().__init__()
        self.modalities = modalities
        h = cfg.hidden_dim
        self.cross = nn.ModuleDict({
            f"{b}_to_{a}": AttentionStack(h, cfg.pcm_heads, cfg.pcm_layers, cfg.pcm_ffn_ratio, cfg.dropout)
            for a in modalities for b in modalities if b != a
        })
        width = (len(modalities) - 1) * h
        self.memory = nn.ModuleDict({
            a: AttentionStack(width, cfg.pcm_self_heads, cfg.pcm_self_layers, cfg.pcm_ffn_ratio, cfg.dropout)
            for a in modalities
        }) if cfg.pcm_self_layers > 0 else None

    def forward(self, states: dict[str, Tensor], mask: Tensor) -> Tensor:
        pad = ~mask
        out = []
        for a in self.modalities:
            z = torch.cat([self.cross[f"{b}_to_{a}"](states[a], states[b], pad)
                           for b in self.modalities if b != a], dim=-1)
            out.append(self.memory[a](z, None, pad) if self.memory is not None else z)
        return torch.cat(out, dim=-1)


class CorectModel(nn.Module):
    """The CORECT network for one data signature (Section 2.1, Figure 2.2; see the module docstring).

    ``embed`` gives ``X^tau = x^tau + eta s``, ``rt_gcn`` the RT-GCN outputs ``o^tau``, ``pcm`` the
    ``Z_alpha``; ``forward`` fuses them, ``H_i = [o_i; Z_i]``, and classifies ``softmax(W H_i + b)``.
    """

    def __init__(self, signature: DataSignature, cfg: CorectConfig) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.n_speakers = max(1, int(signature.n_speakers))
        self.eta = float(cfg.speaker_weight)
        self.window = (int(cfg.window_past), int(cfg.window_future))
        self.unimodal_weight = float(cfg.unimodal_weight)
        h, m = cfg.hidden_dim, len(self.modalities)
        self.encoders = nn.ModuleDict({
            mod: (TextTransformer(signature.dims[mod], h, cfg.text_layers, cfg.text_heads, cfg.text_ffn_dim,
                                  cfg.dropout, cfg.text_at_input_width)
                  if mod == "text" else FCEncoder(signature.dims[mod], h))
            for mod in self.modalities
        })
        self.speaker = nn.Embedding(self.n_speakers, h)
        self.rgcn = RGCNConv(h, h, n_relations(m))
        self.graph_transformer = TransformerConv(h, h, heads=cfg.graph_heads, concat=True)
        self.graph_norm = nn.BatchNorm1d(h * cfg.graph_heads)
        self.pcm = PairwiseCrossModal(self.modalities, cfg) if m > 1 else None
        fused = m * h * cfg.graph_heads + (m * (m - 1) * h if m > 1 else 0)
        self.head = TaskHead(fused, signature, cfg.dropout, hidden_dim=h)
        self.unimodal_heads = nn.ModuleDict({mod: TaskHead(h, signature, cfg.dropout) for mod in self.modalities})

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """``X^tau = x^tau + eta * s`` for every modality, ``[B, L, hidden]`` (zeros on padding)."""
        mask = batch.mask.bool()
        keep = mask.unsqueeze(-1).to(batch.features[self.modalities[0]].dtype)
        s = self.speaker(speaker_ids(batch, self.n_speakers))
        return {mod: (self.encoders[mod](batch.features[mod], mask) + self.eta * s) * keep for mod in self.modalities}

    def rt_gcn(self, states: dict[str, Tensor], mask: Tensor) -> Tensor:
        """RT-GCN over the multimodal graph: ``[B, L, M * heads * hidden]``, ``o^tau`` concatenated."""
        graph = multimodal_graph(mask, len(self.modalities), *self.window)
        nodes = to_nodes([states[mod] for mod in self.modalities], mask)
        g = self.rgcn(nodes, graph.edge_index, graph.edge_type)
        o = self.graph_transformer(g, graph.edge_index)
        if o.shape[0] > 1 or not self.training:  # a batch of one node has no batch statistics
            o = self.graph_norm(o)
        o = F.leaky_relu(o)
        return to_padded(o, mask, len(self.modalities)).flatten(2)

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("corect", self.signature, batch)
        mask = batch.mask.bool()
        states = self.embed(batch)
        parts = [self.rt_gcn(states, mask)]
        if self.pcm is not None:
            parts.append(self.pcm(states, mask))
        fused = torch.cat(parts, dim=-1) * mask.unsqueeze(-1).to(parts[0].dtype)
        logits = self.head(fused, mask)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, states, batch, self.signature.task,
                                                      self.unimodal_weight)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class CorectSpace(FixedSpace):
    """CORECT as a degenerate space: the architecture is empty, :meth:`network` asks nothing."""

    name = "corect"
    Config = CorectConfig
    presets = {"default": corect_default, "paper": corect_paper}
    Model = CorectModel

    def check_config(self) -> None:
        cfg, where, mods = self.config, self.where, self.signature.modalities
        checks.positive(where, hidden_dim=cfg.hidden_dim, text_layers=cfg.text_layers, text_heads=cfg.text_heads,
                        text_ffn_dim=cfg.text_ffn_dim)
        if "text" in mods:  # the text Transformer runs at the feature width or at hidden_dim
            width_key = "dims.text" if cfg.text_at_input_width else "hidden_dim"
            width = self.signature.dims["text"] if cfg.text_at_input_width else cfg.hidden_dim
            checks.divisible(where, width_key, width, "text_heads", cfg.text_heads)
        checks.window(where, window_past=cfg.window_past, window_future=cfg.window_future)  # RT-GCN
        checks.positive(where, graph_heads=cfg.graph_heads)
        checks.positive(where, pcm_layers=cfg.pcm_layers, pcm_heads=cfg.pcm_heads, pcm_self_heads=cfg.pcm_self_heads)
        checks.at_least(where, 0, pcm_self_layers=cfg.pcm_self_layers)
        checks.greater_than_zero(where, pcm_ffn_ratio=cfg.pcm_ffn_ratio)
        if len(mods) > 1:  # P-CM: cross-modal layers at hidden_dim, self layers at (M - 1) x hidden_dim
            checks.divisible(where, "hidden_dim", cfg.hidden_dim, "pcm_heads", cfg.pcm_heads)
            if cfg.pcm_self_layers:
                checks.divisible(where, "(modalities - 1) x hidden_dim", (len(mods) - 1) * cfg.hidden_dim,
                                 "pcm_self_heads", cfg.pcm_self_heads)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)
