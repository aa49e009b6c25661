"""Typed overrides of dataclass configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from nasmerc.config import apply_overrides, load_yaml, parse_assignments, to_plain
from nasmerc.errors import NasmercError


@dataclass(frozen=True)
class Cfg:
    n: int = 1
    x: float = 0.5
    name: str = "a"
    flag: bool = False
    mode: Literal["fast", "slow"] = "fast"
    sizes: tuple[int, ...] = (1, 2)
    dims: dict[str, int] = field(default_factory=lambda: {"text": 4})
    maybe: int | None = None


def test_values_are_typed():
    cfg = apply_overrides(Cfg(), {"n": "3", "x": "1e-3", "flag": "yes", "mode": "slow", "sizes": "4,5,6",
                                  "dims.audio": "7", "maybe": "2"})
    assert cfg == Cfg(3, 1e-3, "a", True, "slow", (4, 5, 6), {"text": 4, "audio": 7}, 2)
    assert apply_overrides(Cfg(), {"maybe": "none"}).maybe is None
    assert apply_overrides(Cfg(), {"n": 4, "sizes": [7]}).sizes == (7,)   # YAML values
    assert to_plain(cfg)["sizes"] == [4, 5, 6]


@pytest.mark.parametrize("key, value, needle", [
    ("n", "2.5", "n='2.5': expected int"),
    ("x", "nan", "expected float"),
    ("flag", "perhaps", "expected bool"),
    ("mode", "medium", "one of 'fast', 'slow'"),
    ("nope", "1", "unknown key 'nope'"),
    ("n.sub", "1", "'n' is not a mapping"),
    ("dims.audio", "big", "dims.audio='big'"),
])
def test_bad_values_are_named(key, value, needle):
    with pytest.raises(NasmercError) as err:
        apply_overrides(Cfg(), {key: value})
    assert needle in str(err.value)


def test_parse_assignments_and_yaml(tmp_path):
    assert parse_assignments(["a=1", "b.c = x=y"]) == {"a": "1", "b.c": "x=y"}
    with pytest.raises(NasmercError, match="expected key=value"):
        parse_assignments(["novalue"])
    (tmp_path / "c.yaml").write_text("n: 3\ndims: {audio: 2}\n")
    assert load_yaml(str(tmp_path / "c.yaml")) == {"n": 3, "dims": {"audio": 2}}
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(NasmercError, match="expected a mapping"):
        load_yaml(str(tmp_path / "bad.yaml"))
    with pytest.raises(NasmercError, match="does not exist"):
        load_yaml(str(tmp_path / "none.yaml"))
