"""A split that lives on the device: padded once, gathered batch by batch without the host.

The host path (``nasmerc.data.batch.collate``) pads every batch from numpy arrays and copies it to the
device at every step. For data the size of IEMOCAP or MELD (a few hundred MB at most) the whole split
fits on an accelerator, so :class:`ResidentSplit` pads it once to its longest conversation (``[N, Lmax,
D_m]`` features per modality, ``[N, Lmax]`` speakers, mask and labels) and :meth:`ResidentSplit.gather`
builds a batch by indexing those tensors with the batch's conversation indices and trimming to the
longest of them. The trim length comes from the conversations' lengths, kept on the host, so no value
is read back from the device; the result is equal (dtypes, shapes, values) to ``collate`` of the same
conversations, and marked ``resident`` (its losses are taken without host reads,
``nasmerc.train.losses``). Missing-modality masks for evaluation (``fixed_masks``, deterministic per
rate and seed) are stacked the same way once per rate (:meth:`ResidentSplit.fixed_present`) and
gathered with the batch.

Kept on the device: ``sum_m N Lmax D_m`` floats; IEMOCAP's 151 dialogues of at most 110 utterances
with 100 + 1582 + 342 features take about 135 MB in fp32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.data.missing import fixed_masks


class ResidentSplit:
    """``conversations`` padded once into tensors on ``device`` (see the module docstring)."""

    def __init__(self, conversations: Sequence[Conversation], signature: DataSignature,
                 device: torch.device | str = "cpu") -> None:
        if not conversations:
            raise ValueError("ResidentSplit: expected at least one conversation")
        self.conversations = tuple(conversations)
        self.signature = signature
        self.device = torch.device(device)
        self.lengths = np.asarray([len(c) for c in self.conversations], dtype=np.int64)  # on the host
        self.ids = tuple(c.id for c in self.conversations)
        self.position = {id(c): i for i, c in enumerate(self.conversations)}
        self._present: dict[tuple[float, int, bool, bool], torch.Tensor] = {}
        padded = collate(self.conversations, signature)  # once, on the host
        self.modalities = padded.modalities
        self.features = {m: x.to(self.device) for m, x in padded.features.items()}
        self.speakers = padded.speakers.to(self.device)
        self.mask = padded.mask.to(self.device)
        self.labels = padded.labels.to(self.device)

    def __len__(self) -> int:
        return len(self.conversations)

    def holds(self, conversations: Sequence[Conversation]) -> bool:
        """Whether every one of ``conversations`` (the same objects) is in this split."""
        return all(id(c) in self.position for c in conversations)

    def positions(self, conversations: Sequence[Conversation]) -> np.ndarray:
        """Where each of ``conversations`` sits in this split (all of them must be in it)."""
        return np.asarray([self.position[id(c)] for c in conversations], dtype=np.int64)

    def rows(self, indices: np.ndarray) -> int:
        """The real rows (utterances, or samples of utterance-level data) of the conversations ``indices``."""
        return int(self.lengths[indices].sum()) if self.signature.level == "dialogue" else len(indices)

    def upload(self, indices: np.ndarray) -> torch.Tensor:
        """``indices`` as a long tensor on the device: a copy that does not wait for the device (on CUDA a
        blocking copy to the device would wait for every kernel queued before it). The trainer uploads
        an epoch's order once and hands :meth:`gather` slices of it."""
        return torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(self.device, non_blocking=True)

    def gather(self, indices: np.ndarray | Sequence[int], index: torch.Tensor | None = None) -> Batch:
        """The batch of conversations ``indices`` (positions in this split), every modality present,
        trimmed to the longest of them: equal to ``collate([conversations[i] for i in indices])``.
        ``index``: the same positions already on the device (else they are uploaded)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("ResidentSplit.gather: expected at least one conversation")
        length = int(self.lengths[idx].max())  # from the host-side lengths
        index = self.upload(idx) if index is None else index

        def take(x: torch.Tensor) -> torch.Tensor:
            return (x.narrow(1, 0, length) if x.dim() > 1 else x).index_select(0, index)

        feats = {m: take(x) for m, x in self.features.items()}
        mask = take(self.mask)
        present = mask.unsqueeze(-1).expand(*mask.shape, len(self.modalities)).clone()
        return Batch(features=feats, present=present, complete=dict(feats), speakers=take(self.speakers),
                     mask=mask, labels=take(self.labels), modalities=self.modalities,
                     ids=tuple(self.ids[i] for i in idx.tolist()), resident=True)

    def fixed_present(self, rate: float, seed: int, utterance_level: bool = False,
                      frames: bool = False) -> torch.Tensor:
        """The evaluation patterns of ``fixed_masks(rate, seed)`` for the whole split, ``[N, Lmax, M]`` on
        the device, built on the first call for each ``(rate, seed)`` and kept."""
        key = (float(rate), int(seed), bool(utterance_level), bool(frames))
        if key not in self._present:
            m = len(self.signature.modalities)
            masks = fixed_masks(self.conversations, m, rate, seed, utterance_level, frames=frames)
            present = np.zeros((len(self), int(self.lengths.max(initial=0)), m), dtype=bool)
            for i, pattern in enumerate(masks):
                present[i, : pattern.shape[0]] = pattern
            self._present[key] = torch.from_numpy(present).to(self.device)
        return self._present[key]

    def gather_masked(self, indices: np.ndarray | Sequence[int], present: torch.Tensor,
                      index: torch.Tensor | None = None) -> Batch:
        """:meth:`gather` with the split-wide pattern ``present`` (from :meth:`fixed_present`) applied."""
        idx = np.asarray(indices, dtype=np.int64)
        index = self.upload(idx) if index is None else index
        batch = self.gather(idx, index)
        return batch.with_present(present.narrow(1, 0, batch.length).index_select(0, index))


class ResidentCache:
    """The trainer's resident splits, found again by the conversations they hold (a training subset a
    curriculum picks is gathered from the whole training split); at most ``size`` are kept, the least
    recently used dropped first."""

    def __init__(self, signature: DataSignature, device: torch.device | str, size: int = 4) -> None:
        self.signature, self.device, self.size = signature, torch.device(device), size
        self.splits: list[ResidentSplit] = []

    def find(self, conversations: Sequence[Conversation], exact: bool = False) -> tuple[ResidentSplit, np.ndarray]:
        """A resident split holding ``conversations`` and their positions in it, made when none does.
        With ``exact`` the split must be those conversations in that order (evaluation masks are drawn
        along the split, so a subset of another split would get other masks)."""
        for split in self.splits:
            same = len(split) == len(conversations) and all(a is b for a, b in zip(split.conversations, conversations))
            if same or (not exact and split.holds(conversations)):
                self.splits.remove(split)
                self.splits.insert(0, split)
                return split, np.arange(len(split)) if same else split.positions(conversations)
        split = ResidentSplit(conversations, self.signature, self.device)
        self.splits = [split, *self.splits][: self.size]
        return split, np.arange(len(split))
