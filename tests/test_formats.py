"""Community feature files, written here in their exact layouts, read through ``load_spec``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nasmerc.data.files import convert, is_file_spec, load_spec, parse_spec
from nasmerc.errors import NasmercError

DIMS = {"text": 6, "audio": 5, "visual": 4}


def _dialogues(vids, rng, n_classes, speaker, dims=DIMS, lengths=None):
    ids, spk, lab, feats = {}, {}, {}, {m: {} for m in dims}
    for j, v in enumerate(vids):
        n = lengths[j] if lengths else int(rng.integers(2, 6))
        ids[v] = [f"{v}_{k:03d}" for k in range(n)]
        spk[v] = [speaker(k) for k in range(n)]
        lab[v] = [int(x) for x in rng.integers(0, n_classes, n)]
        for m, d in dims.items():
            feats[m][v] = [rng.normal(size=d).astype(np.float32) for _ in range(n)]
    return ids, spk, lab, feats


IEMOCAP_TRAIN = [f"Ses0{s}F_impro0{k}" for s in (1, 2, 3, 4) for k in (1, 2)] + ["Ses05M_script01"]
IEMOCAP_TEST = ["Ses05F_impro01", "Ses05F_impro02"]


def write_iemocap(path, n_classes=6, mutate=None):
    rng = np.random.default_rng(0)
    ids, spk, lab, f = _dialogues(IEMOCAP_TRAIN + IEMOCAP_TEST, rng, n_classes, lambda k: "MF"[k % 2])
    sent = {v: [f"caf\xe9 {u}" for u in ids[v]] for v in ids}
    parts = [ids, spk, lab, f["text"], f["audio"], f["visual"], sent, list(IEMOCAP_TRAIN), list(IEMOCAP_TEST)]
    if mutate:
        mutate(parts)
    path.write_bytes(pickle.dumps(tuple(parts), protocol=2))
    return parts


def write_meld(path, visual=True):
    rng = np.random.default_rng(1)
    vids = list(range(8))
    one_hot = lambda k: [1.0 if i == (k * 3) % 9 else 0.0 for i in range(9)]  # noqa: E731
    ids, spk, lab, f = _dialogues(vids, rng, 7, one_hot)
    sent = {v: ["hi"] * len(ids[v]) for v in ids}
    if visual:
        parts = (ids, spk, lab, f["text"], f["audio"], f["visual"], sent, vids[:6], vids[6:], None)
    else:
        parts = (ids, spk, lab, f["text"], f["audio"], sent, vids[:6], vids[6:], None)
    path.write_bytes(pickle.dumps(parts))
    return parts


def write_mmsa(path, aligned=True, mutate=None):
    rng = np.random.default_rng(2)
    data = {}
    for split, n in (("train", 6), ("valid", 3), ("test", 3)):
        t, ta, tv = (8, 8, 8) if aligned else (8, 12, 5)
        audio = rng.normal(size=(n, ta, 5)).astype(np.float32)
        audio[0, 0, 0] = -np.inf
        bert = np.zeros((n, 3, t))
        bert[:, 1, :6] = 1
        data[split] = {
            "raw_text": ["words"] * n,
            "text": rng.normal(size=(n, t, 768)).astype(np.float32),
            "text_bert": bert,
            "audio": audio,
            "vision": rng.normal(size=(n, tv, 4)).astype(np.float32),
            "audio_lengths": [ta - 2] * n,
            "vision_lengths": np.full(n, tv - 1),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "regression_labels_T": rng.uniform(-1, 1, n),
            # video v{i//2}: clips listed out of order to check the clip ordering
            "id": np.array([f"{split}{i // 2}$_${2 - i % 2}" for i in range(n)]),
        }
    if mutate:
        mutate(data)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return data


def write_gcnet(tmp_path, regression=False):
    rng = np.random.default_rng(3)
    if regression:
        vids = [f"vid{j}" for j in range(7)]
    else:
        vids = [f"Ses0{s}F_impro0{k}" for s in range(1, 6) for k in (1, 2)]
    ids, spk, lab, _ = _dialogues(vids, rng, 6, lambda k: "MF"[k % 2], dims={})
    for m, folder in (("text", "deberta-UTT"), ("audio", "wav2vec-UTT"), ("visual", "manet-UTT")):
        (tmp_path / "features" / folder).mkdir(parents=True)
        for v in vids:
            for u in ids[v]:
                shape = (DIMS[m],) if m != "audio" else (3, DIMS[m])
                np.save(tmp_path / "features" / folder / f"{u}.npy", rng.normal(size=shape).astype(np.float32))
    sent = {v: ["x"] * len(ids[v]) for v in vids}
    if regression:
        lab = {v: [float(x) - 2.5 for x in lab[v]] for v in vids}
        parts = (ids, lab, spk, sent, vids[:4], vids[4:5], vids[5:])
    else:
        parts = (ids, lab, spk, sent, vids[:8], vids[8:])
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(parts, protocol=2))
    return path, parts


GCNET_SET = {"folders.text": "deberta-UTT", "folders.audio": "wav2vec-UTT", "folders.visual": "manet-UTT"}


def test_dialoguegcn_iemocap6(tmp_path):
    path = tmp_path / "IEMOCAP_features.pkl"
    parts = write_iemocap(path)
    ds = load_spec(f"dialoguegcn:iemocap6:{path}", {"data.seed": "1"})
    sig = ds.signature
    assert sig.modalities == ("text", "audio", "visual") and sig.dims == DIMS and sig.task == "classification"
    assert sig.classes == ("hap", "sad", "neu", "ang", "exc", "fru") and sig.n_speakers == 2
    assert [c.id for c in ds.split("test")] == IEMOCAP_TEST
    assert len(ds.split("valid")) == 1 and len(ds.split("train")) == len(IEMOCAP_TRAIN) - 1
    conv = ds.split("test")[0]
    assert conv.labels.tolist() == parts[2][conv.id]
    assert conv.speakers.tolist() == [k % 2 for k in range(len(conv))]
    np.testing.assert_allclose(conv.features["visual"], np.stack(parts[5][conv.id]))
    again = load_spec(f"iemocap6:{path}", {"seed": 1})  # format implied by the variant, same carving
    assert [c.id for c in again.split("valid")] == [c.id for c in ds.split("valid")]
    other = load_spec(f"dialoguegcn:iemocap6:{path}", {"seed": 2, "valid_fraction": 0.3})
    assert len(other.split("valid")) == 3


def test_dialoguegcn_iemocap4_file(tmp_path):
    path = tmp_path / "IEMOCAP_features_4.pkl"
    write_iemocap(path, n_classes=4)
    ds = load_spec(f"dialoguegcn:iemocap4:{path}")
    assert ds.signature.classes == ("hap", "sad", "neu", "ang")


@pytest.mark.parametrize("visual", [True, False])
def test_meld_mmgcn_and_dialoguernn(tmp_path, visual):
    path = tmp_path / "MELD_features.pkl"
    parts = write_meld(path, visual)
    ds = load_spec(f"dialoguegcn:meld:{path}")
    sig = ds.signature
    assert sig.modalities == (("text", "audio", "visual") if visual else ("text", "audio"))
    assert sig.n_speakers == 9 and sig.n_classes == 7 and sig.classes[0] == "neutral"
    conv = ds.split("test")[0]
    assert conv.id == "6" and conv.speakers.tolist() == [(k * 3) % 9 for k in range(len(conv))]
    assert conv.labels.tolist() == parts[2][6]


@pytest.mark.parametrize("aligned", [True, False])
def test_mmsa_utterance_level(tmp_path, aligned):
    path = tmp_path / "mosi.pkl"
    data = write_mmsa(path, aligned)
    ds = load_spec(f"mmsa:mosi:{path}")
    sig = ds.signature
    assert sig.level == "utterance" and sig.task == "regression" and sig.classes == ()
    assert sig.dims == {"text": 768, "audio": 5, "visual": 4}
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [6, 3, 3]
    conv = ds.split("train")[0]
    assert len(conv) == 8 and conv.labels.shape == (1,)
    assert conv.labels[0] == pytest.approx(data["train"]["regression_labels"][0])
    assert conv.features["audio"][0, 0] == 0.0  # -inf became 0
    if aligned:
        np.testing.assert_allclose(conv.features["visual"], data["train"]["vision"][0])
    else:  # real frames resampled to the text length: ends kept
        np.testing.assert_allclose(conv.features["visual"][-1], data["train"]["vision"][0][3], rtol=1e-5)
    assert load_spec(f"mmsa:mosi:{path}", {"frames": 4}).split("test")[0].features["text"].shape == (
        (8, 768) if aligned else (4, 768))


def test_mmsa_dialogue_level(tmp_path):
    path = tmp_path / "mosi.pkl"
    data = write_mmsa(path, aligned=False)
    for spec in (f"mmsa:mosi:dialogue:{path}", f"mmsa:mosi:{path}:dialogue"):
        ds = load_spec(spec)
        assert ds.signature.level == "dialogue" and ds.signature.dims["text"] == 768
        assert [c.id for c in ds.split("train")] == ["train0", "train1", "train2"]
    conv = ds.split("train")[0]  # clips 1 (row 1) then 2 (row 0)
    part = data["train"]
    assert conv.labels.tolist() == pytest.approx([part["regression_labels"][1], part["regression_labels"][0]])
    np.testing.assert_allclose(conv.features["visual"][0], part["vision"][1][:4].mean(0), rtol=1e-5)
    np.testing.assert_allclose(conv.features["text"][1], part["text"][0][:6].mean(0), rtol=1e-5)
    assert conv.speakers.tolist() == [0, 0]
    assert load_spec(f"mmsa:sims:{path}", {"level": "dialogue"}).name == "mmsa:sims"


def test_gcnet_iemocap_folds(tmp_path):
    path, parts = write_gcnet(tmp_path)
    ds = load_spec(f"gcnet:iemocap6:{path}", GCNET_SET)
    assert ds.signature.dims == DIMS and ds.signature.modalities == ("text", "audio", "visual")
    assert [c.id for c in ds.split("test")] == parts[5]
    conv = ds.split("test")[0]
    uid = parts[0][conv.id][1]
    np.testing.assert_allclose(conv.features["audio"][1],
                               np.load(tmp_path / "features" / "wav2vec-UTT" / f"{uid}.npy").mean(0), rtol=1e-5)
    fold2 = load_spec(f"gcnet:iemocap6:{path}", {**GCNET_SET, "fold": "2"})
    assert {c.id[4] for c in fold2.split("test")} == {"2"}
    assert all(c.id[4] != "2" for s in ("train", "valid") for c in fold2.split(s))
    assert len(fold2.split("train")) + len(fold2.split("valid")) == 8
    with pytest.raises(NasmercError, match="option folders"):
        load_spec(f"gcnet:iemocap6:{path}")


def test_gcnet_mosi_and_yaml_spec(tmp_path):
    path, parts = write_gcnet(tmp_path, regression=True)
    spec = tmp_path / "mosi.yaml"
    spec.write_text("format: gcnet\nvariant: mosi\npath: labels.pkl\noptions:\n  folders:\n"
                    "    text: deberta-UTT\n    audio: wav2vec-UTT\n")
    ds = load_spec(str(spec))
    assert ds.signature.task == "regression" and ds.signature.modalities == ("text", "audio")
    assert [c.id for c in ds.split("valid")] == parts[5]
    assert ds.split("train")[0].labels.dtype == np.float32


@pytest.mark.parametrize("which", ["iemocap", "meld", "mmsa", "gcnet"])
def test_convert_round_trip(tmp_path, which):
    if which == "iemocap":
        write_iemocap(tmp_path / "f.pkl")
        spec, extra = f"dialoguegcn:iemocap6:{tmp_path / 'f.pkl'}", {}
    elif which == "meld":
        write_meld(tmp_path / "f.pkl")
        spec, extra = f"dialoguegcn:meld:{tmp_path / 'f.pkl'}", {}
    elif which == "mmsa":
        write_mmsa(tmp_path / "f.pkl", aligned=False)
        spec, extra = f"mmsa:mosei:{tmp_path / 'f.pkl'}", {}
    else:
        path, _ = write_gcnet(tmp_path)
        spec, extra = f"gcnet:iemocap6:{path}", GCNET_SET
    before = load_spec(spec, extra)
    (tmp_path / "out").mkdir()  # convert writes into an existing folder only
    out = convert(spec, tmp_path / "out" / "data.npz", extra)
    assert not [p for p in out.parent.iterdir() if p.name != "data.npz"]  # no temporary left behind
    for name in (str(out), f"plain:{out}"):
        after = load_spec(name)
        assert after.signature == before.signature
        for s in ("train", "valid", "test"):
            assert [c.id for c in after.split(s)] == [c.id for c in before.split(s)]
            for a, b in zip(after.split(s), before.split(s)):
                assert a.labels.tolist() == pytest.approx(b.labels.tolist())
                assert a.speakers.tolist() == b.speakers.tolist()
                for m in before.signature.modalities:
                    np.testing.assert_array_equal(a.features[m], b.features[m])
    assert after.config["origin"]["format"] == spec.split(":")[0]


def test_spec_parsing():
    assert is_file_spec("x.npz") and is_file_spec("a:b:c") and is_file_spec("d.yaml") and not is_file_spec("meld")
    assert parse_spec("mmsa:mosi:dialogue:/a/b.pkl").options == {"level": "dialogue"}
    assert parse_spec("meld:/a/b.pkl").format == "dialoguegcn"
    assert str(parse_spec("dialoguegcn:iemocap6:/a/b:c.pkl").path) == "/a/b:c.pkl"


# ---------------------------------------------------------------- errors: one line, file named


def _error(spec, overrides=None):
    with pytest.raises(NasmercError) as err:
        load_spec(spec, overrides)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_file_and_unknown_format(tmp_path):
    msg = _error(f"dialoguegcn:iemocap6:{tmp_path / 'nope.pkl'}")
    assert "nope.pkl" in msg and "does not exist" in msg
    assert "unknown format 'hdf5'" in _error(f"hdf5:iemocap6:{tmp_path}")
    write_iemocap(tmp_path / "f.pkl")
    assert "variant" in _error(f"dialoguegcn:iemocap9:{tmp_path / 'f.pkl'}")
    assert "unknown key 'nosuch'" in _error(f"dialoguegcn:iemocap6:{tmp_path / 'f.pkl'}", {"data.nosuch": 1})


def test_missing_keys(tmp_path):
    path = tmp_path / "m.pkl"
    write_mmsa(path, mutate=lambda d: d["valid"].pop("vision"))
    msg = _error(f"mmsa:mosi:{path}")
    assert str(path) in msg and "split 'valid'" in msg and "'vision'" in msg and "found keys" in msg
    write_mmsa(path, mutate=lambda d: d.pop("test"))
    assert "key 'test'" in _error(f"mmsa:mosi:{path}")
    path.write_bytes(pickle.dumps(("only", "three", "items"), protocol=2))
    assert "9 elements" in _error(f"dialoguegcn:iemocap6:{path}")


def test_lengths_that_disagree(tmp_path):
    path = tmp_path / "f.pkl"
    v = IEMOCAP_TEST[0]
    write_iemocap(path, mutate=lambda p: p[4].__setitem__(v, p[4][v][:-1]))
    msg = _error(f"dialoguegcn:iemocap6:{path}")
    assert "split 'test'" in msg and v in msg and "'audio'" in msg and "rows" in msg
    write_iemocap(path, mutate=lambda p: p[2].__setitem__(v, p[2][v] + [0]))
    assert "labels" in _error(f"dialoguegcn:iemocap6:{path}")
    write_mmsa(path, mutate=lambda d: d["train"].__setitem__("regression_labels", np.zeros(2)))
    msg = _error(f"mmsa:mosi:{path}")
    assert "split 'train'" in msg and "regression_labels" in msg and "found 2" in msg


def test_nan_features_refused_or_zeroed(tmp_path):
    path = tmp_path / "f.pkl"
    v = IEMOCAP_TRAIN[0]

    def poison(p):
        p[3][v][0][2] = np.nan

    write_iemocap(path, mutate=poison)
    msg = _error(f"dialoguegcn:iemocap6:{path}")
    assert "NaN or inf" in msg and "nan_to_zero" in msg and v in msg
    ds = load_spec(f"dialoguegcn:iemocap6:{path}", {"data.nan_to_zero": "true"})
    conv = next(c for s in ("train", "valid") for c in ds.split(s) if c.id == v)
    assert conv.features["text"][0, 2] == 0.0


def test_empty_conversation_and_labels_outside_classes(tmp_path):
    path = tmp_path / "f.pkl"
    v = IEMOCAP_TEST[1]

    def empty(p):
        for k in (0, 1, 2, 3, 4, 5, 6):
            p[k][v] = []

    write_iemocap(path, mutate=empty)
    msg = _error(f"dialoguegcn:iemocap6:{path}")
    assert "empty conversation" in msg and v in msg
    write_iemocap(path, mutate=lambda p: p[2].__setitem__(v, [7] * len(p[2][v])))
    msg = _error(f"dialoguegcn:iemocap6:{path}")
    assert str(path) in msg and "label 7 outside the class set 0..5" in msg and "'test'" in msg
    write_iemocap(path, n_classes=6)
    assert "outside the class set 0..3" in _error(f"dialoguegcn:iemocap4:{path}")


def test_gcnet_missing_feature_file(tmp_path):
    path, parts = write_gcnet(tmp_path)
    uid = parts[0][parts[5][0]][0]
    (tmp_path / "features" / "manet-UTT" / f"{uid}.npy").unlink()
    msg = _error(f"gcnet:iemocap6:{path}", GCNET_SET)
    assert uid in msg and "no such file" in msg and "split 'test'" in msg


def test_plain_npz_errors(tmp_path):
    write_iemocap(tmp_path / "f.pkl")
    out = convert(f"dialoguegcn:iemocap6:{tmp_path / 'f.pkl'}", tmp_path / "d.npz")
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test/labels"] = arrays["test/labels"][:-1]
    np.savez(tmp_path / "bad.npz", **arrays)
    msg = _error(str(tmp_path / "bad.npz"))
    assert "split 'test'" in msg and "'test/labels'" in msg
    del arrays["train/audio"]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert "key 'train/audio'" in _error(str(tmp_path / "bad.npz"))
    with pytest.raises(NasmercError, match=".npz"):
        convert(f"dialoguegcn:iemocap6:{tmp_path / 'f.pkl'}", tmp_path / "d.pkl")


def test_search_retrain_evaluate_on_community_files(tmp_path, capsys, one_thread):
    """The CLI path on a DialogueGCN pickle and on its .npz conversion: describe, convert, search,
    retrain, evaluate (no oracle on real data), and a dims mismatch named at retrain."""
    from nasmerc.cli import main

    pkl = tmp_path / "IEMOCAP_features.pkl"
    write_iemocap(pkl)
    spec = f"dialoguegcn:iemocap6:{pkl}"
    assert main(["data", spec]) == 0
    assert "classification" in capsys.readouterr().out
    assert main(["data", spec, "--oracle"]) == 2
    assert "no oracle" in capsys.readouterr().err
    npz = tmp_path / "iemocap6.npz"
    assert main(["data", "convert", spec, str(npz)]) == 0 and npz.exists()
    tiny = ["--set", "hidden_dim=8", "--set", "n_blocks=1", "--set", "fusion_dim=8", "--set", "n_heads=2",
            "--set", "n_cells=1", "--set", "train.batch_size=4", "--set", "train.valid_rates=0",
            "--epochs", "1", "--no-dashboard"]
    for data, out in ((spec, tmp_path / "run_pkl"), (f"plain:{npz}", tmp_path / "run_npz")):
        assert main(["search", "--data", data, "--out", str(out), *tiny]) == 0
        assert (out / "arch.yaml").exists() and (out / "search.json").exists()
    run = tmp_path / "run_npz"
    assert main(["retrain", str(run / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    assert main(["evaluate", str(run), "--rates", "0,0.5"]) == 0
    out = capsys.readouterr().out
    assert "model waf" in out and "oracle" not in out.split("unified-model")[1].splitlines()[1]
    # the data under the architecture change: retraining names the difference
    write_iemocap(tmp_path / "IEMOCAP_features.pkl", mutate=lambda parts: [
        parts[3].__setitem__(v, [np.zeros(9, np.float32) for _ in parts[3][v]]) for v in parts[3]])
    assert main(["retrain", str(tmp_path / "run_pkl" / "arch.yaml"), "--epochs", "1", "--out",
                 str(tmp_path / "again"), "--no-dashboard"]) == 2
    assert "dims" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["meld", "meld_no_visual", "mmsa_aligned", "mmsa_unaligned", "mmsa_dialogue",
                                   "gcnet_iemocap", "gcnet_mosi"])
def test_short_search_on_every_format(tmp_path, which, one_thread):
    """A one-epoch search on a tiny file of each format ends with a buildable architecture."""
    from nasmerc.cli import main

    sets: list[str] = []
    if which.startswith("meld"):
        path = tmp_path / "meld.pkl"
        write_meld(path, visual=which == "meld")
        spec = f"dialoguegcn:meld:{path}"
    elif which.startswith("mmsa"):
        path = tmp_path / "mmsa.pkl"
        write_mmsa(path, aligned=which == "mmsa_aligned")
        spec = f"mmsa:mosi:dialogue:{path}" if which == "mmsa_dialogue" else f"mmsa:mosi:{path}"
    else:
        path, _ = write_gcnet(tmp_path, regression=which == "gcnet_mosi")
        spec = f"gcnet:{'mosi' if which == 'gcnet_mosi' else 'iemocap6'}:{path}"
        sets = [f"data.{k}={v}" for k, v in GCNET_SET.items()]
    argv = ["search", "--data", spec, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-dashboard"]
    for item in [*sets, "hidden_dim=8", "n_blocks=1", "fusion_dim=8", "n_heads=2", "n_cells=1",
                 "train.batch_size=4", "train.valid_rates=0"]:
        argv += ["--set", item]
    assert main(argv) == 0
    assert (tmp_path / "run" / "arch.yaml").exists()


def test_nan_to_zero_flag_on_the_command_line(tmp_path, capsys):
    from nasmerc.cli import main

    path = tmp_path / "IEMOCAP_features.pkl"
    write_iemocap(path, mutate=lambda parts: parts[4][IEMOCAP_TRAIN[0]][0].__setitem__(0, np.nan))
    spec = f"dialoguegcn:iemocap6:{path}"
    assert main(["data", spec]) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and str(path) in err and err.count("\n") == 1
    assert main(["data", spec, "--nan-to-zero"]) == 0
