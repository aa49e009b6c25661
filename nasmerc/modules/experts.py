"""Building blocks of hierarchical adaptive experts (HAEMSA, Qin et al., sec. 3.1 and 3.3, Figure 2).

- :class:`SequenceExpert`: an expert ``f(x; theta)`` (eqs. 1-4): a position-wise projection to the
  expert's width, a bidirectional GRU over the rows so that the expert sees the conversation (or the
  frames of an utterance), and a projection to the common hierarchy width;
- :class:`GatedFusionOp` and the table :data:`HIERARCHY_FUSIONS` of fusion functions ``g`` of eq. 5;
- :class:`FusionLevel`: one level of the hierarchy, eq. 5 applied to every stream;
- :class:`CrossModalIntegration`: attention across the streams of each row (Figure 2, C);
- :class:`TaskFeatureSelection`: task-query attention over the streams and a feature gate (Figure 2, D);
- :class:`TaskTowers`: one tower per task fed through task gates (Figure 2, E);
- :func:`kl_transfer` (eqs. 11-13) and :class:`UncertaintyWeights` (learned task weights of eq. 6).

Streams are stacked as one tensor ``[S, B, N, C]`` (modality streams first, the shared stream last),
so a level is an ordinary module with tensor input and output that a differentiable strategy could
mix. Every module returns zeros on padded rows. Importing this module defines classes only.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nasmerc.errors import NasmercError
from nasmerc.modules.encoders import rnn_input, rnn_precision
from nasmerc.modules.fusion_ops import AttentionOp, ConcatFCOp, SumOp
from nasmerc.modules.mixers import check_sequence
from nasmerc.modules.heads import masked_mean

__all__ = ["SequenceExpert", "GatedFusionOp", "HIERARCHY_FUSIONS", "FusionLevel", "CrossModalIntegration",
           "TaskFeatureSelection", "TaskTowers", "kl_transfer", "UncertaintyWeights", "masked_mean"]

CONTEXTS = ("gru", "none")


def _keep(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.dtype).unsqueeze(-1)


class SequenceExpert(nn.Module):
    """An expert ``h = f(x; theta)`` (HAEMSA eqs. 1-3, and eq. 4 for the shared expert on ``[x_t; x_a; x_v]``).

    ``GELU(Linear(D -> width))``, then (``context="gru"``) a bidirectional GRU of hidden size
    ``width`` over the real rows, then ``LN(Linear(. -> dim))``. The paper does not describe ``f``;
    the GRU is our choice so that each expert sees the conversation (dialogue-level data) or the
    frames of one sample (utterance-level data). ``context="none"`` keeps the expert position-wise.
    """

    def __init__(self, in_dim: int, width: int, dim: int, context: str = "gru", dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or width < 1 or dim < 1:
            raise NasmercError(f"SequenceExpert needs positive sizes, got in_dim={in_dim}, width={width}, dim={dim}")
        if context not in CONTEXTS:
            raise NasmercError(f"SequenceExpert: context={context!r}: expected one of {list(CONTEXTS)}")
        self.proj = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(dropout))
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True) if context == "gru" else None
        self.out = nn.Sequential(nn.Linear(2 * width if self.gru is not None else width, dim), nn.LayerNorm(dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``[B, N, D]``, ``mask`` ``[B, N]`` (real rows, left-aligned) -> ``[B, N, dim]``."""
        check_sequence(x, mask, "SequenceExpert")
        h = self.proj(x)
        if self.gru is not None:
            lengths = mask.sum(1).clamp(min=1).cpu()
            with rnn_precision(h):
                packed = pack_padded_sequence(rnn_input(h), lengths, batch_first=True, enforce_sorted=False)
                h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.out(h) * _keep(mask, x)


