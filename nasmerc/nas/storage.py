"""Where a population search keeps its Optuna study, and how workers on many machines share one.

**Storages.** A strategy's ``storage`` is ``journal`` (Optuna's journal file ``optuna.journal`` in the
run folder), ``journal:PATH`` (a journal file elsewhere: processes of one machine, or of machines that
share its folder), or an Optuna database URL (``postgresql://...``, ``sqlite:///...``). A password
in a URL is never written or printed: run files and messages carry it as ``***`` (:func:`masked`,
:func:`hide`), and a URL read back with ``***`` takes it from ``NASMERC_STORAGE_PASSWORD``
(:func:`unmasked`). Optuna is imported only when a storage is opened.

**A shared study** (:class:`SharedStudy`, ``--study NAME``) is one study that any number of workers
join: each is a ``nasmerc search`` with its own run folder. The study's work is a list of *slots*
(candidate ``i`` of the search, trained with seed ``seed + i``), each a trial with the user
attribute ``slot``:

- whoever creates the study enqueues its first slots (``Study.enqueue_trial``: ``WAITING`` trials),
  then writes the study's setup (strategy, space, seed, configs) as its user attribute ``nasmerc``:
  that marks it ready, and a worker that joins refuses a setup other than its own;
- a worker *claims* a ``WAITING`` trial by moving it to ``RUNNING`` (the storage lets one worker do
  so: a row lock in a database, the order of the log in a journal), so no slot is taken twice. It
  beats a heartbeat on every trial it holds (Optuna's ``record_heartbeat`` for a database; a
  ``heartbeat`` system attribute in a journal, which has none of its own) and tells the result with
  the candidate's numbers as user attributes (``arch``, ``value``, ``metrics``, ``parameters``,
  ``seconds``, ``worker``, ``run``);
- before every claim a worker fails the ``RUNNING`` trials whose heartbeat stopped more than
  ``3 * heartbeat`` seconds ago (Optuna's ``fail_stale_trials`` for a database, the same rule for a
  journal) and re-enqueues each with Optuna's ``RetryHeartbeatStaleTrialCallback`` (its params and
  user attributes, so the same slot and architecture), at most :data:`MAX_RETRIES` times; a worker
  stopped by Ctrl-C or SIGTERM hands its trials back the same way at once;
- a slot is *done* when one of its trials is ``COMPLETE`` or ``PRUNED``, *lost* when its retries are
  used up; the search ends for every worker when all its slots are done or lost. Each worker's run
  folder then gets the same result, the study's best slot (the first best in slot order, as one
  process would choose), and its event log the trials that worker trained.

``nasmerc.study`` holds the slots' bookkeeping and the trial loop's proposer over such a study
(random search and TPE use it as it is, evolution adds its generations) and ``nasmerc study``'s view.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nasmerc.errors import NasmercError
from nasmerc.nas.strategy import SearchContext

MASK = "***"
PASSWORD_VARIABLE = "NASMERC_STORAGE_PASSWORD"
JOURNAL_FILE = "optuna.journal"
DEFAULT_STUDY = "nasmerc"
SETUP_KEY = "nasmerc"
MAX_RETRIES = 3
"""How often a slot's trial is retried after its worker died (4 failed trials and it is lost)."""
READY_WAIT = 60.0
"""Seconds a joining worker waits for the study's creator to mark it ready."""


# -- URLs and passwords ------------------------------------------------------------------------------
def _url(storage: str) -> Any | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage)
    except Exception:  # not a URL sqlalchemy can read: shown as given, never opened as one
        return None


def masked(storage: str) -> str:
    """``storage`` with the password of a database URL replaced by ``***`` (journal paths as given)."""
    url = _url(storage) if "://" in storage else None
    if url is None or not url.password:
        return storage
    return url.render_as_string(hide_password=True)


def unmasked(storage: str, where: str = "strategy 'tpe'") -> str:
    """``storage`` with a ``***`` password taken from ``NASMERC_STORAGE_PASSWORD``."""
    url = _url(storage) if "://" in storage else None
    if url is None or url.password != MASK:
        return storage
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        raise NasmercError(f"{where}: storage {storage!r}: its password is not kept in run files; set "
                           f"{PASSWORD_VARIABLE} (or use PGPASSWORD / ~/.pgpass with a URL without one)")
    return url.set(password=password).render_as_string(hide_password=False)


