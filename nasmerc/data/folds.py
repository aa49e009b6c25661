"""Leave-one-session-out folds of IEMOCAP-shaped data, one rule for the synthetic presets and the files.

IEMOCAP's 151 dialogues were recorded in five sessions of two actors each (28, 30, 32, 30 and 31
dialogues). The dialogue-level protocol that GCNet set, and that RMNAS (sec. 'Evaluation Metrics') and
ITEACH-Net (sec. 4.2) follow, is "a 5-fold leave-one-session strategy": fold ``K`` tests on session
``K`` and trains on the four others, and the reported number is "the mean of the best WAF on the test
sets" over the five folds. Those codes have no validation split for IEMOCAP (GCNet's loader returns
the test loader as the validation loader), so their epochs are selected on the test set.

nasmerc keeps the folds and not the selection: the validation conversations of fold ``K`` are carved
from the four training sessions, a share of every session (:func:`apply_fold`), deterministically by
a seed, and the trainer selects on them; the test session is touched once, by ``nasmerc evaluate``.

Where the sessions come from: a GCNet or DialogueGCN IEMOCAP file names them in its video ids
(``Ses03M_impro02`` is session 3, :func:`session_of_video`); the synthetic ``iemocap4`` /
``iemocap6`` presets put their test conversations in session 5 and share their training and
validation conversations out among sessions 1-4 in IEMOCAP's proportions
(:func:`synthetic_sessions`), so that fold 5 has the preset's own test set and no fold asked (fold 0)
leaves the data exactly as they were. Data without sessions (MELD, MOSI, MOSEI) refuse a fold.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from nasmerc.config import coerce
from nasmerc.data.conversation import SPLITS, Conversation
from nasmerc.errors import NasmercError

N_SESSIONS = 5
IEMOCAP_SESSIONS = (28, 30, 32, 30, 31)
"""Dialogues per session of IEMOCAP (sessions 1-5)."""
_VIDEO = re.compile(r"^Ses0([1-5])")


def check_fold(value: Any, where: str) -> int:
    """``data.fold`` as an integer 0-5 (0: the data's own split), refused naming ``where`` otherwise."""
    fold = coerce(value, int, f"{where}: data.fold")
    if not 0 <= fold <= N_SESSIONS:
        raise NasmercError(f"{where}: data.fold={fold}: expected a session 1-{N_SESSIONS} "
                           "(0: the dataset's own split)")
    return fold


def session_of_video(vid: Any) -> int | None:
    """IEMOCAP's session of a video id (``Ses01F_impro01`` -> 1), or ``None`` for any other id."""
    match = _VIDEO.match(str(vid))
    return int(match.group(1)) if match else None


def synthetic_sessions(n_train: int, n_valid: int, n_test: int) -> dict[str, list[int]]:
    """The session of every conversation of a synthetic IEMOCAP preset, split by split.

    Test conversations are session 5 (IEMOCAP's usual test session); the training conversations then
    the validation ones, in order, fill sessions 1-4 in blocks proportional to IEMOCAP's 28 / 30 / 32
    / 30 dialogues (exactly those sizes for the preset's 108 + 12).
    """
    n = n_train + n_valid
    sizes = np.asarray(IEMOCAP_SESSIONS[:4], dtype=np.float64)
    bounds = np.rint(np.cumsum(sizes) / sizes.sum() * n).astype(int)
    ordered = np.searchsorted(bounds, np.arange(n), side="right") + 1
    return {"train": ordered[:n_train].tolist(), "valid": ordered[n_train:].tolist(), "test": [N_SESSIONS] * n_test}


def apply_fold(splits: Mapping[str, Sequence[Conversation]], fold: int, *, valid_fraction: float, seed: int,
               where: str) -> dict[str, list[Conversation]]:
    """The train / valid / test split of leave-one-session-out fold ``fold`` (0: ``splits`` unchanged).

    Test: every conversation of session ``fold``, whatever split it was in. Validation: a share
    ``valid_fraction`` of the other sessions' conversations (at least one, and one fewer than all),
    taken in turn from each session's conversations shuffled by ``(seed, session)``, so every training
    session gives about the same share. Training: the rest. Conversations keep their order.
    """
    fold = check_fold(fold, where)
    if fold == 0:
        return {s: list(splits[s]) for s in SPLITS}
    every = [c for s in SPLITS for c in splits[s]]
    unknown = [c for c in every if c.session is None]
    if unknown:
        raise NasmercError(f"{where}: data.fold={fold}: the data have no sessions (conversation {unknown[0].id!r} "
                           "has none); folds are leave-one-session-out over IEMOCAP's five sessions "
                           "(the iemocap4 / iemocap6 presets, GCNet or DialogueGCN IEMOCAP files): use data.fold=0")
    by_session: dict[int, list[int]] = {}
    for i, c in enumerate(every):
        by_session.setdefault(int(c.session), []).append(i)
    if fold not in by_session:
        raise NasmercError(f"{where}: data.fold={fold}: no conversation of session {fold} "
                           f"(the data have sessions {sorted(by_session)})")
    rest = sorted(i for s, idx in by_session.items() if s != fold for i in idx)
    if len(rest) < 2:
        raise NasmercError(f"{where}: data.fold={fold}: {len(rest)} conversation(s) outside session {fold} "
                           "(expected at least 2: one to train on, one to validate on)")
    n_valid = min(len(rest) - 1, max(1, int(round(valid_fraction * len(rest)))))
    shuffled = {s: [idx[j] for j in np.random.default_rng([seed, s]).permutation(len(idx))]
                for s, idx in sorted(by_session.items()) if s != fold}
    valid: set[int] = set()
    turn = 0
    while len(valid) < n_valid:
        for idx in shuffled.values():
            if turn < len(idx) and len(valid) < n_valid:
                valid.add(idx[turn])
        turn += 1
    return {"train": [every[i] for i in rest if i not in valid], "valid": [every[i] for i in rest if i in valid],
            "test": [every[i] for i in by_session[fold]]}


def selection_folds(splits: Mapping[str, Sequence[Conversation]], k: int, *, seed: int,
                    where: str) -> list[dict[str, list[Conversation]]]:
    """``k``-fold cross-validation over the training and validation conversations, for choosing between
    a search's finalists on every labelled conversation the search may see rather than on the
    validation split alone: fold ``j`` validates on the ``j``-th of ``k`` near-equal groups of those
    conversations (shuffled by ``seed``) and trains on the other groups; the test split is the data's
    own in every fold and is not read. Conversations keep their order within a split. Refused, naming
    ``where``, when ``k`` is below 2 or above the number of conversations."""
    pool = [c for s in ("train", "valid") for c in splits[s]]
    if not 2 <= k <= len(pool):
        raise NasmercError(f"{where}: {k} folds over {len(pool)} training and validation conversations: "
                           f"expected 2 to {len(pool)} folds")
    order = np.random.default_rng(seed).permutation(len(pool))
    groups = [set(g.tolist()) for g in np.array_split(order, k)]
    return [{"train": [c for i, c in enumerate(pool) if i not in g], "valid": [c for i, c in enumerate(pool) if i in g],
             "test": list(splits["test"])} for g in groups]
