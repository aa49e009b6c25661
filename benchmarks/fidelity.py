"""How well a few epochs rank ``merc`` points: each point trained ``train.epochs`` from scratch over
seeds, its best validation value after 5, 10 and all epochs, and its test share of the oracle.

    python benchmarks/fidelity.py --seeds 0,1,2 --out benchmarks/results/fidelity

The points are the one the TPE + local search grid found on seed 0 (``found``), the same with no
context model (``found_no_context``), a linear model with a party CRF and no context model
(``linear_crf``) and the same with an LSTM context model (``linear_crf_lstm``). A search whose
candidates train 5 epochs ranks a point by its ``valid@5``; one whose candidates train on (Hyperband)
by ``valid@10`` or ``valid@30``. Writes ``OUT.json`` (every run, every epoch's value) and ``OUT.txt``
(the table, mean ± sd over seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from nasmerc.evaluate import trained_share
from nasmerc.registry import create_dataset, get_search_space
from nasmerc.train.trainer import TrainConfig, Trainer

LINEAR_CRF = {"text.missing": "zeros", "audio.missing": "zeros", "visual.missing": "zeros",
              "text.encoder": "pca", "audio.encoder": "pca", "visual.encoder": "pca", "speaker": "none",
              "position": "early", "fusion": "sum", "context": "none", "missing_loss": "none",
              "unimodal_weight": 0.0, "structure": "party_crf", "lr_scale": 3.0}
FOUND = {**LINEAR_CRF, "text.missing": "mask_token", "position": "both", "fusion": "glu", "context": "lstm",
         "unimodal_weight": 0.1}
POINTS = {"found": FOUND, "found_no_context": {**FOUND, "context": "none"}, "linear_crf": LINEAR_CRF,
          "linear_crf_lstm": {**LINEAR_CRF, "context": "lstm"}}
FIDELITIES = (5, 10)


def train_point(arch: dict, dataset, seed: int, train: TrainConfig) -> dict:
    space = get_search_space("merc").from_preset(dataset.signature, "default", {})
    torch.manual_seed(seed)
    trainer = Trainer(space.build(arch), dataset.signature, train, seed=seed)
    fit = trainer.fit(dataset.split("train"), dataset.split("valid"))
    values = [float(h["value"]) for h in fit.history]
    _, share = trained_share(trainer, dataset)
    return {"values": values, "share": share, **{f"valid@{k}": max(values[:k]) for k in FIDELITIES},
            f"valid@{len(values)}": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--out", default="benchmarks/results/fidelity")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.points.split(",")
    dataset = create_dataset("iemocap6")
    train = TrainConfig(epochs=args.epochs)
    runs = [{"point": name, "seed": seed, **train_point(POINTS[name], dataset, seed, train)}
            for name in names for seed in seeds]
    keys = [*(f"valid@{k}" for k in FIDELITIES), f"valid@{args.epochs}", "share"]
    lines = [f"{'point':18} " + "  ".join(f"{k:>15}" for k in keys)]
    for name in names:
        cells = []
        for key in keys:
            vals = np.array([r[key] for r in runs if r["point"] == name]) * (100 if key == "share" else 1)
            cells.append(f"{vals.mean():.3f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.3f}" if key != "share"
                         else f"{vals.mean():.1f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.1f} %")
        lines.append(f"{name:18} " + "  ".join(f"{c:>15}" for c in cells))
    table = "\n".join([f"iemocap6, train.epochs={args.epochs}, seeds {args.seeds}: best valid WAF within k epochs; "
                       "test share of the oracle", *lines])
    print(table)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"points": {n: POINTS[n] for n in names}, "runs": runs}, indent=1))
    out.with_suffix(".txt").write_text(table + "\n")


if __name__ == "__main__":
    main()
