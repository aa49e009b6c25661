"""nasmerc's own ``.npz`` format, for users bringing their own features and for converted files.

One ``numpy.savez`` archive, read with ``allow_pickle=False`` (nothing in it can execute):

- ``signature``: a 0-d string, the JSON of ``DataSignature.to_dict()`` (modalities, dims, task,
  level, classes, n_speakers); optionally ``config``, a 0-d JSON string of where the data came from.
- For each split ``S`` in ``train``, ``valid``, ``test`` (``valid`` may hold zero conversations: it
  is then carved from ``train``):
  ``S/ids`` ``[n]`` strings, ``S/lengths`` ``[n]`` int (rows per conversation),
  ``S/speakers`` ``[sum(lengths)]`` int, ``S/labels`` ``[sum(lengths)]`` (dialogue level) or ``[n]``
  (utterance level), int class ids or float scores, and ``S/<modality>`` ``[sum(lengths), D_m]``
  float32 for every modality: the conversations' rows one after the other; optionally
  ``S/sessions`` ``[n]`` int, the recording session (1-5) of each conversation, written when every
  conversation of the dataset has one, so that a converted IEMOCAP file keeps its folds
  (``--set data.fold=K``, ``nasmerc.data.folds``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nasmerc.data.conversation import SPLITS, ConversationDataset, DataSignature
from nasmerc.data.formats import (FileOptions, assemble, class_ids, conversation, describe, fail, integers,
                                  numbers, read_npy, scores)
from nasmerc.errors import NasmercError
from nasmerc.io import atomic_write


def save(ds: ConversationDataset, path: str | Path) -> Path:
    """Write ``ds`` as a plain ``.npz`` (atomically: a temporary file beside it, then ``os.replace``)."""
    sig = ds.signature
    arrays: dict[str, np.ndarray] = {
        "signature": np.array(json.dumps(sig.to_dict())),
        "config": np.array(json.dumps(ds.config, default=str)),
    }
    with_sessions = all(c.session is not None for _, convs in ds for c in convs)
    for s, convs in ds:
        arrays[f"{s}/ids"] = np.array([c.id for c in convs], dtype=str)
        if with_sessions:
            arrays[f"{s}/sessions"] = np.array([c.session for c in convs], dtype=np.int64)
        arrays[f"{s}/lengths"] = np.array([len(c) for c in convs], dtype=np.int64)
        arrays[f"{s}/speakers"] = np.concatenate([c.speakers for c in convs] or [np.zeros(0)]).astype(np.int64)
        label_dtype = np.int64 if sig.task == "classification" else np.float32
        arrays[f"{s}/labels"] = np.concatenate([c.labels for c in convs] or [np.zeros(0)]).astype(label_dtype)
        for m in sig.modalities:
            rows = [c.features[m] for c in convs] or [np.zeros((0, sig.dims[m]))]
            arrays[f"{s}/{m}"] = np.concatenate(rows).astype(np.float32)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


class _Archive:
    """The arrays of a ``.npz`` (a zip of ``.npy`` members), each read through :func:`read_npy`."""

    def __init__(self, zf: zipfile.ZipFile, path: Path) -> None:
        self.zf, self.path = zf, path
        self.files = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))

    def get(self, key: str, split: str | None) -> np.ndarray:
        if key not in self.files:
            raise fail(self.path, split, f"key {key!r}", "a nasmerc .npz (see docs/data_formats.md)",
                       f"keys {self.files[:12]}")
        info = self.zf.getinfo(f"{key}.npy")
        try:
            fh = self.zf.open(info)
        except (OSError, zipfile.BadZipFile, NotImplementedError) as exc:
            raise fail(self.path, split, f"key {key!r}", "a readable .npy array", str(exc)) from None
        with fh:
            return read_npy(fh, info.file_size, self.path, split, f"key {key!r}")

    def json(self, key: str, expected: str) -> Any:
        """A 0-d JSON string member (``signature``, ``config``)."""
        arr = self.get(key, None)
        if arr.ndim != 0 or arr.dtype.kind != "U":
            raise fail(self.path, None, key, f"a 0-d JSON string ({expected})", describe(arr) + f" of {arr.dtype}")
        try:
            return json.loads(str(arr))
        except json.JSONDecodeError as exc:
            raise fail(self.path, None, key, f"{expected} as JSON", str(exc)) from None


def _vector(arr: np.ndarray, path: Path, split: str, key: str, expected: str) -> np.ndarray:
    if arr.ndim != 1:
        raise fail(path, split, f"key {key!r}", f"{expected} (one dimension)", f"shape {tuple(arr.shape)}")
    return arr


def _split(npz: _Archive, s: str, signature: DataSignature, path: Path, options: FileOptions) -> list[Any]:
    """The conversations of split ``s``; every array checked before it is sliced."""
    level = signature.level
    ids = _vector(npz.get(f"{s}/ids", s), path, s, f"{s}/ids", "conversation ids")
    lengths = _vector(integers(npz.get(f"{s}/lengths", s), path, s, f"key '{s}/lengths'", "row counts"),
                      path, s, f"{s}/lengths", "row counts")
    if (lengths < 1).any():
        raise fail(path, s, f"key '{s}/lengths'", "row counts >= 1", int(lengths[lengths < 1][0]))
    speakers = _vector(integers(npz.get(f"{s}/speakers", s), path, s, f"key '{s}/speakers'", "integer speaker ids"),
                       path, s, f"{s}/speakers", "integer speaker ids")
    raw = _vector(npz.get(f"{s}/labels", s), path, s, f"{s}/labels", "labels")
    labels = (class_ids(raw, path, s, f"key '{s}/labels'") if signature.task == "classification"
              else scores(raw, path, s, f"key '{s}/labels'"))
    feats = {m: numbers(npz.get(f"{s}/{m}", s), path, s, f"key '{s}/{m}'", "numeric features")
             for m in signature.modalities}
    total = int(lengths.sum())
    n_labels = total if level == "dialogue" else len(lengths)
    checks = [("ids", len(ids), len(lengths)), ("speakers", len(speakers), total),
              ("labels", len(labels), n_labels)] + [(m, len(x), total) for m, x in feats.items()]
    for key, found, want in checks:
        if found != want:
            raise fail(path, s, f"key '{s}/{key}'", f"{want} rows (from '{s}/lengths')", found)
    sessions: list[int | None] = [None] * len(lengths)
    if f"{s}/sessions" in npz.files:
        found = _vector(integers(npz.get(f"{s}/sessions", s), path, s, f"key '{s}/sessions'", "session numbers"),
                        path, s, f"{s}/sessions", "session numbers")
        if len(found) != len(lengths) or (found < 1).any():
            raise fail(path, s, f"key '{s}/sessions'", f"{len(lengths)} session numbers >= 1 (one per conversation)",
                       f"{len(found)} values" if len(found) != len(lengths) else int(found[found < 1][0]))
        sessions = [int(v) for v in found]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    convs = []
    for j, cid in enumerate(ids.tolist()):
        a, b = int(starts[j]), int(ends[j])
        lab = labels[a:b] if level == "dialogue" else labels[j: j + 1]
        convs.append(conversation(path, s, cid, {m: np.array(x[a:b], dtype=np.float32) for m, x in feats.items()},
                                  speakers[a:b], lab, level, options.nan_to_zero, sessions[j]))
    return convs


def load(path: Path, variant: str, options: FileOptions) -> Any:
    """Read a plain ``.npz``; ``variant`` is ignored (the file carries its own signature).

    Every member is read as a ``.npy`` without pickle (an object array is refused); a split other
    than ``valid`` must hold conversations (an empty ``valid`` is carved from ``train``).
    """
    if not path.is_file():
        raise NasmercError(f"{path}: file does not exist (expected a nasmerc .npz)")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise NasmercError(f"{path}: not a readable .npz ({exc})") from None
    with zf:
        npz = _Archive(zf, path)
        written = npz.json("signature", "a data signature")
        try:
            signature = DataSignature.from_dict(written)
        except NasmercError as exc:
            raise NasmercError(f"{path}: {exc}") from None
        origin = npz.json("config", "a mapping of where the data came from") if "config" in npz.files else {}
        if not isinstance(origin, dict):
            raise fail(path, None, "config", "a JSON object (where the data came from)", type(origin).__name__)
        splits = {s: _split(npz, s, signature, path, options) for s in SPLITS}
    extra = {"origin": origin} if origin else {}
    return assemble(path, "plain", variant or "npz", options, signature, splits, extra)
