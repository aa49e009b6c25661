"""Bad input, tried as a user would through ``nasmerc.cli.main``: every case exits 2 with one line on
stderr that names the bad thing (no traceback) and leaves the folder tree exactly as it was.

Covered: data files (fractional, out-of-range and NaN labels, NaN features, empty splits, object
arrays, bad JSON, mismatched shapes, unknown dict keys), allocation bombs in pickles, ``--plot`` /
``--json`` paths, broken ``model.pt`` / ``alpha.pt`` / ``router.json``, hand-edited ``arch.yaml`` /
``config.yaml``, and the evaluation files of different rates (one never replaces another).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml

from nasmerc.cli import main
from nasmerc.data import safe_pickle
from nasmerc.errors import NasmercError
from nasmerc.events import read_events

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ["--set", "data.n_train=4", "--set", "data.n_valid=2", "--set", "data.n_test=2", "--set", "data.length_max=6",
        "--set", "data.length_min=3", "--set", "data.length_mean=4", "--set", "data.dims.text=8",
        "--set", "data.dims.audio=8", "--set", "data.dims.visual=8"]
RMNAS = ["--space", "rmnas", "--set", "hidden_dim=8", "--set", "n_blocks=1", "--set", "fusion_dim=8",
         "--set", "n_heads=2", "--set", "n_cells=1", "--set", "train.batch_size=4", "--set", "train.valid_rates=0"]
SYNTH = ["--set", "n_train=3", "--set", "n_valid=1", "--set", "n_test=1", "--set", "length_max=5",
         "--set", "length_min=3", "--set", "length_mean=4"]


# -- the one helper: a refusal changes nothing ----------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``root``: kind, size and mtime (a new, removed or rewritten one shows)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = ("dir" if p.is_dir() else "file", 0 if p.is_dir() else st.st_size,
                                         st.st_mtime_ns)
    return out


def refused(root: Path, capsys, argv: list[str], needle: str) -> str:
    """``nasmerc ARGV`` exits 2 with one ``nasmerc: error:`` line holding ``needle``; ``root`` is unchanged."""
    capsys.readouterr()
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("nasmerc: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert snapshot(root) == before, "a refused command changed the folder tree"
    return err


# -- tiny community files ---------------------------------------------------------------------------
TRAIN, TEST = [f"Ses0{s}F_impro01" for s in (1, 2, 3, 4)], ["Ses05F_impro01", "Ses05F_impro02"]
DIMS = {"text": 4, "audio": 3, "visual": 2}


def iemocap_parts(rng_seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(rng_seed)
    vids = TRAIN + TEST
    ids = {v: [f"{v}_{k}" for k in range(3)] for v in vids}
    feats = {m: {v: [rng.normal(size=d).astype(np.float32) for _ in range(3)] for v in vids} for m, d in DIMS.items()}
    return [ids, {v: ["M", "F", "M"] for v in vids}, {v: [0, 1, 2] for v in vids}, feats["text"], feats["audio"],
            feats["visual"], {v: ["x"] * 3 for v in vids}, list(TRAIN), list(TEST)]


def write_iemocap(path: Path, mutate: Callable[[list[Any]], None] | None = None) -> str:
    parts = iemocap_parts()
    if mutate:
        mutate(parts)
    path.write_bytes(pickle.dumps(tuple(parts), protocol=2))
    return f"dialoguegcn:iemocap6:{path}"


def write_mmsa(path: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> str:
    rng = np.random.default_rng(1)
    data = {s: {"text": rng.normal(size=(n, 4, 6)).astype(np.float32), "audio": rng.normal(size=(n, 4, 3)),
                "vision": rng.normal(size=(n, 4, 2)), "regression_labels": rng.uniform(-3, 3, n),
                "id": np.array([f"v{i}$_${i}" for i in range(n)])}
            for s, n in (("train", 4), ("valid", 2), ("test", 2))}
    if mutate:
        mutate(data)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return f"mmsa:mosi:{path}"


def write_gcnet(root: Path, labels: dict[str, list[Any]]) -> str:
    """A GCNet label pickle with ``labels``, and its feature folders ``features/text`` ... beside it."""
    parts = iemocap_parts()
    for j, m in enumerate(DIMS):
        (root / "features" / m).mkdir(parents=True)
        for v, uids in parts[0].items():
            for k, u in enumerate(uids):
                np.save(root / "features" / m / f"{u}.npy", parts[3 + j][v][k])
    (root / "labels.pkl").write_bytes(pickle.dumps((parts[0], labels, parts[1], parts[6], TRAIN, TEST), protocol=2))
    return f"gcnet:iemocap6:{root / 'labels.pkl'}"


def npz_arrays(tmp: Path) -> dict[str, np.ndarray]:
    """The arrays of a valid plain ``.npz`` (converted from the tiny IEMOCAP pickle)."""
    spec = write_iemocap(tmp / "src.pkl")
    assert main(["data", "convert", spec, str(tmp / "good.npz")]) == 0
    with np.load(tmp / "good.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    (tmp / "src.pkl").unlink()
    (tmp / "good.npz").unlink()
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray], **changes: Any) -> str:
    """``arrays`` with ``changes`` (``"train/labels"`` spelled ``train__labels``; ``None`` drops a key)."""
    out = dict(arrays)
    for key, value in changes.items():
        out[key.replace("__", "/")] = value
    np.savez(path, **{k: v for k, v in out.items() if v is not None}, allow_pickle=True)
    return str(path)


# -- 1. data files ----------------------------------------------------------------------------------
def test_fractional_labels_are_refused_not_cut(tmp_path: Path, capsys) -> None:
    spec = write_iemocap(tmp_path / "f.pkl", lambda p: p[2].__setitem__(TRAIN[0], [0, 2.7, 1]))
    refused(tmp_path, capsys, ["data", spec], f"videoLabels['{TRAIN[0]}']: expected integer class ids, found 2.7")
    labels = {**iemocap_parts()[2], TEST[0]: [0.0, 1.5, 2.0]}
    refused(tmp_path, capsys, ["data", write_gcnet(tmp_path / "gcnet", labels)],
            f"videoLabels['{TEST[0]}']: expected integer class ids, found 1.5")


def test_npz_files(tmp_path: Path, capsys) -> None:
    arrays = npz_arrays(tmp_path)
    bad = tmp_path / "bad.npz"
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(tmp_path, capsys, ["data", str(tmp_path / "empty.npz")], "empty.npz: not a readable .npz")
    cases = [
        ({"train__labels": arrays["train/labels"] + 0.7}, "key 'train/labels': expected integer class ids, found 0.7"),
        ({"train__ids": np.array([object()] * len(arrays["train/ids"]), dtype=object)},
         "key 'train/ids': expected an array of numbers or strings (object arrays need pickle)"),
        ({"config": np.array("{not json")}, "config: expected a mapping of where the data came from as JSON"),
        ({"signature": np.array(json.dumps({**json.loads(str(arrays["signature"])), "task": "banana"}))},
         "data signature: task='banana'"),
        ({k.replace("/", "__"): v[:0] for k, v in arrays.items() if k.startswith("test/")},
         "split 'test', conversations: expected at least one"),
        ({"train__text": np.concatenate([[[np.nan] * DIMS["text"]], arrays["train/text"][1:]]).astype(np.float32)},
         "modality 'text': expected finite features (or --set data.nan_to_zero=true), found 4 NaN or inf values"),
        ({"train__labels": np.full_like(arrays["train/labels"], 9)}, "label 9 outside the class set 0..5"),
        ({"test__labels": arrays["test/labels"][:-1]},
         "key 'test/labels': expected 6 rows (from 'test/lengths'), found 5"),
        ({"train__audio": arrays["train/audio"][:, :2]}, "modality 'audio' has shape (3, 2), expected (3, 3)"),
        ({"train__lengths": arrays["train/lengths"] + 0.5}, "key 'train/lengths': expected row counts, found 3.5"),
        ({"train__speakers": arrays["train/speakers"] + 0.5}, "key 'train/speakers': expected integer speaker ids"),
    ]
    for changes, needle in cases:
        refused(tmp_path, capsys, ["data", write_npz(bad, arrays, **changes)], needle)


def test_pickles_with_empty_splits_nan_and_out_of_range(tmp_path: Path, capsys) -> None:
    path = tmp_path / "f.pkl"
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p.__setitem__(8, []))],
            "split 'test', conversations: expected at least one")
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p.__setitem__(7, TRAIN[:1]))],
            "split 'train', conversations: expected at least 2 (the file has no validation split")
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p[4][TEST[1]][0].__setitem__(0, np.inf))],
            "modality 'audio': expected finite features")
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p[2].__setitem__(TEST[1], [0, 6, 1]))],
            "label 6 outside the class set 0..5")
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p[1].__setitem__(TEST[1], None))],
            f"videoSpeakers['{TEST[1]}']: expected a list of speaker ids")
    refused(tmp_path, capsys, ["data", write_iemocap(path, lambda p: p.__setitem__(7, [[1, 2]]))],
            "trainVid: expected video ids (strings or integers)")
    mmsa = tmp_path / "m.pkl"
    refused(tmp_path, capsys, ["data", write_mmsa(mmsa, lambda d: d["train"].update(
        {k: v[:0] for k, v in d["train"].items()}))], "split 'train', conversations: expected at least one")
    refused(tmp_path, capsys, ["data", write_mmsa(mmsa, lambda d: d["test"].__setitem__("text", "words"))],
            "split 'test', text: expected numeric features")


def test_dict_settings_refuse_unknown_keys(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    refused(tmp_path, capsys, ["data", "iemocap6", *SYNTH, "--set", "snr.smell=1"],
            "dataset 'iemocap6': unknown key 'snr.smell' (known: snr.text, snr.audio, snr.visual)")
    refused(tmp_path, capsys, ["search", "--no-dashboard", "--out", str(tmp_path / "run"), *DATA, *RMNAS,
                               "--set", "data.dims.smell=3"], "unknown key 'dims.smell'")
    spec = write_iemocap(tmp_path / "f.pkl")
    refused(tmp_path, capsys, ["data", spec, "--set", "folders.smell=x"],
            "data options of " + str(tmp_path / "f.pkl") + ": unknown key 'folders.smell' (known: folders.text")
    refused(tmp_path, capsys, ["data", spec, "--set", "frames=1000000000000"], "frames=1000000000000: expected")
    refused(tmp_path, capsys, ["data", spec, "--set", "seed=-1"], "seed=-1: expected an integer >= 0")


# -- 2. the restricted unpickler's budget -------------------------------------------------------------
BOMBS = {
    "bytearray(2**62)": b"\x80\x02c__builtin__\nbytearray\n\x8a\x08" + struct.pack("<q", 2**62) + b"\x85R.",
    "bytes(2**31)": b"\x80\x02c__builtin__\nbytes\n\x8a\x05" + (2**31).to_bytes(5, "little") + b"\x85R.",
    "BINBYTES8": b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x.",
    "BYTEARRAY8": b"\x80\x05\x96" + struct.pack("<Q", 2**31) + b"x.",
    "FRAME": b"\x80\x04\x95" + struct.pack("<Q", 2**31) + b"N.",
}


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _long(n: int) -> bytes:
    data = n.to_bytes(8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def array_bomb(n: int, dtype: str, state: bool) -> bytes:
    """A protocol-2 pickle of a few hundred bytes asking for an array of ``n`` elements: through
    ``_reconstruct(ndarray, (n,), dtype)``, or (``state``) through the BUILD state of an empty one."""
    recon = _global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
    if not state:
        return b"\x80\x02" + recon + b"(" + _long(n) + b"tU\x01" + dtype.encode() + b"\x87R."
    dt = _global("numpy", "dtype") + b"U" + bytes([len(dtype)]) + dtype.encode() + b"\x89\x88\x87R"
    raw = b"]" if dtype == "O" else b"U\x00"
    return (b"\x80\x02" + recon + b"(K\x00tU\x01b\x87R" + b"(K\x01(" + _long(n) + b"t" + dt + b"\x89" + raw
            + b"tb.")


@pytest.mark.parametrize("name", list(BOMBS))
def test_allocation_bombs_are_refused(name: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bomb.pkl"
    path.write_bytes(BOMBS[name])
    err = refused(tmp_path, capsys, ["data", f"dialoguegcn:iemocap6:{path}"], "bomb.pkl: unsafe or unreadable pickle")
    assert ("budget" in err) == name.startswith(("bytearray(", "bytes(")), err


@pytest.mark.parametrize("dtype, state", [("b", False), ("f8", True), ("O", True), ("V0", True)])
def test_array_shapes_beyond_the_file_are_refused(dtype: str, state: bool) -> None:
    assert safe_pickle.loads(array_bomb(0, dtype, state)).dtype == np.dtype(dtype)  # the same pickle, empty, reads
    with pytest.raises(NasmercError, match="beyond the file's budget of 1,048,576 bytes"):
        safe_pickle.loads(array_bomb(2**36, dtype, state), "bomb")


def test_an_object_array_state_shorter_than_its_shape_is_refused() -> None:
    """numpy itself reads past such a list and kills the interpreter."""
    with pytest.raises(NasmercError, match=r"an object array of shape \(3,\) with 0 items \(expected a list of 3\)"):
        safe_pickle.loads(array_bomb(3, "O", True), "short")


def test_memo_index_and_budget_leave_real_files_alone(tmp_path: Path) -> None:
    assert safe_pickle.loads(b"\x80\x02Nr" + struct.pack("<I", 2**31 - 1) + b".") is None  # a dict memo
    big = {"x": np.zeros((300, 1000), np.float32), "ids": set(range(50)), "b": bytearray(b"ab")}
    for protocol in (2, 4, 5):
        out = safe_pickle.loads(pickle.dumps(big, protocol=protocol))
        assert out["x"].shape == (300, 1000) and out["ids"] == set(range(50)) and out["b"] == b"ab"
    with pytest.raises(NasmercError, match="NEWOBJ"):
        safe_pickle.loads(b"\x80\x02cbuiltins\nlist\n)\x81.")


# -- 3. output paths ----------------------------------------------------------------------------------
def test_json_and_plot_paths_are_checked_first(tmp_path: Path, capsys) -> None:
    (tmp_path / "folder").mkdir()
    refused(tmp_path, capsys, ["data", "iemocap6", *SYNTH, "--json", str(tmp_path / "folder")],
            "--json '" + str(tmp_path / "folder") + "': expected a file path, found a folder")
    refused(tmp_path, capsys, ["data", "iemocap6", *SYNTH, "--json", str(tmp_path / "new" / "deep" / "r.json")],
            "expected an existing folder '" + str(tmp_path / "new" / "deep") + "' to write in, found no such folder")
    refused(tmp_path, capsys, ["bench", "--cell", "rmnas/darts", "--runs", str(tmp_path / "runs"), "--plot",
                               str(tmp_path / "folder")], "--plot '" + str(tmp_path / "folder") + "': expected a file")
    refused(tmp_path, capsys, ["bench", "--table", "--runs", str(tmp_path), "--plot", str(tmp_path / "no" / "p.png")],
            "found no such folder")
    spec = write_iemocap(tmp_path / "f.pkl")
    refused(tmp_path, capsys, ["data", "convert", spec, str(tmp_path / "no" / "x.npz")], "found no such folder")
    (tmp_path / "d.npz").mkdir()
    refused(tmp_path, capsys, ["data", "convert", spec, str(tmp_path / "d.npz")], "found a folder")


# -- a trained model and a DARTS run, shared ------------------------------------------------------------
@pytest.fixture(scope="module")
def darts_run(one_thread, tmp_path_factory) -> Path:
    """One tiny DARTS search and its retrained model (in ``retrain/``)."""
    out = tmp_path_factory.mktemp("bad") / "run"
    assert main(["search", "--no-dashboard", "--out", str(out), "--epochs", "1", *DATA, *RMNAS]) == 0
    assert main(["retrain", str(out / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    return out


@pytest.fixture
def run(darts_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run (cases may break its files)."""
    shutil.copytree(darts_run, tmp_path / "run")
    return tmp_path / "run"


