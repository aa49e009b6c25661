"""The strategy of a space with nothing to search: train its one architecture to the end.

The default strategy of every degenerate space (the hand-designed models, ``search_spaces/fixed``).
It also trains a searchable space whose value / float choices are all given by ``--fix`` and which
has no op or input choice left. The model is trained by the ordinary trainer for ``train.epochs``
epochs, the best validation epoch kept, and returned with the result, so the search folder holds a
``model.pt`` that ``nasmerc evaluate`` reads at once (``nasmerc retrain`` trains it again from scratch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from nasmerc.errors import NasmercError
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy
from nasmerc.train.trainer import Trainer


@dataclass(frozen=True)
class FixedConfig:
    """No options: the training is configured by ``train.*`` like every other training."""


class Fixed(Strategy):
    """Train the space's one architecture (see module docstring)."""

    name = "fixed"
    Config = FixedConfig
    searches = False

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        for spec in space.choices(fixed):
            if spec.label in fixed:
                continue
            hint = (f"--fix {spec.label}=..." if spec.kind in ("value", "float")
                    else "search it (--strategy darts, router, evolution, random or tpe)")
            raise NasmercError(f"strategy 'fixed': space {space.name!r} leaves the {spec.kind} choice "
                               f"{spec.label!r} open; {hint}")

    def search(self, ctx: SearchContext) -> SearchResult:
        self.check(ctx.space, ctx.fixed)
        arch = ctx.space.canonical(dict(ctx.fixed))
        torch.manual_seed(ctx.seed)
        model = ctx.space.build(arch)
        trainer = Trainer(model, ctx.dataset.signature, ctx.train, device=ctx.device, seed=ctx.seed,
                          events=ctx.events)
        fit = trainer.fit(ctx.dataset.split("train"), ctx.dataset.split("valid"))
        n = count_parameters(model)
        return SearchResult(arch=arch, metric=trainer.metric, best_value=fit.best_value, best_epoch=fit.best_epoch,
                            supernet_parameters=n, derived_parameters=n, extra={"valid": fit.best_metrics},
                            model=model)
