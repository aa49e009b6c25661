"""``nasmerc bench``: a tiny grid run end to end, resumed from its results file, and its statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import benchmark_module
from nasmerc import bench
from nasmerc.cli import main
from nasmerc.errors import NasmercError

pytestmark = pytest.mark.usefixtures("one_thread")

GRID = """
cells:
  - {space: rmnas, strategy: darts, set: [hidden_dim=16, n_blocks=1, fusion_dim=16, n_heads=2, n_cells=1]}
seeds: [0, 1]
set: [data.n_train=4, data.n_valid=2, data.n_test=2, data.length_max=6, data.length_min=3, data.length_mean=4,
      train.epochs=1, train.batch_size=4, train.valid_rates=0]
random_epochs: 1
"""


def test_spread_and_paired_differences() -> None:
    s = bench.Spread.of([0.1, 0.2, 0.3])
    assert s.mean == pytest.approx(0.2) and s.sd == pytest.approx(0.1)
    assert s.half == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert s.pct() == "20.0 ± 10.0 [-4.8, 44.8]"
    one = bench.Spread.of([0.5])
    assert one.pct() == "50.0" and math.isnan(one.sd)
    d = bench.paired({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.85, 2: 0.6, 5: 0.1})
    assert d.n == 2 and d.values == pytest.approx([0.05, 0.1])
    assert bench.Spread.of([0.05, 0.06, 0.04]).side() == "above 0"
    assert bench.Spread.of([-0.05, -0.06, -0.04]).side() == "below 0"
    assert bench.Spread.of([0.05, -0.01, 0.02]).side() == "spans 0" and one.side() == "one seed"


def test_the_table_says_whether_a_cell_beats_random() -> None:
    def row(cell: str, role: str, seed: int, share: float) -> dict:
        return {"cell": cell, "role": role, "data": "iemocap6", "seed": seed, "share_of_oracle": share,
                "candidate_epochs": 10, "search_seconds": 1.0, "retrain_seconds": 0.0, "parameters": 100}

    name = "merc/tpe"
    rand = bench.Cell("merc", "random", role="random", origin=name).name
    rows = [row(name, "cell", s, 0.9 + 0.01 * s) for s in range(3)]
    rows += [row(rand, "random", s, v) for s, v in enumerate((0.85, 0.87, 0.84))]
    rows += [row("early_fusion/default", "baseline", s, v) for s, v in enumerate((0.95, 0.85, 0.88))]

    def cell_line(text: str) -> str:
        return next(ln for ln in text.splitlines() if ln.split()[1:3] == [name, "cell"])

    text = bench.format_table(bench.summarise(rows))
    line = cell_line(text)
    assert "beats random" in text and " yes " in line
    assert "equal-budget random +5.7" in line and "(above 0)" in line
    assert "early_fusion/default +1.7" in line and "(spans 0)" in line
    rows[3:6] = [row(rand, "random", s, v) for s, v in enumerate((0.95, 0.80, 0.99))]
    assert "no (spans 0)" in cell_line(bench.format_table(bench.summarise(rows)))


def test_grid_refuses_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("cells: [rmnas/darts]\nseeds: [0]\nepochs: 3\n")
    with pytest.raises(NasmercError, match=r"unknown key\(s\) \['epochs'\]"):
        bench.Grid.from_yaml(str(path))
    with pytest.raises(NasmercError, match="hidden_dim=16"):
        bench.Grid(cells=(bench.Cell("rmnas", "darts"),), sets=("hidden_dim=16",))
    with pytest.raises(NasmercError, match="unknown search space 'nosuch'"):
        bench.Grid(cells=(bench.Cell("nosuch", "darts"),))
    with pytest.raises(NasmercError, match="no cell"):
        bench.Grid(cells=())


def test_random_search_gets_the_cells_budget() -> None:
    cell = bench.Cell("haemsa", "evolution", ("dim=8", "strategy.population=4"))
    rand = bench.random_cell(cell, budget=20, epochs=3)
    assert rand.strategy == "random" and rand.role == "random" and rand.origin == cell.name
    assert rand.sets == ("dim=8", "strategy.trials=7", "strategy.candidate_epochs=3")
    assert rand.folder != cell.folder


def test_a_tiny_grid_runs_resumes_and_reports(tmp_path: Path, capsys, monkeypatch) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    runs = tmp_path / "runs"
    plot = tmp_path / "bench.png"
    assert main(["bench", str(grid), "--runs", str(runs), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    roles = sorted((r["role"], r["seed"]) for r in rows)
    assert roles == [("baseline", 0), ("baseline", 1), ("cell", 0), ("cell", 1), ("random", 0), ("random", 1)]
    assert [r["role"] for r in rows[:3]] == ["baseline", "cell", "random"]  # a seed's baselines first
    for r in rows:
        assert 0.0 <= r["share_of_oracle"] < 2.0 and r["candidate_epochs"] >= 1 and Path(r["run"]).is_dir()
    cell = next(r for r in rows if r["role"] == "cell")
    rand = next(r for r in rows if r["role"] == "random" and r["seed"] == cell["seed"])
    assert cell["candidate_epochs"] == 1 and rand["candidate_epochs"] == 1  # the same budget
    assert "equal-budget random" in out and "early_fusion/default" in out and "share of oracle" in out
    assert plot.read_bytes().startswith(b"\x89PNG")

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(bench, "run_one", fail)
    assert main(["bench", str(grid), "--runs", str(runs)]) == 0  # everything is in the results file
    assert main(["bench", "--table", "--runs", str(runs)]) == 0
    table = capsys.readouterr().out
    assert table.count("rmnas/darts") >= 2
    summaries = bench.summarise(rows)
    mine = next(s for s in summaries if s["role"] == "cell")
    assert mine["spread"].n == 2 and set(mine["versus"]) == {"early_fusion/default", "equal-budget random"}


def test_bench_without_cells_or_results_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--runs", str(tmp_path / "r")]) == 2
    assert "expected a grid file or at least one --cell" in capsys.readouterr().err
    assert main(["bench", "--table", "--runs", str(tmp_path / "r")]) == 2
    assert "no results yet" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_structure_report_reads_the_kept_structure_results() -> None:
    report = benchmark_module("structure_report", "structure_report")
    kept = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench_structure_random.jsonl"
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [report.case_of(r) for r in rows] == ["no dependence", "visual noise", "strong context"]
    text = report.report(rows)
    assert "context none, structure party_crf, 2.7 points below the oracle: does not hold" in text  # a CRF
    assert "visual.encoder pca: does not hold" in text and "context transformer, structure none: holds" in text
    assert text.splitlines()[-1] == "strong context  holds on 1 of 1 seeds"
    no_context = {**rows[0], "arch": {**rows[0]["arch"], "structure": "none"}}
    assert report.verdict("no dependence", no_context)[1] is False  # 2.7 points is not within 2
    close = {**no_context, "share_of_oracle": no_context["mean"] / (no_context["mean"] + 0.015)}
    assert report.verdict("no dependence", close) == ("context none, structure none, 1.5 points below the oracle", True)


PLAIN = """
cells:
  - {space: rmnas, strategy: random, set: [hidden_dim=16, n_blocks=1, fusion_dim=16, n_heads=2, n_cells=1,
                                         strategy.trials=3, strategy.candidate_epochs=1]}
