"""The router strategy (ITEACH-Net's input-dependent search) on tiny RMNAS and BM-NAS supernets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY
from nasmerc.data.batch import collate
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.nas.choices import RoutedOp, choice_modules
from nasmerc.nas.specs import InputSpec, OpSpec
from nasmerc.nas.population import sample_arch
from nasmerc.nas.strategy import SearchContext, SearchResult
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.bmnas import BMNASSpace
from search_spaces.rmnas import RMNASSpace
from strategies.router import ROUTERS_FILE, Router, RouterConfig, RouterHook, Routers, derive, probe_in_dims

pytestmark = pytest.mark.usefixtures("one_thread")

RMNAS = {"hidden_dim": 16, "n_blocks": 1, "fusion_dim": 16, "n_heads": 2, "n_cells": 1}
BMNAS = {"hidden_dim": 16, "n_layers": 1, "fusion_dim": 16, "n_heads": 2, "n_cells": 1}
TRAIN = TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0, 0.5))


@pytest.fixture(scope="module")
def dataset():
    return load("iemocap6", TINY)


def make_routers(space, dataset, seed: int = 0) -> tuple[torch.nn.Module, Routers]:
    torch.manual_seed(seed)
    supernet = space.supernet()
    batch = collate(dataset.split("train")[:4], dataset.signature)
    routers = Routers(supernet, probe_in_dims(supernet, batch), 1e-3, torch.Generator().manual_seed(seed))
    return supernet, routers


def test_routers_per_op_choice_and_outside_the_model(dataset) -> None:
    space = RMNASSpace.from_preset(dataset.signature, "default", RMNAS)
    supernet, routers = make_routers(space, dataset)
    ops = [s.label for s in space.choices() if s.kind == "op"]
    inputs = [s.label for s in space.choices() if s.kind == "input"]
    assert sorted(routers.routers.keys()) == sorted(label.replace(".", "/") for label in ops)
    assert routers.routers["text/block0/mixer"].in_features == 16
    assert routers.routers["cell0/step0/op"].out_features == 5
    assert sorted(routers.beta.keys()) == sorted(label.replace(".", "/") for label in inputs)
    router_ids = {id(p) for p in routers.parameters()}
    assert not router_ids & {id(p) for p in supernet.parameters()}
    assert not any("router" in k or "beta" in k for k in supernet.state_dict())
    assert all(m._hook is not None for m in choice_modules(supernet))


def test_router_weights_vary_per_token_and_the_optimiser_moves_them(dataset) -> None:
    space = BMNASSpace.from_preset(dataset.signature, "default", BMNAS)
    supernet, routers = make_routers(space, dataset)
    before = {k: v.clone() for k, v in routers.state_dict().items()}
    weights = [p for p in supernet.parameters() if p.requires_grad]
    trainer = Trainer(supernet, dataset.signature, TrainConfig(epochs=1, batch_size=4), parameters=weights)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in weights}
    hook = RouterHook(routers, lr=5e-3, weight_decay=0.0)
    trainer.train_epoch(dataset.split("train"), 0, hooks=[hook])
    hook.after_epoch(trainer, 0)
    after = routers.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every router and beta moved
    router = routers.routers["cell0/step0/op"]
    tokens = torch.randn(2, router.in_features, generator=torch.Generator().manual_seed(1))
    w = torch.softmax(router(tokens), -1)
    assert torch.allclose(w.sum(-1), torch.ones(2))
    assert not torch.allclose(w[0], w[1], atol=1e-4)


def test_counts_only_real_tokens_and_shares_sum_to_one(dataset) -> None:
    space = RMNASSpace.from_preset(dataset.signature, "default", RMNAS)
    supernet, routers = make_routers(space, dataset)
    trainer = Trainer(supernet, dataset.signature, TRAIN)
    trainer.predict(dataset.split("valid"), 0.0)
    n_real = sum(len(c.labels) for c in dataset.split("valid"))
    # Mixers and BM-NAS ops see the global token plus every real utterance.
    assert float(routers.counts["text.block0.mixer"].sum()) == n_real + len(dataset.split("valid"))
    shares = routers.shares()
    assert set(shares) == {s.label for s in space.choices() if s.kind == "op"}
    for label, row in shares.items():
        assert list(row) == routers.candidates[label]
        assert sum(row.values()) == pytest.approx(1.0)


def test_derive_and_prune_below() -> None:
    specs = [OpSpec("a.op", ("zero", "sum", "attention")), OpSpec("b.op", ("x", "y", "z")),
             InputSpec("c.in", ("p", "q", "r"), n_candidates=3, n_chosen=1)]
    shares = {"a.op": {"zero": 0.6, "sum": 0.03, "attention": 0.37}, "b.op": {"x": 0.1, "y": 0.88, "z": 0.02}}
    inputs = {"c.in": {"p": 0.2, "q": 0.5, "r": 0.3}}
    arch, kept = derive(shares, inputs, specs, {}, prune_below=0.0)
    assert arch == {"a.op": "attention", "b.op": "y", "c.in": [1]}  # zero passed over as DARTS does
    assert kept == {"a.op": ["zero", "sum", "attention"], "b.op": ["x", "y", "z"]}
    _, kept = derive(shares, inputs, specs, {}, prune_below=0.05)
    assert kept == {"a.op": ["zero", "attention"], "b.op": ["x", "y"]}
    routed, _ = derive(shares, inputs, specs, {}, prune_below=0.05, in_dims={"a.op": 8, "b.op": 4})
    assert routed == {"a.op": {"routed": ["zero", "attention"], "width": 8},
                      "b.op": {"routed": ["x", "y"], "width": 4}, "c.in": [1]}
    one, _ = derive(shares, inputs, specs, {}, prune_below=0.7, in_dims={"a.op": 8, "b.op": 4})
    assert one["a.op"] == "attention" and one["b.op"] == "y"  # one kept candidate: no router
    with pytest.raises(NasmercError, match="b.op"):
        derive({"a.op": shares["a.op"]}, inputs, specs, {}, 0.0)


def test_bad_config_names_the_key(dataset, tmp_path: Path) -> None:
    space = BMNASSpace.from_preset(dataset.signature, "default", BMNAS)
    ctx = SearchContext(space, dataset, TRAIN, torch.device("cpu"), 0, Events(), tmp_path)
    with pytest.raises(NasmercError, match="prune_below"):
        Router(RouterConfig(prune_below=1.5)).search(ctx)  # refused when the config is made


def run_search(space, dataset, run_dir: Path, seed: int = 0, **config: Any) -> tuple[SearchResult, list[dict]]:
    sink = ListSink()
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(space, dataset, TRAIN, torch.device("cpu"), seed, Events([sink]), run_dir)
    return Router(RouterConfig(**config)).search(ctx), sink.events


@pytest.mark.parametrize("name", ["rmnas", "bmnas"])
def test_search_returns_a_buildable_arch_and_writes_routers(dataset, tmp_path: Path, name: str) -> None:
    space = (RMNASSpace.from_preset(dataset.signature, "default", RMNAS) if name == "rmnas"
             else BMNASSpace.from_preset(dataset.signature, "default", BMNAS))
    result, events = run_search(space, dataset, tmp_path / "a", prune_below=0.05)
    specs = space.choices()
    assert set(result.arch) == {s.label for s in specs}
    model = space.build(result.arch)
    assert choice_modules(model) == [] and result.derived_parameters <= result.supernet_parameters
    assert result.derived_parameters == sum(p.numel() for p in model.parameters())
    assert isinstance(model(collate(dataset.split('train')[:4], dataset.signature)).logits, torch.Tensor)
    state = torch.load(tmp_path / "a" / ROUTERS_FILE, weights_only=True)
    assert {k.split(".")[0] for k in state} == {"routers", "beta"}
    shares = result.extra["leading_shares"]
    assert set(shares) == {s.label for s in specs if s.kind == "op"}
    for label, row in shares.items():
        assert sum(row.values()) == pytest.approx(1.0)
        kept = result.extra["kept_candidates"][label]
        chosen = result.arch[label]
        assert (chosen["routed"] == kept and chosen["width"] == result.extra["router_in_dims"][label]
                if isinstance(chosen, dict) else kept == [chosen])
        assert all(c in kept for c, v in row.items() if v >= 0.05)
    json.dumps(result.extra)  # goes into search.json
    weights = [e for e in events if e["type"] == "choice_weights"]
    assert [e["epoch"] for e in weights] == [1, 2]
    assert set(weights[-1]["weights"]) == {s.label for s in specs}
    # Reproducible with the same seed: the same architecture, shares and routers.
    again, _ = run_search(space, dataset, tmp_path / "b", prune_below=0.05)
    assert again.arch == result.arch and again.extra["leading_shares"] == shares
    state_b = torch.load(tmp_path / "b" / ROUTERS_FILE, weights_only=True)
    assert all(torch.equal(state[k], state_b[k]) for k in state)


def test_derive_reads_the_search_file(dataset, tmp_path: Path) -> None:
    space = BMNASSpace.from_preset(dataset.signature, "default", BMNAS)
    result, _ = run_search(space, dataset, tmp_path, seed=3)
    (tmp_path / "search.json").write_text(json.dumps({"arch": result.arch, **result.extra}))
    assert Router().derive(space, tmp_path, {}) == result.arch
    assert Router().derive(space, tmp_path / "nothing", {}) is None


def test_routed_op_builds_and_routes_per_token(dataset) -> None:
    space = BMNASSpace.from_preset(dataset.signature, "default", BMNAS)
    arch = sample_arch(space.choices(), np.random.default_rng(0), {})
    label = next(s.label for s in space.choices() if s.kind == "op")
    spec = next(s for s in space.choices() if s.label == label)
    arch[label] = {"routed": [spec.candidates[2], spec.candidates[1]], "width": BMNAS["fusion_dim"]}
    canon = space.canonical(arch)
    assert canon[label] == {"routed": [spec.candidates[1], spec.candidates[2]], "width": BMNAS["fusion_dim"]}
    model = space.build(arch)
    routed = [m for m in model.modules() if isinstance(m, RoutedOp)]
    assert len(routed) == 1 and list(routed[0].candidates) == canon[label]["routed"]
    x, y = torch.randn(2, 5, BMNAS["fusion_dim"]), torch.randn(2, 5, BMNAS["fusion_dim"])
    mask = torch.ones(2, 5, dtype=torch.bool)
    op = routed[0].eval()
    w = torch.softmax(op.router(x), -1)
    expected = sum(w[..., k : k + 1] * c(x, y, mask) for k, c in enumerate(op.candidates.values()))
    assert torch.allclose(op(x, y, mask), expected, atol=1e-6)
    out = model(collate(dataset.split('train')[:4], dataset.signature))
    out.logits.sum().backward()
    assert op.router.weight.grad is not None


@pytest.mark.parametrize("bad, needle", [
    ({"routed": ["nope"], "width": 4}, "distinct names"),
    ({"routed": [], "width": 4}, "expected {routed"),
    ({"routed": ["a", "a"], "width": 4}, "distinct names"),
    ({"routed": ["a", "b"], "width": 0}, "positive integer"),
    ({"routed": ["a", "b"]}, "expected {routed"),
    (["a", "b"], "is not a candidate"),
])
def test_bad_routed_choices_are_named(bad, needle) -> None:
    spec = OpSpec("x.op", ("a", "b", "c"))
    with pytest.raises(NasmercError, match=needle):
        spec.check(bad)
    assert spec.check({"routed": ["b"], "width": 3}) == "b"


def test_argmax_export_gives_one_candidate_per_op(dataset, tmp_path: Path) -> None:
    space = BMNASSpace.from_preset(dataset.signature, "default", BMNAS)
    result, _ = run_search(space, dataset, tmp_path, export="argmax")
    assert all(isinstance(result.arch[s.label], str) for s in space.choices() if s.kind == "op")
