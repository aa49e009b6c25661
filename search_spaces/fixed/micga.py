"""Mi-CGA: Cross-modal Graph Attention Network for incomplete modalities, as a degenerate space.

The model follows Chapter 3 of the dissertation (Figure 3.2): two stages, IMR then CGA-Net.

1. **IMR, Incomplete Multimodal Representation.** Modality-specific encoders give ``x^(t)`` (a BiLSTM
   over the utterances of the conversation), ``x^(a)``, ``x^(v)`` (fully connected layers). The
   missing mask ``M`` (``batch.present``, drawn at the global rate ``rho`` by the trainer) gives
   ``X^miss = X (.) M``; the speaker embedding is concatenated with weight ``eta``:
   ``X^miss_spk = eta S_emb (+) X^miss`` (``[eta s; x^(m_1) m_1; ...; x^(m_M) m_M]`` per utterance).
2. **FE, Feature Estimation.** A GCN encoder ``f_phi`` (``GCNConv`` layers over the conversation
   graph, ``A~`` its self-looped normalised adjacency) and an MLP decoder ``g_theta`` give
   ``X^coarse = g_theta(f_phi(X^miss_spk, A~))``, and the smoothing step
   ``X^FE = (1 - lambda) X^coarse + lambda X^miss_spk``. Where a modality is observed its features
   enter with weight ``lambda``; where it is missing ``X^miss`` is zero and the estimate
   ``(1 - lambda) X^coarse`` fills it.
3. **MulGAT.** ``X_GAT = MulGAT(X^FE)``: one multi-head graph attention layer (``GATConv``, heads
   concatenated, ELU) over the same conversation graph.
4. **CMA, Cross-modal Attention.** For every modality pair ``(alpha, beta)``, scaled dot-product
   attention both ways between the ``alpha`` and ``beta`` blocks of ``X^FE`` over the utterances of the
   conversation: ``X^{alpha<->beta} = [LN(X_a + Attn(X_a, X_b, X_b)); LN(X_b + Attn(X_b, X_a, X_a))]``;
   ``X_Cross`` concatenates them over the pairs.
5. **Classifier and loss.** ``X_Final = [X_GAT, X_Cross]``, a feed-forward classifier with softmax
   (:class:`TaskHead`); ``L = L_cls + L_rct`` with ``L_rct`` the mean squared error between
   ``X^coarse`` and the representation ``X`` the encoders give to the complete features, over the
   masked positions only (``aux_losses["reconstruction"]``, training time only).

Choices of ours (the dissertation leaves them open; each is a config field):

- the conversation graph of FE and MulGAT links each utterance to its past ``window_past`` and future
  ``window_future`` utterances (11 / 5, the window of the authors' CORECT setting), plus self loops;
- the reconstruction target ``X`` is computed by the same encoders from ``batch.complete`` without
  gradient (a fixed target: a trainable one could shrink toward the estimate); MSE rather than KL;
- the CMA attention has learned projections (``nn.MultiheadAttention``), a residual and LayerNorm;
- the utterance-level (MOSI / MOSEI sentence) variant treats frames as the utterances of the graph.

With one modality there is no pair, and ``X_Final = X_GAT``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_geometric.nn import GATConv, GCNConv

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.modules.encoders import FCEncoder, rnn_input, rnn_precision
from nasmerc.modules.graph import to_nodes, to_padded, utterance_graph
from nasmerc.modules.heads import TaskHead, check_batch, present_mask, speaker_ids, unimodal_outputs
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import ModelOutput
from nasmerc.train.losses import masked_mean

__all__ = ["MiCGAConfig", "MiCGASpace", "MiCGAModel", "micga_default", "micga_paper", "PAPER_DIMS", "PAPER_PARAMS"]

#: IEMOCAP features of the incomplete-modality protocol Mi-CGA shares with GCNet: DeBERTa-large text
#: (1024), wav2vec-large audio (512), MA-Net visual (1024).
PAPER_DIMS = {"text": 1024, "audio": 512, "visual": 1024}
#: The dissertation reports no parameter count.
PAPER_PARAMS = None


@dataclass
class MiCGAConfig:
    """Sizes and weights of Mi-CGA (paper-setting values in :func:`micga_paper`).

    - ``hidden_dim``: width of each modality's representation ``x^(m)`` (the BiLSTM gives
      ``hidden_dim / 2`` per direction, so it must be even when text is used); ``lstm_layers``.
    - ``speaker_dim``, ``speaker_weight``: width of ``S_emb`` and ``eta`` of ``eta S_emb (+) X^miss``.
    - ``gcn_layers``, ``gcn_dim``: the GCN encoder ``f_phi``; ``decoder_dim``: hidden width of the MLP
      decoder ``g_theta`` (two layers).
    - ``smooth_lambda``: ``lambda`` of ``X^FE = (1 - lambda) X^coarse + lambda X^miss_spk``, in [0, 1].
    - ``window_past``, ``window_future``: the conversation graph of FE and MulGAT (``-1``: the whole
      conversation on that side).
    - ``gat_heads``, ``gat_dim``: MulGAT heads and width per head (heads concatenated).
    - ``cma_heads``: heads of each cross-modal attention (must divide ``hidden_dim``).
    - ``dropout``: after the encoders, in FE, MulGAT (attention), CMA and the classifier.
    - ``recon_weight``: weight of ``L_rct`` (``aux_losses["reconstruction"]``; 1: ``L = L_cls + L_rct``).
    - ``unimodal_weight``: weight of the per-modality task losses (0: Mi-CGA trains none).
    """

    hidden_dim: int = 32
    lstm_layers: int = 1
    speaker_dim: int = 16
    speaker_weight: float = 1.0
    gcn_layers: int = 2
    gcn_dim: int = 64
    decoder_dim: int = 64
    smooth_lambda: float = 0.5
    window_past: int = 11
    window_future: int = 5
    gat_heads: int = 2
    gat_dim: int = 32
    cma_heads: int = 2
    dropout: float = 0.2
    recon_weight: float = 1.0
    unimodal_weight: float = 0.0


def micga_default() -> MiCGAConfig:
    """Small and CPU-fast: width 32 per modality, speaker 16, GCN 2 x 64, 2 GAT heads of 32."""
    return MiCGAConfig()


def micga_paper() -> MiCGAConfig:
    """A paper-scale setting. The dissertation gives no sizes; we take the authors' CORECT setting
    where it applies (hidden 100, windows 11 / 5, 2 cross-modal heads, dropout 0.5), speaker
    embeddings of the hidden width, a two-layer GCN encoder and MLP decoder of width 200, 4 GAT heads
    of 100, ``lambda = 0.5`` and ``L = L_cls + L_rct`` (weight 1, as the dissertation writes it)."""
    return MiCGAConfig(hidden_dim=100, lstm_layers=1, speaker_dim=100, speaker_weight=1.0, gcn_layers=2, gcn_dim=200,
                       decoder_dim=200, smooth_lambda=0.5, window_past=11, window_future=5, gat_heads=4, gat_dim=100,
                       cma_heads=2, dropout=0.5, recon_weight=1.0)


class BiLSTMEncoder(nn.Module):
    """The text encoder of IMR (Chapter 3): a BiLSTM over the conversation, ``hidden / 2`` per direction.

    Each conversation is packed to its real length, so padding never reaches a real row.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        with rnn_precision(x):
            packed = pack_padded_sequence(rnn_input(x), lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class FeatureEstimation(nn.Module):
    """FE of CGA-Net (Chapter 3): ``X^coarse = g_theta(f_phi(X^miss_spk, A~))``.

    ``f_phi``: ``GCNConv`` layers with ReLU; ``g_theta``: a two-layer MLP back to the input width.
    """

    def __init__(self, node_dim: int, cfg: MiCGAConfig) -> None:
        super().__init__()
        dims = [node_dim] + [cfg.gcn_dim] * cfg.gcn_layers
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.drop = nn.Dropout(cfg.dropout)
        self.decoder = nn.Sequential(nn.Linear(cfg.gcn_dim, cfg.decoder_dim), nn.ReLU(),
                                     nn.Linear(cfg.decoder_dim, node_dim))

    def forward(self, nodes: Tensor, edge_index: Tensor) -> Tensor:
        h = nodes
        for conv in self.convs:
            h = self.drop(F.relu(conv(h, edge_index)))
        return self.decoder(h)


class CrossModalAttention(nn.Module):
    """CMA of CGA-Net (Chapter 3) for one pair: ``[LN(X_a + Attn(X_a, X_b, X_b)); LN(X_b + Attn(X_b, X_a, X_a))]``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.a_from_b = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.b_from_a = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_a = nn.LayerNorm(dim)
        self.norm_b = nn.LayerNorm(dim)

    def forward(self, xa: Tensor, xb: Tensor, mask: Tensor) -> Tensor:
        pad = ~mask
        a, _ = self.a_from_b(xa, xb, xb, key_padding_mask=pad, need_weights=False)
        b, _ = self.b_from_a(xb, xa, xa, key_padding_mask=pad, need_weights=False)
        return torch.cat([self.norm_a(xa + a), self.norm_b(xb + b)], dim=-1)


class MiCGAModel(nn.Module):
    """The Mi-CGA network for one data signature (Chapter 3, Figure 3.2; see the module docstring).

    IMR gives ``X^miss_spk``; CGA-Net estimates ``X^FE`` (FE), runs MulGAT and CMA on it and classifies
    ``X_Final = [X_GAT, X_Cross]``; in training ``L_rct`` is returned as ``aux_losses["reconstruction"]``.
    """

    def __init__(self, signature: DataSignature, cfg: MiCGAConfig) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = tuple(signature.modalities)
        self.n_speakers = max(1, int(signature.n_speakers))
        self.hidden = cfg.hidden_dim
        self.speaker_dim = cfg.speaker_dim
        self.eta = float(cfg.speaker_weight)
        self.lam = float(cfg.smooth_lambda)
        self.window = (int(cfg.window_past), int(cfg.window_future))
        self.recon_weight = float(cfg.recon_weight)
        self.unimodal_weight = float(cfg.unimodal_weight)
        h, m = cfg.hidden_dim, len(self.modalities)
        self.encoders = nn.ModuleDict({
            mod: (BiLSTMEncoder(signature.dims[mod], h, cfg.lstm_layers) if mod == "text"
                  else FCEncoder(signature.dims[mod], h))
            for mod in self.modalities
        })
        self.drop = nn.Dropout(cfg.dropout)
        self.speaker = nn.Embedding(self.n_speakers, cfg.speaker_dim)
        node_dim = cfg.speaker_dim + m * h
        self.fe = FeatureEstimation(node_dim, cfg)
        self.gat = GATConv(node_dim, cfg.gat_dim, heads=cfg.gat_heads, concat=True, dropout=cfg.dropout)
        self.pairs = [(a, b) for i, a in enumerate(self.modalities) for b in self.modalities[i + 1:]]
        self.cma = nn.ModuleDict({f"{a}_{b}": CrossModalAttention(h, cfg.cma_heads, cfg.dropout)
                                  for a, b in self.pairs})
        final = cfg.gat_heads * cfg.gat_dim + 2 * h * len(self.pairs)
        self.head = TaskHead(final, signature, cfg.dropout, hidden_dim=h)
        self.unimodal_heads = nn.ModuleDict({mod: TaskHead(h, signature, cfg.dropout) for mod in self.modalities})

    def encode(self, features: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """``X``: the modality encoders' ``[B, L, hidden]`` representations (before the missing mask)."""
        return {mod: self.encoders[mod](features[mod], mask) for mod in self.modalities}

    def blocks(self, x: Tensor) -> dict[str, Tensor]:
        """The modality blocks of a ``[..., speaker_dim + M hidden]`` tensor."""
        s, h = self.speaker_dim, self.hidden
        return {mod: x[..., s + k * h: s + (k + 1) * h] for k, mod in enumerate(self.modalities)}

    def reconstruction(self, coarse: Tensor, batch: Batch) -> Tensor:
        """``L_rct``: MSE of ``X^coarse`` to the complete representation ``X``, at the masked positions.
        For a batch of ``train.data=device`` (``batch.resident``) the same mean as masked sums over all
        modalities, nothing read back from the device."""
        mask = batch.mask.bool()
        with torch.no_grad():
            target = self.encode(batch.complete, mask)
        estimate = self.blocks(coarse)
        if batch.resident:
            errors = torch.stack([(estimate[mod] - target[mod]) ** 2 for mod in self.modalities], 2)  # [B, N, M, H]
            dropped = torch.stack([mask & ~present_mask(batch, mod) for mod in self.modalities], 2)  # [B, N, M]
            return masked_mean(errors.flatten(1, 2), dropped.flatten(1, 2))
        total, count = coarse.new_zeros(()), 0
        for mod in self.modalities:
            dropped = mask & ~present_mask(batch, mod)
            total = total + ((estimate[mod][dropped] - target[mod][dropped]) ** 2).sum()
            count += int(dropped.sum())
        return total / (count * self.hidden) if count else coarse.sum() * 0.0

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("micga", self.signature, batch)
        mask = batch.mask.bool()
        dtype = batch.features[self.modalities[0]].dtype
        # IMR: X^miss = X (.) M, X^miss_spk = eta S_emb (+) X^miss.
        observed = {mod: present_mask(batch, mod).unsqueeze(-1).to(dtype) for mod in self.modalities}
        x = self.encode(batch.features, mask)
        x_miss = {mod: self.drop(x[mod]) * observed[mod] for mod in self.modalities}
        s = self.speaker(speaker_ids(batch, self.n_speakers)) * mask.unsqueeze(-1).to(dtype)
        x_spk = torch.cat([self.eta * s] + [x_miss[mod] for mod in self.modalities], dim=-1)
        # CGA-Net: feature estimation, MulGAT, cross-modal attention.
        graph = utterance_graph(mask, *self.window, self_loops=False)
        nodes = to_nodes(x_spk, mask)
        coarse_nodes = self.fe(nodes, graph.edge_index)
        x_fe_nodes = (1.0 - self.lam) * coarse_nodes + self.lam * nodes
        x_gat = to_padded(F.elu(self.gat(x_fe_nodes, graph.edge_index)), mask)
        x_fe = to_padded(x_fe_nodes, mask)
        fe_blocks = self.blocks(x_fe)
        parts = [x_gat] + [self.cma[f"{a}_{b}"](fe_blocks[a], fe_blocks[b], mask) for a, b in self.pairs]
        final = torch.cat(parts, dim=-1) * mask.unsqueeze(-1).to(dtype)
        logits = self.head(final, mask)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, x_miss, batch, self.signature.task,
                                                      self.unimodal_weight)
        if self.training and self.recon_weight > 0:
            aux["reconstruction"] = self.reconstruction(to_padded(coarse_nodes, mask), batch)
            weights["reconstruction"] = self.recon_weight
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)


