"""What every model needs around its own layers: input checks, readout, heads and their losses.

A model for a :class:`~nasmerc.data.conversation.DataSignature` predicts

- dialogue-level tasks: one output per utterance, ``[B, L, C]`` (or ``[B, L]`` scores for regression);
- utterance-level tasks (rows are frames of one sample): one output per sample, ``[B, C]`` (or ``[B]``)
  from the mean of the rows over the real ones.

:class:`TaskHead` does both from ``[B, L, H]`` states; :func:`unimodal_outputs` turns per-modality
states into the ``per_modality_logits`` and weighted ``unimodal_{m}`` auxiliary losses of
:class:`~nasmerc.outputs.ModelOutput`, which modality-balancing plug-ins (SPCL) and models (Ada2I)
read. :func:`check_batch` refuses a batch whose modalities or widths differ from the signature
(targets derived from the labels, as HAEMSA's auxiliary tasks, take ``nasmerc.train.losses.loss_of``).
The hand-designed models and the searched
spaces (RMNAS's and BM-NAS's unimodal heads, ITEACH-Net's classifiers) share them.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.train.losses import task_loss

__all__ = ["masked_mean", "n_outputs", "TaskHead", "check_batch", "unimodal_outputs", "present_mask",
           "speaker_ids"]


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``h`` ``[B, N, C]`` over the real rows of ``mask`` ``[B, N]``: ``[B, C]``."""
    keep = mask.to(h.dtype).unsqueeze(-1)
    return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def n_outputs(signature: DataSignature) -> int:
    """Output width: the number of classes, or 1 score for regression."""
    return signature.n_classes if signature.task == "classification" else 1


class TaskHead(nn.Module):
    """``Dropout -> Linear(in_dim -> C)`` with the readout of the module docstring.

    ``hidden_dim`` > 0 puts ``Linear -> ReLU`` before the output layer (the two-layer classifiers
    several MERC models use); ``norm`` puts a ``LayerNorm`` first, ``LN -> Dropout -> Linear``, the
    final norm of a pre-norm Transformer (RMNAS's, BM-NAS's and ITEACH-Net's heads).
    """

    def __init__(self, in_dim: int, signature: DataSignature, dropout: float = 0.0, hidden_dim: int = 0,
                 norm: bool = False) -> None:
        super().__init__()
        self.level = signature.level
        self.task = signature.task
        out = n_outputs(signature)
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if norm else []
        layers.append(nn.Dropout(dropout))
        if hidden_dim > 0:
            layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, out))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        if self.level == "utterance":
            h = masked_mean(h, mask)
        out = self.net(h)
        return out.squeeze(-1) if self.task == "regression" else out

    def per_row(self, h: Tensor) -> Tensor:
        """The head on every row of ``h``, ``[..., C]``, without the readout (for a model that reads its
        own way, as RMNAS's global token)."""
        return self.net(h)


def check_batch(space: str, signature: DataSignature, batch: Batch, complete: bool = False) -> None:
    """Refuse a batch without a modality of ``signature`` or with another feature width, naming both.

    ``complete``: the model also reads ``batch.complete`` (a teacher on the unmasked features).
    """
    for m in signature.modalities:
        if m not in batch.features or m not in batch.modalities or (complete and m not in batch.complete):
            raise NasmercError(f"{space}: the batch has no modality {m!r} (it has {list(batch.modalities)})")
        width = batch.features[m].shape[-1]
        if width != signature.dims[m]:
            raise NasmercError(f"{space}: modality {m!r} has {width} features, "
                               f"expected {signature.dims[m]} from the data signature")


def present_mask(batch: Batch, modality: str) -> Tensor:
    """``[B, L]`` bool: the real rows where ``modality`` is observed after masking."""
    return batch.mask.bool() & batch.present[..., batch.modalities.index(modality)].bool()


def unimodal_outputs(heads: Mapping[str, TaskHead], states: Mapping[str, Tensor], batch: Batch, task: str,
                     weight: float) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, float]]:
    """Per-modality logits from ``heads[m](states[m])``, and, when ``weight`` > 0, their task losses
    ``unimodal_{m}`` with that weight each (``aux_losses`` / ``aux_weights`` entries; empty otherwise)."""
    mask = batch.mask.bool()
    logits = {m: heads[m](states[m], mask) for m in heads}
    if weight <= 0:
        return logits, {}, {}
    losses = {f"unimodal_{m}": task_loss(out, batch, task) for m, out in logits.items()}
    return logits, losses, {name: weight for name in losses}


def speaker_ids(batch: Batch, n_speakers: int) -> Tensor:
    """Speaker ids clamped into ``[0, n_speakers)``; padding rows get 0."""
    return torch.where(batch.mask.bool(), batch.speakers.clamp(0, max(0, n_speakers - 1)),
                       torch.zeros_like(batch.speakers))
