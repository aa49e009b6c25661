"""MultiDAG (dissertation Section 2.2, Figure 2.7) as a degenerate nasmerc space.

MultiDAG extends DAG-ERC's directed acyclic graph network to multimodal input:

1. **Modality encoders**: ``h_i^m = Enc_m(u_i^m)`` for every modality of the signature, here
   ``ReLU(Linear(D_m -> encoder_dim))`` then dropout.
2. **Concatenation**: ``H_i^0 = h_i^a (+) h_i^v (+) h_i^l`` (width ``M * encoder_dim``, the DAG width).
3. **DAG-GNN** (:class:`DAGLayer`, ``n_layers`` layers): every utterance receives information from its
   predecessors in the conversation DAG only (:func:`dag_adjacency`). Layer ``l`` computes, utterance by
   utterance (the states of the predecessors in the *same* layer must exist first):

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
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
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


# -- the conversation DAG -----------------------------------------------------------------------------
def dag_adjacency(speakers: Tensor, mask: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """DAG-ERC's graph of every conversation of a padded batch (the rule of ``MultiDAGConfig.window``).

    ``speakers`` and ``mask`` are ``[B, N]``. Returns ``adjacency`` ``[B, N, N]`` bool, true where
    ``j`` is a predecessor of ``i`` (an edge ``j -> i``, always ``j < i``, both real rows), and
    ``same`` ``[B, N, N]`` bool, true where ``i`` and ``j`` have the same speaker (the relation type).
    """
    n = speakers.shape[1]
    real = mask.bool()
    same = speakers.unsqueeze(2) == speakers.unsqueeze(1)
    earlier = torch.ones(n, n, dtype=torch.bool, device=speakers.device).tril(-1)  # j < i
    own = (same & earlier).to(torch.long)  # own[b, i, j]: j < i is by i's speaker
    # own-speaker utterances strictly between j and i: suffix sum over j' >= j, minus j itself
    between = own.flip(-1).cumsum(-1).flip(-1) - own
    adjacency = earlier & (between < window) & real.unsqueeze(2) & real.unsqueeze(1)
    return adjacency, same


def dag_edges(speakers: Tensor, mask: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """The DAG of one conversation (``speakers`` and ``mask`` ``[N]``) as ``edge_index`` ``[2, E]``
    (row 0 the predecessor ``j``, row 1 the utterance ``i``) and ``relation`` ``[E]`` (1 same speaker,
    0 other speaker), edges ordered by ``i`` then ``j``."""
    adjacency, same = dag_adjacency(speakers.unsqueeze(0), mask.unsqueeze(0), window)
    target, source = adjacency[0].nonzero(as_tuple=True)
    return torch.stack([source, target]), same[0, target, source].to(torch.long)


def lookback(adjacency: Tensor) -> int:
    """The longest edge ``i - j`` of ``adjacency`` ``[B, N, N]`` (0 without edges)."""
    n = adjacency.shape[-1]
    rows = torch.arange(n, device=adjacency.device)
    span = (rows.view(1, n, 1) - rows.view(1, 1, n)) * adjacency
    return int(span.max()) if span.numel() else 0


class DAGLayer(nn.Module):
    """One DAG-GNN layer (Section 2.2; DAG-ERC's attention, relation transform and two GRU units).

    - ``W_alpha`` acts on ``[H_j^l || H_i^{l-1}]``; it is split into a predecessor part (the last row
      of ``project``) and a node part (``query_score``), so that each score is computed once. As the
      paper's equation has it, the node part adds one value to all of node ``i``'s scores, which the
      softmax over ``j`` then removes: the weights depend on the predecessors' states.
    - ``W_0`` (other speaker) and ``W_1`` (same speaker) are the first ``2 d`` rows of ``project``.
    - ``node_gru`` is ``GRU_H`` (input ``H_i^{l-1}``, hidden ``M_i^l``), ``context_gru`` is ``GRU_M``
      (input ``M_i^l``, hidden ``H_i^{l-1}``); both are ``nn.GRUCell`` whose weights the recursion uses
      directly: the ``H^{l-1}`` sides of both units are computed for every node at once before the
      recursion, only the ``M_i^l`` sides run per node (the same GRU equations, fewer small steps).
    """

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.Linear(dim, 2 * dim + 1, bias=False)  # [W_0 H; W_1 H; w_key . H] of a new node
        self.query_score = nn.Linear(dim, 1, bias=False)
        self.node_gru = nn.GRUCell(dim, dim)  # GRU_H
        self.context_gru = nn.GRUCell(dim, dim)  # GRU_M
        self.drop = nn.Dropout(dropout)

    def _gru_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W_prev, b_prev, W_msg, b_msg)``: the gate pre-activations fed by ``H^{l-1}`` (GRU_H's input
        side, GRU_M's hidden side) and by ``M`` (GRU_H's hidden side, GRU_M's input side)."""
        node, ctx = self.node_gru, self.context_gru
        w_prev = torch.cat([node.weight_ih, ctx.weight_hh])
        b_prev = torch.cat([node.bias_ih, ctx.bias_hh])
        w_msg = torch.cat([node.weight_hh, ctx.weight_ih])
        b_msg = torch.cat([node.bias_hh, ctx.bias_ih])
        return w_prev, b_prev, w_msg, b_msg

    def forward(self, prev: Tensor, adjacency: Tensor, same: Tensor) -> Tensor:
        """``prev`` ``H^{l-1}`` ``[B, N, d]``; ``adjacency`` / ``same`` ``[B, N, N]``; returns ``H^l``."""
        b, n, d = prev.shape
        reach = lookback(adjacency)  # no edge spans more rows: older nodes are never needed
        # node part of W_alpha plus -inf-like bias off the DAG; rows without predecessor weigh nothing
        off = torch.finfo(prev.dtype).min / 2
        query = self.query_score(prev) + torch.where(adjacency, 0.0, off).to(prev.dtype)  # [B, N, N]
        has_pred = adjacency.any(-1, keepdim=True).to(prev.dtype)  # [B, N, 1]
        relation = torch.stack([~same, same], -1).to(prev.dtype)  # [B, N, N, 2]: one-hot r_ij
        w_prev, b_prev, w_msg, b_msg = self._gru_weights()
        from_prev = nn.functional.linear(prev, w_prev, b_prev).view(b, n, 2, 3, d)  # [GRU_H in, GRU_M hid]
        # per-node views by unbind: one cheap backward node instead of a full-size one per indexing
        rows_prev, rows_from_prev, rows_query = prev.unbind(1), from_prev.unbind(1), query.unbind(1)
        states: list[Tensor] = []
        keys: list[Tensor] = []  # [B, 2 d + 1] per computed node: W_0 H_j, W_1 H_j and the key score
        zero = prev.new_zeros(b, d)
        for i in range(n):  # the recursion: H_j^l for every j < i exists before node i
            lo = max(0, i - reach)
            if i == lo:
                message = zero
            else:
                past = torch.stack(keys[lo:], 1)  # [B, k, 2 d + 1]
                alpha = torch.softmax(past[..., -1] + rows_query[i][:, lo:i], -1) * has_pred[:, i]  # [B, k]
                weights = alpha.unsqueeze(-1) * relation[:, i, lo:i]  # [B, k, 2]: alpha_ij on r_ij
                message = torch.einsum("bkr,bkrd->bd", weights, past[..., :-1].view(b, i - lo, 2, d))  # M_i^l
            h = self._units(rows_from_prev[i], nn.functional.linear(message, w_msg, b_msg).view(b, 2, 3, d),
                            rows_prev[i], message)
            states.append(h)
            keys.append(self.project(h))
        return self.drop(torch.stack(states, 1))

    @staticmethod
    def _units(from_prev: Tensor, from_msg: Tensor, h_prev: Tensor, message: Tensor) -> Tensor:
        """``GRU_H(H_i^{l-1}, M_i^l) + GRU_M(M_i^l, H_i^{l-1})`` from the gate pre-activations
        ``[B, 2, 3, d]`` (unit, gate r / z / n): ``r, z = sigma(i_rz + h_rz)``,
        ``n = tanh(i_n + r * h_n)``, ``h' = (1 - z) n + z h``."""
        rz = torch.sigmoid(from_prev[:, :, :2] + from_msg[:, :, :2])  # [B, 2, 2, d]
        r, z = rz[:, :, 0], rz[:, :, 1]
        inputs_n = torch.stack([from_prev[:, 0, 2], from_msg[:, 1, 2]], 1)  # GRU_H: H^{l-1}; GRU_M: M
        hidden_n = torch.stack([from_msg[:, 0, 2], from_prev[:, 1, 2]], 1)
        cand = torch.tanh(inputs_n + r * hidden_n)
        hidden = torch.stack([message, h_prev], 1)  # GRU_H's hidden is M, GRU_M's is H^{l-1}
        return (cand + z * (hidden - cand)).sum(1)  # H~_i^l + C_i^l


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
