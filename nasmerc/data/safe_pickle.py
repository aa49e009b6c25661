"""A restricted unpickler for the community's feature pickles.

``pickle.load`` runs whatever callable a file names, so a downloaded ``.pkl`` can execute code.
:class:`SafeUnpickler` overrides ``find_class`` to admit only what feature files are made of:
numpy arrays, dtypes and scalars (under both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core``
names), lists, tuples, dicts, sets, numbers, strings, bytes, ``collections.OrderedDict`` and a
``collections.defaultdict`` whose factory is ``list``, ``dict``, ``int``, ``float`` or ``set``.
Any other global (``os.system``, ``builtins.eval``, a class) is refused before anything is called,
with the file named. Files written by Python 2 are read with ``encoding="latin1"``, which is what
numpy needs to restore their array buffers.

A file may not make the reader allocate more than the file itself justifies, so a few bytes cannot
ask for ``bytearray(2**62)``, a 2**31-entry memo or an array of a billion elements:

- every length the stream states (``BINBYTES8``, ``BYTEARRAY8``, a frame, ...) must fit in the
  bytes the file has left; the data a file carries is in the file;
- what the admitted callables build is counted against one budget per file,
  ``max(MIN_BUDGET, BUDGET_FACTOR * file size)`` bytes (16 times the file, at least 1 MiB): an
  array is counted at its element count times its item size (at least 1 byte an element, so a
  zero-size dtype of 2**62 elements is no escape), ``bytes(n)`` / ``bytearray(n)`` at ``n``, a
  container built from another at ``CONTAINER_ITEM_BYTES`` (64) bytes an item. A genuine feature
  pickle carries every array's bytes in the file and stays well inside (about 1-3 times its size);
  a file that asks for more is refused before the allocation, naming the request and the budget;
- the memo is a dict (the pure-Python unpickler, ``pickle._Unpickler``), so a huge memo index
  costs nothing; ``NEWOBJ`` (class instances only) and a ``BUILD`` state for anything but a numpy
  array, dtype or scalar are refused, and an object array's state must list exactly one item per
  element (numpy reads past a shorter list and crashes the interpreter).

The pure-Python unpickler is 2 to 10 times slower than the C one on a file of many small arrays
(about a second for a DialogueGCN IEMOCAP file); an MMSA file is a few big arrays, read at disk speed.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import io
import math
import operator
import os
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from nasmerc.errors import NasmercError

_DEFAULTDICT_FACTORIES = (list, dict, int, float, set)
BUDGET_FACTOR = 16
MIN_BUDGET = 2**20
CONTAINER_ITEM_BYTES = 64


class TooLarge(pickle.UnpicklingError):
    """A request beyond the file's allocation budget (see the module docstring)."""


class _Bounded:
    """The file's ``read`` / ``readline`` / ``readinto``, refusing a read past the end before it is made."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size, self.left = fh, size, size

    def read(self, n: int) -> bytes:
        if n > self.left:
            raise pickle.UnpicklingError(f"pickle data was truncated: a record of {n:,} bytes at byte "
                                         f"{self.size - self.left:,}, {self.left:,} left in the file")
        data = self.fh.read(n)
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self.fh.readline()
        self.left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles written by Python 3 spell ``bytes``; only the latin-1 codec is admitted."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} (allowed: latin1)")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[str, Any]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct, scalar
        from numpy.core.numeric import _frombuffer
    return {"_reconstruct": _reconstruct, "scalar": scalar, "_frombuffer": _frombuffer}


def _elements(shape: Any) -> int:
    """The element count of a shape (an int or a sequence of ints), as numpy would take it."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return math.prod(max(operator.index(d), 0) for d in dims)


def _array_bytes(shape: Any, dtype: Any) -> int:
    """What an array of ``shape`` and ``dtype`` is counted at: elements times item size, at least 1."""
    return _elements(shape) * max(np.dtype(dtype).itemsize, 1)


class SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler resolving only the globals listed in the module docstring, within
    the file's allocation budget (``budget`` bytes)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, *, size: int, encoding: str = "latin1") -> None:
        self._bounded = _Bounded(file, size)
        super().__init__(self._bounded, encoding=encoding)
        self.budget = max(MIN_BUDGET, BUDGET_FACTOR * size)
        self.spent = 0
        self._allowed = self._make_allowed()

    # -- the budget -------------------------------------------------------------------------------
    def charge(self, n: int, what: str) -> None:
        """Count ``n`` bytes of ``what`` against the budget; refuse before allocating when over."""
        self.spent += n
        if self.spent > self.budget:
            raise TooLarge(f"{what} would allocate {n:,} bytes, beyond the file's budget of {self.budget:,} "
                           f"bytes ({BUDGET_FACTOR} x its {self._bounded.size:,} bytes)")

    def _copying(self, make: Callable[..., Any], name: str) -> Callable[..., Any]:
        """A container constructor (``list(x)``, ``dict(x)`` ...) charged per item of its argument."""
        def build(*args: Any, **kwargs: Any) -> Any:
            for a in (*args, *kwargs.values()):
                if hasattr(a, "__len__"):
                    self.charge(CONTAINER_ITEM_BYTES * len(a), f"{name}() of {len(a):,} items")
                elif not isinstance(a, (int, float, complex, type(None))):
                    raise pickle.UnpicklingError(f"{name}() of a {type(a).__name__}")
            return make(*args, **kwargs)
        return build

    def _sized(self, make: Callable[..., Any], name: str, per_item: int) -> Callable[..., Any]:
        """``bytes`` / ``bytearray`` / ``_codecs.encode``: ``bytes(n)`` counted at ``n``, a conversion at
        ``per_item`` bytes an item of its argument (4 for a string in any codec, 1 for latin-1)."""
        def build(*args: Any) -> Any:
            if args and isinstance(args[0], (int, np.integer)) and not isinstance(args[0], bool):
                self.charge(int(args[0]), f"{name}({int(args[0])})")
            elif args and hasattr(args[0], "__len__"):
                self.charge(per_item * len(args[0]), f"{name}() of {len(args[0]):,} items")
            return make(*args)
        return build

    def _scalar(self, make: Callable[..., Any], name: str) -> Callable[..., Any]:
        """``str`` / ``int`` / ``float`` / ``complex`` / ``bool`` of strings and numbers only."""
        def build(*args: Any) -> Any:
            for a in args:
                if not isinstance(a, (str, bytes, bytearray, int, float, complex, np.generic)):
                    raise pickle.UnpicklingError(f"{name}() of a {type(a).__name__}")
                if isinstance(a, (str, bytes, bytearray)):
                    self.charge(len(a), f"{name}() of {len(a):,} characters")
            return make(*args)
        return build

    def _make_allowed(self) -> dict[tuple[str, str], Any]:
        core = _numpy_globals()

        def ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
            self.charge(_array_bytes(shape, dtype), f"numpy.ndarray of shape {shape!r}")
            return np.ndarray(shape, dtype, *args, **kwargs)

        def reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
            if cls is not ndarray and cls is not np.ndarray:
                raise pickle.UnpicklingError(f"_reconstruct of {cls!r} (allowed: numpy.ndarray)")
            self.charge(_array_bytes(shape, dtype), f"an array of shape {shape!r}")
            return core["_reconstruct"](np.ndarray, shape, dtype)

        def frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
            self.charge(_array_bytes(shape, dtype), f"an array of shape {shape!r}")
            return core["_frombuffer"](buf, dtype, shape, order)

        def scalar(dtype: Any, *args: Any) -> Any:
            self.charge(max(np.dtype(dtype).itemsize, 1), "a numpy scalar")
            return core["scalar"](dtype, *args)

        allowed: dict[tuple[str, str], Any] = {}
        for name in ("list", "dict", "tuple", "set", "frozenset"):
            allowed[("builtins", name)] = self._copying(getattr(builtins, name), name)
        for name in ("int", "float", "complex", "bool", "str"):
            allowed[("builtins", name)] = self._scalar(getattr(builtins, name), name)
        for name in ("bytes", "bytearray"):
            allowed[("builtins", name)] = self._sized(getattr(builtins, name), name, 4)
        allowed[("collections", "OrderedDict")] = self._copying(collections.OrderedDict, "OrderedDict")
        factories = {allowed[("builtins", t.__name__)]: t for t in _DEFAULTDICT_FACTORIES}

        def defaultdict(factory: Any = None, *rest: Any) -> collections.defaultdict:
            """The factory checked (it would be called on a missing key), and a real type again."""
            if rest or not (factory is None or factory in factories):
                raise pickle.UnpicklingError(f"defaultdict with factory {factory!r} "
                                             "(allowed: list, dict, int, float, set)")
            return collections.defaultdict(factories.get(factory))

        allowed[("collections", "defaultdict")] = defaultdict
        allowed[("_codecs", "encode")] = self._sized(_codecs_encode, "_codecs.encode", 1)
        for module in ("numpy.core", "numpy._core"):
            allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
            allowed[(f"{module}.multiarray", "scalar")] = scalar
            allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
        allowed[("numpy", "ndarray")] = ndarray
        allowed[("numpy", "dtype")] = np.dtype
        return allowed

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        # Python 2 names (``__builtin__``, ``copy_reg``) map to their Python 3 modules first.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (only numpy arrays, lists, dicts, numbers and strings are read)"
            ) from None

    # -- opcodes that could allocate or build without a checked callable ---------------------------
    def load_bytearray8(self) -> None:
        n, = struct.unpack("<Q", self.read(8))
        if n > self._bounded.size:
            raise pickle.UnpicklingError(f"pickle data was truncated: a bytearray of {n:,} bytes in a file of "
                                         f"{self._bounded.size:,} bytes")
        buf = bytearray(n)
        self.readinto(buf)
        self.append(buf)

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise pickle.UnpicklingError(f"an array state of {type(state).__name__} (expected a numpy state tuple)")
            shape, dtype = state[-4], state[-3]
            if not isinstance(dtype, np.dtype):
                raise pickle.UnpicklingError(f"an array state with dtype {type(dtype).__name__}")
            self.charge(_array_bytes(shape, dtype), f"an array of shape {shape!r}")
            items = state[-1]
            if dtype.hasobject and not (isinstance(items, list) and len(items) == _elements(shape)):
                # numpy reads past a short list (a crash of the interpreter, not an exception)
                found = f"{len(items)} items" if isinstance(items, list) else type(items).__name__
                raise pickle.UnpicklingError(f"an object array of shape {shape!r} with {found} (expected a list "
                                             f"of {_elements(shape):,})")
        elif not isinstance(inst, (np.dtype, np.generic)):
            raise pickle.UnpicklingError(f"a state for a {type(inst).__name__} (only numpy arrays, dtypes and "
                                         "scalars take one)")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def load_newobj(self) -> None:
        raise pickle.UnpicklingError("NEWOBJ (an instance of a class; feature files hold none)")

    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj


_NOT_READABLE = (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError, OSError,
                 MemoryError, OverflowError, RecursionError, struct.error)


def _read(fh: BinaryIO, size: int, where: str) -> Any:
    try:
        return SafeUnpickler(fh, size=size, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise NasmercError(f"{where}: unsafe or unreadable pickle: {exc}") from None
    except _NOT_READABLE as exc:
        raise NasmercError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def load(path: str | Path) -> Any:
    """Read a pickle with :class:`SafeUnpickler`; any failure is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        found = "is a folder" if path.is_dir() else "file does not exist"
        raise NasmercError(f"{path}: {found} (expected a pickle file)")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise NasmercError(f"{path}: cannot be read ({exc.strerror})") from None
    with fh:
        return _read(fh, os.fstat(fh.fileno()).st_size, str(path))


def loads(data: bytes, where: str = "<bytes>") -> Any:
    """:func:`load` for bytes in memory (tests, archives)."""
    return _read(io.BytesIO(data), len(data), where)
