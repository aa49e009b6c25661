"""DARTS on the tiny RMNAS supernet: architecture weights, the architecture step, derivation, search.

Everything runs on the tiny synthetic IEMOCAP-6 data of ``conftest.TINY`` and a one-block RMNAS
space, single-threaded (tiny tensors gain nothing from threads and suffer from oversubscription).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import TINY
from nasmerc.data.batch import collate
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.nas.choices import InputChoice, OpChoice, choice_modules
from nasmerc.nas.specs import FloatSpec, InputSpec, OpSpec, ValueSpec
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchContext, SearchResult
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.rmnas import RMNASSpace
from strategies.darts import ALPHA_FILE, ArchWeights, Darts, DartsConfig, DartsHook, derive

SPACE = {"hidden_dim": 16, "n_blocks": 1, "fusion_dim": 16, "n_heads": 2, "n_cells": 1}
TRAIN = TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0, 0.5))
MIXERS = ("attention", "random", "pool", "identity")
FUSION_OPS = ("zero", "sum", "attention", "linear_glu", "concat_fc")
# label -> number of alpha entries, in the order the space asks (n_blocks=1, n_cells=1, n_steps=2).
SIZES = {
    "text.block0.mixer": 4, "audio.block0.mixer": 4, "visual.block0.mixer": 4,
    "cell0.input0": 3, "cell0.input1": 3,
    "cell0.step0.x": 2, "cell0.step0.y": 2, "cell0.step0.op": 5,
    "cell0.step1.x": 3, "cell0.step1.y": 3, "cell0.step1.op": 5,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset():
    return load("iemocap6", TINY)


@pytest.fixture
def space(dataset) -> RMNASSpace:
    return RMNASSpace.from_preset(dataset.signature, "default", SPACE)


INPUTS = {label for label in SIZES if ".input" in label or label.endswith((".x", ".y"))}


def make_arch(space: RMNASSpace, seed: int = 0, inputs: str = "gate") -> tuple[nn.Module, ArchWeights]:
    torch.manual_seed(seed)
    supernet = space.supernet()
    return supernet, ArchWeights(supernet, 1e-3, torch.Generator().manual_seed(seed), inputs)


def shapes(inputs: str) -> dict[str, tuple[int, ...]]:
    """alpha's shape per label: eq. 13 gates are ``[n, 2]`` (Identity, Zero) per input choice."""
    return {k: (n, 2) if inputs == "gate" and k in INPUTS else (n,) for k, n in SIZES.items()}


# -- ArchWeights ----------------------------------------------------------------------------------
@pytest.mark.parametrize("inputs", ["gate", "softmax"])
def test_arch_weights_shapes(space: RMNASSpace, inputs: str) -> None:
    _, arch = make_arch(space, inputs=inputs)
    assert {label: tuple(a.shape) for label, a in arch.state().items()} == shapes(inputs)


def test_arch_weights_one_alpha_per_choice(space: RMNASSpace) -> None:
    supernet, arch = make_arch(space)
    state = arch.state()
    assert list(state) == list(SIZES)
    assert {label: tuple(a.shape) for label, a in state.items()} == shapes("gate")
    assert arch.candidates["text.block0.mixer"] == list(MIXERS)
    assert arch.candidates["cell0.step1.op"] == list(FUSION_OPS)
    assert arch.candidates["cell0.step1.x"] == ["input0", "input1", "step0"]
    assert arch.candidates["cell0.input0"] == ["text.block0", "audio.block0", "visual.block0"]
    # alpha is small at start, belongs to ArchWeights, not to the supernet.
    assert all(float(a.abs().max()) < 0.01 for a in state.values())
    alpha_ids = {id(p) for p in arch.parameters()}
    assert len(alpha_ids) == len(SIZES)
    assert not alpha_ids & {id(p) for p in supernet.parameters()}
    assert not any(k.startswith("alpha") or "_hook" in k for k in supernet.state_dict())
    # Every choice module got a hook, so the supernet runs.
    assert all(m._hook is not None for m in choice_modules(supernet))


def test_arch_weights_same_generator_seed_same_alpha(space: RMNASSpace) -> None:
    _, a = make_arch(space, seed=3)
    _, b = make_arch(space, seed=3)
    _, c = make_arch(space, seed=4)
    assert all(torch.equal(a.state()[k], b.state()[k]) for k in SIZES)
    assert not all(torch.equal(a.state()[k], c.state()[k]) for k in SIZES)


