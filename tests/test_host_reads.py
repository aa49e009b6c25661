"""The training loop reads nothing back from the device per step under ``train.data=device``: the loss
terms and the divergence check reach the host once per epoch, validation outputs once per pass.

Counted with the PyTorch profiler on the CPU. A GPU runs its kernels asynchronously; the host waits
for it (a sync) only when it needs a value or a size computed there. At the operator level that is:

- ``aten::_local_scalar_dense``, the kernel behind ``.item()``, ``float(t)``, ``int(t)`` and ``bool(t)``
  (``if t.any():``, ``aten::is_nonzero``), and behind ``masked_select`` and ``index_put_`` with a
  boolean mask, which need a count;
- ``aten::nonzero``, behind boolean-mask indexing (``x[mask]``) and ``torch.where(cond)``: the size
  of its output is the number of true entries, known only once the device has counted them;
- ``aten::_unique2`` / ``aten::unique_dim`` / ``aten::unique_consecutive`` (output size again) and
  ``aten::equal`` (a bool for the host).

On the CPU these operators run just the same, so the profiler sees every one the loop would issue on a
GPU. Not counted: the optimizer's step (profiled as ``Optimizer.step#...``), whose ``step`` counters
live on the host on a GPU too, so reading them waits for nothing. Copies to the host (``.cpu()``,
``.tolist()``, ``.numpy()``) are no operators on the CPU; those made from the project's own code are
counted by wrapping the tensor methods. The loop's deliberate reads run inside a profiler range named
``nasmerc.host_read``: one per epoch, one per validation pass.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import nasmerc
from nasmerc.nas.population import sample_arch
from nasmerc.registry import get_search_space
from nasmerc.train.trainer import HOST_READ, TrainConfig, Trainer

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2", "aten::unique_dim",
            "aten::unique_consecutive", "aten::equal")
COPIES = ("tolist", "numpy", "cpu")
ROOT = Path(nasmerc.__file__).resolve().parent.parent
OWN = tuple(str(ROOT / d) for d in ("nasmerc", "search_spaces", "strategies"))
SYNC_FREE = ["early_fusion", "late_fusion", "rmnas", "bmnas"]
"""Spaces whose training step issues no sync, at tiny sizes (``transformer`` and ``iteach`` issue none
either; the graph-, DAG- and BatchNorm-based fixed models, Ada2I and HAEMSA still do)."""


@pytest.fixture
def copies(monkeypatch):
    """Calls of ``COPIES`` made from the project's own code."""
    counted: list[str] = []
    for name in COPIES:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            if str(Path(sys._getframe(1).f_code.co_filename).resolve()).startswith(OWN):
                counted.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counted


def syncs(prof) -> tuple[Counter, int]:
    """The sync operators outside the optimizer's step and outside the loop's own reads, by name, and
    the number of the loop's reads (``nasmerc.host_read`` ranges)."""
    found: Counter = Counter()
    reads = 0
    for event in prof.events():
        if event.name == HOST_READ:
            reads += 1
        if event.name not in SYNC_OPS:
            continue
        parents, parent = [], event.cpu_parent
        while parent is not None:
            parents.append(parent.name)
            parent = parent.cpu_parent
        if not any(p.startswith("Optimizer.") or p == HOST_READ for p in parents):
            found[event.name] += 1
    return found, reads


def trainer_of(space: str, signature, data: str = "device") -> Trainer:
    built = get_search_space(space).from_preset(signature, "default", {})
    model = built.build(sample_arch(built.choices(), np.random.default_rng(0)))
    return Trainer(model, signature, TrainConfig(epochs=2, batch_size=2, data=data))


@pytest.mark.parametrize("space", SYNC_FREE)
def test_one_host_read_per_epoch_on_the_device_path(space: str, tiny_dataset, copies, one_thread) -> None:
    trainer = trainer_of(space, tiny_dataset.signature)
    train, valid = tiny_dataset.split("train"), tiny_dataset.split("valid")
    n_steps = -(-len(train) // 2)
    assert n_steps >= 3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for epoch in (0, 1):  # the first also puts the training split on the device
            trainer.train_epoch(train, epoch)
    found, reads = syncs(prof)
    assert not found, found  # no sync inside the steps, whatever their number
    assert reads == 2 and copies == ["tolist", "tolist"], (reads, copies)  # the one read of each epoch
    copies.clear()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.predict(valid, 0.5)  # the split and its masks at (0.5, seed) put on the device on this pass
    found, reads = syncs(prof)
    assert not found and reads == 1, (found, reads)  # outputs selected and read once, at the end
    assert Counter(copies) == {"tolist": 1, "cpu": 2, "numpy": 2}, copies  # losses; outputs, labels


def test_one_host_read_per_epoch_at_the_utterance_level(tiny_regression, copies, one_thread) -> None:
    """Utterance-level regression data (one label per sample) on the device path: the same count."""
    trainer = trainer_of("early_fusion", replace(tiny_regression.signature, level="utterance"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_epoch(tiny_regression.split("train"), 0)
    found, reads = syncs(prof)
    assert not found and reads == 1 and copies == ["tolist"], (found, reads, copies)


def test_the_profiler_sees_the_host_paths_syncs(tiny_dataset, copies, one_thread) -> None:
    """The count is no empty check: on the host path the task loss selects real rows by a boolean
    mask (one ``nonzero`` a step, and one more in its backward) and the mask of each batch is drawn
    from lengths read with ``tolist``."""
    trainer = trainer_of("early_fusion", tiny_dataset.signature, data="host")
    n_steps = -(-len(tiny_dataset.split("train")) // 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_epoch(tiny_dataset.split("train"), 0)
    found, reads = syncs(prof)
    assert found["aten::nonzero"] >= 2 * n_steps and reads == 1, found
    assert copies.count("tolist") == n_steps + 1, copies


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
