"""Selecting a dataset file: the ``--data`` spec, the YAML dataset spec, dispatch and ``convert``.

A spec is one of:

- ``FORMAT:VARIANT:PATH``, e.g. ``dialoguegcn:iemocap6:/data/IEMOCAP_features.pkl``; for MMSA the
  level may follow the variant or the path: ``mmsa:mosi:dialogue:/data/unaligned_50.pkl`` or
  ``mmsa:mosi:/data/unaligned_50.pkl:dialogue``;
- ``VARIANT:PATH`` where the variant implies the format (``iemocap6``, ``iemocap4``, ``meld`` ->
  dialoguegcn; ``mosi``, ``mosei``, ``sims`` -> mmsa);
- ``plain:PATH`` or a path ending in ``.npz`` (nasmerc's own format);
- a path ending in ``.yaml`` / ``.yml``: a mapping with ``format``, ``variant``, ``path`` (relative
  to the YAML file's folder) and optional ``options``.

Options (``FileOptions``) come from the YAML ``options`` and then from ``overrides`` (the
``--set data.KEY=VALUE`` values, with or without the ``data.`` prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from nasmerc.checks import output_file
from nasmerc.config import apply_overrides, load_yaml
from nasmerc.data.conversation import ConversationDataset
from nasmerc.data.formats import FORMATS, FileOptions
from nasmerc.errors import NasmercError

IMPLIED_FORMAT = {"iemocap6": "dialoguegcn", "iemocap4": "dialoguegcn", "meld": "dialoguegcn",
                  "mosi": "mmsa", "mosei": "mmsa", "sims": "mmsa"}
LEVELS = ("utterance", "dialogue")


@dataclass(frozen=True)
class FileSpec:
    """Which file to read and how: format, variant, path and the options before overrides."""

    format: str
    variant: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


def is_file_spec(name: str) -> bool:
    """Whether a dataset name selects a file rather than a registered (synthetic) dataset."""
    return ":" in name or name.endswith((".yaml", ".yml", ".npz"))


def _loader(fmt: str) -> Callable[..., ConversationDataset]:
    from nasmerc.data.formats import dialoguegcn, gcnet, mmsa, plain

    return {"mmsa": mmsa.load, "dialoguegcn": dialoguegcn.load, "gcnet": gcnet.load, "plain": plain.load}[fmt]


def _from_yaml(spec: str) -> FileSpec:
    data = load_yaml(spec)
    missing = [k for k in ("format", "path") if k not in data]
    if missing:
        raise NasmercError(f"{spec}: key {missing[0]!r}: expected a dataset spec with format, variant, path "
                           f"(and optional options), found keys {sorted(data)}")
    unknown = sorted(set(data) - {"format", "variant", "path", "options"})
    if unknown:
        raise NasmercError(f"{spec}: key {unknown[0]!r}: expected only format, variant, path, options")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise NasmercError(f"{spec}: key 'options': expected a mapping, found {type(options).__name__}")
    path = Path(str(data["path"])).expanduser()
    if not path.is_absolute():
        path = Path(spec).parent / path
    return FileSpec(str(data["format"]), str(data.get("variant", "") or ""), path, dict(options))


def parse_spec(spec: str) -> FileSpec:
    """Parse a ``--data`` spec (see the module docstring); an unknown format is a named error."""
    if spec.endswith((".yaml", ".yml")) and not spec.startswith(tuple(f"{f}:" for f in FORMATS)):
        return _from_yaml(spec)
    parts = spec.split(":")
    if len(parts) == 1:
        if spec.endswith(".npz"):
            return FileSpec("plain", "", Path(spec).expanduser())
        raise NasmercError(f"data spec {spec!r}: expected FORMAT:VARIANT:PATH, a .npz or a .yaml dataset spec")
    fmt = parts[0]
    if fmt not in FORMATS:
        if fmt in IMPLIED_FORMAT:
            parts = [IMPLIED_FORMAT[fmt], *parts]
            fmt = parts[0]
        elif len(parts) >= 2 and len(fmt) == 1 and spec.endswith(".npz"):  # a Windows drive letter
            return FileSpec("plain", "", Path(spec))
        else:
            raise NasmercError(f"data spec {spec!r}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "plain":
        return FileSpec("plain", "", Path(":".join(parts[1:])).expanduser())
    if len(parts) < 3 or not parts[2]:
        raise NasmercError(f"data spec {spec!r}: expected {fmt}:VARIANT:PATH, found no path")
    variant, rest = parts[1], parts[2:]
    options: dict[str, Any] = {}
    if fmt == "mmsa" and len(rest) > 1 and rest[0] in LEVELS:
        options["level"], rest = rest[0], rest[1:]
    elif fmt == "mmsa" and len(rest) > 1 and rest[-1] in LEVELS:
        options["level"], rest = rest[-1], rest[:-1]
    return FileSpec(fmt, variant, Path(":".join(rest)).expanduser(), options)


def resolve_options(spec: FileSpec, overrides: Mapping[str, Any] | None) -> FileOptions:
    """The spec's options, then ``overrides`` (``data.`` prefix optional), typed and checked."""
    merged = dict(spec.options)
    for key, value in (overrides or {}).items():
        merged[key[5:] if key.startswith("data.") else key] = value
    flat: dict[str, Any] = {}
    for key, value in merged.items():  # YAML may give folders as a mapping
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    try:
        return apply_overrides(FileOptions(), flat, where=f"data options of {spec.path}")
    except NasmercError as exc:  # FileOptions' own checks say "data options:"; name the file
        text = str(exc)
        raise NasmercError(f"data options of {spec.path}:{text[13:]}" if text.startswith("data options:")
                           else text) from None


def load_spec(name: str, overrides: Mapping[str, Any] | None = None) -> ConversationDataset:
    """Load the dataset a spec names, with ``overrides`` applied; every failure is one named line."""
    spec = parse_spec(name)
    options = resolve_options(spec, overrides)
    if not spec.path.exists():
        raise NasmercError(f"{spec.path}: file does not exist (data spec {name!r})")
    return _loader(spec.format)(spec.path, spec.variant, options)


def convert(spec: str, out_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Read ``spec`` (any format) and write it as a plain nasmerc ``.npz`` at ``out_path``, atomically.

    The carved validation split is written as the file's ``valid`` split, so the converted file
    reads back to the same three splits.
    """
    from nasmerc.data.formats import plain

    out = Path(out_path)
    if out.suffix != ".npz":
        raise NasmercError(f"{out}: expected an output path ending in .npz")
    output_file("data convert OUT.npz", out)
    return plain.save(load_spec(spec, overrides), out)
