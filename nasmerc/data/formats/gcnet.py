"""GCNet's label pickles with per-utterance feature folders.

The label pickle holds dicts keyed by video id and the split lists:

- IEMOCAP (``iemocap4``, ``iemocap6``): ``videoIDs, videoLabels, videoSpeakers, videoSentence,
  trainVid, testVid`` (6 elements).
- CMU-MOSI / CMU-MOSEI (``mosi``, ``mosei``): ``videoIDs, videoLabels, videoSpeakers,
  videoSentences, trainVids, valVids, testVids`` (7 elements); labels are sentiment scores.

``videoIDs[vid]`` lists the utterance ids; each modality's features are one file per utterance,
``<features>/<folder>/<utterance_id>.npy``, of shape ``[D]`` or ``[T, D]`` (averaged over time).
``features`` defaults to the ``features`` folder beside the label pickle; ``folders.text`` /
``folders.audio`` / ``folders.visual`` name the sub-folders (default: sub-folders called ``text``,
``audio``, ``visual``). For IEMOCAP every dialogue records its session (the 5th character of the
video id, ``Ses01F_impro01`` is session 1), and ``fold`` 1-5 is the leave-one-session-out fold whose
test videos are session ``fold``, validation carved from the four others (``nasmerc.data.folds``,
applied by :func:`~nasmerc.data.formats.assemble`; GCNet's own code validates on the test videos,
nasmerc does not); fold 0 keeps the pickle's own split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasmerc.data import safe_pickle
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.data.folds import session_of_video
from nasmerc.data.formats import (MODALITIES, FileOptions, assemble, class_ids, conversation, describe, fail,
                                  n_speakers, numbers, read_npy, scores, speaker_ids, unpack)

IEMOCAP = ("videoIDs", "videoLabels", "videoSpeakers", "videoSentence", "trainVid", "testVid")
MOSI = ("videoIDs", "videoLabels", "videoSpeakers", "videoSentences", "trainVids", "valVids", "testVids")
CLASSES = {
    "iemocap6": ("hap", "sad", "neu", "ang", "exc", "fru"),
    "iemocap4": ("hap", "sad", "neu", "ang"),
}
VARIANTS = ("iemocap4", "iemocap6", "mosi", "mosei")


def _folders(root: Path, options: FileOptions, path: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise fail(path, None, "option features", "a folder of per-modality feature folders", f"{root} (missing)")
    names = dict(options.folders) or {m: m for m in MODALITIES if (root / m).is_dir()}
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise fail(path, None, f"option folders.{unknown[0]}", f"one of {list(MODALITIES)}", repr(unknown[0]))
    if not names:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise fail(path, None, "option folders", f"sub-folders text/audio/visual of {root} or "
                   "--set data.folders.text=NAME (and audio, visual)", f"sub-folders {found}")
    out = {m: root / names[m] for m in MODALITIES if m in names}
    for m, folder in out.items():
        if not folder.is_dir():
            raise fail(path, None, f"option folders.{m}", "an existing feature folder", f"{folder} (missing)")
    return out


def _feature(folder: Path, uid: Any, split: str, path: Path) -> np.ndarray:
    f = folder / f"{uid}.npy"
    if not f.is_file():
        raise fail(path, split, f"utterance {str(uid)!r}", f"feature file {f}", "no such file")
    try:
        fh = open(f, "rb")
    except OSError as exc:
        raise fail(f, split, "array", "a readable .npy array of shape [D] or [T, D]", exc.strerror) from None
    with fh:
        x = numbers(read_npy(fh, f.stat().st_size, f, split, "array"), f, split, "array", "numeric features")
    if x.ndim == 2:
        x = x.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
    if x.ndim != 1:
        raise fail(f, split, "array", "shape [D] or [T, D]", f"shape {tuple(x.shape)}")
    return x.astype(np.float32)


def _list(x: Any, path: Path, key: str) -> list[Any]:
    if not isinstance(x, (list, tuple, set, frozenset, np.ndarray)):
        raise fail(path, None, key, "a list of video ids", describe(x))
    out = list(x.tolist() if isinstance(x, np.ndarray) else x)
    odd = [v for v in out if not isinstance(v, (str, int, bytes)) or isinstance(v, bool)]
    if odd:
        raise fail(path, None, key, "video ids (strings or integers)", describe(odd[0]))
    return sorted(out, key=str) if isinstance(x, (set, frozenset)) else out


def _split_videos(parts: dict[str, Any], variant: str, path: Path) -> dict[str, list[Any]]:
    """The pickle's own split (a fold, if asked, is made from it by ``assemble``)."""
    if variant in ("mosi", "mosei"):
        return {"train": _list(parts["trainVids"], path, "trainVids"), "valid": _list(parts["valVids"], path, "valVids"),
                "test": _list(parts["testVids"], path, "testVids")}
    return {"train": _list(parts["trainVid"], path, "trainVid"), "valid": [],
            "test": _list(parts["testVid"], path, "testVid")}