class GatedFusionOp(nn.Module):
    """``z = sigmoid(W [x; y] + b)``, ``g(x, y) = z * x + (1 - z) * y``: a gated fusion of eq. 5."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise NasmercError(f"GatedFusionOp needs dim >= 1, got {dim}")
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        check_sequence(x, mask, "GatedFusionOp")
        if x.shape != y.shape:
            raise NasmercError(f"GatedFusionOp expects x and y of one shape, got {list(x.shape)} and {list(y.shape)}")
        keep = _keep(mask, x)
        z = torch.sigmoid(self.gate(torch.cat([x, y], dim=-1)))
        return (z * x + (1.0 - z) * y) * keep


#: Fusion functions ``g`` of eq. 5: name -> constructor taking the width; ``forward(x, y, mask)``.
#: ``concat`` is ``ReLU(Linear([x; y]))``, ``sum`` is ``x + y``, ``gated`` is :class:`GatedFusionOp`,
#: ``attention`` attends from ``x`` over the rows of ``y`` (see ``nasmerc.modules.fusion_ops``).
HIERARCHY_FUSIONS: dict[str, Callable[[int], nn.Module]] = {
    "concat": ConcatFCOp,
    "sum": SumOp,
    "gated": GatedFusionOp,
    "attention": AttentionOp,
}


class FusionLevel(nn.Module):
    """Level ``i`` of the hierarchy, eq. 5 for every stream ``l``: ``h_l^(i) = g_l^(i)([h_l^(i-1); h_s^(i-1)])``.

    One fusion function type per level (the gene), one parameter set ``phi_l^(i)`` per stream. The
    shared stream is the last one; for ``l = s`` eq. 5 reads ``g_s([h_s; h_s])``, which we follow
    literally. Each stream keeps a residual and a LayerNorm, ``LN(h_l + Dropout(g_l(h_l, h_s)))``
    (our choice: without the residual an ``attention`` level would discard the modality stream).
    """

    def __init__(self, n_streams: int, fusion: str, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if fusion not in HIERARCHY_FUSIONS:
            raise NasmercError(f"FusionLevel: fusion={fusion!r}: expected one of {list(HIERARCHY_FUSIONS)}")
        self.fusion = fusion
        self.fuse = nn.ModuleList(HIERARCHY_FUSIONS[fusion](dim) for _ in range(n_streams))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(n_streams))
        self.drop = nn.Dropout(dropout)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """``states`` ``[S, B, N, C]`` (shared last), ``mask`` ``[B, N]`` -> the next level's states."""
        if states.dim() != 4 or states.shape[0] != len(self.fuse):
            raise NasmercError(f"FusionLevel expects states [{len(self.fuse)}, B, N, C], got {list(states.shape)}")
        shared = states[-1]
        keep = _keep(mask, shared)
        out = [norm(h + self.drop(g(h, shared, mask))) * keep
               for h, g, norm in zip(states, self.fuse, self.norms)]
        return torch.stack(out)


