"""The emotion-shift curriculum of MultiDAG+CL (dissertation, section 2.2), as a training plug-in.

**Difficulty Measure Function.** A conversation ``c`` is as hard as its emotion shifts are frequent::

    DMF(c) = (N_shift(c) + N_sp(c)) / (N_u(c) + N_sp(c))

with ``N_u`` its utterances, ``N_sp`` its distinct speakers and ``N_shift`` its emotion shifts: an
utterance whose label differs from the label of the same speaker's previous utterance (the
speaker-wise shift of hybrid curriculum learning, which MultiDAG+CL builds on). Regression labels
count a shift when the rounded sentiment score changes.

**Training scheduler.** Conversations are sorted by DMF (ties keep the data order) and split into
``bins`` ordered bins ``D_1 .. D_k`` of near-equal size. Training starts on ``D_1`` and adds the next
bin every ``epochs_per_bin`` epochs, ``D_1 -> D_1 u D_2 -> ... -> D_1 u ... u D_k``; after all bins are
in, ordinary training on the whole set continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.errors import NasmercError
from nasmerc.train.plugins import Plugin


@dataclass(frozen=True)
class CurriculumConfig:
    """``bins``: the number of difficulty bins ``k``; ``epochs_per_bin``: epochs before the next bin joins."""

    bins: int = 5
    epochs_per_bin: int = 1


def emotion_shifts(labels: np.ndarray, speakers: np.ndarray) -> int:
    """``N_shift``: utterances whose label differs from the same speaker's previous utterance."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        labels = np.rint(labels).astype(int)
    last: dict[int, int] = {}
    shifts = 0
    for label, speaker in zip(labels.tolist(), np.asarray(speakers).tolist()):
        if speaker in last and last[speaker] != label:
            shifts += 1
        last[speaker] = label
    return shifts


def difficulty(conv: Conversation) -> float:
    """``DMF(c) = (N_shift + N_sp) / (N_u + N_sp)`` (section 2.2)."""
    n_u = len(conv.labels)
    n_sp = len(np.unique(conv.speakers))
    return (emotion_shifts(conv.labels, conv.speakers) + n_sp) / (n_u + n_sp)


def curriculum_bins(convs: Sequence[Conversation], bins: int) -> list[list[int]]:
    """Indices of ``convs`` sorted by DMF, easiest first, split into ``bins`` ordered bins."""
    scores = np.array([difficulty(c) for c in convs])
    order = np.argsort(scores, kind="stable")
    return [part.tolist() for part in np.array_split(order, min(bins, len(convs)))]


class Curriculum(Plugin):
    """``--plugin curriculum``: train on the easiest conversations first (module docstring)."""

    name: ClassVar[str] = "curriculum"
    Config: ClassVar[type] = CurriculumConfig

    def __init__(self, signature: DataSignature, config: CurriculumConfig | None = None) -> None:
        super().__init__(signature, config)
        self.bins: list[list[int]] = []
        self.train: list[Conversation] = []
        self.active = 0

    def check(self, signature: DataSignature) -> None:
        if self.config.bins < 1 or self.config.epochs_per_bin < 1:
            raise NasmercError(f"plug-in curriculum: bins={self.config.bins}, epochs_per_bin="
                               f"{self.config.epochs_per_bin}: expected both at least 1")
        if signature.level != "dialogue":
            raise NasmercError("plug-in curriculum: needs dialogue-level labels (emotion shifts between "
                               f"utterances); this data is {signature.level}-level")

    def start(self, train: Sequence[Conversation], epochs: int) -> None:
        self.train = list(train)
        self.bins = curriculum_bins(self.train, self.config.bins)

    def conversations(self, epoch: int, train: Sequence[Conversation]) -> Sequence[Conversation]:
        self.active = min(len(self.bins), epoch // self.config.epochs_per_bin + 1)
        return [self.train[i] for part in self.bins[: self.active] for i in part]

    def end_epoch(self, epoch: int) -> dict[str, float]:
        return {"curriculum_bins": float(self.active)}
