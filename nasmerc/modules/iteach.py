"""ITEACH-Net's encoder stack (Sun, Lian et al., Section 3.4, eqs. 3-4 and 7, Figure 2), shared by the
``iteach`` space (``search_spaces/iteach.py``: a Transformer teacher and a searched student) and the
``transformer`` baseline (``search_spaces/fixed/baselines.py``: the teacher alone).

- :class:`CrossRound`: one round of cross attention with the query modality (eq. 7);
- :class:`EncoderLayer`: an ITEACH Encoder (a MetaFormer block) per modality, then a cross round per
  other modality with the query (Section 3.4.1);
- :class:`ITEACHModel`: input projections, ECCE (eqs. 1-2, 5-6), ``n_layers`` Encoder Layers and the
  classifier on ``H_1``; :meth:`ITEACHModel.teacher` builds it with attention mixers only.

The blocks read their sizes from any config with the fields of :class:`EncoderConfig` (both users'
config dataclasses have them); :func:`check_encoder_config` refuses values they cannot work with.
Our departures from the paper (cross attention as a pre-norm residual with learned multi-head
projections and no FFN; the classifier ``LN -> Dropout -> Linear``) are documented where made.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol

from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.ecce import ECCEncoder
from nasmerc.modules.fusion_ops import AttentionOp
from nasmerc.modules.heads import TaskHead
from nasmerc.modules.iteach_mixers import AttentionMixer
from nasmerc.modules.metaformer import MetaFormerBlock

__all__ = ["EncoderConfig", "check_encoder_config", "CrossRound", "EncoderLayer", "ITEACHModel"]


class EncoderConfig(Protocol):
    """The config fields the encoder stack reads.

    ``hidden_dim``, ``n_heads``, ``ffn_ratio``: every Encoder Layer (MetaFormer blocks and cross
    attention), ``n_heads`` also ``d_e``, the number of ECCE channels; ``ecce_kernel`` (``w``),
    ``ecce_dist`` (``dist_m``), ``ecce_dim`` (``d_z``), ``use_ecce``: the ECCE bias of the attention
    mixers; ``query_modality``: the cross attention's query (the signature's first modality when it
    has no such modality); ``dropout``: after the input projections, inside blocks and the classifier.
    """

    hidden_dim: int
    n_heads: int
    ffn_ratio: float
    ecce_kernel: int
    ecce_dist: int
    ecce_dim: int
    use_ecce: bool
    query_modality: str
    dropout: float


def check_encoder_config(where: str, cfg: EncoderConfig) -> None:
    """Refuse encoder sizes that cannot work, naming the first bad field (see ``nasmerc.checks``)."""
    checks.positive(where, hidden_dim=cfg.hidden_dim, n_heads=cfg.n_heads, ecce_dist=cfg.ecce_dist,
                    ecce_dim=cfg.ecce_dim)
    checks.divisible(where, "hidden_dim", cfg.hidden_dim, "n_heads", cfg.n_heads)
    checks.odd_positive(where, ecce_kernel=cfg.ecce_kernel)
    checks.greater_than_zero(where, ffn_ratio=cfg.ffn_ratio)
    checks.dropout(where, cfg.dropout)


class CrossRound(nn.Module):
    """One round of cross attention (eq. 7): ``t = t + CrossAttn(LN(t), LN(a))``, ``t`` the query."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_key = nn.LayerNorm(dim)
        self.attention = AttentionOp(dim, n_heads)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, other: Tensor, mask: Tensor) -> Tensor:
        out = self.attention(self.norm_query(query), self.norm_key(other), mask)  # padded rows zero
        return query + self.drop(out)


