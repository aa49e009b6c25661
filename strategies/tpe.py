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
otherwise any Optuna database URL (``sqlite:///...``, ``postgresql://...``), opened by Optuna as
given. A password in the URL is never written or printed: ``config.yaml`` and every message carry
the URL with ``***`` in its place, and a URL read back with ``***`` (``--config``, ``--resume``)
takes the password from the environment variable ``NASMERC_STORAGE_PASSWORD`` (PostgreSQL's own
``PGPASSWORD`` and ``~/.pgpass`` work with a URL that names no password). The study is named ``nasmerc``; a storage that already holds a study of that name is refused
(Optuna's ``DuplicatedStudyError``). The sampler is seeded with the run's seed; trial ``i`` trains with
seed ``seed + i``. Optuna's log level is lowered to warnings for the search and restored after.

Resume (``--resume``): a study in the run folder is derived state, made again by replaying the
trials from ``candidates.jsonl`` (``nasmerc.nas.evaluator``): the old ``optuna.db`` / journal is
removed first, so a trial left RUNNING by a kill is simply asked again. A study on an outside storage
is not resumed this way (its trials belong to the storage): such a resume is refused.

With ``--workers N`` the proposer asks ``N`` trials at a time and the evaluator trains them in
parallel; each is told its every epoch's value at the end, and pruning (which must stop a training
in this process) applies only with one worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import os

import optuna

from nasmerc import checks, metrics
from nasmerc.errors import NasmercError
from nasmerc.io import write_json
from nasmerc.nas.specs import ChoiceSpec
from nasmerc.nas.evaluator import CandidateResult
from nasmerc.nas.population import PopulationStrategy, Proposal, Proposer, TrialLog, search_result
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult

STUDY_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
STUDY_NAME = "nasmerc"
PARETO_FILE = "pareto.json"
OBJECTIVES = ("metric", "params")
PRUNERS = ("median", "none")
MASK = "***"
PASSWORD_VARIABLE = "NASMERC_STORAGE_PASSWORD"


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


@dataclass(frozen=True)
class TPEConfig:
    trials: int = 8
    candidate_epochs: int = 3
    finalists: int = 0
    startup_trials: int = 3
    pruner: str = "median"
    storage: str = ""
    objectives: tuple[str, ...] = ("metric",)

    def __post_init__(self) -> None:
        checks.positive("strategy 'tpe'", trials=self.trials, candidate_epochs=self.candidate_epochs,
                        startup_trials=self.startup_trials)
        checks.at_least("strategy 'tpe'", 0, finalists=self.finalists)
        check_objectives(self.objectives)
        if self.pruner not in PRUNERS:
            raise NasmercError(f"strategy 'tpe': pruner={self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        journal = self.journal_path()
        if journal is not None and not journal.parent.is_dir():
            raise NasmercError(f"strategy 'tpe': storage journal:{journal}: the folder {str(journal.parent)!r} "
                               "does not exist")

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def journal_path(self, run_dir: Path | None = None) -> Path | None:
        """The journal file of ``storage=journal[:PATH]`` (in ``run_dir`` for a bare ``journal``), else ``None``."""
        if self.storage.startswith("journal:"):
            return Path(self.storage[len("journal:"):])
        if self.storage == "journal" and run_dir is not None:
            return Path(run_dir) / JOURNAL_FILE
        return None


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

    def stop(self, epoch: int, value: float) -> bool:
        """The evaluator's ``stop`` callback: True where the pruner prunes."""
        try:
            self(epoch, value)
        except optuna.TrialPruned:
            return True
        return False


def suggest_arch(trial: optuna.trial.BaseTrial, specs: Sequence[ChoiceSpec], fixed: dict[str, Any]) -> dict[str, Any]:
    """The architecture Optuna suggests for ``trial`` (see the module docstring for the encoding)."""
    arch: dict[str, Any] = {}
    for spec in specs:
        if spec.label in fixed:
            arch[spec.label] = spec.check(fixed[spec.label])
            continue
        values = [trial.suggest_float(p.name, p.low, p.high) if p.is_float
                  else trial.suggest_categorical(p.name, list(p.choices)) for p in spec.params()]
        arch[spec.label] = spec.from_params(values)
    return arch


def open_storage(cfg: TPEConfig, run_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage: ``optuna.db`` in the run folder, a journal file, or the URL as Optuna opens it."""
    journal = cfg.journal_path(run_dir)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    url = unmasked(cfg.storage) if cfg.storage else f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL, a missing driver, an unreachable server
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NasmercError(f"strategy 'tpe': storage {study_ref(cfg)!r}: {hide(message, url)}") from None


def _url(storage: str) -> Any | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage)
    except Exception:
        return None


def masked(storage: str) -> str:
    """``storage`` with the password of a database URL replaced by ``***`` (journal paths as given)."""
    url = _url(storage) if "://" in storage else None
    if url is None or not url.password:
        return storage
    return url.render_as_string(hide_password=True)


def unmasked(storage: str) -> str:
    """``storage`` with a ``***`` password taken from ``NASMERC_STORAGE_PASSWORD``."""
    url = _url(storage) if "://" in storage else None
    if url is None or url.password != MASK:
        return storage
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        raise NasmercError(f"strategy 'tpe': storage {storage!r}: its password is not kept in run files; set "
                           f"{PASSWORD_VARIABLE} (or use PGPASSWORD / ~/.pgpass with a URL without one)")
    return url.set(password=password).render_as_string(hide_password=False)


def hide(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ``***``."""
    parsed = _url(url) if "://" in url else None
    password = parsed.password if parsed is not None else None
    return message.replace(str(password), MASK) if password else message


def study_ref(cfg: TPEConfig) -> str:
    """Where the study is, for ``search.json``: the file name, or the URL with its password hidden."""
    if not cfg.storage:
        return STUDY_FILE
    if cfg.storage == "journal":
        return JOURNAL_FILE
    if cfg.storage.startswith("journal:"):
        return cfg.storage[len("journal:"):]
    url = _url(cfg.storage)
    return url.render_as_string(hide_password=True) if url is not None else "<a database URL>"


def duplicate_study(cfg: TPEConfig) -> str:
    return (f"strategy 'tpe': storage {study_ref(cfg)!r} already holds a study {STUDY_NAME!r}: "
            "use another storage, a fresh run folder, or delete that study")


class TPEProposer(Proposer):
    """Optuna's ``study.ask()`` / ``study.tell()`` behind the trial loop."""

    def __init__(self, ctx: SearchContext, cfg: TPEConfig) -> None:
        super().__init__(ctx)
        self.cfg = cfg
        self.specs = ctx.space.choices(ctx.fixed)
        self.metric = ctx.evaluator.metric
        self.higher = ctx.evaluator.higher_is_better
        self.left = cfg.trials
        self._verbosity = optuna.logging.get_verbosity()  # restored by close()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if ctx.resuming and cfg.storage in ("", "journal"):  # made again by the replay (module docstring)
            (Path(ctx.run_dir) / (STUDY_FILE if not cfg.storage else JOURNAL_FILE)).unlink(missing_ok=True)
        self.storage = open_storage(cfg, Path(ctx.run_dir))
        direction = "maximize" if self.higher else "minimize"
        pruner = make_pruner(cfg.pruner, cfg.startup_trials) if not cfg.multi else optuna.pruners.NopPruner()
        try:
            if cfg.multi:
                self.study = optuna.create_study(
                    storage=self.storage, sampler=optuna.samplers.NSGAIISampler(seed=ctx.seed),
                    study_name=STUDY_NAME, pruner=pruner,
                    directions=[direction if o == "metric" else "minimize" for o in cfg.objectives])
            else:
                self.study = optuna.create_study(
                    storage=self.storage, sampler=optuna.samplers.TPESampler(seed=ctx.seed,
                                                                             n_startup_trials=cfg.startup_trials),
                    study_name=STUDY_NAME, pruner=pruner, direction=direction)
        except optuna.exceptions.DuplicatedStudyError:
            self.close()
            raise NasmercError(duplicate_study(cfg)) from None
        except BaseException:
            self.close()
            raise

    def done(self) -> bool:
        return self.left == 0

    def ask(self, n: int) -> list[Proposal]:
        k = min(n, self.left)
        self.left -= k
        prune = n == 1 and not self.cfg.multi  # a stop must run in this process
        out = []
        for _ in range(k):
            trial = self.study.ask()
            reporter = PruneReporter(trial, self.cfg.candidate_epochs, self.metric) if prune else None
            out.append(Proposal(suggest_arch(trial, self.specs, dict(self.ctx.fixed)),
                                stop=reporter.stop if reporter else None, ref=trial))
        return out

    def tell(self, proposal: Proposal, result: CandidateResult, trial: int) -> None:
        optuna_trial = proposal.ref
        if proposal.stop is None and not self.cfg.multi:  # trained in a worker: report its epochs now
            for epoch, value in enumerate(result.history):
                optuna_trial.report(value, epoch)
        if result.stopped:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        elif self.cfg.multi:
            self.study.tell(optuna_trial, [result.value if o == "metric" else float(result.parameters)
                                           for o in self.cfg.objectives])
        else:
            self.study.tell(optuna_trial, result.value)

    def abandon(self, proposals: Sequence[Proposal]) -> None:
        for proposal in proposals:
            self.study.tell(proposal.ref, state=optuna.trial.TrialState.FAIL)

    def result(self, log: TrialLog) -> SearchResult:
        if not self.cfg.multi:
            return search_result(self.ctx.space, self.ctx.fixed, log, study=study_ref(self.cfg))
        pareto = self._pareto(log)
        write_json(Path(self.ctx.run_dir) / PARETO_FILE, {"metric": self.metric, "objectives": list(self.cfg.objectives),
                                                          "front": pareto})
        summary = [{k: m[k] for k in ("trial", "value", "parameters")} for m in pareto]
        return search_result(self.ctx.space, self.ctx.fixed, log, trial=pareto[0]["trial"], study=study_ref(self.cfg),
                             objectives=list(self.cfg.objectives), pareto=summary, pareto_file=PARETO_FILE)

    def _pareto(self, log: TrialLog) -> list[dict[str, Any]]:
        """The Pareto front, best metric first (fewest parameters on a tie); log record = trial number + 1."""
        members = []
        for t in self.study.best_trials:
            record = log.trials[t.number]
            members.append({"trial": record["trial"], "arch": record["arch"], "value": record["value"],
                            "parameters": int(record["parameters"])})
        if not members:
            raise NasmercError("the search completed no candidate: expected at least one trial")
        members.sort(key=lambda m: (-m["value"] if self.higher else m["value"], m["parameters"], m["trial"]))
        return members

    def close(self) -> None:
        storage = getattr(self, "storage", None)
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()
        optuna.logging.set_verbosity(self._verbosity)


class TPE(PopulationStrategy):
    """Optuna's TPE sampler on whole architectures (see module docstring)."""

    name = "tpe"
    Config = TPEConfig
    shortcuts = ("trials", "storage", "objectives")

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """A storage outside the run folder is opened once before the folder is made: a bad URL, an
        unreachable server or a study already there stops the search before anything is written."""
        cfg: TPEConfig = self.config
        if not cfg.storage or cfg.storage == "journal":
            return
        journal = cfg.journal_path()
        if journal is not None and not journal.exists():
            return
        storage = open_storage(cfg, Path("."))
        try:
            names = [s.study_name for s in storage.get_all_studies()]
        except Exception as exc:  # an unreachable server, a file that is not a study
            raise NasmercError(f"strategy 'tpe': storage {study_ref(cfg)!r}: {str(exc).splitlines()[0]}") from None
        finally:
            if isinstance(storage, optuna.storages.RDBStorage):
                storage.remove_session()
                storage.engine.dispose()
        if STUDY_NAME in names:
            raise NasmercError(duplicate_study(cfg))

    def proposer(self, ctx: SearchContext) -> Proposer:
        return TPEProposer(ctx, self.config)

    def config_dict(self) -> dict[str, Any]:
        """The config as run files keep it: a storage password masked (module docstring)."""
        return {**super().config_dict(), "storage": masked(self.config.storage)}

    def check_resume(self, run_dir: Path) -> None:
        cfg: TPEConfig = self.config
        if cfg.storage and cfg.storage != "journal":
            raise NasmercError(f"--resume {run_dir}: its study is on the outside storage {study_ref(cfg)!r}, whose "
                               "trials stay there; resume covers a study in the run folder (inspect that one with "
                               "optuna, or search again)")
