"""Conversation graphs for PyTorch Geometric layers, built from a padded :class:`~nasmerc.data.batch.Batch`.

Graph-based MERC models (CORECT's RT-GCN, Mi-CGA's feature estimation and MulGAT) run their graph
layers over one flat node set for the whole batch. This module turns the padded ``[B, L]`` layout
into that node set and back:

- the real rows of ``mask`` are numbered in batch order (conversation ``b``, then position ``i``):
  :func:`utterance_index`; an *utterance node set* has one node per real row
  (:func:`utterance_graph`), a *multimodal node set* has one node per (real row, modality), the node
  of row ``u`` and modality ``k`` being ``u * M + k`` (:func:`multimodal_graph`);
- :func:`to_nodes` flattens ``[B, L, H]`` states (or one such tensor per modality) into node
  features, :func:`to_padded` scatters node states back (zeros on padding).

Edges never cross conversations. Each edge goes ``source -> target`` (``edge_index[0]`` sends to
``edge_index[1]``, PyG's ``flow="source_to_target"``). Within a conversation, for a target row ``i``:

- *past*: a source row ``j < i`` with ``i - j <= past`` (the target hears its past);
- *future*: a source row ``j > i`` with ``j - i <= future``;
- *self*: ``j == i``.

A window of ``-1`` takes the whole conversation on that side. In a multimodal graph the temporal
edges link nodes of the same modality, and *cross-modal* edges link the nodes of one row across
modalities (source modality ``k`` to target modality ``l != k``).

Relation types (:func:`relation_names` lists them) are, for ``M`` modalities,
``kind * M + k`` for temporal kind ``past = 0``, ``future = 1``, ``self = 2`` of modality ``k``, then
``3 M + k * (M - 1) + (l if l < k else l - 1)`` for the cross-modal relation ``k -> l``: ``3M + M(M-1)``
relations in all (CORECT's ``R_temp`` per modality and ``R_multi``, Section 2.1 of the dissertation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from nasmerc.errors import NasmercError

__all__ = ["ConversationGraph", "PAST", "FUTURE", "SELF", "utterance_index", "temporal_pairs",
           "utterance_graph", "multimodal_graph", "relation_names", "n_relations", "to_nodes", "to_padded"]

PAST, FUTURE, SELF = 0, 1, 2
_KINDS = ("past", "future", "self")


@dataclass
class ConversationGraph:
    """One flat graph for a batch: ``edge_index`` ``[2, E]`` (source, target), ``edge_type`` ``[E]``.

    ``n_nodes`` is the number of nodes and ``n_relations`` the number of relation types the graph may
    use (some may have no edge in a given batch).
    """

    edge_index: Tensor
    edge_type: Tensor
    n_nodes: int
    n_relations: int


def _check_window(past: int, future: int) -> None:
    for name, value in (("past", past), ("future", future)):
        if value < -1:
            raise NasmercError(f"graph window {name}={value}: expected -1 (whole conversation) or an integer >= 0")


def utterance_index(mask: Tensor) -> Tensor:
    """``[B, L]`` long: the node number of every real row in batch order, ``-1`` on padding."""
    real = mask.bool()
    index = torch.cumsum(real.reshape(-1).long(), 0).reshape(real.shape) - 1
    return torch.where(real, index, torch.full_like(index, -1))


def temporal_pairs(mask: Tensor, past: int, future: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every windowed ``(source row, target row, kind)`` of the batch, rows numbered as
    :func:`utterance_index` numbers them; ``kind`` is :data:`PAST`, :data:`FUTURE` or :data:`SELF`."""
    _check_window(past, future)
    real = mask.bool()
    length = real.shape[1]
    pos = torch.arange(length, device=real.device)
    gap = pos.view(-1, 1) - pos.view(1, -1)  # [target i, source j]: i - j (> 0: the source is in the past)
    allowed = gap == 0
    allowed = allowed | ((gap > 0) & (gap <= past) if past >= 0 else gap > 0)
    allowed = allowed | ((gap < 0) & (-gap <= future) if future >= 0 else gap < 0)
    both = real.unsqueeze(2) & real.unsqueeze(1) & allowed.unsqueeze(0)  # [B, i, j]
    b, i, j = both.nonzero(as_tuple=True)
    index = utterance_index(real)
    d = i - j
    kind = torch.where(d > 0, torch.full_like(d, PAST), torch.where(d < 0, torch.full_like(d, FUTURE),
                                                                     torch.full_like(d, SELF)))
    return index[b, j], index[b, i], kind


