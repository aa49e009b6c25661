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
to the trial (``trial.report(value, step)``, ``step`` the epochs trained so far, 1-based: a pruner's
resource is epochs) and, when the pruner says so (``trial.should_prune()``, asked after every epoch
but the last), its training stops and the trial is told ``PRUNED``: its ``trial`` event carries
``pruned: true``, the best value it reached and the epochs it trained, and it is never the result.
``pruner``:

- ``median``: ``MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=2)``, a trial below the
  median of earlier trials at the same epoch stops (the first epoch is never pruned);
- ``hyperband``: ``HyperbandPruner(min_resource=min_epochs, max_resource=candidate_epochs,
  reduction_factor=reduction_factor)`` (Li et al., "Hyperband", JMLR 2018, Algorithm 1, with
  successive halving as its inner loop): trials are spread over brackets, and in each bracket only the
  best ``1 / reduction_factor`` of the trials at a rung (``min_epochs * reduction_factor ** k``
  epochs) train on to the next, so the few that reach ``candidate_epochs`` are ranked on long
  training. This ranks slow learners right: on ``iemocap6`` (seed 0) a ``merc`` point without a
  context model is behind the same point with an LSTM one after 5 epochs (valid WAF 0.646 against
  0.653) and ahead after 10 (0.658 against 0.653, where the LSTM one has already peaked), and it is
  the better one on test (93 against 88 % of the oracle; ``python benchmarks/fidelity.py --seeds 0``).
  A trial's bracket comes from the study's name and its number (so a run is reproducible), and
  Optuna's TPE models the trials of the candidate's own bracket only, so each of the
  ``floor(log(candidate_epochs / min_epochs) / log(reduction_factor)) + 1`` brackets spends its own
  ``startup_trials`` before TPE learns from it;
- ``none``.

Pruning is for single-objective studies only: Optuna does not support ``report`` / ``should_prune``
in multi-objective studies, so there every candidate trains all its epochs and ``pruner`` is ignored.

