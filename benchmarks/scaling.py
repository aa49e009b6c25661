"""How a search scales on this machine: population trials per minute with 1 and 2 workers, and the
epoch time of a DARTS supernet on 1 process and on 2 under torchrun (gloo, CPU).

    python benchmarks/scaling.py                       # prints a table, writes benchmarks/results/scaling.json
    python benchmarks/scaling.py --trials 8 --epochs 3

Every run is a ``nasmerc search`` as a user starts it, in a child process, with nasmerc's default
threads (the cores shared among the workers or ranks); the seconds are those of the search alone
(``search.json``'s ``wall_seconds``) and the epoch times the mean of ``epoch`` events after the first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SPACE = ["--space", "rmnas", "--set", "hidden_dim=32", "--set", "n_blocks=1", "--set", "fusion_dim=32",
         "--set", "n_heads=2", "--set", "n_cells=1", "--set", "data.n_train=40", "--set", "data.n_valid=8",
         "--set", "data.n_test=8"]


def _run(command: list[str], out: Path) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                        if k != "OMP_NUM_THREADS"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip().splitlines()[-1:]}")
    search = json.loads((out / "search.json").read_text())
    epochs = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    times = [e["elapsed"] for e in epochs if e["type"] == "epoch"]
    steps = [b - a for a, b in zip(times, times[1:])]
    return {"seconds": search["wall_seconds"], "epoch_seconds": sum(steps) / len(steps) if steps else None,
            "best_valid": search["best_valid"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    nasmerc = [sys.executable, "-m", "nasmerc"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"random-{workers}"
            got = _run([*nasmerc, "search", *SPACE, "--strategy", "random", "--trials", str(args.trials),
                        "--set", "strategy.candidate_epochs=2", "--workers", str(workers), "--no-dashboard",
                        "--out", str(out)], out)
            rows.append({"what": f"random search, {workers} worker(s)", "processes": workers,
                         "trials_per_minute": 60 * args.trials / got["seconds"], **got})
        for ranks in (1, 2):
            out = Path(tmp) / f"darts-{ranks}"
            launch = nasmerc if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 f"--nproc_per_node={ranks}", "-m", "nasmerc"]
            got = _run([*launch, "search", *SPACE, "--strategy", "darts", "--epochs", str(args.epochs),
                        "--no-dashboard", "--out", str(out)], out)
            rows.append({"what": f"darts supernet, {ranks} process(es)", "processes": ranks, **got})
    print(f"{'run':34s} {'search s':>9s} {'trials/min':>10s} {'epoch s':>8s} {'best valid':>10s}")
    for r in rows:
        tpm = f"{r['trials_per_minute']:.1f}" if "trials_per_minute" in r else "-"
        ep = f"{r['epoch_seconds']:.2f}" if r.get("epoch_seconds") else "-"
        print(f"{r['what']:34s} {r['seconds']:9.1f} {tpm:>10s} {ep:>8s} {r['best_valid']:10.4f}")
    print(f"(this machine: {os.cpu_count()} cores)")
    Path(args.json).write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
