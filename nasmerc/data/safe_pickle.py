"""A restricted unpickler for the community's feature pickles.

``pickle.load`` runs whatever callable a file names, so a downloaded ``.pkl`` can execute code.
:class:`SafeUnpickler` overrides ``find_class`` to admit only what feature files are made of:
numpy arrays, dtypes and scalars (under both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core``
names), lists, tuples, dicts, sets, numbers, strings, bytes, ``collections.OrderedDict`` and a
``collections.defaultdict`` whose factory is ``list``, ``dict``, ``int``, ``float`` or ``set``.
Any other global (``os.system``, ``builtins.eval``, a class) is refused before anything is called,
with the file named. Files written by Python 2 are read with ``encoding="latin1"``, which is what
numpy needs to restore their array buffers.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nasmerc.errors import NasmercError

_DEFAULTDICT_FACTORIES = (list, dict, int, float, set)


def _defaultdict(factory: Any = None, *rest: Any) -> collections.defaultdict:
    """``collections.defaultdict`` with its factory checked (it would be called on a missing key)."""
    if rest or not (factory is None or factory in _DEFAULTDICT_FACTORIES):
        raise pickle.UnpicklingError(f"defaultdict with factory {factory!r} (allowed: list, dict, int, float, set)")
    return collections.defaultdict(factory)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles written by Python 3 spell ``bytes``; only the latin-1 codec is admitted."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} (allowed: latin1)")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct, scalar
        from numpy.core.numeric import _frombuffer
    out: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        out[(f"{core}.multiarray", "scalar")] = scalar
        out[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    out[("numpy", "ndarray")] = np.ndarray
    out[("numpy", "dtype")] = np.dtype
    return out


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("builtins", name): getattr(__import__("builtins"), name)
        for name in ("list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
                     "str", "bytes", "bytearray")
    }
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("collections", "defaultdict")] = _defaultdict
    allowed[("_codecs", "encode")] = _codecs_encode
    allowed.update(_numpy_globals())
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals listed in the module docstring."""

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        # Python 2 names (``__builtin__``, ``copy_reg``) map to their Python 3 modules first.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if SafeUnpickler._ALLOWED is None:
            SafeUnpickler._ALLOWED = _allowed()
        try:
            return SafeUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (only numpy arrays, lists, dicts, numbers and strings are read)"
            ) from None


def load(path: str | Path) -> Any:
    """Read a pickle with :class:`SafeUnpickler`; any failure is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise NasmercError(f"{path}: file does not exist (expected a pickle file)")
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise NasmercError(f"{path}: unsafe or unreadable pickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, ImportError, OSError) as exc:
        raise NasmercError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def loads(data: bytes, where: str = "<bytes>") -> Any:
    """:func:`load` for bytes in memory (tests, archives)."""
    import io

    try:
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise NasmercError(f"{where}: unsafe or unreadable pickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise NasmercError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from None
