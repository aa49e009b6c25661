"""ITEACH-Net: Inverted Teacher-student seArCH Network (Sun, Lian et al.), as a nasmerc space.

The network follows the paper's method section (Figures 1-2):

1. **ECCE** (Section 3.3, eqs. 1-2, 5-6, Algorithm 1). Per modality an
   :class:`~nasmerc.modules.ecce.ECCEncoder` turns the raw ``X_m`` into ``E_m`` ``[B, heads, N, N]``
   (local context by a ``Conv1d`` of kernel ``w``, global context change by averaging over spans
   shorter than ``dist_m``), shared by every layer of that modality and added to the mix map of the
   attention mixers (eqs. 10-11). Teacher and student each have their own ECCE (``ECCE`` / ``ECCE_s``).
2. **Encoder Layers** (Section 3.4.1, eq. 7). Each layer holds one ITEACH Encoder per modality, a
   MetaFormer block (:class:`~nasmerc.modules.MetaFormerBlock`), followed by one round of cross
   attention per other modality with the text as the query (audio, then visual: the paper's two
   rounds). The fused text is the layer's hidden feature ``H`` and the next layer's text input; the
   other modalities go on with their encoder outputs. The stack (input projections, ECCE, layers,
   classifier) is :class:`~nasmerc.modules.iteach.ITEACHModel`, shared with the ``transformer``
   baseline (the teacher alone).
3. **ITEACH Encoder** (Section 3.4.2, Appendix C). The student's token mixer of every layer and
   modality is an ``OpChoice`` over AttentionMixer / MLPMixer / AvgPoolMixer / MaxPoolMixer
   (:mod:`nasmerc.modules.iteach_mixers`), label ``layer{i}.{m}.mixer``. The paper's per-utterance
   Router (eqs. 8-9) is a strategy (``--strategy router``), not part of the space.
4. **Inverted Teacher-Student** (Section 3.2, eqs. 3-4, 12-15). A Transformer teacher
   (``teacher_layers`` layers, attention mixers only, no choice) reads the complete features
   ``batch.complete``; the searched student (``student_layers`` layers, more than the teacher) reads
   the masked ``batch.features``. Both classifiers are trained: the student's logits are the model's
   output (they predict at test time), the teacher's task loss is ``aux_losses["teacher_task"]``. The
   distance loss (eq. 14, :func:`distance_loss`)
   ``L_rec = 0.5 |H_1^s - H_1|^2 + 0.1 |H_2^s - H_2|^2 + 0.05 |H_3^s - H_3|^2`` pulls the student's
   last three hidden layers (``H_1`` is the last) toward the teacher's, whose hiddens are detached
   (no gradient reaches the teacher from it); it is ``aux_losses["distill"]``.

The objective (eqs. 12 and 15, ``ITEACHNetwork.aux_weights``): ``Loss = L_emo + L_rec`` with
``L_emo = 1/(2L) sum_i (CE_i^teacher + CE_i^student)``, the *mean* of the two classifiers'
cross-entropies over the ``L`` real utterances. The trainer adds the student's task loss with weight
1 and every auxiliary loss with its weight, so the network gives ``teacher_task`` the weight
``teacher_weight`` (1) and ``distill`` the weight ``2 * distill_weight`` (2): the trainer's loss is
``CE^s + CE^t + 2 L_rec = 2 (L_emo + L_rec)``, exactly twice eq. 15. The factor 2 on the whole loss
changes no AdamW step (its updates do not depend on the loss scale, up to ``eps``) and no minimiser;
it only doubles the logged ``loss`` and the gradient norm that ``train.grad_clip`` sees.

Dialogue-level tasks predict every utterance from ``H_1``; utterance-level tasks, whose rows are
frames, predict from the mean of ``H_1`` over the real frames (``[B, C]``). Regression gives one score
per row. The teacher runs only in training mode: at evaluation the model is the student alone.

Where the paper is silent or differs from what we do (each also documented where it is made):

- Input: ``Linear(D_m -> hidden)`` per modality and model, then dropout; no positional encoding (the
  paper mentions none; ECCE is the order-aware part). Heads: ``LN -> Dropout -> Linear`` on ``H_1``
  (:class:`~nasmerc.modules.heads.TaskHead`).
- Cross attention: pre-norm residual ``t = t + CrossAttn(LN(t), LN(a))`` with
  :class:`~nasmerc.modules.AttentionOp` (eq. 7 with learned projections, multi-head); no FFN after it.
- Distance (eq. 14): ``|H_k^s - H_k|^2`` is read as the squared Euclidean norm of each utterance's
  representation difference (summed over the ``hidden_dim`` channels), averaged over the real rows
  of the batch. Averaging over utterances is eq. 12's own normalisation (``1/L``): with a sum over
  utterances as well, the distance would grow with the conversation length and the batch size
  against ``L_emo``, which the paper does not suggest. The paper's "masked portions" are read as the
  real (unpadded) rows. ``distill_norm="mean"`` averages over channels instead (``1/hidden_dim`` of
  the paper's norm); with ``distill_weight=0.5`` it is the loss this space trained with before.
- Regression (eq. 13): the trainer's task loss is L1 (as MOSI / MOSEI training in nasmerc), not the
  MSE of eq. 13; the teacher uses the same, and the two are combined as in eq. 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules.heads import check_batch
from nasmerc.modules.iteach import ITEACHModel, check_encoder_config
from nasmerc.modules.iteach_mixers import ITEACH_MIXERS
from nasmerc.modules.mixers import EXTRA_MIXERS
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import masked_mean, task_loss

__all__ = ["ITEACHConfig", "ITEACHSpace", "ITEACHNetwork", "distance_loss", "iteach_default", "iteach_paper",
           "iteach_recurrent"]

DISTILL_NORMS = ("sum", "mean")


@dataclass
class ITEACHConfig:
    """Sizes and switches of the ITEACH-Net space (paper values in :func:`iteach_paper`).

    - ``hidden_dim``, ``n_heads``, ``ffn_ratio``: every Encoder Layer (MetaFormer blocks and cross
      attention); ``n_heads`` is also ``d_e``, the number of ECCE channels.
    - ``student_layers``, ``teacher_layers``: ``L_stu > L_tea`` in the paper (4 and 3; "inverted").
    - ``ecce_kernel`` (``w``), ``ecce_dist`` (``dist_m``), ``ecce_dim`` (``d_z``, not given in the
      paper); ``use_ecce=False`` mixes without the bias (the paper's "vanilla Self-Attention" row).
    - ``mixers``: the student's candidate set ``O``; ``max_len`` is the longest sequence (utterances
      of a conversation, or frames of an utterance-level sample) the MLP mixer accepts, since its
      token MLP is a fixed ``Linear(max_len, max_len)``; longer batches are refused naming it.
    - ``query_modality``: the query of the cross attention (text in the paper; when the signature has
      no such modality, its first modality is the query).
    - ``distill_layer_weights``: weights of eq. 14 from the last hidden layer backwards
      (0.5 / 0.1 / 0.05); ``distill_norm``: ``sum`` is eq. 14's squared norm over each row's channels,
      ``mean`` its mean over channels (``1/hidden_dim`` of it, not in the paper).
    - ``distill_weight``: the weight of ``L_rec`` in eq. 15 (1 in the paper); ``teacher_weight``: the
      teacher's cross-entropy against the student's inside ``L_emo`` (1 in eq. 12, where the two are
      averaged). The module docstring says how they become the trainer's weights.
    - ``dropout``: after the input projections, inside blocks and heads (the paper gives none).
    """

    hidden_dim: int = 64
    n_heads: int = 4
    ffn_ratio: float = 4.0
    student_layers: int = 4
    teacher_layers: int = 3
    ecce_kernel: int = 7
    ecce_dist: int = 30
    ecce_dim: int = 32
    use_ecce: bool = True
    mixers: tuple[str, ...] = ("attention", "mlp", "avgpool", "maxpool")
    max_len: int = 128
    query_modality: str = "text"
    distill_layer_weights: tuple[float, ...] = (0.5, 0.1, 0.05)
    distill_norm: str = "sum"
    distill_weight: float = 1.0
    teacher_weight: float = 1.0
    dropout: float = 0.1


def iteach_default() -> ITEACHConfig:
    """Small and CPU-fast: width 64, 4 heads, student 4 layers, teacher 3, ECCE kernel 7, dist 30.

    The loss is the paper's (eqs. 12-15, weights 0.5 / 0.1 / 0.05): the objective is the method, only
    the sizes are smaller."""
    return ITEACHConfig()


def iteach_recurrent() -> ITEACHConfig:
    """The default sizes with a recurrent (BiGRU) token mixer beside the paper's four (not in the paper)."""
    return ITEACHConfig(mixers=(*ITEACHConfig.mixers, "recurrent"))


