"""MMSA pickles of CMU-MOSI, CMU-MOSEI and CH-SIMS, aligned and unaligned.

The file is a dict with ``train`` / ``valid`` / ``test``, each a dict of arrays over its N clips:
``text`` (BERT features ``[N, T, 768]``), ``text_bert`` (token ids, mask, segments ``[N, 3, T]``,
optional), ``audio`` ``[N, Ta, Da]``, ``vision`` ``[N, Tv, Dv]``, ``audio_lengths`` and
``vision_lengths`` ``[N]`` (needed only when unaligned), ``regression_labels`` ``[N]`` (CH-SIMS also
has ``regression_labels_T/A/V``, which are not read), ``id`` (``"video$_$clip"``) and ``raw_text``.
``-inf`` audio values become 0, as MMSA does.

Two readings (option ``level``):

- ``utterance`` (default): each clip is one sample whose rows are frames, with its sentiment score
  as the one label. Aligned files (``T == Ta == Tv``) keep their T frames as they are, padding
  included, as MMSA's models see them. Unaligned files: each modality's real frames (the first
  ``audio_lengths`` / ``vision_lengths`` frames; for text the ``text_bert`` mask, else all T) are
  resampled by linear interpolation to one common length, ``frames`` (default T).
- ``dialogue``: clips are grouped by video in clip order; each clip is one utterance whose vector is
  the mean of each modality over its real frames, speaker 0, label the clip's score.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nasmerc.data import safe_pickle
from nasmerc.data.conversation import SPLITS, Conversation, DataSignature
from nasmerc.data.formats import (FileOptions, assemble, conversation, describe, fail, integers, need_keys,
                                  numbers, scores)

VARIANTS = ("mosi", "mosei", "sims")
LEVELS = ("utterance", "dialogue")
MODALITY_KEYS = {"text": "text", "audio": "audio", "visual": "vision"}
REQUIRED = ("text", "audio", "vision", "regression_labels", "id")


def resample(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` ``[t, D]`` linearly interpolated to ``[n, D]`` (zeros when ``t`` is 0)."""
    t = x.shape[0]
    if t == 0:
        return np.zeros((n, x.shape[1]), dtype=np.float32)
    if t == n:
        return x.astype(np.float32, copy=True)
    pos = np.linspace(0.0, t - 1, n)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None]
    return ((1.0 - w) * x[lo] + w * x[hi]).astype(np.float32)


