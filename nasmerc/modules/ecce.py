"""The Emotion Context Changing Encoder (ECCE) of ITEACH-Net: Section 3.3, eqs. 5-6, Algorithm 1.

ECCE turns the utterance features ``X_m`` ``[B, N, D_m]`` of one modality into a bias
``E_m`` ``[B, heads, N, N]`` that is added to the mix map of attention-type token mixers (eq. 10):

1. **Local emotion context** (eq. 5). ``Z_m = F_local(X_m)``: a ``Conv1d(D_m -> d_z, kernel w)`` over
   the utterance axis, so ``z_i`` summarises the window of ``w`` utterances around ``i``
   (the paper's choice of ``F_local``, kernel 7).
2. **Global context changing** (eq. 6). ``e_{ij} = F_global(Z_m[i..j])``: the average of ``z`` over the
   span between ``i`` and ``j`` (the paper's ``F_global``, average pooling), symmetric
   (``E[j][i] = E[i][j]``), for ``|i - j| < dist_m``; farther pairs keep the zeros of Algorithm 1.
3. ``E_m = FC(E_m)`` with ``FC = Linear(d_z, d_e)``, ``d_e = heads``: one bias channel per head.

Computed with tensor operations only: because ``FC`` is affine, ``FC(mean(Z[i..j])) =
mean((Z W)[i..j]) + b``, so ``Z`` is projected to ``heads`` channels first and the span means come
from prefix sums, ``O(N^2 heads)`` memory and no Python loop over pairs. Pairs beyond ``dist_m`` get
``FC(0) = b``, exactly as Algorithm 1 (``E`` starts as zeros and ``FC`` is applied to all of it).

Where the paper is loose, our reading (documented here and on :class:`ECCEncoder`):

- The window of eq. 5, ``X[i - ceil(w/2) : i + floor(w/2)]``, is centred here (``padding = w // 2``,
  ``w`` odd): for odd ``w`` the paper's slice holds ``w`` elements shifted one to the left, which
  reads as an off-by-one of the notation rather than an intended asymmetry.
- The span of eq. 6 includes both ends: Algorithm 1 writes ``Z[i:j]``, which is empty for ``j = i``
  and would leave the diagonal undefined, so ``e_{ij}`` is the mean of ``z_i .. z_j`` (``e_{ii} = z_i``).
- Padded utterances are zeroed before the convolution (real utterances near the end see the same
  zeros as the convolution's border), and every pair touching a padded utterance gets bias 0; the
  mixers ignore padded keys through their own mask.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nasmerc.errors import NasmercError

__all__ = ["ECCEncoder"]


class ECCEncoder(nn.Module):
    """ECCE for one modality: ``X_m`` ``[B, N, D_m]`` -> bias ``E_m`` ``[B, heads, N, N]`` (Algorithm 1).

    Args:
        dim: ``D_m``, the raw feature size of the modality.
        n_heads: ``d_e``, one bias channel per attention head.
        kernel_size: ``w``, the local window of ``F_local`` (odd; 7 in the paper).
        dist: ``dist_m``, pairs with ``|i - j| < dist`` get a span average (30 in the paper).
        local_dim: ``d_z``, the width of the local context features ``Z_m`` (the paper does not give it).
    """

    def __init__(self, dim: int, n_heads: int, kernel_size: int = 7, dist: int = 30, local_dim: int = 32) -> None:
        super().__init__()
        if dim < 1 or n_heads < 1 or local_dim < 1:
            raise NasmercError(f"ECCEncoder needs dim, n_heads and local_dim >= 1, got dim={dim}, "
                               f"n_heads={n_heads}, local_dim={local_dim}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise NasmercError(f"ECCEncoder kernel_size must be a positive odd number (a centred window), "
                               f"got {kernel_size}")
        if dist < 1:
            raise NasmercError(f"ECCEncoder dist must be >= 1 (dist=1 keeps only the diagonal), got {dist}")
        self.dim = dim
        self.n_heads = n_heads
        self.kernel_size = kernel_size
        self.dist = dist
        self.local = nn.Conv1d(dim, local_dim, kernel_size, stride=1, padding=kernel_size // 2)  # F_local
        self.fc = nn.Linear(local_dim, n_heads)  # FC = Linear(d_z, d_e)

    def local_context(self, x: Tensor, mask: Tensor) -> Tensor:
        """``Z_m`` of eq. 5, ``[B, N, d_z]``; padded utterances are zeroed before the convolution."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise NasmercError(f"ECCEncoder expects x of shape [B, N, {self.dim}], got {list(x.shape)}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise NasmercError(f"ECCEncoder expects mask of shape {list(x.shape[:2])}, got {list(mask.shape)}")
        clean = x * mask.to(x.dtype).unsqueeze(-1)
        return self.local(clean.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Algorithm 1 on ``x`` ``[B, N, D_m]`` with ``mask`` ``[B, N]`` (True = real): ``[B, heads, N, N]``."""
        real = mask.bool()
        z = self.local_context(x, real)  # eq. 5
        b, n, _ = z.shape
        proj = torch.matmul(z, self.fc.weight.t())  # Z W, [B, N, heads]; FC's bias is added at the end
        prefix = torch.cat([proj.new_zeros(b, 1, self.n_heads), proj.cumsum(dim=1)], dim=1)  # [B, N+1, H]
        pos = torch.arange(n, device=x.device)
        lo = torch.minimum(pos.view(n, 1), pos.view(1, n))  # [N, N]
        hi = torch.maximum(pos.view(n, 1), pos.view(1, n))
        span_sum = prefix[:, hi + 1] - prefix[:, lo]  # [B, N, N, H]: sum of Z W over lo..hi (eq. 6)
        count = (hi - lo + 1).to(z.dtype).view(1, n, n, 1)
        near = ((hi - lo) < self.dist).to(z.dtype).view(1, n, n, 1)
        e = span_sum / count * near + self.fc.bias  # FC(mean) near, FC(0) = b beyond dist_m
        pair = real.unsqueeze(2) & real.unsqueeze(1)  # [B, N, N]
        e = e * pair.unsqueeze(-1).to(e.dtype)
        return e.permute(0, 3, 1, 2).contiguous()
