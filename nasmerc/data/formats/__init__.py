"""Readers of the feature files the MERC / MSA community shares, one module per format.

Each format module has ``load(path, variant, options) -> ConversationDataset``. They share what is
here: :class:`FileOptions` (the ``--set data.KEY=VALUE`` options), the checks every conversation
passes (lengths that agree, finite features, a non-empty conversation) and :func:`assemble`, which
carves the validation split from the training split when the file has none and validates the whole
dataset with the file named in every error. A ``fold`` option re-splits files whose conversations
have sessions (IEMOCAP's video ids) into a leave-one-session-out fold (``nasmerc.data.folds``).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import numpy as np

from nasmerc import checks
from nasmerc.config import to_plain
from nasmerc.data.conversation import Conversation, ConversationDataset, DataSignature, carve_validation
from nasmerc.data.folds import N_SESSIONS, apply_fold
from nasmerc.errors import NasmercError

FORMATS = ("mmsa", "dialoguegcn", "gcnet", "plain")
MODALITIES = ("text", "audio", "visual")
MAX_FRAMES = 10_000


@dataclass(frozen=True)
class FileOptions:
    """Options of every file format; a format ignores the ones that do not concern it.

    ``valid_fraction`` and ``seed`` carve the validation split when the file has none.
    ``nan_to_zero`` replaces NaN / inf features by 0 instead of refusing them. ``level`` is the MMSA
    reading (``utterance``: one sample of frames per clip; ``dialogue``: clips grouped by video).
    ``frames`` is the common frame count of unaligned MMSA utterance samples (0: the text length).
    ``fold`` picks a leave-one-session-out IEMOCAP fold (1-5; 0: the file's split) of a file whose video
    ids name their session (GCNet and DialogueGCN IEMOCAP pickles; ``nasmerc.data.folds``), its
    validation split carved from the training sessions by ``valid_fraction`` and ``seed``.
    ``features`` is the GCNet feature root (default: ``features`` beside the label pickle) and
    ``folders`` maps each modality (text, audio, visual) to its sub-folder. ``classes`` renames the
    classes. Values are checked when the options are made (``frames`` at most ``MAX_FRAMES``).
    """

    valid_fraction: float = 0.1
    seed: int = 0
    nan_to_zero: bool = False
    level: str = ""
    frames: int = 0
    fold: int = 0
    features: str = ""
    folders: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = "data options"
        checks.in_range(where, "valid_fraction", self.valid_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.at_least(where, 0, seed=self.seed, frames=self.frames, fold=self.fold)
        if self.fold > N_SESSIONS:
            raise NasmercError(f"{where}: fold={self.fold}: expected a session 1-{N_SESSIONS} (0: the file's split)")
        if self.frames > MAX_FRAMES:
            raise NasmercError(f"{where}: frames={self.frames}: expected an integer in [0, {MAX_FRAMES}]")
        checks.one_of(where, "level", self.level, ("", "utterance", "dialogue"))
        unknown = [k for k in self.folders if k not in MODALITIES]
        if unknown:
            raise NasmercError(f"{where}: unknown key 'folders.{unknown[0]}' "
                               f"(known: {', '.join(f'folders.{m}' for m in MODALITIES)})")
        if len(set(self.classes)) != len(self.classes):
            raise NasmercError(f"{where}: classes={list(self.classes)}: expected distinct names")


def fail(path: Path | str, split: str | None, key: str, expected: str, found: Any) -> NasmercError:
    """The one-line error: file, split, key, what was expected and what was found."""
    where = f"{path}: " + (f"split {split!r}, " if split else "")
    return NasmercError(f"{where}{key}: expected {expected}, found {found}")


def describe(x: Any) -> str:
    """A short description of a value for an error message."""
    if isinstance(x, np.ndarray):
        return f"array of shape {tuple(x.shape)}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of {len(x)} items"
    if isinstance(x, dict):
        return f"dict with keys {sorted(map(str, x))[:8]}"
    return type(x).__name__


def numbers(x: Any, path: Path, split: str | None, key: str, expected: str) -> np.ndarray:
    """``x`` as an array of real numbers (integers or floats); strings, objects, booleans, complex
    numbers and ragged lists are refused naming ``key``."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        raise fail(path, split, key, expected, describe(x)) from None
    if arr.dtype.kind not in "iuf":
        raise fail(path, split, key, expected, f"{arr.dtype} values" if arr.dtype.kind != "O" else describe(x))
    return arr


def integers(x: Any, path: Path, split: str | None, key: str, expected: str) -> np.ndarray:
    """Integral numbers as int64: ``2.0`` is 2; ``2.7``, NaN and inf are refused (not cut to 2)."""
    arr = numbers(x, path, split, key, expected)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63)
        if bad.any():
            raise fail(path, split, key, expected, float(arr[bad].flat[0]))
    return arr.astype(np.int64)


