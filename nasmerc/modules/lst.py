"""Local sentiment variation trends (LST) of RMNAS: Algorithm 1 and eq. 3 of the paper.

RMNAS treats every feature node (an utterance of a conversation, or a frame of a sentence) as a
time node and builds, for every pair of nodes, a bias that is added to the mix map of the token
mixers (eqs. 7 and 9). The bias has ``D_lst`` channels; here ``D_lst = n_heads`` so that each
attention head gets its own channel. It is the sum of two parts:

- **ST**, the sentiment trend: an ``STEncoder`` (a length-preserving ``Conv1d``) turns the node
  sequence into one vector per node; dropping the first output (``AST = STEncoder(X)[1:]``) leaves
  ``N - 1`` values, where ``AST[p]`` is the output centred on node ``p + 1``, whose receptive field
  covers both ends of the edge ``p -> p + 1`` (the paper's ``st_{2-3}`` combines ``t_2, t_3, t_4``).
  For a pair of nodes ``(i, j)`` the trend is the average of the adjacent trends along the shortest
  path between them (eq. 3). In a conversation the path is the chain ``i, i+1, ..., j``, so
  ``ST[i][j] = mean(AST[min(i,j) : max(i,j)])``.
- **DM**, the distance matrix: ``DisEncoder = Linear(1, D_lst)`` applied to the absolute distance
  ``|i - j|``; pairs further apart than ``maxdis`` get ``-inf`` so they do not interact directly.

A trainable global token is prepended by the search space, so the result is ``(N+1) x (N+1)`` with
the global token at position 0: its row and column carry ``DisEncoder(-1)`` (a distance code that
no pair of nodes can have) and no sentiment trend.

Choices where the paper is silent (all documented on :class:`LSTEncoder`):

- ``ST[i][i]`` (an empty path) is 0, so the diagonal is ``DisEncoder(0)`` alone.
- Padded nodes are zeroed before the ``STEncoder``, so real nodes near the end of a conversation see
  the same zero padding as the convolution's own border; padded keys get ``-inf``; a padded query
  row attends only to the global token (finite, so no softmax ever returns NaN).
- The kernel size must be odd: the paper's ``padding = k // 2`` keeps the length only then.

The path averages are computed from prefix sums of ``AST``, so every pair costs O(1) and there is
no Python loop over pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nasmerc.errors import NasmercError

__all__ = ["LSTEncoder"]


class LSTEncoder(nn.Module):
    """Builds the LST bias ``[B, n_heads, N+1, N+1]`` of Algorithm 1 from node features ``[B, N, D]``.

    Args:
        dim: feature size ``D_m`` of the input nodes (the raw modality features ``X_m``).
        n_heads: ``D_lst``, the number of bias channels; one per attention head of the mixers.
        kernel_size: kernel of the ``STEncoder`` ``Conv1d`` (odd; 7 in the paper).
        maxdis: the largest distance at which two nodes may interact directly (8 in the paper).

    The result is meant to be added to a mix map: position 0 is the global token, positions
    ``1..N`` the nodes in order; ``-inf`` marks pairs that must not interact (beyond ``maxdis``, or a
    padded key).
    """

    def __init__(self, dim: int, n_heads: int, kernel_size: int = 7, maxdis: int = 8) -> None:
        super().__init__()
        if dim < 1 or n_heads < 1:
            raise NasmercError(f"LSTEncoder needs dim >= 1 and n_heads >= 1, got dim={dim}, n_heads={n_heads}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise NasmercError(
                f"LSTEncoder kernel_size must be a positive odd number so that padding k//2 keeps "
                f"the sequence length, got {kernel_size}"
            )
        if maxdis < 0:
            raise NasmercError(f"LSTEncoder maxdis must be >= 0, got {maxdis}")
        self.dim = dim
        self.n_heads = n_heads
        self.kernel_size = kernel_size
        self.maxdis = maxdis
        # Algorithm 1: STEncoder = Conv1d(D_m, D_lst, k, p=k//2, s=1); DisEncoder = Linear(1, D_lst).
        self.st_encoder = nn.Conv1d(dim, n_heads, kernel_size, stride=1, padding=kernel_size // 2)
        self.dis_encoder = nn.Linear(1, n_heads)

    def _check(self, x: Tensor, mask: Tensor) -> None:
        """Reject inputs whose shapes do not follow the ``[B, N, D]`` / ``[B, N]`` contract."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise NasmercError(f"LSTEncoder expects x of shape [B, N, {self.dim}], got {list(x.shape)}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise NasmercError(
                f"LSTEncoder expects mask of shape {list(x.shape[:2])} (same B, N as x), got {list(mask.shape)}"
            )

    def adjacent_trends(self, x: Tensor, mask: Tensor) -> Tensor:
        """``AST = STEncoder(X)[1:]`` of Algorithm 1: ``[B, N-1, n_heads]``.

        ``AST[:, p]`` is the sentiment trend of the edge between nodes ``p`` and ``p + 1``. Padded
        nodes are zeroed first so their content cannot reach real nodes through the convolution.
        """
        self._check(x, mask)
        b, n, _ = x.shape
        if n <= 1:
            return x.new_zeros(b, 0, self.n_heads)
        clean = x * mask.to(x.dtype).unsqueeze(-1)
        per_node = self.st_encoder(clean.transpose(1, 2)).transpose(1, 2)  # [B, N, H]
        return per_node[:, 1:]

    def global_code(self, like: Tensor) -> Tensor:
        """``DisEncoder(-1)``: the distance code of the global token, ``[n_heads]``."""
        minus_one = like.new_full((1, 1), -1.0)
        return self.dis_encoder(minus_one)[0]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Algorithm 1: ``LST = ST + DM`` as ``[B, n_heads, N+1, N+1]`` (position 0 = global token).

        ``x`` is ``[B, N, D]`` (the nodes, without the global token) and ``mask`` ``[B, N]`` bool
        (True = real node). ``ST`` follows eq. 3 via prefix sums of ``AST``; ``DM`` encodes
        ``|i - j|`` and is ``-inf`` beyond ``maxdis``; row and column 0 are ``DisEncoder(-1)``.
        Padded keys are ``-inf``; padded query rows keep only the global-token column finite.
        """
        self._check(x, mask)
        mask = mask.bool()
        b, n, _ = x.shape
        dev, dtype = x.device, x.dtype

        # ST (eq. 3): sum of AST over the chain between i and j is prefix[max] - prefix[min].
        ast = self.adjacent_trends(x, mask)  # [B, N-1, H]
        prefix = torch.cat([ast.new_zeros(b, 1, self.n_heads), ast.cumsum(dim=1)], dim=1)  # [B, N, H]
        pos = torch.arange(n, device=dev)
        offset = pos.view(1, n) - pos.view(n, 1)  # j - i
        dist = offset.abs()
        signed = prefix.unsqueeze(1) - prefix.unsqueeze(2)  # [B, i, j, H] = prefix[j] - prefix[i]
        path_sum = signed * offset.sign().to(dtype).view(1, n, n, 1)
        st = path_sum / dist.clamp(min=1).to(dtype).view(1, n, n, 1)  # ST[i][i] = 0 (empty path)

        # DM: DisEncoder(|i - j|), -inf where the pair is beyond maxdis.
        dm = self.dis_encoder(dist.to(dtype).unsqueeze(-1))  # [N, N, H]
        dm = dm.masked_fill((dist > self.maxdis).unsqueeze(-1), float("-inf"))

        nodes = st + dm.unsqueeze(0)  # [B, N, N, H]
        glob = self.global_code(x)  # [H]
        lst = glob.view(1, 1, 1, -1).expand(b, n + 1, n + 1, self.n_heads).clone()
        lst[:, 1:, 1:] = nodes

        # Padding: padded keys are -inf; padded query rows attend only to the global token.
        real = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # [B, N+1]
        not_first = torch.arange(n + 1, device=dev) > 0
        blocked = (~real).unsqueeze(1) | ((~real).unsqueeze(2) & not_first.view(1, 1, n + 1))
        lst = lst.masked_fill(blocked.unsqueeze(-1), float("-inf"))
        return lst.permute(0, 3, 1, 2).contiguous()
