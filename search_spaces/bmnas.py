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
   op of ``O_s`` (``cell{c}.step{s}.op``). An input that selects several candidates (a DARTS
   threshold derivation of RMNAS eq. 13's Identity / Zero gates) is their sum.
3. **Heads and losses** as RMNAS: the fused head's logits are the output; each modality has a head
   ``LN -> Dropout -> Linear`` (:class:`~nasmerc.modules.heads.TaskHead`) on its last layer whose
   task loss is the auxiliary loss ``unimodal_{m}`` (weight ``unimodal_weight``).

Input indices of a cell: the layer outputs modality-major in signature order
(``k = modality_index * n_layers + layer``), then cells ``0 .. c-1``; ``BMNASNetwork.candidate_names``
spells them out. Dialogue-level tasks predict every utterance, utterance-level ones read the
global token; regression gives one score per row. ``mask_missing`` (off by default, as in RMNAS):
a missing utterance of ``m`` is not a key of ``m``'s attention, carries zeros into the fusion and
does not count in ``m``'s unimodal loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.bmnas import MultiLevelFusionNetwork, check_fusion_config
from nasmerc.modules.heads import TaskHead
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


class TransformerBranch(nn.Module):
    """One fixed unimodal encoder: projection, PE, global token, ``n_layers`` Transformer layers.

    ``forward`` returns every layer's output ``[B, N+1, hidden_dim]`` (global token at 0), the
    multi-level candidates of the fusion; ``head`` is the unimodal head on the last one.
    """

    def __init__(self, in_dim: int, signature: DataSignature, cfg: BMNASConfig) -> None:
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
        self.head = TaskHead(hidden, signature, cfg.dropout, norm=True)

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


class BMNASNetwork(MultiLevelFusionNetwork):
    """Fixed unimodal Transformer encoders plus the searched BM-NAS fusion (see module docstring)."""

    def __init__(self, signature: DataSignature, cfg: BMNASConfig, ctx: ChoiceContext) -> None:
        branches = {m: TransformerBranch(int(signature.dims[m]), signature, cfg) for m in signature.modalities}
        names = [f"{m}.layer{i}" for m in signature.modalities for i in range(cfg.n_layers)]
        super().__init__("bmnas", signature, cfg, branches, names, ctx)


class BMNASSpace(SearchSpace):
    """The ``bmnas`` space: BM-NAS cell inputs, step inputs and step ops over fixed encoders."""

    name = "bmnas"
    Config = BMNASConfig
    presets = {"default": bmnas_default, "paper": bmnas_paper}
    Network = BMNASNetwork

    def check_config(self) -> None:
        check_fusion_config(self.where, self.config)
        checks.positive(self.where, n_layers=self.config.n_layers)
