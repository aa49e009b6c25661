"""The padded :class:`Batch` of DESIGN.md and the collate that builds it.

Shapes (``B`` conversations, ``L`` the longest of them, ``M`` modalities):

- ``features[m]``: ``[B, L, D_m]`` float, zeros where a modality is missing or the row is padding;
- ``present``: ``[B, L, M]`` bool, which modality is observed for each row after masking;
- ``complete[m]``: the unmasked features, for reconstruction and teacher losses at training time;
- ``speakers``: ``[B, L]`` long; ``mask``: ``[B, L]`` bool, the real rows;
- ``labels``: ``[B, L]`` for dialogue-level tasks (class ids, ``-1`` on padding, or float scores,
  ``0`` on padding) and ``[B]`` for utterance-level tasks, whose rows are frames of one sample.

``resident`` says the batch was gathered from a split kept on the device
(``nasmerc.data.resident``): what is computed from it stays there (``nasmerc.train.losses`` takes
masked sums instead of selecting real rows), so a training step reads nothing back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np
import torch

from nasmerc.data.conversation import Conversation, DataSignature

PAD_CLASS = -1


@dataclass
class Batch:
    """Padded conversations; see the module docstring for shapes."""

    features: dict[str, torch.Tensor]
    present: torch.Tensor
    complete: dict[str, torch.Tensor]
    speakers: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    modalities: tuple[str, ...]
    ids: tuple[str, ...] = ()
    resident: bool = False

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def to(self, device: torch.device | str) -> "Batch":
        return replace(
            self,
            features={m: x.to(device) for m, x in self.features.items()},
            present=self.present.to(device),
            complete={m: x.to(device) for m, x in self.complete.items()},
            speakers=self.speakers.to(device),
            mask=self.mask.to(device),
            labels=self.labels.to(device),
        )

    def with_present(self, present: torch.Tensor) -> "Batch":
        """The batch with modalities masked as ``present`` says: dropped features become zeros.

        ``present`` is ``[B, L, M]``; it is combined with ``mask`` so padding stays absent. The
        ``complete`` features are kept as they were.
        """
        present = present.to(self.mask.device).bool() & self.mask.unsqueeze(-1)
        feats = {
            m: self.complete[m] * present[..., i : i + 1].to(self.complete[m].dtype)
            for i, m in enumerate(self.modalities)
        }
        return replace(self, features=feats, present=present)


def collate(conversations: Sequence[Conversation], signature: DataSignature) -> Batch:
    """Pad a list of conversations into one :class:`Batch` (every modality present)."""
    b = len(conversations)
    length = max(len(c) for c in conversations)
    mods = signature.modalities
    feats = {m: torch.zeros(b, length, signature.dims[m]) for m in mods}
    speakers = torch.zeros(b, length, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.bool)
    regression = signature.task == "regression"
    if signature.level == "dialogue":
        shape: tuple[int, ...] = (b, length)
    else:
        shape = (b,)
    if regression:
        labels = torch.zeros(shape, dtype=torch.float32)
    else:
        labels = torch.full(shape, PAD_CLASS, dtype=torch.long)
    for i, conv in enumerate(conversations):
        n = len(conv)
        for m in mods:
            feats[m][i, :n] = torch.from_numpy(np.asarray(conv.features[m], dtype=np.float32))
        speakers[i, :n] = torch.from_numpy(np.asarray(conv.speakers, dtype=np.int64))
        mask[i, :n] = True
        lab = torch.from_numpy(np.asarray(conv.labels)).to(labels.dtype)
        if signature.level == "dialogue":
            labels[i, :n] = lab
        else:
            labels[i] = lab[0]
    present = mask.unsqueeze(-1).expand(b, length, len(mods)).clone()
    return Batch(
        features=feats,
        present=present,
        complete=dict(feats),
        speakers=speakers,
        mask=mask,
        labels=labels,
        modalities=tuple(mods),
        ids=tuple(c.id for c in conversations),
    )


def iterate_batches(
    conversations: Sequence[Conversation],
    signature: DataSignature,
    batch_size: int,
    shuffle: bool = False,
    rng: np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, Batch]]:
    """Yield ``(indices, batch)`` over ``conversations``; shuffled by ``rng`` when asked.

    The indices say which conversations of the list each batch holds, so that fixed evaluation
    masks (``nasmerc.data.missing``) can be looked up for them.
    """
    n = len(conversations)
    order = np.arange(n)
    if shuffle:
        order = (rng if rng is not None else np.random.default_rng()).permutation(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([conversations[i] for i in idx], signature)
