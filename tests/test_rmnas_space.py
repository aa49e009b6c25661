"""Tests of the RMNAS search space: choice points, supernet, fixed models, outputs and presets.

Everything runs on hand-built tiny conversations (a few utterances, single-digit dims) so the whole
file takes seconds; the ``paper`` preset is only built, never run.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from conftest import random_conversations
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules import FUSION_OPS, TOKEN_MIXERS
from nasmerc.nas.choices import InputChoice, OpChoice, choice_modules
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from search_spaces.rmnas import RMNASConfig, RMNASSpace, rmnas_paper

DIMS = {"text": 6, "audio": 5, "visual": 7}
LENGTHS = [5, 3, 7]


def tiny_config(**changes: Any) -> RMNASConfig:
    cfg = RMNASConfig(hidden_dim=8, n_blocks=2, n_heads=2, ffn_ratio=2.0, st_kernel=3, maxdis=2, max_len=16,
                      n_cells=2, n_steps=2, fusion_dim=6, dropout=0.0)
    return replace(cfg, **changes)


def signature(task: str = "classification", level: str = "dialogue",
              modalities: tuple[str, ...] = ("text", "audio", "visual")) -> DataSignature:
    classes = ("neg", "neu", "pos") if task == "classification" else ()
    return DataSignature(modalities, {m: DIMS[m] for m in modalities}, task, level, classes, n_speakers=2)


conversations = random_conversations


def masked_batch(sig: DataSignature, lengths: list[int] = LENGTHS, seed: int = 0) -> Batch:
    """A batch with random modalities dropped (one kept per utterance) and the last modality of
    conversation 1 missing altogether."""
    batch = collate(conversations(sig, lengths, seed), sig)
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(batch.present.shape, generator=gen) > 0.4
    keep = torch.randint(0, len(sig.modalities), batch.mask.shape, generator=gen)
    present |= nn.functional.one_hot(keep, len(sig.modalities)).bool()
    if len(sig.modalities) > 1:
        present[1, :, -1] = False
        present[1, :, 0] = True
    return batch.with_present(present)


def uniform_hook(choice: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A stand-in strategy: the mean of every candidate's output, or of every input."""
    if isinstance(choice, OpChoice):
        return torch.stack([c(*args, **kwargs) for c in choice.candidates.values()]).mean(0)
    return torch.stack(list(args[0])).mean(0)


def attach_uniform(model: nn.Module) -> None:
    for module in choice_modules(model):
        module.attach(uniform_hook)


def random_arch(space: RMNASSpace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        spec.label: rng.choice(spec.candidates) if spec.kind == "op" else [rng.randrange(spec.n_candidates)]
        for spec in space.choices()
    }


def unchosen_parameters(supernet: nn.Module, arch: dict[str, Any]) -> int:
    """Parameters of the supernet that ``arch`` leaves out: unchosen op candidates and projections
    of block outputs no cell reads."""
    count = 0
    for module in choice_modules(supernet):
        if isinstance(module, OpChoice):
            count += sum(count_parameters(c) for name, c in module.candidates.items() if name != arch[module.label])
    fusion = supernet.fusion
    read = {i for label, idx in arch.items() if ".input" in label for i in idx}
    for k, key in enumerate(fusion.level_keys):
        if k not in read:
            count += count_parameters(fusion.projections[key])
    return count


def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    loss = task_loss(out.logits, batch, task)
    return loss + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


