"""Train one architecture under space / trainer variants and report each one's share of the oracle.

    python benchmarks/retrain_variants.py runs/<run>/arch.yaml "" "use_lst=false" "train.lr=2e-3"

Each variant is a space-separated list of ``key=value`` (``train.KEY`` for the trainer, plain keys for
the space config); ``""`` is the architecture file as it is. Every variant is trained from scratch
with the file's seed on its data and evaluated like ``nasmerc evaluate`` (test split, rho 0..0.7).
Also ``--reference-bigru`` trains a bidirectional GRU over the concatenated modalities (with a
speaker embedding) through the same trainer, as a reference context model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
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


def run(model: nn.Module, dataset, train: TrainConfig, seed: int) -> tuple[float, float, float]:
    trainer = Trainer(model, dataset.signature, train, seed=seed)
    fit = trainer.fit(dataset.split("train"), dataset.split("valid"))
    model_values, share = trained_share(trainer, dataset)
    return fit.best_value, float(np.mean(model_values)), share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch")
    parser.add_argument("variants", nargs="*", default=[""])
    parser.add_argument("--reference-bigru", action="store_true")
    args = parser.parse_args()
    af = ArchFile.read(args.arch)
    dataset = load_data(af.spec, what=args.arch)
    for variant in args.variants:
        pairs = dict(item.split("=", 1) for item in variant.split())
        space_over = {**af.space_config, **{k: v for k, v in pairs.items() if not k.startswith("train.")}}
        train = apply_overrides(TrainConfig(), {**af.train, **{k[6:]: v for k, v in pairs.items()
                                                                if k.startswith("train.")}})
        space = get_search_space(af.space).from_preset(dataset.signature, af.preset, space_over)
        torch.manual_seed(af.seed)
        start = time.time()
        valid, mean, share = run(space.build(af.arch), dataset, train, af.seed)
        print(f"{variant or '(as found)':30} valid {valid:.4f}  test mean {mean:.4f}  "
              f"share {100 * share:.1f} %  {time.time() - start:.0f}s")
    if args.reference_bigru:
        torch.manual_seed(af.seed)
        start = time.time()
        valid, mean, share = run(ReferenceBiGRU(dataset.signature), dataset, apply_overrides(TrainConfig(), af.train), af.seed)
        print(f"{'reference BiGRU':30} valid {valid:.4f}  test mean {mean:.4f}  share {100 * share:.1f} %  "
              f"{time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
