"""BM-NAS fusion alone: fixed unimodal Transformer encoders, searched multimodal fusion.

For users who only search the fusion (BM-NAS, Yin et al. 2022, as RMNAS uses it in its eq. 13):

1. **Unimodal encoders** (fixed, nothing searched). Per modality ``m``: ``Linear(D_m -> hidden_dim)``,
   sinusoidal positional encoding, a trainable global token at position 0 (as RMNAS eqs. 1-2, so
   that utterance-level tasks have a readout and no row is all padding), ``n_layers`` standard
   pre-norm Transformer encoder layers (``torch.nn.TransformerEncoderLayer``, ``batch_first``, key
   padding mask over padded rows).
2. **BM-NAS fusion** (``nasmerc.modules.bmnas``, the same blocks as RMNAS). Every layer output of
   every modality, projected to ``fusion_dim``, is a candidate feature ``{m}.layer{i}``; ``n_cells``
   cells choose two inputs (``cell{c}.input0``, ``cell{c}.input1``) among the candidates and earlier
   cells' outputs; ``n_steps`` steps per cell choose two states (``cell{c}.step{s}.x`` / ``.y``) and one
   op of ``O_s`` (``cell{c}.step{s}.op``).
3. **Heads and losses** as RMNAS: the fused head's logits are the output; each modality has a head
   ``LN -> Dropout -> Linear`` on its last layer whose task loss is the auxiliary loss
   ``unimodal_{m}`` (weight ``unimodal_weight``).

Input indices of a cell: the layer outputs modality-major in signature order
(``k = modality_index * n_layers + layer``), then cells ``0 .. c-1``; ``BMNASNetwork.candidate_names``
spells them out. Dialogue-level tasks predict every utterance, utterance-level ones read the
global token; regression gives one score per row. ``mask_missing`` (off by default, as in RMNAS):
a missing utterance of ``m`` is not a key of ``m``'s attention, carries zeros into the fusion and
does not count in ``m``'s unimodal loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules import FUSION_OPS
from nasmerc.modules.bmnas import MultiLevelFusionNetwork
from nasmerc.modules.positional import sinusoidal_positions
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace

__all__ = ["BMNASConfig", "BMNASSpace", "BMNASNetwork", "bmnas_default", "bmnas_paper"]


@dataclass
class BMNASConfig:
    """Sizes and switches of the ``bmnas`` space.

    - ``hidden_dim``, ``n_layers``, ``n_heads``, ``ffn_ratio``: the fixed unimodal Transformer encoders;
    - ``n_cells``, ``n_steps``, ``fusion_dim``, ``fusion_ops``: the BM-NAS fusion and its pool ``O_s``;
    - ``dropout``: after the input embedding, inside encoder layers, cells and heads;
    - ``unimodal_weight``: weight of each unimodal branch's task loss;
    - ``mask_missing``: hide missing utterances of a modality from its encoder, fusion and loss.
    """

    hidden_dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ffn_ratio: float = 4.0
    n_cells: int = 2
    n_steps: int = 2
    fusion_dim: int = 64
    fusion_ops: tuple[str, ...] = ("zero", "sum", "attention", "linear_glu", "concat_fc")
    dropout: float = 0.1
    unimodal_weight: float = 1.0
    mask_missing: bool = False


def bmnas_default() -> BMNASConfig:
    """Small: 2 layers x 64, 4 heads, 2 cells x 2 steps of width 64; CPU seconds per epoch."""
    return BMNASConfig()


def bmnas_paper() -> BMNASConfig:
    """RMNAS's fusion sizes (2 cells x 2 steps, fusion dim 240) over 6 layers x 448, 8 heads (RMNAS's
    unimodal widths; the encoders themselves are not the paper's searched blocks)."""
    return BMNASConfig(hidden_dim=448, n_layers=6, n_heads=8, ffn_ratio=4.0, n_cells=2, n_steps=2, fusion_dim=240)