def test_arch_weights_need_a_choice() -> None:
    with pytest.raises(NasmercError, match="no op or input choice"):
        ArchWeights(nn.Linear(2, 2), 1e-3, torch.Generator().manual_seed(0))


def test_weights_softmax_sums_to_one(space: RMNASSpace) -> None:
    _, arch = make_arch(space, inputs="softmax")
    with torch.no_grad():
        for i, p in enumerate(arch.parameters()):
            p.copy_(torch.linspace(-3.0, 2.0 + i, p.numel()))
    weights = arch.weights()
    assert list(weights) == list(SIZES)
    for label, w in weights.items():
        assert len(w) == SIZES[label]
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0 < v < 1 for v in w.values())
        assert max(w, key=w.get) == arch.candidates[label][-1]  # linspace: the last is largest
    assert list(weights["cell0.step0.op"]) == list(FUSION_OPS)


def test_hooks_mix_by_softmax(space: RMNASSpace) -> None:
    """The op hook is the softmax-weighted sum of candidates; the softmax input hook of inputs."""
    supernet, arch = make_arch(space, inputs="softmax")
    op = next(m for m in choice_modules(supernet) if isinstance(m, OpChoice) and m.label == "cell0.step0.op")
    inp = next(m for m in choice_modules(supernet) if isinstance(m, InputChoice) and m.label == "cell0.step1.x")
    key_op, key_in = "cell0/step0/op", "cell0/step1/x"
    with torch.no_grad():
        arch.alpha[key_op].copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]))
        arch.alpha[key_in].copy_(torch.tensor([1.0, 0.0, -2.0]))
    op.eval()
    x, y = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        w = torch.softmax(arch.alpha[key_op], 0)
        want = sum(w[i] * c(x, y, mask) for i, c in enumerate(op.candidates.values()))
        assert torch.allclose(op(x, y, mask), want, atol=1e-6)
        states = [torch.randn(2, 4, 16) for _ in range(3)]
        w = torch.softmax(arch.alpha[key_in], 0)
        assert torch.allclose(inp(states), sum(w[i] * s for i, s in enumerate(states)), atol=1e-6)


# -- the architecture step ------------------------------------------------------------------------
def step_setup(space: RMNASSpace, dataset, config: DartsConfig):
    sig = dataset.signature
    supernet, arch = make_arch(space)
    trainer = Trainer(supernet, sig, TrainConfig(epochs=1, batch_size=4), seed=0)
    hook = DartsHook(arch, itertools.repeat(collate(dataset.split("valid"), sig)), config)
    batch = trainer.masked(collate(dataset.split("train")[:4], sig), 0)
    return supernet, arch, trainer, hook, batch


@pytest.mark.parametrize("order", [1, 2])
def test_architecture_step_moves_alpha_not_weights(space: RMNASSpace, dataset, order: int) -> None:
    supernet, arch, trainer, hook, batch = step_setup(space, dataset, DartsConfig(order=order))
    weights_before = {k: v.clone() for k, v in supernet.state_dict().items()}
    alpha_before = arch.state()
    hook.before_step(trainer, batch, epoch=0, step=0)
    alpha_after = arch.state()
    moved = {k for k in SIZES if not torch.equal(alpha_before[k], alpha_after[k])}
    assert moved == set(SIZES), f"alpha did not move for {set(SIZES) - moved}"
    assert all(torch.isfinite(a).all() for a in alpha_after.values())
    after = supernet.state_dict()
    assert set(after) == set(weights_before)
    changed = [k for k, v in weights_before.items() if not torch.equal(v, after[k])]
    assert changed == []  # second order perturbs the weights and must restore them exactly
    if order == 1:
        assert all(p.grad is None for p in supernet.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in arch.parameters())


def test_second_order_differs_from_first_order(space: RMNASSpace, dataset) -> None:
    moved = {}
    for order in (1, 2):
        supernet, arch, trainer, hook, batch = step_setup(space, dataset, DartsConfig(order=order))
        before = arch.state()
        torch.manual_seed(0)  # same dropout draws for the validation loss
        hook.before_step(trainer, batch, epoch=0, step=0)
        moved[order] = {k: arch.state()[k] - before[k] for k in SIZES}
    assert any(not torch.allclose(moved[1][k], moved[2][k]) for k in SIZES)