def hide(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ``***``."""
    parsed = _url(url) if "://" in url else None
    password = parsed.password if parsed is not None else None
    return message.replace(str(password), MASK) if password else message


def storage_ref(storage: str) -> str:
    """How messages and run files name ``storage``: a journal path, or the URL with its password hidden."""
    if storage == "journal":
        return JOURNAL_FILE
    if storage.startswith("journal:"):
        return storage[len("journal:"):]
    if "://" not in storage:
        return storage
    url = _url(storage)
    return url.render_as_string(hide_password=True) if url is not None else "<a database URL>"


def journal_path(storage: str, run_dir: Path | None = None) -> Path | None:
    """The journal file of ``journal[:PATH]`` (in ``run_dir`` for a bare ``journal``), else ``None``."""
    if storage.startswith("journal:"):
        return Path(storage[len("journal:"):])
    if storage == "journal" and run_dir is not None:
        return Path(run_dir) / JOURNAL_FILE
    return None


def outside(storage: str) -> bool:
    """True for a storage that outlives the run folder (a journal elsewhere, a database)."""
    return storage not in ("", "journal")


def check_storage_value(where: str, storage: str, study: str, heartbeat: int) -> None:
    """A config's ``storage`` / ``study`` / ``heartbeat``, refused when a journal's folder is missing or a
    study is named on a storage other workers cannot reach."""
    from nasmerc import checks

    checks.positive(where, heartbeat=heartbeat)
    journal = journal_path(storage)
    if journal is not None and not journal.parent.is_dir():
        raise NasmercError(f"{where}: storage journal:{journal}: the folder {str(journal.parent)!r} does not exist")
    if study and not outside(storage):
        raise NasmercError(f"{where}: study={study!r} needs a storage every worker reaches: --storage "
                           f"journal:PATH or a database URL (got storage={storage!r})")
    if study != study.strip() or "\n" in study:
        raise NasmercError(f"{where}: study={study!r}: expected a name without surrounding spaces or newlines")


def open_storage(storage: str, run_dir: Path | None, where: str, heartbeat: int | None = None) -> Any:
    """The Optuna storage of ``storage`` (see the module docstring). With ``heartbeat`` a database
    storage beats every ``heartbeat`` seconds, fails trials silent for ``3 * heartbeat`` and retries them."""
    import optuna

    journal = journal_path(storage, run_dir)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        except Exception as exc:  # a folder that vanished, a file that is not a journal
            raise NasmercError(f"{where}: storage journal:{journal}: {_first_line(exc)}") from None
    url = unmasked(storage, where)
    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
                  "heartbeat_stale_trial_callback": retry_callback()}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            if attempt < 2 and _creating_at_once(exc):
                time.sleep(0.5)
                continue
            raise NasmercError(f"{where}: storage {storage_ref(storage)!r}: {hide(_first_line(exc), url)}") from None
    raise AssertionError("unreachable")


def _creating_at_once(exc: BaseException) -> bool:
    """Whether ``exc`` is what a database says when two workers create Optuna's tables at the same time
    (the second try finds them made)."""
    try:
        from sqlalchemy.exc import IntegrityError, ProgrammingError
    except ImportError:
        return False
    return isinstance(exc, (IntegrityError, ProgrammingError))


def close_storage(storage: Any) -> None:
    """Release a database storage's connections (a journal holds none)."""
    import optuna

    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def retry_callback() -> Callable[[Any, Any], None]:
    """Optuna's retry of a failed trial (a ``WAITING`` copy with its params and user attributes)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=MAX_RETRIES)


def study_names(storage: Any, ref: str, where: str) -> list[str]:
    """The names of the studies ``storage`` holds (one line naming ``ref`` when it cannot be read)."""
    try:
        return [s.study_name for s in storage.get_all_studies()]
    except Exception as exc:  # an unreachable server, a file that is not a study
        raise NasmercError(f"{where}: storage {ref!r}: {_first_line(exc)}") from None


def check_join(where: str, storage: str, study: str, setup: Mapping[str, Any]) -> None:
    """Before a run folder exists: refuse a fresh study (``study`` empty) that is already there, or a
    study to join whose setup differs from ``setup`` (what the strategy knows before the run)."""
    if not outside(storage):
        return
    journal = journal_path(storage)
    if journal is not None and not journal.exists():
        return
    opened = open_storage(storage, None, where)
    try:
        names = study_names(opened, storage_ref(storage), where)
        name = study or DEFAULT_STUDY
        if name not in names:
            return
        if not study:
            raise NasmercError(duplicate_study(where, storage))
        import optuna

        theirs = optuna.load_study(study_name=name, storage=opened).user_attrs.get(SETUP_KEY)
        if theirs is not None:
            compare_setup(where, storage, name, theirs, setup)
    finally:
        close_storage(opened)


def duplicate_study(where: str, storage: str) -> str:
    return (f"{where}: storage {storage_ref(storage)!r} already holds a study {DEFAULT_STUDY!r}: use another "
            "storage, a fresh run folder, or delete that study (or join it: --study NAME shares a study)")


def _diff(theirs: Any, ours: Any, key: str) -> tuple[str, Any, Any] | None:
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for k in sorted(set(theirs) | set(ours)):
            found = _diff(theirs.get(k), ours.get(k), f"{key}.{k}" if key else k)
            if found:
                return found
        return None
    same = json.dumps(theirs, sort_keys=True, default=str) == json.dumps(ours, sort_keys=True, default=str)
    return None if same else (key, theirs, ours)


def compare_setup(where: str, storage: str, name: str, theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    """Refuse to join a study started with other settings, naming the first one that differs."""
    found = _diff({k: theirs.get(k) for k in ours}, dict(ours), "")
    if found:
        key, a, b = found
        raise NasmercError(f"{where}: study {name!r} on {storage_ref(storage)!r} was started with {key}={a!r}, "
                           f"this worker has {key}={b!r}: start every worker with the same settings (or another "
                           "--study)")


def refuse_resume(run_dir: Path, storage: str, study: str) -> None:
    """A run whose study is on an outside storage is not resumed: a worker of a shared study is started
    again with its own command (it joins the study again), any other search is run again."""
    if not outside(storage):
        return
    ref = storage_ref(storage)
    if study:
        raise NasmercError(f"--resume {run_dir}: a worker of study {study!r} on {ref!r}: start it again with the "
                           "same nasmerc search command and a new --out; it joins the study again and the trial it "
                           "was running is retried")
    raise NasmercError(f"--resume {run_dir}: its study is on the outside storage {ref!r}, whose trials stay there; "
                       "resume covers a study in the run folder. Search again, with --study NAME to make it a study "
                       "that a search started again with the same command joins")


# -- one worker's handle on a shared study -----------------------------------------------------------
class SharedStudy:
    """A worker of a study that workers share (see the module docstring).

    ``populate(shared)`` enqueues the first slots when this worker creates the study; ``setup`` is
    written after it (the ready mark) and compared when joining. ``join=False`` is a fresh study that
    must not exist yet (a storage without ``--study``).
    """

    def __init__(self, ctx: SearchContext, *, where: str, storage: str, name: str, join: bool, heartbeat: int,
                 setup: Mapping[str, Any], populate: Callable[["SharedStudy"], None],
                 directions: Sequence[str], sampler: Any = None, pruner: Any = None) -> None:
        import optuna

        self.where, self.storage_value, self.name, self.heartbeat = where, storage, name, heartbeat
        self.grace = 3 * heartbeat
        self.poll = min(2.0, heartbeat / 2)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.run = str(ctx.run_dir)
        self.held: dict[int, Any] = {}
        self.beat_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._verbosity = optuna.logging.get_verbosity()  # restored by close(): no line per trial on stderr
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage: Any = None
        try:
            self.storage = open_storage(storage, Path(ctx.run_dir), where, heartbeat if "://" in storage else None)
            self.journal = isinstance(self.storage, optuna.storages.JournalStorage)
            self.study, created = self._open(join, directions, sampler, pruner)
            if created:
                populate(self)
                self.study.set_user_attr(SETUP_KEY, dict(setup))
            else:
                compare_setup(where, storage, name, self._ready(), setup)
        except BaseException:
            self.close()
            raise

    def _open(self, join: bool, directions: Sequence[str], sampler: Any, pruner: Any) -> tuple[Any, bool]:
        import optuna

        try:
            return optuna.create_study(storage=self.storage, study_name=self.name, directions=list(directions),
                                       sampler=sampler, pruner=pruner), True
        except optuna.exceptions.DuplicatedStudyError:
            if not join:
                raise NasmercError(duplicate_study(self.where, self.storage_value)) from None
        return optuna.load_study(study_name=self.name, storage=self.storage, sampler=sampler, pruner=pruner), False

    def _ready(self) -> Mapping[str, Any]:
        """The setup of a study this worker joins, once its creator has written it."""
        deadline = time.monotonic() + READY_WAIT
        while True:
            setup = self.study.user_attrs.get(SETUP_KEY)
            if setup is not None:
                return setup
            if time.monotonic() > deadline:
                raise NasmercError(f"{self.where}: study {self.name!r} on {storage_ref(self.storage_value)!r} was "
                                   f"not started by nasmerc (no {SETUP_KEY!r} attribute after {READY_WAIT:.0f}s): "
                                   "use another --study, or delete it if its creator died while starting it")
            time.sleep(self.poll)

    # -- reading -------------------------------------------------------------------------------------
    def trials(self) -> list[Any]:
        """Every trial of the study as it is now, in number order."""
        return self.study.get_trials(deepcopy=False)

    def enqueue(self, **attrs: Any) -> None:
        """A new ``WAITING`` trial with user attributes ``attrs`` (a slot, say)."""
        self.study.enqueue_trial({}, user_attrs=attrs)

    # -- claiming, beating, failing -----------------------------------------------------------------
    def claim(self, frozen: Any) -> Any | None:
        """Move ``frozen`` (a ``WAITING`` trial) to ``RUNNING`` for this worker and return it as an
        ``optuna.Trial`` (made after the study's sampler is set: TPE seeds one per slot), or ``None``
        when another worker took it first."""
        import optuna

        trial_id = frozen._trial_id
        try:
            if not self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        self.held[trial_id] = frozen
        self._beat(trial_id)
        self._start_beating()
        self.study._thread_local.cached_all_trials = None  # as Study.ask does: the sampler reads afresh
        trial = optuna.Trial(self.study, trial_id)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("run", self.run)
        return trial

    def _beat(self, trial_id: int) -> None:
        import optuna

        try:
            if self.journal:
                self.storage.set_trial_system_attr(trial_id, "heartbeat", time.time())
            else:
                self.storage.record_heartbeat(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.held.pop(trial_id, None)

    def _start_beating(self) -> None:
        if self._thread is not None:
            return

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                for trial_id in list(self.held):
                    try:
                        self._beat(trial_id)
                    except Exception as exc:  # a storage that did not answer: the next beat tries again
                        self.beat_error = _first_line(exc)

        self._thread = threading.Thread(target=beat, name="nasmerc-heartbeat", daemon=True)
        self._thread.start()

    def fail_stale(self) -> None:
        """Fail the ``RUNNING`` trials whose worker stopped beating and enqueue their retries."""
        import optuna

        if not self.journal:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            return
        now = time.time()
        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial._trial_id in self.held:
                continue
            # a retry carries its failed trial's last beat: its own start (its claim) counts too
            beats = [float(trial.system_attrs.get("heartbeat", 0.0))]
            if trial.datetime_start is not None:
                beats.append(trial.datetime_start.timestamp())
            if now - max(beats) <= self.grace:
                continue
            self._fail_and_retry(trial._trial_id)

    def _fail_and_retry(self, trial_id: int) -> None:
        """``FAIL`` one trial (one worker succeeds) and, for that worker, enqueue its retry."""
        import copy

        import optuna

        try:
            if not self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another worker failed it first, and retries it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_callback()(self.study, copy.deepcopy(self.storage.get_trial(trial_id)))

    def finish(self, trial: Any, attrs: Mapping[str, Any], *, values: Sequence[float] | None = None,
               pruned: bool = False) -> bool:
        """Record ``attrs`` on ``trial`` and tell it (``COMPLETE`` with ``values``, or ``PRUNED``);
        False when it had been failed as stale meanwhile (its retry runs elsewhere)."""
        import optuna

        self.held.pop(trial._trial_id, None)
        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            if pruned:
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, list(values or ()))
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            if self.storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.FAIL:
                return False
            raise
        return True

    def discard(self, trial: Any) -> None:
        """End a claimed trial that has no candidate (an unused breeding slot): ``FAIL``, role ``unused``."""
        import optuna

        self.held.pop(trial._trial_id, None)
        trial.set_user_attr("role", "unused")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def give_back(self, trial: Any) -> None:
        """Hand a claimed trial back (``FAIL`` and a retry), as a stopped worker does."""
        self.held.pop(trial._trial_id, None)
        self._fail_and_retry(trial._trial_id)

    def pause(self) -> None:
        """Wait a little for other workers (nothing to claim now)."""
        time.sleep(self.poll)

    def close(self) -> None:
        import optuna

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.storage is not None:
            close_storage(self.storage)
        optuna.logging.set_verbosity(self._verbosity)


def setup_of(ctx: SearchContext, strategy: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What every worker of a study must share: strategy, space, seed, ``--fix``, data, training and the
    strategy's config (less where the study is)."""
    from nasmerc.config import plain, to_plain

    return {**check_setup(strategy, ctx.space, ctx.fixed, config), "seed": ctx.seed,
            "signature": plain(ctx.dataset.signature.to_dict()), "train": to_plain(ctx.train),
            "data_sizes": {split: len(ctx.dataset.split(split)) for split in ("train", "valid")},
            "metric": ctx.evaluator.metric}


def check_setup(strategy: str, space: Any, fixed: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of :func:`setup_of` known before the run folder exists."""
    from nasmerc.config import plain

    return {"strategy": strategy, "space": space.name, "space_config": plain(space.config_dict()),
            "fixed": plain(dict(fixed)), "config": {k: plain(v) for k, v in config.items()
                                                    if k not in ("storage", "study")}}
