"""The four token mixers of the RMNAS search pool ``O_t`` (eqs. 7-12 of the RMNAS paper).

Every mixer has the same call signature so that a choice module can hold any of them:

``forward(h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor``

- ``h``: ``[B, N, D]``, the layer-normalised tokens; ``N`` includes the global token at position 0;
- ``lst``: ``[B, n_heads, N, N]`` LST bias from :class:`nasmerc.modules.lst.LSTEncoder` (``-inf``
  where two tokens must not interact), or ``None`` to mix without it (the "no LST" ablation);
- ``mask``: ``[B, N]`` bool, True for real tokens (the global token is real);
- result: ``[B, N, D]``.

Padded keys never contribute to a real token, and every output is finite, also on padded rows.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from nasmerc.errors import NasmercError
from nasmerc.modules.encoders import BiRNN

__all__ = [
    "RAttentionMixing",
    "RRandomMixing",
    "RPoolMixing",
    "RIdentityMixing",
    "RecurrentMixing",
    "EXTRA_MIXERS",
    "TOKEN_MIXERS",
    "masked_softmax",
    "check_sequence",
]


def check_sequence(h: Tensor, mask: Tensor, where: str) -> None:
    """Raise a one-line :class:`NasmercError` unless ``h`` is ``[B, N, D]`` and ``mask`` ``[B, N]``."""
    if h.dim() != 3:
        raise NasmercError(f"{where} expects a sequence of shape [B, N, D], got {list(h.shape)}")
    if tuple(mask.shape) != tuple(h.shape[:2]):
        raise NasmercError(f"{where} expects mask of shape {list(h.shape[:2])}, got {list(mask.shape)}")


def _check_bias(lst: Tensor, h: Tensor, where: str) -> None:
    """The LST bias must be ``[B, heads, N, N]`` (heads may be 1 and broadcast)."""
    b, n = h.shape[0], h.shape[1]
    if lst.dim() != 4 or lst.shape[0] != b or lst.shape[-2:] != (n, n):
        raise NasmercError(f"{where} expects lst of shape [{b}, heads, {n}, {n}], got {list(lst.shape)}")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last (key) axis of ``[B, H, Nq, Nk]`` scores that ignores padded keys.

    ``mask`` is ``[B, Nk]`` (True = real key). Keys at padding get ``-inf``. A row with no finite
    score left (only possible when a sample has no real key at all) gets all-zero weights instead of
    NaN, so the result is finite everywhere.
    """
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    alive = torch.isfinite(scores).any(dim=-1, keepdim=True)
    probs = torch.softmax(scores.masked_fill(~alive, 0.0), dim=-1)
    return probs * alive.to(probs.dtype)


