"""Paper scale on one GPU: what a DARTS search and a retrain of RMNAS's ``paper`` preset, and ITEACH's
``paper`` preset under the router, spend per epoch, in fp32 and bf16.

    python benchmarks/gpu_paper.py                  # on a CUDA machine: under 8 minutes on one H200
    python benchmarks/gpu_paper.py --tiny           # on a CPU: the default presets and tiny data (a test)

For each (space, phase, precision) it builds the model on synthetic IEMOCAP-scale data (108 training
dialogues of 20-110 utterances, text 100 / audio 100 / visual 512) at batch 32 (the papers'),
warms up, then times ``--steps`` training steps through nasmerc's own trainer (masks, hooks and all:
DARTS' architecture step before every weight step; the router's routers) and reports:

- seconds per step and the epoch time they imply (``ceil(train dialogues / batch)`` steps; DARTS
  trains weights on half the split, as RMNAS does);
- the projected time of the paper's 100-epoch search or retrain (validation not counted);
- peak GPU memory (``torch.cuda.max_memory_allocated``);
- achieved TFLOP/s: the FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode``
  over the measured seconds per step, and its share of the bf16 dense peak (``--peak-tflops``,
  989 for an H200 SXM).

It prints one table and writes it as JSON (``--json``, default ``benchmarks/results/gpu_paper.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasmerc.data.batch import iterate_batches
from nasmerc.data.synthetic import load
from nasmerc.nas.population import sample_arch
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space
from nasmerc.train.trainer import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from strategies.darts import ArchWeights, BatchCycle, DartsConfig, DartsHook  # noqa: E402
from strategies.router import RouterHook, Routers, probe_in_dims  # noqa: E402

CASES = (("rmnas", "search", "darts"), ("rmnas", "retrain", None), ("iteach", "search", "router"),
         ("iteach", "retrain", None))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fixed_arch(space: Any) -> dict[str, Any]:
    """A fixed architecture of the space: every op choice at its last candidate (not ``zero``), inputs
    sampled with seed 0 (the cost hardly depends on which)."""
    arch = sample_arch(space.choices(), np.random.default_rng(0))
    for spec in space.choices():
        if spec.kind == "op":
            arch[spec.label] = spec.candidates[-1]
    return arch


def measure(space_name: str, phase: str, strategy: str | None, precision: str, args: argparse.Namespace,
            device: torch.device) -> dict[str, Any]:
    tiny = {"n_train": 8, "n_valid": 2, "n_test": 2, "length_max": 12, "length_min": 3, "length_mean": 6,
            "dims.visual": 16}
    data = load("iemocap6", tiny if args.tiny else {})
    sig = data.signature
    space = get_search_space(space_name).from_preset(sig, "default" if args.tiny else "paper", {})
    train = data.split("train")
    torch.manual_seed(0)
    config = TrainConfig(epochs=100, batch_size=args.batch, precision=precision)
    hooks: list[Any] = []
    if phase == "search":
        model = space.supernet()
        if strategy == "darts":
            arch = ArchWeights(model, 1e-3, torch.Generator().manual_seed(0)).to(device)
            hooks.append(DartsHook(arch, BatchCycle(train[len(train) // 2:], sig, args.batch,
                                                    np.random.default_rng(1)), DartsConfig()))
            train = train[: len(train) // 2]
        else:
            model = model.to(device)
            _, first = next(iter(iterate_batches(train[: args.batch], sig, args.batch)))
            routers = Routers(model, probe_in_dims(model, first.to(device)), 1e-3,
                              torch.Generator().manual_seed(0)).to(device)
            hooks.append(RouterHook(routers, 5e-3, 0.0))
    else:
        model = space.build(fixed_arch(space))
    trainer = Trainer(model, sig, config, device=device, seed=0)
    trainer.hooks = hooks
    steps_per_epoch = math.ceil(len(train) / args.batch)
    batches = [b for _, b in iterate_batches(train, sig, args.batch, True, np.random.default_rng(0))]

    def step(i: int) -> None:
        batch = trainer.masked(batches[i % len(batches)], 0)
        for hook in hooks:
            hook.before_step(trainer, batch, 0, i)
        total, _, _ = trainer.loss(batch, 0)
        trainer.optimizer.zero_grad(set_to_none=True)
        total.backward()
        trainer.optimizer.step()

    for i in range(args.warmup):
        step(i)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    _sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    with FlopCounterMode(display=False) as counter:
        step(0)
    flops = counter.get_total_flops()
    tflops = flops / seconds / 1e12
    row = {"space": space_name, "phase": phase, "strategy": strategy or "fixed", "precision": precision,
           "parameters": count_parameters(model), "seconds_per_step": seconds, "steps_per_epoch": steps_per_epoch,
           "epoch_seconds": seconds * steps_per_epoch, "projected_100_epochs_hours": seconds * steps_per_epoch * 100 / 3600,
           "tflops": tflops, "share_of_peak": tflops / args.peak_tflops,
           "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
    del trainer, model, hooks
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="default presets, tiny data, the CPU: a quick test")
    parser.add_argument("--batch", type=int, default=None, help="dialogues per batch (default 32; --tiny 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; --tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --tiny 1)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's bf16 dense peak (H200: 989)")
    parser.add_argument("--json", default="benchmarks/results/gpu_paper.json")
    args = parser.parse_args()
    args.batch = args.batch or (4 if args.tiny else 32)
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup or (1 if args.tiny else 3)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        print("gpu_paper: no CUDA device here; run with --tiny on a CPU", file=sys.stderr)
        return 2
    rows = [measure(space, phase, strategy, precision, args, device)
            for space, phase, strategy in CASES for precision in ("fp32", "bf16")]
    print(f"{'space':7s} {'phase':8s} {'strategy':8s} {'prec':5s} {'params':>9s} {'s/step':>8s} {'epoch s':>8s} "
          f"{'100 ep h':>8s} {'TFLOP/s':>8s} {'of peak':>7s} {'peak GiB':>8s}")
    for r in rows:
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        print(f"{r['space']:7s} {r['phase']:8s} {r['strategy']:8s} {r['precision']:5s} {r['parameters'] / 1e6:8.2f}M "
              f"{r['seconds_per_step']:8.3f} {r['epoch_seconds']:8.1f} {r['projected_100_epochs_hours']:8.2f} "
              f"{r['tflops']:8.3g} {100 * r['share_of_peak']:6.2g}% {memory:>8s}")
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "tiny": args.tiny,
           "batch": args.batch, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
