"""MultiDAG (dissertation Section 2.2, Figure 2.7) as a degenerate nasmerc space.

MultiDAG extends DAG-ERC's directed acyclic graph network to multimodal input:

1. **Modality encoders**: ``h_i^m = Enc_m(u_i^m)`` for every modality of the signature, here
   ``ReLU(Linear(D_m -> encoder_dim))`` then dropout.
2. **Concatenation**: ``H_i^0 = h_i^a (+) h_i^v (+) h_i^l`` (width ``M * encoder_dim``, the DAG width).
3. **DAG-GNN** (:class:`~nasmerc.modules.dag.DAGLayer`, ``n_layers`` layers): every utterance receives
   information from its predecessors in the conversation DAG only
   (:func:`~nasmerc.modules.dag.dag_adjacency`). Layer ``l`` computes, utterance by utterance (the
   states of the predecessors in the *same* layer must exist first):

   - ``alpha_ij = softmax_{j in N_i}( W_alpha [H_j^l || H_i^{l-1}] )``
   - ``M_i^l = sum_{j in N_i} alpha_ij W_{r_ij} H_j^l`` with ``r_ij`` = same / other speaker
   - node information unit ``H~_i^l = GRU_H(H_i^{l-1}, M_i^l)`` (input ``H_i^{l-1}``, hidden ``M_i^l``)
   - context information unit ``C_i^l = GRU_M(M_i^l, H_i^{l-1})`` (input ``M_i^l``, hidden ``H_i^{l-1}``)
   - ``H_i^l = H~_i^l + C_i^l``; a node without predecessor gets ``M_i^l = 0``.

4. **Readout**: ``H_i = ||_{l=0}^{L} H_i^l`` (every layer's output, the input layer included) through a
   feed-forward classifier (:class:`~nasmerc.modules.heads.TaskHead` with one hidden ReLU layer).

The curriculum of MultiDAG+CL (difficulty by emotion shifts, bins from easy to hard) is a training
plug-in and not part of the model. Missing modalities reach the encoders as zero features; the paper
gives MultiDAG no other treatment of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.dag import DAGLayer, dag_adjacency, dag_edges  # re-exported; they live there now
from nasmerc.modules.heads import TaskHead, check_batch, speaker_ids, unimodal_outputs
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput

__all__ = ["MultiDAGConfig", "MultiDAGSpace", "MultiDAGNetwork", "DAGLayer", "dag_adjacency", "dag_edges",
           "multidag_default", "multidag_paper", "PAPER_DIMS", "PAPER_PARAMS"]

#: IEMOCAP features of MultiDAG (the authors' published IEMOCAP setting): RoBERTa text (1024),
#: openSMILE audio (1582), DenseNet visual (342).
PAPER_DIMS = {"text": 1024, "audio": 1582, "visual": 342}
#: The paper reports no parameter count.
PAPER_PARAMS = None


@dataclass
class MultiDAGConfig:
    """Sizes of MultiDAG (paper values in :func:`multidag_paper`).

    - ``encoder_dim``: width of each modality encoder ``Enc_m``; the concatenation ``H^0`` and every
      DAG layer have width ``M * encoder_dim`` (300 for three modalities of 100, DAG-ERC's width).
    - ``n_layers``: DAG-GNN layers ``L``; the classifier reads ``L + 1`` concatenated states.
    - ``window``: ``omega`` of DAG-ERC's graph rule. Utterance ``i`` has an edge from every earlier
      utterance ``j`` of its conversation, walking back from ``i - 1``, up to and including the
      ``omega``-th earlier utterance by ``i``'s own speaker; with ``omega = 1`` (the paper's value) the
      predecessors are the other speakers' utterances since ``i``'s speaker last spoke, and that last
      utterance itself. When the speaker has spoken fewer than ``omega`` times before, every earlier
      utterance is a predecessor. The edge's relation is *same speaker* or *other speaker*.
    - ``mlp_hidden``: hidden width of the feed-forward classifier (0: a single linear layer).
    - ``dropout``: after the encoders, after each DAG layer and inside the classifier.
    - ``unimodal_weight``: weight of the per-modality task losses ``unimodal_{m}`` (0: not added;
      MultiDAG trains no unimodal head, the heads exist for modality-balancing plug-ins).
    """

    encoder_dim: int = 32
    n_layers: int = 2
    window: int = 1
    mlp_hidden: int = 96
    dropout: float = 0.2
    unimodal_weight: float = 0.0


def multidag_default() -> MultiDAGConfig:
    """Small and CPU-fast: encoders of 32 (DAG width 96 for three modalities), 2 DAG layers, window 1."""
    return MultiDAGConfig()


def multidag_paper() -> MultiDAGConfig:
    """The authors' published IEMOCAP setting (the dissertation text gives no sizes): DAG width 300
    (DAG-ERC's hidden size; here three encoders of 100), 4 DAG layers, window ``omega = 1``, a
    classifier of two layers (hidden 300), dropout 0.4."""
    return MultiDAGConfig(encoder_dim=100, n_layers=4, window=1, mlp_hidden=300, dropout=0.4)


class MultiDAGNetwork(nn.Module):
    """MultiDAG (Section 2.2, Figure 2.7) for one data signature: encoders, concatenation, DAG-GNN
    layers and the classifier on every layer's output (module docstring)."""

    def __init__(self, signature: DataSignature, cfg: MultiDAGConfig) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.window = cfg.window
        self.unimodal_weight = float(cfg.unimodal_weight)
        width = cfg.encoder_dim * len(self.modalities)
        self.encoders = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(signature.dims[m], cfg.encoder_dim), nn.ReLU(), nn.Dropout(cfg.dropout))
            for m in self.modalities
        })
        self.layers = nn.ModuleList(DAGLayer(width, cfg.dropout) for _ in range(cfg.n_layers))
        self.head = TaskHead(width * (cfg.n_layers + 1), signature, cfg.dropout, cfg.mlp_hidden)
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(cfg.encoder_dim, signature, cfg.dropout)
                                             for m in self.modalities})

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("multidag", self.signature, batch)
        mask = batch.mask.bool()
        keep = mask.unsqueeze(-1).to(batch.features[self.modalities[0]].dtype)
        encoded = {m: self.encoders[m](batch.features[m]) * keep for m in self.modalities}
        h = torch.cat([encoded[m] for m in self.modalities], dim=-1)  # H^0
        speakers = speaker_ids(batch, max(1, self.signature.n_speakers))
        adjacency, same = dag_adjacency(speakers, mask, self.window)
        outputs = [h]
        for layer in self.layers:
            h = layer(h, adjacency, same) * keep
            outputs.append(h)
        logits = self.head(torch.cat(outputs, dim=-1), mask)  # H_i = ||_l H_i^l
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, encoded, batch, self.signature.task,
                                                      self.unimodal_weight)
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class MultiDAGSpace(FixedSpace):
    """MultiDAG (Section 2.2) as a space with nothing to choose: the architecture is empty."""

    name = "multidag"
    Config = MultiDAGConfig
    presets = {"default": multidag_default, "paper": multidag_paper}
    Model = MultiDAGNetwork

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        checks.positive(where, encoder_dim=cfg.encoder_dim, n_layers=cfg.n_layers, window=cfg.window)
        checks.at_least(where, 0, mlp_hidden=cfg.mlp_hidden)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, unimodal_weight=cfg.unimodal_weight)
