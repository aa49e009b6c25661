"""The four token mixers of the ITEACH-Net search pool (Appendix C, eqs. C.1-C.5; eqs. 10-11).

Same call signature as the RMNAS mixers (:mod:`nasmerc.modules.mixers`), so that
:class:`~nasmerc.modules.metaformer.MetaFormerBlock` and the choice modules hold any of them:

``forward(h: Tensor, bias: Tensor | None, mask: Tensor) -> Tensor``

- ``h``: ``[B, N, D]`` layer-normalised utterance tokens (no global token in ITEACH-Net);
- ``bias``: ``[B, heads, N, N]``, the ECCE ``E_m`` (:class:`nasmerc.modules.ecce.ECCEncoder`), added to
  the mix map of attention-type mixers (eq. 10) and ignored by the others (they make no mix map);
- ``mask``: ``[B, N]`` bool, True for real utterances; result ``[B, N, D]``.

Padded tokens never change a real token's output and every output is finite. The pool mixers and
the MLP mixer zero their padded rows; the attention mixer leaves them finite (the block zeroes them).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasmerc.errors import NasmercError
from nasmerc.modules.mixers import RAttentionMixing, check_sequence

__all__ = ["AttentionMixer", "MLPMixer", "AvgPoolMixer", "MaxPoolMixer", "ITEACH_MIXERS"]


class AttentionMixer(RAttentionMixing):
    """Self-attention guided by ECCE: eqs. C.1-C.2 with the ECCE bias of eqs. 10-11.

    ``MixMap = (X W_q)(X W_k)^T / sqrt(C) + E_m`` and ``output = softmax(MixMap) (X W_v)``, per head,
    with an output projection merging the heads (standard multi-head attention; the paper lists only
    ``W_q, W_k, W_v``). The computation is :class:`~nasmerc.modules.mixers.RAttentionMixing`'s, reused.
    """


class MLPMixer(nn.Module):
    """Token-mixing MLP, eq. C.3: ``output = MLP(X^T)^T`` (the MLP acts along the utterance axis).

    ``MLP = Linear(max_len -> hidden) -> GELU -> Linear(hidden -> max_len)``, shared by all channels,
    as MLP-Mixer's token-mixing block. A fully connected layer over tokens needs a fixed length, so
    the sequence is zero-padded to ``max_len`` (padded utterances are zeroed too) and the output is
    cut back to ``N``: a real token's output then depends only on the real tokens, whatever the
    padding holds or how long the batch is. Longer sequences are refused with a message naming
    ``max_len``. ``bias`` is not used (no mix map).
    """

    def __init__(self, max_len: int, hidden: int | None = None) -> None:
        super().__init__()
        if max_len < 1:
            raise NasmercError(f"MLPMixer needs max_len >= 1, got {max_len}")
        hidden = max_len if hidden is None else hidden
        if hidden < 1:
            raise NasmercError(f"MLPMixer needs hidden >= 1, got {hidden}")
        self.max_len = max_len
        self.mlp = nn.Sequential(nn.Linear(max_len, hidden), nn.GELU(), nn.Linear(hidden, max_len))

    def forward(self, h: Tensor, bias: Tensor | None, mask: Tensor) -> Tensor:
        """Eq. C.3 on ``h`` ``[B, N, D]`` with ``N <= max_len``."""
        check_sequence(h, mask, "MLPMixer")
        n = h.shape[1]
        if n > self.max_len:
            raise NasmercError(f"MLPMixer was built for at most {self.max_len} utterances, got {n}; "
                               f"raise the space's max_len")
        keep = mask.to(h.dtype).unsqueeze(-1)
        tokens = F.pad((h * keep).transpose(1, 2), (0, self.max_len - n))  # [B, D, max_len]
        return self.mlp(tokens)[..., :n].transpose(1, 2) * keep


class AvgPoolMixer(nn.Module):
    """Average pooling over utterances, eq. C.4: ``output = AvgPool(X^T)^T``.

    ``AvgPool1d(kernel, stride=1, padding=kernel // 2)`` along the utterances, averaging over the real
    utterances of each window only (padding is neither counted nor read). The paper gives no kernel;
    3 is PoolFormer's. Unlike PoolFormer (and RMNAS's eq. 11) the input is not subtracted: eq. C.4
    has no ``- X``. ``bias`` is not used.
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise NasmercError(f"AvgPoolMixer kernel_size must be a positive odd number, got {kernel_size}")
        self.pool = nn.AvgPool1d(kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=True)

    def forward(self, h: Tensor, bias: Tensor | None, mask: Tensor) -> Tensor:
        """Eq. C.4 on ``h`` ``[B, N, D]``; padded rows of the result are zero."""
        check_sequence(h, mask, "AvgPoolMixer")
        keep = mask.to(h.dtype).unsqueeze(-1)
        total = self.pool((h * keep).transpose(1, 2))
        share = self.pool(keep.transpose(1, 2))  # fraction of real slots in each window
        return (total / share.clamp(min=1e-6)).transpose(1, 2) * keep


class MaxPoolMixer(nn.Module):
    """Max pooling over utterances, eq. C.5: ``output = MaxPool(X^T)^T``.

    ``MaxPool1d(kernel, stride=1, padding=kernel // 2)`` along the utterances; padded utterances are
    set to the dtype's lowest value first so they never win, and padded rows of the result are zero.
    The paper gives no kernel; 3 as for :class:`AvgPoolMixer`. ``bias`` is not used.
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise NasmercError(f"MaxPoolMixer kernel_size must be a positive odd number, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, h: Tensor, bias: Tensor | None, mask: Tensor) -> Tensor:
        """Eq. C.5 on ``h`` ``[B, N, D]``; padded rows of the result are zero."""
        check_sequence(h, mask, "MaxPoolMixer")
        real = mask.bool().unsqueeze(-1)
        low = torch.finfo(h.dtype).min
        filled = h.masked_fill(~real, low).transpose(1, 2)
        k = self.kernel_size
        pooled = F.max_pool1d(filled, k, stride=1, padding=k // 2).transpose(1, 2)
        return torch.where(real, pooled, torch.zeros_like(pooled))


def _attention(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return AttentionMixer(dim, n_heads)


def _mlp(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return MLPMixer(max_len)


def _avgpool(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return AvgPoolMixer()


def _maxpool(dim: int, n_heads: int, max_len: int) -> nn.Module:
    return MaxPoolMixer()


#: ITEACH-Net's candidate set ``O`` (Appendix C): name -> constructor ``(dim, n_heads, max_len)``.
ITEACH_MIXERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "attention": _attention,
    "mlp": _mlp,
    "avgpool": _avgpool,
    "maxpool": _maxpool,
}
