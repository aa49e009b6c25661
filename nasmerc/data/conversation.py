"""Conversations, their data signature and the split dataset.

A :class:`Conversation` is one dialogue (or, for utterance-level tasks, one utterance whose rows are
frames): per-modality features ``[L, D_m]``, speaker ids ``[L]`` and labels. Dialogue-level tasks
label every row (``labels`` of shape ``[L]``); utterance-level tasks carry one label per sample
(``labels`` of shape ``[1]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping

import numpy as np

from nasmerc.errors import NasmercError

TaskKind = Literal["classification", "regression"]
Level = Literal["dialogue", "utterance"]
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DataSignature:
    """What a model needs to know about the data: modalities, dims, task kind and classes.

    ``classes`` names the label set of a classification task; a regression task has none and its
    labels are scores (sentiment in ``[-3, 3]`` for MOSI / MOSEI). ``n_speakers`` bounds the speaker
    ids, so that models can size a speaker embedding.
    """

    modalities: tuple[str, ...]
    dims: dict[str, int]
    task: TaskKind
    level: Level = "dialogue"
    classes: tuple[str, ...] = ()
    n_speakers: int = 1

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_outputs(self) -> int:
        """Width of the model's output: the number of classes, or 1 for a regression score."""
        return len(self.classes) if self.task == "classification" else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "dims": {m: int(self.dims[m]) for m in self.modalities},
            "task": self.task,
            "level": self.level,
            "classes": list(self.classes),
            "n_speakers": int(self.n_speakers),
        }

    @classmethod
    def from_dict(cls, d: Any) -> "DataSignature":
        """The signature a file holds (``.npz``, ``config.yaml``, ``model.pt``), every field checked:
        a hand-edited or foreign one is refused naming the field and what was expected."""
        keys = ("modalities", "dims", "task", "level", "classes", "n_speakers")
        if not isinstance(d, Mapping):
            raise NasmercError(f"data signature: expected a mapping with keys {', '.join(keys)}, "
                               f"found {type(d).__name__}")
        missing = [k for k in ("modalities", "dims", "task") if k not in d]
        unknown = sorted(str(k) for k in d if k not in keys)
        if missing or unknown:
            raise NasmercError(f"data signature: key {(missing or unknown)[0]!r} "
                               f"{'missing' if missing else 'unknown'} (expected {', '.join(keys)})")

        def bad(key: str, expected: str) -> NasmercError:
            return NasmercError(f"data signature: {key}={d.get(key)!r}: expected {expected}")

        modalities = d["modalities"]
        if (not isinstance(modalities, (list, tuple)) or not modalities
                or not all(isinstance(m, str) and m for m in modalities) or len(set(modalities)) != len(modalities)):
            raise bad("modalities", "a non-empty list of distinct names")
        dims = d["dims"]
        if not isinstance(dims, Mapping) or set(map(str, dims)) != set(modalities) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in dims.values()):
            raise bad("dims", f"a positive integer for each of {list(modalities)} and nothing else")
        if d["task"] not in ("classification", "regression"):
            raise bad("task", "'classification' or 'regression'")
        if d.get("level", "dialogue") not in ("dialogue", "utterance"):
            raise bad("level", "'dialogue' or 'utterance'")
        classes = d.get("classes", ())
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes) or (
                d["task"] == "classification" and (len(classes) < 2 or len(set(classes)) != len(classes))):
            raise bad("classes", "a list of class names (at least 2 distinct ones for classification)")
        n_speakers = d.get("n_speakers", 1)
        if isinstance(n_speakers, bool) or not isinstance(n_speakers, int) or n_speakers < 1:
            raise bad("n_speakers", "an integer >= 1")
        return cls(modalities=tuple(modalities), dims={str(k): int(v) for k, v in dims.items()}, task=d["task"],
                   level=d.get("level", "dialogue"), classes=tuple(classes), n_speakers=n_speakers)


@dataclass
class Conversation:
    """One dialogue (or one utterance of frames) with aligned per-modality features.

    ``session`` is the recording session of an IEMOCAP-shaped dialogue (1-5), which the
    leave-one-session-out folds split on (``nasmerc.data.folds``); ``None`` where the data have none.
    """

    id: str
    features: dict[str, np.ndarray]
    speakers: np.ndarray
    labels: np.ndarray
    session: int | None = None

    def __len__(self) -> int:
        return int(self.speakers.shape[0])

    def validate(self, signature: DataSignature, where: str = "") -> None:
        """Check shapes, dtypes, finiteness and labels against ``signature``; raise a named error."""
        at = f"{where}conversation {self.id!r}"
        n = len(self)
        if n == 0:
            raise NasmercError(f"{at}: empty conversation (expected at least one utterance)")
        for m in signature.modalities:
            if m not in self.features:
                raise NasmercError(f"{at}: missing modality {m!r} (expected {list(signature.modalities)})")
            x = self.features[m]
            if x.ndim != 2 or x.shape != (n, signature.dims[m]):
                raise NasmercError(
                    f"{at}: modality {m!r} has shape {tuple(x.shape)}, expected ({n}, {signature.dims[m]})"
                )
            if not np.isfinite(x).all():
                raise NasmercError(f"{at}: modality {m!r} has NaN or inf features")
        want = n if signature.level == "dialogue" else 1
        if self.labels.shape != (want,):
            raise NasmercError(f"{at}: labels have shape {tuple(self.labels.shape)}, expected ({want},)")
        if signature.task == "classification":
            bad = (self.labels < 0) | (self.labels >= signature.n_classes)
            if bad.any():
                raise NasmercError(
                    f"{at}: label {self.labels[bad][0].item()!r} outside the class set 0..{signature.n_classes - 1}"
                )
        elif not np.isfinite(self.labels).all():
            raise NasmercError(f"{at}: NaN or inf labels")
        if (self.speakers < 0).any() or (self.speakers >= signature.n_speakers).any():
            raise NasmercError(f"{at}: speaker ids outside 0..{signature.n_speakers - 1}")