def utterance_graph(mask: Tensor, past: int, future: int, self_loops: bool = True) -> ConversationGraph:
    """One node per real row, windowed temporal edges; relation types past / future / self (3).

    ``self_loops=False`` leaves out the ``i -> i`` edges (for layers that add their own, such as
    ``GCNConv`` and ``GATConv``).
    """
    src, dst, kind = temporal_pairs(mask, past, future)
    if not self_loops:
        keep = kind != SELF
        src, dst, kind = src[keep], dst[keep], kind[keep]
    n = int(mask.bool().sum())
    return ConversationGraph(torch.stack([src, dst]), kind, n, 3)


def n_relations(n_modalities: int) -> int:
    """``3 M`` temporal relations and ``M (M - 1)`` cross-modal ones."""
    return 3 * n_modalities + n_modalities * (n_modalities - 1)


def relation_names(modalities: Sequence[str]) -> list[str]:
    """Readable names of the relation types of :func:`multimodal_graph`, in relation-id order:
    ``past:text``, ..., ``self:visual``, then ``text->audio``, ..."""
    names = [f"{kind}:{m}" for kind in _KINDS for m in modalities]
    names += [f"{k}->{m}" for k in modalities for m in modalities if m != k]
    return names


def multimodal_graph(mask: Tensor, n_modalities: int, past: int, future: int, temporal: bool = True,
                     cross: bool = True) -> ConversationGraph:
    """One node per (real row, modality): node ``u * M + k``; see the module docstring for relations.

    ``temporal`` adds the windowed past / future / self edges within each modality; ``cross`` the
    edges between the modalities of one row. With ``temporal=False`` each node still keeps its self
    edge, so that every node has an incoming edge.
    """
    m = int(n_modalities)
    if m < 1:
        raise NasmercError(f"multimodal graph: n_modalities={m}: expected at least 1")
    src, dst, kind = temporal_pairs(mask, past, future) if temporal else temporal_pairs(mask, 0, 0)
    mods = torch.arange(m, device=src.device)
    sources = [(src.view(-1, 1) * m + mods).reshape(-1)]
    targets = [(dst.view(-1, 1) * m + mods).reshape(-1)]
    types = [(kind.view(-1, 1) * m + mods).reshape(-1)]
    n_rows = int(mask.bool().sum())
    if cross and m > 1:
        k, l = torch.meshgrid(mods, mods, indexing="ij")
        off = k != l
        k, l = k[off], l[off]
        pair = 3 * m + k * (m - 1) + torch.where(l < k, l, l - 1)
        rows = torch.arange(n_rows, device=src.device).view(-1, 1)
        sources.append((rows * m + k).reshape(-1))
        targets.append((rows * m + l).reshape(-1))
        types.append(pair.expand(n_rows, -1).reshape(-1))
    edge_index = torch.stack([torch.cat(sources), torch.cat(targets)])
    return ConversationGraph(edge_index, torch.cat(types), n_rows * m, n_relations(m))


def to_nodes(states: Tensor | Mapping[str, Tensor] | Sequence[Tensor], mask: Tensor) -> Tensor:
    """Node features from padded states.

    ``[B, L, H]`` gives the utterance node set ``[N, H]``; a mapping or sequence of ``M`` such tensors
    (one per modality, in order) gives the multimodal node set ``[N * M, H]`` (node ``u * M + k``).
    """
    real = mask.bool()
    if isinstance(states, Tensor):
        return states[real]
    parts = list(states.values()) if isinstance(states, Mapping) else list(states)
    return torch.stack([p[real] for p in parts], dim=1).reshape(-1, parts[0].shape[-1])


def to_padded(nodes: Tensor, mask: Tensor, n_modalities: int = 0) -> Tensor:
    """Scatter node states back: ``[B, L, H]`` for an utterance node set (``n_modalities=0``), or
    ``[B, L, M, H]`` for a multimodal one; padding rows are zeros.

    Each row gathers its node by :func:`utterance_index` (padding rows read node 0 and are then
    zeroed) instead of scattering through a boolean mask, whose ``nonzero`` (forward and backward)
    would read the mask back from the device; the values, and the gradients, are those of the
    scatter. The count of real rows is still read once, to refuse a node set of another size.
    """
    real = mask.bool()
    rows = int(real.sum())
    if n_modalities and nodes.shape[0] != rows * n_modalities:
        raise NasmercError(f"to_padded: {nodes.shape[0]} nodes, expected {rows} rows x {n_modalities} modalities")
    if not n_modalities and nodes.shape[0] != rows:
        raise NasmercError(f"to_padded: {nodes.shape[0]} nodes, expected one per real row ({rows})")
    per_row = nodes.reshape(rows, n_modalities, nodes.shape[-1]) if n_modalities else nodes
    if rows == 0:
        return per_row.new_zeros(*real.shape, *per_row.shape[1:])
    index = utterance_index(real).clamp(min=0)
    out = per_row.index_select(0, index.reshape(-1)).reshape(*real.shape, *per_row.shape[1:])
    keep = real.reshape(*real.shape, *[1] * (out.dim() - 2))
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))