def class_ids(x: Any, path: Path, split: str | None, key: str) -> np.ndarray:
    """Classification labels: integral class ids, flattened (their range is checked with the signature)."""
    return integers(x, path, split, key, "integer class ids").reshape(-1)


def scores(x: Any, path: Path, split: str | None, key: str) -> np.ndarray:
    """Regression labels: real numbers as float32, flattened (NaN / inf are refused by the validation)."""
    return numbers(x, path, split, key, "numeric scores").astype(np.float32).reshape(-1)


def read_npy(fh: IO[bytes], size: int, path: Path, split: str | None, key: str) -> np.ndarray:
    """One ``.npy`` array from ``fh`` (``size`` bytes: a file or a ``.npz`` member), never through pickle.

    The header is read first: an object array, or a shape that needs more bytes than there are (a
    truncated or hostile file), is refused before numpy allocates the array.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)
        if dtype.hasobject:
            raise fail(path, split, key, "an array of numbers or strings (object arrays need pickle)", f"dtype {dtype}")
        need, have = math.prod(shape) * dtype.itemsize, size - fh.tell()
        if need > have:
            raise fail(path, split, key, f"{need:,} bytes of data for shape {tuple(shape)}", f"{have:,} bytes")
        fh.seek(0)
        return fmt.read_array(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise fail(path, split, key, "a readable .npy array", str(exc).splitlines()[0] if str(exc) else
                   type(exc).__name__) from None


def need_keys(obj: Any, keys: Sequence[str], path: Path, split: str | None, what: str) -> None:
    if not isinstance(obj, Mapping):
        raise fail(path, split, what, f"a dict with keys {list(keys)}", describe(obj))
    missing = [k for k in keys if k not in obj]
    if missing:
        raise fail(path, split, f"key {missing[0]!r}", f"{what} with keys {list(keys)}",
                   f"keys {sorted(map(str, obj))}")


def unpack(data: Any, names: Sequence[str], path: Path) -> dict[str, Any]:
    """A pickled tuple as a dict of its named elements; the wrong length is a named error."""
    if not isinstance(data, (tuple, list)) or len(data) != len(names):
        n = len(data) if isinstance(data, (tuple, list)) else describe(data)
        raise fail(path, None, "top-level tuple", f"{len(names)} elements ({', '.join(names)})", n)
    return dict(zip(names, data))


def as_matrix(x: Any, path: Path, split: str, key: str) -> np.ndarray:
    """Per-utterance vectors (an array or a list of vectors) as a float32 ``[L, D]`` array."""
    arr = numbers(x, path, split, key, "per-utterance vectors of one dimension").astype(np.float32)
    if arr.size == 0 and arr.ndim < 2:
        return arr.reshape(0, 0)  # no utterance: reported as an empty conversation
    if arr.ndim != 2:
        raise fail(path, split, key, "shape [utterances, dim]", f"shape {tuple(arr.shape)}")
    return arr


def speaker_ids(values: Any, path: Path, split: str, key: str) -> np.ndarray:
    """Speaker ids from 'M'/'F' letters (M 0, F 1), one-hot vectors (argmax), integers or names.

    Other names are numbered in order of first appearance within the conversation.
    """
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise fail(path, split, key, "a list of speaker ids (one per utterance)", describe(values))
    if isinstance(values, np.ndarray) and values.ndim == 2 or (
        isinstance(values, (list, tuple)) and values and isinstance(values[0], (list, tuple, np.ndarray))
    ):
        arr = numbers(values, path, split, key, "one-hot speaker vectors")
        if arr.ndim != 2:
            raise fail(path, split, key, "one-hot speaker vectors", f"shape {tuple(arr.shape)}")
        return arr.argmax(axis=1).astype(np.int64)
    items = list(np.asarray(values).ravel().tolist()) if isinstance(values, np.ndarray) else list(values)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in items):
        return integers(np.asarray(items, dtype=np.float64 if items else np.int64), path, split, key,
                        "integer speaker ids")
    if not all(isinstance(v, (str, bytes)) for v in items):
        raise fail(path, split, key, "speaker ids (integers, names or one-hot vectors)",
                   next(repr(v) for v in items if not isinstance(v, (str, bytes))))
    names = [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in items]
    if set(names) <= {"M", "F"}:
        return np.asarray([0 if n == "M" else 1 for n in names], dtype=np.int64)
    order: dict[str, int] = {}
    return np.asarray([order.setdefault(n, len(order)) for n in names], dtype=np.int64)


def conversation(path: Path, split: str, cid: Any, features: dict[str, np.ndarray], speakers: np.ndarray,
                 labels: np.ndarray, level: str, nan_to_zero: bool, session: int | None = None) -> Conversation:
    """Check one conversation's lengths and values, and build it (``session``: its recording session, if known)."""
    at = f"conversation {str(cid)!r}"
    n = int(speakers.shape[0]) if level == "dialogue" else next(iter(features.values())).shape[0]
    if n == 0:
        raise fail(path, split, at, "at least one utterance", "an empty conversation")
    want = n if level == "dialogue" else 1
    if labels.shape != (want,):
        raise fail(path, split, f"{at}, labels", f"{want} label(s) (one per utterance)" if level == "dialogue"
                   else "one label", f"{labels.size}")
    if level == "dialogue" and speakers.shape != (n,):
        raise fail(path, split, f"{at}, speakers", f"{n} speaker ids", f"{speakers.size}")
    for m, x in features.items():
        if x.shape[0] != n:
            raise fail(path, split, f"{at}, modality {m!r}", f"{n} rows (as many as labels)", f"{x.shape[0]}")
        bad = ~np.isfinite(x)
        if bad.any():
            if not nan_to_zero:
                raise fail(path, split, f"{at}, modality {m!r}", "finite features (or --set data.nan_to_zero=true)",
                           f"{int(bad.sum())} NaN or inf values")
            x[bad] = 0.0
    if level == "utterance" and speakers.shape != (n,):
        speakers = np.zeros(n, dtype=np.int64)
    return Conversation(id=str(cid), features=features, speakers=speakers, labels=labels, session=session)


