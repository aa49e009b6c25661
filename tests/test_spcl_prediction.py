"""SPCL's prediction rule (dissertation, section 4.2): the cross-modal logit ``z^joint = sum_m z^m``.

The method fuses the uni-modal logits into a cross-modal logit "for emotion recognition" and
predicts ``argmax softmax(z^joint)``; :meth:`SPCL.prediction` hands that logit to the trainer in place
of the backbone's fused ``out.logits``. Checked here on constructed logits, against loops over rows.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.errors import NasmercError
from nasmerc.outputs import ModelOutput
from nasmerc.train.curriculum import Curriculum
from nasmerc.train.plugins import Plugin
from nasmerc.train.spcl import SPCL

pytestmark = pytest.mark.usefixtures("one_thread")

MODS = ("text", "audio", "visual")


def make_batch(sig: DataSignature, lengths: list[int]) -> Batch:
    rng = np.random.default_rng(0)
    convs = []
    for i, n in enumerate(lengths):
        n_labels = n if sig.level == "dialogue" else 1
        labels = (rng.integers(0, sig.n_classes, n_labels) if sig.task == "classification"
                  else rng.uniform(-3, 3, n_labels).astype(np.float32))
        features = {m: np.zeros((n, sig.dims[m]), np.float32) for m in sig.modalities}
        convs.append(Conversation(id=f"c{i}", features=features, speakers=np.zeros(n, int), labels=labels))
    return collate(convs, sig)


def signature(task: str = "classification", level: str = "dialogue") -> DataSignature:
    classes = ("neu", "hap", "sad", "ang") if task == "classification" else ()
    return DataSignature(MODS, {m: 3 for m in MODS}, task, level, classes, n_speakers=1)


def output(shape: tuple[int, ...], seed: int = 0) -> ModelOutput:
    gen = torch.Generator().manual_seed(seed)
    z = {m: torch.randn(*shape, generator=gen) for m in MODS}
    return ModelOutput(logits=torch.randn(*shape, generator=gen), per_modality_logits=z)


def test_dialogue_prediction_is_the_sum_of_uni_modal_logits_on_real_rows() -> None:
    sig = signature()
    batch = make_batch(sig, [2, 4, 3])
    out = output((3, 4, 4))
    pred = SPCL(sig).prediction(batch, out)
    assert pred.shape == out.logits.shape
    for b, n in enumerate([2, 4, 3]):
        for i in range(4):
            if i < n:  # z_ij^joint = z^t + z^a + z^v, class by class
                for c in range(4):
                    want = sum(float(out.per_modality_logits[m][b, i, c]) for m in MODS)
                    assert float(pred[b, i, c]) == pytest.approx(want, abs=1e-6)
            else:  # padding rows: the model's own
                assert torch.equal(pred[b, i], out.logits[b, i])
    # the predicted class is argmax softmax(z^joint), not the backbone's fused argmax
    probs = torch.softmax(sum(out.per_modality_logits.values()), dim=-1)
    assert torch.equal(pred[batch.mask].argmax(-1), probs[batch.mask].argmax(-1))
    assert not torch.equal(pred[batch.mask].argmax(-1), out.logits[batch.mask].argmax(-1))


def test_utterance_level_prediction_replaces_every_sample() -> None:
    sig = signature(level="utterance")
    batch = make_batch(sig, [5, 2])
    out = output((2, 4), seed=1)
    pred = SPCL(sig).prediction(batch, out)
    want = out.per_modality_logits["text"] + out.per_modality_logits["audio"] + out.per_modality_logits["visual"]
    assert pred.shape == (2, 4) and torch.allclose(pred, want)


@pytest.mark.parametrize("level, shape", [("dialogue", (2, 3)), ("utterance", (2,))])
def test_regression_predicts_the_mean_uni_modal_score(level: str, shape: tuple[int, ...]) -> None:
    sig = signature("regression", level)
    batch = make_batch(sig, [3, 1])
    out = output(shape, seed=2)
    pred = SPCL(sig).prediction(batch, out)
    mean = sum(out.per_modality_logits.values()) / 3
    if level == "dialogue":
        assert torch.allclose(pred[batch.mask], mean[batch.mask])
        assert torch.equal(pred[~batch.mask], out.logits[~batch.mask])
    else:
        assert torch.allclose(pred, mean)


def test_prediction_needs_per_modality_logits_of_the_logits_shape() -> None:
    sig = signature()
    batch = make_batch(sig, [2, 3])
    plugin = SPCL(sig)
    with pytest.raises(NasmercError, match="per-modality logits"):
        plugin.prediction(batch, ModelOutput(logits=torch.zeros(2, 3, 4)))
    bad = replace(output((2, 3, 4)), per_modality_logits={m: torch.zeros(2, 3, 2) for m in MODS})
    with pytest.raises(NasmercError, match=r"shape \[2, 3, 4\]"):
        plugin.prediction(batch, bad)


def test_other_plugins_keep_the_model_logits() -> None:
    sig = signature()
    batch, out = make_batch(sig, [2, 3]), output((2, 3, 4))
    assert Plugin(sig).prediction(batch, out) is None
    assert Curriculum(sig).prediction(batch, out) is None
