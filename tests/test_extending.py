"""The two examples of ``docs/extending.md`` work as the page says: each is one file plus one entry point.

The page's Python blocks are written out as modules of a package, with an installed distribution's
``entry_points.txt`` beside them on ``sys.path``, exactly what ``pip install`` of a package with those
``pyproject.toml`` lines leaves. Then the command line searches the new space with built-in
strategies, and built-in spaces with the new strategy.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from nasmerc import registry
from nasmerc.cli import main

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
DATA = ["--set", "data.n_train=4", "--set", "data.n_valid=2", "--set", "data.n_test=2", "--set", "data.length_max=6",
        "--set", "data.length_min=3", "--set", "data.length_mean=4", "--set", "train.batch_size=4",
        "--set", "train.valid_rates=0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch):
    """The page's files as the package ``my_package`` with its entry points, found by the registry."""
    space, strategy = blocks("python")
    package = tmp_path / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "context.py").write_text(space)
    (package / "climb.py").write_text(strategy)
    dist = tmp_path / "my_package-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 0.1\n")
    lines = []
    for block in blocks("toml"):  # the page's pyproject.toml lines, as pip writes them into entry_points.txt
        for group, entries in tomllib.loads(block)["project"]["entry-points"].items():
            lines += [f"[{group}]", *(f"{name} = {target}" for name, target in entries.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._entries.cache_clear()
    yield
    registry._entries.cache_clear()
    for name in [m for m in sys.modules if m.startswith("my_package")]:
        del sys.modules[name]


def test_each_example_is_about_thirty_lines() -> None:
    for block in blocks("python"):
        code = [line for line in block.splitlines() if line.strip() and not line.startswith(('"""', "from", "import"))]
        assert 20 <= len(code) <= 40, len(code)


def test_the_new_space_and_strategy_are_registered(installed, capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "context" in out.splitlines()[0] and "climb" in out.splitlines()[1]


@pytest.mark.parametrize("space, strategy, extra", [
    ("context", "darts", []),
    ("context", "router", []),
    ("context", "climb", ["--trials", "3", "--set", "strategy.candidate_epochs=1"]),
    ("bmnas", "climb", ["--trials", "2", "--set", "strategy.candidate_epochs=1", "--set", "hidden_dim=16",
                        "--set", "fusion_dim=16", "--set", "n_layers=1", "--set", "n_cells=1", "--set", "n_heads=2"]),
])
def test_search_retrain_evaluate(installed, space: str, strategy: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", space, "--strategy", strategy, "--epochs", "1", "--no-dashboard",
                 "--out", str(out), *DATA, *extra]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["space"] == space and summary["strategy"] == strategy and summary["arch"]
    if strategy == "climb":
        assert len(summary["trials"]) == int(extra[1]) and summary["best_valid"] == max(
            t["value"] for t in summary["trials"])
    assert main(["retrain", str(out / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    assert main(["evaluate", str(out / "retrain"), "--rates", "0,0.5"]) == 0
    assert json.loads((out / "retrain" / "evaluation-rates-0-0.5.json").read_text())["space"] == space


def test_a_bad_config_of_the_new_space_is_refused(installed, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", "context", "--set", "hidden_dim=1", "--no-dashboard", "--out", str(out),
                 *DATA]) == 2
    assert "space 'context': hidden_dim=1: expected an integer >= 2" in capsys.readouterr().err
    assert not out.exists()