def test_warmup_epochs_skip_the_architecture_step(space: RMNASSpace, dataset) -> None:
    supernet, arch, trainer, hook, batch = step_setup(space, dataset, DartsConfig(warmup_epochs=1))
    before = arch.state()
    hook.before_step(trainer, batch, epoch=0, step=0)
    assert all(torch.equal(before[k], arch.state()[k]) for k in SIZES)
    hook.before_step(trainer, batch, epoch=1, step=0)
    assert not all(torch.equal(before[k], arch.state()[k]) for k in SIZES)


# -- derivation -----------------------------------------------------------------------------------
SPECS = [
    OpSpec("mix", ("attention", "pool", "identity")),
    OpSpec("fuse", ("zero", "sum", "concat_fc")),
    OpSpec("fuse2", ("zero", "sum", "concat_fc")),
    OpSpec("only_zero", ("zero",)),
    InputSpec("one", n_candidates=4, n_chosen=1),
    InputSpec("two", n_candidates=5, n_chosen=2),
    ValueSpec("depth", (2, 4)),
    FloatSpec("p", 0.0, 0.5),
]
ALPHA = {
    "mix": torch.tensor([0.1, 2.0, -1.0]),
    "fuse": torch.tensor([9.0, -1.0, 3.0]),      # zero is largest: passed over for concat_fc
    "fuse2": torch.tensor([-5.0, 4.0, 3.0]),
    "only_zero": torch.tensor([0.3]),            # the only candidate: kept
    "one": torch.tensor([0.0, -1.0, 0.5, 0.4]),
    "two": torch.tensor([3.0, -2.0, 0.1, 5.0, 2.9]),  # top 2 are 3 and 0: written sorted
}


def test_derive_argmax_skipping_zero_and_top_k() -> None:
    arch = derive(ALPHA, SPECS, {"depth": 4, "p": 0.25})
    assert arch == {"mix": "pool", "fuse": "concat_fc", "fuse2": "sum", "only_zero": "zero", "one": [2],
                    "two": [0, 3], "depth": 4, "p": 0.25}
    assert list(arch) == [s.label for s in SPECS]
    for spec in SPECS:
        assert spec.check(arch[spec.label]) == arch[spec.label]


def test_derive_accepts_half_precision_alpha() -> None:
    half = {k: v.half() for k, v in ALPHA.items()}
    assert derive(half, SPECS, {"depth": 2, "p": 0.0})["two"] == [0, 3]


def test_derive_refuses_missing_or_misshaped_alpha() -> None:
    missing = {k: v for k, v in ALPHA.items() if k != "one"}
    with pytest.raises(NasmercError, match=r"no weights for choice 'one'"):
        derive(missing, SPECS, {"depth": 2, "p": 0.0})
    wrong = {**ALPHA, "mix": torch.tensor([1.0, 2.0])}
    with pytest.raises(NasmercError, match=r"'mix' has 2 weights, expected 3"):
        derive(wrong, SPECS, {"depth": 2, "p": 0.0})


# -- the search -----------------------------------------------------------------------------------
def run_search(space: RMNASSpace, dataset, run_dir: Path, seed: int = 0,
               config: DartsConfig | None = None) -> tuple[SearchResult, list[dict[str, Any]]]:
    sink = ListSink()
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(space, dataset, TRAIN, torch.device("cpu"), seed, Events([sink]), run_dir)
    return Darts(config).search(ctx), sink.events


def alpha_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / ALPHA_FILE, weights_only=True)


@pytest.fixture(scope="module")
def searched(one_thread, dataset, tmp_path_factory):
    """One search with the global torch RNG pinned first (see the reproducibility tests)."""
    space = RMNASSpace.from_preset(dataset.signature, "default", SPACE)
    run_dir = tmp_path_factory.mktemp("darts") / "a"
    torch.manual_seed(0)
    result, events = run_search(space, dataset, run_dir)
    return space, run_dir, result, events


