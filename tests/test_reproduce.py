"""``nasmerc reproduce PAPER``: the dry run lists the runs of the paper's protocol, a tiny real reproduce
prints the paper's table beside ours and goes on where it stopped, bad input writes nothing."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from nasmerc.cli import build_parser, main
from nasmerc.protocols import PAPERS, Protocol, get_protocol
from nasmerc.reproduce import Settings, reproduce
from test_formats import write_mmsa

TINY = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
        "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
        "--set", "data.dims.visual=16", "--set", "hidden_dim=16"]

pytestmark = pytest.mark.usefixtures("one_thread")


def dry_run(capsys, tmp_path: Path, paper: str, *extra: str) -> list[str]:
    out = tmp_path / "out"
    assert main(["reproduce", paper, "--dry-run", "--out", str(out), *extra]) == 0
    assert not out.exists()  # a dry run writes nothing
    lines = capsys.readouterr().out.splitlines()
    for line in lines:  # every listed command is one the CLI accepts
        if line.strip().startswith("nasmerc "):
            build_parser().parse_args(shlex.split(line.strip())[1:])
    assert re.search(r"^estimated time: [\d.]+ (s|min|h) on a CPU.*documented per-epoch estimate", lines[-1])
    return lines


def searches(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith("nasmerc search")]


def flag(line: str, name: str) -> list[str]:
    words = shlex.split(line)
    return [words[i + 1] for i, w in enumerate(words) if w == name]


def test_rmnas_dry_run_is_ime_over_five_folds_and_three_runs(capsys, tmp_path: Path) -> None:
    lines = dry_run(capsys, tmp_path, "rmnas")
    protocol = get_protocol("rmnas")
    header = next(line for line in lines if line.startswith("rmnas: rmnas / darts, protocol rmnas"))
    assert "IME over rho 0..0.7, 3 run(s), session folds" in header
    assert "optimizer=adamw, lr=0.0005, batch_size=32, epochs=100" in header
    found = searches(lines)
    assert len(found) == 3 * 5 * len(protocol.sweep)  # runs x folds x rates, one search each
    cells = {(flag(s, "--seed")[0], next(v for v in flag(s, "--set") if v.startswith("data.fold=")),
              next(v for v in flag(s, "--set") if v.startswith("train.missing="))) for s in found}
    assert cells == {(str(r), f"data.fold={k}", f"train.missing=fixed:{rate:g}")
                     for r in range(3) for k in range(1, 6) for rate in protocol.sweep}
    assert all(flag(s, "--protocol") == ["rmnas"] and flag(s, "--strategy") == ["darts"] for s in found)
    assert sum(line.strip().startswith("nasmerc retrain") for line in lines) == len(found)
    assert sum(line.strip().startswith("nasmerc evaluate") for line in lines) == 15


def test_iteach_dry_run_is_ume_with_the_router_and_both_strategies(capsys, tmp_path: Path) -> None:
    lines = dry_run(capsys, tmp_path, "iteach")
    found = searches(lines)
    for name, missing in (("iteach-random", "random"), ("iteach-progressive", "progressive")):
        mine = [s for s in found if flag(s, "--protocol") == [name]]
        assert len(mine) == 3 * 5 and all(flag(s, "--strategy") == ["router"] for s in mine)
        assert not any(v.startswith("train.missing") for s in mine for v in flag(s, "--set"))
        header = next(line for line in lines if line.startswith(f"{name}: iteach / router"))
        assert f"UME over rho 0..0.7, 3 run(s), session folds; optimizer=adamw, lr=0.0005, batch_size=32, " \
               f"epochs=100, missing={missing}" in header
    assert sum(line.strip().startswith("nasmerc retrain") for line in lines) == 30


def test_mfmb_and_corect_dry_runs_follow_their_protocols(capsys, tmp_path: Path) -> None:
    lines = dry_run(capsys, tmp_path, "mfmb")
    (only,) = searches(lines)
    assert flag(only, "--data") == ["mosi"] and flag(only, "--protocol") == ["mfmb"]
    assert "train.masking=auto" in flag(only, "--set")  # synthetic MOSI is dialogue-level: said, not hidden
    assert any("not frames" in line for line in lines)
    assert any("UME over rho 0..1, 1 run(s); optimizer=adam, lr=0.002, batch_size=24, patience=6" in line
               for line in lines)
    assert not any(line.strip().startswith("nasmerc retrain") for line in lines)  # a fixed model
    write_mmsa(tmp_path / "mosi.pkl")  # utterance-level: the paper's frame masking applies
    (only,) = searches(dry_run(capsys, tmp_path, "mfmb", "--data", f"mmsa:mosi:{tmp_path / 'mosi.pkl'}"))
    assert "train.masking=auto" not in flag(only, "--set")
    lines = dry_run(capsys, tmp_path, "corect", "--epochs", "2", "--runs", "2")
    found = searches(lines)
    assert [flag(s, "--seed") for s in found] == [["0"], ["1"]] and all(flag(s, "--epochs") == ["2"] for s in found)
    assert all(not any(v.startswith("data.fold") for v in flag(s, "--set")) for s in found)  # the standard split
    assert "changed from the protocol (corect): epochs 2 (protocol: 30); runs 2 (protocol: 1)" in lines


def test_a_tiny_reproduce_prints_the_paper_beside_ours_and_goes_on_where_it_stopped(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["reproduce", "iteach", "--epochs", "1", "--runs", "1", "--folds", "1", "--threads", "1", "--out", str(out),
            *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "changed from the protocol (iteach-random, iteach-progressive): epochs 1 (protocol: 100); runs 1 (protocol: 3); " \
           "folds 1 of 1,2,3,4,5" in printed
    row = next(line for line in printed.splitlines() if line.startswith("WAF, average over rho 0-0.7  57.30"))
    assert "table 4, row 'ITEACH-Net' of IEMOCAP (six-class), column 'Average'" in row
    assert (out / "reproduce.txt").read_text() in printed
    report = json.loads((out / "reproduce.json").read_text())
    random, progressive = report["experiments"]
    assert [r["paper"] for r in random["rows"]] == [59.90, 59.32, 58.61, 57.86, 57.01, 56.36, 55.29, 54.01, 57.30]
    for r in random["rows"]:
        assert r["ours"]["n"] == 1 and 0 <= r["ours"]["mean"] <= 1 and 0 < r["oracle"] <= 1
    evaluation = json.loads((out / "iteach-random" / "fold1" / "run0" / "retrain" / "evaluation.json").read_text())
    assert random["rows"][-1]["ours"]["mean"] == pytest.approx(evaluation["mean"]["waf"])
    assert random["rows"][0]["oracle"] == evaluation["oracle_metrics"]["0.0"]["waf"]
    config = yaml.safe_load((out / "iteach-random" / "fold1" / "run0" / "search" / "config.yaml").read_text())
    assert config["data_overrides"]["fold"] == "1" and config["data_config"]["fold"] == 1
    assert Protocol.from_dict(config["protocol_config"], "config.yaml") == get_protocol("iteach-random")
    assert Protocol.from_dict(random["protocol"], "reproduce.json") == get_protocol("iteach-random")
    assert len((out / "reproduce.jsonl").read_text().splitlines()) == 2

    # interrupted during the second unit's retrain: its search is kept, its retrain made anew
    lines = (out / "reproduce.jsonl").read_text().splitlines()
    (out / "reproduce.jsonl").write_text(lines[0] + "\n")
    retrain = out / "iteach-progressive" / "fold1" / "run0" / "retrain"
    (retrain / "events.jsonl").write_text((retrain / "events.jsonl").read_text().splitlines()[0] + "\n")
    said: list[str] = []
    settings = Settings(PAPERS["iteach"], "iemocap6", out, epochs=1, runs=1, folds=(1,), sets=tuple(TINY[1::2]))
    again = reproduce(settings, log=said.append)
    assert said == ["reproduce: iteach-progressive fold 1 run 0: retrain"]
    assert again["experiments"][0]["rows"] == random["rows"]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nosuch"], "reproduce: unknown paper 'nosuch' (known: rmnas, iteach, mfmb, corect"),
    (["reproduce", "rmnas", "--folds", "1,9"], "--folds '1,9': expected distinct fold numbers 1-5"),
    (["reproduce", "corect", "--folds", "2"], "--folds 2: protocol 'complete' on iemocap6 uses the data's own split"),
    (["reproduce", "iteach", "--data", "mosi", "--folds", "1"], "(the data have no sessions): expected --folds 0"),
    (["reproduce", "rmnas", "--data", "meld"], "reproduce rmnas: RMNAS has no table for meld"),
    (["reproduce", "corect", "--runs", "0"], "--runs 0: expected an integer >= 1"),
    (["reproduce", "iteach", "--set", "data.fold=2"], "the folds come from the protocol (use --folds)"),
    (["reproduce", "corect", "--set", "train.lr=-1"], "train: lr=-1.0: expected a finite number > 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
