"""`nasmerc data` and `nasmerc list` as a user runs them; bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nasmerc.cli import main

TINY_ARGS = ["--set", "n_train=4", "--set", "n_valid=1", "--set", "n_test=3", "--set", "length_max=15",
             "--set", "length_min=5", "--set", "length_mean=8", "--set", "dims.visual=16"]


def test_data_prints_sizes_and_oracle_table(tmp_path, capsys):
    out_json = tmp_path / "report.json"
    assert main(["data", "iemocap6", *TINY_ARGS, "--oracle", "--rates", "0,0.5", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "dataset iemocap6: classification" in text and "text 100, audio 100, visual 16" in text
    assert "Bayes oracle on the test split" in text and "context-free waf" in text and "AUILC" in text
    report = json.loads(out_json.read_text())
    assert report["splits"]["train"]["conversations"] == 4
    assert set(report["oracle"]["full"]) == {"0.0", "0.5"}
    assert 0 <= report["oracle"]["full"]["0.0"]["waf"] <= 1
    assert report["config"]["n_train"] == 4 and report["config"]["source"] == "synthetic"


def test_data_regression_columns(capsys):
    assert main(["data", "mosi", "--set", "n_train=3", "--set", "n_valid=1", "--set", "n_test=2",
                 "--oracle", "--rates", "0"]) == 0
    text = capsys.readouterr().out
    assert "oracle mae" in text and "oracle acc2_non0" in text


def test_list_shows_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "datasets:" in out and "iemocap6" in out and "mosei" in out


@pytest.mark.parametrize("argv, needle", [
    (["data", "iemocap9"], "unknown dataset 'iemocap9'"),
    (["data", "iemocap6", "--set", "snr.txt=2", "--set", "nosuch=1"], "unknown key 'nosuch'"),
    (["data", "iemocap6", "--set", "inertia=lots"], "inertia='lots': expected float"),
    (["data", "iemocap6", "--set", "inertia"], "expected key=value"),
    (["data", "iemocap6", "--oracle", "--rates", "0,x"], "'x' is not a number"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_entry_point_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "nasmerc.cli", "data", "nosuch"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nasmerc: error: unknown dataset 'nosuch'") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [[], ["data"], ["list"], ["search"], ["export"], ["retrain"], ["evaluate"],
                                     ["bench"], ["reproduce"], ["dashboard"], ["study"]])
def test_every_help_prints(command, capsys):
    """Each command's ``--help`` prints its usage and exits 0 (a bare ``%`` in a help text would raise)."""
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: nasmerc")