# -- choice points ------------------------------------------------------------------------------
def test_choice_points_labels_kinds_and_candidates() -> None:
    space = RMNASSpace(signature(), tiny_config())
    specs = {s.label: s for s in space.choices()}
    mixers = [f"{m}.block{i}.mixer" for m in ("text", "audio", "visual") for i in range(2)]
    fusion = [f"cell{c}.{part}" for c in range(2)
              for part in ("input0", "input1") + tuple(f"step{s}.{x}" for s in range(2) for x in ("x", "y", "op"))]
    assert list(specs) == mixers + fusion
    for label in mixers:
        assert specs[label].kind == "op" and specs[label].candidates == tuple(TOKEN_MIXERS)
    n_levels = 3 * 2
    for c in range(2):
        for k in range(2):
            assert specs[f"cell{c}.input{k}"].kind == "input"
            assert specs[f"cell{c}.input{k}"].n_candidates == n_levels + c
            assert specs[f"cell{c}.input{k}"].n_chosen == 1
        for s in range(2):
            assert specs[f"cell{c}.step{s}.x"].n_candidates == 2 + s
            assert specs[f"cell{c}.step{s}.y"].n_candidates == 2 + s
            assert specs[f"cell{c}.step{s}.op"].candidates == tuple(FUSION_OPS)
    net = space.supernet()
    assert net.candidate_names == [f"{m}.block{i}" for m in ("text", "audio", "visual") for i in range(2)] + ["cell0", "cell1"]
    modules = {m.label: m for m in choice_modules(net)}
    assert set(modules) == set(specs)
    assert all(isinstance(modules[l], OpChoice) == (specs[l].kind == "op") for l in specs)
    assert all(isinstance(modules[l], InputChoice) == (specs[l].kind == "input") for l in specs)


def test_restricted_pools_from_overrides() -> None:
    space = RMNASSpace.from_preset(signature(), "default", {"mixers": "attention,pool", "fusion_ops": "sum,concat_fc"})
    specs = {s.label: s for s in space.choices()}
    assert specs["text.block0.mixer"].candidates == ("attention", "pool")
    assert specs["cell0.step1.op"].candidates == ("sum", "concat_fc")


# -- supernet -----------------------------------------------------------------------------------
def test_supernet_needs_a_strategy_hook() -> None:
    sig = signature()
    net = RMNASSpace(sig, tiny_config()).supernet()
    with pytest.raises(NasmercError, match="text.block0.mixer"):
        net(masked_batch(sig))


def test_supernet_uniform_mixing_forward_backward() -> None:
    sig = signature()
    torch.manual_seed(0)
    net = RMNASSpace(sig, tiny_config(speaker_embedding=True)).supernet()
    attach_uniform(net)
    batch = masked_batch(sig)
    out = net(batch)
    assert out.logits.shape == (3, max(LENGTHS), 3)
    assert torch.isfinite(out.logits).all()
    total_loss(out, batch, sig.task).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert all(float(p.grad.abs().sum()) > 0 for n, p in net.named_parameters() if "global_token" in n)


# -- fixed architectures ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_random_architecture_builds_runs_and_drops_unchosen(seed: int) -> None:
    sig = signature()
    space = RMNASSpace(sig, tiny_config())
    arch = random_arch(space, seed)
    supernet = space.supernet()
    model = space.build(arch)
    assert choice_modules(model) == []
    batch = masked_batch(sig, seed=seed)
    out = model(batch)
    assert out.logits.shape == (3, max(LENGTHS), 3) and torch.isfinite(out.logits).all()
    total_loss(out, batch, sig.task).backward()
    n_fixed, n_super = count_parameters(model), count_parameters(supernet)
    assert n_fixed < n_super
    assert n_fixed == n_super - unchosen_parameters(supernet, arch)


def test_fixed_model_keeps_only_projections_cells_read() -> None:
    space = RMNASSpace(signature(), tiny_config(n_cells=1))
    arch = random_arch(space, 0)
    arch["cell0.input0"], arch["cell0.input1"] = [4], [1]
    model = space.build(arch)
    assert sorted(model.fusion.projections.keys()) == ["text_block1", "visual_block0"]


@pytest.mark.parametrize("mutate, label", [
    (lambda a: a.pop("cell0.step1.op"), "cell0.step1.op"),
    (lambda a: a.update({"text.block9.mixer": "pool"}), "text.block9.mixer"),
    (lambda a: a.update({"cell1.input0": [7]}), "cell1.input0"),
    (lambda a: a.update({"cell0.step0.x": [2]}), "cell0.step0.x"),
    (lambda a: a.update({"audio.block1.mixer": "conv"}), "audio.block1.mixer"),
    (lambda a: a.update({"cell0.step1.op": "product"}), "cell0.step1.op"),
])
def test_bad_architectures_name_the_label(mutate: Any, label: str) -> None:
    space = RMNASSpace(signature(), tiny_config())
    arch = random_arch(space, 0)
    mutate(arch)
    with pytest.raises(NasmercError, match=label.replace(".", r"\.")):
        space.build(arch)


