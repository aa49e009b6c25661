"""Spaces, strategies and datasets, found through entry points.

Four entry-point groups, declared in ``pyproject.toml`` (by nasmerc and by any package that
extends it): ``nasmerc.search_spaces`` (a :class:`~nasmerc.nas.space.SearchSpace` subclass),
``nasmerc.strategies`` (a strategy class), ``nasmerc.datasets`` (a function
``load(overrides: dict) -> ConversationDataset``) and ``nasmerc.plugins`` (a
:class:`~nasmerc.train.plugins.Plugin` subclass). ``nasmerc`` itself never imports a space or a
strategy by name: everything goes through ``list_*`` / ``get_*`` / ``create_dataset`` here.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Mapping

from nasmerc.errors import NasmercError

GROUPS = {
    "search space": "nasmerc.search_spaces",
    "strategy": "nasmerc.strategies",
    "dataset": "nasmerc.datasets",
    "plug-in": "nasmerc.plugins",
}


@lru_cache(maxsize=None)
def _entries(kind: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def _names(kind: str) -> list[str]:
    return sorted(_entries(kind))


def _load(kind: str, name: str) -> Any:
    entries = _entries(kind)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none registered: is nasmerc installed (pip install -e .)?"
        raise NasmercError(f"unknown {kind} {name!r} (known: {known})")
    return entries[name].load()


def list_search_spaces() -> list[str]:
    return _names("search space")


def list_strategies() -> list[str]:
    return _names("strategy")


def list_datasets() -> list[str]:
    return _names("dataset")


def list_plugins() -> list[str]:
    return _names("plug-in")


def get_search_space(name: str) -> Any:
    """The space class registered as ``name``."""
    return _load("search space", name)


def get_strategy(name: str) -> Any:
    """The strategy class registered as ``name``."""
    return _load("strategy", name)


def get_plugin(name: str) -> Any:
    """The training plug-in class registered as ``name``."""
    return _load("plug-in", name)


def create_dataset(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """Load the dataset registered as ``name``, or a feature file spec (``FORMAT:VARIANT:PATH``,
    ``VARIANT:PATH``, ``*.npz``, ``*.yaml``; see ``nasmerc.data.files``), with ``--set`` style ``overrides``."""
    from nasmerc.data.files import is_file_spec, load_spec

    if is_file_spec(name):
        return load_spec(name, dict(overrides or {}))
    return _load("dataset", name)(dict(overrides or {}))
