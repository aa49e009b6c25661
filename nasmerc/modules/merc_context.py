"""Conversational context models of the ``merc`` space, and :class:`PerKey`, which gives every stream or
fusion site of a network its own instance of one candidate.

A context model reads the rows of a conversation, ``forward(x, mask, speakers) -> [B, N, dim]``
(``x`` ``[B, N, dim]``, ``mask`` ``[B, N]`` bool, ``speakers`` ``[B, N]`` ids clamped into range),
zeros on padding:

- ``none``: the identity (no context: each utterance alone);
- ``lstm`` / ``bigru``: a bidirectional LSTM / GRU (``nasmerc.modules.encoders.BiRNN``, ``dim / 2``
  units per direction): the early- and late-fusion baselines' recurrent layers, MFMB-Net's BiLSTM (eq. 8);
- ``transformer``: :class:`~nasmerc.modules.merc.ConversationTransformer` at width ``dim`` (ITEACH-Net's
  and RMNAS's Transformer over the conversation);
- ``graph``: :class:`GraphContext`, a relational graph convolution then a graph-transformer layer over
  the utterance graph of ``nasmerc.modules.graph`` (CORECT's RT-GCN, Section 2.1, on one stream);
- ``dag``: :class:`DAGContext`, MultiDAG's DAG-GNN layers (``nasmerc.modules.dag``) with its readout
  of every layer.

With ``relations`` (the space's ``speaker = relations``), the graph has one relation type per
(past / future / self) x (same / other speaker) and the DAG reads the real speakers (DAG-ERC's
same / other speaker relations and its own-speaker window); without, the graph has the three
temporal relations and the DAG sees every utterance as by one speaker (its window then is the last
``window`` utterances, one relation). The models without relations read the speakers as an
embedding on their input instead (:class:`~nasmerc.modules.merc.SpeakerInput`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import RGCNConv, TransformerConv

from nasmerc.modules.dag import DAGLayer, dag_adjacency
from nasmerc.modules.encoders import BiRNN
from nasmerc.modules.graph import to_nodes, to_padded, utterance_graph
from nasmerc.modules.merc import ConversationTransformer, SpeakerInput

__all__ = ["PerKey", "NoContext", "RecurrentContext", "GraphContext", "DAGContext", "CONTEXTS",
           "context_candidates"]

#: The context model names :func:`context_candidates` knows.
CONTEXTS = ("none", "lstm", "bigru", "transformer", "graph", "dag")


class PerKey(nn.Module):
    """One instance of ``make()`` per key (a stream of the network: ``fused`` or a modality; or a fusion
    site: ``early`` / ``late``); ``forward(x, *args, key=k)`` runs key ``k``'s instance. Every
    candidate of an op choice is one, so a choice asked once gives each stream its own weights."""

    def __init__(self, make: Callable[[], nn.Module], keys: Sequence[str]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({k: make() for k in keys})

    def forward(self, x: Tensor, *args: Any, key: str) -> Tensor:
        return self.parts[key](x, *args)


class NoContext(nn.Module):
    """The identity: every utterance keeps its own state."""

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        return x * mask.to(x.dtype).unsqueeze(-1)


class RecurrentContext(nn.Module):
    """A bidirectional ``lstm`` / ``gru`` of ``dim / 2`` units per direction over the real rows."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        self.rnn = BiRNN(kind, dim, dim // 2)

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        return self.rnn(x, mask)


class GraphContext(nn.Module):
    """CORECT's RT-GCN on one stream: ``g = ReLU(RGCN(x))``, ``o = LeakyReLU(TransformerConv(g))``.

    The graph is :func:`~nasmerc.modules.graph.utterance_graph` (one node per real row, windowed
    past / future edges and self loops; ``past`` / ``future``: ``w_p``, ``w_f``, ``-1`` the whole
    conversation). With ``relations`` each edge's type is its temporal kind times whether source and
    target share a speaker (6 types), else the kind alone (3). The graph transformer has ``heads``
    heads of ``dim / heads`` concatenated (CORECT's BatchNorm after it is left out, so that a row never
    depends on other conversations of the batch).
    """

    def __init__(self, dim: int, relations: bool, past: int, future: int, heads: int) -> None:
        super().__init__()
        self.relations, self.window = relations, (past, future)
        self.rgcn = RGCNConv(dim, dim, 6 if relations else 3)
        self.transformer = TransformerConv(dim, dim // heads, heads=heads, concat=True)

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        graph = utterance_graph(mask, *self.window)
        edge_type = graph.edge_type
        if self.relations:
            spk = speakers[mask.bool()]
            edge_type = edge_type * 2 + (spk[graph.edge_index[0]] == spk[graph.edge_index[1]]).long()
        nodes = F.relu(self.rgcn(to_nodes(x, mask), graph.edge_index, edge_type))
        nodes = F.leaky_relu(self.transformer(nodes, graph.edge_index))
        return to_padded(nodes, mask)


class DAGContext(nn.Module):
    """MultiDAG's DAG-GNN on one stream: ``layers`` :class:`~nasmerc.modules.dag.DAGLayer` s over the
    conversation DAG of ``window`` (``omega``), and the readout ``Linear(||_{l=0}^{L} H^l)`` of every
    layer's output (MultiDAG reads the concatenation with its classifier; the Linear keeps the
    stream's width). Without ``relations`` every row counts as by one speaker."""

    def __init__(self, dim: int, layers: int, window: int, relations: bool, dropout: float) -> None:
        super().__init__()
        self.window, self.relations = window, relations
        self.layers = nn.ModuleList(DAGLayer(dim, dropout) for _ in range(layers))
        self.readout = nn.Linear(dim * (layers + 1), dim)

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        keep = mask.to(x.dtype).unsqueeze(-1)
        who = speakers if self.relations else torch.zeros_like(speakers)
        adjacency, same = dag_adjacency(who, mask, self.window)
        h, outputs = x, [x]
        for layer in self.layers:
            h = layer(h, adjacency, same) * keep
            outputs.append(h)
        return self.readout(torch.cat(outputs, dim=-1)) * keep


def context_candidates(dim: int, names: Sequence[str], keys: Sequence[str], *, relations: bool, n_speakers: int,
                       layers: int, heads: int, ffn_ratio: float, dropout: float, graph_window: tuple[int, int],
                       graph_heads: int, dag_layers: int, dag_window: int) -> dict[str, Callable[[], nn.Module]]:
    """Op-choice factories of the context models ``names``, each a :class:`PerKey` over ``keys``.

    With ``relations``, ``graph`` and ``dag`` use speaker relations and every other model reads a
    speaker embedding added to its input (:class:`~nasmerc.modules.merc.SpeakerInput`).
    """
    table: dict[str, Callable[[], nn.Module]] = {
        "none": NoContext,
        "lstm": lambda: RecurrentContext("lstm", dim),
        "bigru": lambda: RecurrentContext("gru", dim),
        "transformer": lambda: ConversationTransformer(dim, dim, layers, heads, ffn_ratio, dropout),
        "graph": lambda: GraphContext(dim, relations, *graph_window, graph_heads),
        "dag": lambda: DAGContext(dim, dag_layers, dag_window, relations, dropout),
    }

    def make(name: str) -> Callable[[], nn.Module]:
        if relations and name not in ("graph", "dag"):
            return lambda: SpeakerInput(n_speakers, dim, table[name]())
        return table[name]

    return {name: (lambda make_one=make(name): PerKey(make_one, keys)) for name in names}
