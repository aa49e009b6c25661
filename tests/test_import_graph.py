"""Dependencies point one way: spaces and strategies import nasmerc, never the reverse or each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_core_never_imports_spaces_or_strategies():
    for path in files("nasmerc"):
        assert not imported_packages(path) & {"search_spaces", "strategies"}, path


def test_spaces_and_strategies_do_not_import_each_other():
    for path in files("search_spaces"):
        assert "strategies" not in imported_packages(path), path
    for path in files("strategies"):
        assert "search_spaces" not in imported_packages(path), path


def test_only_the_dashboard_imports_rich():
    for path in files("nasmerc"):
        if path.name not in ("dashboard.py", "cli.py"):
            assert "rich" not in imported_packages(path), path