class EncoderLayer(nn.Module):
    """An Encoder Layer (Section 3.4.1, Figure 2): an ITEACH Encoder per modality, then cross attention.

    ``forward`` returns the new per-modality states, the query modality's being the fused ``H``, and
    the encoders' outputs before the cross attention.
    """

    def __init__(self, modalities: tuple[str, ...], query: str, mixers: Mapping[str, nn.Module],
                 cfg: EncoderConfig) -> None:
        super().__init__()
        self.query = query
        self.blocks = nn.ModuleDict({
            m: MetaFormerBlock(cfg.hidden_dim, mixers[m], cfg.ffn_ratio, cfg.dropout) for m in modalities
        })
        self.rounds = nn.ModuleDict({
            m: CrossRound(cfg.hidden_dim, cfg.n_heads, cfg.dropout) for m in modalities if m != query
        })

    def forward(self, states: Mapping[str, Tensor], biases: Mapping[str, Tensor | None],
                mask: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        encoded = {m: block(states[m], biases[m], mask) for m, block in self.blocks.items()}
        fused = encoded[self.query]
        for m, cross in self.rounds.items():  # audio, then visual: text stays the query (eq. 7)
            fused = cross(fused, encoded[m], mask)
        return {**encoded, self.query: fused}, encoded


class ITEACHModel(nn.Module):
    """A teacher or a student (eqs. 3-4): input projections, ECCE, Encoder Layers and a classifier.

    ``make_mixer(i, m)`` gives the token mixer of layer ``i`` and modality ``m``: a fixed attention
    mixer for the teacher (:meth:`teacher`), a choice for the student. ``forward`` returns the hidden
    features ``[H_L, ..., H_1]`` in layer order (``H_1``, closest to the classifier, is the last) and
    :meth:`predict` is the classifier on ``H_1``: a :class:`~nasmerc.modules.heads.TaskHead`
    ``LN -> Dropout -> Linear``, per row, or on the mean of the real rows for utterance-level tasks.
    """

    def __init__(self, signature: DataSignature, cfg: EncoderConfig, n_layers: int,
                 make_mixer: Callable[[int, str], nn.Module]) -> None:
        super().__init__()
        mods = tuple(signature.modalities)
        query = cfg.query_modality if cfg.query_modality in mods else mods[0]
        hidden = cfg.hidden_dim
        self.query = query
        self.embed = nn.ModuleDict({m: nn.Linear(signature.dims[m], hidden) for m in mods})
        self.drop = nn.Dropout(cfg.dropout)
        self.ecce = (nn.ModuleDict({m: ECCEncoder(signature.dims[m], cfg.n_heads, cfg.ecce_kernel, cfg.ecce_dist,
                                                  cfg.ecce_dim) for m in mods})
                     if cfg.use_ecce else None)
        self.layers = nn.ModuleList(
            EncoderLayer(mods, query, {m: make_mixer(i, m) for m in mods}, cfg) for i in range(n_layers)
        )
        self.head = TaskHead(hidden, signature, cfg.dropout, norm=True)

    @classmethod
    def teacher(cls, signature: DataSignature, cfg: EncoderConfig, n_layers: int) -> "ITEACHModel":
        """The Transformer teacher (eq. 3): attention mixers in every layer, no choice."""
        return cls(signature, cfg, n_layers, lambda i, m: AttentionMixer(cfg.hidden_dim, cfg.n_heads))

    def encode(self, features: Mapping[str, Tensor], mask: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The hiddens of :meth:`forward` and the last layer's per-modality encoder outputs, before its
        cross attention (``[B, N, hidden]`` each)."""
        keep = mask.to(features[self.query].dtype).unsqueeze(-1)
        states = {m: self.drop(embed(features[m])) * keep for m, embed in self.embed.items()}
        biases: dict[str, Tensor | None] = {
            m: (self.ecce[m](features[m], mask) if self.ecce is not None else None) for m in states
        }  # eqs. 1-2
        hiddens, encoded = [], states
        for layer in self.layers:
            states, encoded = layer(states, biases, mask)
            hiddens.append(states[self.query])
        return hiddens, encoded

    def forward(self, features: Mapping[str, Tensor], mask: Tensor) -> list[Tensor]:
        """``features[m]`` ``[B, N, D_m]``, ``mask`` ``[B, N]`` bool; returns the hiddens ``[B, N, hidden]``."""
        return self.encode(features, mask)[0]

    def predict(self, last: Tensor, mask: Tensor) -> Tensor:
        """Logits from ``H_1``: ``[B, N, C]`` per row (dialogue level) or ``[B, C]`` from the mean of
        ``last`` over the real rows (utterance level: one prediction per sample); one score per row or
        sample (no class axis) for regression."""
        return self.head(last, mask)
