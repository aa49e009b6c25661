"""Runs survive: a search SIGKILLed mid-way and resumed ends as the run that was never stopped; a run
folder is owned by one process; an unfinished run keeps its best so far and says how to go on.

The kill-and-resume cases use ``benchmarks/kill_resume.py`` (which kills each strategy at 20 drawn
moments); here each strategy is killed once, in the middle of its event log.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import benchmark_module
from nasmerc.cli import main
from nasmerc.dashboard import follow
from nasmerc.events import read_events

kill_resume = benchmark_module("kill_resume", "kill_resume")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("case", list(kill_resume.CASES))
def test_a_killed_search_resumes_to_the_same_result(case: str, tmp_path: Path) -> None:
    want, n_events = kill_resume.reference(case, tmp_path)
    row = kill_resume.kill_and_resume(case, tmp_path, max(2, n_events // 2), want)
    assert not row["finished_before_kill"], row  # the kill landed before the end
    assert row["same"], row


def _search(out: Path, *extra: str) -> list[str]:
    return ["search", "--no-dashboard", "--out", str(out), *kill_resume.CASES["random"], *kill_resume.DATA, *extra]


def test_an_interrupted_population_search_keeps_its_best_and_resumes(tmp_path: Path, capsys) -> None:
    """Ctrl-C after the second trial: ``arch.yaml`` holds the best so far (``export`` works), the
    message says how to resume, and ``--resume`` finishes without training a finished trial again."""
    from nasmerc.events import CallbackSink
    from nasmerc.workflow import export, search

    out = tmp_path / "run"
    seen = []

    def interrupt(event: dict) -> None:
        seen.append(event["type"])
        if event["type"] == "trial" and seen.count("trial") == 2:
            raise KeyboardInterrupt

    args = [*kill_resume.CASES["random"], *kill_resume.DATA]
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    with pytest.raises(KeyboardInterrupt) as stopped:
        search("rmnas", "random", sets=[*sets, "strategy.trials=3"], out=str(out), sinks=[CallbackSink(interrupt)])
    assert stopped.value.resume == f"nasmerc search --resume {out}"
    arch = yaml.safe_load((out / "arch.yaml").read_text())
    assert arch["search"]["partial"] is True and arch["search"]["trials_done"] == 1  # stopped recording trial 2
    assert not (out / "search.json").exists()
    export(str(out))  # an interrupted population search can be exported
    assert len((out / "candidates.jsonl").read_text().splitlines()) == 2
    assert main(["search", "--no-dashboard", "--resume", str(out)]) == 0
    assert len((out / "candidates.jsonl").read_text().splitlines()) == 3  # only the third trial trained
    summary = json.loads((out / "search.json").read_text())
    assert [t["trial"] for t in summary["trials"]] == [1, 2, 3]
    types = [e["type"] for e in read_events(out / "events.jsonl")]
    assert types.count("trial") == 3 and types.count("run_start") == 1 and "run_resume" in types
    assert types.count("run_end") == 1


def test_resume_refuses_what_it_cannot_do(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_search(out)) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    cases = [
        (["search", "--resume", str(out)], "the run finished; there is nothing to resume"),
        (["search", "--resume", str(tmp_path / "nope")], "no such run folder"),
        (["search", "--resume", str(out), "--seed", "3"], "--seed cannot be given with --resume"),
        (["search", "--resume", str(out), "--trials", "3"], "a strategy flag cannot be given with --resume"),
        (["retrain", "--resume", str(out)], "a 'search' run, not a 'retrain' run"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (argv, err)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_run_folder_is_written_by_one_process(tmp_path: Path, capsys) -> None:
    """While a search holds its folder, a second search on the same --out and a --resume of it are
    refused naming the holder, and the dashboard says it is running; once the holder is SIGKILLed the
    dashboard says it stopped and how to resume it."""
    import signal
    import time

    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "nasmerc.cli", *_search(out, "--epochs", "50"),
                              "--set", "strategy.trials=50"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "events.jsonl").exists():
            time.sleep(0.1)
        for argv in (_search(out), ["search", "--resume", str(out)]):
            capsys.readouterr()
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"process {child.pid}" in err, err
        assert follow(out, once=True).status == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    state = follow(out, once=True)
    assert state.status == "stopped" and f"nasmerc search --resume {out}" in state.message
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    assert f"resume it with: nasmerc search --resume {out}" in capsys.readouterr().err


def test_a_diverging_loss_stops_with_its_epoch_and_step(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["search", "--no-dashboard", "--out", str(out), *kill_resume.CASES["fixed"], *kill_resume.DATA,
            "--set", "train.lr=1e30", "--set", "train.grad_clip=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the plain progress lines
    assert err.startswith("nasmerc: error: training diverged: the loss is not finite from epoch 1, step"), err
    assert read_events(out / "events.jsonl")[-1]["status"] == "failed"


def test_storage_passwords_are_never_written(tmp_path: Path, capsys, monkeypatch) -> None:
    """A password in a storage URL is masked in config.yaml, events and messages; a masked URL read back
    takes it from NASMERC_STORAGE_PASSWORD."""
    from strategies.tpe import TPE, masked, unmasked

    url = "postgresql://alice:s3cret@127.0.0.1:1/studies"
    assert masked(url) == "postgresql://alice:***@127.0.0.1:1/studies"
    assert TPE.from_overrides({"storage": url}).config_dict()["storage"] == masked(url)
    monkeypatch.delenv("NASMERC_STORAGE_PASSWORD", raising=False)
    with pytest.raises(Exception, match="NASMERC_STORAGE_PASSWORD"):
        unmasked(masked(url))
    monkeypatch.setenv("NASMERC_STORAGE_PASSWORD", "s3cret")
    assert unmasked(masked(url)) == url
    out = tmp_path / "run"
    assert main(["search", "--no-dashboard", "--out", str(out), *kill_resume.CASES["tpe"], *kill_resume.DATA,
                 "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "***" in err
    assert not out.exists()


def test_run_files_share_one_mode(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_search(out)) == 0
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_a_signal_during_a_checkpoint_write_waits_for_the_complete_file(tmp_path: Path) -> None:
    """SIGTERM inside ``torch.save`` would break its zip writer and hide the interruption: the write
    completes, then the handler that was there raises."""
    import collections
    import signal

    from nasmerc.io import write_torch

    class Stop(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    class Kill:  # pickled mid-save: the signal arrives while torch.save is writing
        def __reduce__(self) -> tuple[object, tuple[()]]:
            os.kill(os.getpid(), signal.SIGTERM)
            return (collections.OrderedDict, ())

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stop):
            write_torch(tmp_path / "ckpt.pt", {"w": torch.ones(3), "kill": Kill()})
        assert signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert torch.equal(torch.load(tmp_path / "ckpt.pt", weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    """A killed DARTS search's checkpoint is a plain weights_only file; a finished run removes it."""
    out = tmp_path / "run"
    kill_resume.kill_at("darts", out, 9)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] >= 1 and set(ckpt["hooks"][0]) == {"alpha", "optimizer", "batches", "history"}
    assert json.loads((out / "resume.json").read_text())["checkpoint"] == "checkpoint.pt"
    assert kill_resume.run_cli(["search", "--no-dashboard", "--resume", str(out)]).returncode == 0
    assert not (out / "checkpoint.pt").exists() and not (out / "resume.json").exists()
