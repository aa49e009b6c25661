"""Whether the searches of the known-answer variants found what the data need: one line per case and
seed from a ``nasmerc bench`` results file, the choice that decides it, the share of the exact oracle
and the verdict, then each case's count over seeds.

    python benchmarks/structure_report.py benchmarks/results/bench_structure_tpe.jsonl

The cases are recognised by the cell's ``data.*`` settings (``benchmarks/grids/structure_tpe.yaml``):

- ``no dependence`` (``data.inertia=0``, ``data.contagion=0``): the exact oracle is the context-free
  one; holds when the found model has no context model and no CRF (``context`` and ``structure``
  ``none``) and its mean WAF is within 2 points of the oracle's;
- ``visual noise`` (``data.snr.visual=0``): holds when visual has no path (``visual.encoder`` ``off``);
- ``strong context`` (``data.inertia=0.85``): holds when the found model has a context model or a CRF.

Writes nothing; the kept ``.txt`` beside a results file is this script's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CASES = {
    "no dependence": {"data.inertia=0", "data.contagion=0"},
    "visual noise": {"data.snr.visual=0"},
    "strong context": {"data.inertia=0.85"},
}


def case_of(row: dict[str, Any]) -> str | None:
    """The case whose ``data.*`` settings the row's cell carries, or None."""
    sets = set(row.get("cell_set", [])) | set(row.get("set", []))
    found = [name for name, needs in CASES.items() if needs <= sets]
    return found[0] if found else None


def verdict(case: str, row: dict[str, Any]) -> tuple[str, bool]:
    """The choice that decides ``case`` for the row's architecture, and whether it holds."""
    arch = row["arch"]
    if case == "no dependence":
        gap = 100 * (row["mean"] / row["share_of_oracle"] - row["mean"])  # oracle WAF - model WAF, in points
        free = arch["context"] == "none" and arch["structure"] == "none"
        return f"context {arch['context']}, structure {arch['structure']}, {gap:.1f} points below the oracle", \
            free and gap <= 2.0
    if case == "visual noise":
        return f"visual.encoder {arch['visual.encoder']}", arch["visual.encoder"] == "off"
    return f"context {arch['context']}, structure {arch['structure']}", \
        arch["context"] != "none" or arch["structure"] != "none"


def report(rows: list[dict[str, Any]]) -> str:
    """The lines: per case and seed, then per case the seeds on which it holds."""
    lines, held = [], {}
    for row in sorted(rows, key=lambda r: (list(CASES).index(case_of(r)), r["seed"])):
        case = case_of(row)
        what, ok = verdict(case, row)
        held.setdefault(case, []).append(ok)
        lines.append(f"{case:15} seed {row['seed']}: {100 * row['share_of_oracle']:.1f} % of the oracle; {what}: "
                     f"{'holds' if ok else 'does not hold'}")
    lines += [f"{case:15} holds on {sum(oks)} of {len(oks)} seeds" for case, oks in held.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a nasmerc bench results file (.jsonl)")
    args = parser.parse_args()
    if not Path(args.results).is_file():
        parser.error(f"results {args.results!r}: no such file (expected a nasmerc bench .jsonl)")
    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    print(report([r for r in rows if case_of(r) is not None]))


if __name__ == "__main__":
    main()