# -- 4. torch files ---------------------------------------------------------------------------------------
class Hostile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_broken_model_files(run: Path, tmp_path: Path, capsys) -> None:
    model = run / "retrain" / "model.pt"
    good = torch.load(model, weights_only=True)
    key = next(iter(good["state_dict"]))
    shape = tuple(good["state_dict"][key].shape)
    cases = [
        ({**good, "state_dict": {**good["state_dict"], key: torch.zeros(3, 3)}},
         f"model.pt: state_dict key {key!r}: expected shape {shape}, found shape (3, 3)"),
        ({**good, "state_dict": {k: v for k, v in good["state_dict"].items() if k != key}},
         f"state_dict key {key!r}: expected shape {shape}, found no such key"),
        ({**good, "state_dict": {**good["state_dict"], "extra.weight": torch.zeros(2)}},
         "state_dict key 'extra.weight': expected no such key, found shape (2,)"),
        ({**good, "seed": "abc"}, "'seed' must be an integer, found 'abc'"),
    ]
    for ckpt, needle in cases:
        torch.save(ckpt, model)
        refused(tmp_path, capsys, ["evaluate", str(run), "--rates", "0"], needle)
    torch.save({"x": Hostile(tmp_path / "pwned")}, model)
    err = refused(tmp_path, capsys, ["evaluate", str(run), "--rates", "0"], "model.pt: not a nasmerc model file")
    assert "weights_only" not in err and not (tmp_path / "pwned").exists()
    torch.save(good, model)
    model.write_bytes(model.read_bytes()[:1000])
    refused(tmp_path, capsys, ["evaluate", str(run), "--rates", "0"], "model.pt: not a nasmerc model file")