seeds: [0]
set: [data.n_train=6, data.n_valid=2, data.n_test=2, data.length_max=6, data.length_min=3, data.length_mean=4,
      train.epochs=1, train.batch_size=4, train.valid_rates=0]
baselines: []
random_search: false
"""


def test_reselect_chooses_the_finalists_again_without_searching_again(tmp_path: Path, capsys, monkeypatch) -> None:
    """``benchmarks/reselect.py``: the finished search is copied and resumed with the finalist options;
    every candidate is answered from its ``candidates.jsonl`` (none trains again), only the folds
    train, and the row is the cell's, with the folds in its budget."""
    reselect = benchmark_module("reselect", "reselect")
    plain, folded = tmp_path / "plain.yaml", tmp_path / "folded.yaml"
    plain.write_text(PLAIN)
    folded.write_text(PLAIN.replace("strategy.candidate_epochs=1]", "strategy.candidate_epochs=1, "
                                    "strategy.finalists=2, strategy.finalist_folds=2]"))
    source, runs = tmp_path / "a", tmp_path / "b"
    assert main(["bench", str(plain), "--runs", str(source)]) == 0
    origin, = [json.loads(line) for line in (source / "bench.jsonl").read_text().splitlines()]
    trained = []
    from nasmerc.nas import evaluator as evaluator_module
    real = evaluator_module._score
    monkeypatch.setattr(evaluator_module, "_score", lambda *a, **k: trained.append(a[3].arch) or real(*a, **k))
    assert reselect.main([str(folded), "--from", str(source), "--seeds", "0", "--runs", str(runs)]) == 0
    row, = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    assert row["cell_set"][-2:] == ["strategy.finalists=2", "strategy.finalist_folds=2"] and row["role"] == "cell"
    run = Path(row["run"])
    found = json.loads((run / "search.json").read_text())
    assert [t["arch"] for t in found["trials"]] == [t["arch"] for t in
                                                    json.loads((Path(origin["run"]) / "search.json").read_text())["trials"]]
    assert len(trained) == 2 * len(found["finalists"])  # only the folds trained: no candidate of the search
    assert found["finalist_folds"] == 2 and row["candidate_epochs"] == origin["candidate_epochs"] + 2 * 2 * 1
    assert row["search_seconds"] >= origin["search_seconds"]
    assert reselect.main([str(folded), "--from", str(source), "--seeds", "0", "--runs", str(runs)]) == 0
    assert len((runs / "bench.jsonl").read_text().splitlines()) == 1  # a finished seed is skipped
    assert reselect.main([str(folded), "--from", str(source), "--seeds", "5", "--runs", str(runs)]) == 2
    assert "has no finished rmnas/random" in capsys.readouterr().err


