"""nasmerc's ``darts`` beside NNI's DARTS (``nni:darts``) on the same rmnas space, data, epochs and seed.

Every step is the user's command (``nasmerc search``, ``retrain``, ``evaluate``), each in its own
process with one torch thread, so that its wall time and memory are its own:

- **seconds per epoch**: the median gap between consecutive ``epoch`` events of the search (from the
  second epoch on, so that start-up is not in it; the median, as another process may share the CPU; an epoch is the weight and architecture steps and
  the validation); the search's wall time and the process' own start-up (imports, the supernet) are
  given apart;
- **peak memory**: the process' peak resident set (``VmHWM``), and its growth over the resident set
  after the imports, before the search starts (``VmRSS`` then): torch's tensors are not seen by
  ``tracemalloc``, so the resident set is the measure;
- **share of the oracle**: the found architecture retrained from scratch (same epochs and seed) and
  ``nasmerc evaluate``'s ``share_of_oracle`` (the mean test WAF over the missing-rate sweep as a share
  of the exact Bayes oracle's on the same masks).

Three rows: ``darts`` at its defaults (the paper's SGD at lr 5 for ``alpha``), ``darts`` with NNI's
architecture optimiser (Adam, lr 3e-4, betas 0.5 / 0.999, weight decay 1e-3: then the two run the same
algorithm, first order, on the same halves of the training split, from the same initial weights) and
``nni:darts``. Then where each search's time goes: one more search of each under ``cProfile``,
its time split into the forward passes and losses (``Trainer.loss``), the backward passes, the
optimiser steps, the validation (``Trainer.validate``) and the rest (the framework's own work).

    python benchmarks/nni_side_by_side.py            # ~4 minutes on a 2-core CPU
    python benchmarks/nni_side_by_side.py --epochs 3 --n-train 20   # a quick look

Writes ``benchmarks/results/nni_side_by_side.json`` and the table to ``.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPACE = ["--space", "rmnas", "--set", "hidden_dim=32", "--set", "n_blocks=1", "--set", "fusion_dim=32",
         "--set", "n_heads=2", "--set", "n_cells=1"]
NNI_ARCH_OPTIMISER = ["--set", "strategy.arch_optimizer=adam", "--set", "strategy.arch_lr=3e-4",
                      "--set", "strategy.arch_weight_decay=1e-3"]
ROWS = {"darts": ("darts", []), "darts (NNI's arch optimiser)": ("darts", NNI_ARCH_OPTIMISER),
        "nni:darts": ("nni:darts", [])}


# -- the child process: one command, measured ---------------------------------------------------------
def _status(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(argv: list[str], profile: str | None) -> None:
    """Run ``nasmerc argv`` here and print its measures as one JSON line."""
    start = time.time()
    import torch

    torch.set_num_threads(1)
    import torch._dynamo  # noqa: F401  (torch imports it at the first optimiser, Lightning at import: both before)
    from nasmerc.cli import main

    if argv[0] == "search" and any(a.startswith("nni:") for a in argv):
        import strategies.nni.oneshot  # noqa: F401  (NNI and Lightning: imported before the baseline)
    baseline, imported = _status("VmRSS"), time.time() - start
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        code = prof.runcall(main, argv)
        stats = pstats.Stats(prof)
        print(json.dumps({"split": split(stats), "code": code}))
        return
    code = main(argv)
    print(json.dumps({"code": code, "import_seconds": imported, "baseline_rss": baseline,
                      "peak_rss": _status("VmHWM"), "seconds": time.time() - start}))


def split(stats: Any) -> dict[str, float]:
    """Seconds of a profiled search in forward + loss, backward, optimiser steps, validation, the rest."""
    def cumulative(match) -> float:
        return sum(v[3] for k, v in stats.stats.items() if match(*k))

    forward = cumulative(lambda f, line, name: f.endswith("nasmerc/train/trainer.py") and name == "loss")
    validate = cumulative(lambda f, line, name: f.endswith("nasmerc/train/trainer.py") and name == "validate")
    backward = cumulative(lambda f, line, name: f.endswith("torch/autograd/__init__.py") and name in ("backward", "grad"))
    step = cumulative(lambda f, line, name: "torch/optim/" in f and f.endswith(("adamw.py", "adam.py", "sgd.py"))
                      and name == "step")
    total = cumulative(lambda f, line, name: f.endswith("nasmerc/workflow.py") and name == "run_search")
    return {"total": total, "forward_and_loss": forward, "backward": backward, "optimiser_steps": step,
            "validation": validate, "rest": total - forward - backward - step - validate}


# -- the parent -------------------------------------------------------------------------------------
def run(argv: list[str], profile: bool = False) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", *(["--profile"] if profile else []), "--", *argv]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"failed: nasmerc {' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = json.loads(lines[-1])
    if result.get("code") != 0:
        raise SystemExit(f"nasmerc {' '.join(argv)} exited {result.get('code')}\n{done.stderr[-4000:]}")
    return result


def epoch_seconds(run_dir: Path) -> list[float]:
    times = [json.loads(line)["time"] for line in (run_dir / "events.jsonl").read_text().splitlines()
             if '"type": "epoch"' in line]
    return [b - a for a, b in zip(times, times[1:])]


def measure(name: str, strategy: str, extra: list[str], common: list[str], work: Path, epochs: int) -> dict[str, Any]:
    out = work / name.replace(" ", "_").replace("'", "").replace("(", "").replace(")", "").replace(":", "_")
    search = run(["search", "--no-dashboard", "--out", str(out), *common, "--strategy", strategy, *extra])
    summary = json.loads((out / "search.json").read_text())
    gaps = epoch_seconds(out)
    retrain = run(["retrain", str(out / "arch.yaml"), "--no-dashboard"])
    run(["evaluate", str(out / "retrain")])
    report = json.loads((out / "retrain" / "evaluation.json").read_text())
    return {
        "strategy": strategy, "options": extra, "epochs": epochs,
        "seconds_per_epoch": statistics.median(gaps) if gaps else None,
        "mean_seconds_per_epoch": statistics.mean(gaps) if gaps else None, "epoch_gaps": gaps,
        "search_wall_seconds": summary["wall_seconds"], "search_process_seconds": search["seconds"],
        "import_seconds": search["import_seconds"],
        "peak_rss_mb": search["peak_rss"] / 2**20, "rss_growth_mb": (search["peak_rss"] - search["baseline_rss"]) / 2**20,
        "best_valid": summary["best_valid"], "best_epoch": summary["best_epoch"], "arch": summary["arch"],
        "derived_parameters": summary["derived_parameters"], "retrain_seconds": retrain["seconds"],
        "test_mean_waf": report["mean"]["waf"], "share_of_oracle": report["share_of_oracle"],
    }


def table(rows: dict[str, dict[str, Any]], profiles: dict[str, dict[str, float]]) -> str:
    head = (f"{'':30s} {'s/epoch':>8s} {'search s':>9s} {'imports s':>9s} {'peak MB':>8s} {'growth MB':>9s} "
            f"{'valid':>7s} {'test waf':>8s} {'share':>7s}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:30s} {r['seconds_per_epoch']:8.2f} {r['search_wall_seconds']:9.1f} {r['import_seconds']:9.1f} "
                     f"{r['peak_rss_mb']:8.0f} {r['rss_growth_mb']:9.0f} {r['best_valid']:7.4f} {r['test_mean_waf']:8.4f} "
                     f"{100 * r['share_of_oracle']:6.1f}%")
    base, nni = rows["darts (NNI's arch optimiser)"], rows["nni:darts"]
    lines.append("")
    lines.append(f"per epoch, nni:darts / darts (same algorithm): {nni['seconds_per_epoch'] / base['seconds_per_epoch']:.2f}x; "
                 f"whole search process {nni['search_process_seconds'] / base['search_process_seconds']:.2f}x "
                 f"(goal: nasmerc >= 3x faster per epoch with an equal or better share)")
    if profiles:
        lines.append("")
        lines.append("where a profiled search's time goes (seconds, under cProfile):")
        keys = ["total", "forward_and_loss", "backward", "optimiser_steps", "validation", "rest"]
        lines.append(f"{'':30s} " + " ".join(f"{k:>16s}" for k in keys))
        for name, p in profiles.items():
            lines.append(f"{name:30s} " + " ".join(f"{p[k]:16.2f}" for k in keys))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rest, "profile" if args.profile else None)
        return
    common = [*SPACE, "--set", f"data.n_train={args.n_train}", "--set", "data.n_valid=16", "--set", "data.n_test=30",
              "--set", "data.length_max=40", "--epochs", str(args.epochs), "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = {}
        for name, (strategy, extra) in ROWS.items():
            rows[name] = measure(name, strategy, extra, common, work, args.epochs)
            print(f"{name}: {rows[name]['seconds_per_epoch']:.2f} s/epoch, share {100 * rows[name]['share_of_oracle']:.1f} %",
                  flush=True)
        profiles = {}
        if not args.no_profile:
            for name in ("darts (NNI's arch optimiser)", "nni:darts"):
                strategy, extra = ROWS[name]
                out = work / f"profile-{strategy.replace(':', '_')}"
                profiles[name] = run(["search", "--no-dashboard", "--out", str(out), *common, "--strategy", strategy,
                                      *extra], profile=True)["split"]
    text = table(rows, profiles)
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"space": "rmnas", "command_options": common, "threads": 1}
    (RESULTS / "nni_side_by_side.json").write_text(json.dumps({"settings": settings, "rows": rows, "profiles": profiles},
                                                              indent=1) + "\n")
    (RESULTS / "nni_side_by_side.txt").write_text(text + "\n")
    print(f"\nwrote {RESULTS / 'nni_side_by_side.json'} and .txt")


if __name__ == "__main__":
    main()
