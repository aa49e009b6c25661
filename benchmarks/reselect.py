"""Choose a finished bench search's result again under other selection options, without searching again.

    python benchmarks/reselect.py benchmarks/grids/merc_tpe_hyperband_cv.yaml --from runs/merc_tpe_hyperband \\
        --seeds 3,4 --runs runs/merc_tpe_hyperband_cv

Each cell of the grid has a ``set`` that is another cell's plus selection options: ``strategy.finalists``,
``strategy.finalist_folds`` (``nasmerc.nas.selection.choose_finalist``), ``strategy.parsimony``
(``nasmerc.nas.selection.parsimonious``), ``strategy.simplify``, ``strategy.simplify_by`` and
``strategy.simplify_moves`` (``nasmerc.nas.population.simplify``). For each seed, that other
cell's finished search under ``--from`` (a ``nasmerc bench`` runs folder, its ``bench.jsonl`` beside)
is copied to this cell's run folder, its record given this cell's selection options, and resumed as
``nasmerc search --resume`` resumes a run: every candidate of the search is a request already in its
``candidates.jsonl`` and is answered from there (a request gives the same result every time), so only
the finalists (and their folds) and the removals of simplify steps not yet in it train (the search's
retrained model is not copied). The copy's ``events.jsonl`` keeps the search's events up to its
selection (:func:`search_events`), so the record holds the new selection's events, not the old one's.
The run is then retrained and evaluated as ``nasmerc bench`` does and its row appended to
``RUNS/bench.jsonl``; its ``search_seconds`` are the original search's plus the resumed run's, so the
row reads as if the cell had run from the start. A seed already in the results
file is skipped. ``--source-grid`` names the grid of the finished searches when their cells have
selection options of their own (a cross-validated choice reselected by parsimony), cell for cell in
the grid's order: those are replaced by the grid's cell's, and the row's seconds then include the
source's finalists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

from nasmerc.bench import RESULTS_FILE, Cell, Grid, finish_run, read_results, run_key, run_key_of
from nasmerc.errors import NasmercError
from nasmerc.nas.selection import RESELECTABLE, RESELECTABLE_SETS
from nasmerc.runs import read_yaml
from nasmerc.workflow import resume_search

SELECTION_EVENTS = ("finalist", "simplify_step")  # what a search writes after its trials, per selection option


def search_events(lines: list[str]) -> list[str]:
    """The lines of a finished search's ``events.jsonl`` (less its ``run_end``) that come before its
    selection: the first ``finalist`` or ``simplify_step`` event, or ``trial`` of a simplify step, and
    all after it are left out, so the resumed run writes the selection it makes under the new options
    rather than keeping the old one's (a resumed run does not write again the events its log holds)."""
    for k, line in enumerate(lines):
        event = json.loads(line)
        if event.get("type") in SELECTION_EVENTS or (event.get("type") == "trial" and "simplify_step" in event):
            return lines[:k]
    return lines


def reselect(grid: Grid, source: Path, seeds: list[int], runs: Path, source_grid: Grid | None = None) -> list[dict]:
    """Every cell of ``grid`` chosen again from its search under ``source`` (with ``source_grid``, from
    the search of the source grid's cell at the same position), seed by seed."""
    if source_grid is not None and len(source_grid.cells) != len(grid.cells):
        raise NasmercError(f"--source-grid: {len(source_grid.cells)} cells for the grid's {len(grid.cells)}: "
                           "expected one search for each of its cells")
    rows = []
    for k, cell in enumerate(grid.cells):
        rows += reselect_cell(grid, cell, source, seeds, runs,
                              None if source_grid is None else source_grid.cells[k])
    return rows


def reselect_cell(grid: Grid, cell: Cell, source: Path, seeds: list[int], runs: Path,
                  source_cell: Cell | None) -> list[dict]:
    options = {s.split("=", 1)[0].removeprefix("strategy."): yaml.safe_load(s.split("=", 1)[1])
               for s in cell.sets if s.startswith(RESELECTABLE_SETS)}
    if not options:
        raise NasmercError(f"{cell.name}: the cell sets no selection option: expected one of "
                           + ", ".join(k.rstrip("=") for k in RESELECTABLE_SETS))
    plain = replace(cell, sets=tuple(s for s in cell.sets if not s.startswith(RESELECTABLE_SETS)))
    if source_cell is not None:  # another selection of the same search
        if replace(source_cell, sets=tuple(s for s in source_cell.sets if not s.startswith(RESELECTABLE_SETS))) != plain:
            raise NasmercError(f"--source-grid: {source_cell.name} is not the search of {cell.name} with other "
                               "selection options")
        plain = source_cell
    source_rows = {run_key_of(r): r for r in read_results(source / RESULTS_FILE)}
    results = runs / RESULTS_FILE
    done = {run_key_of(r) for r in read_results(results)}
    rows = []
    for data in grid.data:
        for seed in seeds:
            if run_key(cell, data, seed, grid.sets) in done:
                continue
            origin = source_rows.get(run_key(plain, data, seed, grid.sets))
            if origin is None:
                raise NasmercError(f"{source / RESULTS_FILE} has no finished {plain.name} on {data}, seed {seed}")
            run = runs / cell.folder / data / f"seed{seed}"
            searched = source / plain.folder / data / f"seed{seed}"
            if run.exists():
                shutil.rmtree(run)  # a reselection not in the results file did not finish: made anew
            shutil.copytree(searched, run,
                            ignore=lambda folder, names: ["retrain"] if Path(folder) == searched else [])
            config = read_yaml(run / "config.yaml", "the config.yaml of a nasmerc run folder")
            kept = {k: v for k, v in config.get("strategy_config", {}).items()
                    if k not in RESELECTABLE}
            config["strategy_config"] = {**kept, **options}
            (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            events = (run / "events.jsonl").read_text(encoding="utf-8").splitlines()
            if not events or json.loads(events[-1]).get("type") != "run_end":
                raise NasmercError(f"{plain.name} on {data}, seed {seed} did not finish (its events end "
                                   "without run_end)")
            (run / "events.jsonl").write_text("".join(f"{line}\n" for line in search_events(events[:-1])),
                                              encoding="utf-8")
            for name in ("arch.yaml", "search.json"):
                (run / name).unlink(missing_ok=True)
            print(f"reselect: {cell.name} on {data}, seed {seed} ...", flush=True)
            t0 = time.time()
            resume_search(str(run))
            row = finish_run(cell, data, seed, grid.sets, run, origin["search_seconds"] + time.time() - t0)
            with results.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"reselect: {cell.name} on {data}, seed {seed}: share of the oracle "
                  f"{100 * row['share_of_oracle']:.1f} %, {row['candidate_epochs']} candidate-epochs", flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid")
    parser.add_argument("--from", dest="source", required=True, help="the runs folder of the finished searches")
    parser.add_argument("--seeds", required=True, help="seeds, 0,1,2")
    parser.add_argument("--runs", required=True)
    parser.add_argument("--source-grid", help="the grid of the finished searches, when their cells have selection "
                                              "options of their own, cell for cell (default: each cell without its options)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        print(f"reselect: --seeds {args.seeds!r}: expected integers separated by commas", file=sys.stderr)
        return 2
    try:
        reselect(Grid.from_yaml(args.grid), Path(args.source), seeds, Path(args.runs),
                 Grid.from_yaml(args.source_grid) if args.source_grid else None)
    except NasmercError as exc:
        print(f"reselect: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
