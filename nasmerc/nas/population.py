"""What population strategies (random search, evolution, TPE) share: genomes and candidate training.

As in PyGlove's regularized evolution, the algorithms see only an *encoded* architecture. A space's
choice points (``SearchSpace.choices(fixed)``) are laid out as a flat list of genes
(:func:`genes`):

- an ``op`` or ``value`` choice is one categorical gene, the index of the chosen candidate;
- an ``input`` choice with ``n_chosen = k`` is ``k`` categorical genes, ``k`` *distinct* input indices
  (their order carries no meaning; :func:`decode` sorts them);
- a ``float`` choice is one real gene in ``[low, high]``.

Labels in ``fixed`` (``--fix``) are not genes: :func:`decode` copies them into every architecture.

:func:`evaluate_candidate` builds one architecture and trains it for a few epochs with a silent event
stream (a candidate's per-epoch events would confuse the dashboard of the search); its top-level form
:func:`evaluate_task` takes one picklable :class:`CandidateTask`, so it can run in a process pool.
:class:`TrialLog` records every evaluated candidate, emits its ``trial`` event and turns the best one
into a :class:`~nasmerc.nas.strategy.SearchResult`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from nasmerc import metrics
from nasmerc.data.conversation import ConversationDataset
from nasmerc.errors import NasmercError
from nasmerc.events import CallbackSink, Events
from nasmerc.nas.choices import ChoiceSpec, UnresolvedChoice
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchResult
from nasmerc.train.trainer import TrainConfig, Trainer

Genome = list
"""A genome is a plain list of genes (ints for categorical genes, floats for float genes); DEAP's
individuals are list subclasses, so they are genomes too."""


@dataclass(frozen=True)
class Gene:
    """One position of a genome: ``size`` categories (indices ``0..size-1``) or a real in ``[low, high]``.

    ``spec`` is the index of the choice the gene belongs to: the ``k`` genes of an input choice share
    it and must hold distinct indices.
    """

    label: str
    kind: str  # "categorical" | "float"
    spec: int
    size: int = 0
    low: float = 0.0
    high: float = 0.0


def searched(specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> list[ChoiceSpec]:
    """The specs that are genes: every spec whose label is not in ``fixed``."""
    fixed = fixed or {}
    return [s for s in specs if s.label not in fixed]


def genes(specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> list[Gene]:
    """The gene layout of ``specs`` (see the module docstring)."""
    out: list[Gene] = []
    for i, spec in enumerate(searched(specs, fixed)):
        if spec.kind == "float":
            out.append(Gene(spec.label, "float", i, low=spec.low, high=spec.high))
        elif spec.kind == "input":
            out.extend(Gene(spec.label, "categorical", i, size=spec.n_candidates) for _ in range(spec.n_chosen))
        elif spec.kind in ("op", "value"):
            out.append(Gene(spec.label, "categorical", i, size=len(spec.candidates)))
        else:
            raise NasmercError(f"choice {spec.label!r}: unknown kind {spec.kind!r}")
    return out


def encode(arch: Mapping[str, Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> Genome:
    """The genome of ``arch`` (its ``fixed`` labels left out)."""
    genome: Genome = []
    for spec in searched(specs, fixed):
        if spec.label not in arch:
            raise NasmercError(f"architecture: choice {spec.label!r} is missing")
        choice = spec.check(arch[spec.label])
        if spec.kind == "float":
            genome.append(float(choice))
        elif spec.kind == "input":
            genome.extend(int(i) for i in choice)
        else:
            genome.append(spec.candidates.index(choice))
    return genome


def decode(genome: Sequence[Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture of ``genome``: every label of ``specs``, ``fixed`` ones copied from ``fixed``."""
    fixed = fixed or {}
    layout = genes(specs, fixed)
    if len(genome) != len(layout):
        raise NasmercError(f"genome of {len(genome)} genes for a space of {len(layout)} genes")
    arch: dict[str, Any] = {}
    pos = 0
    for spec in specs:
        if spec.label in fixed:
            arch[spec.label] = spec.check(fixed[spec.label])
            continue
        if spec.kind == "float":
            arch[spec.label] = spec.check(float(genome[pos]))
            pos += 1
        elif spec.kind == "input":
            arch[spec.label] = spec.check([int(i) for i in genome[pos: pos + spec.n_chosen]])
            pos += spec.n_chosen
        else:
            arch[spec.label] = spec.candidates[int(genome[pos])]
            pos += 1
    return arch


def sample_genome(layout: Sequence[Gene], rng: np.random.Generator) -> Genome:
    """A uniformly random genome: categories uniform, distinct per input choice; floats uniform."""
    genome: Genome = []
    for i, gene in enumerate(layout):
        if gene.kind == "float":
            genome.append(float(rng.uniform(gene.low, gene.high)))
        else:
            taken = {genome[j] for j in range(i) if layout[j].spec == gene.spec}
            free = [c for c in range(gene.size) if c not in taken]
            genome.append(int(free[int(rng.integers(len(free)))]))
    return genome


