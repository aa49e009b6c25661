"""Fusion operators and fusion positions of the ``merc`` space.

A fusion operator reads the ``M`` modality states of every row concatenated, ``forward(x, mask)`` with
``x`` ``[B, N, M * dim]`` (modality-major in signature order) and ``mask`` ``[B, N]`` bool, and returns
``[B, N, dim]``, zeros on padding (one tensor in, so a router weighs the candidates per row):

- ``concat``: ``Linear(M dim -> dim)`` of the concatenation (MultiDAG's ``H^0``, CORECT's final concatenation);
- ``sum``: ``sum_m x_m + b`` (with :class:`~nasmerc.modules.merc.Projection` encoders, the early-fusion
  baseline's single Linear over the concatenated features);
- ``attention``: :class:`AttentionFusion`, the mean of the modalities attending over the modalities of
  its row (CORECT's cross-modal attention and RMNAS / BM-NAS's attention step, per utterance);
- ``glu``: ``GLU(Linear(M dim -> 2 dim))`` (BM-NAS's LinearGLU over all modalities);
- ``hub``: :class:`HubFusion`, MFMB-Net's macro fusion: ``k`` learned hub tokens attend to each
  modality's sequence in turn (eqs. 4-6), and every row reads the hub back.

A fusion position (``forward(early, late)``, ``paths`` the paths it reads) says where the fusion sits
relative to the context model: ``early`` (fuse, then one context model over the fused stream),
``late`` (one context model per modality, then fuse) or ``both`` (the sum of the two paths, as
MFMB-Net's ``H = H_f + H_fusion``, eq. 16). :func:`paths_of` reads the paths a chosen, routed or
supernet position needs, so a fixed model builds only those.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConcatFusion", "SumFusion", "AttentionFusion", "GLUFusion", "HubFusion", "FUSIONS", "fusion_candidates",
           "EarlyPath", "LatePath", "BothPaths", "POSITIONS", "paths_of"]


def _keep(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.dtype).unsqueeze(-1)


class ConcatFusion(nn.Module):
    """``Linear(M dim -> dim)`` of the concatenated modality states."""

    def __init__(self, dim: int, n_modalities: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_modalities * dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.proj(x) * _keep(mask, x)


class SumFusion(nn.Module):
    """``sum_m x_m + b``: one learned bias, the only parameter."""

    def __init__(self, dim: int, n_modalities: int) -> None:
        super().__init__()
        self.n_modalities = n_modalities
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        parts = x.view(*x.shape[:-1], self.n_modalities, -1).unbind(-2)
        return (torch.stack(parts).sum(0) + self.bias) * _keep(mask, x)


class AttentionFusion(nn.Module):
    """Attention pooling over the modalities of each row: the mean state queries the ``M`` modality
    states (multi-head attention with learned projections), and the result is added to the mean."""

    def __init__(self, dim: int, n_modalities: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.n_modalities = n_modalities
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, _ = x.shape
        states = x.view(b * n, self.n_modalities, -1)  # one sequence of M modality tokens per row
        query = states.mean(1, keepdim=True)
        out, _ = self.attention(query, states, states, need_weights=False)
        return (query + out).view(b, n, -1) * _keep(mask, x)


class GLUFusion(nn.Module):
    """``GLU(Linear(M dim -> 2 dim))``: one half of the joint projection gates the other."""

    def __init__(self, dim: int, n_modalities: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_modalities * dim, 2 * dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.glu(self.proj(x), dim=-1) * _keep(mask, x)


class CrossBlock(nn.Module):
    """Pre-norm ``q + Attn(LN(q), LN(kv))`` then ``q + FFN(LN(q))``; ``pad`` ``[B, K]`` True on keys to ignore."""

    def __init__(self, dim: int, heads: int, ffn_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        inner = max(1, int(round(ffn_ratio * dim)))
        self.ffn = nn.Sequential(nn.Linear(dim, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, q: Tensor, kv: Tensor, pad: Tensor | None) -> Tensor:
        keys = self.norm_kv(kv)
        q = q + self.attention(self.norm_q(q), keys, keys, key_padding_mask=pad, need_weights=False)[0]
        return q + self.ffn(self.norm_ff(q))


class HubFusion(nn.Module):
    """MFMB-Net's macro fusion through a coarse hub (eqs. 4-7), read back per row.

    ``tokens`` learned hub tokens ``H_ker`` (``N(0, 0.02^2)``) visit the modalities in reverse
    signature order (visual, audio, then text for the default signature: the paper's order, the
    guiding text last); at each stage the hub attends to itself and the modality's real rows
    (:class:`CrossBlock`, eqs. 4-6). Every row then reads the final hub ``H_f`` (eq. 7): its mean state
    over the modalities attends to the hub tokens, and the result is added to that mean (eq. 16's
    ``H_f + H_fusion`` with a row's own mean as its local part).
    """

    def __init__(self, dim: int, n_modalities: int, tokens: int, heads: int, ffn_ratio: float,
                 dropout: float) -> None:
        super().__init__()
        self.n_modalities = n_modalities
        self.hub = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.stages = nn.ModuleList(CrossBlock(dim, heads, ffn_ratio, dropout) for _ in range(n_modalities))
        self.read = CrossBlock(dim, heads, ffn_ratio, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, _ = x.shape
        states = x.view(b, n, self.n_modalities, -1).unbind(2)
        hub = self.hub.unsqueeze(0).expand(b, -1, -1)
        pad = torch.cat([mask.new_zeros(b, hub.shape[1]), ~mask.bool()], dim=1)
        for stage, m in zip(self.stages, reversed(range(self.n_modalities))):
            hub = stage(hub, torch.cat([hub, states[m]], dim=1), pad)
        local = torch.stack(states).mean(0)
        return self.read(local, hub, None) * _keep(mask, x)


#: The fusion operator names :func:`fusion_candidates` knows.
FUSIONS = ("concat", "sum", "attention", "glu", "hub")


def fusion_candidates(dim: int, n_modalities: int, names: Sequence[str], *, heads: int, ffn_ratio: float,
                      dropout: float, hub_tokens: int) -> dict[str, Callable[[], nn.Module]]:
    """Factories of the fusion operators ``names`` for ``n_modalities`` states of width ``dim``."""
    table: dict[str, Callable[[], nn.Module]] = {
        "concat": lambda: ConcatFusion(dim, n_modalities),
        "sum": lambda: SumFusion(dim, n_modalities),
        "attention": lambda: AttentionFusion(dim, n_modalities, heads, dropout),
        "glu": lambda: GLUFusion(dim, n_modalities),
        "hub": lambda: HubFusion(dim, n_modalities, hub_tokens, heads, ffn_ratio, dropout),
    }
    return {name: table[name] for name in names}


class EarlyPath(nn.Module):
    """Fusion before the context model: the early path's output."""

    paths = ("early",)

    def forward(self, early: Tensor, late: Tensor | None) -> Tensor:
        return early


class LatePath(nn.Module):
    """Fusion after a context model per modality: the late path's output."""

    paths = ("late",)

    def forward(self, early: Tensor | None, late: Tensor) -> Tensor:
        return late


class BothPaths(nn.Module):
    """Both: ``early + late`` (MFMB-Net eq. 16 sums its macro and micro streams)."""

    paths = ("early", "late")

    def forward(self, early: Tensor, late: Tensor) -> Tensor:
        return early + late


#: The fusion positions: name -> module class.
POSITIONS: dict[str, Callable[[], nn.Module]] = {"early": EarlyPath, "late": LatePath, "both": BothPaths}


def paths_of(position: nn.Module) -> tuple[str, ...]:
    """The paths (``early``, ``late``) a position module reads: its own, or for a choice of several
    candidates (a supernet's choice, a routed op) those of all its candidates, in that order."""
    candidates = getattr(position, "candidates", None)
    if candidates is not None:
        used = {p for cand in candidates.values() for p in paths_of(cand)}
    else:
        used = set(position.paths)
    return tuple(p for p in ("early", "late") if p in used)
