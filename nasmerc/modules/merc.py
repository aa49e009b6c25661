"""Per-modality blocks of the ``merc`` space: missing-row treatments, unimodal encoders and the losses
that handle missing modalities.

Every block keeps the shapes of a padded batch: ``x`` ``[B, N, D]``, ``mask`` ``[B, N]`` bool (the
real rows), outputs zero on padding. The space (``search_spaces/merc.py``) offers them as op choices,
so the candidates of one choice share a call signature:

- missing-row treatments, ``forward(x, dropped) -> x'`` with ``dropped`` ``[B, N]`` bool (real rows
  whose modality was dropped): :class:`KeepZeros` (the batch's zeros, as CORECT and MultiDAG see a
  dropped modality) and :class:`MaskToken` (a learned embedding in place of the dropped rows, the
  ``[UNK]``-token treatment MFMB-Net's masking and ITEACH-Net's student read);
- unimodal encoders, ``forward(x, mask) -> [B, N, hidden]``: :class:`Projection` (a Linear without
  bias: the modality's share ``W_m x_m`` of an early-fusion Linear), :class:`LinearEncoder` (Linear +
  ReLU, MultiDAG's ``Enc_m``), ``nasmerc.modules.encoders.BiRNN`` and :class:`ConversationTransformer`
  (a small pre-norm Transformer over the rows with a key padding mask, CORECT's text encoder);
- :class:`SpeakerInput`: ``x + s`` with ``s`` a learned speaker embedding (CORECT's ``X = x + eta s``).

The missing-modality losses read the fused state of the model: :func:`reconstruction_loss` (MFMB-Net
eq. 18: SmoothL1 between a decoder's output and the complete features at the dropped rows) and
:func:`distill_loss` (ITEACH-Net's inverted teacher-student distance, here with the same network on
the complete features as its own teacher, no gradient to the target).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc.modules.encoders import BiRNN
from nasmerc.modules.positional import sinusoidal_positions
from nasmerc.train.losses import masked_mean

__all__ = ["KeepZeros", "MaskToken", "MISSING", "Projection", "LinearEncoder", "ConversationTransformer",
           "SpeakerInput", "NoPath", "ENCODERS", "encoder_candidates", "reconstruction_loss", "distill_loss"]


def _keep(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(like.dtype).unsqueeze(-1)


class KeepZeros(nn.Module):
    """A dropped row stays as the batch gives it (zeros): no parameter."""

    def forward(self, x: Tensor, dropped: Tensor) -> Tensor:
        return x


class MaskToken(nn.Module):
    """A learned embedding of the feature width replaces the modality's dropped rows (``N(0, 0.02^2)``
    at the start, as MFMB-Net's hub tokens); observed and padded rows are untouched."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(in_dim) * 0.02)

    def forward(self, x: Tensor, dropped: Tensor) -> Tensor:
        return torch.where(dropped.unsqueeze(-1), self.token.to(x.dtype).expand_as(x), x)


#: The missing-row treatments: name -> constructor taking the modality's feature width.
MISSING: dict[str, Callable[[int], nn.Module]] = {"zeros": lambda in_dim: KeepZeros(), "mask_token": MaskToken}


class Projection(nn.Module):
    """``W_m x_m``, a Linear without bias: with ``sum`` fusion the modalities' projections add up to
    one Linear over the concatenated features (early fusion's), whose bias is the fusion's.

    ``fan_in`` (default ``in_dim``) sets the initial range, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
    PyTorch's for a Linear: the space passes the width of all modalities together, so that the
    projections start as the columns of one Linear over the concatenated features would.
    """

    def __init__(self, in_dim: int, hidden: int, fan_in: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden, bias=False)
        bound = 1.0 / math.sqrt(fan_in or in_dim)
        nn.init.uniform_(self.proj.weight, -bound, bound)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.proj(x) * _keep(mask, x)


class LinearEncoder(nn.Module):
    """``ReLU(Linear(D_m -> hidden))`` per row: MultiDAG's modality encoder ``Enc_m``."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.relu(self.proj(x)) * _keep(mask, x)


class NoPath(nn.Module):
    """The modality is not read: zeros ``[B, N, hidden]``, no parameters and no gradient to the input
    (a search's way to give a modality no path, as DARTS' Zero operation switches an edge off)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x.new_zeros(*mask.shape[:2], self.hidden)


