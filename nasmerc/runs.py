"""Run folders: the resolved config, the event log, the architecture file and the results.

A search run folder holds::

    config.yaml    the fully resolved configuration (``nasmerc search --config`` reads it back)
    events.jsonl   every event of the run, one JSON object per line
    arch.yaml      the found architecture, with everything needed to retrain it
    search.json    best validation metric, wall time, parameter counts
    alpha.pt ...   strategy files (DARTS' architecture weights)

``retrain`` adds a folder (``retrain/`` beside ``arch.yaml`` by default) with ``model.pt`` (state dict
and architecture, loadable with ``torch.load(..., weights_only=True)``) and ``metrics.json``;
``evaluate`` writes ``evaluation.json`` next to ``model.pt``. Results are written atomically and
last, so a folder without them is visibly unfinished.
"""

from __future__ import annotations

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
from nasmerc.io import write_yaml
from nasmerc.spec import RunSpec

CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
ARCH_FILE = "arch.yaml"
SEARCH_FILE = "search.json"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"


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
        for marker in (SEARCH_FILE, MODEL_FILE):
            if (path / marker).exists():
                raise NasmercError(f"--out {out}: holds a finished run ({marker}); choose another folder")
        if path.is_dir() and any(path.iterdir()):
            what = ("an unfinished run (no search.json or model.pt)" if (path / CONFIG_FILE).exists()
                    else f"other files ({', '.join(sorted(p.name for p in path.iterdir())[:3])} ...)")
            raise NasmercError(f"--out {out}: holds {what}; choose a new or empty folder, or remove it")
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
    return Events([sink]), sink


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise NasmercError(f"{path}: no such file (expected {what})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise NasmercError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
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
def open_run(out: str | None, default_name: str, command: str, spec: RunSpec, sinks: Sequence[EventSink] = (),
             *, n_batches: int, extra_config: Mapping[str, Any] | None = None) -> Iterator[Run]:
    """The one bracket of every run: make the folder (:func:`new_run_dir`), write ``config.yaml``, open
    ``events.jsonl`` with ``sinks``, emit ``run_start``, yield the :class:`Run`, emit ``run_end`` and close
    the log, whatever happened in between."""
    path = new_run_dir(out, default_name)
    write_config(path, command, spec, **dict(extra_config or {}))
    events, jsonl = open_events(path)
    for sink in sinks:
        events.add(sink)
    run = Run(path, events)
    metric = metrics.primary_metric(spec.signature.task if spec.signature is not None else "classification")
    events.emit("run_start", command=command, space=spec.space, strategy=spec.strategy if command == "search" else command,
                data=spec.data, seed=spec.seed, epochs=spec.train.epochs, n_batches=n_batches, run=str(path),
                metric=metric, higher_is_better=metrics.HIGHER_IS_BETTER[metric])
    try:
        yield run
        end = run._end or {"status": "finished", "best": None, "message": ""}
        events.emit("run_end", elapsed=run.elapsed, **end)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        events.emit("run_end", status=status, best=None, elapsed=run.elapsed, message=str(exc))
        raise
    finally:
        jsonl.close()


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
    raise NasmercError(f"{run}: no {MODEL_FILE} here or in {run / 'retrain'} "
                       f"(train one with: nasmerc retrain {run / ARCH_FILE})")
