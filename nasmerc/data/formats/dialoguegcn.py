"""The DialogueGCN / COGMEN / CORECT IEMOCAP pickle and the MMGCN / DialogueRNN MELD pickles.

All are tuples of dicts keyed by video (dialogue) id, each holding per-utterance lists or arrays:

- IEMOCAP (DialogueGCN ``IEMOCAP_features.pkl``, also COGMEN / CORECT; Python 2, read as latin-1):
  ``videoIDs, videoSpeakers ('M'/'F'), videoLabels, videoText, videoAudio, videoVisual,
  videoSentence, trainVid, testVid``. Variant ``iemocap6``: hap 0, sad 1, neu 2, ang 3, exc 4,
  fru 5. Variant ``iemocap4`` reads COGMEN's separate 4-class file of the same layout: hap 0, sad 1,
  neu 2, ang 3 (no relabelling of a 6-class file is done).
- MELD, MMGCN ``MELD_features_raw1.pkl`` (10 elements): ``videoIDs, videoSpeakers (one-hot over 9),
  videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid, _``;
  DialogueRNN ``MELD_features_raw.pkl`` (9 elements, no visual features): ``videoIDs,
  videoSpeakers, videoLabels, videoText, videoAudio, videoSentence, trainVid, testVid, _``.
  Labels neutral 0, surprise 1, fear 2, sadness 3, joy 4, disgust 5, anger 6.

Neither file has a validation split: it is carved from ``trainVid`` (see ``FileOptions``). IEMOCAP
dialogues record their session from the video id (``Ses03M_impro02`` is session 3), so
``--set data.fold=K`` gives leave-one-session-out fold ``K`` (``nasmerc.data.folds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasmerc.data import safe_pickle
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.data.folds import session_of_video
from nasmerc.data.formats import (FileOptions, as_matrix, assemble, class_ids, conversation, describe, fail,
                                  speaker_ids, unpack)

CLASSES = {
    "iemocap6": ("hap", "sad", "neu", "ang", "exc", "fru"),
    "iemocap4": ("hap", "sad", "neu", "ang"),
    "meld": ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"),
}
SPEAKERS = {"iemocap6": 2, "iemocap4": 2, "meld": 9}
VARIANTS = tuple(CLASSES)

IEMOCAP = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoVisual",
           "videoSentence", "trainVid", "testVid")
MELD_MMGCN = IEMOCAP + ("_",)
MELD_DIALOGUERNN = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio",
                    "videoSentence", "trainVid", "testVid", "_")
MODALITY_KEYS = {"text": "videoText", "audio": "videoAudio", "visual": "videoVisual"}


def _layout(data: Any, variant: str, path: Path) -> dict[str, Any]:
    if variant != "meld":
        return unpack(data, IEMOCAP, path)
    if isinstance(data, (tuple, list)) and len(data) == len(MELD_DIALOGUERNN):
        return unpack(data, MELD_DIALOGUERNN, path)
    return unpack(data, MELD_MMGCN, path)


def _videos(parts: dict[str, Any], key: str, path: Path) -> list[Any]:
    vids = parts[key]
    if not isinstance(vids, (list, tuple, set, frozenset, np.ndarray)):
        raise fail(path, None, key, "a list or set of video ids", describe(vids))
    out = list(vids.tolist() if isinstance(vids, np.ndarray) else vids)
    odd = [v for v in out if not isinstance(v, (str, int, bytes)) or isinstance(v, bool)]
    if odd:
        raise fail(path, None, key, "video ids (strings or integers)", describe(odd[0]))
    return sorted(out, key=str) if isinstance(vids, (set, frozenset)) else out


def load(path: Path, variant: str, options: FileOptions) -> Any:
    """Read a DialogueGCN-style pickle as a dialogue-level classification dataset."""
    if variant not in CLASSES:
        raise fail(path, None, "variant", f"one of {list(VARIANTS)} for format dialoguegcn", repr(variant))
    parts = _layout(safe_pickle.load(path), variant, path)
    modalities = tuple(m for m, k in MODALITY_KEYS.items() if k in parts)
    for key in ("videoSpeakers", "videoLabels", *(MODALITY_KEYS[m] for m in modalities)):
        if not isinstance(parts[key], dict):
            raise fail(path, None, key, "a dict keyed by video id", describe(parts[key]))
    splits: dict[str, list[Conversation]] = {}
    for split, key in (("train", "trainVid"), ("test", "testVid")):
        convs = []
        for vid in _videos(parts, key, path):
            for k in ("videoSpeakers", "videoLabels", *(MODALITY_KEYS[m] for m in modalities)):
                if vid not in parts[k]:
                    raise fail(path, split, k, f"an entry for video {vid!r} (listed in {key})", "none")
            feats = {m: as_matrix(parts[MODALITY_KEYS[m]][vid], path, split, f"{MODALITY_KEYS[m]}[{vid!r}]")
                     for m in modalities}
            labels = class_ids(parts["videoLabels"][vid], path, split, f"videoLabels[{vid!r}]")
            speakers = speaker_ids(parts["videoSpeakers"][vid], path, split, f"videoSpeakers[{vid!r}]")
            session = session_of_video(vid) if variant != "meld" else None
            convs.append(conversation(path, split, vid, feats, speakers, labels, "dialogue", options.nan_to_zero,
                                      session))
        splits[split] = convs
    if not splits["train"]:
        raise fail(path, "train", "trainVid", "at least two training videos", 0)
    dims = {m: int(splits["train"][0].features[m].shape[1]) for m in modalities}
    signature = DataSignature(modalities=modalities, dims=dims, task="classification", level="dialogue",
                              classes=CLASSES[variant], n_speakers=SPEAKERS[variant])
    return assemble(path, "dialoguegcn", variant, options, signature, splits)
