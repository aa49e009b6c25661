"""The training loop reads nothing back from the device per step: the loss terms and the divergence
check reach the host once per epoch, validation outputs once per pass. Counted on the CPU by wrapping
every tensor method that hands values to the host and keeping the calls made from the training loop's
own code (torch's internals, such as the optimizer's step counters, which live on the host even on a
GPU, are not the loop's reads). What remains per step on a GPU and is not counted here: the
boolean-mask selection of real utterances in the task loss (one ``nonzero`` a loss)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nasmerc.registry import get_search_space
from nasmerc.train import trainer as trainer_module
from nasmerc.train.trainer import TrainConfig, Trainer

READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")
LOOP = Path(trainer_module.__file__).resolve()


@pytest.fixture
def host_reads(monkeypatch):
    counted: list[str] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            if Path(sys._getframe(1).f_code.co_filename).resolve() == LOOP:
                counted.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counted


@pytest.mark.parametrize("space", ["early_fusion", "corect", "mfmb"])
def test_one_host_read_per_epoch(space: str, tiny_dataset, host_reads, one_thread) -> None:
    model = get_search_space(space).from_preset(tiny_dataset.signature, "default", {}).build({})
    trainer = Trainer(model, tiny_dataset.signature, TrainConfig(epochs=1, batch_size=2))
    n_steps = -(-len(tiny_dataset.split("train")) // 2)
    assert n_steps >= 3
    trainer.train_epoch(tiny_dataset.split("train"), 0)
    assert host_reads == ["tolist"], host_reads  # the epoch's one read, whatever the number of steps
    host_reads.clear()
    trainer.predict(tiny_dataset.split("valid"), 0.5)
    assert host_reads.count("tolist") == 1 and host_reads.count("cpu") == 2, host_reads  # losses; outputs, labels


def test_bf16_autocast_runs_a_step_of_every_space(tiny_dataset, one_thread) -> None:
    """``train.precision=bf16`` on the CPU: one weight step and one validation pass of every registered
    space (a searchable one at a sampled architecture) give finite numbers."""
    import numpy as np

    from nasmerc.nas.population import sample_arch
    from nasmerc.registry import list_search_spaces

    for name in list_search_spaces():
        space = get_search_space(name).from_preset(tiny_dataset.signature, "default", {})
        model = space.build(sample_arch(space.choices(), np.random.default_rng(0)))
        trainer = Trainer(model, tiny_dataset.signature, TrainConfig(epochs=1, batch_size=3, precision="bf16"))
        assert trainer.bf16
        terms = trainer.train_epoch(tiny_dataset.split("train"), 0)
        assert np.isfinite(terms["loss"]), name
        assert np.isfinite(trainer.validate(tiny_dataset.split("valid"))["loss"]), name


def test_a_compiler_failure_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    """``--compile`` compiles the forward pass; when torch's compiler fails the run stops with one line
    naming it and the way out (simulated: a compiler error raised by the compiled callable)."""
    from torch._dynamo.exc import BackendCompilerFailed

    from nasmerc.cli import main

    class Broken:
        def __init__(self, model):
            pass

        def __call__(self, batch):
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ compiler found"), None)

    monkeypatch.setattr(torch, "compile", lambda model: Broken(model))
    argv = ["search", "--space", "early_fusion", "--epochs", "1", "--compile", "--no-dashboard",
            "--out", str(tmp_path / "run"), "--set", "hidden_dim=16", "--set", "data.n_train=6",
            "--set", "data.n_valid=2", "--set", "data.n_test=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nasmerc: error: --compile: torch.compile failed (BackendCompilerFailed") and \
        err.endswith("run without --compile"), err
