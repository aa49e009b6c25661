"""HAEMSA: hierarchical adaptive experts for multimodal sentiment analysis (Qin, Liu, Zong), as a nasmerc space.

The network follows sec. 3.1 and Figure 2 of the paper:

1. **Experts** (eqs. 1-4). A fine-grained expert per modality, ``h_m = f_m(x_m)``, and a shared
   (unified) expert over the concatenated modalities, ``h_s = f_s([x_t; x_a; x_v])``; which modalities
   feed it is the gene ``shared.inputs``. Each expert (:class:`~nasmerc.modules.experts.SequenceExpert`)
   has its own width (genes ``{m}.width``, ``shared.width``) and a bidirectional GRU over the rows, so
   on dialogue-level data every expert sees the conversation. The paper does not describe ``f``; it
   works on utterances (MOSI / MOSEI clips, IEMOCAP utterances), the GRU is our addition for context.
2. **Hierarchy** (eq. 5). ``depth`` levels; level ``i`` fuses every stream with the shared one,
   ``h_l^(i) = g_l^(i)([h_l^(i-1); h_s^(i-1)])`` for ``l`` in the modalities and ``s``, with one fusion
   function per level (gene ``level{i}.fusion``: concat / sum / gated / attention).
3. **Cross-modal integration** (Figure 2, C), **task-driven feature selection** (D) and **a tower per
   task with task gates** (E): see :mod:`nasmerc.modules.experts`.
4. **Losses.** The main task (the data's classes or score) is the model's ``logits``, which the
   trainer weighs 1. Auxiliary tasks derived from the labels (eq. 6, :func:`plan_tasks`): regression
   scores give polarity (negative / neutral / positive by sign) and intensity (``|score|``); emotion
   classes give polarity when every class name is in ``config.polarity``. Their losses, with learned
   uncertainty weights (Kendall et al. 2018; the paper's "task-specific attention" is unspecified),
   form ``aux_losses["mtl"]`` with weight ``lambda`` (eq. 14's lambda_2..4, one gene). Knowledge
   transfer (eqs. 11-13): ``aux_losses["kl_{m}"] = KL(p_s || p_m)`` between the shared expert's and
   modality ``m``'s expert head, weight ``gamma``; the teacher ``p_s`` is detached (the paper trains
   the modality experts with it, sec. 3.3.3) and rows where ``m`` is missing are skipped.
   ``aux_losses["shared_task"]`` trains the shared expert's head on the transfer target so the
   teacher has something to teach (not in the paper). The transfer target is the main task for
   classification and polarity for regression scores.

Genes, in the order asked: ``depth``, ``{m}.width`` per modality, ``shared.width``, ``shared.inputs``
(a value choice over the non-empty subsets of the modalities written ``'text+audio'``, all of them
first), ``level{i}.fusion`` for every ``i < max(depths)``, ``lambda`` (only when an auxiliary task
exists) and ``gamma``. Levels ``i >= depth`` are asked but not built: population strategies lay out
one genome from ``space.choices()``, so the set of labels must not depend on ``depth``; such a gene
is inert in that architecture.

The paper's evolution (eqs. 8-10: tournament selection, blend crossover, Gaussian mutation) is the
``evolution`` strategy; this space is meant for population strategies, since ``depth``, widths,
``shared.inputs``, ``lambda`` and ``gamma`` are value / float choices. ``--set strategy.weights=evolve``
evolves the experts' weights with their structure, as the paper does (eqs. 9-10 on weights, eq. 8's
validation loss as the fitness). One-shot evaluation (``--set strategy.evaluation=oneshot``) shares
one supernet's weights, so the genes that size weights (``depth``, the widths, ``shared.inputs``) must
be fixed with ``--fix``; ``lambda``, ``gamma`` and the fusion per level are searched on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules.experts import (CONTEXTS, HIERARCHY_FUSIONS, CrossModalIntegration, FusionLevel,
                                     SequenceExpert, TaskFeatureSelection, TaskTowers, UncertaintyWeights,
                                     kl_transfer, masked_mean)
from nasmerc.modules.heads import check_batch
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import loss_of, select_real

__all__ = ["HAEMSAConfig", "HAEMSASpace", "HAEMSANetwork", "TaskSpec", "plan_tasks", "class_polarity",
           "polarity_targets", "intensity_targets", "shared_subsets", "haemsa_default", "haemsa_paper"]

POLARITIES = ("negative", "neutral", "positive")
TASK_WEIGHTINGS = ("uncertainty", "fixed")

#: Class name -> polarity: IEMOCAP (hap/exc positive; sad/ang/fru negative; neu neutral) and MELD
#: (joy/surprise positive; neutral neutral; sadness/anger/fear/disgust negative).
DEFAULT_POLARITY = {
    "hap": "positive", "exc": "positive", "neu": "neutral", "sad": "negative", "ang": "negative",
    "fru": "negative", "joy": "positive", "surprise": "positive", "neutral": "neutral",
    "sadness": "negative", "anger": "negative", "fear": "negative", "disgust": "negative",
}


@dataclass
class HAEMSAConfig:
    """Sizes, gene ranges and switches of the HAEMSA space (the paper gives no sizes).

    - ``depths``, ``widths``, ``fusions``: the candidates of ``depth``, of every expert's width and of
      each level's fusion function; ``lambda_range``, ``gamma_range``: the float genes' bounds.
    - ``dim``: the common width of the hierarchy, integration, selection and towers; ``n_heads``: of
      the cross-modal integration (and ``dim`` must divide by it); ``context``: ``gru`` or ``none``.
    - ``polarity``: class name -> negative / neutral / positive; a polarity task for class labels
      exists only if every class is named here. ``neutral_band``: scores with ``|y| <= band`` are
      neutral. ``aux_polarity`` / ``aux_intensity`` switch the auxiliary tasks off.
    - ``task_weighting``: ``uncertainty`` (learned, Kendall et al.) or ``fixed`` (plain sum).
    - ``shared_weight``: weight of the shared expert head's task loss; ``detach_teacher``: stop the
      KL gradient at the shared expert's prediction.
    """

    depths: tuple[int, ...] = (1, 2, 3)
    widths: tuple[int, ...] = (16, 32, 64)
    fusions: tuple[str, ...] = ("concat", "sum", "gated", "attention")
    lambda_range: tuple[float, float] = (0.0, 1.0)
    gamma_range: tuple[float, float] = (0.0, 1.0)
    dim: int = 32
    n_heads: int = 2
    context: str = "gru"
    dropout: float = 0.1
    polarity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_POLARITY))
    neutral_band: float = 0.0
    aux_polarity: bool = True
    aux_intensity: bool = True
    task_weighting: str = "uncertainty"
    shared_weight: float = 1.0
    detach_teacher: bool = True


def haemsa_default() -> HAEMSAConfig:
    """Small: depth 1-3, expert widths 16/32/64, hierarchy width 32; a candidate epoch takes seconds on a CPU."""
    return HAEMSAConfig()


def haemsa_paper() -> HAEMSAConfig:
    """Larger sizes for real features. The paper reports no widths, depths or loss weights; these are ours:
    depth 1-4, expert widths 64/128/256, hierarchy width 128, 4 heads."""
    return HAEMSAConfig(depths=(1, 2, 3, 4), widths=(64, 128, 256), dim=128, n_heads=4)


# -- tasks and their targets ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSpec:
    """One task of the multi-task objective: ``kind`` is ``classification`` or ``regression``."""

    name: str
    kind: str
    n_outputs: int


def class_polarity(classes: tuple[str, ...], mapping: dict[str, str]) -> tuple[int, ...] | None:
    """Polarity id (index in :data:`POLARITIES`) of every class, or ``None`` when a class is not in
    ``mapping`` or all classes share one polarity (no task to learn then)."""
    if not classes or any(c not in mapping for c in classes):
        return None
    ids = tuple(POLARITIES.index(mapping[c]) for c in classes)
    return ids if len(set(ids)) > 1 else None


def plan_tasks(signature: DataSignature, cfg: HAEMSAConfig) -> list[TaskSpec]:
    """The main task first, then the auxiliary tasks the labels support (see the module docstring)."""
    tasks = [TaskSpec("main", signature.task, signature.n_outputs)]
    if signature.task == "regression":
        if cfg.aux_polarity:
            tasks.append(TaskSpec("polarity", "classification", len(POLARITIES)))
        if cfg.aux_intensity:
            tasks.append(TaskSpec("intensity", "regression", 1))
    elif cfg.aux_polarity and class_polarity(signature.classes, cfg.polarity) is not None:
        tasks.append(TaskSpec("polarity", "classification", len(POLARITIES)))
    return tasks


def polarity_targets(labels: Tensor, task: str, neutral_band: float = 0.0,
                     class_to_polarity: Tensor | None = None) -> Tensor:
    """Polarity ids (0 negative, 1 neutral, 2 positive) of real ``labels``.

    Regression: the sign of the score, neutral when ``|y| <= neutral_band``. Classification: the
    class's polarity through ``class_to_polarity`` ``[n_classes]``.
    """
    if task == "regression":
        y = labels.float()
        out = torch.ones_like(y, dtype=torch.long)
        out[y > neutral_band] = 2
        out[y < -neutral_band] = 0
        return out
    if class_to_polarity is None:
        raise NasmercError("polarity_targets: class labels need a class -> polarity table")
    return class_to_polarity.to(labels.device)[labels.long()]


def intensity_targets(labels: Tensor) -> Tensor:
    """Sentiment intensity ``|y|`` of real regression scores."""
    return labels.float().abs()


def shared_subsets(modalities: tuple[str, ...]) -> list[str]:
    """Candidates of ``shared.inputs``: every non-empty subset as ``'text+audio'``, largest first."""
    return ["+".join(c) for k in range(len(modalities), 0, -1) for c in combinations(modalities, k)]


# -- the network ------------------------------------------------------------------------------------
class HAEMSANetwork(nn.Module):
    """The HAEMSA model for one data signature (Figure 2); see the module docstring for the losses."""

    def __init__(self, signature: DataSignature, cfg: HAEMSAConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.dims = {m: int(signature.dims[m]) for m in self.modalities}
        self.task = signature.task
        self.level = signature.level
        self.cfg = cfg
        n_streams = len(self.modalities) + 1
        self.depth = int(ctx.value("depth", cfg.depths))
        widths = {m: int(ctx.value(f"{m}.width", cfg.widths)) for m in self.modalities}
        shared_width = int(ctx.value("shared.width", cfg.widths))
        self.shared_inputs = tuple(ctx.value("shared.inputs", shared_subsets(self.modalities)).split("+"))
        levels = []
        for i in range(max(cfg.depths)):
            level = ctx.op(f"level{i}.fusion", {
                name: partial(FusionLevel, n_streams, name, cfg.dim, cfg.dropout) for name in cfg.fusions})
            if i < self.depth:  # deeper levels are inert genes of this architecture
                levels.append(level)
        self.levels = nn.ModuleList(levels)
        self.tasks = plan_tasks(signature, cfg)
        self.lambda_ = ctx.float("lambda", *cfg.lambda_range) if len(self.tasks) > 1 else 0.0
        self.gamma = ctx.float("gamma", *cfg.gamma_range)

        self.experts = nn.ModuleDict({
            m: SequenceExpert(self.dims[m], widths[m], cfg.dim, cfg.context, cfg.dropout) for m in self.modalities})
        self.shared = SequenceExpert(sum(self.dims[m] for m in self.shared_inputs), shared_width, cfg.dim,
                                     cfg.context, cfg.dropout)
        self.integration = CrossModalIntegration(cfg.dim, cfg.n_heads, cfg.dropout)
        self.selection = TaskFeatureSelection(len(self.tasks), cfg.dim)
        self.towers = TaskTowers([t.n_outputs for t in self.tasks], cfg.dim, cfg.dropout)
        self.task_weights = (UncertaintyWeights([t.name for t in self.tasks[1:]])
                             if len(self.tasks) > 1 and cfg.task_weighting == "uncertainty" else None)
        # expert heads of the knowledge transfer: the main classes, or polarity for regression scores
        self.transfer = (TaskSpec("main", "classification", signature.n_outputs) if self.task == "classification"
                         else TaskSpec("polarity", "classification", len(POLARITIES)))
        self.heads = nn.ModuleDict({k: nn.Linear(cfg.dim, self.transfer.n_outputs)
                                    for k in (*self.modalities, "shared")})
        table = class_polarity(signature.classes, cfg.polarity) if self.task == "classification" else None
        self.register_buffer("class_to_polarity", torch.tensor(table if table else [], dtype=torch.long),
                             persistent=False)

    def _rows(self, x: Tensor, batch: Batch, real: Tensor) -> Tensor:
        """Per-row outputs ``[B, N, ...]`` to one row per label: real utterances, or a pooled sample."""
        if self.level == "dialogue":
            return x[real]
        return masked_mean(x, real)

    def targets(self, batch: Batch) -> dict[str, Tensor]:
        """The targets of every task on the real rows (one per label), derived from ``batch.labels``."""
        labels = batch.labels[batch.mask] if batch.labels.dim() == 2 else batch.labels
        out: dict[str, Tensor] = {"main": labels}
        if self.task == "regression":
            out["polarity"] = polarity_targets(labels, "regression", self.cfg.neutral_band)
            out["intensity"] = intensity_targets(labels)
        elif self.class_to_polarity.numel():
            out["polarity"] = polarity_targets(labels, "classification", class_to_polarity=self.class_to_polarity)
        return out

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("haemsa", self.signature, batch)
        real = batch.mask.bool()
        present = batch.present.bool() & real.unsqueeze(-1)
        idx = {m: batch.modalities.index(m) for m in self.modalities}
        streams = [self.experts[m](batch.features[m], real) for m in self.modalities]  # eqs. 1-3
        shared_x = torch.cat([batch.features[m] for m in self.shared_inputs], dim=-1)
        streams.append(self.shared(shared_x, real))  # eq. 4
        expert_logits = {k: self.heads[k](self._rows(h, batch, real))
                         for k, h in zip((*self.modalities, "shared"), streams)}
        states = torch.stack(streams)
        for level in self.levels:  # eq. 5
            states = level(states, real)
        available = torch.cat([torch.stack([present[..., idx[m]] for m in self.modalities], -1),
                               real.unsqueeze(-1)], dim=-1)
        z = self.integration(states, available, real)
        u = self.selection(z, available)  # [T, B, N, C]
        if self.level == "utterance":
            u = torch.stack([masked_mean(ut, real) for ut in u])
        outs = self.towers(u)
        logits = outs[0].squeeze(-1) if self.task == "regression" else outs[0]

        targets = self.targets(batch)
        aux: dict[str, Tensor] = {}
        weights: dict[str, float] = {}
        if len(self.tasks) > 1:
            losses = {t.name: loss_of(select_real(o.squeeze(-1) if t.kind == "regression" else o, batch)[0],
                                      targets[t.name], t.kind) for t, o in zip(self.tasks[1:], outs[1:])}
            aux["mtl"] = self.task_weights(losses) if self.task_weights is not None else sum(losses.values())
            weights["mtl"] = float(self.lambda_)
        target = targets[self.transfer.name]
        aux["shared_task"] = loss_of(expert_logits["shared"], target, self.transfer.kind)
        weights["shared_task"] = self.cfg.shared_weight
        for m in self.modalities:  # eqs. 11-13
            seen = present[..., idx[m]]
            keep = seen[real] if self.level == "dialogue" else seen.any(dim=1)
            aux[f"kl_{m}"] = kl_transfer(expert_logits["shared"], expert_logits[m], keep, self.cfg.detach_teacher)
            weights[f"kl_{m}"] = float(self.gamma)
        per_modality: dict[str, Tensor] = {}
        if self.task == "classification":
            for m in self.modalities:
                if self.level == "dialogue":
                    full = logits.new_zeros(logits.shape)
                    full[real] = expert_logits[m]
                    per_modality[m] = full
                else:
                    per_modality[m] = expert_logits[m]
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class HAEMSASpace(SearchSpace):
    """The HAEMSA search space: depth, expert widths, shared-expert inputs, fusion per level, lambda, gamma."""

    name = "haemsa"
    Config = HAEMSAConfig
    presets = {"default": haemsa_default, "paper": haemsa_paper}
    Network = HAEMSANetwork

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        for key, values in (("depths", cfg.depths), ("widths", cfg.widths)):
            if not values or any(int(v) != v or v < 1 for v in values) or len(set(values)) != len(values):
                raise NasmercError(f"{where}: {key}={list(values)}: expected distinct integers >= 1")
        checks.distinct_names(where, "fusions", cfg.fusions, HIERARCHY_FUSIONS)
        checks.positive(where, dim=cfg.dim, n_heads=cfg.n_heads)
        checks.divisible(where, "dim", cfg.dim, "n_heads", cfg.n_heads)
        for key, (low, high) in (("lambda_range", cfg.lambda_range), ("gamma_range", cfg.gamma_range)):
            if not 0.0 <= low <= high:
                raise NasmercError(f"{where}: {key}=({low}, {high}): expected 0 <= low <= high")
        checks.one_of(where, "context", cfg.context, CONTEXTS)
        checks.one_of(where, "task_weighting", cfg.task_weighting, TASK_WEIGHTINGS)
        for name, polarity in cfg.polarity.items():
            checks.one_of(where, f"polarity.{name}", polarity, POLARITIES)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, neutral_band=cfg.neutral_band, shared_weight=cfg.shared_weight)
