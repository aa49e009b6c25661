"""Three plain baselines as degenerate spaces: ``transformer``, ``late_fusion`` and ``early_fusion``.

- ``transformer`` (:class:`TransformerSpace`): the ITEACH-Net teacher alone (ITEACH-Net Section
  3.4, eq. 3 and Figure 2; the "PRE / TF" row of its Table 2): per-modality Transformer encoders
  (MetaFormer blocks with the ECCE-guided attention mixer) and, in every layer, cross attention with
  the text as the query. It is :class:`~search_spaces.iteach.ITEACHModel` built with attention
  mixers, trained on the masked features directly (no teacher, no distillation).
- ``late_fusion`` (:class:`LateFusionSpace`): per modality ``Linear -> BiGRU`` over the
  conversation and its own classifier; the prediction is the mean of the modality logits.
- ``early_fusion`` (:class:`EarlyFusionSpace`): the modality features concatenated,
  ``Linear -> BiLSTM`` over the conversation, one classifier.

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
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules.heads import TaskHead, check_batch, unimodal_outputs
from nasmerc.modules.iteach_mixers import AttentionMixer
from nasmerc.modules.encoders import BiRNN
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput
from search_spaces.iteach import ITEACHConfig, ITEACHModel

__all__ = ["TransformerConfig", "TransformerSpace", "transformer_default", "transformer_paper",
           "LateFusionConfig", "LateFusionSpace", "late_fusion_default", "late_fusion_paper",
           "EarlyFusionConfig", "EarlyFusionSpace", "early_fusion_default", "early_fusion_paper",
           "PAPER_DIMS", "PAPER_PARAMS"]

#: IEMOCAP features of the ITEACH-Net paper (Section 4.2, following GCNet): DeBERTa text 1024,
#: wav2vec audio 512, MA-Net visual 1024. Late and early fusion have no paper of their own and are
#: compared on the same features.
PAPER_DIMS = {"text": 1024, "audio": 512, "visual": 1024}
#: Parameter counts reported by a paper, per space: the ITEACH-Net teacher has 2.19 M (ITEACH-Net
#: Table 3); the two fusion baselines have no reported count.
PAPER_PARAMS: dict[str, int | None] = {"transformer": 2_190_000, "late_fusion": None, "early_fusion": None}


def _check_common(where: str, signature: DataSignature, positive: Mapping[str, int], dropout: float,
                  unimodal_weight: float) -> None:
    if not signature.modalities or any(m not in signature.dims for m in signature.modalities):
        raise NasmercError(f"{where}: the data signature needs modalities with dims, got "
                           f"{list(signature.modalities)}, {signature.dims}")
    for key, value in positive.items():
        if value < 1:
            raise NasmercError(f"{where}: {key}={value}: expected an integer >= 1")
    if not 0.0 <= dropout < 1.0:
        raise NasmercError(f"{where}: dropout={dropout}: expected a number in [0, 1)")
    if unimodal_weight < 0:
        raise NasmercError(f"{where}: unimodal_weight={unimodal_weight}: expected a number >= 0")
    if signature.n_outputs < 1:
        raise NasmercError(f"{where}: a classification signature needs classes, got none")



# -- transformer: the ITEACH-Net teacher alone ----------------------------------------------------
@dataclass
class TransformerConfig:
    """The ITEACH-Net teacher's sizes (see :class:`~search_spaces.iteach.ITEACHConfig`).

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


def iteach_config(cfg: TransformerConfig) -> ITEACHConfig:
    """The :class:`ITEACHConfig` whose teacher is this baseline."""
    return ITEACHConfig(hidden_dim=cfg.hidden_dim, n_heads=cfg.n_heads, ffn_ratio=cfg.ffn_ratio,
                        student_layers=cfg.n_layers, teacher_layers=cfg.n_layers, ecce_kernel=cfg.ecce_kernel,
                        ecce_dist=cfg.ecce_dist, ecce_dim=cfg.ecce_dim, use_ecce=cfg.use_ecce,
                        query_modality=cfg.query_modality, dropout=cfg.dropout)


