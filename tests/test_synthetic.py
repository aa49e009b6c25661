"""The synthetic generator: determinism, shapes, label statistics, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from nasmerc.data.synthetic import PRESETS, load, make_config
from nasmerc.errors import NasmercError


def test_same_seed_same_data_other_seed_other_data(tiny_overrides):
    a = load("iemocap6", tiny_overrides)
    b = load("iemocap6", tiny_overrides)
    c = load("iemocap6", {**tiny_overrides, "seed": 1})
    for ca, cb in zip(a.splits["train"], b.splits["train"]):
        np.testing.assert_array_equal(ca.features["text"], cb.features["text"])
        np.testing.assert_array_equal(ca.labels, cb.labels)
        np.testing.assert_array_equal(ca.speakers, cb.speakers)
    assert not np.array_equal(a.splits["train"][0].features["text"][:3], c.splits["train"][0].features["text"][:3])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_valid_shapes(preset, tiny_overrides):
    overrides = {k: v for k, v in tiny_overrides.items() if not k.startswith("dims.")}
    ds = load(preset, {**overrides, "length_min": 1})
    ds.validate()
    sig = ds.signature
    assert len(ds.splits["train"]) == 6 and len(ds.splits["valid"]) == 2 and len(ds.splits["test"]) == 3
    for conv in ds.splits["test"]:
        assert set(conv.features) == set(sig.modalities)
        for m in sig.modalities:
            assert conv.features[m].shape == (len(conv), sig.dims[m])
            assert conv.features[m].dtype == np.float32
        assert conv.labels.shape == (len(conv),)
    if sig.task == "regression":
        labels = np.concatenate([c.labels for c in ds.splits["train"]])
        assert labels.min() >= -3 and labels.max() <= 3
        assert sig.n_outputs == 1
    else:
        assert sig.n_outputs == len(sig.classes)


def test_paper_sized_presets_match_the_real_sets():
    iemocap = make_config("iemocap6")
    assert iemocap.n_train + iemocap.n_valid + iemocap.n_test == 151
    ds = load("iemocap6")
    lengths = [len(c) for _, convs in ds for c in convs]
    assert 20 <= min(lengths) and max(lengths) <= 110
    assert 6500 <= sum(lengths) <= 8500          # IEMOCAP: about 7.4k utterances
    meld = make_config("meld")
    assert meld.n_train + meld.n_valid + meld.n_test == 1433 and meld.n_speaker_ids == 9
    mosi = make_config("mosi")
    assert mosi.n_train + mosi.n_valid + mosi.n_test == 93


def test_label_marginal_follows_the_prior_and_inertia_shows():
    cfg_over = {"n_train": 400, "n_valid": 1, "n_test": 1, "dims.visual": 8, "dims.text": 8, "dims.audio": 8}
    ds = load("iemocap4", cfg_over)
    cfg = make_config("iemocap4", cfg_over)
    labels = np.concatenate([c.labels for c in ds.splits["train"]])
    freq = np.bincount(labels, minlength=4) / len(labels)
    np.testing.assert_allclose(freq, cfg.prior, atol=0.03)
    # consecutive turns of the same speaker keep the label with prob i + c + r * sum(pi^2)
    same, keep = 0, 0
    for conv in ds.splits["train"]:
        s, y = conv.speakers, conv.labels
        idx = np.nonzero(s[1:] == s[:-1])[0]
        same += len(idx)
        keep += int((y[idx + 1] == y[idx]).sum())
    expected = cfg.inertia + cfg.contagion + (1 - cfg.inertia - cfg.contagion) * float((cfg.prior ** 2).sum())
    assert abs(keep / same - expected) < 0.03


def test_modality_imbalance_text_strongest():
    cfg = make_config("iemocap6")
    assert cfg.snr["text"] > cfg.snr["audio"] > cfg.snr["visual"]


@pytest.mark.parametrize("overrides, needle", [
    ({"nosuchkey": "1"}, "unknown key 'nosuchkey'"),
    ({"inertia": "high"}, "inertia='high': expected float"),
    ({"n_train": "2.5"}, "n_train='2.5': expected int"),
    ({"inertia": "0.9", "contagion": "0.2"}, "inertia + contagion"),
    ({"class_prior": "1,2"}, "class_prior: expected 6 values"),
    ({"speakers_max": "4"}, "speakers_max=4"),
    ({"process": "tree"}, "process='tree'"),
])
def test_bad_overrides_are_named(overrides, needle):
    with pytest.raises(NasmercError) as err:
        make_config("iemocap6", overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_joint_process_refuses_too_many_states():
    with pytest.raises(NasmercError, match="process=chain"):
        make_config("meld", {"process": "joint"})


def test_unknown_preset():
    with pytest.raises(NasmercError, match="unknown synthetic preset 'iemocap9'"):
        make_config("iemocap9")
