"""nasmerc's own ``.npz`` format, for users bringing their own features and for converted files.

One ``numpy.savez`` archive, read with ``allow_pickle=False`` (nothing in it can execute):

- ``signature``: a 0-d string, the JSON of ``DataSignature.to_dict()`` (modalities, dims, task,
  level, classes, n_speakers); optionally ``config``, a 0-d JSON string of where the data came from.
- For each split ``S`` in ``train``, ``valid``, ``test`` (``valid`` may hold zero conversations: it
  is then carved from ``train``):
  ``S/ids`` ``[n]`` strings, ``S/lengths`` ``[n]`` int (rows per conversation),
  ``S/speakers`` ``[sum(lengths)]`` int, ``S/labels`` ``[sum(lengths)]`` (dialogue level) or ``[n]``
  (utterance level), int class ids or float scores, and ``S/<modality>`` ``[sum(lengths), D_m]``
  float32 for every modality: the conversations' rows one after the other.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nasmerc.data.conversation import SPLITS, ConversationDataset, DataSignature
from nasmerc.data.formats import FileOptions, assemble, conversation, fail
from nasmerc.errors import NasmercError
from nasmerc.io import atomic_write


def save(ds: ConversationDataset, path: str | Path) -> Path:
    """Write ``ds`` as a plain ``.npz`` (atomically: a temporary file beside it, then ``os.replace``)."""
    sig = ds.signature
    arrays: dict[str, np.ndarray] = {
        "signature": np.array(json.dumps(sig.to_dict())),
        "config": np.array(json.dumps(ds.config, default=str)),
    }
    for s, convs in ds:
        arrays[f"{s}/ids"] = np.array([c.id for c in convs], dtype=str)
        arrays[f"{s}/lengths"] = np.array([len(c) for c in convs], dtype=np.int64)
        arrays[f"{s}/speakers"] = np.concatenate([c.speakers for c in convs] or [np.zeros(0)]).astype(np.int64)
        label_dtype = np.int64 if sig.task == "classification" else np.float32
        arrays[f"{s}/labels"] = np.concatenate([c.labels for c in convs] or [np.zeros(0)]).astype(label_dtype)
        for m in sig.modalities:
            rows = [c.features[m] for c in convs] or [np.zeros((0, sig.dims[m]))]
            arrays[f"{s}/{m}"] = np.concatenate(rows).astype(np.float32)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


def _get(npz: Any, key: str, path: Path, split: str | None) -> np.ndarray:
    if key not in npz.files:
        raise fail(path, split, f"key {key!r}", "a nasmerc .npz (see docs/data_formats.md)",
                   f"keys {sorted(npz.files)[:12]}")
    return npz[key]


def load(path: Path, variant: str, options: FileOptions) -> Any:
    """Read a plain ``.npz``; ``variant`` is ignored (the file carries its own signature)."""
    if not path.is_file():
        raise NasmercError(f"{path}: file does not exist (expected a nasmerc .npz)")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise NasmercError(f"{path}: not a readable .npz ({exc})") from None
    with npz:
        try:
            signature = DataSignature.from_dict(json.loads(str(_get(npz, "signature", path, None))))
        except json.JSONDecodeError as exc:
            raise fail(path, None, "signature", "a JSON data signature", str(exc)) from None
        origin = json.loads(str(npz["config"])) if "config" in npz.files else {}
        level = signature.level
        splits = {}
        for s in SPLITS:
            ids = _get(npz, f"{s}/ids", path, s)
            lengths = _get(npz, f"{s}/lengths", path, s).astype(np.int64)
            speakers = _get(npz, f"{s}/speakers", path, s).astype(np.int64)
            labels = _get(npz, f"{s}/labels", path, s)
            feats = {m: _get(npz, f"{s}/{m}", path, s) for m in signature.modalities}
            total = int(lengths.sum())
            n_labels = total if level == "dialogue" else len(lengths)
            checks = [("ids", len(ids), len(lengths)), ("speakers", len(speakers), total),
                      ("labels", len(labels), n_labels)] + [(m, len(x), total) for m, x in feats.items()]
            for key, found, want in checks:
                if found != want:
                    raise fail(path, s, f"key '{s}/{key}'", f"{want} rows (from '{s}/lengths')", found)
            ends = np.cumsum(lengths)
            starts = ends - lengths
            convs = []
            for j, cid in enumerate(ids.tolist()):
                a, b = int(starts[j]), int(ends[j])
                lab = labels[a:b] if level == "dialogue" else labels[j: j + 1]
                convs.append(conversation(
                    path, s, cid, {m: np.array(x[a:b], dtype=np.float32) for m, x in feats.items()},
                    speakers[a:b], lab.astype(np.int64 if signature.task == "classification" else np.float32),
                    level, options.nan_to_zero))
            splits[s] = convs
    extra = {"origin": origin} if origin else {}
    return assemble(path, "plain", variant or "npz", options, signature, splits, extra)
