"""Tests of the HAEMSA search space: genes, builds, hierarchy depth, KL transfer, auxiliary targets,
output shapes, training and an evolution search, all on tiny shapes and one thread."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, random_conversations
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.modules.experts import FusionLevel, kl_transfer
from nasmerc.nas.choices import OpChoice, choice_modules
from nasmerc.nas.specs import UnresolvedChoice
from nasmerc.nas.population import sample_arch
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchContext
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.haemsa import (DEFAULT_POLARITY, HAEMSAConfig, HAEMSASpace, class_polarity, haemsa_paper,
                                  intensity_targets, plan_tasks, polarity_targets, shared_subsets)
from strategies.evolution import Evolution, EvolutionConfig

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 6, "audio": 5, "visual": 7}
IEMOCAP = ("hap", "sad", "neu", "ang", "exc", "fru")
LENGTHS = [5, 3, 7]


def tiny_config(**changes: Any) -> HAEMSAConfig:
    return replace(HAEMSAConfig(widths=(4, 8), dim=8, n_heads=2, dropout=0.0), **changes)


def signature(task: str = "classification", level: str = "dialogue", classes: tuple[str, ...] = IEMOCAP) -> DataSignature:
    return DataSignature(("text", "audio", "visual"), dict(DIMS), task, level,
                         classes if task == "classification" else (), n_speakers=2)


conversations = random_conversations


def masked_batch(sig: DataSignature, seed: int = 0) -> Batch:
    """Random modalities dropped (one kept per row); conversation 1 has no visual at all."""
    batch = collate(conversations(sig, LENGTHS, seed), sig)
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(batch.present.shape, generator=gen) > 0.4
    keep = torch.randint(0, 3, batch.mask.shape, generator=gen)
    present |= nn.functional.one_hot(keep, 3).bool()
    present[1, :, 2] = False
    present[1, :, 0] = True
    return batch.with_present(present)


def arch_of(space: HAEMSASpace, **genes: Any) -> dict[str, Any]:
    """A valid architecture: first candidate of every gene, ``genes`` overriding."""
    arch: dict[str, Any] = {}
    for s in space.choices():
        arch[s.label] = s.candidates[0] if s.kind in ("op", "value") else s.low
    arch.update(genes)
    return arch


def test_choices_list_every_gene() -> None:
    specs = HAEMSASpace(signature(), tiny_config()).choices()
    kinds = {s.label: s.kind for s in specs}
    assert list(kinds) == ["depth", "text.width", "audio.width", "visual.width", "shared.width", "shared.inputs",
                           "level0.fusion", "level1.fusion", "level2.fusion", "lambda", "gamma"]
    assert len({s.label for s in specs}) == len(specs)
    assert [kinds[k] for k in kinds] == ["value"] * 6 + ["op"] * 3 + ["float"] * 2
    by = {s.label: s for s in specs}
    assert by["depth"].candidates == (1, 2, 3) and by["text.width"].candidates == (4, 8)
    assert by["level1.fusion"].candidates == ("concat", "sum", "gated", "attention")
    assert by["shared.inputs"].candidates[0] == "text+audio+visual" and len(by["shared.inputs"].candidates) == 7
    assert "text+audio" in by["shared.inputs"].candidates and "visual" in by["shared.inputs"].candidates
    assert (by["gamma"].low, by["gamma"].high) == (0.0, 1.0)
    # unknown class names: no auxiliary task, so no lambda gene
    plain = HAEMSASpace(signature(classes=("a", "b")), tiny_config()).choices()
    assert "lambda" not in {s.label for s in plain} and "gamma" in {s.label for s in plain}
    assert shared_subsets(("a", "b")) == ["a+b", "a", "b"]


def test_supernet_needs_fixed_values() -> None:
    space = HAEMSASpace(signature(), tiny_config())
    with pytest.raises(UnresolvedChoice, match="'depth'"):
        space.supernet()
    fixed = {s.label: (s.candidates[-1] if s.kind == "value" else 0.5)
             for s in space.choices() if s.kind in ("value", "float")}
    net = space.supernet(fixed)
    assert [c.label for c in choice_modules(net)] == ["level0.fusion", "level1.fusion", "level2.fusion"]
    assert all(isinstance(c, OpChoice) for c in choice_modules(net))
    with pytest.raises(NasmercError, match="fusions"):
        HAEMSASpace(signature(), tiny_config(fusions=("concat", "bogus")))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_random_archs_forward_backward_with_missing(task: str) -> None:
    sig = signature(task)
    space = HAEMSASpace(sig, tiny_config())
    specs = space.choices()
    rng = np.random.default_rng(0)
    batch = masked_batch(sig)
    depths = set()
    for _ in range(5):
        arch = sample_arch(specs, rng)
        assert space.canonical(arch) == arch
        depths.add(arch["depth"])
        torch.manual_seed(0)
        model = space.build(arch)
        assert not choice_modules(model)
        out = model(batch)
        total = out.logits.sum() + sum(out.aux_weights.get(k, 1.0) * v for k, v in out.aux_losses.items())
        assert torch.isfinite(total)
        assert set(out.aux_losses) == {"mtl", "shared_task", "kl_text", "kl_audio", "kl_visual"}
        assert out.aux_weights["mtl"] == arch["lambda"] and out.aux_weights["kl_text"] == arch["gamma"]
        total.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert model.shared.proj[0].in_features == sum(DIMS[m] for m in arch["shared.inputs"].split("+"))
    assert len(depths) > 1


def test_depth_changes_levels_and_parameters() -> None:
    space = HAEMSASpace(signature(), tiny_config())
    counts = []
    for depth in (1, 2, 3):
        model = space.build(arch_of(space, depth=depth, **{"level0.fusion": "sum", "level1.fusion": "sum",
                                                            "level2.fusion": "attention"}))
        assert len(model.levels) == depth and all(isinstance(lv, FusionLevel) for lv in model.levels)
        assert [lv.fusion for lv in model.levels] == ["sum", "sum", "attention"][:depth]
        counts.append(count_parameters(model))
    assert counts[0] < counts[1] < counts[2]
    # the fusion gene of a level beyond depth is inert: same model size whatever it says
    a = space.build(arch_of(space, depth=1, **{"level2.fusion": "sum"}))
    b = space.build(arch_of(space, depth=1, **{"level2.fusion": "attention"}))
    assert count_parameters(a) == count_parameters(b)


def test_kl_transfer_zero_when_agreeing_and_detached() -> None:
    teacher = torch.randn(6, 4, requires_grad=True)
    same = teacher.detach().clone().requires_grad_(True)
    assert kl_transfer(teacher, same).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_transfer(teacher, same + 5.0).item() == pytest.approx(0.0, abs=1e-5)  # softmax is shift-invariant
    student = torch.randn(6, 4, requires_grad=True)
    loss = kl_transfer(teacher, student)
    assert loss.item() > 0
    loss.backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0
    keep = torch.tensor([True, False, False, False, False, False])
    manual = (torch.softmax(teacher[:1], -1) * (torch.log_softmax(teacher[:1], -1)
                                                 - torch.log_softmax(student[:1], -1))).sum()
    assert kl_transfer(teacher, student, keep).item() == pytest.approx(manual.item(), rel=1e-5)
    assert kl_transfer(teacher, student, torch.zeros(6, dtype=torch.bool)).item() == 0.0
    kl_transfer(teacher, student, detach_teacher=False).backward()
    assert teacher.grad is not None

    # inside the model: the KL term trains the modality expert, never the shared expert or its head
    space = HAEMSASpace(signature(), tiny_config())
    model = space.build(arch_of(space))
    model(masked_batch(signature())).aux_losses["kl_text"].backward()
    assert model.heads["text"].weight.grad.abs().sum() > 0
    assert model.experts["text"].proj[0].weight.grad.abs().sum() > 0
    assert model.heads["shared"].weight.grad is None
    assert all(p.grad is None for p in model.shared.parameters())


def test_auxiliary_targets() -> None:
    scores = torch.tensor([-2.0, 0.0, 1.5, -0.2, 0.3])
    assert polarity_targets(scores, "regression").tolist() == [0, 1, 2, 0, 2]
    assert polarity_targets(scores, "regression", neutral_band=0.5).tolist() == [0, 1, 2, 1, 1]
    assert intensity_targets(scores).tolist() == pytest.approx([2.0, 0.0, 1.5, 0.2, 0.3])
    table = class_polarity(IEMOCAP, DEFAULT_POLARITY)
    assert table == (2, 0, 1, 0, 2, 0)  # hap+, sad-, neu0, ang-, exc+, fru-
    meld = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
    assert class_polarity(meld, DEFAULT_POLARITY) == (1, 2, 0, 0, 2, 0, 0)
    assert class_polarity(("hap", "other"), DEFAULT_POLARITY) is None
    assert class_polarity(("sad", "ang"), DEFAULT_POLARITY) is None  # one polarity: nothing to learn
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    assert polarity_targets(labels, "classification", class_to_polarity=torch.tensor(table)).tolist() == list(table)
    cfg = tiny_config()
    assert [t.name for t in plan_tasks(signature(), cfg)] == ["main", "polarity"]
    assert [t.name for t in plan_tasks(signature(classes=("a", "b")), cfg)] == ["main"]
    assert [(t.name, t.kind) for t in plan_tasks(signature("regression"), cfg)] == [
        ("main", "regression"), ("polarity", "classification"), ("intensity", "regression")]
    assert [t.name for t in plan_tasks(signature("regression"), tiny_config(aux_intensity=False))] == [
        "main", "polarity"]
    # the model derives them from the real rows of the batch
    sig = signature("regression")
    space = HAEMSASpace(sig, tiny_config())
    batch = masked_batch(sig)
    targets = space.build(arch_of(space)).targets(batch)
    real = batch.labels[batch.mask]
    assert torch.equal(targets["polarity"], (real > 0).long() * 2 + (real == 0).long())
    assert torch.equal(targets["intensity"], real.abs())
    space = HAEMSASpace(signature(), tiny_config())
    batch = masked_batch(signature())
    targets = space.build(arch_of(space)).targets(batch)
    assert torch.equal(targets["polarity"], torch.tensor(table)[batch.labels[batch.mask]])


@pytest.mark.parametrize("task,level", [("classification", "dialogue"), ("regression", "dialogue"),
                                        ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(task: str, level: str) -> None:
    sig = signature(task, level)
    space = HAEMSASpace(sig, tiny_config())
    batch = masked_batch(sig)
    for depth in (1, 3):
        out = space.build(arch_of(space, depth=depth, **{"level0.fusion": "attention", "level1.fusion": "gated",
                                                         "level2.fusion": "concat"}))(batch)
        b, n = batch.mask.shape
        want = {("classification", "dialogue"): (b, n, 6), ("regression", "dialogue"): (b, n),
                ("classification", "utterance"): (b, 6), ("regression", "utterance"): (b,)}[(task, level)]
        assert tuple(out.logits.shape) == want
        if task == "classification":
            assert set(out.per_modality_logits) == {"text", "audio", "visual"}
            assert all(tuple(v.shape) == want for v in out.per_modality_logits.values())
        else:
            assert not out.per_modality_logits
        assert all(torch.isfinite(v) for v in out.aux_losses.values())


def test_paper_preset_builds() -> None:
    space = HAEMSASpace(signature(), haemsa_paper())
    labels = [s.label for s in space.choices()]
    assert "level3.fusion" in labels
    assert count_parameters(space.build(arch_of(space, depth=4))) > count_parameters(
        HAEMSASpace(signature(), tiny_config()).build(arch_of(HAEMSASpace(signature(), tiny_config()))))


def test_trainer_two_epochs_on_synthetic_iemocap() -> None:
    data = load("iemocap6", TINY)
    space = HAEMSASpace(data.signature)
    arch = sample_arch(space.choices(), np.random.default_rng(1))
    torch.manual_seed(0)
    trainer = Trainer(space.build(arch), data.signature, TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0,)))
    fit = trainer.fit(data.split("train"), data.split("valid"))
    assert np.isfinite(fit.best_value) and len(fit.history) == 2
    assert all(np.isfinite(v) for v in fit.best_metrics.values())
    assert {"task", "mtl", "shared_task", "kl_text"} <= set(fit.history[-1]["losses"])
    assert all(np.isfinite(v) for v in fit.history[-1]["losses"].values())


def test_evolution_finds_a_buildable_arch(tmp_path: Path) -> None:
    data = load("iemocap6", TINY)
    space = HAEMSASpace(data.signature, replace(HAEMSAConfig(), widths=(8, 16), dim=8))
    sink = ListSink()
    ctx = SearchContext(space=space, dataset=data, train=TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,)),
                        device=torch.device("cpu"), seed=0, events=Events([sink]), run_dir=tmp_path, fixed={})
    result = Evolution(EvolutionConfig(population=2, generations=1, candidate_epochs=1)).search(ctx)
    assert space.canonical(result.arch) == result.arch
    assert result.derived_parameters == count_parameters(space.build(result.arch))
    assert np.isfinite(result.best_value)