def assemble(path: Path, fmt: str, variant: str, options: FileOptions, signature: DataSignature,
             splits: dict[str, list[Conversation]], extra: Mapping[str, Any] | None = None) -> ConversationDataset:
    """The dataset, re-split into fold ``options.fold`` when one is asked, else with a validation split
    carved from train when the file has none; validated."""
    splits = {s: list(splits.get(s, [])) for s in ("train", "valid", "test")}
    carved = False
    if options.fold:
        splits = apply_fold(splits, options.fold, valid_fraction=options.valid_fraction, seed=options.seed,
                            where=str(path))
        carved = True
    elif not splits.get("valid"):
        if len(splits.get("train", [])) < 2:
            raise fail(path, "train", "conversations", "at least 2 (the file has no validation split, so one is "
                       "carved from train)", len(splits.get("train", [])))
        splits["train"], splits["valid"] = carve_validation(splits["train"], options.valid_fraction, options.seed)
        carved = True
    for s in ("train", "valid", "test"):
        if not splits.get(s):
            raise fail(path, s, "conversations", "at least one (every split is used: train to fit, valid to "
                       "select, test to evaluate)", "none")
    if options.classes:
        if signature.task != "classification" or len(options.classes) != signature.n_classes:
            raise fail(path, None, "option classes", f"{signature.n_classes} class names for {fmt}:{variant}",
                       list(options.classes))
        signature = DataSignature(signature.modalities, signature.dims, signature.task, signature.level,
                                  tuple(options.classes), signature.n_speakers)
    config = {"source": "file", "format": fmt, "variant": variant, "path": str(path),
              "valid_carved": carved, **to_plain(options), **dict(extra or {})}
    ds = ConversationDataset(name=f"{fmt}:{variant}", signature=signature, splits=splits, config=config)
    try:
        ds.validate()
    except NasmercError as exc:
        raise NasmercError(f"{path}: {exc}") from None
    return ds


def n_speakers(splits: Mapping[str, list[Conversation]], at_least: int = 1) -> int:
    top = max((int(c.speakers.max()) for convs in splits.values() for c in convs if len(c)), default=0)
    return max(at_least, top + 1)
