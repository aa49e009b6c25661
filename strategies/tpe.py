"""TPE: Optuna's tree-structured Parzen estimator over a space's choice points, by ask / tell.

Each trial asks Optuna for every choice not fixed by ``--fix``:

- an ``op`` choice: ``suggest_categorical(label, names)``; a ``value`` choice: ``suggest_categorical``
  over its values (over their indices when a value is not a plain number or string);
- a ``float`` choice: ``suggest_float(label, low, high)``;
- an ``input`` choice with ``n_chosen = 1``: ``suggest_categorical(label, indices)``; with
  ``n_chosen = k > 1``: ``k`` parameters ``label#0 .. label#{k-1}``, where ``label#j`` picks a position
  among the ``n - j`` inputs not chosen yet (in increasing order). Each parameter keeps one fixed set
  of choices, as Optuna requires, and every suggestion decodes to ``k`` distinct inputs.

The candidate is trained for ``candidate_epochs`` and its validation value is told back. The study
(direction from the metric) lives in ``optuna.db`` (SQLite) in the run folder, so its trials can be
inspected with Optuna's own tools (``optuna-dashboard sqlite:///runs/<run>/optuna.db``). The sampler
is seeded with the run's seed; trial ``i`` trains with seed ``seed + i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna

from nasmerc import metrics
from nasmerc.errors import NasmercError
from nasmerc.nas.choices import ChoiceSpec
from nasmerc.nas.population import TrialLog, check_positive, evaluate_candidate, search_result
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy

STUDY_FILE = "optuna.db"
STUDY_NAME = "nasmerc"


@dataclass(frozen=True)
class TPEConfig:
    trials: int = 8
    candidate_epochs: int = 3
    startup_trials: int = 3


def _plain(values: Sequence[Any]) -> bool:
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in values)


def suggest_arch(trial: optuna.trial.BaseTrial, specs: Sequence[ChoiceSpec], fixed: dict[str, Any]) -> dict[str, Any]:
    """The architecture Optuna suggests for ``trial`` (see the module docstring for the encoding)."""
    arch: dict[str, Any] = {}
    for spec in specs:
        if spec.label in fixed:
            arch[spec.label] = spec.check(fixed[spec.label])
        elif spec.kind == "op":
            arch[spec.label] = trial.suggest_categorical(spec.label, list(spec.candidates))
        elif spec.kind == "value":
            if _plain(spec.candidates):
                arch[spec.label] = trial.suggest_categorical(spec.label, list(spec.candidates))
            else:
                arch[spec.label] = spec.candidates[trial.suggest_categorical(spec.label, list(range(len(spec.candidates))))]
        elif spec.kind == "float":
            arch[spec.label] = trial.suggest_float(spec.label, spec.low, spec.high)
        elif spec.n_chosen == 1:
            arch[spec.label] = [trial.suggest_categorical(spec.label, list(range(spec.n_candidates)))]
        else:
            free = list(range(spec.n_candidates))
            chosen = []
            for j in range(spec.n_chosen):
                chosen.append(free.pop(trial.suggest_categorical(f"{spec.label}#{j}", list(range(spec.n_candidates - j)))))
            arch[spec.label] = sorted(chosen)
    return arch


class TPE(Strategy):
    """Optuna's TPE sampler on whole architectures (see module docstring)."""

    name = "tpe"
    Config = TPEConfig

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg: TPEConfig = self.config
        check_positive(self.name, trials=cfg.trials, candidate_epochs=cfg.candidate_epochs,
                       startup_trials=cfg.startup_trials)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        specs = ctx.space.choices(ctx.fixed)
        metric = metrics.primary_metric(ctx.dataset.signature.task)
        higher = metrics.HIGHER_IS_BETTER[metric]
        path = Path(ctx.run_dir) / STUDY_FILE
        if path.exists():
            raise NasmercError(f"{path}: a study file is already there: use a fresh run folder")
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        sampler = optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=cfg.startup_trials)
        study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME,
                                    direction="maximize" if higher else "minimize")
        log = TrialLog(metric, ctx.events)
        try:
            for i in range(cfg.trials):
                trial = study.ask()
                arch = suggest_arch(trial, specs, dict(ctx.fixed))
                try:
                    result = evaluate_candidate(ctx.space, ctx.dataset, ctx.train, arch, cfg.candidate_epochs,
                                                ctx.device, ctx.seed + i)
                except BaseException:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                study.tell(trial, result.value)
                log.add(arch, result)
        finally:
            storage.remove_session()
            storage.engine.dispose()
        return search_result(ctx.space, ctx.fixed, log, study=STUDY_FILE)