class CrossModalIntegration(nn.Module):
    """Collaborative cross-modal integration (Figure 2, C): at every row, the ``S`` stream vectors
    attend to one another (multi-head attention, residual, LN, FFN, residual, LN).

    ``available`` ``[B, N, S]`` marks streams a row may attend to (absent modalities are not keys);
    the paper gives no form for this block, this is the Transformer layer across streams.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, states: Tensor, available: Tensor, mask: Tensor) -> Tensor:
        """``states`` ``[S, B, N, C]`` -> ``[B, N, S, C]`` integrated stream vectors."""
        s, b, n, c = states.shape
        z = states.permute(1, 2, 0, 3).reshape(b * n, s, c)
        blocked = ~available.reshape(b * n, s).bool()
        blocked[:, -1] = False  # the shared stream is always a key, so no row is left without one
        a, _ = self.attn(z, z, z, key_padding_mask=blocked, need_weights=False)
        z = self.norm1(z + a)
        z = self.norm2(z + self.ffn(z))
        return z.reshape(b, n, s, c) * mask.to(z.dtype)[..., None, None]


class TaskFeatureSelection(nn.Module):
    """Attention-based task-driven feature selection (Figure 2, D).

    For task ``t`` a learned query ``q_t`` scores the streams of a row, ``a_tk = softmax_k(q_t . W_k z_k /
    sqrt(C))`` over the available streams, ``u_t = sum_k a_tk z_k``, then a feature gate selects
    channels: ``u_t * sigmoid(W_t u_t + b_t)``. The paper names the block only; this is our form.
    """

    def __init__(self, n_tasks: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_tasks, dim) / math.sqrt(dim))
        self.key = nn.Linear(dim, dim)
        self.gates = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_tasks))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, z: Tensor, available: Tensor) -> Tensor:
        """``z`` ``[B, N, S, C]``, ``available`` ``[B, N, S]`` -> ``[T, B, N, C]`` per-task features."""
        scores = torch.einsum("bnsc,tc->tbns", self.key(z), self.query) * self.scale
        allowed = available.bool().clone()
        allowed[..., -1] = True
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        u = torch.einsum("tbns,bnsc->tbnc", weights, z)
        return torch.stack([u[t] * torch.sigmoid(gate(u[t])) for t, gate in enumerate(self.gates)])


class TaskTowers(nn.Module):
    """An adaptive tower per task with task-driven gates (Figure 2, E), as in MMoE.

    Task ``t``'s gate ``softmax(G_t u_t)`` mixes the selected features of all tasks, ``v_t = sum_j
    g_tj u_j`` (so tasks share what helps them), and the tower ``Linear -> GELU -> Dropout -> Linear``
    maps ``v_t`` to task ``t``'s outputs. With one task the gate is the identity.
    """

    def __init__(self, n_outputs: list[int], dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        n = len(n_outputs)
        self.gates = nn.ModuleList(nn.Linear(dim, n) for _ in range(n))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, k)) for k in n_outputs
        )

    def forward(self, u: Tensor) -> list[Tensor]:
        """``u`` ``[T, ..., C]`` -> one ``[..., n_outputs[t]]`` tensor per task."""
        outs = []
        for t, (gate, tower) in enumerate(zip(self.gates, self.towers)):
            g = torch.softmax(gate(u[t]), dim=-1)  # [..., T]
            v = (g.movedim(-1, 0).unsqueeze(-1) * u).sum(0)
            outs.append(tower(v))
        return outs


def kl_transfer(teacher_logits: Tensor, student_logits: Tensor, keep: Tensor | None = None,
                detach_teacher: bool = True) -> Tensor:
    """HAEMSA eqs. 11-13: ``KL(p_s || p_m) = sum_y p_s log(p_s / p_m)``, averaged over the kept rows.

    ``teacher_logits`` (the shared expert) and ``student_logits`` (a modality expert) are ``[R, C]``;
    ``keep`` ``[R]`` bool selects rows (all when ``None``). The paper sums over samples; we average so
    the weight ``gamma`` does not depend on the batch size. With ``detach_teacher`` the gradient does
    not reach the teacher: knowledge flows from the shared expert to the modality experts only.
    No kept row gives a zero that still depends on the student (so backward works).
    """
    if teacher_logits.shape != student_logits.shape or teacher_logits.dim() != 2:
        raise NasmercError(f"kl_transfer expects two [R, C] logits of one shape, got "
                           f"{list(teacher_logits.shape)} and {list(student_logits.shape)}")
    if detach_teacher:
        teacher_logits = teacher_logits.detach()
    if keep is not None:
        teacher_logits, student_logits = teacher_logits[keep.bool()], student_logits[keep.bool()]
    if teacher_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_p_s = F.log_softmax(teacher_logits, dim=-1)
    log_p_m = F.log_softmax(student_logits, dim=-1)
    return (log_p_s.exp() * (log_p_s - log_p_m)).sum(-1).mean()


class UncertaintyWeights(nn.Module):
    """Learned task weights ``w_t`` of eq. 6 as homoscedastic uncertainty weighting (Kendall et al., 2018).

    ``sum_t exp(-s_t) L_t + s_t`` with one learned log-variance ``s_t`` per task (initialised at 0, so
    every weight starts at 1). The paper's "task-specific attention mechanism" is not specified.
    """

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))

    def weights(self) -> dict[str, float]:
        """The current ``exp(-s_t)`` per task name."""
        return {n: float(w) for n, w in zip(self.names, torch.exp(-self.log_vars.detach()))}

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        total = self.log_vars.sum() * 0.0
        for i, name in enumerate(self.names):
            total = total + torch.exp(-self.log_vars[i]) * losses[name] + self.log_vars[i]
        return total
