"""BM-NAS fusion blocks (Yin et al. 2022), shared by the spaces that search a BM-NAS fusion.

- :class:`FusionStep`: a cell-step, two inputs chosen among the cell's states fused by one op of
  ``O_s`` (labels ``{cell}.step{s}.x``, ``.y``, ``.op``);
- :class:`FusionCell`: two inputs chosen among the fusion candidates (``cell{c}.input0/1``),
  ``n_steps`` steps, output from all steps plus a skip;
- :class:`BMNASFusion`: candidate projections, ``n_cells`` cells and the fused head;
- :class:`MultiLevelFusionNetwork`: unimodal branches whose every layer feeds the fusion, with the
  fused and unimodal heads and losses.

RMNAS (``search_spaces/rmnas.py``) fuses its MetaFormer blocks' outputs with them, the ``bmnas``
space (``search_spaces/bmnas.py``) fixed Transformer encoders' layer outputs. The blocks read their
sizes from any config object with the fields of :class:`FusionConfig` (both spaces' config
dataclasses have them), which :func:`check_fusion_config` checks. Our departures from BM-NAS
(Linear instead of 1x1 conv, LayerNorm instead of BatchNorm, so that a token never depends on other
tokens or padding) are documented where made.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.fusion_ops import FUSION_OPS
from nasmerc.modules.heads import check_batch
from nasmerc.nas.choices import ChoiceContext, ChosenInputs
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import task_loss

__all__ = ["FusionConfig", "check_fusion_config", "FusionStep", "FusionCell", "BMNASFusion",
           "MultiLevelFusionNetwork"]


class FusionConfig(Protocol):
    """The config fields the fusion blocks and :class:`MultiLevelFusionNetwork` read.

    ``hidden_dim``: width of the features fed in (projected to ``fusion_dim``), ``n_heads`` the heads
    of the branches' attention and ``ffn_ratio`` their feed-forward width relative to it; ``n_cells``,
    ``n_steps``, ``fusion_dim``, ``fusion_ops`` (names in :data:`FUSION_OPS`): the BM-NAS fusion and
    its pool ``O_s``; ``dropout``: in the branches, the cells' merge and the heads;
    ``unimodal_weight``: weight of each branch's task loss; ``mask_missing``: hide missing rows of a
    modality from its branch and its loss.
    """

    hidden_dim: int
    n_heads: int
    ffn_ratio: float
    n_cells: int
    n_steps: int
    fusion_dim: int
    fusion_ops: tuple[str, ...]
    dropout: float
    unimodal_weight: float
    mask_missing: bool


def check_fusion_config(where: str, cfg: FusionConfig) -> None:
    """Refuse sizes the fusion and the branches' attention cannot work with, naming the first bad field."""
    checks.positive(where, hidden_dim=cfg.hidden_dim, n_heads=cfg.n_heads, n_cells=cfg.n_cells,
                    n_steps=cfg.n_steps, fusion_dim=cfg.fusion_dim)
    checks.divisible(where, "hidden_dim", cfg.hidden_dim, "n_heads", cfg.n_heads)
    checks.greater_than_zero(where, ffn_ratio=cfg.ffn_ratio)
    checks.dropout(where, cfg.dropout)
    checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)
    checks.distinct_names(where, "fusion_ops", cfg.fusion_ops, FUSION_OPS)


