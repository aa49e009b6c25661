"""The strategy base class and what passes between a search and the run folder.

A strategy sees a :class:`SearchContext` (the space, the data, the ``--fix`` values, the event
stream, the run folder and the :class:`~nasmerc.nas.evaluator.Evaluator` that trains everything) and
returns a :class:`SearchResult`: a plain architecture mapping plus the numbers that describe the
search. It attaches its own state to the space's choice points from outside (see
``nasmerc.nas.choices``), writes and reads its own files in the run folder, and never imports a
space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.conversation import ConversationDataset
from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.nas.specs import ChoiceSpec, UnresolvedChoice
from nasmerc.nas.evaluator import Evaluator
from nasmerc.nas.space import SearchSpace
from nasmerc.train.trainer import TrainConfig


@dataclass
class SearchContext:
    """What a strategy's :meth:`Strategy.search` sees: the space, the data, the ``--fix`` values, the
    event stream, the run folder (for the strategy's own files) and the :class:`Evaluator` that trains
    everything (made from the training config, device, seed and worker count)."""

    space: SearchSpace
    dataset: ConversationDataset
    train: TrainConfig
    device: torch.device
    seed: int
    events: Events
    run_dir: Path
    fixed: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 1
    resuming: bool = False
    """True when the run replays an earlier, unfinished life of itself (``--resume``): the evaluator
    answers finished work from the run folder; a strategy whose files are derived state starts them
    again (TPE's run-folder study)."""
    best_so_far: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
    """Called with the best architecture so far and its numbers as a search goes (population
    strategies, after every trial): the run folder writes it as ``arch.yaml``,
    so an interrupted search keeps its best candidate."""
    evaluator: Evaluator = field(init=False)

    def __post_init__(self) -> None:
        self.evaluator = Evaluator(self.space, self.dataset, self.train, device=self.device, seed=self.seed,
                                   events=self.events, run_dir=self.run_dir, fixed=self.fixed, workers=self.workers)


@dataclass
class SearchResult:
    """The found architecture and the numbers of the search (written to ``search.json``)."""

    arch: dict[str, Any]
    metric: str
    best_value: float
    best_epoch: int
    supernet_parameters: int
    derived_parameters: int
    extra: dict[str, Any] = field(default_factory=dict)
    """The strategy's own numbers, written to ``search.json`` beside the common ones."""
    summary: dict[str, Any] = field(default_factory=dict)
    """What the ``search`` section of ``arch.yaml`` carries beside the common numbers (the router's
    leading shares); the workflow copies it without reading it."""
    model: nn.Module | None = None
    """The trained model of ``arch`` when the strategy trained it to the end (``fixed``): written to
    the run folder as ``model.pt``, ready for ``nasmerc evaluate``."""


class Strategy(ABC):
    """Base of every strategy: a ``Config`` dataclass and :meth:`search`.

    ``Config`` checks its own values in ``__post_init__`` (``nasmerc.checks``), so a bad
    ``--set strategy.KEY=VALUE`` stops before any run folder exists. :meth:`check` is called before
    the run folder exists too, with the space and the ``--fix`` values. ``search`` is called once per
    run; it trains through ``ctx.evaluator`` and keeps its own files in ``ctx.run_dir``. ``derive`` is
    called by ``nasmerc export`` to derive the architecture again from the files a finished search
    left in its run folder; strategies whose result is the architecture itself need not override it.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    searches: ClassVar[bool] = True
    """False for the ``fixed`` strategy, the one that takes spaces with nothing to search."""
    shortcuts: ClassVar[tuple[str, ...]] = ()
    """Config fields offered as command-line flags of ``nasmerc search`` (``trials`` gives
    ``--trials N``, the same as ``--set strategy.trials=N``)."""

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> "Strategy":
        return cls(apply_overrides(cls.Config(), dict(overrides or {}), where=f"strategy {cls.name!r}"))

    def config_dict(self) -> dict[str, Any]:
        return to_plain(self.config)

    @abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search; emit events on ``ctx.events``; keep files in ``ctx.run_dir``."""

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """Refuse a space this strategy cannot search, before any run folder exists (default: accept)."""

    def check_data(self, dataset: ConversationDataset) -> None:
        """Refuse options the data cannot serve, before any run folder exists (default: accept)."""

    def derive(self, space: SearchSpace, run_dir: Path, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        """The architecture, derived again from ``run_dir`` (``None``: use the saved ``arch.yaml``)."""
        return None

    def check_resume(self, run_dir: Path) -> None:
        """Refuse to resume ``run_dir`` when this strategy cannot, before anything in it changes
        (default: every run can be resumed)."""


def require_something_to_search(strategy: Strategy, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
    """Refuse a searching strategy on a space with nothing left to choose once ``fixed`` is applied,
    naming the way out."""
    if not strategy.searches:
        return
    specs = space.choices(fixed)
    if all(spec.label in fixed for spec in specs):
        what = "has no choice points" if not specs else "has every choice fixed by --fix"
        raise NasmercError(f"space {space.name!r} {what}: nothing for strategy {strategy.name!r} to search; "
                           "use --strategy fixed (it trains the one architecture)")


def require_fixed_values(space: SearchSpace, fixed: Mapping[str, Any]) -> None:
    """For supernet strategies: every value / float choice must be fixed (``--fix label=value``)."""
    for spec in space.choices(fixed):
        if not spec.in_supernet and spec.label not in fixed:
            raise UnresolvedChoice(spec)


def derive_from_weights(specs: Sequence[ChoiceSpec], weights: Mapping[str, Sequence[float]],
                        fixed: Mapping[str, Any], inactive: Sequence[str], source: str,
                        threshold: float | None = None) -> dict[str, Any]:
    """The discrete architecture of per-choice weights (DARTS' ``alpha``, the router's shares): each op
    and input choice by :meth:`~nasmerc.nas.specs.ChoiceSpec.derive` (the argmax), or with
    ``threshold`` by :meth:`~nasmerc.nas.specs.ChoiceSpec.derive_kept` (every candidate whose weight
    reaches it, RMNAS fig. 4; the weights must then be softmax weights or gates, not logits), value /
    float choices from ``fixed``, and ``inactive`` choices (asked, but not in the supernet: no effect
    on the model) their first candidate. A choice without weights, or with as many weights as it has
    no candidates, is refused naming ``source``."""
    arch: dict[str, Any] = {}
    for spec in specs:
        if not spec.in_supernet:
            arch[spec.label] = fixed[spec.label]
        elif spec.label in weights:
            w = list(weights[spec.label])
            if len(w) != spec.n_options:
                raise NasmercError(f"{source}: choice {spec.label!r} has {len(w)} weights, expected {spec.n_options}")
            arch[spec.label] = spec.derive(w) if threshold is None else spec.derive_kept(w, threshold)
        elif spec.label in inactive:
            arch[spec.label] = spec.first()
        else:
            raise NasmercError(f"{source}: no weights for choice {spec.label!r}; was it written by this space?")
    return arch
