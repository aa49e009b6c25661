"""Atomic file writes: a result file is either the old one or the complete new one, never half.

Each writer puts the content in a temporary file beside the target and renames it over the target
(``os.replace`` is atomic on POSIX and Windows), so an interrupted command leaves nothing corrupt.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | Path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` through a temporary file; load it back with ``weights_only=True``."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)
