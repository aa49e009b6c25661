"""What a model gives the trainer, and how big it is: the contract under both ``nas/`` and ``train/``.

:class:`ModelOutput` is returned by every model's ``forward(batch)``; the training loop reads it and
the search spaces write it, so it lives below both (``nasmerc.nas`` imports the trainer, and the
trainer must not import ``nasmerc.nas`` back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What a model returns for a :class:`~nasmerc.data.batch.Batch`.

    - ``logits``: ``[B, L, C]`` class scores, or ``[B, L]`` regression scores (``[B, C]`` / ``[B]``
      for utterance-level tasks);
    - ``aux_losses``: named scalar losses (reconstruction, distillation, unimodal task losses ...);
      the trainer adds each times ``aux_weights[name]`` (1.0 when absent) and logs each one;
    - ``per_modality_logits``: optional unimodal predictions for plug-ins that balance modalities.
    """

    logits: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_weights: dict[str, float] = field(default_factory=dict)
    per_modality_logits: dict[str, torch.Tensor] = field(default_factory=dict)


def count_parameters(model: nn.Module) -> int:
    """Every parameter of ``model`` (a supernet's architecture weights are not part of it)."""
    return sum(p.numel() for p in model.parameters())


def lr_scale(model: nn.Module) -> float:
    """The multiple of ``train.lr`` that ``model`` trains with: its ``lr_scale`` attribute (a searched
    training choice, as ``merc``'s ``lr_scale``), 1 for a model without one. The trainer's optimiser
    steps at ``train.lr * lr_scale(model)``; the architecture holds the choice, so the run record does."""
    scale = getattr(model, "lr_scale", 1.0)
    return float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else 1.0


def fit_data_modules(model: nn.Module, conversations: Sequence[Any]) -> int:
    """Fit every submodule of ``model`` that is fitted to the training data before training (a
    ``fit_data(conversations)`` method and a false boolean ``fitted`` buffer, as
    :class:`nasmerc.modules.pca.PCAEncoder`) and is not fitted yet; how many were. The trainer calls it
    with the training split before the first epoch; a model restored from a checkpoint or ``model.pt``
    is fitted already."""
    count = 0
    for module in model.modules():
        fitted = getattr(module, "fitted", None)
        if callable(getattr(module, "fit_data", None)) and isinstance(fitted, torch.Tensor) and not bool(fitted):
            module.fit_data(conversations)
            count += 1
    return count
