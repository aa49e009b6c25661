"""TPE: Optuna's tree-structured Parzen estimator over a space's choice points, by ask / tell.

Each trial asks Optuna for every choice not fixed by ``--fix``:

- an ``op`` choice: ``suggest_categorical(label, names)``; a ``value`` choice: ``suggest_categorical``
  over its values (over their indices when a value is not a plain number or string);
- a ``float`` choice: ``suggest_float(label, low, high)``;
- an ``input`` choice with ``n_chosen = 1``: ``suggest_categorical(label, indices)``; with
  ``n_chosen = k > 1``: ``k`` parameters ``label#0 .. label#{k-1}``, where ``label#j`` picks a position
  among the ``n - j`` inputs not chosen yet (in increasing order). Each parameter keeps one fixed set
  of choices, as Optuna requires, and every suggestion decodes to ``k`` distinct inputs.

The candidate is trained for ``candidate_epochs``; after every epoch its validation value is reported
to the trial (``trial.report(value, epoch)``, ``epoch`` 0-based) and, when the pruner says so
(``trial.should_prune()``, asked before every epoch but the last), its training stops and the trial is
told ``PRUNED``: its ``trial`` event carries ``pruned: true`` and the best value it reached, and it is
never the result. ``pruner``: ``median`` (``MedianPruner(n_startup_trials=startup_trials,
n_warmup_steps=1)``: the first epoch is never pruned) or ``none``. Pruning is for single-objective
studies only: Optuna does not support ``report`` / ``should_prune`` in multi-objective studies, so
there every candidate trains all its epochs and ``pruner`` is ignored.

``objectives``: ``("metric",)`` (default) is a single-objective study (direction from the metric) with
the TPE sampler; ``("metric", "params")`` is a two-objective study (the metric's direction, and the
parameter count minimised) with Optuna's ``NSGAIISampler``. Then the result is the member of the Pareto
front (``study.best_trials``) with the best metric (fewest parameters on a tie), and the front (for
each member: its trial, arch, metric value and parameter count) is written to ``pareto.json`` in the
run folder and summarised in the result's ``extra["pareto"]``.

``storage``: empty (default) keeps the study in ``optuna.db`` (SQLite) in the run folder, so its trials
can be inspected with Optuna's own tools (``optuna-dashboard sqlite:///runs/<run>/optuna.db``);
``journal`` keeps it in Optuna's journal file ``optuna.journal`` in the run folder (no database
needed; ``optuna-dashboard runs/<run>/optuna.journal``), ``journal:PATH`` in a journal file elsewhere;
otherwise any Optuna database URL (``sqlite:///...``, ``postgresql://...``), used as given. The study
is named ``nasmerc``; a storage that already holds a study of that name is refused. The sampler is
seeded with the run's seed; trial ``i`` trains with seed ``seed + i``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna

from nasmerc import metrics
from nasmerc.errors import NasmercError
from nasmerc.io import write_json
from nasmerc.nas.choices import ChoiceSpec
from nasmerc.nas.population import (CandidateResult, TrialLog, check_positive, evaluate_candidate,
                                    search_result)
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy

STUDY_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
STUDY_NAME = "nasmerc"
PARETO_FILE = "pareto.json"
OBJECTIVES = ("metric", "params")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class TPEConfig:
    trials: int = 8
    candidate_epochs: int = 3
    startup_trials: int = 3
    pruner: str = "median"
    storage: str = ""
    objectives: tuple[str, ...] = ("metric",)


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """``objectives`` as a tuple, refused (naming the valid ones) when a name is unknown or repeated, or
    when ``metric`` is missing."""
    objectives = tuple(objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise NasmercError(f"strategy 'tpe': unknown objectives {', '.join(map(repr, unknown))}: "
                           f"expected some of {', '.join(OBJECTIVES)}")
    if "metric" not in objectives or len(set(objectives)) != len(objectives):
        raise NasmercError(f"strategy 'tpe': objectives={','.join(objectives)}: expected 'metric' once, "
                           f"optionally with 'params' (valid: {', '.join(OBJECTIVES)})")
    return objectives


def make_pruner(name: str, startup_trials: int) -> optuna.pruners.BasePruner:
    """The pruner of ``pruner=name`` (see the module docstring)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise NasmercError(f"strategy 'tpe': pruner={name!r}: expected one of {', '.join(PRUNERS)}")