def test_reselect_with_parsimony_keeps_the_smallest_trial(tmp_path: Path) -> None:
    """``strategy.parsimony`` through ``benchmarks/reselect.py``: with a tolerance that holds every
    trial, the reselected search's result is its smallest trial, and nothing trains but its retrain."""
    reselect = benchmark_module("reselect", "reselect")
    plain, lean = tmp_path / "plain.yaml", tmp_path / "lean.yaml"
    plain.write_text(PLAIN)
    lean.write_text(PLAIN.replace("strategy.candidate_epochs=1]", "strategy.candidate_epochs=1, strategy.parsimony=1.0]"))
    source, runs = tmp_path / "a", tmp_path / "b"
    assert main(["bench", str(plain), "--runs", str(source)]) == 0
    assert reselect.main([str(lean), "--from", str(source), "--seeds", "0", "--runs", str(runs)]) == 0
    row, = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    found = json.loads((Path(row["run"]) / "search.json").read_text())
    smallest = min(found["trials"], key=lambda t: (t["parameters"], -t["value"], t["trial"]))
    assert row["arch"] == smallest["arch"] and found["parsimony"]["within"] == 3
    assert row["candidate_epochs"] == 3  # the search's, nothing more


def test_reselect_chooses_every_cell_of_a_grid_again(tmp_path: Path) -> None:
    """A grid of two cells is reselected cell by cell, each from its own search."""
    reselect = benchmark_module("reselect", "reselect")
    second = "  - {space: rmnas, strategy: random, set: [hidden_dim=16, n_blocks=1, fusion_dim=16, n_heads=2, n_cells=1,\n" \
             "                                         strategy.trials=2, strategy.candidate_epochs=1]}\n"
    plain, lean = tmp_path / "plain.yaml", tmp_path / "lean.yaml"
    plain.write_text(PLAIN.replace("seeds: [0]", second.rstrip("\n") + "\nseeds: [0]"))
    lean.write_text(plain.read_text().replace("strategy.candidate_epochs=1]", "strategy.candidate_epochs=1, strategy.parsimony=1.0]"))
    source, runs = tmp_path / "a", tmp_path / "b"
    assert main(["bench", str(plain), "--runs", str(source)]) == 0
    assert reselect.main([str(lean), "--from", str(source), "--seeds", "0", "--runs", str(runs)]) == 0
    rows = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    assert [r["cell_set"][-3:] for r in rows] == [[f"strategy.trials={n}", "strategy.candidate_epochs=1",
                                                   "strategy.parsimony=1.0"] for n in (3, 2)]
    assert [r["candidate_epochs"] for r in rows] == [3, 2]  # each its own search's, nothing more


