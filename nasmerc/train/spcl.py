"""Self-Paced Curriculum Learning for modality balance (SPCL; dissertation, section 4.2), a plug-in.

For every utterance ``j`` of conversation ``i`` and every modality ``m`` the model gives uni-modal
logits ``z_ij^m`` (``ModelOutput.per_modality_logits``). SPCL

1. sums them into the cross-modal logit ``z_ij^joint = sum_m z_ij^m`` and takes the utterance loss
   ``l_ij = -log softmax(z_ij^joint)_{y_ij}``;
2. **Difficulty Measurer**: the conversation-level modality discrepancy ``s_i``, the standard
   deviation over modalities of the uni-modal scores ``softmax(z_ij^m)_{y_ij}`` averaged over the
   conversation's utterances, and the difficulty, their harmonic mean
   ``rho_ij = 2 s_i l_ij / (s_i + l_ij)``;
3. **Learning Scheduler**: the hard self-paced mask ``v_ij = [rho_ij <= lambda]``, with
   ``lambda^(t) = alpha lambda^(t-1)`` after every epoch;
4. the objective ``L_SPCL = sum v_ij l_ij / sum v_ij``;
5. **Prediction** (:meth:`SPCL.prediction`): the method "derives uni-modal logits via
   modality-specific predictors, then fuses them into a cross-modal logit for emotion recognition",
   ``z_ij^joint = sum_m z_ij^m``, and predicts ``argmax softmax(z_ij^joint)``. At every evaluation
   pass the plug-in hands the trainer ``z^joint`` in place of the backbone's fused ``out.logits``:
   logits, not their softmax, so that they mean what ``out.logits`` means (the argmax is the same,
   and the evaluation cross-entropy is the paper's ``l_ij``).

nasmerc's spaces also have a fused output of their own, so its task loss is averaged over the same
selected utterances and added (``fused_weight``; 0 trains the fused output not at all, which is the
paper's objective). It trains the shared encoders only: the prediction is ``z^joint`` whatever the
weight. ``lambda`` starts at ``lambda0``, or, when
``lambda0`` is 0, at the ``start_fraction`` quantile of the difficulties of the first training batch.
A batch where nothing is selected trains on its easiest utterance. Regression (a paper-external
case) uses the mean of the uni-modal scores as the cross-modal score, ``l_ij`` the absolute error and
``s_i`` the standard deviation of the uni-modal scores, and predicts that mean score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.train.plugins import Plugin

if TYPE_CHECKING:  # pragma: no cover
    from nasmerc.outputs import ModelOutput


@dataclass(frozen=True)
class SPCLConfig:
    """``alpha``: growth of lambda per epoch; ``lambda0`` (0: calibrated) and ``start_fraction``: the
    first lambda; ``fused_weight``: weight of the model's fused output's loss on the selected rows."""

    alpha: float = 1.15
    lambda0: float = 0.0
    start_fraction: float = 0.5
    fused_weight: float = 1.0


def _rows(t: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per-row values ``[B, L, ...]`` at the real rows, or per-sample ``[B, ...]`` as they are."""
    return t[batch.mask.bool()] if batch.labels.dim() == 2 else t


def uni_modal(out: "ModelOutput") -> dict[str, torch.Tensor]:
    """``out.per_modality_logits``, refused when the model gives none."""
    if len(out.per_modality_logits) < 1:
        raise NasmercError("plug-in spcl: the model gives no per-modality logits "
                           "(use a space whose output has per_modality_logits)")
    return out.per_modality_logits


