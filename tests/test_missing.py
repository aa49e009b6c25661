"""Missing-modality masks (GCNet protocol) and the training schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasmerc.data.batch import collate
from nasmerc.data.missing import (FixedRate, ProgressiveRate, RandomRate, draw_present, fixed_masks, make_schedule,
                                  mask_batch, parse_rates)
from nasmerc.errors import NasmercError


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5, 0.6])
def test_kept_fraction_and_one_modality_per_row(m, rate):
    if 1 - rate < 1 / m:
        pytest.skip("below the one-modality floor")
    present = draw_present(20000, m, rate, np.random.default_rng(0))
    assert present.any(axis=1).all()
    assert abs(present.mean() - (1 - rate)) < 0.01


def test_high_rates_keep_exactly_one_modality():
    present = draw_present(5000, 3, 0.7, np.random.default_rng(1))
    assert (present.sum(axis=1) == 1).all()
    # each modality is the kept one about equally often
    np.testing.assert_allclose(present.mean(axis=0), [1 / 3] * 3, atol=0.03)


def test_single_modality_is_never_dropped():
    assert draw_present(100, 1, 0.7, np.random.default_rng(0)).all()


def test_fixed_masks_are_deterministic_per_rate_and_seed(tiny_dataset):
    convs = tiny_dataset.splits["train"]
    a = fixed_masks(convs, 3, 0.3, seed=0)
    b = fixed_masks(convs, 3, 0.3, seed=0)
    c = fixed_masks(convs, 3, 0.3, seed=1)
    d = fixed_masks(convs, 3, 0.4, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert not all(np.array_equal(x, y) for x, y in zip(a, d))
    assert [x.shape for x in a] == [(len(cv), 3) for cv in convs]


def test_utterance_level_masks_repeat_one_pattern_over_frames(tiny_dataset):
    masks = fixed_masks(tiny_dataset.splits["train"], 3, 0.5, seed=0, utterance_level=True)
    for pat in masks:
        assert (pat == pat[:1]).all()


def test_mask_batch_zeroes_dropped_features_and_keeps_complete(tiny_dataset):
    batch = collate(tiny_dataset.splits["train"][:3], tiny_dataset.signature)
    masked = mask_batch(batch, 0.5, np.random.default_rng(0))
    assert masked.present[~batch.mask].sum() == 0
    assert masked.present[batch.mask].any(dim=-1).all()
    for i, m in enumerate(batch.modalities):
        dropped = ~masked.present[..., i]
        assert torch.count_nonzero(masked.features[m][dropped]) == 0
        kept = masked.present[..., i]
        assert torch.equal(masked.features[m][kept], batch.features[m][kept])
        assert torch.equal(masked.complete[m], batch.complete[m])


def test_schedules():
    rng = np.random.default_rng(0)
    assert FixedRate(0.3).rate(5, 10, rng) == 0.3
    draws = [RandomRate().rate(0, 10, rng) for _ in range(2000)]
    assert min(draws) >= 0 and max(draws) <= 0.7 and abs(np.mean(draws) - 0.35) < 0.02
    prog = ProgressiveRate()
    assert [prog.rate(e, 100, rng) for e in (0, 9, 10, 25, 69, 70, 99)] == [0.0, 0.0, 0.1, 0.2, 0.6, 0.7, 0.7]
    assert [prog.rate(e, 5, rng) for e in range(5)] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert isinstance(make_schedule("random"), RandomRate)
    assert isinstance(make_schedule("progressive"), ProgressiveRate)
    assert make_schedule("fixed:0.2").value == 0.2 and make_schedule("0.4").value == 0.4


@pytest.mark.parametrize("spec", ["sometimes", "fixed:x", "1.5"])
def test_bad_schedule_is_named(spec):
    with pytest.raises(NasmercError, match="missing"):
        make_schedule(spec)


def test_parse_rates():
    assert parse_rates("0, 0.1,0.7") == (0.0, 0.1, 0.7)
    with pytest.raises(NasmercError, match="'abc'"):
        parse_rates("0,abc")
    with pytest.raises(NasmercError, match="1.5"):
        parse_rates("1.5")


def test_frame_level_masks_keep_the_rate_per_modality() -> None:
    """``masking=frame`` drops each modality's frames independently at the stated rate, up to 1.0."""
    from nasmerc.data.missing import draw_frames

    rng = np.random.default_rng(0)
    for rate in (0.0, 0.3, 0.7, 1.0):
        present = draw_frames(20000, 3, rate, rng)
        assert np.allclose(1 - present.mean(0), rate, atol=0.015), (rate, present.mean(0))
    both = draw_frames(20000, 2, 0.5, rng)
    assert abs((~both[:, 0] & ~both[:, 1]).mean() - 0.25) < 0.015  # independent across modalities


def test_frame_level_fixed_masks_vary_within_a_sample_and_are_refused_for_dialogues(tiny_dataset) -> None:
    from nasmerc.data.missing import fixed_masks

    convs = tiny_dataset.split("test")  # read as utterance-level samples whose rows are frames
    masks = fixed_masks(convs, 3, 0.5, 0, utterance_level=True, frames=True)
    assert any(len({tuple(row) for row in m.tolist()}) > 1 for m in masks)  # patterns vary within a sample
    again = fixed_masks(convs, 3, 0.5, 0, utterance_level=True, frames=True)
    assert all((a == b).all() for a, b in zip(masks, again))  # seeded
    whole = fixed_masks(convs, 3, 0.5, 0, utterance_level=True)
    assert all(len({tuple(row) for row in m.tolist()}) == 1 for m in whole)  # the default: one per sample
    with pytest.raises(NasmercError, match="frame-level masking is for utterance-level data"):
        fixed_masks(convs, 3, 0.5, 0, utterance_level=False, frames=True)
