"""Leave-one-session-out folds: disjoint by session, every conversation tested once, one rule for the
synthetic presets and the files, the default split untouched, and data without sessions refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nasmerc.cli import main
from nasmerc.data.files import load_spec
from nasmerc.data.formats import plain
from nasmerc.data.folds import IEMOCAP_SESSIONS, apply_fold, session_of_video, synthetic_sessions
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from test_formats import GCNET_SET, write_gcnet, write_iemocap

SMALL = {"n_train": 16, "n_valid": 4, "n_test": 5, "length_mean": 5, "length_min": 3, "length_max": 8,
         "dims.text": 8, "dims.audio": 8, "dims.visual": 8, "latent_dim": 4}


def ids(ds, split: str) -> list[str]:
    return [c.id for c in ds.split(split)]


def fingerprint(ds) -> str:
    h = hashlib.sha256()
    for _, convs in ds:
        for c in convs:
            h.update(c.id.encode()); h.update(c.labels.tobytes()); h.update(c.speakers.tobytes())  # noqa: E702
            for m in sorted(c.features):
                h.update(c.features[m].tobytes())
    return h.hexdigest()[:16]


def test_folds_are_disjoint_by_session_and_test_every_conversation_once() -> None:
    base = load("iemocap6", SMALL)
    every = sorted(c.id for _, convs in base for c in convs)
    tested: list[str] = []
    for fold in range(1, 6):
        ds = load("iemocap6", {**SMALL, "fold": str(fold)})
        assert {c.session for c in ds.split("test")} == {fold}
        assert all(c.session != fold for s in ("train", "valid") for c in ds.split(s))
        assert sorted(ids(ds, "train") + ids(ds, "valid") + ids(ds, "test")) == every  # each once
        assert ds.split("valid") and ds.config["fold"] == fold
        tested += ids(ds, "test")
    assert sorted(tested) == every


def test_the_default_split_is_unchanged_and_sessions_follow_iemocap() -> None:
    ds = load("iemocap6")
    # the conversations and split of the preset before sessions existed (what README numbers rest on)
    assert fingerprint(ds) == "ded3d8227a99fcf8"
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [108, 12, 31]
    assert ids(ds, "valid") == [f"iemocap6_valid_{j:04d}" for j in range(12)]
    assert {c.session for c in ds.split("test")} == {5}
    counts = [sum(c.session == s for _, convs in ds for c in convs) for s in range(1, 6)]
    assert counts == list(IEMOCAP_SESSIONS)
    assert fingerprint(load("iemocap6", {"fold": "0"})) == fingerprint(ds) and "fold" not in ds.config
    fold1 = load("iemocap6", {"fold": 1})
    assert fold1.summary()["splits"]["valid"]["sessions"] == {"2": 3, "3": 3, "4": 3, "5": 3}  # 10 %, spread evenly


def test_synthetic_sessions_for_any_size() -> None:
    sessions = synthetic_sessions(6, 2, 3)
    assert sessions == {"train": [1, 1, 2, 2, 3, 3], "valid": [4, 4], "test": [5, 5, 5]}
    assert session_of_video("Ses03M_impro02") == 3 and session_of_video("vid7") is None


def test_a_fold_without_sessions_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(NasmercError, match="data.fold=2: the data have no sessions"):
        load("meld", {**SMALL, "fold": 2})
    with pytest.raises(NasmercError, match=r"data.fold=6: expected a session 1-5 \(0: the dataset's own split\)"):
        load("iemocap6", {**SMALL, "fold": 6})
    assert main(["data", "mosi", "--set", "fold=1", "--json", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasmerc: error: dataset 'mosi': data.fold=1: the data have no sessions")
    assert len(err.splitlines()) == 1 and not (tmp_path / "d.json").exists()


def test_files_take_the_same_rule(tmp_path: Path) -> None:
    path, parts = write_gcnet(tmp_path)
    whole = load_spec(f"gcnet:iemocap6:{path}", GCNET_SET)
    fold2 = load_spec(f"gcnet:iemocap6:{path}", {**GCNET_SET, "fold": "2"})
    want = apply_fold(whole.splits, 2, valid_fraction=0.1, seed=0, where="here")
    assert {s: sorted(ids(fold2, s)) for s in want} == {s: sorted(c.id for c in want[s]) for s in want}
    assert {c.session for c in fold2.split("test")} == {2} and fold2.config["valid_carved"]
    write_iemocap(tmp_path / "iemocap.pkl")
    dgcn = load_spec(f"dialoguegcn:iemocap6:{tmp_path / 'iemocap.pkl'}", {"fold": "4"})
    assert ids(dgcn, "test") == ["Ses04F_impro01", "Ses04F_impro02"]
    with pytest.raises(NasmercError, match="data.fold=1: the data have no sessions"):
        load_spec(f"gcnet:mosi:{write_gcnet(tmp_path / 'm', regression=True)[0]}",
                  {**GCNET_SET, "fold": "1"})


def test_a_converted_file_keeps_its_sessions(tmp_path: Path) -> None:
    npz = plain.save(load("iemocap6", SMALL), tmp_path / "d.npz")
    again = load_spec(str(npz), {"fold": "3"})
    synthetic = load("iemocap6", {**SMALL, "fold": "3"})
    assert ids(again, "test") == ids(synthetic, "test")
    assert sorted(ids(again, "train") + ids(again, "valid")) == sorted(ids(synthetic, "train") + ids(synthetic, "valid"))
