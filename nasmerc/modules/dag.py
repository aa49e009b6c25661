"""The conversation DAG of DAG-ERC / MultiDAG (dissertation Section 2.2, Figure 2.7) and its GNN layer.

- :func:`dag_adjacency`: DAG-ERC's graph rule over a padded batch (an edge ``j -> i`` from every earlier
  utterance walking back from ``i - 1`` up to and including the ``window``-th earlier utterance by
  ``i``'s own speaker), with the same / other speaker relation of every pair;
- :func:`dag_edges`: the same graph of one conversation as an edge list;
- :func:`lookback`: the longest edge of an adjacency;
- :class:`DAGLayer`: one DAG-GNN layer (relation-aware attention over predecessors, two GRU units).

MultiDAG (``search_spaces/fixed/multidag.py``) stacks them over concatenated modality encodings; the
``merc`` space's ``dag`` context model (``nasmerc.modules.merc_context``) over any stream.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["dag_adjacency", "dag_edges", "lookback", "DAGLayer"]


def dag_adjacency(speakers: Tensor, mask: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """DAG-ERC's graph of every conversation of a padded batch (the rule of the module docstring).

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