def iteach_paper() -> ITEACHConfig:
    """Section 4.4: width 128, FFN 4.0, 8 heads, kernel 7, dist_m 30, teacher 3 and student 4 layers;
    Section 3.5: eqs. 12-15 with the layer weights 0.5 / 0.1 / 0.05 and the squared norm."""
    return ITEACHConfig(hidden_dim=128, n_heads=8, ffn_ratio=4.0, student_layers=4, teacher_layers=3,
                        ecce_kernel=7, ecce_dist=30, distill_layer_weights=(0.5, 0.1, 0.05), distill_norm="sum",
                        distill_weight=1.0, teacher_weight=1.0)


def distance_loss(student: list[Tensor], teacher: list[Tensor], mask: Tensor, weights: tuple[float, ...],
                  norm: str = "sum") -> Tensor:
    """Eq. 14: ``sum_k w_k |H_k^s - H_k|^2`` over the last ``len(weights)`` hidden layers.

    ``student`` / ``teacher`` are the hiddens ``[B, N, hidden]`` in layer order (``H_1``, the last, is
    ``[-1]``; ``weights[0]`` is its weight); the teacher's are detached. ``|.|^2`` is the squared
    Euclidean norm over the channels of each real row (``mask``), averaged over the real rows
    (``norm="mean"``: averaged over channels too). Computed in float32 (under bf16 autocast too) and
    without selecting rows (padding zeroed, the sum divided by the count of real rows), so a training
    step reads nothing back from the device; padding rows add nothing to the value or the gradient.
    """
    total = torch.zeros((), dtype=torch.float32, device=mask.device)
    for k, weight in enumerate(weights):  # k = 0 is H_1, the last layer
        diff = student[-1 - k].float() - teacher[-1 - k].detach().float()  # [B, N, hidden]
        per_row = diff.pow(2).sum(-1) if norm == "sum" else diff.pow(2).mean(-1)
        total = total + weight * masked_mean(per_row, mask)
    return total


