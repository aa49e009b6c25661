"""Protocols: how a model is trained and judged, one named object per paper.

A :class:`Protocol` holds what a paper's table depends on besides the model: the missing-rate
schedule of training, the masking level, the validation rates a model is selected on, the optimizer
settings (optimizer, learning rate, batch, epochs, early-stopping patience), the evaluation sweep and
whether it is UME (one model judged at every rate) or IME (one model per rate, each judged at its own),
and how many runs, on which folds, a reported number averages. ``--protocol NAME`` (``search``,
``retrain``) sets the training settings (``--set train.KEY`` still wins); the name is kept in the run
record, and ``nasmerc evaluate`` sweeps the protocol's rates by default. ``nasmerc list`` lists them.

Selection is on the validation split in every protocol. The settings come from the papers (the
section is named in each description); where a paper is silent, today's default is kept and said so.

What a protocol states but nasmerc does not run yet: ``runs`` > 1 and ``folds`` (leave-one-session-out
on IEMOCAP) are recorded and printed for the user to run with ``--seed`` and their own splits; the
synthetic presets have no sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from nasmerc.config import apply_overrides
from nasmerc.data.missing import DEFAULT_RATES
from nasmerc.errors import NasmercError
from nasmerc.train.trainer import TrainConfig

TO_ONE = tuple(round(0.1 * i, 1) for i in range(11))
"""The sentence-level sweep, 0, 0.1, ..., 1.0 (RMNAS table 1, MFMB-Net table 4)."""


@dataclass(frozen=True)
class Protocol:
    """One paper's way of training and judging (module docstring)."""

    name: str
    paper: str
    description: str
    train: Mapping[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields the protocol sets (the rest keep their defaults)."""
    sweep: tuple[float, ...] = DEFAULT_RATES
    evaluation: str = "ume"
    """``ume``: one model judged at every rate of ``sweep``; ``ime``: one model per rate, trained at that
    rate (``missing=fixed:RATE``) and judged at it."""
    runs: int = 1
    folds: str = ""
    """``""``: the dataset's own split; ``session``: IEMOCAP's five leave-one-session-out folds."""

    def train_config(self, base: TrainConfig = TrainConfig()) -> TrainConfig:
        """``base`` with the protocol's training settings."""
        return apply_overrides(base, dict(self.train), where=f"protocol {self.name!r}")

    def at_rate(self, rate: float) -> "Protocol":
        """For IME: the protocol of the model trained (and selected) at ``rate`` alone."""
        return replace(self, train={**self.train, "missing": f"fixed:{rate:g}", "valid_rates": [rate]},
                       sweep=(rate,), evaluation="ume")

    def summary(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.train.items())
        folds = f", {self.folds} folds" if self.folds else ""
        return (f"{self.name}: {self.paper}; {self.evaluation.upper()} over rho {self.sweep[0]:g}..{self.sweep[-1]:g}, "
                f"{self.runs} run(s){folds}; {settings or 'the default training'}")


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("default", "nasmerc", "ITEACH-Net's Random strategy at nasmerc's CPU-sized training settings: a "
             "missing rate drawn per batch from 0..0.7, one model judged at every rate (UME), selected on the mean "
             "validation metric over rho 0 / 0.35 / 0.7"),
    Protocol("iteach-random", "ITEACH-Net", "sec. 'Implementation details' and 'Training strategies': AdamW 5e-4, "
             "batch 32, 100 epochs, 3 runs; each batch at a rate drawn from 0..0.7; UME over 0..0.7; IEMOCAP "
             "reported as the mean over 5 leave-one-session-out folds",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "missing": "random"},
             runs=3, folds="session"),
    Protocol("iteach-progressive", "ITEACH-Net", "as iteach-random, with the Progressive strategy: the rate starts "
             "at 0 and rises by 0.1 every 10 epochs up to 0.7",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "missing": "progressive"},
             runs=3, folds="session"),
    Protocol("rmnas", "RMNAS", "sec. 'Implementation Details', dialogue level (following GCNet): AdamW 5e-4, batch "
             "32, 100 epochs, 3 runs, one model per missing rate (IME) over 0..0.7, reported as the mean WAF over "
             "the rates; IEMOCAP as the mean over 5 leave-one-session-out folds",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100},
             evaluation="ime", runs=3, folds="session"),
    Protocol("rmnas-sentence", "RMNAS", "sec. 'Implementation Details', sentence level (MOSI / MOSEI, following "
             "EMT-DLFR): AdamW 5e-4, batch 32, 100 epochs with early stopping after 8, 3 runs; frames of each "
             "modality dropped independently; AUILC over rho 0..1.0 (table 1)",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "patience": 8, "masking": "frame",
              "missing": "random"}, sweep=TO_ONE, runs=3),
    Protocol("mfmb", "MFMB-Net", "sec. 'Implementation details': Adam 2e-3, batch 24, early stopping after 6 epochs; "
             "random temporal masks per modality (frame level); AUILC over rho 0..1.0 (table 4)",
             {"optimizer": "adam", "lr": 2e-3, "batch_size": 24, "patience": 6, "masking": "frame", "missing": "random"},
             sweep=TO_ONE),
    Protocol("micga", "Mi-CGA (dissertation)", "one model per missing rate (IME) over 0..0.7, as the dissertation's "
             "incomplete-modality tables report it; training settings are nasmerc's defaults (not stated per model)",
             evaluation="ime"),
    Protocol("complete", "CORECT, MultiDAG+CL, Ada2I, SPCL (dissertation)", "trained and tested on complete "
             "modalities (rho 0) as their tables report; training settings are nasmerc's defaults",
             {"missing": "fixed:0", "valid_rates": [0.0]}, sweep=(0.0,)),
    Protocol("haemsa", "HAEMSA", "trained and tested on complete modalities, 10 seeds",
             {"missing": "fixed:0", "valid_rates": [0.0]}, sweep=(0.0,), runs=10),
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise NasmercError(f"--protocol {name!r}: unknown (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def list_protocols() -> list[str]:
    return list(PROTOCOLS)