def load(path: Path, variant: str, options: FileOptions) -> Any:
    """Read a GCNet label pickle and its feature folders as a dialogue-level dataset."""
    if variant not in VARIANTS:
        raise fail(path, None, "variant", f"one of {list(VARIANTS)} for format gcnet", repr(variant))
    regression = variant in ("mosi", "mosei")
    parts = unpack(safe_pickle.load(path), MOSI if regression else IEMOCAP, path)
    for key in ("videoIDs", "videoLabels", "videoSpeakers"):
        if not isinstance(parts[key], dict):
            raise fail(path, None, key, "a dict keyed by video id", describe(parts[key]))
    folders = _folders(Path(options.features) if options.features else path.parent / "features", options, path)
    splits: dict[str, list[Conversation]] = {}
    for split, vids in _split_videos(parts, variant, path).items():
        convs = []
        for vid in vids:
            for key in ("videoIDs", "videoLabels", "videoSpeakers"):
                if vid not in parts[key]:
                    raise fail(path, split, key, f"an entry for video {vid!r}", "none")
            uids = parts["videoIDs"][vid]
            if not isinstance(uids, (list, tuple, np.ndarray)):
                raise fail(path, split, f"videoIDs[{vid!r}]", "a list of utterance ids", describe(uids))
            uids = list(uids.tolist() if isinstance(uids, np.ndarray) else uids)
            feats = {}
            for m, folder in folders.items():
                rows = [_feature(folder, u, split, path) for u in uids]
                dims = {r.shape[0] for r in rows}
                if len(dims) > 1:
                    raise fail(path, split, f"video {vid!r}, modality {m!r}", "one feature dimension", sorted(dims))
                feats[m] = np.stack(rows) if rows else np.zeros((0, 1), np.float32)
            at = f"videoLabels[{vid!r}]"
            labels = (scores if regression else class_ids)(parts["videoLabels"][vid], path, split, at)
            speakers = speaker_ids(parts["videoSpeakers"][vid], path, split, f"videoSpeakers[{vid!r}]")
            session = None if regression else session_of_video(vid)
            convs.append(conversation(path, split, vid, feats, speakers, labels, "dialogue", options.nan_to_zero,
                                      session))
        splits[split] = convs
    if not splits["train"]:
        raise fail(path, "train", "videos", "at least two training videos", 0)
    modalities = tuple(folders)
    signature = DataSignature(
        modalities=modalities, dims={m: int(splits["train"][0].features[m].shape[1]) for m in modalities},
        task="regression" if regression else "classification", level="dialogue",
        classes=() if regression else CLASSES[variant],
        n_speakers=n_speakers(splits, 1 if regression else 2),
    )
    extra = {"features": str(next(iter(folders.values())).parent), "folders": {m: f.name for m, f in folders.items()}}
    return assemble(path, "gcnet", variant, options, signature, splits, extra)
