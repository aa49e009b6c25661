"""Conversations, the data signature and the padded Batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasmerc.data.batch import PAD_CLASS, collate, iterate_batches
from nasmerc.data.conversation import Conversation, ConversationDataset, DataSignature, carve_validation
from nasmerc.errors import NasmercError

SIG = DataSignature(modalities=("text", "audio"), dims={"text": 3, "audio": 2}, task="classification",
                    classes=("a", "b", "c"), n_speakers=2)


def conv(n: int, seed: int = 0, labels=None) -> Conversation:
    rng = np.random.default_rng(seed)
    return Conversation(f"c{seed}", {"text": rng.normal(size=(n, 3)).astype(np.float32),
                                     "audio": rng.normal(size=(n, 2)).astype(np.float32)},
                        rng.integers(0, 2, n), np.asarray(labels if labels is not None else rng.integers(0, 3, n)))


def test_collate_pads_and_masks():
    a, b = conv(4, 0), conv(2, 1)
    batch = collate([a, b], SIG)
    assert batch.features["text"].shape == (2, 4, 3) and batch.features["audio"].shape == (2, 4, 2)
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.present.shape == (2, 4, 2) and batch.present[1, 2:].sum() == 0 and batch.present[0].all()
    assert batch.labels[1, 2:].tolist() == [PAD_CLASS, PAD_CLASS]
    assert batch.labels.dtype == torch.long and batch.speakers.dtype == torch.long
    np.testing.assert_allclose(batch.features["text"][1, :2].numpy(), b.features["text"])
    assert torch.count_nonzero(batch.features["text"][1, 2:]) == 0
    assert batch.ids == ("c0", "c1") and batch.size == 2 and batch.length == 4
    assert batch.to("cpu").features["text"].device.type == "cpu"


def test_regression_and_utterance_level_labels():
    reg = DataSignature(("text", "audio"), {"text": 3, "audio": 2}, "regression")
    c = conv(3, labels=np.array([0.5, -1.0, 2.0], dtype=np.float32))
    batch = collate([c, conv(2, 1, labels=np.array([1.0, 1.0], dtype=np.float32))], reg)
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (2, 3)
    utt = DataSignature(("text", "audio"), {"text": 3, "audio": 2}, "classification", level="utterance",
                        classes=("a", "b", "c"), n_speakers=2)
    frames = conv(5, labels=np.array([2]))
    batch = collate([frames, conv(3, 1, labels=np.array([0]))], utt)
    assert batch.labels.tolist() == [2, 0] and batch.mask.shape == (2, 5)
    frames.validate(utt)


def test_iterate_batches_covers_everything_once():
    convs = [conv(3, i) for i in range(7)]
    seen = []
    for idx, batch in iterate_batches(convs, SIG, 3, shuffle=True, rng=np.random.default_rng(0)):
        assert batch.size == len(idx)
        seen += idx.tolist()
    assert sorted(seen) == list(range(7))


@pytest.mark.parametrize("bad, needle", [
    (lambda c: c.features.pop("audio"), "missing modality 'audio'"),
    (lambda c: c.features.__setitem__("text", np.zeros((4, 5), np.float32)), "expected (4, 3)"),
    (lambda c: c.features["text"].__setitem__((0, 0), np.nan), "NaN or inf"),
    (lambda c: c.labels.__setitem__(0, 7), "label 7 outside the class set"),
    (lambda c: c.speakers.__setitem__(0, 5), "speaker ids outside"),
])
def test_validate_names_the_problem(bad, needle):
    c = conv(4)
    bad(c)
    with pytest.raises(NasmercError) as err:
        c.validate(SIG, where="split 'train', ")
    assert needle in str(err.value) and "'c0'" in str(err.value)


def test_empty_conversation_and_missing_split():
    c = Conversation("e", {"text": np.zeros((0, 3)), "audio": np.zeros((0, 2))}, np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(NasmercError, match="empty conversation"):
        c.validate(SIG)
    with pytest.raises(NasmercError, match="missing split 'test'"):
        ConversationDataset("x", SIG, {"train": [], "valid": []})


def test_carve_validation_is_deterministic_and_disjoint():
    convs = [conv(2, i) for i in range(10)]
    a_train, a_valid = carve_validation(convs, 0.2, seed=3)
    b_train, b_valid = carve_validation(convs, 0.2, seed=3)
    assert [c.id for c in a_valid] == [c.id for c in b_valid] and len(a_valid) == 2
    assert not {c.id for c in a_train} & {c.id for c in a_valid}
    assert len(a_train) + len(a_valid) == 10


def test_signature_round_trip_and_summary(tiny_dataset):
    sig = tiny_dataset.signature
    assert DataSignature.from_dict(sig.to_dict()) == sig
    summary = tiny_dataset.summary()
    assert summary["splits"]["train"]["conversations"] == 6
    assert sum(summary["splits"]["train"]["labels"].values()) == summary["splits"]["train"]["utterances"]