def sample_arch(specs: Sequence[ChoiceSpec], rng: np.random.Generator,
                fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A uniformly random architecture of ``specs`` (``fixed`` labels as given)."""
    return decode(sample_genome(genes(specs, fixed), rng), specs, fixed)


# -- candidates ------------------------------------------------------------------------------------
@dataclass
class CandidateResult:
    """One trained candidate: validation ``value`` of the primary metric and all its ``metrics``."""

    value: float
    metrics: dict[str, float]
    parameters: int
    seconds: float


def evaluate_candidate(space: SearchSpace, dataset: ConversationDataset, train_cfg: TrainConfig,
                       arch: Mapping[str, Any], epochs: int, device: torch.device | str = "cpu",
                       seed: int = 0, on_epoch: Callable[[int, float], None] | None = None) -> CandidateResult:
    """Build ``space.build(arch)`` (after ``torch.manual_seed(seed)``), train it ``epochs`` epochs with a
    silent event stream, and return the best validation value of the primary metric.

    ``on_epoch(epoch, value)``, when given, is called after every epoch (``epoch`` 0-based, ``value``
    that epoch's validation value of the primary metric); it may raise to stop the training (TPE's
    pruning does), and the exception propagates to the caller."""
    start = time.time()
    torch.manual_seed(seed)
    model = space.build(arch)
    cfg = dataclasses.replace(train_cfg, epochs=epochs)
    events = Events()
    if on_epoch is not None:
        events.add(CallbackSink(lambda e: on_epoch(int(e["epoch"]) - 1, float(e["value"]))
                                if e["type"] == "epoch" else None))
    trainer = Trainer(model, dataset.signature, cfg, device=device, seed=seed, events=events)
    fit = trainer.fit(dataset.split("train"), dataset.split("valid"))
    if not np.isfinite(fit.best_value):
        raise NasmercError(f"candidate {dict(arch)} gave no finite validation {trainer.metric}")
    return CandidateResult(float(fit.best_value), dict(fit.best_metrics), count_parameters(model), time.time() - start)


@dataclass
class CandidateTask:
    """Everything :func:`evaluate_task` needs, picklable for a process pool (device as a string)."""

    space: SearchSpace
    dataset: ConversationDataset
    train: TrainConfig
    arch: dict[str, Any]
    epochs: int
    device: str
    seed: int


def evaluate_task(task: CandidateTask) -> CandidateResult:
    """:func:`evaluate_candidate` of one task: a top-level function, so process pools can pickle it."""
    return evaluate_candidate(task.space, task.dataset, task.train, task.arch, task.epochs, task.device, task.seed)


def init_worker(threads: int) -> None:
    """Process-pool initializer: the parent's torch thread count, so results match a serial run."""
    torch.set_num_threads(threads)


# -- the record of a search --------------------------------------------------------------------------
@dataclass
class TrialLog:
    """Every evaluated candidate of one search, in order; emits one ``trial`` event per candidate.

    ``trial`` event: ``trial`` (1-based), ``arch``, ``value``, ``best`` (best so far), ``metric``,
    ``parameters``, ``seconds``.
    """

    metric: str
    events: Events
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_index: int | None = None

    @property
    def best(self) -> dict[str, Any] | None:
        return None if self.best_index is None else self.trials[self.best_index]

    def add(self, arch: Mapping[str, Any], result: CandidateResult, *, eligible: bool = True,
            **extra: Any) -> dict[str, Any]:
        """Record one candidate; ``eligible=False`` (say, a pruned trial) records it without letting it be
        the best (its event's ``best`` is ``None`` while no eligible trial is recorded)."""
        record = {"trial": len(self.trials) + 1, "arch": dict(arch), "value": result.value,
                  "metrics": result.metrics, "parameters": result.parameters, "seconds": result.seconds, **extra}
        self.trials.append(record)
        best = self.best
        if eligible and metrics.is_better(self.metric, result.value, None if best is None else best["value"]):
            self.best_index = len(self.trials) - 1
        self.events.emit("trial", trial=record["trial"], arch=record["arch"], value=result.value,
                         best=None if self.best_index is None else self.trials[self.best_index]["value"],
                         metric=self.metric,
                         parameters=result.parameters, seconds=result.seconds, **extra)
        return record


def supernet_parameters(space: SearchSpace, fixed: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> int:
    """Parameters of ``space.supernet(fixed)``, or of the largest candidate when value / float choices
    are unresolved (no supernet can be built then)."""
    try:
        return count_parameters(space.supernet(fixed))
    except UnresolvedChoice:
        return max((int(t["parameters"]) for t in trials), default=0)


def search_result(space: SearchSpace, fixed: Mapping[str, Any], log: TrialLog, best_epoch: int | None = None,
                  trial: int | None = None, **extra: Any) -> SearchResult:
    """The :class:`SearchResult` of the best trial of ``log`` (or of trial number ``trial`` when given,
    e.g. the hall of fame's). ``best_epoch`` defaults to the chosen trial's number."""
    best = log.best if trial is None else log.trials[trial - 1]
    if best is None:
        raise NasmercError("the search evaluated no candidate: expected at least one trial")
    return SearchResult(
        arch=dict(best["arch"]), metric=log.metric, best_value=float(best["value"]),
        best_epoch=int(best_epoch if best_epoch is not None else best["trial"]),
        supernet_parameters=supernet_parameters(space, fixed, log.trials),
        derived_parameters=int(best["parameters"]),
        extra={"valid": best["metrics"], "best_trial": best["trial"], "trials": log.trials, **extra},
    )


def check_positive(strategy: str, **values: int) -> None:
    """Refuse a count below 1, naming the strategy option."""
    for name, value in values.items():
        if value < 1:
            raise NasmercError(f"strategy {strategy!r}: {name}={value}: expected an integer >= 1")
