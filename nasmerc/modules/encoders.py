"""Unimodal encoders shared by the hand-designed models: a two-layer FC encoder and a bidirectional RNN
over padded conversations."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from nasmerc.errors import NasmercError

__all__ = ["BiRNN", "FCEncoder", "reverse_index"]


def reverse_index(mask: Tensor) -> Tensor:
    """``[B, N]`` gather index that reverses each sequence's real rows and leaves padding in place."""
    n = mask.shape[1]
    steps = torch.arange(n, device=mask.device).unsqueeze(0)
    lengths = mask.sum(1, keepdim=True)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def rnn_input(x: Tensor) -> Tensor:
    """``x`` as an RNN takes it under the forward pass's precision: cuDNN runs GRUs and LSTMs in bf16
    under autocast, oneDNN on the CPU cannot, so there the input is fp32 (use with :func:`rnn_precision`)."""
    return x.float() if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16) else x


def rnn_precision(x: Tensor) -> Any:
    """The context an RNN runs in: autocast off on a CPU under bf16 autocast (see :func:`rnn_input`)."""
    cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    return torch.autocast("cpu", enabled=False) if cpu_autocast else contextlib.nullcontext()


class BiRNN(nn.Module):
    """A bidirectional GRU / LSTM over the real rows of ``[B, N, D]`` (real rows left-aligned).

    Two one-directional ``nn.GRU`` / ``nn.LSTM`` (the parameters of one bidirectional module): the
    forward one reads the padded batch (padding comes after every real row, so it never reaches
    one), the backward one reads each sequence reversed over its real rows. This gives what a
    packed bidirectional RNN gives, several times faster on a CPU. Output ``[B, N, 2 * hidden]``,
    zero on padded rows.
    """

    def __init__(self, kind: str, in_dim: int, hidden: int) -> None:
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM}
        if kind not in cells:
            raise NasmercError(f"BiRNN: kind={kind!r}: expected one of {list(cells)}")
        self.forward_rnn = cells[kind](in_dim, hidden, batch_first=True)
        self.backward_rnn = cells[kind](in_dim, hidden, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        index = reverse_index(mask).unsqueeze(-1)
        with rnn_precision(x):
            x = rnn_input(x)
            ahead = self.forward_rnn(x)[0]
            back = self.backward_rnn(x.gather(1, index.expand_as(x)))[0]
        back = back.gather(1, index.expand_as(back))
        return torch.cat([ahead, back], dim=-1) * mask.to(x.dtype).unsqueeze(-1)


class FCEncoder(nn.Module):
    """The fully connected audio / visual encoder of CORECT (Section 2.1) and Mi-CGA's IMR (Chapter 3):
    ``ReLU(W_2 ReLU(W_1 x))`` per utterance."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x)
