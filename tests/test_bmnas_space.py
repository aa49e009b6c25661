"""The ``bmnas`` space: fixed unimodal Transformer encoders, searched BM-NAS fusion.

Tiny synthetic data from ``conftest.TINY``; single-threaded.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from conftest import TINY, utterance_batch
from nasmerc.data.batch import Batch, collate
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.modules.bmnas import MultiLevelFusionNetwork
from nasmerc.nas.choices import InputChoice, OpChoice, choice_modules
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from search_spaces import rmnas
from search_spaces.bmnas import BMNASConfig, BMNASNetwork, BMNASSpace, bmnas_paper

pytestmark = pytest.mark.usefixtures("one_thread")

SPACE = BMNASConfig(hidden_dim=8, n_layers=2, n_heads=2, ffn_ratio=2.0, n_cells=2, n_steps=2, fusion_dim=6,
                    dropout=0.0)
OPS = ("zero", "sum", "attention", "linear_glu", "concat_fc")


@pytest.fixture(scope="module")
def dataset():
    return load("iemocap6", TINY)


@pytest.fixture(scope="module")
def regression():
    return load("mosi", {**TINY, "dims.audio": 5})


def batch_of(ds, n: int = 3, rate_seed: int = 0) -> Batch:
    """The first ``n`` training conversations, with random modalities dropped (one kept per row)."""
    batch = collate(ds.split("train")[:n], ds.signature)
    gen = torch.Generator().manual_seed(rate_seed)
    present = torch.rand(batch.present.shape, generator=gen) > 0.4
    keep = torch.randint(0, batch.present.shape[-1], batch.mask.shape, generator=gen)
    return batch.with_present(present | nn.functional.one_hot(keep, batch.present.shape[-1]).bool())


def uniform_hook(choice: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    if isinstance(choice, OpChoice):
        return torch.stack([c(*args, **kwargs) for c in choice.candidates.values()]).mean(0)
    return torch.stack(list(args[0])).mean(0)


def random_arch(space: BMNASSpace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {s.label: rng.choice(s.candidates) if s.kind == "op" else [rng.randrange(s.n_candidates)]
            for s in space.choices()}


def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


def test_choices_are_only_fusion_choices(dataset) -> None:
    specs = BMNASSpace(dataset.signature, SPACE).choices()
    labels = [s.label for s in specs]
    expected = []
    for c in range(2):
        expected += [f"cell{c}.input0", f"cell{c}.input1"]
        for s in range(2):
            expected += [f"cell{c}.step{s}.x", f"cell{c}.step{s}.y", f"cell{c}.step{s}.op"]
    assert labels == expected
    assert not any("mixer" in label for label in labels)
    by = {s.label: s for s in specs}
    assert by["cell0.step1.op"].candidates == OPS
    assert by["cell0.input0"].candidates == tuple(f"{m}.layer{i}" for m in ("text", "audio", "visual") for i in range(2))
    assert by["cell1.input0"].n_candidates == 7 and by["cell1.input0"].candidates[-1] == "cell0"
    assert by["cell1.step1.x"].candidates == ("input0", "input1", "step0")


def test_shares_the_fusion_network_with_rmnas() -> None:
    assert issubclass(rmnas.RMNASNetwork, MultiLevelFusionNetwork)
    assert issubclass(BMNASNetwork, MultiLevelFusionNetwork)
    assert "class FusionCell" not in open(rmnas.__file__, encoding="utf-8").read()


def test_supernet_needs_a_hook_and_runs_with_a_uniform_one(dataset) -> None:
    torch.manual_seed(0)
    net = BMNASSpace(dataset.signature, SPACE).supernet()
    batch = batch_of(dataset)
    with pytest.raises(NasmercError, match="cell0.input0"):
        net(batch)
    assert {type(m) for m in choice_modules(net)} == {OpChoice, InputChoice}
    for m in choice_modules(net):
        m.attach(uniform_hook)
    out = net(batch)
    assert out.logits.shape == (*batch.mask.shape, 6) and torch.isfinite(out.logits).all()
    total_loss(out, batch, "classification").backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize("seed", range(3))
def test_build_prunes_unchosen_parameters(dataset, seed: int) -> None:
    space = BMNASSpace(dataset.signature, SPACE)
    arch = random_arch(space, seed)
    supernet, model = space.supernet(), space.build(arch)
    assert choice_modules(model) == []
    unchosen = sum(count_parameters(c) for m in choice_modules(supernet) if isinstance(m, OpChoice)
                   for name, c in m.candidates.items() if name != arch[m.label])
    read = {i for label, idx in arch.items() if ".input" in label and label.startswith("cell") and
            label.count(".") == 1 for i in idx}
    unchosen += sum(count_parameters(supernet.fusion.projections[key])
                    for k, key in enumerate(supernet.fusion.level_keys) if k not in read)
    assert count_parameters(model) == count_parameters(supernet) - unchosen < count_parameters(supernet)
    batch = batch_of(dataset, rate_seed=seed)
    out = model(batch)
    total_loss(out, batch, "classification").backward()


def test_bad_architecture_names_the_label(dataset) -> None:
    space = BMNASSpace(dataset.signature, SPACE)
    arch = random_arch(space, 0)
    arch["cell0.step1.op"] = "product"
    with pytest.raises(NasmercError, match=r"cell0\.step1\.op"):
        space.build(arch)
    arch = random_arch(space, 0)
    arch["text.block0.mixer"] = "attention"
    with pytest.raises(NasmercError, match="text.block0.mixer"):
        space.build(arch)



@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(dataset, regression, task: str, level: str) -> None:
    ds = dataset if task == "classification" else regression
    sig = replace(ds.signature, level=level)
    space = BMNASSpace(sig, SPACE)
    model = space.build(random_arch(space, 1))
    batch = batch_of(ds) if level == "dialogue" else utterance_batch(sig)
    out = model(batch)
    b, n = batch.mask.shape
    c = sig.n_outputs
    want = {("classification", "dialogue"): (b, n, c), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, c), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    assert all(v.shape == want for v in out.per_modality_logits.values())
    assert set(out.aux_losses) == {f"unimodal_{m}" for m in sig.modalities}
    total_loss(out, batch, task).backward()


def test_real_rows_do_not_depend_on_padding(dataset) -> None:
    space = BMNASSpace(dataset.signature, SPACE)
    model = space.build(random_arch(space, 3)).eval()
    convs = dataset.split("train")[:3]
    short = min(range(3), key=lambda i: len(convs[i].labels))
    alone = model(collate([convs[short]], dataset.signature)).logits[0]
    padded = model(collate(convs, dataset.signature)).logits[short, : alone.shape[0]]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_mask_missing_runs_with_a_modality_missing_everywhere(dataset) -> None:
    space = BMNASSpace(dataset.signature, replace(SPACE, mask_missing=True))
    model = space.build(random_arch(space, 0))
    batch = batch_of(dataset)
    present = batch.present.clone()
    present[..., 2] = False
    present[..., 0] = True
    out = model(batch.with_present(present))
    assert torch.isfinite(out.logits).all() and float(out.aux_losses["unimodal_visual"].detach()) == 0.0


@pytest.mark.parametrize("changes, key", [({"n_layers": 0}, "n_layers"), ({"hidden_dim": 7}, "hidden_dim"),
                                          ({"fusion_ops": ("sum", "product")}, "fusion_ops"),
                                          ({"dropout": 1.0}, "dropout")])
def test_bad_config_names_the_field(dataset, changes: dict[str, Any], key: str) -> None:
    with pytest.raises(NasmercError, match=key):
        BMNASSpace(dataset.signature, replace(SPACE, **changes))


def test_presets(dataset) -> None:
    assert BMNASSpace.from_preset(dataset.signature).config == BMNASConfig()
    paper = bmnas_paper()
    assert (paper.n_cells, paper.n_steps, paper.fusion_dim) == (2, 2, 240)
    assert BMNASSpace.presets["paper"] is bmnas_paper
