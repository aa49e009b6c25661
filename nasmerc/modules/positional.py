"""Sinusoidal positional encoding shared by the Transformer-style spaces."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_positions(n: int, dim: int, like: Tensor) -> Tensor:
    """The Transformer's sinusoidal encoding ``[n, dim]`` (Vaswani et al. 2017, sec. 3.5), on ``like``'s
    device and dtype. RMNAS adds it as its ``PE_m`` (eq. 1), which the paper does not specify further."""
    pos = torch.arange(n, device=like.device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=like.device, dtype=torch.float32) * (-math.log(1e4) / dim))
    pe = torch.zeros(n, dim, device=like.device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(like.dtype)