def _arrays(part: dict[str, Any], path: Path, split: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The split's feature arrays ``[N, T, D]`` and real lengths ``[N]`` per modality, checked."""
    feats: dict[str, np.ndarray] = {}
    for m, key in MODALITY_KEYS.items():
        arr = numbers(part[key], path, split, key, "numeric features of shape [clips, frames, dim]").astype(np.float32)
        if arr.ndim != 3:
            raise fail(path, split, key, "shape [clips, frames, dim]", f"shape {tuple(arr.shape)}")
        feats[m] = arr
    feats["audio"] = np.where(feats["audio"] == -np.inf, np.float32(0.0), feats["audio"])
    n = feats["text"].shape[0]
    aligned = feats["text"].shape[1] == feats["audio"].shape[1] == feats["visual"].shape[1]
    lengths: dict[str, np.ndarray] = {}
    mask = part.get("text_bert")
    if mask is not None:
        mask = numbers(mask, path, split, "text_bert", "token ids, mask and segments [clips, 3, frames]")
    if mask is not None and mask.ndim == 3 and mask.shape[1] >= 2 and mask.shape[2] == feats["text"].shape[1]:
        lengths["text"] = integers(mask[:, 1, :].sum(axis=1), path, split, "text_bert", "a 0/1 attention mask")
    else:
        lengths["text"] = np.full(n, feats["text"].shape[1])
    for m, key in (("audio", "audio_lengths"), ("visual", "vision_lengths")):
        if key in part:
            lengths[m] = integers(part[key], path, split, f"key {key!r}", "frame counts").reshape(-1)
            if (lengths[m] < 0).any():
                raise fail(path, split, f"key {key!r}", "frame counts >= 0", int(lengths[m][lengths[m] < 0][0]))
        elif aligned:
            lengths[m] = np.full(n, feats[m].shape[1])
        else:
            raise fail(path, split, f"key {key!r}", "real frame counts for unaligned data", "no such key")
    for m, arr in feats.items():
        if arr.shape[0] != n:
            raise fail(path, split, MODALITY_KEYS[m], f"{n} clips (as many as text)", arr.shape[0])
        if lengths[m].shape != (n,):
            raise fail(path, split, f"{m} lengths", f"{n} values", lengths[m].size)
        lengths[m] = np.clip(lengths[m], 0, arr.shape[1])
    return feats, lengths


def _clip_key(clip: str) -> tuple[int, Any]:
    return (0, int(clip)) if clip.isdigit() else (1, clip)


def _read_split(part: dict[str, Any], path: Path, split: str, level: str, options: FileOptions) -> list[Conversation]:
    need_keys(part, REQUIRED, path, split, "an MMSA split")
    feats, lengths = _arrays(part, path, split)
    n = feats["text"].shape[0]
    labels = scores(part["regression_labels"], path, split, "regression_labels")
    ids = [x.decode("latin1") if isinstance(x, bytes) else str(x) for x in np.asarray(part["id"]).reshape(-1)]
    if labels.shape != (n,):
        raise fail(path, split, "regression_labels", f"{n} scores (one per clip)", labels.size)
    if len(ids) != n:
        raise fail(path, split, "id", f"{n} clip ids", len(ids))
    aligned = feats["text"].shape[1] == feats["audio"].shape[1] == feats["visual"].shape[1]
    if level == "utterance":
        frames = options.frames or feats["text"].shape[1]
        out = []
        for i in range(n):
            if aligned:
                x = {m: feats[m][i].copy() for m in feats}
            else:
                x = {m: resample(feats[m][i][: lengths[m][i]], frames) for m in feats}
            out.append(conversation(path, split, ids[i], x, np.zeros(0, np.int64), labels[i: i + 1],
                                    "utterance", options.nan_to_zero))
        return out
    videos: dict[str, list[tuple[tuple[int, Any], int]]] = defaultdict(list)
    for i, cid in enumerate(ids):
        video, sep, clip = cid.rpartition("$_$")
        if not sep:
            raise fail(path, split, f"id[{i}]", "'video$_$clip'", repr(cid))
        videos[video].append((_clip_key(clip), i))
    out = []
    for video, clips in videos.items():
        order = [i for _, i in sorted(clips)]
        x = {}
        for m in feats:
            rows = []
            for i in order:
                k = lengths[m][i]
                rows.append(feats[m][i][:k].mean(axis=0) if k > 0 else np.zeros(feats[m].shape[2], np.float32))
            x[m] = np.stack(rows).astype(np.float32)
        out.append(conversation(path, split, video, x, np.zeros(len(order), np.int64), labels[order],
                                "dialogue", options.nan_to_zero))
    return out


def load(path: Path, variant: str, options: FileOptions) -> Any:
    """Read an MMSA pickle as an utterance-level or dialogue-level regression dataset."""
    if variant not in VARIANTS:
        raise fail(path, None, "variant", f"one of {list(VARIANTS)} for format mmsa", repr(variant))
    level = options.level or "utterance"
    if level not in LEVELS:
        raise fail(path, None, "option level", f"one of {list(LEVELS)}", repr(level))
    data = safe_pickle.load(path)
    need_keys(data, SPLITS, path, None, "an MMSA pickle")
    splits = {s: _read_split(data[s], path, s, level, options) for s in SPLITS}
    first = next(c for s in SPLITS for c in splits[s]) if any(splits.values()) else None
    if first is None:
        raise fail(path, "train", "text", "at least one clip", describe(data["train"].get("text")))
    modalities = tuple(MODALITY_KEYS)
    signature = DataSignature(modalities=modalities, dims={m: int(first.features[m].shape[1]) for m in modalities},
                              task="regression", level=level, classes=(), n_speakers=1)
    return assemble(path, "mmsa", variant, options, signature, splits, {"level": level})
