"""Random search: sample ``trials`` architectures uniformly, train each briefly, keep the best.

The baseline every population strategy must beat (Li and Talwalkar, "Random search and
reproducibility for NAS"). Every value / float choice not fixed by ``--fix`` is sampled too. Trial
``i`` is sampled from ``numpy.random.default_rng(seed)`` and trained with seed ``seed + i``, so the
same seed gives the same architectures, values and best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasmerc import checks
from nasmerc.nas.population import PopulationStrategy, Proposal, Proposer, sample_arch
from nasmerc.nas.strategy import SearchContext


@dataclass(frozen=True)
class RandomConfig:
    trials: int = 8
    candidate_epochs: int = 3
    finalists: int = 0

    def __post_init__(self) -> None:
        checks.positive("strategy 'random'", trials=self.trials, candidate_epochs=self.candidate_epochs)
        checks.at_least("strategy 'random'", 0, finalists=self.finalists)


class RandomProposer(Proposer):
    """Uniform samples, up to the evaluator's workers at a time, ``trials`` in all."""

    def __init__(self, ctx: SearchContext, trials: int) -> None:
        super().__init__(ctx)
        self.specs = ctx.space.choices(ctx.fixed)
        self.rng = np.random.default_rng(ctx.seed)
        self.left = trials

    def done(self) -> bool:
        return self.left == 0

    def ask(self, n: int) -> list[Proposal]:
        k = min(n, self.left)
        self.left -= k
        return [Proposal(sample_arch(self.specs, self.rng, self.ctx.fixed)) for _ in range(k)]

    def tell(self, proposal: Proposal, result, trial: int) -> None:
        """Nothing to learn: every sample is independent."""


class RandomSearch(PopulationStrategy):
    """Uniform sampling of whole architectures (see module docstring)."""

    name = "random"
    Config = RandomConfig
    shortcuts = ("trials",)

    def proposer(self, ctx: SearchContext) -> Proposer:
        return RandomProposer(ctx, self.config.trials)
