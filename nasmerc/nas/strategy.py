"""The strategy base class and what passes between a search and the run folder.

A strategy sees a :class:`SearchContext` (the space, the data, the training config, the device, the
seed, the event stream and the run folder) and returns a :class:`SearchResult`: a plain
architecture mapping plus the numbers that describe the search. It attaches its own state to the
space's choice points from outside (see ``nasmerc.nas.choices``) and never imports a space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.conversation import ConversationDataset
from nasmerc.events import Events
from nasmerc.nas.space import SearchSpace
from nasmerc.train.trainer import TrainConfig


@dataclass
class SearchContext:
    space: SearchSpace
    dataset: ConversationDataset
    train: TrainConfig
    device: torch.device
    seed: int
    events: Events
    run_dir: Path
    fixed: Mapping[str, Any] = field(default_factory=dict)


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
    model: nn.Module | None = None
    """The trained model of ``arch`` when the strategy trained it to the end (``fixed``): written to
    the run folder as ``model.pt``, ready for ``nasmerc evaluate``."""


class Strategy(ABC):
    """Base of every strategy: a ``Config`` dataclass and :meth:`search`.

    ``search`` is called once per run. ``derive`` is called by ``nasmerc export`` to derive the
    architecture again from the files a finished search left in its run folder; strategies whose
    result is the architecture itself need not override it.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    searches: ClassVar[bool] = True
    """False for the ``fixed`` strategy, the one that takes spaces with nothing to search."""

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

    def derive(self, space: SearchSpace, run_dir: Path, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        """The architecture, derived again from ``run_dir`` (``None``: use the saved ``arch.yaml``)."""
        return None



def require_something_to_search(strategy: Strategy, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
    """Refuse a searching strategy on a space with nothing left to choose once ``fixed`` is applied,
    naming the way out."""
    from nasmerc.errors import NasmercError

    if not strategy.searches:
        return
    specs = space.choices(fixed)
    if all(spec.label in fixed for spec in specs):
        what = "has no choice points" if not specs else "has every choice fixed by --fix"
        raise NasmercError(f"space {space.name!r} {what}: nothing for strategy {strategy.name!r} to search; "
                           "use --strategy fixed (it trains the one architecture)")


def require_fixed_values(space: SearchSpace, fixed: Mapping[str, Any]) -> None:
    """For supernet strategies: every value / float choice must be fixed (``--fix label=value``)."""
    from nasmerc.nas.choices import UnresolvedChoice

    for spec in space.choices(fixed):
        if spec.kind in ("value", "float") and spec.label not in fixed:
            raise UnresolvedChoice(spec)


def inactive_labels(space: SearchSpace, fixed: Mapping[str, Any]) -> list[str]:
    """Op / input choices the space asks for but its supernet does not hold as modules (say, the
    fusion of a level beyond a fixed depth): they have no effect, so a derived architecture gives
    them their first candidate."""
    from nasmerc.nas.choices import choice_modules

    present = {c.label for c in choice_modules(space.supernet(fixed))}
    return [s.label for s in space.choices(fixed) if s.kind in ("op", "input") and s.label not in present]