@dataclass
class ConversationDataset:
    """Train / valid / test lists of conversations sharing one :class:`DataSignature`.

    ``config`` is the resolved description of where the data came from (generator parameters or a
    file spec), written into run folders so every number can be traced back. ``oracle`` is set for
    synthetic data whose Bayes-optimal posterior is known (see ``nasmerc.data.oracle``).
    """

    name: str
    signature: DataSignature
    splits: dict[str, list[Conversation]]
    config: dict[str, Any] = field(default_factory=dict)
    oracle: Any = None

    def __post_init__(self) -> None:
        for s in SPLITS:
            if s not in self.splits:
                raise NasmercError(f"dataset {self.name!r}: missing split {s!r} (expected {list(SPLITS)})")

    def split(self, name: str) -> list[Conversation]:
        if name not in self.splits:
            raise NasmercError(f"dataset {self.name!r}: unknown split {name!r} (expected {list(SPLITS)})")
        return self.splits[name]

    def validate(self) -> None:
        for s in SPLITS:
            for conv in self.splits[s]:
                conv.validate(self.signature, where=f"dataset {self.name!r}, split {s!r}, ")

    def __iter__(self) -> Iterator[tuple[str, list[Conversation]]]:
        return iter((s, self.splits[s]) for s in SPLITS)

    def summary(self) -> dict[str, Any]:
        """Sizes, dims and label distribution per split (and conversations per session where the data have
        sessions), as plain JSON-ready values."""
        sig = self.signature
        out: dict[str, Any] = {"name": self.name, "signature": sig.to_dict(), "splits": {}}
        for s, convs in self:
            labels = np.concatenate([c.labels for c in convs]) if convs else np.zeros(0)
            lengths = np.array([len(c) for c in convs]) if convs else np.zeros(0, dtype=int)
            info: dict[str, Any] = {
                "conversations": len(convs),
                "utterances": int(lengths.sum()),
                "length_min": int(lengths.min()) if len(lengths) else 0,
                "length_mean": float(lengths.mean()) if len(lengths) else 0.0,
                "length_max": int(lengths.max()) if len(lengths) else 0,
            }
            if sig.task == "classification":
                counts = np.bincount(labels.astype(int), minlength=sig.n_classes)
                info["labels"] = {c: int(n) for c, n in zip(sig.classes, counts)}
            else:
                info["labels"] = {
                    "mean": float(labels.mean()) if len(labels) else 0.0,
                    "std": float(labels.std()) if len(labels) else 0.0,
                    "negative": int((labels < 0).sum()),
                    "zero": int((labels == 0).sum()),
                    "positive": int((labels > 0).sum()),
                }
            sessions = sorted({c.session for c in convs if c.session is not None})
            if sessions:
                info["sessions"] = {str(k): sum(c.session == k for c in convs) for k in sessions}
            out["splits"][s] = info
        return out


def speaker_roles(speakers: np.ndarray) -> np.ndarray:
    """Speaker ids renumbered 0..S-1 in order of first appearance (the generator's and the oracle's
    speaker roles of one conversation)."""
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(s), len(order)) for s in speakers], dtype=np.int64)


def carve_validation(
    train: list[Conversation], fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """Split a validation set off a training list, deterministically by ``seed``.

    Used when a source has no validation split; the test split is never touched for selection.
    """
    if not 0.0 < fraction < 1.0:
        raise NasmercError(f"validation fraction {fraction!r}: expected a number in (0, 1)")
    if len(train) < 2:
        raise NasmercError(f"cannot carve a validation split from {len(train)} training conversation(s)")
    order = np.random.default_rng(seed).permutation(len(train))
    n_valid = min(len(train) - 1, max(1, int(round(fraction * len(train)))))
    valid_idx = set(order[:n_valid].tolist())
    keep = [c for i, c in enumerate(train) if i not in valid_idx]
    valid = [c for i, c in enumerate(train) if i in valid_idx]
    return keep, valid