def test_broken_alpha_and_router_files(run: Path, tmp_path: Path, capsys) -> None:
    alpha = run / "alpha.pt"
    data = alpha.read_bytes()
    alpha.write_bytes(data[: len(data) // 2])
    refused(tmp_path, capsys, ["export", str(run)], "alpha.pt: not the architecture weights of a DARTS search")
    torch.save({"a": Hostile(tmp_path / "pwned")}, alpha)
    err = refused(tmp_path, capsys, ["export", str(run)], "alpha.pt: not the architecture weights of a DARTS search")
    assert "weights_only" not in err and not (tmp_path / "pwned").exists()
    torch.save([1, 2], alpha)
    refused(tmp_path, capsys, ["export", str(run)], "expected a mapping of choice label to tensor")
    torch.save({"x": torch.tensor([float("nan"), 1.0])}, alpha)
    refused(tmp_path, capsys, ["export", str(run)], "choice 'x' has NaN or inf weights")
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "strategy": "router", "strategy_config": {}}))
    for text, needle in ((b"\xff\xfe{", "router.json: not the router shares"), (b"[1]", "'leading_shares': expected"),
                         (b'{"leading_shares": {"a": {"x": "big"}}}', "'leading_shares': expected"),
                         (b'{"leading_shares": {"a": {"x": 1}}, "router_in_dims": {}}', "no width for choice 'a'")):
        (run / "router.json").write_bytes(text)
        refused(tmp_path, capsys, ["export", str(run)], needle)


