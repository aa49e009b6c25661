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
   distance loss (eq. 14) ``distill = 0.5 |H_1^s - H_1|^2 + 0.1 |H_2^s - H_2|^2 + 0.05 |H_3^s - H_3|^2``
   pulls the student's last three hidden layers (``H_1`` is the last) toward the teacher's, whose
   hiddens are detached (no gradient reaches the teacher from it).

Dialogue-level tasks predict every utterance from ``H_1``; utterance-level tasks, whose rows are
frames, predict from the mean of ``H_1`` over the real frames (``[B, C]``). Regression gives one score
per row. The teacher runs only in training mode: at evaluation the model is the student alone.

Where the paper is silent or differs from what we do (each also documented where it is made):

- Input: ``Linear(D_m -> hidden)`` per modality and model, then dropout; no positional encoding (the
  paper mentions none; ECCE is the order-aware part). Heads: ``LN -> Dropout -> Linear`` on ``H_1``
  (:class:`~nasmerc.modules.heads.TaskHead`).
- Cross attention: pre-norm residual ``t = t + CrossAttn(LN(t), LN(a))`` with
  :class:`~nasmerc.modules.AttentionOp` (eq. 7 with learned projections, multi-head); no FFN after it.
- Distance (eq. 14): ``|.|^2`` is the squared error averaged over real rows and channels (MSE). The
  paper's "masked portions" are read as the real (unpadded) rows.
- Loss scale (eqs. 12, 15): the paper averages the two task losses (``1/2 L``) and adds ``L_rec``; the
  trainer adds the student's task loss with weight 1, so ``teacher_weight=1, distill_weight=2``
  reproduces eq. 15 up to a factor 2. The defaults are ``1.0`` / ``1.0``. For regression the trainer's
  loss is L1 (as MOSI / MOSEI training in nasmerc), not the MSE of eq. 13; the teacher uses the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
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
from nasmerc.train.losses import task_loss

__all__ = ["ITEACHConfig", "ITEACHSpace", "ITEACHNetwork", "iteach_default", "iteach_paper", "iteach_recurrent"]


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
      (0.5 / 0.1 / 0.05); ``distill_weight`` multiplies the whole ``distill`` loss and
      ``teacher_weight`` the ``teacher_task`` loss (see the module docstring for eq. 15's scale).
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
    distill_weight: float = 1.0
    teacher_weight: float = 1.0
    dropout: float = 0.1


def iteach_default() -> ITEACHConfig:
    """Small and CPU-fast: width 64, 4 heads, student 4 layers, teacher 3, ECCE kernel 7, dist 30."""
    return ITEACHConfig()


def iteach_recurrent() -> ITEACHConfig:
    """The default sizes with a recurrent (BiGRU) token mixer beside the paper's four (not in the paper)."""
    return ITEACHConfig(mixers=(*ITEACHConfig.mixers, "recurrent"))


def iteach_paper() -> ITEACHConfig:
    """Section 4.4: width 128, FFN 4.0, 8 heads, kernel 7, dist_m 30, teacher 3 and student 4 layers."""
    return ITEACHConfig(hidden_dim=128, n_heads=8, ffn_ratio=4.0, student_layers=4, teacher_layers=3,
                        ecce_kernel=7, ecce_dist=30)


class ITEACHNetwork(nn.Module):
    """The ITEACH-Net model for one data signature: a Transformer teacher and a searched student."""

    def __init__(self, signature: DataSignature, cfg: ITEACHConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.layer_weights = tuple(float(w) for w in cfg.distill_layer_weights)
        self.distill_weight = float(cfg.distill_weight)
        self.teacher_weight = float(cfg.teacher_weight)
        pool = {**ITEACH_MIXERS, **EXTRA_MIXERS}
        candidates = {name: partial(pool[name], cfg.hidden_dim, cfg.n_heads, cfg.max_len)
                      for name in cfg.mixers}
        self.student = ITEACHModel(signature, cfg, cfg.student_layers,
                                   lambda i, m: ctx.op(f"layer{i}.{m}.mixer", candidates))
        self.teacher = ITEACHModel.teacher(signature, cfg, cfg.teacher_layers)

    def distill(self, student: list[Tensor], teacher: list[Tensor], mask: Tensor) -> Tensor:
        """Eq. 14: ``sum_k w_k |H_k^s - H_k|^2`` over the last layers, the teacher's ``H_k`` detached.

        ``|.|^2`` is the mean squared error over real rows and channels.
        """
        real = mask.bool()
        total = student[-1].new_zeros(())
        for k, weight in enumerate(self.layer_weights):  # k = 0 is H_1, the last layer
            s, t = student[-1 - k][real], teacher[-1 - k].detach()[real]
            total = total + weight * F.mse_loss(s, t)
        return total

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
        weights = {"teacher_task": self.teacher_weight, "distill": self.distill_weight}
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights={k: weights[k] for k in aux})


class ITEACHSpace(SearchSpace):
    """The ITEACH-Net search space: one token mixer per student layer and modality."""

    name = "iteach"
    Config = ITEACHConfig
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
        checks.non_negative(where, distill_weight=cfg.distill_weight, teacher_weight=cfg.teacher_weight)
