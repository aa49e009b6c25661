"""Device-resident data (``train.data=device``): the gathered batch is the collated one, the torch masks
follow the protocol's distribution, the sync-free losses are the host ones, and the path is seeded and
resumable."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from nasmerc.data.batch import Batch, collate
from nasmerc.data.missing import (draw_frames_torch, draw_present_torch, fixed_masks, mask_batch_torch,
                                  stack_masks)
from nasmerc.data.resident import ResidentCache, ResidentSplit
from nasmerc.errors import NasmercError
from nasmerc.registry import get_search_space
from nasmerc.train.checkpoint import Checkpoint
from nasmerc.events import Events
from nasmerc.train.losses import masked_task_loss, task_loss
from nasmerc.train.trainer import TrainConfig, Trainer, TrainHook

pytestmark = pytest.mark.usefixtures("one_thread")


def build(space: str, signature, overrides: dict | None = None) -> torch.nn.Module:
    """A tiny model of ``space`` (a searchable one at a sampled architecture)."""
    from nasmerc.nas.population import sample_arch

    built = get_search_space(space).from_preset(signature, "default", overrides or {})
    return built.build(sample_arch(built.choices(), np.random.default_rng(0)))


def assert_same_batch(a: Batch, b: Batch) -> None:
    for f in fields(Batch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for m in x:
                assert x[m].dtype == y[m].dtype and torch.equal(x[m], y[m]), (f.name, m)
        elif isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), f.name
        elif f.name != "resident":
            assert x == y, f.name


@pytest.mark.parametrize("kind", ["classification", "regression", "utterance"])
def test_gather_equals_collate(kind: str, tiny_dataset, tiny_regression) -> None:
    ds = tiny_regression if kind == "regression" else tiny_dataset
    sig = replace(ds.signature, level="utterance") if kind == "utterance" else ds.signature
    convs = ds.split("train")
    split = ResidentSplit(convs, sig)
    for idx in ([0], [3, 1, 4], [5, 0, 2, 1], list(range(len(convs)))):
        got = split.gather(np.asarray(idx))
        want = collate([convs[i] for i in idx], sig)
        assert got.length == max(len(convs[i]) for i in idx)  # trimmed to the longest of the batch
        assert_same_batch(got, want)
        assert got.resident and not want.resident
        assert split.rows(np.asarray(idx)) == (len(idx) if kind == "utterance" else int(want.mask.sum()))


def test_fixed_masks_stacked_once_are_the_per_batch_ones(tiny_dataset) -> None:
    convs, sig = tiny_dataset.split("valid") + tiny_dataset.split("test"), tiny_dataset.signature
    split = ResidentSplit(convs, sig)
    present = split.fixed_present(0.5, 3)
    assert split.fixed_present(0.5, 3) is present  # kept, not rebuilt
    masks = fixed_masks(convs, 3, 0.5, 3)
    idx = np.asarray([4, 0, 2])
    host = collate([convs[i] for i in idx], sig)
    host = host.with_present(stack_masks([masks[i] for i in idx], host))
    assert_same_batch(split.gather_masked(idx, present), host)


def test_the_cache_finds_subsets_for_training_and_exact_splits_for_evaluation(tiny_dataset) -> None:
    cache = ResidentCache(tiny_dataset.signature, "cpu")
    train = tiny_dataset.split("train")
    whole, pos = cache.find(train)
    sub, sub_pos = cache.find([train[4], train[1]])
    assert sub is whole and sub_pos.tolist() == [4, 1]
    exact, _ = cache.find([train[4], train[1]], exact=True)  # other masks along another list: its own split
    assert exact is not whole and len(exact) == 2 and pos.tolist() == list(range(len(train)))


def keep_rates(present: torch.Tensor) -> np.ndarray:
    return present.reshape(-1, present.shape[-1]).float().mean(0).numpy()


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_torch_masks_keep_the_rate_per_modality_and_one_per_row(m: int, rate: float) -> None:
    gen = torch.Generator().manual_seed(0)
    present = draw_present_torch((200, 100), m, rate, gen)
    assert present.shape == (200, 100, m) and present.dtype == torch.bool
    assert present.any(-1).all()  # at least one modality per row
    np.testing.assert_allclose(keep_rates(present), 1 - rate, atol=0.01)  # 20000 rows per modality


def test_torch_and_numpy_masks_draw_the_same_patterns_equally_often() -> None:
    """Not only the kept fraction: every one of the ``2^M - 1`` patterns comes as often from the torch
    draw as from the numpy one (GCNet's rule, two generators)."""
    from nasmerc.data.missing import draw_present

    for rate in (0.2, 0.45):
        torch_rows = draw_present_torch((40000,), 3, rate, torch.Generator().manual_seed(3)).numpy()
        numpy_rows = draw_present(40000, 3, rate, np.random.default_rng(3))
        codes = [np.bincount(rows @ np.array([1, 2, 4]), minlength=8) / len(rows) for rows in (torch_rows, numpy_rows)]
        assert codes[0][0] == 0 and codes[1][0] == 0  # never nothing
        np.testing.assert_allclose(codes[0], codes[1], atol=0.01)


def test_torch_masks_above_the_floor_keep_exactly_one_uniformly() -> None:
    present = draw_present_torch((20000,), 3, 0.7, torch.Generator().manual_seed(1))
    assert (present.sum(-1) == 1).all()
    np.testing.assert_allclose(keep_rates(present), [1 / 3] * 3, atol=0.015)
    assert draw_present_torch((50,), 1, 0.7, torch.Generator().manual_seed(0)).all()  # a lone modality stays


def test_torch_frame_masks_are_independent_at_the_rate() -> None:
    gen = torch.Generator().manual_seed(2)
    for rate in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(1 - keep_rates(draw_frames_torch((200, 100), 3, rate, gen)), rate, atol=0.015)
    both = draw_frames_torch((20000,), 2, 0.5, gen)
    assert abs((~both[:, 0] & ~both[:, 1]).float().mean().item() - 0.25) < 0.015


def test_mask_batch_torch_levels_padding_and_seed(tiny_dataset) -> None:
    sig, convs = tiny_dataset.signature, tiny_dataset.split("train")
    batch = ResidentSplit(convs, sig).gather(np.arange(len(convs)))
    a = mask_batch_torch(batch, 0.5, torch.Generator().manual_seed(7))
    b = mask_batch_torch(batch, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a.present, b.present) and a.resident  # seeded
    assert not a.present[~batch.mask].any() and a.present[batch.mask].any(-1).all()
    for i, m in enumerate(batch.modalities):
        assert torch.count_nonzero(a.features[m][~a.present[..., i]]) == 0
        assert torch.equal(a.complete[m], batch.complete[m])
    utt = mask_batch_torch(batch, 0.5, torch.Generator().manual_seed(7), utterance_level=True)
    for row in range(batch.size):  # one pattern per sample, over its real frames
        real = utt.present[row][batch.mask[row]]
        assert (real == real[:1]).all()
    frames = mask_batch_torch(batch, 0.5, torch.Generator().manual_seed(7), utterance_level=True, frames=True)
    assert any(len({tuple(r) for r in frames.present[i][batch.mask[i]].tolist()}) > 1 for i in range(batch.size))
    with pytest.raises(NasmercError, match="frame-level masking is for utterance-level data"):
        mask_batch_torch(batch, 0.5, torch.Generator(), frames=True)


@pytest.mark.parametrize("kind", ["classification", "regression", "utterance_cls", "utterance_reg"])
def test_the_sync_free_loss_is_the_selected_one(kind: str, tiny_dataset, tiny_regression) -> None:
    ds = tiny_regression if "reg" in kind else tiny_dataset
    sig = replace(ds.signature, level="utterance") if kind.startswith("utterance") else ds.signature
    batch = collate(ds.split("train")[:4], sig)
    shape = (*batch.labels.shape, sig.n_outputs) if sig.task == "classification" else batch.labels.shape
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    if batch.labels.dim() == 2:  # whatever a model leaves on padding rows never counts
        logits = torch.where(batch.mask.view(*batch.mask.shape, *[1] * (logits.dim() - 2)), logits, float("nan"))
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    host = task_loss(a, batch, sig.task)
    free = masked_task_loss(b, batch, sig.task)
    assert task_loss(b, replace(batch, resident=True), sig.task).item() == free.item()
    torch.testing.assert_close(free, host, rtol=1e-6, atol=1e-7)
    host.backward()
    free.backward()
    assert torch.isfinite(b.grad).all()
    torch.testing.assert_close(b.grad, torch.nan_to_num(a.grad, nan=0.0), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("space", ["early_fusion", "rmnas"])
def test_the_device_path_given_the_same_masks_gives_the_host_outputs(space: str, tiny_dataset) -> None:
    """fp32: a forward pass on the gathered batch equals the one on the collated batch under one
    pattern, and validation (fixed masks in both paths) gives the same outputs and loss."""
    sig, convs = tiny_dataset.signature, tiny_dataset.split("train")
    model = build(space, sig).eval()
    idx = np.asarray([2, 5, 0])
    host = collate([convs[i] for i in idx], sig)
    present = mask_batch_torch(host, 0.5, torch.Generator().manual_seed(0)).present
    host = host.with_present(present)
    device = ResidentSplit(convs, sig).gather(idx).with_present(present)
    with torch.no_grad():
        a, b = model(host), model(device)
    assert torch.equal(a.logits, b.logits)
    for name in a.aux_losses:
        torch.testing.assert_close(b.aux_losses[name], a.aux_losses[name], rtol=1e-6, atol=1e-7)
    preds = {}
    for data in ("host", "device"):
        trainer = Trainer(model, sig, TrainConfig(epochs=1, data=data, eval_batch_size=4, precision="fp32"))
        preds[data] = trainer.predict(tiny_dataset.split("test"), 0.5)
    np.testing.assert_array_equal(preds["device"].outputs, preds["host"].outputs)
    np.testing.assert_array_equal(preds["device"].labels, preds["host"].labels)
    assert preds["device"].loss == pytest.approx(preds["host"].loss, rel=1e-6)


def fit_device(dataset, epochs: int = 3, checkpoint: Checkpoint | None = None, hooks=(), seed: int = 4):
    torch.manual_seed(seed)
    model = build("early_fusion", dataset.signature, {"hidden_dim": 16})
    trainer = Trainer(model, dataset.signature, TrainConfig(epochs=epochs, batch_size=2, data="device"), seed=seed)
    assert trainer.resident and trainer.mask_generator is not None
    return trainer.fit(dataset.split("train"), dataset.split("valid"), hooks=hooks, checkpoint=checkpoint)


def numbers(result) -> list:
    return [(h["train_loss"], h["valid_loss"], h["value"], h["missing_rate"]) for h in result.history]


def test_the_same_seed_twice_gives_the_same_fit_under_the_device_path(tiny_dataset) -> None:
    a, b = fit_device(tiny_dataset), fit_device(tiny_dataset)
    assert numbers(a) == numbers(b) and a.best_value == b.best_value
    assert numbers(fit_device(tiny_dataset, seed=5)) != numbers(a)


class Kill(TrainHook):
    """Stops the training at the first step of epoch ``at`` (0-based), as a kill would."""

    def __init__(self, at: int | None) -> None:
        self.at = at

    def before_step(self, trainer: Trainer, batch: Batch, epoch: int, step: int) -> None:
        if epoch == self.at:
            raise KeyboardInterrupt


def test_a_resumed_device_run_equals_an_uninterrupted_one(tiny_dataset, tmp_path) -> None:
    whole = fit_device(tiny_dataset, 4, hooks=[Kill(None)])
    events = Events()
    with pytest.raises(KeyboardInterrupt):
        fit_device(tiny_dataset, 4, Checkpoint(tmp_path, "checkpoint.pt", events), hooks=[Kill(2)])
    saved = Checkpoint(tmp_path, "checkpoint.pt", events).load()
    assert saved["epoch"] == 2 and "mask_torch" in saved["random"]
    resumed = fit_device(tiny_dataset, 4, Checkpoint(tmp_path, "checkpoint.pt", Events()), hooks=[Kill(None)])
    assert numbers(resumed) == numbers(whole) and resumed.best_epoch == whole.best_epoch


def test_data_path_is_checked() -> None:
    with pytest.raises(NasmercError, match="data='gpu': expected one of auto, host, device"):
        TrainConfig(data="gpu")
    assert not Trainer(torch.nn.Linear(1, 1), _sig(), TrainConfig()).resident  # auto on the CPU: the host path


def _sig():
    from nasmerc.data.conversation import DataSignature

    return DataSignature(("text",), {"text": 2}, "classification", classes=("a", "b"), n_speakers=1)


def test_module_losses_of_the_device_path_are_the_host_ones() -> None:
    """The missing-modality losses switched to masked sums for resident batches (``resident=True``)
    give the boolean-selected means, and 0 when no row is chosen."""
    from nasmerc.modules.merc import distill_loss, reconstruction_loss
    from nasmerc.train.losses import masked_mean
    from search_spaces.fixed.mfmb import generative_loss

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    rows = torch.rand(3, 5, generator=gen) > 0.5
    for loss in (reconstruction_loss, distill_loss):
        torch.testing.assert_close(loss(pred, target, rows, resident=True), loss(pred, target, rows))
        assert loss(pred, target, torch.zeros_like(rows), resident=True).item() == 0.0
    torch.testing.assert_close(generative_loss(pred, target, rows, True), generative_loss(pred, target, rows))
    torch.testing.assert_close(masked_mean(pred, rows), pred[rows].mean())


@pytest.mark.parametrize("space", ["mfmb", "micga"])
def test_fixed_spaces_train_the_same_losses_on_resident_batches(space: str, tiny_dataset) -> None:
    """A training forward of MFMB-Net / Mi-CGA on the same masked batch, host and resident: the same
    logits, and the reconstruction terms (masked sums on the resident one) to float tolerance."""
    sig, convs = tiny_dataset.signature, tiny_dataset.split("train")
    model = build(space, sig).train()
    idx = np.asarray([1, 3, 4])
    host = collate([convs[i] for i in idx], sig)
    host = host.with_present(mask_batch_torch(host, 0.5, torch.Generator().manual_seed(0)).present)
    device = replace(host, resident=True)
    outs = []
    for batch in (host, device):
        torch.manual_seed(0)  # the same dropout draws
        outs.append(model(batch))
    torch.testing.assert_close(outs[1].logits, outs[0].logits, rtol=0, atol=0)
    assert outs[0].aux_losses.keys() == outs[1].aux_losses.keys()
    for name in outs[0].aux_losses:
        torch.testing.assert_close(outs[1].aux_losses[name], outs[0].aux_losses[name], rtol=1e-5, atol=1e-6)