# -- 5. events.jsonl and hand-edited records ------------------------------------------------------------
def test_dashboard_reads_past_bytes_that_are_not_utf8(run: Path, capsys) -> None:
    events = run / "events.jsonl"
    good = read_events(events)
    with open(events, "ab") as fh:
        fh.write(b'\xff\xfe not utf-8 \x80\n{"type": "batch", "loss": "caf\xe9"}\n5\n')
    assert read_events(events) == good
    assert main(["dashboard", str(run), "--once"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "rmnas" in captured.out
    events.write_bytes(b"\xff\n\x80\x81\n")
    assert read_events(events) == [] and main(["dashboard", str(run), "--once"]) == 0


@pytest.mark.parametrize("key, value, needle", [
    ("seed", "abc", "'seed' must be an integer, found 'abc'"),
    ("seed", -5, "seed=-5: expected an integer in [0, 2**32)"),
    ("space_config", "big", "'space_config' must be a mapping, found str"),
    ("signature", {"modalities": ["text"], "dims": {"text": 0}, "task": "classification"}, "dims={'text': 0}"),
])
def test_hand_edited_arch_and_config_files(key: str, value: Any, needle: str, run: Path, tmp_path: Path,
                                           capsys) -> None:
    for name, argv in (("arch.yaml", ["retrain", "--no-dashboard", "--epochs", "1", "--out", str(tmp_path / "r")]),
                       ("config.yaml", ["search", "--no-dashboard", "--epochs", "1", "--out", str(tmp_path / "s"),
                                        "--config"])):
        record = yaml.safe_load((run / name).read_text())
        edited = tmp_path / f"edited-{name}"
        edited.write_text(yaml.safe_dump({**record, key: value}))
        args = [*argv, str(edited)] if name == "config.yaml" else [argv[0], str(edited), *argv[1:]]
        assert edited.name in refused(tmp_path, capsys, args, needle)


# -- 6. evaluations of other rates -------------------------------------------------------------------------
def test_an_evaluation_never_replaces_a_different_one(run: Path, tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(run), "--rates", "0,0.5"]) == 0
    first = run / "retrain" / "evaluation-rates-0-0.5.json"
    assert first.exists() and f"wrote {first}" in capsys.readouterr().out
    kept = (first.read_bytes(), first.stat().st_mtime_ns)
    plot = tmp_path / "sweep.png"
    assert main(["evaluate", str(run), "--rates", "0", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    second, drawn = run / "retrain" / "evaluation-rates-0.json", tmp_path / "sweep-rates-0.png"
    assert f"wrote {second} and {drawn}" in out and second.exists() and drawn.exists() and not plot.exists()
    assert (first.read_bytes(), first.stat().st_mtime_ns) == kept
    assert json.loads(second.read_text())["rates"] == [0.0]
    assert main(["evaluate", str(run), "--rates", "0", "--mask-seed", "3"]) == 0
    assert (run / "retrain" / "evaluation-rates-0-seed-3.json").exists()
    assert not (run / "retrain" / "evaluation.json").exists()
    refused(tmp_path, capsys, ["evaluate", str(run), "--rates", ""], "--rates: '' is not a number")
    refused(tmp_path, capsys, ["evaluate", str(run), "--rates", "0,0"], "0.0 repeats (expected distinct rates)")
    refused(tmp_path, capsys, ["evaluate", str(run), "--mask-seed", "-1"], "mask_seed=-1: expected an integer >= 0")
    (tmp_path / "p-rates-0.png").mkdir()
    refused(tmp_path, capsys, ["evaluate", str(run), "--rates", "0", "--plot", str(tmp_path / "p.png")],
            "p-rates-0.png': expected a file path, found a folder")
    refused(tmp_path, capsys, ["evaluate", str(run), "--plot", str(tmp_path / "no" / "p.png")], "found no such folder")
