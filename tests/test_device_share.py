"""``--workers 0``: how many candidates train at once, from the device's free memory
(``nasmerc.nas.device_share``); on a CPU one."""

from __future__ import annotations

import torch
import yaml

from nasmerc.cli import main
from nasmerc.nas.device_share import CONTEXT_BYTES, MARGIN, MAX_WORKERS, USABLE, plan_workers

CUDA = torch.device("cuda")
MIB = 2**20


def test_auto_on_cuda_divides_the_free_memory_by_the_measured_peak() -> None:
    peak = 200 * MIB
    each = int(peak * MARGIN) + CONTEXT_BYTES
    free = 3 * each / USABLE + MIB  # room for three, not four
    plan = plan_workers(0, CUDA, int(free), peak)
    assert plan.workers == 3 and "3 candidate(s)" in plan.reason


def test_auto_is_capped_and_never_below_one() -> None:
    assert plan_workers(0, CUDA, 140 * 2**30, 10 * MIB).workers == MAX_WORKERS
    assert plan_workers(0, CUDA, 100 * MIB, 10 * 2**30).workers == 1
    assert plan_workers(0, CUDA, None, None).workers == 1


def test_auto_on_a_cpu_is_one_process_and_a_given_count_is_kept() -> None:
    assert plan_workers(0, torch.device("cpu")).workers == 1
    assert plan_workers(3, CUDA, 1, 10**12).workers == 3  # --workers N as given


def test_workers_0_runs_a_search_on_the_cpu(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["search", "--space", "early_fusion", "--strategy", "fixed", "--no-dashboard", "--workers", "0",
            "--out", str(out), "--set", "data.n_train=4", "--set", "data.n_valid=2", "--set", "data.n_test=2",
            "--set", "data.length_max=6", "--set", "data.length_min=3", "--set", "data.length_mean=4",
            "--epochs", "1"]
    assert main(args) == 0 and (out / "model.pt").exists()


def test_negative_workers_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "--no-dashboard", "--workers", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--workers -1" in err and "0 for as many as fit" in err and not out.exists()


def test_workers_0_random_search_finds_what_one_worker_finds(tmp_path) -> None:
    tiny = ["--set", "data.n_train=4", "--set", "data.n_valid=2", "--set", "data.n_test=2", "--set",
            "data.length_max=6", "--set", "data.length_min=3", "--set", "data.length_mean=4", "--space", "rmnas",
            "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16", "--set", "n_heads=2",
            "--set", "n_cells=1", "--strategy", "random", "--trials", "3", "--set", "strategy.candidate_epochs=1",
            "--epochs", "1", "--no-dashboard"]
    found = []
    for workers in ("0", "1"):
        out = tmp_path / f"w{workers}"
        assert main(["search", *tiny, "--workers", workers, "--out", str(out)]) == 0
        found.append(yaml.safe_load((out / "arch.yaml").read_text())["arch"])
    assert found[0] == found[1]
