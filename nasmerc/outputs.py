"""What a model gives the trainer, and how big it is: the contract under both ``nas/`` and ``train/``.

:class:`ModelOutput` is returned by every model's ``forward(batch)``; the training loop reads it and
the search spaces write it, so it lives below both (``nasmerc.nas`` imports the trainer, and the
trainer must not import ``nasmerc.nas`` back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
