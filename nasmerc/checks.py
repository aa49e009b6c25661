"""Range checks for configs: one message per kind of mistake, written once.

Every config (a space's, a strategy's, the trainer's) checks its values when it is built, before any
run folder exists. These helpers raise a one-line :class:`~nasmerc.errors.NasmercError` that names
where the value belongs, the key, the value and what was expected::

    at_least("space 'rmnas'", 1, hidden_dim=0)
    # space 'rmnas': hidden_dim=0: expected an integer >= 1
    in_range("strategy 'darts'", "arch_fraction", 1.0, 0.0, 1.0, low_open=True, high_open=True)
    # strategy 'darts': arch_fraction=1.0: expected a number in (0.0, 1.0)

Each helper checks all the values it is given and reports the first bad one in the order given.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from nasmerc.errors import NasmercError


def _fail(where: str, key: str, value: Any, expected: str) -> None:
    raise NasmercError(f"{where}: {key}={value!r}: expected {expected}")


def at_least(where: str, minimum: int, **values: Any) -> None:
    """Integers ``>= minimum`` (a bool or a float is refused too)."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(where, key, value, f"an integer >= {minimum}")


def positive(where: str, **values: Any) -> None:
    """Integers ``>= 1``."""
    at_least(where, 1, **values)


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def non_negative(where: str, **values: float) -> None:
    """Finite numbers ``>= 0``."""
    for key, value in values.items():
        if not (_finite(value) and value >= 0):
            _fail(where, key, value, "a finite number >= 0")


def greater_than_zero(where: str, **values: float) -> None:
    """Finite numbers ``> 0``."""
    for key, value in values.items():
        if not (_finite(value) and value > 0):
            _fail(where, key, value, "a finite number > 0")


def in_range(where: str, key: str, value: float, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> None:
    """A number in the interval from ``low`` to ``high``, each end closed unless said open."""
    above = _finite(value) and (value > low if low_open else value >= low)
    below = _finite(value) and (value < high if high_open else value <= high)
    if not (above and below):
        _fail(where, key, value, f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def probability(where: str, **values: float) -> None:
    """Numbers in ``[0, 1]``."""
    for key, value in values.items():
        in_range(where, key, value, 0.0, 1.0)


def dropout(where: str, value: float, key: str = "dropout") -> None:
    """A dropout rate in ``[0, 1)``."""
    in_range(where, key, value, 0.0, 1.0, high_open=True)


def one_of(where: str, key: str, value: Any, allowed: Iterable[Any]) -> None:
    """``value`` among ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        _fail(where, key, value, "one of " + ", ".join(repr(a) for a in allowed))


def distinct_names(where: str, key: str, names: Sequence[str], pool: Iterable[str]) -> None:
    """A non-empty list of distinct names, each from ``pool``."""
    pool = list(pool)
    if not names or any(n not in pool for n in names) or len(set(names)) != len(names):
        raise NasmercError(f"{where}: {key}={list(names)}: expected distinct names from {pool}")


def divisible(where: str, key: str, value: int, by_key: str, by: int) -> None:
    """``value`` a multiple of ``by`` (say, a width of a number of heads)."""
    if by and value % by:
        raise NasmercError(f"{where}: {key}={value} must be divisible by {by_key}={by}")


def even(where: str, key: str, value: int, why: str = "") -> None:
    """An even integer; ``why`` says what halves it (a bidirectional RNN of ``value / 2`` units per direction)."""
    if isinstance(value, bool) or not isinstance(value, int) or value % 2:
        _fail(where, key, value, "an even integer" + (f" ({why})" if why else ""))


def odd_positive(where: str, **values: int) -> None:
    """Positive odd integers (kernel sizes that keep a sequence's length)."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
            _fail(where, key, value, "a positive odd number")


def window(where: str, **values: int) -> None:
    """Context windows: ``-1`` (the whole conversation on that side) or an integer ``>= 0``."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            _fail(where, key, value, "-1 (whole conversation) or an integer >= 0")


def output_file(flag: str, path: str | os.PathLike) -> Path:
    """An output file a flag names (``--plot``, ``--json``), checked before any work starts: a path that
    is not a folder (nor a device or pipe: the file is replaced atomically), in a folder that exists
    and is writable; no folder is made for it. Returns the path."""
    text = os.fspath(path)
    out = Path(text)
    if not text or text.endswith(("/", os.sep)) or out.is_dir():
        raise NasmercError(f"{flag} {text!r}: expected a file path, found {'a folder' if text else 'nothing'}")
    if out.exists() and not out.is_file():
        raise NasmercError(f"{flag} {text!r}: expected a regular file to write, found a device, pipe or socket")
    parent = out.parent
    if not parent.is_dir():
        found = "a file" if parent.exists() else "no such folder"
        raise NasmercError(f"{flag} {text!r}: expected an existing folder {str(parent)!r} to write in, found {found}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NasmercError(f"{flag} {text!r}: folder {str(parent)!r} is not writable")
    return out