``objectives``: ``("metric",)`` (default) is a single-objective study (direction from the metric) with
the TPE sampler, which Optuna 5 makes multivariate for one objective (one joint Parzen estimator over
every choice, so choices that pay only together are seen together; BOHB's kernel density);
``("metric", "params")`` is a two-objective study (the metric's direction, and the parameter count
minimised) with Optuna's ``NSGAIISampler``. Then the result is the member of the Pareto front
(``study.best_trials``) with the best metric (fewest parameters on a tie), and the front (for each
member: its trial, arch, metric value and parameter count) is written to ``pareto.json`` in the run
folder and summarised in the result's ``extra["pareto"]``.

``storage``: empty (default) keeps the study in ``optuna.db`` (SQLite) in the run folder, so its trials
can be inspected with Optuna's own tools (``optuna-dashboard sqlite:///runs/<run>/optuna.db``);
``journal`` keeps it in Optuna's journal file ``optuna.journal`` in the run folder (no database
needed; ``optuna-dashboard runs/<run>/optuna.journal``), ``journal:PATH`` in a journal file elsewhere;
otherwise any Optuna database URL (``sqlite:///...``, ``postgresql://...``), opened by Optuna as
given. A password in the URL is never written or printed: ``config.yaml`` and every message carry
the URL with ``***`` in its place, and a URL read back with ``***`` (``--config``, ``--resume``)
takes the password from the environment variable ``NASMERC_STORAGE_PASSWORD`` (PostgreSQL's own
``PGPASSWORD`` and ``~/.pgpass`` work with a URL that names no password; ``nasmerc.nas.storage``).
Without ``study`` the study is named ``nasmerc``; a storage that already holds a study of that name
is refused (Optuna's ``DuplicatedStudyError``). The sampler is seeded with the run's seed; trial ``i``
trains with seed ``seed + i``. Optuna's log level is lowered to warnings for the search and restored
after.

``study``: a study that workers on many machines share (``--storage URL --study NAME`` on each, each
with its own ``--out``; ``nasmerc.nas.storage`` says how trials are claimed, beaten and retried).
Whoever creates it enqueues ``trials`` empty slots; a worker claims one and Optuna's sampler, seeded
``seed + i`` for slot ``i``, suggests its architecture from every trial the study has finished so far,
whichever worker trained it; the pruner compares with them too. The search ends when every slot is
finished, and every worker's run folder gets the study's best. Which trials a suggestion sees depends
on the workers' timing, so unlike random search and evolution a shared TPE study is not bit for bit
that of one process.

Resume (``--resume``): a study in the run folder is derived state, made again by replaying the
trials from ``candidates.jsonl`` (``nasmerc.nas.evaluator``): the old ``optuna.db`` / journal is
removed first, so a trial left RUNNING by a kill is simply asked again. A study on an outside storage
is not resumed this way (its trials belong to the storage): such a resume is refused, and a killed
worker of a shared study is started again with its own command (and a new ``--out``): it joins the
study again, and the trial it was running is retried.

With ``--workers N`` the proposer asks ``N`` trials at a time and the evaluator trains them in
parallel; each is told its every epoch's value at the end, and pruning (which must stop a training
in this process) applies only with one worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna

from nasmerc import checks, metrics
from nasmerc.errors import NasmercError
from nasmerc.io import write_json
from nasmerc.nas import storage
from nasmerc.nas.oneshot import check_evaluation, finalists_of
from nasmerc.nas.storage import MASK, PASSWORD_VARIABLE, hide, masked, unmasked  # noqa: F401 (this module's API)
from nasmerc.nas.specs import ChoiceSpec
from nasmerc.nas.evaluator import CandidateResult
from nasmerc.nas.population import (PopulationStrategy, Proposal, Proposer, TrialLog, check_local_steps, check_simplify, climbs,
                                    search_result)
from nasmerc.nas.selection import check_finalist_folds, check_parsimony
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult
from nasmerc.study import StudyProposer

STUDY_FILE = "optuna.db"
JOURNAL_FILE = storage.JOURNAL_FILE
STUDY_NAME = storage.DEFAULT_STUDY
PARETO_FILE = "pareto.json"
OBJECTIVES = ("metric", "params")
PRUNERS = ("median", "hyperband", "none")


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


def make_pruner(name: str, startup_trials: int, min_epochs: int = 1, max_epochs: int = 1,
                reduction_factor: int = 3) -> optuna.pruners.BasePruner:
    """The pruner of ``pruner=name`` (see the module docstring); steps are epochs, 1-based."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=max_epochs,
                                              reduction_factor=reduction_factor)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise NasmercError(f"strategy 'tpe': pruner={name!r}: expected one of {', '.join(PRUNERS)}")


@dataclass(frozen=True)
class TPEConfig:
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
    startup_trials: int = 3
    pruner: str = "median"
    min_epochs: int = 1
    """``pruner=hyperband``: the epochs of its first rung (below ``candidate_epochs``)."""
    reduction_factor: int = 3
    """``pruner=hyperband``: a rung keeps the best ``1 / reduction_factor`` of its trials (>= 2)."""
    storage: str = ""
    objectives: tuple[str, ...] = ("metric",)
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
        checks.positive("strategy 'tpe'", trials=self.trials, candidate_epochs=self.candidate_epochs,
                        startup_trials=self.startup_trials)
        check_local_steps("strategy 'tpe'", self.local_steps, self.study)
        check_evaluation("strategy 'tpe'", self.evaluation, self.oneshot_epochs, self.finalists, self.study)
        check_finalist_folds("strategy 'tpe'", self.finalist_folds, finalists_of(self))
        check_parsimony("strategy 'tpe'", self.parsimony)
        check_simplify("strategy 'tpe'", self.simplify, self.study, finalists_of(self), self.evaluation,
                       self.simplify_by, self.simplify_moves)
        check_objectives(self.objectives)
        after = climbs(self)
        if after and self.multi:
            raise NasmercError(f"strategy 'tpe': {after} with objectives={','.join(self.objectives)}: a local "
                               "search climbs one metric (objectives=metric)")
        if self.pruner not in PRUNERS:
            raise NasmercError(f"strategy 'tpe': pruner={self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        checks.positive("strategy 'tpe'", min_epochs=self.min_epochs)
        checks.at_least("strategy 'tpe'", 2, reduction_factor=self.reduction_factor)
        if self.pruner == "hyperband" and self.min_epochs >= self.candidate_epochs:
            raise NasmercError(f"strategy 'tpe': min_epochs={self.min_epochs} with pruner='hyperband': expected "
                               f"fewer than candidate_epochs={self.candidate_epochs} (the first rung comes before "
                               "the last epoch)")
        storage.check_storage_value("strategy 'tpe'", self.storage, self.study, self.heartbeat)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """This config's pruner (none for a multi-objective study)."""
        if self.multi:
            return optuna.pruners.NopPruner()
        return make_pruner(self.pruner, self.startup_trials, self.min_epochs, self.candidate_epochs,
                           self.reduction_factor)

    def journal_path(self, run_dir: Path | None = None) -> Path | None:
        """The journal file of ``storage=journal[:PATH]`` (in ``run_dir`` for a bare ``journal``), else ``None``."""
        return storage.journal_path(self.storage, run_dir)


class PruneReporter:
    """The per-epoch callback of one candidate: reports each epoch's value to ``trial`` and raises
    ``optuna.TrialPruned`` when the pruner says so (never after the last epoch: training is over)."""

    def __init__(self, trial: optuna.trial.BaseTrial, epochs: int, metric: str) -> None:
        self.trial, self.epochs, self.metric = trial, epochs, metric
        self.best: float | None = None

    def __call__(self, epoch: int, value: float) -> None:
        if metrics.is_better(self.metric, value, self.best):
            self.best = value
        self.trial.report(value, epoch + 1)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

    def stop(self, epoch: int, value: float) -> bool:
        """The evaluator's ``stop`` callback: True where the pruner prunes."""
        try:
            self(epoch, value)
        except optuna.TrialPruned:
            return True
        return False


def report_history(trial: optuna.trial.BaseTrial, history: Sequence[float]) -> None:
    """Report a candidate trained elsewhere (a worker), every epoch's value at its 1-based step."""
    for epoch, value in enumerate(history):
        trial.report(value, epoch + 1)


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
    where = cfg.storage or f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"
    return storage.open_storage(where, Path(run_dir), "strategy 'tpe'")


def study_ref(cfg: TPEConfig) -> str:
    """Where the study is, for ``search.json``: the file name, or the URL with its password hidden."""
    return storage.storage_ref(cfg.storage) if cfg.storage else STUDY_FILE


def duplicate_study(cfg: TPEConfig) -> str:
    return storage.duplicate_study("strategy 'tpe'", cfg.storage)


def make_sampler(cfg: TPEConfig, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for one objective, NSGA-II for two (module docstring), seeded with ``seed``."""
    if cfg.multi:
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials)


def directions(cfg: TPEConfig, higher: bool) -> list[str]:
    direction = "maximize" if higher else "minimize"
    return [direction if o == "metric" else "minimize" for o in cfg.objectives]


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
        pruner = cfg.make_pruner()
        try:
            if cfg.multi:
                self.study = optuna.create_study(
                    storage=self.storage, sampler=make_sampler(cfg, ctx.seed),
                    study_name=STUDY_NAME, pruner=pruner, directions=directions(cfg, self.higher))
            else:
                self.study = optuna.create_study(
                    storage=self.storage, sampler=make_sampler(cfg, ctx.seed),
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
        prune = n == 1 and not self.cfg.multi and self.cfg.evaluation == "scratch"  # a stop runs in this process
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
            report_history(optuna_trial, result.history)
        if result.diverged:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        elif result.stopped:
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
        pareto = write_pareto(self.ctx, self.cfg, [log.trials[t.number] for t in self.study.best_trials])
        return search_result(self.ctx.space, self.ctx.fixed, log, trial=pareto["trial"], study=study_ref(self.cfg),
                             **pareto["extra"])

    def close(self) -> None:
        opened = getattr(self, "storage", None)
        if opened is not None:
            storage.close_storage(opened)
        optuna.logging.set_verbosity(self._verbosity)


def write_pareto(ctx: SearchContext, cfg: TPEConfig, front: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Write the Pareto front (trial records) to ``pareto.json``, best metric first (fewest parameters on
    a tie); the chosen ``trial`` and the result's ``extra`` fields."""
    higher = ctx.evaluator.higher_is_better
    members = [{"trial": r["trial"], "arch": r["arch"], "value": r["value"], "parameters": int(r["parameters"])}
               for r in front]
    if not members:
        raise NasmercError("the search completed no candidate: expected at least one trial")
    members.sort(key=lambda m: (-m["value"] if higher else m["value"], m["parameters"], m["trial"]))
    write_json(Path(ctx.run_dir) / PARETO_FILE, {"metric": ctx.evaluator.metric, "objectives": list(cfg.objectives),
                                                 "front": members})
    summary = [{k: m[k] for k in ("trial", "value", "parameters")} for m in members]
    return {"trial": members[0]["trial"], "members": members,
            "extra": {"objectives": list(cfg.objectives), "pareto": summary, "pareto_file": PARETO_FILE}}


class SharedTPEProposer(StudyProposer):
    """TPE over a study that workers share (module docstring): slots enqueued empty, each claimed one
    suggested by a sampler seeded ``seed + slot``."""

    def __init__(self, ctx: SearchContext, strategy: "TPE") -> None:
        cfg: TPEConfig = strategy.config
        self.cfg = cfg
        self.specs = ctx.space.choices(ctx.fixed)
        self.prune = False
        pruner = cfg.make_pruner()

        def populate(study: storage.SharedStudy) -> None:
            for slot in range(cfg.trials):
                study.enqueue(slot=slot)

        study = storage.SharedStudy(
            ctx, where="strategy 'tpe'", storage=cfg.storage, name=cfg.study, join=True, heartbeat=cfg.heartbeat,
            setup=storage.setup_of(ctx, "tpe", strategy.config_dict()), populate=populate,
            directions=directions(cfg, ctx.evaluator.higher_is_better), sampler=make_sampler(cfg, ctx.seed),
            pruner=pruner)
        super().__init__(ctx, study, cfg.trials)

    def ask(self, n: int) -> list[Proposal]:
        self.prune = n == 1 and not self.cfg.multi  # a stop must run in this process
        return super().ask(n)

    def claim(self, frozen: Any) -> Any | None:
        self.shared.study.sampler = make_sampler(self.cfg, self.ctx.seed + int(frozen.user_attrs["slot"]))
        return super().claim(frozen)

    def propose(self, trial: Any, attrs: dict[str, Any]) -> Proposal:
        """The architecture the sampler suggests (a retried trial's params come back as they were)."""
        slot = int(attrs["slot"])
        reporter = PruneReporter(trial, self.cfg.candidate_epochs, self.metric) if self.prune else None
        arch = suggest_arch(trial, self.specs, dict(self.ctx.fixed))
        return Proposal(arch, {"study_trial": slot + 1}, stop=reporter.stop if reporter else None, ref=trial,
                        index=slot)

    def values(self, proposal: Proposal, result: CandidateResult) -> list[float]:
        if proposal.stop is None and not self.cfg.multi:  # trained in a worker: report its epochs now
            report_history(proposal.ref, result.history)
        return [result.value if o == "metric" else float(result.parameters) for o in self.cfg.objectives]

    def result(self, log: TrialLog) -> SearchResult:
        if not self.cfg.multi:
            return super().result(log)
        records = self.records()
        front = {int(t.user_attrs["slot"]) for t in self.shared.study.best_trials if "slot" in t.user_attrs}
        pareto = write_pareto(self.ctx, self.cfg, [records[s] for s in sorted(front) if s in records])
        return super().result(log, best=records[pareto["trial"] - 1], **pareto["extra"])


class TPE(PopulationStrategy):
    """Optuna's TPE sampler on whole architectures (see module docstring)."""

    name = "tpe"
    Config = TPEConfig
    shortcuts = ("trials", "storage", "objectives", "study")

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """A storage outside the run folder is opened once before the folder is made: a bad URL, an
        unreachable server, a study already there (without ``study``) or a shared study started with other
        settings stops the search before anything is written."""
        super().check(space, fixed)
        cfg: TPEConfig = self.config
        storage.check_join("strategy 'tpe'", cfg.storage, cfg.study,
                          storage.check_setup("tpe", space, fixed, self.config_dict()))

    def proposer(self, ctx: SearchContext) -> Proposer:
        if self.config.study:
            return SharedTPEProposer(ctx, self)
        return TPEProposer(ctx, self.config)

    def config_dict(self) -> dict[str, Any]:
        """The config as run files keep it: a storage password masked (module docstring)."""
        return {**super().config_dict(), "storage": masked(self.config.storage)}

    def check_resume(self, run_dir: Path) -> None:
        storage.refuse_resume(run_dir, self.config.storage, self.config.study)