# -- outputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(task: str, level: str) -> None:
    sig = signature(task, level)
    space = RMNASSpace(sig, tiny_config())
    model = space.build(random_arch(space, 1))
    batch = masked_batch(sig)
    out = model(batch)
    b, n = len(LENGTHS), max(LENGTHS)
    want = {("classification", "dialogue"): (b, n, 3), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, 3), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    assert set(out.per_modality_logits) == set(sig.modalities)
    assert all(v.shape == want for v in out.per_modality_logits.values())
    assert set(out.aux_losses) == {f"unimodal_{m}" for m in sig.modalities}
    assert out.aux_weights == {f"unimodal_{m}": 1.0 for m in sig.modalities}
    for m in sig.modalities:
        expected = task_loss(out.per_modality_logits[m], batch, task)
        assert torch.allclose(out.aux_losses[f"unimodal_{m}"], expected)
    total_loss(out, batch, task).backward()


@pytest.mark.parametrize("modalities", [("audio",), ("visual", "text")])
def test_any_subset_of_modalities(modalities: tuple[str, ...]) -> None:
    sig = signature(modalities=modalities)
    space = RMNASSpace(sig, tiny_config(n_cells=1))
    specs = {s.label: s for s in space.choices()}
    assert specs["cell0.input0"].n_candidates == 2 * len(modalities)
    model = space.build(random_arch(space, 2))
    out = model(masked_batch(sig))
    assert out.logits.shape == (3, max(LENGTHS), 3)
    assert set(out.per_modality_logits) == set(modalities)


def test_batch_with_wrong_dims_is_refused() -> None:
    sig = signature()
    space = RMNASSpace(sig, tiny_config())
    model = space.build(random_arch(space, 0))
    other = DataSignature(sig.modalities, {**DIMS, "audio": 9}, sig.task, sig.level, sig.classes, 2)
    with pytest.raises(NasmercError, match="'audio' has 9 features"):
        model(collate(conversations(other, LENGTHS), other))


@pytest.mark.parametrize("level", ["dialogue", "utterance"])
def test_real_rows_do_not_depend_on_padding(level: str) -> None:
    """A conversation alone and padded next to longer ones gives the same predictions."""
    sig = signature(level=level)
    space = RMNASSpace(sig, tiny_config())
    arch = random_arch(space, 3)
    arch.update({"text.block0.mixer": "attention", "audio.block0.mixer": "random", "visual.block0.mixer": "pool",
                 "cell0.step0.op": "attention", "cell1.step1.op": "linear_glu"})
    model = space.build(arch).eval()
    convs = conversations(sig, [4, 9, 6])
    alone = model(collate(convs[:1], sig))
    together = model(collate(convs, sig))
    rows = slice(0, 4) if level == "dialogue" else slice(None)
    assert torch.allclose(alone.logits[0], together.logits[0, rows], atol=1e-5)
    for m in sig.modalities:
        assert torch.allclose(alone.per_modality_logits[m][0], together.per_modality_logits[m][0, rows], atol=1e-5)
    assert not torch.allclose(together.logits[0, rows], together.logits[1, rows], atol=1e-3)


def test_mask_missing_ignores_missing_rows_and_their_loss() -> None:
    sig = signature()
    space = RMNASSpace(sig, tiny_config(mask_missing=True))
    model = space.build(random_arch(space, 4)).eval()
    batch = masked_batch(sig)
    out = model(batch)
    # Rows where a modality is missing do not matter, whatever their features hold.
    noisy = {m: x + torch.randn_like(x) * (~batch.present[..., i]).unsqueeze(-1)
             for i, (m, x) in enumerate(batch.features.items())}
    again = model(replace(batch, features=noisy))
    assert torch.allclose(out.logits[batch.mask], again.logits[batch.mask], atol=1e-5)
    # The unimodal loss counts present rows only; a modality missing everywhere costs nothing.
    seen = batch.mask & batch.present[..., 2]
    expected = task_loss(out.per_modality_logits["visual"], replace(batch, mask=seen), sig.task)
    assert torch.allclose(out.aux_losses["unimodal_visual"], expected)
    gone = batch.with_present(batch.present & torch.tensor([True, True, False]))
    with torch.no_grad():
        assert float(model(gone).aux_losses["unimodal_visual"]) == 0.0