class FusionStep(nn.Module):
    """A BM-NAS cell-step: two inputs chosen among the cell's states, fused by one op of ``O_s``.

    Every input choice of the fusion (here and :class:`FusionCell`'s) reduces by ``sum``: RMNAS eq. 13
    writes a cell or step input as ``X_k = sum_{h_c} sum_{o_c in {Identity, Zero}} w o_c(h_c)``, so
    the fixed form of several kept inputs is the sum of the selected ones (Identity), the others
    being Zero; with one input, the input itself. How a supernet weighs the inputs is the
    strategy's hook (DARTS: eq. 13's per-input gates, ``nasmerc.nas.choices.gated_inputs``).
    """

    def __init__(self, label: str, n_states: int, cfg: FusionConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        names = ["input0", "input1"] + [f"step{s}" for s in range(n_states - 2)]
        self.x = ctx.inputs(f"{label}.x", n_states, 1, reduction="sum", names=names)
        self.y = ctx.inputs(f"{label}.y", n_states, 1, reduction="sum", names=names)
        self.op = ctx.op(f"{label}.op", {name: partial(FUSION_OPS[name], cfg.fusion_dim) for name in cfg.fusion_ops})

    def forward(self, states: Sequence[Tensor], mask: Tensor) -> Tensor:
        """``op(x, y, mask)`` on the two chosen states, ``[B, N+1, fusion_dim]``."""
        return self.op(self.x(states), self.y(states), mask)


class FusionCell(nn.Module):
    """A BM-NAS cell: two chosen inputs, ``n_steps`` steps, output from all steps plus a skip.

    As in BM-NAS's cell: ``out = LN(merge([s_0; ...; s_{n-1}]) + x)`` with ``x`` the first input and
    ``merge = Dropout(ReLU(Linear(n_steps C -> C)))`` (BM-NAS: 1x1 conv + BatchNorm + ReLU; no
    BatchNorm here, see the module docstring); with one step, ``merge`` is the identity. The RMNAS
    paper's "each Cell initially receives the input duplicated as two copies" is BM-NAS searching
    with one mixed input fed twice; a strategy may do that through the two input choices, which a
    fixed architecture may also set to the same candidate.
    """

    def __init__(self, index: int, candidate_names: Sequence[str], cfg: FusionConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        dim = cfg.fusion_dim
        n_candidates = len(candidate_names)
        self.inputs = nn.ModuleList(ctx.inputs(f"cell{index}.input{k}", n_candidates, 1, reduction="sum",
                                               names=candidate_names)
                                    for k in range(2))
        self.steps = nn.ModuleList(FusionStep(f"cell{index}.step{s}", 2 + s, cfg, ctx) for s in range(cfg.n_steps))
        self.merge = (nn.Sequential(nn.Linear(cfg.n_steps * dim, dim), nn.ReLU(), nn.Dropout(cfg.dropout))
                      if cfg.n_steps > 1 else nn.Identity())
        self.norm = nn.LayerNorm(dim)

    def chosen(self, n_candidates: int) -> set[int]:
        """The candidate indices this cell reads: all of them for a supernet."""
        used: set[int] = set()
        for sel in self.inputs:
            used |= set(sel.indices) if isinstance(sel, ChosenInputs) else set(range(n_candidates))
        return used

    def forward(self, candidates: Sequence[Tensor | None], mask: Tensor) -> Tensor:
        states = [sel(candidates) for sel in self.inputs]
        for step in self.steps:
            states.append(step(states, mask))
        out = self.merge(torch.cat(states[2:], dim=-1))
        return self.norm(out + states[0]) * mask.unsqueeze(-1).to(out.dtype)


class BMNASFusion(nn.Module):
    """Multi-level fusion (BM-NAS): candidate projections, cells, and the fused head.

    ``level_names`` name the unimodal features offered to the cells (``text.block0``, ...); cell
    ``c`` chooses among them and the outputs of cells ``0 .. c-1`` (``candidate_names``).
    Candidate projections are BM-NAS's reshape layers, ``ReLU(LN(Linear(hidden -> fusion_dim)))``
    (BatchNorm replaced by LayerNorm), zeroed on tokens the branch did not mix. A fixed
    architecture keeps only the projections of candidates some cell reads. The head reads the
    concatenation of every cell's output through ``LN -> ReLU -> Dropout -> Linear`` as BM-NAS does;
    ``context`` (not in BM-NAS; default none) are blocks ``block(z, None, mask) -> z`` over that
    concatenation, ``[B, N+1, n_cells * fusion_dim]``, before the head: a context model on the fused
    sequence.
    """

    def __init__(self, level_names: list[str], cfg: FusionConfig, n_outputs: int, ctx: ChoiceContext,
                 context: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.context = nn.ModuleList(context)
        n_levels = len(level_names)
        self.candidate_names = list(level_names) + [f"cell{c}" for c in range(cfg.n_cells)]
        self.cells = nn.ModuleList(FusionCell(c, self.candidate_names[: n_levels + c], cfg, ctx)
                                   for c in range(cfg.n_cells))
        used = set().union(*(cell.chosen(n_levels + c) for c, cell in enumerate(self.cells)))
        self.level_keys = [name.replace(".", "_") for name in level_names]
        self.projections = nn.ModuleDict({
            self.level_keys[k]: nn.Sequential(nn.Linear(cfg.hidden_dim, cfg.fusion_dim),
                                              nn.LayerNorm(cfg.fusion_dim), nn.ReLU())
            for k in range(n_levels) if k in used
        })
        width = cfg.n_cells * cfg.fusion_dim
        self.head = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(width, n_outputs))

    def forward(self, levels: Sequence[Tensor], level_masks: Sequence[Tensor], mask: Tensor) -> Tensor:
        """Fused logits ``[B, N+1, n_outputs]`` from the level features and their token masks."""
        candidates: list[Tensor | None] = []
        for key, feat, keep in zip(self.level_keys, levels, level_masks):
            proj = self.projections[key] if key in self.projections else None
            candidates.append(proj(feat) * keep.unsqueeze(-1).to(feat.dtype) if proj is not None else None)
        outs = []
        for cell in self.cells:
            outs.append(cell(candidates, mask))
            candidates.append(outs[-1])
        fused = torch.cat(outs, dim=-1)
        for block in self.context:
            fused = block(fused, None, mask)
        return self.head(fused)


class MultiLevelFusionNetwork(nn.Module):
    """Unimodal branches whose every layer output is a candidate of a searched BM-NAS fusion.

    Shared by the ``rmnas`` and ``bmnas`` spaces, which differ only in their branches. A branch is
    called as ``branch(x [B, N, D_m], speakers [B, N], nodes [B, N]) -> [B, N+1, hidden] per layer``
    (global token at 0) and predicts with ``branch.head``, a :class:`~nasmerc.modules.heads.TaskHead`
    (``norm=True``, ``LN -> Dropout -> Linear``) applied to every token of its last layer.
    ``forward(batch)`` returns the fused logits, each branch's logits in ``per_modality_logits`` and
    its task loss in ``aux_losses["unimodal_{m}"]`` ("each single-modal branch and the BM-NAS branch
    calculate the loss", RMNAS). With ``mask_missing`` a missing utterance is not a node of its
    modality's branch and that modality's unimodal loss counts only rows where it is present.
    ``context``: blocks over the fused sequence before the fused head (:class:`BMNASFusion`).
    """

    def __init__(self, space: str, signature: DataSignature, cfg: FusionConfig, branches: Mapping[str, nn.Module],
                 level_names: list[str], ctx: ChoiceContext, context: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.space = space
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.task = signature.task
        self.level = signature.level
        self.mask_missing = bool(cfg.mask_missing)
        self.unimodal_weight = float(cfg.unimodal_weight)
        self.branches = nn.ModuleDict(dict(branches))
        self.fusion = BMNASFusion(level_names, cfg, signature.n_outputs, ctx, context)

    @property
    def candidate_names(self) -> list[str]:
        """What each fusion input index means: the branches' layer outputs, then cell outputs."""
        return self.fusion.candidate_names

    def _readout(self, tokens: Tensor) -> Tensor:
        """Dialogue: every utterance (drop the global token); utterance level: the global token."""
        out = tokens[:, 1:] if self.level == "dialogue" else tokens[:, 0]
        return out.squeeze(-1) if self.task == "regression" else out

    def _unimodal_loss(self, logits: Tensor, batch: Batch, nodes: Tensor) -> Tensor:
        """The task loss of one branch; with ``mask_missing``, only over rows the modality is seen."""
        if not self.mask_missing:
            return task_loss(logits, batch, self.task)
        if self.level == "dialogue":
            if not nodes.any():
                return logits.sum() * 0.0
            return task_loss(logits, replace(batch, mask=nodes), self.task)
        seen = nodes.any(dim=1)
        if not seen.any():
            return logits.sum() * 0.0
        return task_loss(logits[seen], replace(batch, labels=batch.labels[seen]), self.task)

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch(self.space, self.signature, batch)
        real = batch.mask.bool()
        ones = real.new_ones(real.shape[0], 1)
        levels: list[Tensor] = []
        level_masks: list[Tensor] = []
        per_modality: dict[str, Tensor] = {}
        aux: dict[str, Tensor] = {}
        for m, branch in self.branches.items():
            nodes = real
            if self.mask_missing:
                nodes = real & batch.present[..., batch.modalities.index(m)].bool()
            outs = branch(batch.features[m], batch.speakers, nodes)
            per_modality[m] = self._readout(branch.head.per_row(outs[-1]))
            aux[f"unimodal_{m}"] = self._unimodal_loss(per_modality[m], batch, nodes)
            levels.extend(outs)
            level_masks.extend([torch.cat([ones, nodes], dim=1)] * len(outs))
        fused = self.fusion(levels, level_masks, torch.cat([ones, real], dim=1))
        return ModelOutput(
            logits=self._readout(fused),
            aux_losses=aux,
            aux_weights={name: self.unimodal_weight for name in aux},
            per_modality_logits=per_modality,
        )
