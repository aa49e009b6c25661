"""Protocols as named objects: each round-trips through the run record; ``--protocol`` sets the
training (``--set`` still wins); an IME protocol trains one model per rate and judges each at its own."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from nasmerc.cli import main
from nasmerc.errors import NasmercError
from nasmerc.protocols import PAPERS, PROTOCOLS, Protocol, get_protocol
from nasmerc.spec import RunSpec
from nasmerc.train.trainer import TrainConfig
from test_formats import write_mmsa

TINY = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
        "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
        "--set", "data.dims.visual=16", "--set", "hidden_dim=16"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_protocol_round_trips_through_the_run_record(name: str) -> None:
    protocol = get_protocol(name)
    spec = RunSpec(protocol=name, train=protocol.train_config())
    back = RunSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())), "config.yaml")
    assert back == spec and back.train.masking == protocol.train.get("masking", TrainConfig().masking)
    assert protocol.evaluation in ("ume", "ime") and protocol.runs >= 1 and protocol.sweep


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_protocol_round_trips_through_config_yaml(name: str, tmp_path: Path, capsys) -> None:
    protocol = get_protocol(name)
    frames = protocol.train.get("masking") == "frame"  # frame masking asks for utterance-level data
    if frames:
        write_mmsa(tmp_path / "mosi.pkl")
    data = ["--data", f"mmsa:mosi:{tmp_path / 'mosi.pkl'}"] if frames else TINY[:-2]
    out = tmp_path / "run"
    assert main(["search", "--space", "early_fusion", "--protocol", name, "--epochs", "1", "--no-dashboard",
                 "--out", str(out), *data, "--set", "hidden_dim=16"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert Protocol.from_dict(config["protocol_config"], "config.yaml") == protocol
    record = RunSpec.from_dict(config, "config.yaml", others=("command", "data_config", "protocol_config"))
    assert record.protocol == name and record.train == replace(protocol.train_config(), epochs=1)  # --epochs wins
    assert main(["search", "--config", str(out / "config.yaml"), "--no-dashboard", "--out", str(tmp_path / "again")]) == 0
    assert yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())["protocol_config"] == config["protocol_config"]


def test_protocol_objects_check_their_values() -> None:
    with pytest.raises(NasmercError, match="protocol 'x': evaluation='both': expected one of 'ume', 'ime'"):
        Protocol("x", "paper", "d", evaluation="both")
    with pytest.raises(NasmercError, match="protocol 'x': runs=0: expected an integer >= 1"):
        Protocol("x", "paper", "d", runs=0)
    with pytest.raises(NasmercError, match=r"config.yaml: protocol key 'seeds' unknown \(expected name, paper"):
        Protocol.from_dict({"name": "x", "paper": "p", "description": "", "seeds": 3}, "config.yaml")
    with pytest.raises(NasmercError, match="config.yaml: protocol 'x': sweep: 'a' is not a missing rate"):
        Protocol.from_dict({"name": "x", "paper": "p", "description": "", "sweep": ["a"]}, "config.yaml")
    with pytest.raises(NasmercError, match="config.yaml: protocol 'x': unknown key 'lr_max'"):
        Protocol.from_dict({"name": "x", "paper": "p", "description": "", "train": {"lr_max": 1}}, "config.yaml")
    assert get_protocol("rmnas").fold_list(True) == (1, 2, 3, 4, 5) and get_protocol("rmnas").fold_list(False) == (0,)


def test_every_paper_row_names_a_protocol_and_a_metric_nasmerc_knows() -> None:
    from nasmerc.metrics import HIGHER_IS_BETTER

    for paper in PAPERS.values():
        for exp in paper.experiments:
            protocol = get_protocol(exp.protocol)
            for shape, rows in exp.rows.items():
                assert rows and shape in ("iemocap4", "iemocap6", "meld", "mosi", "mosei")
                for row in rows:
                    assert row.source.startswith("table ") and (row.paper is None or row.paper > 0)
                    assert row.metric is None or row.metric in HIGHER_IS_BETTER or row.metric.startswith("f1_")
                    assert row.metric is not None or row.note.startswith("not computed by nasmerc")
                    assert row.at in ("mean", "auilc") or row.at in protocol.sweep


def test_protocol_sets_the_training_and_set_wins(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", "early_fusion", "--protocol", "iteach-progressive", "--epochs", "1",
                 "--set", "train.batch_size=2", "--no-dashboard", "--out", str(out), *TINY]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["protocol"] == "iteach-progressive"
    assert config["train"]["missing"] == "progressive" and config["train"]["lr"] == 5e-4
    assert config["train"]["batch_size"] == 2 and config["train"]["epochs"] == 1  # the user's values win


def test_an_ime_protocol_trains_one_model_per_rate(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["search", "--space", "early_fusion", "--epochs", "1", "--no-dashboard", "--out", str(run), *TINY]) == 0
    assert main(["retrain", str(run / "arch.yaml"), "--protocol", "micga", "--epochs", "1", "--no-dashboard",
                 "--out", str(tmp_path / "ime")]) == 0
    rates = get_protocol("micga").sweep
    folders = sorted((tmp_path / "ime").glob("rate-*"))
    assert [float(f.name[5:]) for f in folders] == sorted(rates)
    for folder in folders:
        train = yaml.safe_load((folder / "config.yaml").read_text())["train"]
        rate = float(folder.name[5:])
        assert train["missing"] == f"fixed:{rate:g}" and train["valid_rates"] == [rate]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "ime")]) == 0
    printed = capsys.readouterr().out
    assert "independent-model (one model per rate)" in printed
    report = json.loads((tmp_path / "ime" / "evaluation.json").read_text())
    assert report["protocol"] == "IME" and report["rates"] == list(rates)
    for rate in rates:  # each model judged at its own rate: the same number as its own one-rate evaluation
        own = json.loads(next((tmp_path / "ime" / f"rate-{rate:g}").glob("evaluation*.json")).read_text())
        assert report["model_metrics"][str(rate)] == own["model_metrics"][str(rate)]


def test_protocols_are_listed_and_unknown_ones_refused(tmp_path: Path, capsys) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name}: " in listed for name in PROTOCOLS)
    assert main(["search", "--protocol", "nosuch", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasmerc: error: --protocol 'nosuch': unknown (known: default,") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_single_modality_is_said_once_and_reported_in_one_row(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["search", "--space", "early_fusion", "--epochs", "1", "--no-dashboard", "--out", str(run),
                 "--set", "data.modalities=text", "--set", "data.n_train=6", "--set", "data.n_valid=2",
                 "--set", "data.n_test=3", "--set", "hidden_dim=16"]) == 0
    assert capsys.readouterr().out.count("note: the data have one modality (text)") == 1
    assert main(["evaluate", str(run)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note: the data have one modality") == 1 and "\n0.10 " not in printed
    report = json.loads((run / "evaluation.json").read_text())
    assert report["rates"] == [0.0] and list(report["model_metrics"]) == ["0.0"]
