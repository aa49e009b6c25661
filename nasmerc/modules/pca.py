"""A modality encoder fitted to the training features: whitened principal components, then a Linear.

Utterance features (a sentence embedding, openSMILE statistics, a face descriptor) concentrate their
variance in a few directions; a classifier fitted in the full feature space spends most of its
parameters on the noise around them, and with a few thousand training utterances it overfits (an
LDA over IEMOCAP-sized features does). Projecting each modality on its leading principal
components first, as feature pipelines of the field commonly do (PCA on openSMILE features before a
classifier), keeps the directions that carry the signal.

:class:`PCAEncoder` holds the projection as buffers (so it travels in ``model.pt``, checkpoints and
``state_dict``), fitted once, before the first weight step, on the complete features of the training
split's real rows: ``P = V_r / s_r`` with ``X - mean(X) = U S V^T`` the SVD of the centred training
features, ``r = rank`` and ``s = S / sqrt(N)`` the components' standard deviations, so each projected
coordinate has unit variance. It is applied as ``x P`` without subtracting the mean, so a missing
modality's zero row stays zero and contributes nothing (the model sees a presence-gated offset
``mean P`` on observed rows instead). A learned ``Linear(rank -> hidden)`` without bias follows.

The trainer calls :func:`nasmerc.outputs.fit_data_modules` on every model before training (``Trainer.fit``): any
submodule with a ``fit_data(conversations)`` method and a false ``fitted`` buffer is fitted then; a
model loaded from a checkpoint or ``model.pt`` is fitted already and keeps its projection.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nasmerc.data.conversation import Conversation
from nasmerc.errors import NasmercError


class PCAEncoder(nn.Module):
    """``Linear(x P)`` with ``P`` the whitened leading principal directions of modality ``modality``."""

    def __init__(self, modality: str, in_dim: int, hidden: int, rank: int) -> None:
        super().__init__()
        self.modality = modality
        self.rank = min(int(rank), int(in_dim))
        self.register_buffer("components", torch.zeros(int(in_dim), self.rank))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.proj = nn.Linear(self.rank, hidden, bias=False)
        bound = 1.0 / math.sqrt(self.rank)
        nn.init.uniform_(self.proj.weight, -bound, bound)

    def fit_data(self, conversations: Sequence[Conversation]) -> None:
        """Fit ``P`` on the modality's features of every row of ``conversations`` (module docstring)."""
        rows = [np.asarray(c.features[self.modality], dtype=np.float64) for c in conversations]
        x = np.concatenate(rows) if rows else np.zeros((0, self.components.shape[0]))
        if x.shape[0] <= self.rank:
            raise NasmercError(f"encoder 'pca' of {self.modality}: {x.shape[0]} training rows for {self.rank} "
                               "components (expected more rows than components; lower pca_dim)")
        centred = x - x.mean(axis=0)
        values, vectors = np.linalg.eigh(centred.T @ centred / x.shape[0])  # ascending: the top r are last
        top = np.argsort(values)[::-1][: self.rank]
        scale = np.sqrt(np.maximum(values[top], 1e-16))
        vectors = vectors[:, top]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
        p = vectors * np.where(signs == 0, 1.0, signs) / scale  # each direction's largest entry positive
        self.components.copy_(torch.as_tensor(p, dtype=self.components.dtype))
        self.fitted.fill_(True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.proj(x @ self.components.to(x.dtype))
        return h * mask.to(h.dtype).unsqueeze(-1)
