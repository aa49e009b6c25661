"""Train one architecture under space / trainer variants and report each one's share of the oracle.

    python benchmarks/retrain_variants.py runs/<run>/arch.yaml "" "use_lst=false" "train.lr=2e-3"

Each variant is a space-separated list of ``key=value`` (``train.KEY`` for the trainer, ``arch.KEY``
for one of the architecture's choices, plain keys for the space config); ``""`` is the architecture
file as it is. Every variant is trained from scratch with the file's seed (``--seeds 0,1,2``: with
each of those, then their mean and standard deviation) on its data and evaluated like ``nasmerc
evaluate`` (test split, rho 0..0.7).
Also ``--reference-bigru`` trains a bidirectional GRU over the concatenated modalities (with a
speaker embedding) through the same trainer, as a reference context model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml
from torch import nn

from nasmerc.config import apply_overrides
from nasmerc.evaluate import trained_share
from nasmerc.outputs import ModelOutput
from nasmerc.registry import get_search_space
from nasmerc.runs import ArchFile
from nasmerc.train.trainer import TrainConfig, Trainer
from nasmerc.workflow import load_data


class ReferenceBiGRU(nn.Module):
    """Per-modality projections (zeroed where missing), a speaker embedding, a BiGRU, a linear head."""

    def __init__(self, signature, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.modalities = signature.modalities
        self.proj = nn.ModuleDict({m: nn.Linear(signature.dims[m], hidden) for m in signature.modalities})
        self.speaker = nn.Embedding(signature.n_speakers, hidden)
        self.gru = nn.GRU(hidden * (len(signature.modalities) + 1), hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, signature.n_outputs)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch) -> ModelOutput:
        parts = [self.proj[m](batch.features[m]) * batch.present[..., i : i + 1] for i, m in enumerate(self.modalities)]
        h, _ = self.gru(self.drop(torch.cat(parts + [self.speaker(batch.speakers)], dim=-1)))
        out = self.head(self.drop(h))
        return ModelOutput(out.squeeze(-1) if out.shape[-1] == 1 else out)


def run(model: nn.Module, dataset, train: TrainConfig, seed: int) -> tuple[float, float, float, float]:
    """Validation best, test mean over the rates, share of the oracle, test value at rate 0."""
    trainer = Trainer(model, dataset.signature, train, seed=seed)
    fit = trainer.fit(dataset.split("train"), dataset.split("valid"))
    model_values, share = trained_share(trainer, dataset)
    return fit.best_value, float(np.mean(model_values)), share, float(model_values[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch")
    parser.add_argument("variants", nargs="*", default=[""])
    parser.add_argument("--reference-bigru", action="store_true")
    parser.add_argument("--seeds", help="seeds to train each variant with, 0,1,2 (default: the file's)")
    args = parser.parse_args(argv)
    af = ArchFile.read(args.arch)
    dataset = load_data(af.spec, what=args.arch)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [af.seed]
    for variant in args.variants:
        pairs = dict(item.split("=", 1) for item in variant.split())
        space_over = {**af.space_config, **{k: v for k, v in pairs.items() if not k.startswith(("train.", "arch."))}}
        train = apply_overrides(TrainConfig(), {**af.train, **{k[6:]: v for k, v in pairs.items()
                                                                if k.startswith("train.")}})
        arch = {**af.arch, **{k[5:]: yaml.safe_load(v) for k, v in pairs.items() if k.startswith("arch.")}}
        space = get_search_space(af.space).from_preset(dataset.signature, af.preset, space_over)
        shares = []
        for seed in seeds:
            torch.manual_seed(seed)
            start = time.time()
            valid, mean, share, clean = run(space.build(arch), dataset, train, seed)
            shares.append(share)
            print(f"{variant or '(as found)':30} {f'seed {seed}  ' if args.seeds else ''}valid {valid:.4f}  "
                  f"test rate 0 {clean:.4f}  mean {mean:.4f}  share {100 * share:.1f} %"
                  + (f"  {100 * (mean / share - mean):.1f} points below the oracle" if args.seeds else "")
                  + f"  {time.time() - start:.0f}s")
        if len(seeds) > 1:
            print(f"{variant or '(as found)':30} share {100 * np.mean(shares):.1f} ± {100 * np.std(shares, ddof=1):.1f} % "
                  f"over seeds {args.seeds}")
    if args.reference_bigru:
        torch.manual_seed(af.seed)
        start = time.time()
        valid, mean, share, clean = run(ReferenceBiGRU(dataset.signature), dataset, apply_overrides(TrainConfig(), af.train),
                                        af.seed)
        print(f"{'reference BiGRU':30} valid {valid:.4f}  test rate 0 {clean:.4f}  mean {mean:.4f}  share {100 * share:.1f} %  "
              f"{time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
