"""``benchmarks/gpu_paper.py --tiny``: the prepared GPU benchmark runs through on a CPU at tiny sizes and
writes its table (every case, both precisions, finite numbers)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_paper_tiny_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_paper.py"), "--tiny", "--steps", "1",
                           "--batch", "2", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads(out.read_text())
    assert table["device"] == "cpu" and len(table["rows"]) == 8
    assert {(r["space"], r["phase"], r["precision"]) for r in table["rows"]} == {
        (s, p, q) for s in ("rmnas", "iteach") for p in ("search", "retrain") for q in ("fp32", "bf16")}
    for row in table["rows"]:
        assert row["seconds_per_step"] > 0 and math.isfinite(row["tflops"]) and row["parameters"] > 0