def test_search_end_to_end(searched) -> None:
    space, run_dir, result, events = searched
    # alpha.pt: the weights of the best epoch, one tensor per choice.
    cfg = DartsConfig()
    alpha = alpha_of(run_dir)
    assert {k: tuple(v.shape) for k, v in alpha.items()} == shapes(cfg.inputs)
    # The architecture is the derivation of alpha.pt and is accepted by the space as it is.
    assert list(result.arch) == list(SIZES)
    assert result.arch == derive(alpha, space.choices(), {}, threshold=cfg.threshold if cfg.derive == "threshold" else None)
    assert space.canonical(result.arch) == result.arch
    model = space.build(result.arch)
    assert choice_modules(model) == []
    assert result.derived_parameters == count_parameters(model) <= result.supernet_parameters
    assert result.supernet_parameters == count_parameters(space.supernet())
    assert Darts().derive(space, run_dir, {}) == result.arch
    # Events: one choice_weights per epoch, after the epoch's checkpoint, before its epoch event.
    kinds = [e["type"] for e in events]
    weights = [e for e in events if e["type"] == "choice_weights"]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in weights] == [1, 2] and [e["epoch"] for e in epochs] == [1, 2]
    for ev in weights:
        assert list(ev["weights"]) == list(SIZES)
        assert all(sum(w.values()) == pytest.approx(1.0, abs=1e-5) for k, w in ev["weights"].items()
                   if cfg.inputs == "softmax" or k not in INPUTS)
        assert all(0.0 < v < 1.0 for w in ev["weights"].values() for v in w.values())
    assert weights[0]["weights"] != weights[1]["weights"]
    assert kinds.index("choice_weights") < kinds.index("epoch")
    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    assert checkpoints and all(c["path"] == ALPHA_FILE and c["metric"] == "waf" for c in checkpoints)
    # The result: the best epoch's validation value, its metric, the final weights.
    assert result.metric == "waf"
    assert result.best_value == max(e["value"] for e in epochs)
    assert epochs[result.best_epoch - 1]["value"] == result.best_value
    assert checkpoints[-1]["epoch"] == result.best_epoch and checkpoints[-1]["value"] == result.best_value
    assert result.extra["final_weights"] == weights[-1]["weights"]
    counts = result.extra["weight_conversations"], result.extra["arch_conversations"]
    assert counts == ((TINY["n_train"], TINY["n_valid"]) if cfg.weight_data == "whole" else
                      (TINY["n_train"] - round(cfg.arch_fraction * TINY["n_train"]), round(cfg.arch_fraction * TINY["n_train"])))
    assert result.extra["valid"]["waf"] == result.best_value


def test_search_is_deterministic_given_the_global_rng(searched, dataset, tmp_path) -> None:
    """With the global torch RNG in the same state, the same seed gives the same search."""
    space, run_dir, first, _ = searched
    torch.manual_seed(0)
    again, _ = run_search(space, dataset, tmp_path)
    assert again.arch == first.arch
    assert again.best_value == first.best_value and again.best_epoch == first.best_epoch
    a, b = alpha_of(run_dir), alpha_of(tmp_path)
    assert all(torch.equal(a[k], b[k]) for k in SIZES)


def test_same_seed_same_search(searched, dataset, tmp_path) -> None:
    """Two searches with the same seed agree, whatever the process did before (a fresh process
    starts torch's global RNG from a random seed)."""
    space, run_dir, first, _ = searched
    torch.manual_seed(12345)  # any other state of the global RNG
    again, _ = run_search(space, dataset, tmp_path)
    a, b = alpha_of(run_dir), alpha_of(tmp_path)
    assert all(torch.equal(a[k], b[k]) for k in SIZES)
    assert again.arch == first.arch
    assert again.best_value == first.best_value


@pytest.mark.parametrize("config, needle", [
    (lambda: DartsConfig(order=3), "order=3: expected 1 or 2"),
    (lambda: DartsConfig(arch_fraction=1.0), "arch_fraction=1.0"),
])
def test_bad_darts_config_is_refused(space: RMNASSpace, dataset, tmp_path, config, needle) -> None:
    with pytest.raises(NasmercError, match=needle):
        run_search(space, dataset, tmp_path, config=config())
    assert not (tmp_path / ALPHA_FILE).exists()


def test_derive_from_folder_without_alpha(space: RMNASSpace, tmp_path) -> None:
    with pytest.raises(NasmercError, match="no architecture weights in this run folder"):
        Darts().derive(space, tmp_path, {})
