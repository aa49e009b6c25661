"""Random search: sample ``trials`` architectures uniformly, train each briefly, keep the best.

The baseline every population strategy must beat (Li and Talwalkar, "Random search and
reproducibility for NAS"). Every value / float choice not fixed by ``--fix`` is sampled too. Trial
``i`` is sampled from ``numpy.random.default_rng(seed)`` and trained with seed ``seed + i``, so the
same seed gives the same architectures, values and best.

``storage`` (empty by default: no study) keeps the trials in an Optuna study (``journal``,
``journal:PATH`` or a database URL, as TPE's; ``nasmerc.nas.storage``), and ``study`` names one that
workers on many machines share: ``nasmerc search --strategy random --storage URL --study NAME`` started
on each of them (each with its own ``--out``) joins it. Whoever creates the study samples the
``trials`` architectures from the seed, as one process would, and enqueues them; workers claim and
train them, each with seed ``seed + i``, so the study ends with the trials, values and best of a
search in one process. Without ``study`` the study is named ``nasmerc`` and must not exist yet.

``evaluation=oneshot`` (``nasmerc.nas.oneshot``) scores every sample with the weights of a supernet
trained ``oneshot_epochs`` epochs on uniformly sampled paths (Guo et al.'s single-path one-shot with
random search), in milliseconds each, so ``trials`` can be hundreds; ``finalists`` (default 3 then)
are retrained from scratch and the best on validation is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nasmerc import checks
from nasmerc.config import plain
from nasmerc.nas import storage
from nasmerc.nas.oneshot import check_evaluation, finalists_of
from nasmerc.nas.population import PopulationStrategy, Proposal, Proposer, check_local_steps, check_simplify, sample_arch
from nasmerc.nas.selection import check_finalist_folds, check_parsimony
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext
from nasmerc.study import StudyProposer


@dataclass(frozen=True)
class RandomConfig:
    trials: int = 8
    candidate_epochs: int = 3
    finalists: int | None = None
    """Retrained from scratch at the end; unset: 0, or 3 with ``evaluation=oneshot``."""
    finalist_folds: int = 0
    """Choose between the finalists by cross-validation over this many folds of the training and
    validation conversations (0: on the validation split; ``nasmerc.nas.selection.choose_finalist``)."""
    parsimony: float = 0.0
    """Keep the smallest candidate within this much of the best validation value (0: the best;
    ``nasmerc.nas.selection.parsimonious``)."""
    storage: str = ""
    study: str = ""
    heartbeat: int = 10
    evaluation: str = "scratch"
    """``scratch`` or ``oneshot`` (``nasmerc.nas.oneshot``)."""
    oneshot_epochs: int = 0
    """The supernet's epochs with ``evaluation=oneshot`` (0: ``train.epochs``)."""
    local_steps: int = 0
    """Steps of best-improvement local search from the best candidate (``nasmerc.nas.population.local_search``)."""
    simplify: int = 0
    """Steps of backward elimination from the result, within ``parsimony`` of the best (``nasmerc.nas.population.simplify``)."""
    simplify_by: str = "value"
    """How a simplify step chooses among the removals within ``parsimony``: ``value`` (the best) or
    ``parameters`` (the fewest, as ``parsimony`` chooses)."""
    simplify_moves: str = "removals"
    """What a simplify step tries: ``removals`` (a component left out) or ``smaller`` (also any one
    choice changed to a model with fewer parameters)."""

    def __post_init__(self) -> None:
        checks.positive("strategy 'random'", trials=self.trials, candidate_epochs=self.candidate_epochs)
        check_local_steps("strategy 'random'", self.local_steps, self.study)
        storage.check_storage_value("strategy 'random'", self.storage, self.study, self.heartbeat)
        check_evaluation("strategy 'random'", self.evaluation, self.oneshot_epochs, self.finalists, self.study)
        check_finalist_folds("strategy 'random'", self.finalist_folds, finalists_of(self))
        check_parsimony("strategy 'random'", self.parsimony)
        check_simplify("strategy 'random'", self.simplify, self.study, finalists_of(self), self.evaluation,
                       self.simplify_by, self.simplify_moves)


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


def study_proposer(ctx: SearchContext, strategy: "RandomSearch") -> Proposer:
    """The proposer of a search whose trials live in a (shared) study (see the module docstring)."""
    import optuna

    cfg: RandomConfig = strategy.config
    if ctx.resuming and cfg.storage == "journal":  # made again by the replay, as TPE's
        (Path(ctx.run_dir) / storage.JOURNAL_FILE).unlink(missing_ok=True)

    def populate(study: storage.SharedStudy) -> None:
        sampler = RandomProposer(ctx, cfg.trials)
        for slot in range(cfg.trials):
            study.enqueue(slot=slot, arch=plain(sampler.ask(1)[0].arch))

    direction = "maximize" if ctx.evaluator.higher_is_better else "minimize"
    study = storage.SharedStudy(
        ctx, where="strategy 'random'", storage=cfg.storage, name=cfg.study or storage.DEFAULT_STUDY,
        join=bool(cfg.study), heartbeat=cfg.heartbeat, setup=storage.setup_of(ctx, "random", strategy.config_dict()),
        populate=populate, directions=[direction], sampler=optuna.samplers.RandomSampler(seed=ctx.seed))
    return StudyProposer(ctx, study, cfg.trials)


class RandomSearch(PopulationStrategy):
    """Uniform sampling of whole architectures (see module docstring)."""

    name = "random"
    Config = RandomConfig
    shortcuts = ("trials", "storage", "study")

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """An outside storage is opened before the run folder is made (see ``nasmerc.nas.storage``)."""
        super().check(space, fixed)
        cfg: RandomConfig = self.config
        storage.check_join("strategy 'random'", cfg.storage, cfg.study,
                          storage.check_setup("random", space, fixed, self.config_dict()))

    def proposer(self, ctx: SearchContext) -> Proposer:
        if self.config.storage:
            return study_proposer(ctx, self)
        return RandomProposer(ctx, self.config.trials)

    def config_dict(self) -> dict[str, Any]:
        """The config as run files keep it: a storage password masked."""
        return {**super().config_dict(), "storage": storage.masked(self.config.storage)}

    def check_resume(self, run_dir: Path) -> None:
        storage.refuse_resume(run_dir, self.config.storage, self.config.study)
