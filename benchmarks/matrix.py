"""Every space x strategy pair at default settings: search, retrain, evaluate, share of the oracle.

    python benchmarks/matrix.py                          # every registered pair that runs
    python benchmarks/matrix.py iteach/router haemsa/evolution corect/fixed
    python benchmarks/matrix.py --table                  # print the table of everything measured
    python benchmarks/matrix.py --results benchmarks/results/matrix_2.json rmnas/tpe   # a second process

Each pair runs as a user would: ``nasmerc search --space S --strategy T`` with the defaults (data
``iemocap6``, seed 0), then ``nasmerc retrain`` of its ``arch.yaml`` (the ``fixed`` strategy trains
the model in the search already) and ``nasmerc evaluate`` (UME, test split, rho 0, 0.1, ..., 0.7).
Supernet strategies (darts, router) cannot search value / float choices, so those get the space's
first value (``--fix``), as listed in the table's note. Pairs a strategy refuses are skipped.

Results go to ``benchmarks/results/matrix.json`` (one entry per pair, kept between runs: a pair
already there is not run again unless ``--again``; ``--results`` names another file, so that
processes on separate cores never write one file); run folders to ``runs/matrix/<space>-<strategy>``.
Wall times depend on what else the machine runs: they are the times of the run, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from nasmerc.errors import NasmercError
from nasmerc.evaluate import evaluate_run
from nasmerc.io import write_json
from nasmerc.registry import get_search_space, get_strategy, list_search_spaces, list_strategies
from nasmerc.workflow import retrain, search

RESULTS = Path(__file__).parent / "results" / "matrix.json"
RUNS = Path("runs/matrix")


def value_fixes(space_name: str, strategy: str) -> list[str]:
    """``--fix`` for a supernet strategy: each value / float choice at its first value."""
    if not get_strategy(strategy).searches or strategy not in ("darts", "router"):
        return []
    from nasmerc.data.synthetic import load

    space = get_search_space(space_name).from_preset(load("iemocap6", {"n_train": 2, "n_valid": 1, "n_test": 1}).signature)
    return [f"{spec.label}={spec.first()}" for spec in space.choices() if not spec.in_supernet]


def run_pair(space: str, strategy: str, runs: Path = RUNS) -> dict[str, Any]:
    out = runs / f"{space}-{strategy}"
    if out.exists():
        shutil.rmtree(out)
    fixes = value_fixes(space, strategy)
    t0 = time.time()
    run_dir = search(space, strategy, fixes=fixes, out=str(out))
    t1 = time.time()
    model_dir = run_dir
    if not (run_dir / "model.pt").exists():
        model_dir = retrain(str(run_dir / "arch.yaml"))
    t2 = time.time()
    report = evaluate_run(str(model_dir))
    t3 = time.time()
    found = json.loads((run_dir / "search.json").read_text())
    trained = json.loads((model_dir / "metrics.json").read_text())
    return {
        "space": space, "strategy": strategy, "fixes": fixes,
        "share_of_oracle": report["share_of_oracle"], "mean_waf": report["mean"]["waf"],
        "oracle_mean_waf": sum(v["waf"] for v in report["oracle_metrics"].values()) / len(report["oracle_metrics"]),
        "auilc": report["model_auilc"].get("waf"), "parameters": trained["parameters"],
        "search_seconds": t1 - t0, "retrain_seconds": t2 - t1 if model_dir != run_dir else 0.0,
        "evaluate_seconds": t3 - t2, "best_valid": found["best_valid"], "run": str(run_dir),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| space | strategy | test WAF (mean rho 0-0.7) | share of oracle | parameters | search s | retrain s |",
            "|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        r = results[key]
        if "error" in r:
            rows.append(f"| {r['space']} | {r['strategy']} | refused: {r['error']} | | | | |")
            continue
        rows.append(f"| {r['space']} | {r['strategy']} | {r['mean_waf']:.3f} | {100 * r['share_of_oracle']:.1f} % | "
                    f"{r['parameters']:,} | {r['search_seconds']:.0f} | {r['retrain_seconds']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", help="space/strategy pairs (default: all)")
    parser.add_argument("--again", action="store_true", help="run pairs already in the results again")
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument("--results", default=str(RESULTS), help=f"results file (default {RESULTS})")
    parser.add_argument("--runs", default=str(RUNS), help=f"folder of the run folders (default {RUNS})")
    args = parser.parse_args()
    path = Path(args.results)
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if args.table:  # every results file of the folder (runs may be split over several processes)
        for other in sorted(RESULTS.parent.glob("matrix*.json")):
            results = {**json.loads(other.read_text()), **results}
    if not args.table:
        pairs = [tuple(p.split("/")) for p in args.pairs] or [(s, t) for s in list_search_spaces()
                                                              for t in list_strategies()]
        for space, strategy in pairs:
            key = f"{space}/{strategy}"
            if key in results and not args.again:
                continue
            print(f"== {key}", flush=True)
            try:
                results[key] = run_pair(space, strategy, Path(args.runs))
            except NasmercError as exc:
                if "nothing for strategy" in str(exc) or "leaves the" in str(exc):
                    continue  # a pair the strategy refuses at once: not part of the matrix
                results[key] = {"space": space, "strategy": strategy, "error": str(exc)}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, results)
            r = results[key]
            print(f"   {r.get('share_of_oracle', float('nan')):.3f} of the oracle, "
                  f"search {r.get('search_seconds', 0):.0f}s retrain {r.get('retrain_seconds', 0):.0f}s", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
