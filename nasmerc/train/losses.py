"""Task losses over real utterances only.

Classification uses cross-entropy, regression the L1 loss the MOSI / MOSEI papers train with.
Padding rows (``batch.mask`` false) never contribute. Spaces call :func:`task_loss` for their
auxiliary heads (RMNAS's unimodal branches, for instance) so that every head is trained on the
same terms as the fused prediction.

Two ways to the same mean. The host path selects the real rows by boolean indexing
(:func:`select_real`), which on a GPU reads the mask back to the host (the size of the selection
must be known). A batch gathered from data resident on the device (``Batch.resident``,
``nasmerc.data.resident``) takes :func:`masked_task_loss` instead: the loss of every row, padding
set to zero, summed and divided by the count of real rows, both kept as device tensors, so a
training step reads nothing back. Both give the same value up to the order of float additions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nasmerc.data.batch import Batch


def select_real(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``logits`` and labels to the real rows: ``([N, C] or [N], [N])``.

    Dialogue-level outputs are ``[B, L, ...]`` and are taken where ``batch.mask`` is true;
    utterance-level outputs are already one row per sample.
    """
    if batch.labels.dim() == 2:
        return logits[batch.mask], batch.labels[batch.mask]
    return logits, batch.labels


def flat_rows(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``logits`` and labels one entry per row (``[B L, C]`` or ``[B L]``) with the ``[B L]`` mask of
    the real ones, nothing selected yet (``None`` for utterance-level outputs, one real row per sample).
    Outputs of several batches are concatenated and selected once: ``rows[real]`` equals the
    concatenation of :func:`select_real` of each."""
    if batch.labels.dim() != 2:
        return logits, batch.labels, None
    b, length = batch.mask.shape
    return logits.reshape(b * length, *logits.shape[2:]), batch.labels.reshape(-1), batch.mask.reshape(-1)


def loss_of(out: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean cross-entropy (``kind`` classification) or mean absolute error (regression) of ``out``
    against ``target``, both already one entry per real row."""
    if kind == "classification":
        return F.cross_entropy(out, target)
    return F.l1_loss(out.reshape(-1), target.reshape(-1).to(out.dtype))


def masked_task_loss(logits: torch.Tensor, batch: Batch, task: str) -> torch.Tensor:
    """:func:`task_loss` without reading anything back from the device (module docstring): the sum of
    the per-row losses over real rows divided by their count (at least one). Padding outputs are
    replaced by zeros before the loss, so whatever a model leaves there (even a NaN) reaches neither
    the value nor the gradient."""
    if batch.labels.dim() != 2:  # utterance level: every row is a real sample, nothing to select
        return loss_of(logits, batch.labels, task)
    real = batch.mask.bool()
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    if task == "classification":
        scores = torch.where(real.unsqueeze(-1), logits, zero)
        target = torch.where(real, batch.labels, torch.zeros_like(batch.labels))
        per_row = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), target.reshape(-1), reduction="none")
    else:
        scores = torch.where(real, logits.reshape(real.shape), zero)
        per_row = (scores.float() - batch.labels.float()).abs().reshape(-1)
    return masked_mean(per_row.reshape(real.shape), real)


def masked_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` ``[B, N, ...]`` over the elements of the ``rows`` ``[B, N]`` (the sum
    divided by their count), 0 with a graph when no row is chosen; nothing is read back from the
    device. The value of ``values[rows].mean()`` up to the order of float additions."""
    rows = rows.bool()
    inner = math.prod(values.shape[2:])
    keep = rows.reshape(*rows.shape, *[1] * (values.dim() - 2))
    picked = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return picked.sum() / (rows.sum() * inner).clamp(min=1).to(picked.dtype)


def task_loss(logits: torch.Tensor, batch: Batch, task: str) -> torch.Tensor:
    """Mean cross-entropy (classification) or mean absolute error (regression) over real rows; for a
    batch resident on the device, :func:`masked_task_loss` (the same mean, no host read)."""
    if batch.resident:
        return masked_task_loss(logits, batch, task)
    return loss_of(*select_real(logits, batch), task)
