"""Build a space at its ``paper`` preset and run one forward and backward pass at paper scale.

    python benchmarks/paper_preset.py [--space rmnas] [--device cpu|cuda] [--batch 32] [--length 110]

On IEMOCAP-shaped data (text 100, audio 100, visual 512; 6 classes) it builds the supernet and one
fixed architecture (every op and input choice at its first candidate), prints their parameter
counts beside the paper's, and times a forward + backward pass of the fixed model on one batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nasmerc.data.batch import collate
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space
from nasmerc.train.losses import task_loss

PAPER_PARAMETERS = {"rmnas": 63.8e6}


def first_choices(space) -> dict:
    """Every choice at its first candidate, an op choice at its first that is not ``zero``."""
    arch = {}
    for spec in space.choices():
        arch[spec.label] = spec.first()
        if arch[spec.label] == "zero":
            arch[spec.label] = spec.candidates[-1]
    return arch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="rmnas")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=110)
    parser.add_argument("--text-dim", type=int, default=100)
    args = parser.parse_args()
    sig = DataSignature(("text", "audio", "visual"), {"text": args.text_dim, "audio": 100, "visual": 512},
                        "classification", classes=tuple("abcdef"), n_speakers=2)
    space = get_search_space(args.space).from_preset(sig, "paper")
    supernet = count_parameters(space.supernet())
    model = space.build(first_choices(space)).to(args.device)
    fixed = count_parameters(model)
    paper = PAPER_PARAMETERS.get(args.space)
    print(f"{args.space} paper preset on IEMOCAP dims: supernet {supernet / 1e6:.2f} M, "
          f"fixed architecture {fixed / 1e6:.2f} M" + (f" (paper: {paper / 1e6:.1f} M)" if paper else ""))
    rng = np.random.default_rng(0)
    convs = [Conversation(str(i), {m: rng.normal(size=(args.length, d)).astype(np.float32) for m, d in sig.dims.items()},
                          rng.integers(0, 2, args.length), rng.integers(0, 6, args.length)) for i in range(args.batch)]
    batch = collate(convs, sig).to(args.device)
    for run in range(2):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(batch)
        loss = task_loss(out.logits, batch, sig.task) + sum(out.aux_losses.values())
        loss.backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        print(f"{'warm-up' if run == 0 else 'timed'} forward + backward, batch {args.batch} x {args.length}: "
              f"{time.perf_counter() - t0:.2f} s, loss {float(loss.detach()):.3f}")


if __name__ == "__main__":
    main()