class ITEACHNetwork(nn.Module):
    """The ITEACH-Net model for one data signature: a Transformer teacher and a searched student."""

    def __init__(self, signature: DataSignature, cfg: ITEACHConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.layer_weights = tuple(float(w) for w in cfg.distill_layer_weights)
        self.distill_norm = cfg.distill_norm
        # the trainer's weights, its own on the student's task loss being 1: 2 (L_emo + distill_weight L_rec)
        self.aux_weights = {"teacher_task": float(cfg.teacher_weight), "distill": 2.0 * float(cfg.distill_weight)}
        pool = {**ITEACH_MIXERS, **EXTRA_MIXERS}
        candidates = {name: partial(pool[name], cfg.hidden_dim, cfg.n_heads, cfg.max_len)
                      for name in cfg.mixers}
        self.student = ITEACHModel(signature, cfg, cfg.student_layers,
                                   lambda i, m: ctx.op(f"layer{i}.{m}.mixer", candidates))
        self.teacher = ITEACHModel.teacher(signature, cfg, cfg.teacher_layers)

    def distill(self, student: list[Tensor], teacher: list[Tensor], mask: Tensor) -> Tensor:
        """``L_rec`` (eq. 14, :func:`distance_loss`) with this config's layer weights and norm."""
        return distance_loss(student, teacher, mask, self.layer_weights, self.distill_norm)

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("iteach", self.signature, batch, complete=True)
        mask = batch.mask.bool()
        s_hidden = self.student(batch.features, mask)  # eq. 4, masked data
        logits = self.student.predict(s_hidden[-1], mask)
        aux: dict[str, Tensor] = {}
        if self.training:
            t_hidden = self.teacher(batch.complete, mask)  # eq. 3, complete data
            aux["teacher_task"] = task_loss(self.teacher.predict(t_hidden[-1], mask), batch, self.task)
            aux["distill"] = self.distill(s_hidden, t_hidden, mask)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights={k: self.aux_weights[k] for k in aux})


class ITEACHSpace(SearchSpace):
    """The ITEACH-Net search space: one token mixer per student layer and modality."""

    name = "iteach"
    Config = ITEACHConfig
    default_strategy = "router"  # ITEACH-Net searches with its per-utterance router (eqs. 8-9)
    presets = {"default": iteach_default, "paper": iteach_paper, "recurrent": iteach_recurrent}
    Network = ITEACHNetwork

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        check_encoder_config(where, cfg)
        checks.positive(where, student_layers=cfg.student_layers, teacher_layers=cfg.teacher_layers,
                        max_len=cfg.max_len)
        checks.distinct_names(where, "mixers", cfg.mixers, [*ITEACH_MIXERS, *EXTRA_MIXERS])
        weights, deepest = cfg.distill_layer_weights, min(cfg.student_layers, cfg.teacher_layers)
        if len(weights) > deepest or any(w < 0 for w in weights):
            raise NasmercError(f"{where}: distill_layer_weights={list(weights)}: expected at most "
                               f"min(student_layers, teacher_layers)={deepest} non-negative weights")
        checks.one_of(where, "distill_norm", cfg.distill_norm, DISTILL_NORMS)
        checks.non_negative(where, distill_weight=cfg.distill_weight, teacher_weight=cfg.teacher_weight)