def test_reselect_from_another_selection_replaces_its_options(tmp_path: Path, capsys) -> None:
    """``--source-grid``: a search chosen with finalists, reselected by parsimony alone: the finalist
    options and the finalists' events leave the record, and a source grid of another search is refused."""
    reselect = benchmark_module("reselect", "reselect")
    final, lean, other = tmp_path / "final.yaml", tmp_path / "lean.yaml", tmp_path / "other.yaml"
    final.write_text(PLAIN.replace("strategy.candidate_epochs=1]", "strategy.candidate_epochs=1, strategy.finalists=2]"))
    lean.write_text(PLAIN.replace("strategy.candidate_epochs=1]", "strategy.candidate_epochs=1, strategy.parsimony=1.0]"))
    other.write_text(PLAIN.replace("strategy.trials=3", "strategy.trials=2"))
    source, runs = tmp_path / "a", tmp_path / "b"
    assert main(["bench", str(final), "--runs", str(source)]) == 0
    args = [str(lean), "--from", str(source), "--seeds", "0", "--runs", str(runs)]
    assert reselect.main([*args, "--source-grid", str(other)]) == 2
    assert "is not the search of" in capsys.readouterr().err and not runs.exists()
    two = tmp_path / "two.yaml"
    two.write_text(final.read_text().replace("cells:\n", "cells:\n  - rmnas/random\n"))
    assert reselect.main([*args, "--source-grid", str(two)]) == 2
    assert "2 cells for the grid's 1" in capsys.readouterr().err and not runs.exists()
    assert reselect.main([*args, "--source-grid", str(final)]) == 0
    row, = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    found = json.loads((Path(row["run"]) / "search.json").read_text())
    assert "finalists" not in found and found["parsimony"]["within"] == 3
    import yaml
    options = yaml.safe_load((Path(row["run"]) / "config.yaml").read_text())["strategy_config"]
    assert "finalists" not in options and options["parsimony"] == 1.0 and options["trials"] == 3
    kinds = [json.loads(line)["type"] for line in (Path(row["run"]) / "events.jsonl").read_text().splitlines()]
    source_kinds = [json.loads(line)["type"] for line in
                    next(source.glob("*/*/seed0/events.jsonl")).read_text().splitlines()]
    assert source_kinds.count("finalist") == 2 and "finalist" not in kinds  # the old selection left the record
    assert kinds.count("trial") == 3 and kinds.count("run_end") == 1 and kinds[-1] == "run_end"


def test_reselect_report_reads_the_kept_reselections(capsys) -> None:
    """``benchmarks/reselect_report.py`` on the kept merc reselections: every selection of the same
    searches is paired with the best-on-validation choice (``parsimony=0`` counts as it) and the baseline."""
    report = benchmark_module("reselect_report", "reselect_report")
    kept = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench_merc_reselect.jsonl"
    text = report.report(bench.read_results(kept))
    lines = text.splitlines()
    assert lines[0].split("  ")[:2] == ["seed", "best on validation"] and [l.split()[0] for l in lines[1:4]] == ["2", "3", "4"]
    assert any(l.startswith("strategy.parsimony=0.01: ") and "vs best on validation" in l for l in lines)
    assert any(l.startswith("strategy.finalists=3 strategy.finalist_folds=3: ") for l in lines)
    assert text == (kept.parent / "bench_merc_reselect_report.txt").read_text().rstrip("\n")
    assert report.main([str(kept.parent / "missing.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_retrain_variants_trains_each_variant_per_seed(tmp_path: Path, capsys) -> None:
    """``benchmarks/retrain_variants.py --seeds``: the kept context-free model and an ``arch.`` variant,
    each trained per seed on tiny data, then a mean ± sd line for each."""
    variants = benchmark_module("retrain_variants", "retrain_variants")
    kept = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "no_dependence_context_free.yaml"
    import yaml

    af = yaml.safe_load(kept.read_text())
    af["data_overrides"].update({"n_train": "4", "n_valid": "2", "n_test": "2", "length_max": "6",
                                 "length_min": "3", "length_mean": "4"})
    af["space_config"].update({"pca_dim": 2, "hidden_dim": 16})
    af["train"].update({"epochs": 1, "batch_size": 4, "valid_rates": [0.0]})
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(af))
    variants.main([str(arch), "", "arch.speaker=embedding", "--seeds", "0,1"])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["(as"] * 3 + ["arch.speaker=embedding"] * 3
    assert "seed 1" in lines[1] and "test rate 0 " in lines[1] and "points below the oracle" in lines[1]
    assert "% over seeds 0,1" in lines[2] and "±" in lines[5]
