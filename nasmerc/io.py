"""Atomic file writes: a result file is either the old one or the complete new one, never half.

Each writer puts the content in a temporary file beside the target and renames it over the target
(``os.replace`` is atomic on POSIX and Windows), so an interrupted command leaves nothing corrupt.

File modes: every file nasmerc writes is created with ``0666`` less the process's umask, as any
ordinary program's files are (``0644`` under the usual umask ``022``; ``0600`` under ``077``), the
temporary files of atomic writes included, so a run folder's files share one mode and sharing a
folder is the umask's business. Nothing secret is written (a storage password is masked), so no
file needs a stricter mode than the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


def _read_umask() -> int:
    """The process's umask (read by setting it and putting it back: once, at import, before any thread)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them to the handlers that were there.

    An interruption raised inside ``torch.save`` makes its zip writer fail while closing, and that
    error would replace the interruption (no ``run_end: interrupted``, exit 1 instead of 130 / 143).
    Outside the main thread signals cannot be handled anyway, so the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum))
                for signum in _DEFERRED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with deferred_signals():
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


def read_torch(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing, truncated or foreign file (or one
    that would need ``weights_only=False``, i.e. unpickling code) is a one-line error naming the file
    and ``what`` it should be. Nothing but tensors and plain containers is ever unpickled."""
    import pickle
    import zipfile

    import torch

    from nasmerc.errors import NasmercError

    path = Path(path)
    if not path.is_file():
        raise NasmercError(f"{path}: {'is a folder' if path.is_dir() else 'file does not exist'} (expected {what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message suggests weights_only=False: never for a file we did not write
        raise NasmercError(f"{path}: not {what} (it holds objects other than tensors and plain values)") from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            MemoryError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise NasmercError(f"{path}: not {what} ({first[:160]})") from None
