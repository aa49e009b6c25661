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
   other modalities go on with their encoder outputs.
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
  paper mentions none; ECCE is the order-aware part). Heads: ``LN -> Dropout -> Linear`` on ``H_1``.
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
from typing import Any, Callable, ClassVar, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules import AttentionOp, MetaFormerBlock
from nasmerc.modules.ecce import ECCEncoder
from nasmerc.modules.iteach_mixers import ITEACH_MIXERS, AttentionMixer
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import task_loss

__all__ = ["ITEACHConfig", "ITEACHSpace", "ITEACHNetwork", "ITEACHModel", "iteach_default", "iteach_paper"]


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


def iteach_paper() -> ITEACHConfig:
    """Section 4.4: width 128, FFN 4.0, 8 heads, kernel 7, dist_m 30, teacher 3 and student 4 layers."""
    return ITEACHConfig(hidden_dim=128, n_heads=8, ffn_ratio=4.0, student_layers=4, teacher_layers=3,
                        ecce_kernel=7, ecce_dist=30)


def check_config(cfg: ITEACHConfig, signature: DataSignature) -> None:
    """Raise a :class:`NasmercError` naming the first config field or signature entry that cannot work."""
    where = "space 'iteach'"
    positive = {"hidden_dim": cfg.hidden_dim, "n_heads": cfg.n_heads, "student_layers": cfg.student_layers,
                "teacher_layers": cfg.teacher_layers, "ecce_dist": cfg.ecce_dist, "ecce_dim": cfg.ecce_dim,
                "max_len": cfg.max_len}
    for key, value in positive.items():
        if value < 1:
            raise NasmercError(f"{where}: {key}={value}: expected an integer >= 1")
    if cfg.hidden_dim % cfg.n_heads:
        raise NasmercError(f"{where}: hidden_dim={cfg.hidden_dim} must be divisible by n_heads={cfg.n_heads}")
    if cfg.ecce_kernel < 1 or cfg.ecce_kernel % 2 == 0:
        raise NasmercError(f"{where}: ecce_kernel={cfg.ecce_kernel}: expected a positive odd number")
    if cfg.ffn_ratio <= 0 or not 0.0 <= cfg.dropout < 1.0:
        raise NasmercError(f"{where}: expected ffn_ratio > 0 and dropout in [0, 1), got "
                           f"ffn_ratio={cfg.ffn_ratio}, dropout={cfg.dropout}")
    bad = [n for n in cfg.mixers if n not in ITEACH_MIXERS]
    if not cfg.mixers or bad or len(set(cfg.mixers)) != len(cfg.mixers):
        raise NasmercError(f"{where}: mixers={list(cfg.mixers)}: expected distinct names from {list(ITEACH_MIXERS)}")
    weights = cfg.distill_layer_weights
    if len(weights) > min(cfg.student_layers, cfg.teacher_layers) or any(w < 0 for w in weights):
        raise NasmercError(f"{where}: distill_layer_weights={list(weights)}: expected at most "
                           f"min(student_layers, teacher_layers)={min(cfg.student_layers, cfg.teacher_layers)} "
                           f"non-negative weights")
    if cfg.distill_weight < 0 or cfg.teacher_weight < 0:
        raise NasmercError(f"{where}: expected distill_weight >= 0 and teacher_weight >= 0, got "
                           f"{cfg.distill_weight}, {cfg.teacher_weight}")
    if not signature.modalities or any(m not in signature.dims for m in signature.modalities):
        raise NasmercError(f"{where}: the data signature needs modalities with dims, got "
                           f"modalities={list(signature.modalities)}, dims={signature.dims}")
    if signature.n_outputs < 1:
        raise NasmercError(f"{where}: a classification signature needs classes, got none")


