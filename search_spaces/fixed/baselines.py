"""Three plain baselines as degenerate spaces: ``transformer``, ``late_fusion`` and ``early_fusion``.

- ``transformer`` (:class:`TransformerSpace`): the ITEACH-Net teacher alone (ITEACH-Net Section
  3.4, eq. 3 and Figure 2; the "PRE / TF" row of its Table 2): per-modality Transformer encoders
  (MetaFormer blocks with the ECCE-guided attention mixer) and, in every layer, cross attention with
  the text as the query. It is :meth:`nasmerc.modules.iteach.ITEACHModel.teacher`, the encoder stack
  the ``iteach`` space also builds, trained on the masked features directly (no teacher, no
  distillation).
- ``late_fusion`` (:class:`LateFusionSpace`): per modality ``Linear -> BiGRU`` over the
  conversation and its own classifier; the prediction is the mean of the modality logits.
- ``early_fusion`` (:class:`EarlyFusionSpace`): the modality features concatenated,
  ``Linear -> BiLSTM`` over the conversation, one classifier.

The two fusion baselines share their sizes (:class:`RecurrentConfig`, named ``LateFusionConfig`` and
``EarlyFusionConfig`` for each) and presets.

Rows are the utterances of a conversation (dialogue-level tasks) or the frames of one sample
(utterance-level tasks, where :class:`~nasmerc.modules.heads.TaskHead` averages the real rows).
Missing modalities arrive as zero features; none of the three uses ``batch.present``.

Per-modality logits (``per_modality_logits``) and the ``unimodal_{m}`` losses, added when
``unimodal_weight`` > 0: the transformer's come from a head per modality on that modality's
last-layer encoder output (for the query modality, before its cross attention); late fusion's are
its modality classifiers themselves; early fusion's from a small head per modality on the
modality's share of the fusion Linear (``W_m x_m``, see :class:`EarlyFusionModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.encoders import BiRNN
from nasmerc.modules.heads import TaskHead, check_batch, unimodal_outputs
from nasmerc.modules.iteach import ITEACHModel, check_encoder_config
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput

__all__ = ["TransformerConfig", "TransformerSpace", "transformer_default", "transformer_paper",
           "RecurrentConfig", "recurrent_default", "recurrent_paper", "LateFusionConfig", "LateFusionSpace",
           "EarlyFusionConfig", "EarlyFusionSpace", "PAPER_DIMS", "PAPER_PARAMS"]

#: IEMOCAP features of the ITEACH-Net paper (Section 4.2, following GCNet): DeBERTa text 1024,
#: wav2vec audio 512, MA-Net visual 1024. Late and early fusion have no paper of their own and are
#: compared on the same features.
PAPER_DIMS = {"text": 1024, "audio": 512, "visual": 1024}
#: Parameter counts reported by a paper, per space: the ITEACH-Net teacher has 2.19 M (ITEACH-Net
#: Table 3); the two fusion baselines have no reported count.
PAPER_PARAMS: dict[str, int | None] = {"transformer": 2_190_000, "late_fusion": None, "early_fusion": None}


# -- transformer: the ITEACH-Net teacher alone ----------------------------------------------------
@dataclass
class TransformerConfig:
    """The ITEACH-Net teacher's sizes (the fields of :class:`~nasmerc.modules.iteach.EncoderConfig`).

    - ``hidden_dim``, ``n_heads``, ``ffn_ratio``: every Encoder Layer; ``n_layers``: their number.
    - ``ecce_kernel`` (``w``), ``ecce_dist`` (``dist_m``), ``ecce_dim`` (``d_z``), ``use_ecce``: the
      ECCE bias of the attention mixers.
    - ``query_modality``: the cross attention's query (text; else the signature's first modality).
    - ``unimodal_weight``: weight of the ``unimodal_{m}`` losses (0: ITEACH trains no unimodal head).
    - ``dropout``: after the input projections, inside blocks and heads.
    """

    hidden_dim: int = 64
    n_heads: int = 4
    ffn_ratio: float = 4.0
    n_layers: int = 3
    ecce_kernel: int = 7
    ecce_dist: int = 30
    ecce_dim: int = 32
    use_ecce: bool = True
    query_modality: str = "text"
    unimodal_weight: float = 0.0
    dropout: float = 0.1


def transformer_default() -> TransformerConfig:
    """The ``iteach`` space's default sizes: width 64, 4 heads, FFN 4.0, 3 layers, ECCE kernel 7, dist 30."""
    return TransformerConfig()


def transformer_paper() -> TransformerConfig:
    """ITEACH-Net Section 4.4: width 128, FFN ratio 4.0, 8 heads, ECCE kernel 7, dist_m 30, teacher 3 layers."""
    return TransformerConfig(hidden_dim=128, n_heads=8, ffn_ratio=4.0, n_layers=3, ecce_kernel=7, ecce_dist=30)


class TransformerModel(nn.Module):
    """The ITEACH-Net teacher (:meth:`ITEACHModel.teacher`, attention mixers) on the masked features."""

    def __init__(self, signature: DataSignature, cfg: TransformerConfig) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.unimodal_weight = float(cfg.unimodal_weight)
        self.net = ITEACHModel.teacher(signature, cfg, cfg.n_layers)
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(cfg.hidden_dim, signature, cfg.dropout)
                                             for m in signature.modalities})

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("transformer", self.signature, batch)
        mask = batch.mask.bool()
        hiddens, encoded = self.net.encode(batch.features, mask)  # ITEACH eq. 3
        logits = self.net.predict(hiddens[-1], mask)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, encoded, batch, self.task,
                                                      self.unimodal_weight)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class TransformerSpace(FixedSpace):
    """The ``transformer`` baseline: the ITEACH-Net teacher alone, nothing to choose."""

    name = "transformer"
    Config = TransformerConfig
    presets = {"default": transformer_default, "paper": transformer_paper}
    Model = TransformerModel
    paper_params = PAPER_PARAMS["transformer"]

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        check_encoder_config(where, cfg)
        checks.positive(where, n_layers=cfg.n_layers)
        checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)