class MiCGASpace(FixedSpace):
    """Mi-CGA as a degenerate space: the architecture is empty, :meth:`network` asks nothing."""

    name = "micga"
    Config = MiCGAConfig
    presets = {"default": micga_default, "paper": micga_paper}
    Model = MiCGAModel

    def check_config(self) -> None:
        cfg, where, mods = self.config, self.where, self.signature.modalities
        checks.positive(where, hidden_dim=cfg.hidden_dim, lstm_layers=cfg.lstm_layers, speaker_dim=cfg.speaker_dim)
        if "text" in mods:  # IMR
            checks.even(where, "hidden_dim", cfg.hidden_dim, "the text BiLSTM has hidden_dim / 2 units per direction")
        checks.positive(where, gcn_layers=cfg.gcn_layers, gcn_dim=cfg.gcn_dim, decoder_dim=cfg.decoder_dim)  # FE
        checks.probability(where, smooth_lambda=cfg.smooth_lambda)
        checks.window(where, window_past=cfg.window_past, window_future=cfg.window_future)
        checks.positive(where, gat_heads=cfg.gat_heads, gat_dim=cfg.gat_dim, cma_heads=cfg.cma_heads)  # MulGAT, CMA
        if len(mods) > 1:
            checks.divisible(where, "hidden_dim", cfg.hidden_dim, "cma_heads", cfg.cma_heads)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, recon_weight=cfg.recon_weight, unimodal_weight=cfg.unimodal_weight)