class CrossRound(nn.Module):
    """One round of cross attention (eq. 7): ``t = t + CrossAttn(LN(t), LN(a))``, ``t`` the query."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_key = nn.LayerNorm(dim)
        self.attention = AttentionOp(dim, n_heads)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, other: Tensor, mask: Tensor) -> Tensor:
        out = self.attention(self.norm_query(query), self.norm_key(other), mask)  # padded rows zero
        return query + self.drop(out)


class EncoderLayer(nn.Module):
    """An Encoder Layer (Section 3.4.1, Figure 2): an ITEACH Encoder per modality, then cross attention.

    ``forward`` returns the new per-modality states; the query modality's state is the fused ``H``.
    """

    def __init__(self, modalities: tuple[str, ...], query: str, mixers: Mapping[str, nn.Module],
                 cfg: ITEACHConfig) -> None:
        super().__init__()
        self.query = query
        self.blocks = nn.ModuleDict({
            m: MetaFormerBlock(cfg.hidden_dim, mixers[m], cfg.ffn_ratio, cfg.dropout) for m in modalities
        })
        self.rounds = nn.ModuleDict({
            m: CrossRound(cfg.hidden_dim, cfg.n_heads, cfg.dropout) for m in modalities if m != query
        })

    def forward(self, states: Mapping[str, Tensor], biases: Mapping[str, Tensor | None],
                mask: Tensor) -> dict[str, Tensor]:
        out = {m: block(states[m], biases[m], mask) for m, block in self.blocks.items()}
        fused = out[self.query]
        for m, cross in self.rounds.items():  # audio, then visual: text stays the query (eq. 7)
            fused = cross(fused, out[m], mask)
        out[self.query] = fused
        return out


class ITEACHModel(nn.Module):
    """A teacher or a student (eqs. 3-4): input projections, ECCE, Encoder Layers and a classifier.

    ``make_mixer(i, m)`` gives the token mixer of layer ``i`` and modality ``m``: a fixed attention
    mixer for the teacher, a choice for the student. ``forward`` returns the hidden features
    ``[H_L, ..., H_1]`` in layer order (``H_1``, closest to the classifier, is the last) and the
    :meth:`predict` is the classifier on ``H_1``.
    """

    def __init__(self, signature: DataSignature, cfg: ITEACHConfig, n_layers: int,
                 make_mixer: Callable[[int, str], nn.Module]) -> None:
        super().__init__()
        mods = tuple(signature.modalities)
        query = cfg.query_modality if cfg.query_modality in mods else mods[0]
        hidden = cfg.hidden_dim
        self.query = query
        self.embed = nn.ModuleDict({m: nn.Linear(signature.dims[m], hidden) for m in mods})
        self.drop = nn.Dropout(cfg.dropout)
        self.ecce = (nn.ModuleDict({m: ECCEncoder(signature.dims[m], cfg.n_heads, cfg.ecce_kernel, cfg.ecce_dist,
                                                  cfg.ecce_dim) for m in mods})
                     if cfg.use_ecce else None)
        self.layers = nn.ModuleList(
            EncoderLayer(mods, query, {m: make_mixer(i, m) for m in mods}, cfg) for i in range(n_layers)
        )
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(cfg.dropout),
                                  nn.Linear(hidden, signature.n_outputs))

    def forward(self, features: Mapping[str, Tensor], mask: Tensor) -> list[Tensor]:
        """``features[m]`` ``[B, N, D_m]``, ``mask`` ``[B, N]`` bool; returns the hiddens ``[B, N, hidden]``."""
        keep = mask.to(features[self.query].dtype).unsqueeze(-1)
        states = {m: self.drop(embed(features[m])) * keep for m, embed in self.embed.items()}
        biases: dict[str, Tensor | None] = {
            m: (self.ecce[m](features[m], mask) if self.ecce is not None else None) for m in states
        }  # eqs. 1-2
        hiddens = []
        for layer in self.layers:
            states = layer(states, biases, mask)
            hiddens.append(states[self.query])
        return hiddens

    def predict(self, last: Tensor, mask: Tensor, pooled: bool) -> Tensor:
        """Logits ``[B, N, n_outputs]`` per row, or with ``pooled`` ``[B, n_outputs]`` from the mean of
        ``last`` over the real rows (utterance-level tasks: one prediction per sample)."""
        if pooled:
            keep = mask.to(last.dtype).unsqueeze(-1)
            last = (last * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(last)


class ITEACHNetwork(nn.Module):
    """The ITEACH-Net model for one data signature: a Transformer teacher and a searched student."""

    def __init__(self, signature: DataSignature, cfg: ITEACHConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        self.modalities = tuple(signature.modalities)
        self.dims = {m: int(signature.dims[m]) for m in self.modalities}
        self.task = signature.task
        self.level = signature.level
        self.layer_weights = tuple(float(w) for w in cfg.distill_layer_weights)
        self.distill_weight = float(cfg.distill_weight)
        self.teacher_weight = float(cfg.teacher_weight)
        candidates = {name: partial(ITEACH_MIXERS[name], cfg.hidden_dim, cfg.n_heads, cfg.max_len)
                      for name in cfg.mixers}
        self.student = ITEACHModel(signature, cfg, cfg.student_layers,
                                   lambda i, m: ctx.op(f"layer{i}.{m}.mixer", candidates))
        self.teacher = ITEACHModel(signature, cfg, cfg.teacher_layers,
                                   lambda i, m: AttentionMixer(cfg.hidden_dim, cfg.n_heads))

    def _check(self, batch: Batch) -> None:
        for m in self.modalities:
            if m not in batch.features or m not in batch.complete:
                raise NasmercError(f"iteach: the batch has no modality {m!r} (it has {list(batch.modalities)})")
            if batch.features[m].shape[-1] != self.dims[m]:
                raise NasmercError(f"iteach: modality {m!r} has {batch.features[m].shape[-1]} features, "
                                   f"expected {self.dims[m]} from the data signature")

    def _readout(self, model: ITEACHModel, hiddens: list[Tensor], mask: Tensor) -> Tensor:
        """Dialogue: every row; utterance level: the pooled ``H_1`` (``[B, C]``); regression: one score."""
        logits = model.predict(hiddens[-1], mask, pooled=self.level == "utterance")
        return logits.squeeze(-1) if self.task == "regression" else logits

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
        self._check(batch)
        mask = batch.mask.bool()
        s_hidden = self.student(batch.features, mask)  # eq. 4, masked data
        logits = self._readout(self.student, s_hidden, mask)
        aux: dict[str, Tensor] = {}
        if self.training:
            t_hidden = self.teacher(batch.complete, mask)  # eq. 3, complete data
            aux["teacher_task"] = task_loss(self._readout(self.teacher, t_hidden, mask), batch, self.task)
            aux["distill"] = self.distill(s_hidden, t_hidden, mask)
        weights = {"teacher_task": self.teacher_weight, "distill": self.distill_weight}
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights={k: weights[k] for k in aux})


class ITEACHSpace(SearchSpace):
    """The ITEACH-Net search space: one token mixer per student layer and modality."""

    name: ClassVar[str] = "iteach"
    Config: ClassVar[type] = ITEACHConfig
    presets: ClassVar[dict[str, Any]] = {"default": iteach_default, "paper": iteach_paper}

    def __init__(self, signature: DataSignature, config: ITEACHConfig | None = None) -> None:
        super().__init__(signature, config)
        check_config(self.config, signature)

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return ITEACHNetwork(self.signature, self.config, ctx)
