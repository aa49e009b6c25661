"""The RMNAS block: a MetaFormer (Transformer with a pluggable token mixer), eqs. 4-6 of RMNAS.

RMNAS keeps the overall Transformer structure and searches only the token mixer of each block
(``O_t = {RAttentionMixing, RRandomMixing, RPoolMixing, RIdentityMixing}``). The block below is
written for a single mixer module; the search space passes either one concrete mixer (a retrained
architecture) or a choice module that mixes several candidates with the same call signature (the
softmax over ``alpha`` of eq. 5 then lives inside that module, not here).

Shapes follow the mixers' contract: ``x`` is ``[B, N, D]`` with the global token at position 0,
``lst`` is ``[B, n_heads, N, N]`` or ``None``, and ``mask`` ``[B, N]`` bool (True = real token).
"""

from __future__ import annotations

from torch import Tensor, nn

from nasmerc.errors import NasmercError
from nasmerc.modules.mixers import check_sequence

__all__ = ["MetaFormerBlock", "FeedForward"]


class FeedForward(nn.Module):
    """The Transformer feed-forward block: ``Linear(D, rD) -> GELU -> Dropout -> Linear(rD, D) -> Dropout``.

    The paper says only "FFN" with a hidden ratio of 4.0; GELU and the dropout placement follow
    the usual MetaFormer/ViT MLP, our choice.
    """

    def __init__(self, dim: int, ffn_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * ffn_ratio)))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the two-layer MLP token-wise to ``x`` ``[..., D]``."""
        return self.net(x)


class MetaFormerBlock(nn.Module):
    """One RMNAS block (eqs. 4-6) around a given token mixer.

    - eq. 4: ``H = LN(F)``;
    - eq. 5: ``H' = mixer(H, lst, mask) + F`` (the mixer may itself be a softmax(alpha)-weighted
      mixture of the candidates in ``O_t``);
    - eq. 6: ``F' = FFN(LN(H')) + H'``.

    Pre-norm residual layout as in the paper's equations. Padded rows of the output are zeroed
    (multiplied by ``mask``) so padding content never travels to the next block; the real rows
    depend only on real tokens as long as the mixer ignores padded keys, which every mixer in
    :mod:`nasmerc.modules.mixers` does.

    Args:
        dim: token width ``D`` (448 in the paper).
        mixer: any module with ``forward(h, lst, mask) -> [B, N, D]``.
        ffn_ratio: hidden width of the FFN relative to ``dim`` (4.0 in the paper).
        dropout: dropout after the mixer and inside the FFN.
    """

    def __init__(self, dim: int, mixer: nn.Module, ffn_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim < 1:
            raise NasmercError(f"MetaFormerBlock needs dim >= 1, got {dim}")
        if ffn_ratio <= 0:
            raise NasmercError(f"MetaFormerBlock needs ffn_ratio > 0, got {ffn_ratio}")
        if not 0.0 <= dropout < 1.0:
            raise NasmercError(f"MetaFormerBlock needs dropout in [0, 1), got {dropout}")
        self.dim = dim
        self.norm_mix = nn.LayerNorm(dim)
        self.mixer = mixer
        self.drop_mix = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_ratio, dropout)

    def forward(self, x: Tensor, lst: Tensor | None, mask: Tensor) -> Tensor:
        """Eqs. 4-6 on ``x`` ``[B, N, D]``; returns ``[B, N, D]`` with padded rows zero."""
        check_sequence(x, mask, "MetaFormerBlock")
        if x.shape[-1] != self.dim:
            raise NasmercError(f"MetaFormerBlock was built for width {self.dim}, got {x.shape[-1]}")
        keep = mask.to(x.dtype).unsqueeze(-1)
        h = self.norm_mix(x)  # eq. 4
        h = self.drop_mix(self.mixer(h, lst, mask)) + x  # eq. 5
        out = self.ffn(self.norm_ffn(h)) + h  # eq. 6
        return out * keep