def check_config(cfg: BMNASConfig, signature: DataSignature) -> None:
    """Raise a :class:`NasmercError` naming the first config field or signature entry that cannot work."""
    where = "space 'bmnas'"
    positive = {"hidden_dim": cfg.hidden_dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                "n_cells": cfg.n_cells, "n_steps": cfg.n_steps, "fusion_dim": cfg.fusion_dim}
    for key, value in positive.items():
        if value < 1:
            raise NasmercError(f"{where}: {key}={value}: expected an integer >= 1")
    if cfg.hidden_dim % cfg.n_heads:
        raise NasmercError(f"{where}: hidden_dim={cfg.hidden_dim} must be divisible by n_heads={cfg.n_heads}")
    if cfg.ffn_ratio <= 0:
        raise NasmercError(f"{where}: ffn_ratio={cfg.ffn_ratio}: expected a number > 0")
    if not 0.0 <= cfg.dropout < 1.0 or cfg.unimodal_weight < 0:
        raise NasmercError(f"{where}: expected dropout in [0, 1) and unimodal_weight >= 0, got "
                           f"dropout={cfg.dropout}, unimodal_weight={cfg.unimodal_weight}")
    bad = [n for n in cfg.fusion_ops if n not in FUSION_OPS]
    if not cfg.fusion_ops or bad or len(set(cfg.fusion_ops)) != len(cfg.fusion_ops):
        raise NasmercError(f"{where}: fusion_ops={list(cfg.fusion_ops)}: expected distinct names from {list(FUSION_OPS)}")
    if not signature.modalities or any(m not in signature.dims for m in signature.modalities):
        raise NasmercError(f"{where}: the data signature needs modalities with dims, got "
                           f"modalities={list(signature.modalities)}, dims={signature.dims}")
    if signature.n_outputs < 1:
        raise NasmercError(f"{where}: a classification signature needs classes, got none")


class TransformerBranch(nn.Module):
    """One fixed unimodal encoder: projection, PE, global token, ``n_layers`` Transformer layers.

    ``forward`` returns every layer's output ``[B, N+1, hidden_dim]`` (global token at 0), the
    multi-level candidates of the fusion; :meth:`predict` is the unimodal head on the last one.
    """

    def __init__(self, in_dim: int, cfg: BMNASConfig, n_outputs: int) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        self.embed = nn.Linear(in_dim, hidden)
        self.global_token = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.trunc_normal_(self.global_token, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, cfg.n_heads, dim_feedforward=max(1, int(round(hidden * cfg.ffn_ratio))),
                                       dropout=cfg.dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.n_layers)
        )
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(cfg.dropout), nn.Linear(hidden, n_outputs))

    def forward(self, x: Tensor, speakers: Tensor, nodes: Tensor) -> list[Tensor]:
        """``x`` ``[B, N, D_m]``, ``nodes`` ``[B, N]`` bool (the rows attended to); ``speakers`` unused."""
        b, n, _ = x.shape
        h = self.embed(x)
        h = h + sinusoidal_positions(n, h.shape[-1], h)
        h = self.drop(torch.cat([self.global_token.expand(b, -1, -1), h], dim=1))
        padding = ~torch.cat([nodes.new_ones(b, 1), nodes], dim=1)  # True = not a key
        outs = []
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding)
            outs.append(h)
        return outs

    def predict(self, last: Tensor) -> Tensor:
        return self.head(last)


class BMNASNetwork(MultiLevelFusionNetwork):
    """Fixed unimodal Transformer encoders plus the searched BM-NAS fusion (see module docstring)."""

    def __init__(self, signature: DataSignature, cfg: BMNASConfig, ctx: ChoiceContext) -> None:
        branches = {m: TransformerBranch(int(signature.dims[m]), cfg, signature.n_outputs)
                    for m in signature.modalities}
        names = [f"{m}.layer{i}" for m in signature.modalities for i in range(cfg.n_layers)]
        super().__init__("bmnas", signature, cfg, branches, names, ctx)


class BMNASSpace(SearchSpace):
    """The ``bmnas`` space: BM-NAS cell inputs, step inputs and step ops over fixed encoders."""

    name: ClassVar[str] = "bmnas"
    Config: ClassVar[type] = BMNASConfig
    presets: ClassVar[dict[str, Any]] = {"default": bmnas_default, "paper": bmnas_paper}

    def __init__(self, signature: DataSignature, config: BMNASConfig | None = None) -> None:
        super().__init__(signature, config)
        check_config(self.config, signature)

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return BMNASNetwork(self.signature, self.config, ctx)
