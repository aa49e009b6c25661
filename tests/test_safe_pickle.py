"""The restricted unpickler reads feature pickles and refuses anything that would run code."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from nasmerc.data import safe_pickle
from nasmerc.errors import NasmercError


class WritesAFile:
    """A malicious object: unpickling it with plain pickle would create ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class OpensAFile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_arrays_containers_and_scalars(tmp_path, protocol):
    obj = {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(1.5), "i": np.int64(3),
        "names": np.array(["ab", "c"]), "ragged": np.array([np.zeros(2), np.zeros(3)], dtype=object),
        "b": b"xy", "set": {1, 2}, "fs": frozenset([3]), "c": 1j, "t": (1, "a", None, True),
        "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list, {"k": [1]}),
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = safe_pickle.load(path)
    assert out["x"].dtype == np.float32 and out["x"].tolist() == obj["x"].tolist()
    assert out["s"] == 1.5 and out["i"] == 3 and out["names"].tolist() == ["ab", "c"]
    assert out["ragged"][1].shape == (3,) and out["b"] == b"xy" and out["set"] == {1, 2}
    assert isinstance(out["od"], collections.OrderedDict) and out["dd"].default_factory is list
    assert out["dd"]["k"] == [1] and out["t"] == (1, "a", None, True)


@pytest.mark.parametrize("make", [WritesAFile, OpensAFile])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, make):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"features": [make(str(target))]}, protocol=2))
    with pytest.raises(NasmercError) as err:
        safe_pickle.load(path)
    msg = str(err.value)
    assert str(path) in msg and "refused global" in msg and "\n" not in msg
    assert not target.exists()


def test_refuses_classes_and_defaultdict_with_a_callable_factory(tmp_path):
    path = tmp_path / "cls.pkl"
    path.write_bytes(pickle.dumps(WritesAFile))
    with pytest.raises(NasmercError, match="refused global"):
        safe_pickle.load(path)
    bad = collections.defaultdict(print)
    path.write_bytes(pickle.dumps(bad))
    with pytest.raises(NasmercError, match="refused global builtins.print"):
        safe_pickle.load(path)
    path.write_bytes(pickle.dumps(collections.defaultdict(np.ndarray)))
    with pytest.raises(NasmercError, match="defaultdict with factory"):
        safe_pickle.load(path)


def test_python2_style_pickle_reads_with_latin1(tmp_path):
    # Python 2 wrote byte strings as STRING opcodes and named builtins ``__builtin__``.
    data = b"(dp0\nS'speaker'\np1\n(lp2\nS'M'\np3\naS'F'\np4\nasS'caf\xe9'\np5\nc__builtin__\nset\np6\n((lp7\nI1\natp8\nRp9\ns."
    path = tmp_path / "py2.pkl"
    path.write_bytes(data)
    out = safe_pickle.load(path)
    assert out == {"speaker": ["M", "F"], "caf\xe9": {1}}


def test_missing_and_garbage_files_are_named(tmp_path):
    with pytest.raises(NasmercError, match="does not exist"):
        safe_pickle.load(tmp_path / "nope.pkl")
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(NasmercError) as err:
        safe_pickle.load(path)
    assert str(path) in str(err.value)