# -- late and early fusion ------------------------------------------------------------------------
@dataclass
class RecurrentConfig:
    """Sizes of the two fusion baselines, ``late_fusion`` and ``early_fusion``.

    - ``hidden_dim``: width of the input ``Linear``: one per modality (late fusion), or one on the
      concatenated features (early fusion).
    - ``rnn_dim``: units per direction of the recurrent layer over the rows: each modality's BiGRU
      (late fusion), or the BiLSTM (early fusion); a classifier reads ``2 * rnn_dim``.
    - ``unimodal_weight``: weight of the ``unimodal_{m}`` losses (0: not added). Late fusion: each
      modality classifier's own loss, on top of the task loss of the averaged logits (0: trained
      through the average only). Early fusion: the only losses of the per-modality heads (0: they stay
      untrained and the model is plain early fusion).
    - ``dropout``: after the input Linear and before each classifier.
    """

    hidden_dim: int = 64
    rnn_dim: int = 64
    unimodal_weight: float = 0.0
    dropout: float = 0.1


#: The config of each fusion baseline's space.
LateFusionConfig = EarlyFusionConfig = RecurrentConfig


def recurrent_default() -> RecurrentConfig:
    """Small and CPU-fast: Linear 64, a recurrent layer of 64 units per direction."""
    return RecurrentConfig()


def recurrent_paper() -> RecurrentConfig:
    """No paper defines these baselines: the width of the ITEACH-Net paper's encoder layers (128), Section 4.4."""
    return RecurrentConfig(hidden_dim=128, rnn_dim=128)


class RecurrentSpace(FixedSpace):
    """What the two fusion baselines share: their config, presets and checks."""

    Config = RecurrentConfig
    presets = {"default": recurrent_default, "paper": recurrent_paper}

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        checks.positive(where, hidden_dim=cfg.hidden_dim, rnn_dim=cfg.rnn_dim)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)


class ModalityGRU(nn.Module):
    """``Linear(D_m -> hidden) -> Dropout -> BiGRU`` over the real rows: ``[B, N, 2 * rnn_dim]``."""

    def __init__(self, in_dim: int, hidden: int, rnn_dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.gru = BiRNN("gru", hidden, rnn_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.gru(self.drop(self.proj(x)), mask)


class LateFusionModel(nn.Module):
    """Per-modality encoders and classifiers; the logits are the mean of the modality logits."""

    def __init__(self, signature: DataSignature, cfg: RecurrentConfig) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.unimodal_weight = float(cfg.unimodal_weight)
        mods = signature.modalities
        self.encoders = nn.ModuleDict({m: ModalityGRU(signature.dims[m], cfg.hidden_dim, cfg.rnn_dim, cfg.dropout)
                                       for m in mods})
        self.heads = nn.ModuleDict({m: TaskHead(2 * cfg.rnn_dim, signature, cfg.dropout) for m in mods})

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("late_fusion", self.signature, batch)
        mask = batch.mask.bool()
        states = {m: enc(batch.features[m], mask) for m, enc in self.encoders.items()}
        per_modality, aux, weights = unimodal_outputs(self.heads, states, batch, self.task, self.unimodal_weight)
        logits = torch.stack([per_modality[m] for m in self.encoders]).mean(0)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class LateFusionSpace(RecurrentSpace):
    """The ``late_fusion`` baseline: nothing to choose."""

    name = "late_fusion"
    Model = LateFusionModel
    paper_params = PAPER_PARAMS["late_fusion"]


class EarlyFusionModel(nn.Module):
    """``[x_t; x_a; x_v] -> Linear -> Dropout -> BiLSTM -> classifier``.

    The fusion Linear is one ``nn.Linear`` over the concatenation; its output is computed as the sum
    of each modality's share ``p_m = W_m x_m`` (the columns of ``W`` that read modality ``m``) plus
    the bias, which is the same map. A small head per modality reads ``p_m``: the per-modality logits.
    """

    def __init__(self, signature: DataSignature, cfg: RecurrentConfig) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.unimodal_weight = float(cfg.unimodal_weight)
        mods = tuple(signature.modalities)
        self.modalities = mods
        starts = [0]
        for m in mods:
            starts.append(starts[-1] + signature.dims[m])
        self.columns = {m: (starts[i], starts[i + 1]) for i, m in enumerate(mods)}
        self.fuse = nn.Linear(starts[-1], cfg.hidden_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = BiRNN("lstm", cfg.hidden_dim, cfg.rnn_dim)
        self.head = TaskHead(2 * cfg.rnn_dim, signature, cfg.dropout)
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(cfg.hidden_dim, signature, cfg.dropout) for m in mods})

    def project(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's share ``W_m x_m`` of the fusion Linear (no bias)."""
        return {m: F.linear(features[m], self.fuse.weight[:, a:b]) for m, (a, b) in self.columns.items()}

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("early_fusion", self.signature, batch)
        mask = batch.mask.bool()
        shares = self.project(batch.features)
        fused = torch.stack(list(shares.values())).sum(0) + self.fuse.bias
        states = self.lstm(self.drop(fused), mask)
        logits = self.head(states, mask)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, shares, batch, self.task,
                                                      self.unimodal_weight)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class EarlyFusionSpace(RecurrentSpace):
    """The ``early_fusion`` baseline: nothing to choose."""

    name = "early_fusion"
    Model = EarlyFusionModel
    paper_params = PAPER_PARAMS["early_fusion"]
