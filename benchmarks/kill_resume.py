"""Kill a search at random moments, resume it, and compare it with the run that was never stopped.

For each strategy a tiny search runs once to the end (the reference). Then, at each of the moments
drawn for it, the same search is started as a child process and SIGKILLed when its event log reaches
the drawn event (a moment uniform over the reference's events, so kills land in every phase: before
the first epoch, mid-epoch, between trials, during the finalists), and ``nasmerc search --resume``
finishes it. The resumed run must leave what the reference left: the same ``arch.yaml`` and
``search.json`` (less wall-clock seconds), the same strategy files (``alpha.pt``, ``routers.pt``,
``router.json``, ``model.pt``) and the same event log (less times and the ``run_resume`` mark).

    python benchmarks/kill_resume.py                  # 20 kills over darts, router, evolution, tpe, random, fixed
    python benchmarks/kill_resume.py --kills 6 --seed 1 --json out.json

``tests/test_resume.py`` runs one kill per strategy through the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

DATA = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
        "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
        "--set", "data.dims.visual=16", "--set", "train.batch_size=2", "--set", "train.valid_rates=0,0.5"]
RMNAS = ["--space", "rmnas", "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16",
         "--set", "n_heads=2", "--set", "n_cells=1"]
CASES: dict[str, list[str]] = {
    "darts": [*RMNAS, "--strategy", "darts", "--epochs", "3"],
    "router": [*RMNAS, "--strategy", "router", "--epochs", "3"],
    "evolution": ["--space", "haemsa", "--strategy", "evolution", "--population", "3", "--generations", "2",
                  "--set", "strategy.candidate_epochs=1", "--set", "strategy.finalists=2", "--epochs", "2",
                  "--set", "dim=8", "--set", "widths=8,16"],
    "tpe": [*RMNAS, "--strategy", "tpe", "--trials", "4", "--set", "strategy.candidate_epochs=2",
            "--set", "strategy.startup_trials=1"],
    "random": [*RMNAS, "--strategy", "random", "--trials", "3", "--set", "strategy.candidate_epochs=1"],
    "fixed": ["--space", "early_fusion", "--epochs", "3", "--set", "hidden_dim=16"],
}
TORCH_FILES = ("alpha.pt", "routers.pt", "model.pt")
JSON_FILES = ("router.json", "metrics.json", "pareto.json")
VOLATILE = {"time", "elapsed", "seconds", "wall_seconds", "pid", "host"}


def _command(case: str, out: Path) -> list[str]:
    return ["search", "--no-dashboard", "--out", str(out), *CASES[case], *DATA]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    """``nasmerc ARGS`` in a child process with one torch thread (results do not depend on the machine's)."""
    return subprocess.run([sys.executable, "-m", "nasmerc.cli", *args], capture_output=True, text=True, env=_env())


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def outcome(run: Path) -> dict[str, Any]:
    """What a finished search left, less wall-clock times: files as data, the events as a list."""
    got: dict[str, Any] = {"arch.yaml": _strip(yaml.safe_load((run / "arch.yaml").read_text())),
                           "search.json": _strip(json.loads((run / "search.json").read_text()))}
    for name in JSON_FILES:
        if (run / name).exists():
            got[name] = _strip(json.loads((run / name).read_text()))
    for name in TORCH_FILES:
        if (run / name).exists():
            data = torch.load(run / name, weights_only=True)
            got[name] = {k: v.tolist() if isinstance(v, torch.Tensor) else _strip(v) for k, v in _flat(data).items()}
    text = (run / "events.jsonl").read_text().replace(json.dumps(str(run))[1:-1], "<run>")
    events = [json.loads(line) for line in text.splitlines()]
    got["events"] = [_strip(e) for e in events if e["type"] != "run_resume"]
    return got


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/"): data}


def reference(case: str, root: Path) -> tuple[dict[str, Any], int]:
    """The uninterrupted run of ``case``: its outcome and its number of events."""
    out = root / f"{case}-reference"
    done = run_cli(_command(case, out))
    if done.returncode != 0:
        raise RuntimeError(f"{case}: the reference run failed: {done.stderr.strip()}")
    return outcome(out), len((out / "events.jsonl").read_text().splitlines())


def kill_at(case: str, out: Path, event: int, timeout: float = 300.0) -> int:
    """Start ``case`` in ``out`` and SIGKILL it once its log holds ``event`` events; the events it had."""
    child = subprocess.Popen([sys.executable, "-m", "nasmerc.cli", *_command(case, out)], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "events.jsonl"
    start = time.time()
    seen = 0
    while child.poll() is None and time.time() - start < timeout:
        seen = log.read_bytes().count(b"\n") if log.exists() else 0
        if seen >= event:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return seen


def kill_and_resume(case: str, root: Path, event: int, want: dict[str, Any]) -> dict[str, Any]:
    """One kill of ``case`` at ``event`` and its resume; ``same`` says whether the outcome is ``want``."""
    out = root / f"{case}-kill{event}"
    seen = kill_at(case, out, event)
    finished = (out / "search.json").exists()
    resumed = run_cli(["search", "--no-dashboard", "--resume", str(out)])
    if not finished and resumed.returncode != 0:
        return {"case": case, "event": event, "seen": seen, "same": False, "error": resumed.stderr.strip()}
    got = outcome(out)
    differ = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    return {"case": case, "event": event, "seen": seen, "finished_before_kill": finished,
            "same": not differ, "differ": differ}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills in all, spread over the strategies")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn moments")
    parser.add_argument("--cases", default=",".join(CASES), help="strategies (comma-separated)")
    parser.add_argument("--json", default=None, help="also write the results as JSON")
    args = parser.parse_args()
    cases = args.cases.split(",")
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        refs = {case: reference(case, root) for case in cases}
        for i in range(args.kills):
            case = cases[i % len(cases)]
            want, n_events = refs[case]
            row = kill_and_resume(case, root, rng.randint(1, n_events - 1), want)
            rows.append(row)
            print(f"{case:10s} killed at event {row['event']:4d}/{n_events:<4d} (saw {row['seen']:4d}): "
                  f"{'same result' if row['same'] else 'DIFFERENT: ' + str(row.get('differ') or row.get('error'))}",
                  flush=True)
    same = sum(r["same"] for r in rows)
    print(f"{same} of {len(rows)} resumed runs identical to the uninterrupted run")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
