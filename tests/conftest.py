"""Shared fixtures: tiny synthetic datasets that build in milliseconds, and the benchmarks the tests run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from nasmerc.data.conversation import Conversation, DataSignature

from nasmerc.data.synthetic import load

TINY = {
    "n_train": 6, "n_valid": 2, "n_test": 3,
    "length_mean": 8, "length_min": 3, "length_max": 12,
    "dims.text": 12, "dims.audio": 8, "dims.visual": 16, "latent_dim": 4,
}


@pytest.fixture
def tiny_overrides() -> dict:
    return dict(TINY)


@pytest.fixture
def tiny_dataset():
    return load("iemocap6", TINY)


@pytest.fixture
def tiny_regression():
    return load("mosi", {**TINY, "dims.audio": 5})


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: threads only cost (and oversubscribe a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_conversations(sig: DataSignature, lengths: list[int], seed: int = 0) -> list[Conversation]:
    """Random conversations of the given lengths for ``sig`` (labels per row, or one per sample)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        n_labels = n if sig.level == "dialogue" else 1
        labels = (rng.integers(0, sig.n_classes, n_labels) if sig.task == "classification"
                  else rng.uniform(-3, 3, n_labels).astype(np.float32))
        out.append(Conversation(
            id=f"c{i}",
            features={m: rng.normal(size=(n, sig.dims[m])).astype(np.float32) for m in sig.modalities},
            speakers=rng.integers(0, sig.n_speakers, n),
            labels=labels,
        ))
    return out


def utterance_batch(sig: DataSignature, rate: float = 0.0, lengths: tuple[int, ...] = (4, 6, 5)):
    """A batch of utterance-level samples for ``sig`` (rows are frames, one label per sample), with
    modalities dropped at ``rate`` (GCNet protocol, one kept per frame) when it is above 0."""
    from nasmerc.data.batch import collate
    from nasmerc.data.missing import mask_batch

    batch = collate(random_conversations(sig, list(lengths)), sig)
    return mask_batch(batch, rate, np.random.default_rng(1), True) if rate > 0 else batch


def benchmark_module(name: str, alias: str) -> ModuleType:
    """``benchmarks/<name>.py`` loaded as a fresh module called ``alias`` (each test file its own copy,
    so one file's changes to its tables do not reach another's)."""
    spec = importlib.util.spec_from_file_location(alias, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