class ConversationTransformer(nn.Module):
    """A small pre-norm Transformer encoder over the rows of a conversation.

    ``Linear(in_dim -> dim)`` (left out when ``in_dim == dim``), the sinusoidal positional encoding
    (the rows' order; CORECT's text encoder leaves it to its graph, which this one may not have),
    ``layers`` ``nn.TransformerEncoderLayer`` (``norm_first``, GELU, feed-forward ``ffn_ratio * dim``)
    with padded rows masked as keys, and a final LayerNorm. Zeros on padding.
    """

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, ffn_ratio: float, dropout: float) -> None:
        super().__init__()
        self.into = nn.Identity() if in_dim == dim else nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, max(1, int(round(ffn_ratio * dim))), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor | None = None) -> Tensor:
        h = self.into(x)
        h = h + sinusoidal_positions(h.shape[1], h.shape[-1], h)
        return self.norm(self.encoder(h, src_key_padding_mask=~mask)) * _keep(mask, h)


class SpeakerInput(nn.Module):
    """``inner(x + s, mask, speakers)`` with ``s`` a learned embedding of each row's speaker (CORECT
    Section 2.1: ``X^tau = x^tau + eta s``, ``eta = 1``); without ``inner``, ``x + s`` alone."""

    def __init__(self, n_speakers: int, dim: int, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max(1, n_speakers), dim)
        self.inner = inner

    def forward(self, x: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        h = (x + self.embedding(speakers)) * _keep(mask, x)
        return h if self.inner is None else self.inner(h, mask, speakers)


def encoder_candidates(in_dim: int, hidden: int, names: tuple[str, ...], layers: int, heads: int,
                       ffn_ratio: float, dropout: float, total_dim: int | None = None
                       ) -> dict[str, Callable[[], nn.Module]]:
    """The unimodal encoders ``names`` (of ``projection``, ``linear``, ``bigru``, ``transformer``) for
    one modality of width ``in_dim``, as op-choice factories; each outputs ``[B, N, hidden]``.
    ``total_dim``: the width of all modalities together, the ``projection`` 's initial fan-in."""
    table: dict[str, Callable[[], nn.Module]] = {
        "projection": lambda: Projection(in_dim, hidden, total_dim),
        "linear": lambda: LinearEncoder(in_dim, hidden),
        "bigru": lambda: BiRNN("gru", in_dim, hidden // 2),
        "transformer": lambda: ConversationTransformer(in_dim, hidden, layers, heads, ffn_ratio, dropout),
    }
    return {name: table[name] for name in names}


#: The encoder names :func:`encoder_candidates` knows.
ENCODERS = ("projection", "linear", "bigru", "transformer")


def reconstruction_loss(pred: Tensor, target: Tensor, dropped: Tensor, *, resident: bool = False) -> Tensor:
    """MFMB-Net eq. 18: SmoothL1 (beta 1) between ``pred`` and ``target`` ``[B, N, D]`` over the
    elements of the ``dropped`` rows ``[B, N]``; 0 (with a graph) when no row is dropped. With
    ``resident`` (``Batch.resident``) the same mean as a masked sum, nothing read back from the device."""
    if resident:
        return masked_mean(F.smooth_l1_loss(pred, target.to(pred.dtype), reduction="none"), dropped)
    if not bool(dropped.any()):
        return pred.sum() * 0.0
    return F.smooth_l1_loss(pred[dropped], target[dropped].to(pred.dtype))


def distill_loss(state: Tensor, target: Tensor, rows: Tensor, *, resident: bool = False) -> Tensor:
    """Mean squared distance between ``state`` and the detached ``target`` ``[B, N, H]`` over ``rows``
    ``[B, N]`` (the real rows with a dropped modality); 0 (with a graph) when there is none. With
    ``resident`` the same mean as a masked sum (:func:`reconstruction_loss`)."""
    if resident:
        return masked_mean((state - target.detach()) ** 2, rows)
    if not bool(rows.any()):
        return state.sum() * 0.0
    return F.mse_loss(state[rows], target.detach()[rows])
