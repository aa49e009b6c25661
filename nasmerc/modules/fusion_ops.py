"""Cell-step operations of BM-NAS as used by RMNAS for multi-level fusion (the search pool ``O_s``).

RMNAS fuses the outputs of its unimodal RMNAS blocks with BM-NAS: cells made of cell-steps, where
each step picks two inputs (``O_c`` = Identity / Zero, eq. 13) and combines them with one of five
operations: Zero, Sum, Attention, LinearGLU and ConcatFC. The RMNAS paper defers their exact form
to its appendix, which we do not have, so the definitions below are the ones BM-NAS is commonly
known for, written from their description (each class says what it computes):

- ``zero``: ``0`` (the step contributes nothing);
- ``sum``: ``x + y``;
- ``attention``: scaled dot-product attention with ``x`` as query and ``y`` as keys/values;
- ``linear_glu``: ``GLU(Linear(2C -> 2C)([x; y]))`` -> ``C``;
- ``concat_fc``: ``ReLU(Linear(2C -> C)([x; y]))``.

All share ``forward(x, y, mask) -> Tensor`` with ``x``, ``y`` ``[B, N, C]`` and ``mask`` ``[B, N]``
bool (True = real token). Every operation returns zeros on padded rows, so padding never leaks into
later steps, and the attention ignores padded keys.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc.errors import NasmercError
from nasmerc.modules.mixers import check_sequence, masked_softmax

__all__ = ["ZeroOp", "SumOp", "AttentionOp", "LinearGLUOp", "ConcatFCOp", "FUSION_OPS"]


def _check_pair(x: Tensor, y: Tensor, mask: Tensor, where: str) -> Tensor:
    """Validate a step's inputs and return the ``[B, N, 1]`` float keep-mask."""
    check_sequence(x, mask, where)
    if x.shape != y.shape:
        raise NasmercError(f"{where} expects x and y of the same shape, got {list(x.shape)} and {list(y.shape)}")
    return mask.to(x.dtype).unsqueeze(-1)


class ZeroOp(nn.Module):
    """``Zero(x, y) = 0``: lets the search switch a cell-step off. ``dim`` is unused."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Zeros shaped like ``x``."""
        _check_pair(x, y, mask, "ZeroOp")
        return torch.zeros_like(x)


class SumOp(nn.Module):
    """``Sum(x, y) = x + y`` (padded rows zeroed). Parameter-free; ``dim`` is unused."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Element-wise sum of the two inputs."""
        keep = _check_pair(x, y, mask, "SumOp")
        return (x + y) * keep


class AttentionOp(nn.Module):
    """Scaled dot-product attention of ``x`` (queries) over ``y`` (keys and values).

    ``softmax((x W_q)(y W_k)^T / sqrt(d)) (y W_v)`` per head, then ``W_o`` merges the heads. The
    learned projections are our choice (BM-NAS's attention is commonly described without them
    being specified); with them the operation can align the two inputs' feature spaces. Padded keys
    of ``y`` are ignored; padded query rows of the result are zero.
    """

    def __init__(self, dim: int, n_heads: int = 1) -> None:
        super().__init__()
        if dim < 1 or n_heads < 1 or dim % n_heads != 0:
            raise NasmercError(f"AttentionOp needs dim divisible by n_heads, got dim={dim}, n_heads={n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(dim // n_heads)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Attend from every token of ``x`` to the real tokens of ``y``."""
        keep = _check_pair(x, y, mask, "AttentionOp")
        q = self._heads(self.query(x))
        k = self._heads(self.key(y))
        v = self._heads(self.value(y) * keep)
        probs = masked_softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, mask)
        mixed = torch.matmul(probs, v).transpose(1, 2).reshape(x.shape)
        return self.out(mixed) * keep


class LinearGLUOp(nn.Module):
    """``GLU(Linear(2C -> 2C)([x; y]))``: a gated linear fusion of the concatenated inputs to ``C``.

    ``GLU(a; b) = a * sigmoid(b)`` over the two halves of the projection, so one half of the joint
    projection gates the other.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise NasmercError(f"LinearGLUOp needs dim >= 1, got {dim}")
        self.dim = dim
        self.proj = nn.Linear(2 * dim, 2 * dim)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Gated fusion of ``x`` and ``y`` token-wise."""
        keep = _check_pair(x, y, mask, "LinearGLUOp")
        return F.glu(self.proj(torch.cat([x, y], dim=-1)), dim=-1) * keep


class ConcatFCOp(nn.Module):
    """``ReLU(Linear(2C -> C)([x; y]))``: concatenation followed by a fully connected layer.

    BM-NAS implementations often add a normalisation layer here; we leave it out so that a token's
    result never depends on other tokens or on padding.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise NasmercError(f"ConcatFCOp needs dim >= 1, got {dim}")
        self.dim = dim
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``x`` and ``y`` token-wise through one ReLU layer."""
        keep = _check_pair(x, y, mask, "ConcatFCOp")
        return F.relu(self.proj(torch.cat([x, y], dim=-1))) * keep


#: The cell-step search pool ``O_s``: name -> constructor taking the channel dim ``C``.
FUSION_OPS: dict[str, Callable[[int], nn.Module]] = {
    "zero": ZeroOp,
    "sum": SumOp,
    "attention": AttentionOp,
    "linear_glu": LinearGLUOp,
    "concat_fc": ConcatFCOp,
}
