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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from nasmerc import __version__
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.events import Events, JsonlSink
from nasmerc.io import write_yaml

CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
ARCH_FILE = "arch.yaml"
SEARCH_FILE = "search.json"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"


def new_run_dir(out: str | None, name: str, root: str = "runs") -> Path:
    """``out`` if given (must not hold a finished run), else ``runs/<timestamp>-<name>`` (made unique)."""
    if out is not None:
        path = Path(out)
        for marker in (SEARCH_FILE, MODEL_FILE):
            if (path / marker).exists():
                raise NasmercError(f"--out {out}: holds a finished run ({marker}); choose another folder")
        path.mkdir(parents=True, exist_ok=True)
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
    """``arch.yaml``: the architecture and everything needed to rebuild and retrain it."""

    space: str
    preset: str
    space_config: dict[str, Any]
    arch: dict[str, Any]
    data: str
    data_overrides: dict[str, Any]
    signature: DataSignature
    train: dict[str, Any]
    strategy: str = ""
    seed: int = 0
    search: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> Path:
        return write_yaml(path, {
            "nasmerc": __version__,
            "space": self.space,
            "preset": self.preset,
            "arch": self.arch,
            "space_config": self.space_config,
            "data": self.data,
            "data_overrides": self.data_overrides,
            "signature": self.signature.to_dict(),
            "train": self.train,
            "strategy": self.strategy,
            "seed": self.seed,
            "search": self.search,
        })

    @classmethod
    def read(cls, path: str | Path) -> "ArchFile":
        path = Path(path)
        if path.is_dir():
            path = path / ARCH_FILE
        d = read_yaml(path, "an architecture file written by nasmerc search or export")
        missing = [k for k in ("space", "arch", "space_config", "data", "signature") if k not in d]
        if missing:
            raise NasmercError(f"{path}: missing key(s) {missing} (expected an arch.yaml written by nasmerc)")
        if not isinstance(d["arch"], dict) and d["arch"] is not None:
            raise NasmercError(f"{path}: 'arch' must be a mapping of choice label to choice")
        return cls(
            space=str(d["space"]), preset=str(d.get("preset", "default")), space_config=dict(d["space_config"] or {}),
            arch=dict(d["arch"] or {}), data=str(d["data"]), data_overrides=dict(d.get("data_overrides") or {}),
            signature=DataSignature.from_dict(d["signature"]), train=dict(d.get("train") or {}),
            strategy=str(d.get("strategy", "")), seed=int(d.get("seed", 0)), search=dict(d.get("search") or {}),
        )


def write_config(run_dir: Path, config: Mapping[str, Any]) -> Path:
    return write_yaml(run_dir / CONFIG_FILE, {"nasmerc": __version__, **config})


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
