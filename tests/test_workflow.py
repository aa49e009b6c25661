"""The whole command-line path on tiny data: search, export, retrain, evaluate, dashboard.

Each command runs in this process through ``nasmerc.cli.main`` with run folders under ``tmp_path``.
One search and one retrain are shared by the module; bad input must exit 2 with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from nasmerc.cli import main
from nasmerc.errors import NasmercError
from nasmerc.events import read_events
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space
from nasmerc.runs import ArchFile
from nasmerc.data.conversation import DataSignature
from strategies.darts import Darts

DATA = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
        "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
        "--set", "data.dims.visual=16"]
SPACE = ["--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16", "--set", "n_heads=2",
         "--set", "n_cells=1"]
TRAIN = ["--set", "train.batch_size=4", "--set", "train.valid_rates=0,0.5"]
TINY = [*DATA, *SPACE, *TRAIN]
EPOCHS = 2


def search_args(out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "rmnas", "--strategy", "darts", "--no-dashboard", "--out", str(out),
            "--epochs", str(EPOCHS), *TINY, *extra]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def alpha_equal(a: Path, b: Path) -> bool:
    x, y = torch.load(a / "alpha.pt", weights_only=True), torch.load(b / "alpha.pt", weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(one_thread, tmp_path_factory) -> Path:
    """One search; the global torch RNG is pinned first (see the reproducibility tests)."""
    out = tmp_path_factory.mktemp("wf") / "search"
    torch.manual_seed(0)
    assert main(search_args(out)) == 0
    return out


@pytest.fixture(scope="module")
def retrained(run: Path) -> Path:
    assert main(["retrain", str(run / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    return run / "retrain"


# -- search ---------------------------------------------------------------------------------------
def test_search_writes_the_run_folder(run: Path) -> None:
    assert {"config.yaml", "events.jsonl", "arch.yaml", "search.json", "alpha.pt"} <= {p.name for p in run.iterdir()}
    # config.yaml: everything resolved.
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["command"], cfg["space"], cfg["strategy"], cfg["data"], cfg["seed"]) == \
        ("search", "rmnas", "darts", "iemocap6", 0)
    assert cfg["train"]["epochs"] == EPOCHS and cfg["train"]["batch_size"] == 4
    assert cfg["train"]["valid_rates"] == [0.0, 0.5]
    assert cfg["space_config"]["hidden_dim"] == 16 and cfg["space_config"]["n_blocks"] == 1
    assert cfg["strategy_config"]["order"] == 1
    assert cfg["signature"]["dims"]["visual"] == 16 and cfg["fixed"] == {}
    # events.jsonl: start, epochs with weights and checkpoints, a finished end.
    events = read_events(run / "events.jsonl")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert events[0]["command"] == "search" and events[0]["epochs"] == EPOCHS and events[0]["metric"] == "waf"
    assert kinds.count("epoch") == EPOCHS and kinds.count("choice_weights") == EPOCHS
    assert kinds.count("checkpoint") >= 1 and "batch" in kinds
    assert events[-1]["status"] == "finished"
    # search.json and arch.yaml agree with the events.
    summary = json.loads((run / "search.json").read_text())
    assert summary["best_valid"] == events[-1]["best"]
    assert summary["best_valid"] == max(e["value"] for e in events if e["type"] == "epoch")
    assert summary["wall_seconds"] > 0 and summary["metric"] == "waf"
    assert summary["supernet_parameters"] > summary["derived_parameters"] > 0
    af = ArchFile.read(run / "arch.yaml")
    assert af.arch == summary["arch"] and len(af.arch) == 11
    assert (af.space, af.strategy, af.data, af.seed) == ("rmnas", "darts", "iemocap6", 0)
    assert af.space_config == cfg["space_config"] and af.train == cfg["train"]
    assert af.search["best_valid"] == summary["best_valid"]
    space = get_search_space("rmnas").from_preset(af.signature, af.preset, af.space_config)
    assert count_parameters(space.build(af.arch)) == summary["derived_parameters"]
    assert Darts().derive(space, run, {}) == af.arch


# -- export ---------------------------------------------------------------------------------------
def test_export_derives_the_same_architecture(run: Path, tmp_path: Path, capsys) -> None:
    before = ArchFile.read(run / "arch.yaml")
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run / 'arch.yaml'}" in out and "text.block0.mixer" in out
    after = ArchFile.read(run / "arch.yaml")
    assert after.arch == before.arch and after.search == before.search and after.signature == before.signature
    kept = (run / "arch.yaml").read_bytes()
    other = tmp_path / "sub" / "other.yaml"
    assert main(["export", str(run), "--out", str(other)]) == 2  # no folder tree is made on the way
    other.parent.mkdir()
    assert main(["export", str(run), "--out", str(other)]) == 0
    assert ArchFile.read(other).arch == before.arch
    assert (run / "arch.yaml").read_bytes() == kept


# -- retrain and evaluate -------------------------------------------------------------------------
def test_retrain_writes_a_loadable_model(run: Path, retrained: Path) -> None:
    af = ArchFile.read(run / "arch.yaml")
    ckpt = torch.load(retrained / "model.pt", weights_only=True)
    assert ckpt["arch"] == af.arch and ckpt["space"] == "rmnas"
    assert ckpt["train"]["epochs"] == 1
    space = get_search_space("rmnas").from_preset(DataSignature.from_dict(ckpt["signature"]), ckpt["preset"],
                                                  ckpt["space_config"])
    model = space.build(ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])  # strict: same keys, same shapes
    metrics = json.loads((retrained / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1 and metrics["metric"] == "waf"
    assert metrics["parameters"] == count_parameters(model)
    assert metrics["parameters"] == json.loads((run / "search.json").read_text())["derived_parameters"]
    assert 0.0 <= metrics["best_valid"] <= 1.0
    events = read_events(retrained / "events.jsonl")
    assert events[0]["command"] == "retrain" and events[-1]["status"] == "finished"
    assert yaml.safe_load((retrained / "config.yaml").read_text())["command"] == "retrain"


def test_evaluate_writes_report_and_plot(retrained: Path, tmp_path: Path, capsys) -> None:
    plot = tmp_path / "p.png"
    assert main(["evaluate", str(retrained.parent), "--rates", "0,0.5", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "unified-model evaluation" in out and "share of the oracle" in out
    report = json.loads((retrained / "evaluation-rates-0-0.5.json").read_text())  # not the default sweep
    assert report["rates"] == [0.0, 0.5] and report["split"] == "test"
    assert set(report["model_metrics"]) == {"0.0", "0.5"} == set(report["oracle_metrics"])
    assert set(report["context_free_oracle_metrics"]) == {"0.0", "0.5"}
    assert "waf" in report["model_auilc"] and "waf" in report["oracle_auilc"]
    assert all(0.0 <= m["waf"] <= 1.0 for m in report["model_metrics"].values())
    assert 0.0 < report["share_of_oracle"] < 2.0
    mean_model = sum(report["model_metrics"][r]["waf"] for r in ("0.0", "0.5")) / 2
    mean_oracle = sum(report["oracle_metrics"][r]["waf"] for r in ("0.0", "0.5")) / 2
    assert report["share_of_oracle"] == pytest.approx(mean_model / mean_oracle)
    data = (tmp_path / "p-rates-0-0.5.png").read_bytes()  # the plot takes the report's suffix
    assert len(data) > 1000 and data.startswith(b"\x89PNG")


def test_trained_share_is_the_share_evaluate_reports(retrained: Path) -> None:
    from nasmerc.evaluate import evaluate_run, trained_share
    from nasmerc.train.trainer import Trainer
    from nasmerc.workflow import load_model

    model, dataset, spec, _ = load_model(retrained / "model.pt", torch.device("cpu"))
    values, share = trained_share(Trainer(model, dataset.signature, spec.train, seed=spec.seed), dataset, [0.0, 0.5])
    report = evaluate_run(str(retrained), [0.0, 0.5], device="cpu")
    assert values == pytest.approx([report["model_metrics"][r]["waf"] for r in ("0.0", "0.5")])
    assert share == pytest.approx(report["share_of_oracle"])


def test_dashboard_once_prints_the_run(run: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["dashboard", str(run), "--once"]) == 0
    out = capsys.readouterr().out
    assert "rmnas" in out and "darts" in out and "finished" in out


# -- reproducibility from the run folder ------------------------------------------------------------
def test_config_file_reproduces_the_search_given_the_global_rng(run: Path, tmp_path: Path) -> None:
    """config.yaml holds everything the search depends on (global torch RNG pinned as for ``run``)."""
    torch.manual_seed(0)
    again = tmp_path / "again"
    assert main(["search", "--config", str(run / "config.yaml"), "--out", str(again), "--no-dashboard"]) == 0
    first, second = (json.loads((d / "search.json").read_text()) for d in (run, again))
    assert second["arch"] == first["arch"] and second["best_valid"] == first["best_valid"]
    assert alpha_equal(run, again)
    a, b = (yaml.safe_load((d / "config.yaml").read_text()) for d in (run, again))
    assert a == b


def test_config_file_reproduces_the_search(run: Path, tmp_path: Path) -> None:
    torch.manual_seed(12345)  # another process: another state of the global RNG
    again = tmp_path / "again"
    assert main(["search", "--config", str(run / "config.yaml"), "--out", str(again), "--no-dashboard"]) == 0
    first, second = (json.loads((d / "search.json").read_text()) for d in (run, again))
    assert alpha_equal(run, again)
    assert second["arch"] == first["arch"] and second["best_valid"] == first["best_valid"]


def test_retrain_is_reproducible(run: Path, tmp_path: Path) -> None:
    states = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)
        out = tmp_path / f"r{i}"
        assert main(["retrain", str(run / "arch.yaml"), "--epochs", "1", "--no-dashboard", "--out", str(out)]) == 0
        states.append(torch.load(out / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# -- bad input ------------------------------------------------------------------------------------
def one_error_line(capsys, needle: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("nasmerc: error: "), err
    assert needle in err, err
    return err


@pytest.mark.parametrize("extra, needle", [
    (["--space", "nosuch"], "unknown search space 'nosuch' (known: "),
    (["--strategy", "nosuch"], "unknown strategy 'nosuch' (known: darts"),
    (["--set", "nosuch=1"], "space 'rmnas': unknown key 'nosuch'"),
    (["--set", "train.nosuch=1"], "train: unknown key 'nosuch'"),
    (["--set", "strategy.nosuch=1"], "strategy 'darts': unknown key 'nosuch'"),
    (["--set", "data.nosuch=1"], "unknown key 'nosuch'"),
    (["--set", "train.lr=fast"], "lr='fast': expected float"),
    (["--device", "tpu"], "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["--epochs", "0"], "--epochs 0: expected at least 1"),
    (["--config", "/nonexistent/config.yaml"], "does not exist"),
])
def test_bad_search_input_is_one_line_and_no_folder(extra: list[str], needle: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(search_args(out, *extra)) == 2
    one_error_line(capsys, needle)
    assert not out.exists()


def test_unknown_fix_label_fails_the_search(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(search_args(out, "--fix", "nosuch=1")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("nasmerc: error:")]
    assert len(errors) == 1 and "--fix: unknown choice label(s) ['nosuch']" in errors[0]
    assert err.splitlines()[-1] == errors[0]
    assert not (out / "search.json").exists() and not (out / "arch.yaml").exists()


def test_unknown_fix_label_is_refused_before_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(search_args(out, "--fix", "nosuch=1")) == 2
    one_error_line(capsys, "nosuch")
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (lambda d: ["retrain", str(d / "missing.yaml"), "--no-dashboard"], "missing.yaml: no such file"),
    (lambda d: ["evaluate", str(d)], "no model.pt here or in"),
    (lambda d: ["evaluate", str(d / "missing")], "missing: no such run folder"),
    (lambda d: ["export", str(d / "missing")], "missing: no such run folder"),
    (lambda d: ["export", str(d)], "no such file (expected the config.yaml of a nasmerc run folder)"),
    (lambda d: ["dashboard", str(d), "--once"], "has no events.jsonl"),
])
def test_bad_paths_are_one_line(argv: Any, needle: str, tmp_path: Path, capsys) -> None:
    assert main(argv(tmp_path)) == 2
    one_error_line(capsys, needle)


def test_search_refuses_a_finished_run_folder(run: Path, capsys) -> None:
    before = snapshot(run)
    assert main(search_args(run)) == 2
    one_error_line(capsys, f"--out {run}: holds a finished run (search.json)")
    assert snapshot(run) == before


def test_retrain_refuses_a_finished_model_folder(run: Path, retrained: Path, capsys) -> None:
    before = snapshot(retrained)
    assert main(["retrain", str(run / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 2
    one_error_line(capsys, "holds a finished run (model.pt)")
    assert snapshot(retrained) == before


# -- a failing search -----------------------------------------------------------------------------
@pytest.mark.parametrize("exc, code, status", [
    (NasmercError("boom: the space broke"), 2, "failed"),
    (RuntimeError("boom: the space broke"), None, "failed"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_failing_search_ends_the_event_log(exc: BaseException, code: int | None, status: str, tmp_path: Path,
                                           monkeypatch, capsys) -> None:
    def broken(self, ctx):
        ctx.events.emit("epoch", epoch=1, epochs=EPOCHS, value=0.5, metric="waf")
        raise exc

    monkeypatch.setattr(Darts, "search", broken)
    out = tmp_path / "out"
    if code is None:
        with pytest.raises(RuntimeError, match="boom"):
            main(search_args(out))
    else:
        assert main(search_args(out)) == code
    events = read_events(out / "events.jsonl")
    assert [e["type"] for e in events] == ["run_start", "epoch", "run_end"]
    assert events[-1]["status"] == status and events[-1]["best"] is None
    if status == "failed":
        assert events[-1]["message"] == "boom: the space broke"
    assert (out / "config.yaml").exists()
    assert not (out / "search.json").exists() and not (out / "arch.yaml").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"run {status}" in err  # the plain progress line


def test_sigterm_ends_the_event_log_as_interrupted(tmp_path: Path) -> None:
    """A scheduler's SIGTERM stops the search like Ctrl-C: ``run_end: interrupted``, exit status 143."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nasmerc.cli", *search_args(out), "--epochs", "50"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(e["type"] == "epoch" for e in _events(out)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == f"nasmerc: terminated; resume with: nasmerc search --resume {out}"
    events = read_events(out / "events.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "interrupted"
    assert not (out / "search.json").exists()


def _events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "events.jsonl"
    try:
        return read_events(path) if path.exists() else []
    except (ValueError, NasmercError):  # a line being written
        return []


def test_device_auto_is_the_default_and_resolves_to_this_machine() -> None:
    import torch

    from nasmerc.spec import RunSpec
    from nasmerc.train.trainer import resolve_device

    assert RunSpec().device == "auto"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
