"""The choices of one search compared, seed by seed: a results file of ``nasmerc bench`` and
``benchmarks/reselect.py`` rows of one space and strategy, whose cells differ only in their selection
options (``strategy.finalists``, ``strategy.finalist_folds``, ``strategy.parsimony``, ``strategy.simplify``,
``strategy.simplify_by``, ``strategy.simplify_moves``).

    python benchmarks/reselect_report.py benchmarks/results/bench_merc_reselect.jsonl

Each selection is named by its options (``best on validation`` when it has none, or only
``strategy.parsimony=0``, which is the same choice). For every seed: the share of the oracle of each
selection and of each baseline; then each selection's mean ± sd [95 % CI] over the seeds where it and
the best-on-validation choice both ran, and its paired difference, in points, to that choice and to
each baseline (``nasmerc.bench.Spread``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from nasmerc.bench import Spread, read_results
from nasmerc.errors import NasmercError
from nasmerc.nas.selection import RESELECTABLE_SETS

BEST = "best on validation"


def selection_of(row: Mapping[str, Any]) -> str:
    """A cell row's selection options, or :data:`BEST`; a baseline's cell name."""
    if row["role"] == "baseline":
        return row["cell"]
    options = [s for s in row["cell_set"] if s.startswith(RESELECTABLE_SETS) and s != "strategy.parsimony=0"]
    return " ".join(options) or BEST


def _fmt(spread: Spread, scale: float = 100.0) -> str:
    if spread.n < 2:
        return f"{scale * spread.mean:+.1f} (one seed)"
    return (f"{scale * spread.mean:+.1f} ± {scale * spread.sd:.1f} "
            f"[{scale * (spread.mean - spread.half):+.1f}, {scale * (spread.mean + spread.half):+.1f}] ({spread.side()})")


def report(rows: Sequence[Mapping[str, Any]]) -> str:
    shares: dict[str, dict[int, float]] = {}
    for row in rows:
        if row["role"] == "random":
            continue
        shares.setdefault(selection_of(row), {})[int(row["seed"])] = float(row["share_of_oracle"])
    if BEST not in shares:
        raise NasmercError("no best-on-validation row (a cell without selection options)")
    seeds = sorted(shares[BEST])
    baselines = sorted(k for k in shares if any(r["role"] == "baseline" and r["cell"] == k for r in rows))
    names = [BEST, *sorted(k for k in shares if k != BEST and k not in baselines), *baselines]
    lines = ["seed  " + "  ".join(names)]
    for seed in seeds:
        lines.append(f"{seed:<4}  " + "  ".join(f"{100 * shares[n][seed]:.1f}" if seed in shares[n] else "-"
                                                 for n in names))
    for name in names[:len(names) - len(baselines)]:
        paired = [s for s in seeds if s in shares[name]]
        share = Spread.of([shares[name][s] for s in paired])
        parts = [f"{name}: {100 * share.mean:.1f} ± {100 * share.sd:.1f} % over seeds {','.join(map(str, paired))}"]
        others = [BEST] if name != BEST else []
        for other in [*others, *baselines]:
            both = [s for s in paired if s in shares[other]]
            parts.append(f"vs {other} {_fmt(Spread.of([shares[name][s] - shares[other][s] for s in both]))}")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python benchmarks/reselect_report.py RESULTS.jsonl", file=sys.stderr)
        return 2
    try:
        path = Path(args[0])
        if not path.is_file():
            raise NasmercError(f"{path}: no such results file")
        print(report(read_results(path)))
    except NasmercError as exc:
        print(f"reselect report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
