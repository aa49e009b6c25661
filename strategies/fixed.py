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

from nasmerc.errors import NasmercError
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy
from nasmerc.outputs import count_parameters


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
            if spec.label not in fixed:
                raise NasmercError(f"strategy 'fixed': space {space.name!r} leaves the {spec.kind} choice "
                                   f"{spec.label!r} open; {spec.unresolved_hint()}")

    def search(self, ctx: SearchContext) -> SearchResult:
        self.check(ctx.space, ctx.fixed)
        arch = ctx.space.canonical(dict(ctx.fixed))
        model = ctx.evaluator.build(arch)
        fit = ctx.evaluator.fit(model)
        n = count_parameters(model)
        return SearchResult(arch=arch, metric=ctx.evaluator.metric, best_value=fit.best_value,
                            best_epoch=fit.best_epoch, supernet_parameters=n, derived_parameters=n,
                            extra={"valid": fit.best_metrics}, model=model)
