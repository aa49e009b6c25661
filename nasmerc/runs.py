"""Run folders: the resolved config, the event log, the architecture file and the results.

A search run folder holds::

    config.yaml    the fully resolved configuration (``nasmerc search --config`` reads it back)
    events.jsonl   every event of the run, one JSON object per line
    arch.yaml      the found architecture, with everything needed to retrain it
    search.json    best validation metric, wall time, parameter counts
    alpha.pt ...   strategy files (DARTS' architecture weights)
    checkpoint.pt  the training loop's last epoch, with resume.json beside it (removed when the run
                   finishes); candidates.jsonl: every finished candidate of a population search
    lock           held by the process writing the folder; process.json says which (pid, host,
                   heartbeat), so a dead run is told from a live one

``retrain`` adds a folder (``retrain/`` beside ``arch.yaml`` by default) with ``model.pt`` (state dict
and architecture, loadable with ``torch.load(..., weights_only=True)``) and ``metrics.json``;
``evaluate`` writes ``evaluation.json`` next to ``model.pt``. Results are written atomically and
last, so a folder without them is visibly unfinished.

A run that did not finish (killed, interrupted, failed) is resumed with ``--resume RUN``
(:func:`open_run`): the log is cut where the last saved work ends and the run replays from its
seed, its saved work restored instead of done again (``nasmerc.nas.evaluator``,
``nasmerc.train.checkpoint``), so it ends with the same results as a run that was never stopped.
``docs/runs.md`` is the user's page on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from nasmerc import __version__, metrics
from nasmerc.config import to_plain
from nasmerc.errors import NasmercError
from nasmerc.events import EventSink, Events, JsonlSink
from nasmerc.io import write_json, write_yaml
from nasmerc.spec import RunSpec
from nasmerc.train import distributed
from nasmerc.train.checkpoint import RESUME_FILE, read_resume

CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
ARCH_FILE = "arch.yaml"
SEARCH_FILE = "search.json"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
LOCK_FILE = "lock"
PROCESS_FILE = "process.json"
HEARTBEAT_SECONDS = 10.0


def new_run_dir(out: str | None, name: str, root: str = "runs") -> Path:
    """``out`` if given, else ``runs/<timestamp>-<name>`` (made unique).

    ``out`` must be new or an empty folder: a folder holding a finished run, an unfinished one, or
    anything else (your own ``config.yaml``, say) is refused naming what is there, so nothing of it is
    overwritten.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise NasmercError(f"--out {out}: is a file, not a folder; choose a new folder")
        if is_live(path):
            raise NasmercError(f"--out {out}: in use by {holder(path)}; choose another folder")
        for marker in (SEARCH_FILE, MODEL_FILE):
            if (path / marker).exists():
                raise NasmercError(f"--out {out}: holds a finished run ({marker}); choose another folder")
        if path.is_dir() and any(path.iterdir()):
            if (path / CONFIG_FILE).exists():
                raise NasmercError(f"--out {out}: holds an unfinished run (no search.json or model.pt); resume it "
                                   f"with --resume {out}, or choose a new or empty folder")
            names = ', '.join(sorted(p.name for p in path.iterdir())[:3])
            raise NasmercError(f"--out {out}: holds other files ({names} ...); choose a new or empty folder, "
                               "or remove it")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NasmercError(f"--out {out}: cannot make the folder ({exc.strerror})") from None
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{name}-{n}"
    path.mkdir(parents=True)
    return path


def open_events(run_dir: Path) -> tuple[Events, JsonlSink]:
    sink = JsonlSink(run_dir / EVENTS_FILE)
    return Events([sink], journal=sink), sink


class RunLock:
    """The ``lock`` of a run folder, held (``flock``) by the one process writing it, and
    ``process.json`` naming that process with a heartbeat every :data:`HEARTBEAT_SECONDS`."""

    def __init__(self, path: Path, command: str) -> None:
        self.path = path
        self.command = command
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, what: str) -> None:
        """Take the lock or refuse, naming the process that holds it."""
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise NasmercError(f"{what} {self.path}: in use by {holder(self.path)}; "
                               "wait for it to end or choose another folder") from None
        self._fd = fd
        self.started = time.time()
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="nasmerc-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, ended: bool = False) -> None:
        write_json(self.path / PROCESS_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                              "command": self.command, "started": self.started,
                                              "heartbeat": time.time(), "ended": ended})

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
            except OSError:  # a folder removed under a dying run: nothing to report to
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            try:
                self._beat(ended=True)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder(run_dir: Path, command: bool = True) -> str:
    """Who writes (or last wrote) a run folder, from its ``process.json``: ``process PID on HOST`` and,
    with ``command``, the command in brackets."""
    process = read_process(run_dir) or {}
    text = f"process {process.get('pid', '?')} on {process.get('host', '?')}"
    return f"{text} ({process.get('command', 'a nasmerc run')})" if command else text


