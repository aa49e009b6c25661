"""Task losses over real utterances only.

Classification uses cross-entropy, regression the L1 loss the MOSI / MOSEI papers train with.
Padding rows (``batch.mask`` false) never contribute. Spaces call :func:`task_loss` for their
auxiliary heads (RMNAS's unimodal branches, for instance) so that every head is trained on the
same terms as the fused prediction.
"""

from __future__ import annotations

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


def loss_of(out: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean cross-entropy (``kind`` classification) or mean absolute error (regression) of ``out``
    against ``target``, both already one entry per real row."""
    if kind == "classification":
        return F.cross_entropy(out, target)
    return F.l1_loss(out.reshape(-1), target.reshape(-1).to(out.dtype))


def task_loss(logits: torch.Tensor, batch: Batch, task: str) -> torch.Tensor:
    """Mean cross-entropy (classification) or mean absolute error (regression) over real rows."""
    return loss_of(*select_real(logits, batch), task)