class TransformerModel(nn.Module):
    """The ITEACH-Net teacher (:class:`ITEACHModel` with attention mixers) on the masked features."""

    def __init__(self, signature: DataSignature, cfg: TransformerConfig) -> None:
        super().__init__()
        self.signature = signature
        self.task = signature.task
        self.pooled = signature.level == "utterance"
        self.unimodal_weight = float(cfg.unimodal_weight)
        self.net = ITEACHModel(signature, iteach_config(cfg), cfg.n_layers,
                               lambda i, m: AttentionMixer(cfg.hidden_dim, cfg.n_heads))
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(cfg.hidden_dim, signature, cfg.dropout)
                                             for m in signature.modalities})

    def encode(self, features: Mapping[str, Tensor], mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The teacher's forward pass (ITEACH eq. 3), also returning each modality's last encoder output.

        Returns ``H_1`` (the fused query state of the last layer, as ``ITEACHModel.forward``) and the
        last layer's per-modality MetaFormer outputs before the cross attention.
        """
        net = self.net
        keep = mask.to(features[net.query].dtype).unsqueeze(-1)
        states = {m: net.drop(embed(features[m])) * keep for m, embed in net.embed.items()}
        biases = {m: (net.ecce[m](features[m], mask) if net.ecce is not None else None) for m in states}
        encoded = states
        for layer in net.layers:
            encoded = {m: block(states[m], biases[m], mask) for m, block in layer.blocks.items()}
            fused = encoded[net.query]
            for m, cross in layer.rounds.items():  # text stays the query (ITEACH eq. 7)
                fused = cross(fused, encoded[m], mask)
            states = {**encoded, net.query: fused}
        return states[net.query], encoded

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("transformer", self.signature, batch)
        mask = batch.mask.bool()
        fused, encoded = self.encode(batch.features, mask)
        logits = self.net.predict(fused, mask, pooled=self.pooled)
        if self.task == "regression":
            logits = logits.squeeze(-1)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, encoded, batch, self.task,
                                                      self.unimodal_weight)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class TransformerSpace(SearchSpace):
    """The ``transformer`` baseline: the ITEACH-Net teacher alone, nothing to choose."""

    name: ClassVar[str] = "transformer"
    Config: ClassVar[type] = TransformerConfig
    presets: ClassVar[dict[str, Any]] = {"default": transformer_default, "paper": transformer_paper}
    paper_params: ClassVar[int | None] = PAPER_PARAMS["transformer"]

    def __init__(self, signature: DataSignature, config: TransformerConfig | None = None) -> None:
        super().__init__(signature, config)
        cfg = self.config
        _check_common("space 'transformer'", signature,
                      {"hidden_dim": cfg.hidden_dim, "n_heads": cfg.n_heads, "n_layers": cfg.n_layers,
                       "ecce_dist": cfg.ecce_dist, "ecce_dim": cfg.ecce_dim}, cfg.dropout, cfg.unimodal_weight)
        if cfg.hidden_dim % cfg.n_heads:
            raise NasmercError(f"space 'transformer': hidden_dim={cfg.hidden_dim} must be divisible by "
                               f"n_heads={cfg.n_heads}")
        if cfg.ecce_kernel < 1 or cfg.ecce_kernel % 2 == 0:
            raise NasmercError(f"space 'transformer': ecce_kernel={cfg.ecce_kernel}: expected a positive odd number")
        if cfg.ffn_ratio <= 0:
            raise NasmercError(f"space 'transformer': ffn_ratio={cfg.ffn_ratio}: expected a number > 0")

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return TransformerModel(self.signature, self.config)


# -- late fusion ----------------------------------------------------------------------------------
@dataclass
class LateFusionConfig:
    """Sizes of the late-fusion baseline.

    - ``hidden_dim``: width of each modality's input ``Linear``; ``rnn_dim``: units per direction of
      its BiGRU (the classifier reads ``2 * rnn_dim``).
    - ``unimodal_weight``: weight of each modality classifier's own ``unimodal_{m}`` loss, on top of
      the task loss of the averaged logits (0: trained through the average only).
    - ``dropout``: after the input Linear and before each classifier.
    """

    hidden_dim: int = 64
    rnn_dim: int = 64
    unimodal_weight: float = 0.0
    dropout: float = 0.1


def late_fusion_default() -> LateFusionConfig:
    """Small and CPU-fast: Linear 64, BiGRU 64 units per direction."""
    return LateFusionConfig()


def late_fusion_paper() -> LateFusionConfig:
    """No paper defines this baseline: the width of the ITEACH-Net paper's encoder layers (128), Section 4.4."""
    return LateFusionConfig(hidden_dim=128, rnn_dim=128)


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

    def __init__(self, signature: DataSignature, cfg: LateFusionConfig) -> None:
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


class LateFusionSpace(SearchSpace):
    """The ``late_fusion`` baseline: nothing to choose."""

    name: ClassVar[str] = "late_fusion"
    Config: ClassVar[type] = LateFusionConfig
    presets: ClassVar[dict[str, Any]] = {"default": late_fusion_default, "paper": late_fusion_paper}
    paper_params: ClassVar[int | None] = PAPER_PARAMS["late_fusion"]

    def __init__(self, signature: DataSignature, config: LateFusionConfig | None = None) -> None:
        super().__init__(signature, config)
        cfg = self.config
        _check_common("space 'late_fusion'", signature, {"hidden_dim": cfg.hidden_dim, "rnn_dim": cfg.rnn_dim},
                      cfg.dropout, cfg.unimodal_weight)

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return LateFusionModel(self.signature, self.config)


# -- early fusion ---------------------------------------------------------------------------------
@dataclass
class EarlyFusionConfig:
    """Sizes of the early-fusion baseline.

    - ``hidden_dim``: width of the ``Linear`` on the concatenated features; ``rnn_dim``: units per
      direction of the BiLSTM (the classifier reads ``2 * rnn_dim``).
    - ``unimodal_weight``: weight of the ``unimodal_{m}`` losses of the per-modality heads; they are
      trained only through these losses (0: the heads stay untrained and the model is plain early fusion).
    - ``dropout``: after the fusion Linear and before the classifiers.
    """

    hidden_dim: int = 64
    rnn_dim: int = 64
    unimodal_weight: float = 0.0
    dropout: float = 0.1


def early_fusion_default() -> EarlyFusionConfig:
    """Small and CPU-fast: Linear 64, BiLSTM 64 units per direction."""
    return EarlyFusionConfig()


def early_fusion_paper() -> EarlyFusionConfig:
    """No paper defines this baseline: the width of the ITEACH-Net paper's encoder layers (128), Section 4.4."""
    return EarlyFusionConfig(hidden_dim=128, rnn_dim=128)


class EarlyFusionModel(nn.Module):
    """``[x_t; x_a; x_v] -> Linear -> Dropout -> BiLSTM -> classifier``.

    The fusion Linear is one ``nn.Linear`` over the concatenation; its output is computed as the sum
    of each modality's share ``p_m = W_m x_m`` (the columns of ``W`` that read modality ``m``) plus
    the bias, which is the same map. A small head per modality reads ``p_m``: the per-modality logits.
    """

    def __init__(self, signature: DataSignature, cfg: EarlyFusionConfig) -> None:
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


class EarlyFusionSpace(SearchSpace):
    """The ``early_fusion`` baseline: nothing to choose."""

    name: ClassVar[str] = "early_fusion"
    Config: ClassVar[type] = EarlyFusionConfig
    presets: ClassVar[dict[str, Any]] = {"default": early_fusion_default, "paper": early_fusion_paper}
    paper_params: ClassVar[int | None] = PAPER_PARAMS["early_fusion"]

    def __init__(self, signature: DataSignature, config: EarlyFusionConfig | None = None) -> None:
        super().__init__(signature, config)
        cfg = self.config
        _check_common("space 'early_fusion'", signature, {"hidden_dim": cfg.hidden_dim, "rnn_dim": cfg.rnn_dim},
                      cfg.dropout, cfg.unimodal_weight)

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return EarlyFusionModel(self.signature, self.config)
