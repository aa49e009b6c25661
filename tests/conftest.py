"""Shared fixtures: tiny synthetic datasets that build in milliseconds."""

from __future__ import annotations

import pytest
import torch

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
