"""Typed overrides of dataclass configs from ``--set key=value`` and YAML.

Every component has one dataclass config. Values arrive as strings from the command line or as
YAML scalars; :func:`apply_overrides` checks each key against the dataclass fields (dotted keys
reach into dict fields, ``snr.text=2``) and converts the value to the field's type, so a typo or a
wrongly typed value fails at once with the key named.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Mapping

import yaml

from nasmerc.errors import NasmercError


def parse_assignments(items: Iterable[str], flag: str = "--set") -> dict[str, str]:
    """Turn ``["a=1", "b.c=x"]`` into ``{"a": "1", "b.c": "x"}``; a malformed item is named."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NasmercError(f"{flag} {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a named error."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise NasmercError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise NasmercError(f"config file {path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise NasmercError(f"config file {path!r}: not UTF-8 text (expected a YAML mapping)") from None
    except IsADirectoryError:
        raise NasmercError(f"config file {path!r}: a folder (expected a YAML file)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NasmercError(f"config file {path!r}: expected a mapping of key: value, found {type(data).__name__}")
    return data


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a string or a YAML value) to type ``tp``; raise a named error if it can't."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if tp is Any:
            return value
        if origin is typing.Literal:
            if value not in args:
                raise ValueError(value)
            return value
        if origin in (typing.Union, types.UnionType):
            if value in (None, "none", "None", "null") and type(None) in args:
                return None
            for alt in args:
                if alt is type(None):
                    continue
                try:
                    return coerce(value, alt, key)
                except NasmercError:
                    continue
            raise ValueError(value)
        if tp is bool:
            return value if isinstance(value, bool) else _bool(str(value))
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip())
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            out = float(value)
            if out != out:
                raise ValueError(value)
            return out
        if tp is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if origin in (tuple, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            item_tp = args[0] if args else Any
            converted = [coerce(v.strip() if isinstance(v, str) else v, item_tp, key) for v in items if v != ""]
            return tuple(converted) if origin is tuple else converted
        if origin is dict:
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return {str(k): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    except (ValueError, TypeError):
        raise NasmercError(f"{key}={value!r}: expected {_type_name(tp)}") from None
    return value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], where: str = "config") -> Any:
    """Return a copy of dataclass ``cfg`` with ``overrides`` applied, each value typed and checked.

    A key may be dotted to set one entry of a dict field (``dims.text=64``); an unknown key is refused
    with the list of known ones.
    """
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise NasmercError(f"{where}: unknown key {key!r} (known: {', '.join(names)})")
        tp = hints[head]
        if rest:
            if typing.get_origin(tp) is not dict:
                raise NasmercError(f"{where}: {head!r} is not a mapping, so {key!r} cannot be set")
            current = dict(changes.get(head, getattr(cfg, head)))
            current[rest] = coerce(value, typing.get_args(tp)[1], key)
            changes[head] = current
        else:
            changes[head] = coerce(value, tp, key)
    return dataclasses.replace(cfg, **changes)


def plain(value: Any) -> Any:
    """``value`` as plain YAML/JSON-ready values: tuples become lists, mapping keys strings, nested."""
    if isinstance(value, (list, tuple)):
        return [plain(x) for x in value]
    if isinstance(value, Mapping):
        return {str(k): plain(x) for k, x in value.items()}
    return value


def to_plain(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-ready values (tuples become lists)."""
    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
