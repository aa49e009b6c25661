"""Random search: sample ``trials`` architectures uniformly, train each briefly, keep the best.

The baseline every population strategy must beat (Li and Talwalkar, "Random search and
reproducibility for NAS"). Every value / float choice not fixed by ``--fix`` is sampled too. Trial
``i`` is sampled from ``numpy.random.default_rng(seed)`` and trained with seed ``seed + i``, so the
same seed gives the same architectures, values and best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasmerc.nas.population import TrialLog, check_positive, evaluate_candidate, sample_arch, search_result
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy
from nasmerc import metrics


@dataclass(frozen=True)
class RandomConfig:
    trials: int = 8
    candidate_epochs: int = 3


class RandomSearch(Strategy):
    """Uniform sampling of whole architectures (see module docstring)."""

    name = "random"
    Config = RandomConfig

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg: RandomConfig = self.config
        check_positive(self.name, trials=cfg.trials, candidate_epochs=cfg.candidate_epochs)
        specs = ctx.space.choices(ctx.fixed)
        rng = np.random.default_rng(ctx.seed)
        log = TrialLog(metrics.primary_metric(ctx.dataset.signature.task), ctx.events)
        for i in range(cfg.trials):
            arch = sample_arch(specs, rng, ctx.fixed)
            result = evaluate_candidate(ctx.space, ctx.dataset, ctx.train, arch, cfg.candidate_epochs,
                                        ctx.device, ctx.seed + i)
            log.add(arch, result)
        return search_result(ctx.space, ctx.fixed, log)