class PruneReporter:
    """The per-epoch callback of one candidate: reports each epoch's value to ``trial`` and raises
    ``optuna.TrialPruned`` when the pruner says so (never after the last epoch: training is over)."""

    def __init__(self, trial: optuna.trial.BaseTrial, epochs: int, metric: str) -> None:
        self.trial, self.epochs, self.metric = trial, epochs, metric
        self.best: float | None = None

    def __call__(self, epoch: int, value: float) -> None:
        if metrics.is_better(self.metric, value, self.best):
            self.best = value
        self.trial.report(value, epoch)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


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
        objectives = check_objectives(cfg.objectives)
        multi = len(objectives) > 1
        pruner = make_pruner(cfg.pruner, cfg.startup_trials) if not multi else optuna.pruners.NopPruner()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        specs = ctx.space.choices(ctx.fixed)
        metric = metrics.primary_metric(ctx.dataset.signature.task)
        higher = metrics.HIGHER_IS_BETTER[metric]
        metric_direction = "maximize" if higher else "minimize"
        storage = self._storage(ctx)
        try:
            if multi:
                sampler: optuna.samplers.BaseSampler = optuna.samplers.NSGAIISampler(seed=ctx.seed)
                study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME, pruner=pruner,
                                            directions=[metric_direction if o == "metric" else "minimize"
                                                        for o in objectives])
            else:
                sampler = optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=cfg.startup_trials)
                study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME, pruner=pruner,
                                            direction=metric_direction)
            log = TrialLog(metric, ctx.events)
            for i in range(cfg.trials):
                trial = study.ask()
                arch = suggest_arch(trial, specs, dict(ctx.fixed))
                reporter = None if multi else PruneReporter(trial, cfg.candidate_epochs, metric)
                start = time.time()
                try:
                    result = evaluate_candidate(ctx.space, ctx.dataset, ctx.train, arch, cfg.candidate_epochs,
                                                ctx.device, ctx.seed + i, on_epoch=reporter)
                except optuna.TrialPruned:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    partial = CandidateResult(float(reporter.best if reporter.best is not None else float("nan")),
                                              {}, count_parameters(ctx.space.build(arch)), time.time() - start)
                    log.add(arch, partial, eligible=False, pruned=True)
                    continue
                except BaseException:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                study.tell(trial, [result.value if o == "metric" else float(result.parameters) for o in objectives]
                           if multi else result.value)
                log.add(arch, result)
            if not multi:
                return search_result(ctx.space, ctx.fixed, log, study=self._study_ref())
            pareto = self._pareto(study, log, objectives, higher)
        finally:
            if isinstance(storage, optuna.storages.RDBStorage):
                storage.remove_session()
                storage.engine.dispose()
        write_json(Path(ctx.run_dir) / PARETO_FILE, {"metric": metric, "objectives": list(objectives),
                                                     "front": pareto})
        chosen = pareto[0]["trial"]
        summary = [{k: m[k] for k in ("trial", "value", "parameters")} for m in pareto]
        return search_result(ctx.space, ctx.fixed, log, trial=chosen, study=self._study_ref(),
                             objectives=list(objectives), pareto=summary, pareto_file=PARETO_FILE)

    def _study_ref(self) -> str:
        """Where the study is, for ``search.json``: the file name, or the URL with its password hidden."""
        if not self.config.storage:
            return STUDY_FILE
        if self.config.storage == "journal":
            return JOURNAL_FILE
        if self.config.storage.startswith("journal:"):
            return self.config.storage[len("journal:"):]
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.config.storage).render_as_string(hide_password=True)
        except Exception:
            return self.config.storage

    def _storage(self, ctx: SearchContext) -> optuna.storages.BaseStorage:
        """The study's storage: ``optuna.db`` in the run folder, a journal file, or ``storage`` as given;
        refused when a study is already there."""
        url = self.config.storage
        if not url:
            path = Path(ctx.run_dir) / STUDY_FILE
            if path.exists():
                raise NasmercError(f"{path}: a study file is already there: use a fresh run folder")
            return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        if url == "journal" or url.startswith("journal:"):
            return self._journal(Path(ctx.run_dir) / JOURNAL_FILE if url == "journal" else Path(url[len("journal:"):]))
        try:
            storage = optuna.storages.RDBStorage(url)
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            raise NasmercError(f"strategy 'tpe': storage {url!r}: {exc}") from exc
        try:
            names = [s.study_name for s in storage.get_all_studies()]
        except BaseException:
            storage.remove_session()
            storage.engine.dispose()
            raise
        if STUDY_NAME in names:
            storage.remove_session()
            storage.engine.dispose()
            raise NasmercError(f"strategy 'tpe': storage {url!r} already holds a study {STUDY_NAME!r}: "
                               f"use another database or delete that study")
        return storage

    @staticmethod
    def _journal(path: Path) -> optuna.storages.BaseStorage:
        """Optuna's journal file storage at ``path`` (its folder must exist; a study there is refused)."""
        from optuna.storages.journal import JournalFileBackend

        if not path.parent.is_dir():
            raise NasmercError(f"strategy 'tpe': storage journal:{path}: the folder {str(path.parent)!r} does not exist")
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if STUDY_NAME in [s.study_name for s in storage.get_all_studies()]:
            raise NasmercError(f"strategy 'tpe': {path} already holds a study {STUDY_NAME!r}: "
                               "use another journal file or a fresh run folder")
        return storage

    @staticmethod
    def _pareto(study: optuna.Study, log: TrialLog, objectives: Sequence[str], higher: bool) -> list[dict[str, Any]]:
        """The Pareto front, best metric first (fewest parameters on a tie); log record = trial number + 1."""
        members = []
        for t in study.best_trials:
            record = log.trials[t.number]
            members.append({"trial": record["trial"], "arch": record["arch"], "value": record["value"],
                            "parameters": int(record["parameters"])})
        if not members:
            raise NasmercError("the search completed no candidate: expected at least one trial")
        members.sort(key=lambda m: (-m["value"] if higher else m["value"], m["parameters"], m["trial"]))
        return members