def cross_modal(per_modality: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    """``z^joint = sum_m z^m`` (classification), the mean of the uni-modal scores (regression)."""
    logits = torch.stack([per_modality[m] for m in sorted(per_modality)], dim=0)  # [M, B, L, C] / [M, B, C]
    return logits.sum(0) if task == "classification" else logits.mean(0)


def spcl_terms(per_modality: dict[str, torch.Tensor], batch: Batch, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l, s)`` of the real rows: the cross-modal loss per row and its conversation's discrepancy."""
    logits = torch.stack([per_modality[m] for m in sorted(per_modality)], dim=0)  # [M, B, L, C] / [M, B, C]
    labels = batch.labels
    joint = cross_modal(per_modality, task)
    if task == "classification":
        safe = labels.clamp(min=0)
        loss = F.cross_entropy(joint.flatten(0, -2), safe.flatten(), reduction="none").view(safe.shape)
        probs = logits.softmax(-1).gather(-1, safe.unsqueeze(0).unsqueeze(-1).expand(logits.shape[0], *safe.shape, 1))
        scores = probs.squeeze(-1)                    # [M, B, L] / [M, B]
    else:
        scores = logits
        loss = (joint - labels.to(logits.dtype)).abs()
    spread = scores.std(0, unbiased=False)            # [B, L] / [B]
    if batch.labels.dim() == 2:
        real = batch.mask.to(spread.dtype)
        conv = (spread * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp(min=1.0)
        spread = conv.expand_as(spread)
    return _rows(loss, batch), _rows(spread, batch).detach()


def harmonic(s: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """``rho = 2 s l / (s + l)`` (0 where both are 0)."""
    return 2 * s * l / (s + l).clamp(min=1e-12)


def self_paced_mask(rho: torch.Tensor, lam: float) -> torch.Tensor:
    """``v = [rho <= lambda]``, with at least the easiest row selected."""
    v = rho <= lam
    if not v.any():
        v = torch.zeros_like(v)
        v[rho.argmin()] = True
    return v


class SPCL(Plugin):
    """``--plugin spcl``: self-paced selection of modality-balanced utterances (module docstring)."""

    name: ClassVar[str] = "spcl"
    Config: ClassVar[type] = SPCLConfig

    def __init__(self, signature: DataSignature, config: SPCLConfig | None = None) -> None:
        super().__init__(signature, config)
        self.lam: float | None = float(self.config.lambda0) if self.config.lambda0 > 0 else None
        self.selected: list[float] = []

    def check(self, signature: DataSignature) -> None:
        cfg: SPCLConfig = self.config
        if cfg.alpha < 1.0:
            raise NasmercError(f"plug-in spcl: alpha={cfg.alpha}: expected at least 1 (lambda must grow)")
        if not 0.0 < cfg.start_fraction <= 1.0:
            raise NasmercError(f"plug-in spcl: start_fraction={cfg.start_fraction}: expected in (0, 1]")
        if cfg.lambda0 < 0 or cfg.fused_weight < 0:
            raise NasmercError("plug-in spcl: lambda0 and fused_weight must be non-negative")

    def task_loss(self, batch: Batch, out: "ModelOutput", epoch: int) -> torch.Tensor:
        task = self.signature.task
        loss, spread = spcl_terms(uni_modal(out), batch, task)
        rho = harmonic(spread, loss.detach())
        if self.lam is None:
            self.lam = float(torch.quantile(rho.float(), self.config.start_fraction))
        v = self_paced_mask(rho, self.lam).to(loss.dtype)
        self.selected.append(float(v.mean()))
        total = (v * loss).sum() / v.sum()
        if self.config.fused_weight > 0:
            fused, target = _rows(out.logits, batch), _rows(batch.labels, batch)
            if task == "classification":
                own = F.cross_entropy(fused, target, reduction="none")
            else:
                own = (fused.reshape(-1) - target.to(fused.dtype).reshape(-1)).abs()
            total = total + self.config.fused_weight * (v * own).sum() / v.sum()
        return total

    def prediction(self, batch: Batch, out: "ModelOutput") -> torch.Tensor:
        """``z^joint = sum_m z^m`` (step 5 of the module docstring) on the real rows, ``out.logits`` on
        the padding rows; the same shape as ``out.logits``, whose dtype it takes."""
        joint = cross_modal(uni_modal(out), self.signature.task).to(out.logits.dtype)
        if joint.shape != out.logits.shape:
            shapes = {m: list(z.shape) for m, z in sorted(out.per_modality_logits.items())}
            raise NasmercError(f"plug-in spcl: per-modality logits of shapes {shapes} for model logits of shape "
                               f"{list(out.logits.shape)}: expected the shape of the model's logits")
        if batch.labels.dim() != 2:  # utterance level: one row per sample, no padding row
            return joint
        real = batch.mask.bool().view(*batch.mask.shape, *([1] * (joint.dim() - batch.mask.dim())))
        return torch.where(real, joint, out.logits)

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = state["lam"]

    def end_epoch(self, epoch: int) -> dict[str, float]:
        stats = {"spcl_lambda": float(self.lam or 0.0),
                 "spcl_selected": float(sum(self.selected) / max(1, len(self.selected)))}
        self.selected = []
        if self.lam is not None:
            self.lam *= self.config.alpha
        return stats