def _split_heads(x: Tensor, n_heads: int) -> Tensor:
    """``[B, N, D] -> [B, heads, N, D / heads]``."""
    b, n, d = x.shape
    return x.view(b, n, n_heads, d // n_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``[B, heads, N, d] -> [B, N, heads * d]``."""
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


def _check_heads(dim: int, n_heads: int, where: str) -> None:
    if dim < 1 or n_heads < 1 or dim % n_heads != 0:
        raise NasmercError(f"{where} needs dim divisible by n_heads (both >= 1), got dim={dim}, n_heads={n_heads}")


class RAttentionMixing(nn.Module):
    """Multi-head self-attention guided by LST (eqs. 7-8).

    ``MixMap = (H W_q)(H W_k)^T / sqrt(d_qk) + LST`` per head (eq. 7), and the output is
    ``Softmax(MixMap) (H W_v)`` (eq. 8) followed by an output projection that merges the heads, as in
    a standard Transformer (the paper lists only ``W_q, W_k, W_v``; the projection is our choice).
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        _check_heads(dim, n_heads, "RAttentionMixing")
        self.dim = dim
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(dim // n_heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        """Eqs. 7-8 on ``h`` ``[B, N, D]``; padded keys are ignored, padded values zeroed."""
        check_sequence(h, mask, "RAttentionMixing")
        real = mask.bool()
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        v = v * real.unsqueeze(-1).to(v.dtype)
        q, k, v = (_split_heads(t, self.n_heads) for t in (q, k, v))
        mix_map = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if lst is not None:
            _check_bias(lst, h, "RAttentionMixing")
            mix_map = mix_map + lst
        probs = masked_softmax(mix_map, real)
        return self.proj(_merge_heads(torch.matmul(probs, v)))


class RRandomMixing(nn.Module):
    """Mixing by a frozen random matrix guided by LST (eqs. 9-10).

    ``MixMap = RM + LST`` (eq. 9) and the output is ``Softmax(MixMap) H`` (eq. 10), with ``H`` split
    over ``n_heads`` channel groups so that each group follows its own LST channel. ``RM`` is drawn
    once, uniform in ``[0, 1)`` (a near-uniform mixing before LST, as in MetaFormer's RandomMixing),
    is ``[max_len, max_len]`` and is sliced to ``[N, N]``. It is a persistent buffer, not a parameter:
    it is frozen, gets no gradient, and is saved with the model so a retrained architecture mixes
    the same way. The mixer has no trainable parameters.
    """

    def __init__(self, dim: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        _check_heads(dim, n_heads, "RRandomMixing")
        if max_len < 1:
            raise NasmercError(f"RRandomMixing needs max_len >= 1, got {max_len}")
        self.dim = dim
        self.n_heads = n_heads
        self.max_len = max_len
        self.register_buffer("random_matrix", torch.rand(max_len, max_len), persistent=True)

    def forward(self, h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        """Eqs. 9-10 on ``h`` ``[B, N, D]`` with ``N <= max_len``."""
        check_sequence(h, mask, "RRandomMixing")
        b, n, _ = h.shape
        if n > self.max_len:
            raise NasmercError(
                f"RRandomMixing was built for at most {self.max_len} tokens, got {n}; raise max_len"
            )
        real = mask.bool()
        rm = self.random_matrix[:n, :n].to(h.dtype)
        mix_map = rm.view(1, 1, n, n).expand(b, self.n_heads, n, n)
        if lst is not None:
            _check_bias(lst, h, "RRandomMixing")
            mix_map = mix_map + lst
        probs = masked_softmax(mix_map, real)
        values = _split_heads(h * real.unsqueeze(-1).to(h.dtype), self.n_heads)
        return _merge_heads(torch.matmul(probs, values))


class RPoolMixing(nn.Module):
    """Average pooling minus the input, as in PoolFormer (eq. 11).

    ``Output = AvgPool(H^T)^T - H`` with ``AvgPool1d(kernel=3, stride=1, padding=1)`` along the
    tokens. Padded tokens are zeroed before pooling and the average is taken over the real tokens
    of each window only (so the last real token averages itself and its real neighbour). The global
    token at position 0 is pooled like any other token. ``lst`` is not used (eq. 11 has none), and
    padded rows of the output are zero. ``dim`` is kept for a uniform constructor.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.pool = nn.AvgPool1d(kernel_size=3, stride=1, padding=1, count_include_pad=True)

    def forward(self, h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        """Eq. 11 on ``h`` ``[B, N, D]``; ``lst`` is accepted for the shared signature and ignored."""
        check_sequence(h, mask, "RPoolMixing")
        weight = mask.to(h.dtype).unsqueeze(-1)  # [B, N, 1]
        pooled = self.pool((h * weight).transpose(1, 2))  # mean of real values over 3 slots
        share = self.pool(weight.transpose(1, 2))  # fraction of real slots in each window
        average = (pooled / share.clamp(min=1e-6)).transpose(1, 2)
        return (average - h) * weight


class RIdentityMixing(nn.Module):
    """Identity mixing (eq. 12): ``Output = H``; the block then reduces to an FFN with residuals."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        """Eq. 12: return ``h`` unchanged."""
        return h


class RecurrentMixing(nn.Module):
    """A bidirectional GRU over the real tokens (``dim / 2`` units per direction): the conversational
    context model of the recurrent MERC baselines as a token mixer, so a searched space can express
    them. Not one of RMNAS's mixers: nasmerc's addition, offered by the ``recurrent`` presets of rmnas
    and iteach (their ``paper`` presets keep the papers' pools). ``lst`` / ``bias`` is not used; real
    tokens must come first in each row (the global token and the utterances do)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise NasmercError(f"recurrent mixing: width {dim} must be even (dim / 2 units per direction)")
        self.rnn = BiRNN("gru", dim, dim // 2)

    def forward(self, h: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        return self.rnn(h, mask.bool())


def _attention(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return RAttentionMixing(dim, n_heads)


def _random(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return RRandomMixing(dim, n_heads, max_len)


def _pool(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return RPoolMixing(dim)


def _identity(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return RIdentityMixing()


def recurrent(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return RecurrentMixing(dim)


#: The search pool ``O_t``: name -> constructor ``(dim, n_heads, max_len)`` (unused args ignored).
TOKEN_MIXERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "attention": _attention,
    "random": _random,
    "pool": _pool,
    "identity": _identity,
}
#: Mixers nasmerc adds to the papers' pools (rmnas and iteach list them in their ``recurrent`` presets).
EXTRA_MIXERS: dict[str, Callable[[int, int, int], nn.Module]] = {"recurrent": recurrent}