def read_process(run_dir: Path) -> dict[str, Any] | None:
    """``process.json`` of a run folder (``None`` when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / PROCESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_live(run_dir: Path) -> bool:
    """True when a process holds the run folder's lock (it is being written now)."""
    lock = Path(run_dir) / LOCK_FILE
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def resume_command(run_dir: Path, command: str) -> str:
    return f"nasmerc {command} --resume {run_dir}"


def cut_events(run_dir: Path) -> int:
    """Cut ``events.jsonl`` of a run being resumed where its saved work ends, and return how many events
    of the run it keeps (``run_resume`` marks not counted; see ``nasmerc.events.Events``).

    With a checkpoint (``resume.json``) the log is cut where it stood when the checkpoint was written;
    otherwise after its last complete line, less a closing ``run_end``.
    """
    path = Path(run_dir) / EVENTS_FILE
    data = path.read_bytes() if path.exists() else b""
    record = read_resume(run_dir)
    if record is not None and int(record["events_offset"]) <= len(data):
        data = data[: int(record["events_offset"])]
    else:
        data = data[: data.rfind(b"\n") + 1]
    lines = data.splitlines(keepends=True)
    kinds = []
    for line in lines:
        try:
            kinds.append(json.loads(line.decode("utf-8")).get("type"))
        except (ValueError, UnicodeDecodeError, AttributeError):
            kinds.append(None)
    while kinds and kinds[-1] == "run_end":
        kinds.pop()
        lines.pop()
    with open(path, "wb") as fh:
        fh.write(b"".join(lines))
    return sum(1 for k in kinds if k != "run_resume")


