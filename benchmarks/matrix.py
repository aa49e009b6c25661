"""Every space x strategy pair at default settings, through ``nasmerc bench``.

    python benchmarks/matrix.py                          # every registered pair that runs, seed 0
    python benchmarks/matrix.py iteach/router haemsa/evolution corect/fixed --seeds 0,1,2
    nasmerc bench --table --runs runs/matrix            # the table of everything measured

A thin caller of :mod:`nasmerc.bench`: the grid is every registered pair (or the pairs given), each
run as a user would (search, retrain, evaluate; results appended to ``runs/matrix/bench.jsonl``, so
an interrupted matrix goes on where it stopped). Supernet strategies (darts, router) cannot search
value / float choices, so those get the space's first value (``--fix``). Pairs a strategy refuses
are left out. The README's "every pair" table was measured with the earlier version of this script
(one seed; ``benchmarks/results/matrix*.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasmerc.bench import Cell, Grid, format_table, run_grid, summarise
from nasmerc.errors import NasmercError
from nasmerc.nas.strategy import require_something_to_search
from nasmerc.registry import get_search_space, get_strategy, list_search_spaces, list_strategies


def pair_cell(space_name: str, strategy: str) -> Cell | None:
    """The pair as a bench cell (value choices fixed for supernet strategies), or ``None`` when refused."""
    from nasmerc.data.synthetic import load

    space = get_search_space(space_name).from_preset(load("iemocap6", {"n_train": 2, "n_valid": 1, "n_test": 1}).signature)
    strat = get_strategy(strategy)()
    supernet = strategy in ("darts", "router")
    fixes = {s.label: s.first() for s in space.choices() if not s.in_supernet} if supernet else {}
    try:
        require_something_to_search(strat, space, fixes)
        strat.check(space, fixes)
    except NasmercError:
        return None
    return Cell(space_name, strategy, fixes=tuple(f"{k}={v}" for k, v in fixes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", help="space/strategy pairs (default: all)")
    parser.add_argument("--seeds", default="0", help="seeds (default 0)")
    parser.add_argument("--runs", default="runs/matrix", help="run folders and results (default runs/matrix)")
    args = parser.parse_args()
    pairs = [tuple(p.split("/")) for p in args.pairs] or [(s, t) for s in list_search_spaces() for t in list_strategies()]
    cells = tuple(c for c in (pair_cell(s, t) for s, t in pairs) if c is not None)
    grid = Grid(cells=cells, seeds=tuple(int(s) for s in args.seeds.split(",")), baselines=(), random_search=False)
    runs = Path(args.runs)
    print(format_table(summarise(run_grid(grid, runs, runs / "bench.jsonl"))))


if __name__ == "__main__":
    main()