# -- config and presets -------------------------------------------------------------------------
@pytest.mark.parametrize("changes, key", [
    ({"hidden_dim": 10, "n_heads": 4}, "hidden_dim"),
    ({"n_blocks": 0}, "n_blocks"),
    ({"st_kernel": 4}, "st_kernel"),
    ({"mixers": ("attention", "conv")}, "mixers"),
    ({"fusion_ops": ()}, "fusion_ops"),
    ({"dropout": 1.0}, "dropout"),
    ({"fused_blocks": -1}, "fused_blocks"),
    ({"fused_blocks": 1, "n_cells": 1, "fusion_dim": 3}, "n_cells \\* fusion_dim"),
])
def test_bad_config_names_the_field(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(NasmercError, match=key):
        RMNASSpace(signature(), tiny_config(**changes))


def test_default_preset_is_small_and_runs() -> None:
    sig = signature()
    space = RMNASSpace.from_preset(sig, "default")
    assert (space.config.hidden_dim, space.config.n_blocks, space.config.n_cells) == (64, 2, 2)
    model = space.build(random_arch(space, 5))
    assert model(masked_batch(sig)).logits.shape == (3, max(LENGTHS), 3)


def test_fused_blocks_model_context_after_the_fusion() -> None:
    """``fused_blocks``: searched MetaFormer blocks over the fused sequence (``fused.block{i}.mixer``, the
    mixer pool). With identity mixers in the branches and per-token fusion, an utterance's fused logits
    see another utterance's features only through a context-mixing fused block."""
    sig = signature()
    space = RMNASSpace(sig, tiny_config(fused_blocks=1, use_lst=False, fusion_ops=("sum", "concat_fc"),
                                        mixers=("identity", "recurrent")))
    specs = {s.label: s for s in space.choices()}
    assert specs["fused.block0.mixer"].candidates == ("identity", "recurrent")
    batch = collate(conversations(sig, LENGTHS, 0), sig)
    later = replace(batch, features={m: x.clone() for m, x in batch.features.items()})
    later.features["text"][0, LENGTHS[0] - 1] += 5.0
    for fused, mixes in (("identity", False), ("recurrent", True)):
        arch = {**{label: "identity" for label in specs if label.endswith("mixer")}, "fused.block0.mixer": fused,
                **{label: "sum" for label in specs if label.endswith(".op")},
                **{label: [0] for label in specs if specs[label].kind == "input"}}
        model = space.build(arch).eval()
        with torch.no_grad():
            first = model(batch).logits[0, 0], model(later).logits[0, 0]
        assert (not torch.allclose(*first)) == mixes, fused
    preset = RMNASSpace.from_preset(sig, "context")
    assert preset.config.fused_blocks == 1 and "recurrent" in preset.config.mixers
    model = preset.build(random_arch(preset, 3))
    assert model(masked_batch(sig)).logits.shape == (3, max(LENGTHS), 3)


def test_paper_preset_builds_and_reports_its_size() -> None:
    """Build only (no forward): the paper's sizes on IEMOCAP dims, all blocks with attention."""
    cfg = rmnas_paper()
    assert (cfg.hidden_dim, cfg.n_blocks, cfg.n_heads, cfg.ffn_ratio) == (448, 6, 8, 4.0)
    assert (cfg.st_kernel, cfg.maxdis, cfg.n_cells, cfg.n_steps, cfg.fusion_dim) == (7, 8, 2, 2, 240)
    sig = DataSignature(("text", "audio", "visual"), {"text": 100, "audio": 100, "visual": 512},
                        "classification", "dialogue", tuple("abcdef"), 2)
    space = RMNASSpace.from_preset(sig, "paper")
    arch = {s.label: ("attention" if s.kind == "op" and s.label.endswith("mixer") else "concat_fc")
            if s.kind == "op" else [s.n_candidates - 1] for s in space.choices()}
    n = count_parameters(space.build(arch))
    print(f"RMNAS paper preset, fixed all-attention architecture: {n / 1e6:.1f} M parameters (paper: 63.8 M)")
    assert 40e6 < n < 70e6