def run_status(run_dir: Path) -> str:
    """``finished``; ``running`` (a process holds the lock); ``stopped`` (it has a lock no process holds:
    it can be resumed); or ``unknown`` (an events file with no lock beside it: written elsewhere)."""
    from nasmerc.events import read_events

    run_dir = Path(run_dir)
    if is_live(run_dir):
        return "running"
    events = read_events(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).exists() else []
    if events and events[-1].get("type") == "run_end" and events[-1].get("status") == "finished":
        return "finished"
    return "stopped" if (run_dir / LOCK_FILE).exists() else "unknown"


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise NasmercError(f"{path}: no such file (expected {what})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise NasmercError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise NasmercError(f"{path}: not UTF-8 text (expected {what})") from None
    except IsADirectoryError:
        raise NasmercError(f"{path}: a folder (expected {what})") from None
    if not isinstance(data, dict):
        raise NasmercError(f"{path}: expected a mapping ({what})")
    return data


@dataclass
class ArchFile:
    """``arch.yaml``: the architecture, the run record it was found in (everything needed to rebuild
    and retrain it) and the search's numbers."""

    spec: RunSpec
    arch: dict[str, Any]
    search: dict[str, Any] = field(default_factory=dict)

    # the record's fields, as the file's readers name them
    space = property(lambda self: self.spec.space)
    preset = property(lambda self: self.spec.preset)
    space_config = property(lambda self: self.spec.space_config)
    data = property(lambda self: self.spec.data)
    data_overrides = property(lambda self: self.spec.data_overrides)
    signature = property(lambda self: self.spec.signature)
    strategy = property(lambda self: self.spec.strategy)
    seed = property(lambda self: self.spec.seed)
    train = property(lambda self: to_plain(self.spec.train))

    def write(self, path: Path) -> Path:
        return write_yaml(path, {"nasmerc": __version__, **self.spec.to_dict(), "arch": self.arch,
                                 "search": self.search})

    @classmethod
    def read(cls, path: str | Path) -> "ArchFile":
        path = Path(path)
        if path.is_dir():
            path = path / ARCH_FILE
        d = read_yaml(path, "an architecture file written by nasmerc search or export")
        where = f"{path} (expected an arch.yaml written by nasmerc)"
        if "arch" not in d:
            raise NasmercError(f"{where}: missing key(s) ['arch']")
        if not isinstance(d["arch"], dict) and d["arch"] is not None:
            raise NasmercError(f"{path}: 'arch' must be a mapping of choice label to choice")
        spec = RunSpec.from_dict(d, where, require=("space", "space_config", "data", "signature"),
                                 others=("arch", "search"))
        return cls(spec, dict(d["arch"] or {}), dict(d.get("search") or {}))


def write_config(run_dir: Path, command: str, spec: RunSpec, **extra: Any) -> Path:
    """``config.yaml``: the command, the run record and ``extra`` (the data's full config)."""
    return write_yaml(run_dir / CONFIG_FILE, {"nasmerc": __version__, "command": command, **spec.to_dict(), **extra})


class Run:
    """An open run folder: its path and event stream, from ``run_start`` to ``run_end``.

    Made by :func:`open_run`; the body of the ``with`` calls :meth:`finish` with the best value and
    a message when it succeeds; leaving the block otherwise ends the log as ``failed`` or
    ``interrupted`` (the error propagates).
    """

    def __init__(self, path: Path, events: Events) -> None:
        self.path = path
        self.events = events
        self.start = time.time()
        self._end: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def finish(self, best: float | None, message: str) -> None:
        self._end = {"status": "finished", "best": best, "message": message}


@contextmanager
def _scratch(command: str) -> Iterator[Path]:
    """A private folder for what a rank other than 0 would write, removed afterwards."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"nasmerc-{command}-rank{distributed.current().rank}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def open_run(out: str | None, default_name: str, command: str, spec: RunSpec, sinks: Sequence[EventSink] = (),
             *, n_batches: int, extra_config: Mapping[str, Any] | None = None,
             resume: bool = False) -> Iterator[Run]:
    """The one bracket of every run: make the folder (:func:`new_run_dir`) and take its lock, write
    ``config.yaml``, open ``events.jsonl`` with ``sinks``, emit ``run_start``, yield the :class:`Run`,
    emit ``run_end`` and close the log, whatever happened in between.

    With ``resume`` the folder ``out`` is a run that did not finish: its lock is taken, its log cut
    where the saved work ends (:func:`cut_events`) and marked ``run_resume``, and the events the replay
    emits again are not written twice. A run that finishes removes its checkpoints.
    """
    with contextlib.ExitStack() as stack:
        if not distributed.current().leader:  # under torchrun rank 0 writes the run folder (nasmerc.train.distributed)
            out, sinks, resume = str(stack.enter_context(_scratch(command)) / "run"), (), False
        yield stack.enter_context(_open_run(out, default_name, command, spec, sinks, n_batches=n_batches,
                                            extra_config=extra_config, resume=resume))


@contextmanager
def _open_run(out: str | None, default_name: str, command: str, spec: RunSpec, sinks: Sequence[EventSink],
              *, n_batches: int, extra_config: Mapping[str, Any] | None, resume: bool) -> Iterator[Run]:
    if resume:
        path = Path(out or "")
        lock = RunLock(path, command)
        lock.acquire("--resume")
    else:
        path = new_run_dir(out, default_name)
        lock = RunLock(path, command)
        lock.acquire("--out")
    try:
        if resume:
            kept = cut_events(path)
        else:
            write_config(path, command, spec, **dict(extra_config or {}))
        events, jsonl = open_events(path)
    except BaseException:
        lock.release()
        raise
    for sink in sinks:
        events.add(sink)
    run = Run(path, events)
    metric = metrics.primary_metric(spec.signature.task if spec.signature is not None else "classification")
    if resume:
        events.position, events.replay_until = 1, kept
        events.mark("run_resume", command=command, events=kept, pid=os.getpid(), host=socket.gethostname())
    else:
        events.emit("run_start", command=command, space=spec.space,
                    strategy=spec.strategy if command == "search" else command, data=spec.data, seed=spec.seed,
                    device=spec.device, protocol=spec.protocol,
                    epochs=spec.train.epochs, n_batches=n_batches, run=str(path), metric=metric,
                    higher_is_better=metrics.HIGHER_IS_BETTER[metric])
    try:
        yield run
        end = run._end or {"status": "finished", "best": None, "message": ""}
        events.mark("run_end", elapsed=run.elapsed, **end)
        for stale in [*path.glob("checkpoint*.pt"), path / RESUME_FILE]:
            stale.unlink(missing_ok=True)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        events.mark("run_end", status=status, best=None, elapsed=run.elapsed, message=str(exc),
                    resume=resume_command(path, command))
        if isinstance(exc, KeyboardInterrupt):
            exc.resume = resume_command(path, command)  # type: ignore[attr-defined]  (the CLI says it)
        raise
    finally:
        jsonl.close()
        lock.release()


def find_model(run: str | Path) -> Path:
    """The ``model.pt`` of a run: in the folder itself or in its ``retrain/`` folder."""
    run = Path(run)
    if run.is_file() and run.name == MODEL_FILE:
        return run
    for candidate in (run / MODEL_FILE, run / "retrain" / MODEL_FILE):
        if candidate.exists():
            return candidate
    if not run.exists():
        raise NasmercError(f"{run}: no such run folder")
    for folder in (run, run / "retrain"):
        config = folder / CONFIG_FILE
        if config.exists() and not (folder / SEARCH_FILE).exists():
            status = run_status(folder)
            command = str(read_yaml(config, "the config.yaml of a nasmerc run folder").get("command", "search"))
            if status == "running":
                raise NasmercError(f"{folder}: still running ({holder(folder, command=False)}); "
                                   "evaluate it when it has finished")
            if status == "stopped":
                raise NasmercError(f"{folder}: the run did not finish (no process is writing it); resume it with: "
                                   f"{resume_command(folder, command)}")
    raise NasmercError(f"{run}: no {MODEL_FILE} here or in {run / 'retrain'} "
                       f"(train one with: nasmerc retrain {run / ARCH_FILE})")
