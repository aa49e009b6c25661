"""The ``merc`` space: its choice points, the named architectures, random architectures for every kind
of signature, the supernet, the early-fusion baseline as one of its points, and its config checks.

Tiny synthetic data from ``conftest``; single-threaded.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY, random_conversations, utterance_batch
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.data.missing import mask_batch
from nasmerc.errors import NasmercError
from nasmerc.modules import dag
from nasmerc.modules.merc_context import GraphContext
from nasmerc.nas.choices import OpChoice, choice_modules
from nasmerc.nas.population import sample_arch
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space
from nasmerc.train.losses import task_loss
from search_spaces.fixed import multidag
from search_spaces.fixed.baselines import EarlyFusionModel, RecurrentConfig
from search_spaces.merc import NAMED, MercConfig, MercSpace, named_arch

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = MercConfig(hidden_dim=8, n_heads=2, graph_heads=2, hub_tokens=2, dropout=0.0)
MODS = ("text", "audio", "visual")
VALUES = {"speaker": "relations", "missing_loss": "distill", "unimodal_weight": 0.3, "lr_scale": 1.0}


@pytest.fixture(scope="module")
def dataset():
    from nasmerc.data.synthetic import load

    return load("iemocap6", TINY)


def masked(ds, rate: float = 0.5, seed: int = 0, n: int = 3) -> Batch:
    return mask_batch(collate(ds.split("train")[:n], ds.signature), rate, np.random.default_rng(seed), False)


def total_loss(out, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights.get(k, 1.0) * v for k, v in out.aux_losses.items())


def signature(task: str, level: str, mods: tuple[str, ...]) -> DataSignature:
    dims = {"text": 12, "audio": 5, "visual": 7}
    classes = ("a", "b", "c") if task == "classification" else ()
    return DataSignature(mods, {m: dims[m] for m in mods}, task, level, classes, n_speakers=2)


def batch_for(sig: DataSignature, rate: float = 0.4) -> Batch:
    if sig.level == "utterance":
        return utterance_batch(sig, rate)
    batch = collate(random_conversations(sig, [5, 3, 7]), sig)
    return mask_batch(batch, rate, np.random.default_rng(2), False)


# -- the choice points ---------------------------------------------------------------------------------
def test_registered_with_the_expected_choices(dataset) -> None:
    space = get_search_space("merc").from_preset(dataset.signature, "default")
    specs = space.choices()
    per_modality = [f"{m}.{what}" for m in MODS for what in ("missing", "encoder")]
    assert [s.label for s in specs] == per_modality + ["speaker", "position", "fusion", "context", "missing_loss",
                                                       "unimodal_weight", "structure", "lr_scale"]
    kinds = {s.label: s.kind for s in specs}
    assert {label for label, kind in kinds.items() if kind == "value"} == {"speaker", "missing_loss",
                                                                          "unimodal_weight", "lr_scale"}
    candidates = {s.label: s.candidates for s in specs}
    assert candidates["text.missing"] == ("zeros", "mask_token")
    assert candidates["text.encoder"] == ("projection", "linear", "bigru", "transformer", "pca")
    assert candidates["speaker"] == ("none", "embedding", "relations")
    assert candidates["position"] == ("early", "late", "both")
    assert candidates["fusion"] == ("concat", "sum", "attention", "glu", "hub")
    assert candidates["context"] == ("none", "lstm", "bigru", "transformer", "graph", "dag")
    assert candidates["structure"] == ("none", "crf", "party_crf")  # a dyad: the party CRF applies
    assert candidates["missing_loss"] == ("none", "reconstruction", "distill")
    assert candidates["unimodal_weight"] == (0.0, 0.1, 0.3, 1.0)
    assert candidates["lr_scale"] == (1.0, 3.0)
    assert space.inactive(VALUES) == []


def test_candidate_pools_shrink_the_space(dataset) -> None:
    space = MercSpace(dataset.signature, replace(SMALL, contexts=("lstm", "graph"), fusions=("sum",),
                                                 encoders=("linear",)))
    specs = {s.label: s.candidates for s in space.choices()}
    assert specs["context"] == ("lstm", "graph") and specs["fusion"] == ("sum",)
    with pytest.raises(NasmercError, match="'fusion'"):
        space.build(named_arch("multidag_like", dataset.signature))


def test_off_is_offered_on_request_and_reads_nothing(dataset) -> None:
    assert "off" not in MercSpace(dataset.signature, SMALL).choices()[1].candidates  # not by default
    space = MercSpace(dataset.signature, replace(SMALL, encoders=("linear", "off")))
    assert {s.label: s.candidates for s in space.choices()}["visual.encoder"] == ("linear", "off")
    arch = {**NAMED["early_fusion"], "text.encoder": "linear", "audio.encoder": "linear", "visual.encoder": "off"}
    torch.manual_seed(0)
    model = space.build(arch).train()
    batch = masked(dataset)
    for m in MODS:
        batch.features[m].requires_grad_(True)
    out = model(batch)
    total_loss(out, batch, "classification").backward()
    assert batch.features["visual"].grad is None  # no path from visual to the loss
    assert batch.features["text"].grad is not None and bool(batch.features["text"].grad.abs().sum() > 0)
    model.eval()
    noise = Batch(**{**vars(batch), "features": {**batch.features, "visual": torch.randn_like(batch.features["visual"])}})
    assert torch.equal(model(batch).logits, model(noise).logits)
    everything_off = space.build({**arch, "text.encoder": "off", "audio.encoder": "off"})
    assert torch.isfinite(everything_off(batch).logits).all()  # the class prior: a point, if a poor one


# -- named architectures -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NAMED))
def test_named_architecture_trains_one_step(dataset, name: str) -> None:
    space = MercSpace(dataset.signature, SMALL)
    assert space.canonical(NAMED[name]) == NAMED[name]
    model = space.build(NAMED[name]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = masked(dataset)
    out = model(batch)
    loss = total_loss(out, batch, "classification")
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    optimizer.step()
    if name == "mfmb_like":
        assert {f"reconstruction_{m}" for m in MODS} <= set(out.aux_losses)


@pytest.mark.parametrize("mods", [("audio",), ("visual", "text")])
@pytest.mark.parametrize("name", list(NAMED))
def test_named_architecture_for_other_modalities(name: str, mods: tuple[str, ...]) -> None:
    sig = signature("classification", "dialogue", mods)
    model = MercSpace(sig, SMALL).build(named_arch(name, sig))
    out = model(batch_for(sig))
    assert out.logits.shape == (3, 7, 3)


def test_unknown_named_architecture_is_refused() -> None:
    with pytest.raises(NasmercError, match="early_fusion"):
        named_arch("dialoguegcn", MODS)


# -- early fusion is a point of the space ----------------------------------------------------------------
def test_early_fusion_is_the_baseline_computation(dataset) -> None:
    sig = dataset.signature
    merc = MercSpace(sig, MercConfig(hidden_dim=8, dropout=0.1)).build(NAMED["early_fusion"]).eval()
    base = EarlyFusionModel(sig, RecurrentConfig(hidden_dim=8, rnn_dim=4, dropout=0.1)).eval()
    assert count_parameters(merc) == count_parameters(base)
    with torch.no_grad():  # the baseline's weights into the space's model
        for m, (a, b) in base.columns.items():
            merc.encoders[m].proj.weight.copy_(base.fuse.weight[:, a:b])
        merc.fusion.parts["early"].bias.copy_(base.fuse.bias)
        merc.context.parts["fused"].rnn.load_state_dict(base.lstm.state_dict())
        merc.head.load_state_dict(base.head.state_dict())
        merc.unimodal_heads.load_state_dict(base.unimodal_heads.state_dict())
    batch = masked(dataset)
    got, want = merc(batch), base(batch)
    real = batch.mask
    assert torch.allclose(got.logits[real], want.logits[real], atol=1e-6)
    for m in MODS:
        assert torch.allclose(got.per_modality_logits[m][real], want.per_modality_logits[m][real], atol=1e-6)


def test_fixed_models_build_only_the_paths_they_read(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    early = space.build(NAMED["early_fusion"])
    late = space.build({**NAMED["early_fusion"], "position": "late"})
    both = space.build({**NAMED["early_fusion"], "position": "both"})
    assert set(early.context.parts) == {"fused"} and set(early.fusion.parts) == {"early"}
    assert set(late.context.parts) == set(MODS) and set(late.fusion.parts) == {"late"}
    assert set(both.context.parts) == {"fused", *MODS} and set(both.fusion.parts) == {"early", "late"}


# -- random architectures --------------------------------------------------------------------------------
@pytest.mark.parametrize("mods", [("text",), ("audio", "visual"), MODS])
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_random_architectures_build_and_train(task: str, level: str, mods: tuple[str, ...]) -> None:
    sig = signature(task, level, mods)
    space = MercSpace(sig, SMALL)
    specs = space.choices()
    batch = batch_for(sig)
    b, n = batch.mask.shape
    c = sig.n_outputs
    want = {("classification", "dialogue"): (b, n, c), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, c), ("regression", "utterance"): (b,)}[(task, level)]
    for seed in range(3):
        arch = sample_arch(specs, np.random.default_rng(seed + 10 * len(mods)))
        assert space.canonical(arch) == arch
        model = space.build(arch).train()
        out = model(batch)
        assert out.logits.shape == want
        assert all(v.shape == want for v in out.per_modality_logits.values())
        loss = total_loss(out, batch, task)
        assert torch.isfinite(loss)
        loss.backward()


@pytest.mark.parametrize("seed", range(4))
def test_real_rows_do_not_depend_on_padding(dataset, seed: int) -> None:
    space = MercSpace(dataset.signature, SMALL)
    model = space.build(sample_arch(space.choices(), np.random.default_rng(seed))).eval()
    convs = dataset.split("train")[:3]
    short = min(range(3), key=lambda i: len(convs[i].labels))
    alone = model(collate([convs[short]], dataset.signature)).logits[0]
    padded = model(collate(convs, dataset.signature)).logits[short, : alone.shape[0]]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_bad_architecture_names_the_label(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    with pytest.raises(NasmercError, match="position"):
        space.build({**NAMED["early_fusion"], "position": "middle"})
    with pytest.raises(NasmercError, match="audio.encoder"):
        space.build({k: v for k, v in NAMED["early_fusion"].items() if k != "audio.encoder"})


# -- the supernet ---------------------------------------------------------------------------------------
def uniform(choice: OpChoice, *args, **kwargs) -> torch.Tensor:
    return torch.stack([cand(*args, **kwargs) for cand in choice.candidates.values()]).mean(0)


def test_supernet_forward_reaches_every_candidate(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    supernet = space.supernet(VALUES).train()
    choices = choice_modules(supernet)
    assert {c.label for c in choices} == {s.label for s in space.choices() if s.in_supernet}
    for choice in choices:
        choice.attach(uniform)
    batch = masked(dataset)
    out = supernet(batch)
    assert out.logits.shape == (*batch.mask.shape, dataset.signature.n_classes)
    assert set(out.aux_losses) == {"distill", *(f"unimodal_{m}" for m in MODS)}
    total_loss(out, batch, "classification").backward()
    for choice in choices:
        for name, cand in choice.candidates.items():
            grads = [p.grad for p in cand.parameters()]
            assert all(g is not None for g in grads), (choice.label, name)
    with pytest.raises(NasmercError, match="--fix"):
        space.supernet()


# -- missing modalities and speakers ------------------------------------------------------------------
def test_missing_losses_in_training_only(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    batch = masked(dataset, rate=0.6)
    for loss, names in (("reconstruction", {f"reconstruction_{m}" for m in MODS}), ("distill", {"distill"})):
        model = space.build({**NAMED["early_fusion"], "missing_loss": loss})
        out = model.train()(batch)
        assert set(out.aux_losses) == names and all(float(v.detach()) > 0 for v in out.aux_losses.values())
        assert all(out.aux_weights[k] == SMALL.missing_weight for k in names)
        total_loss(out, batch, "classification").backward()
        assert not model.eval()(batch).aux_losses
    complete = masked(dataset, rate=0.0)
    out = space.build({**NAMED["early_fusion"], "missing_loss": "distill"}).train()(complete)
    assert float(out.aux_losses["distill"].detach()) == 0.0


def test_mask_token_replaces_the_dropped_rows_only(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    model = space.build({**NAMED["early_fusion"], "audio.missing": "mask_token"})
    batch = masked(dataset, rate=0.6)
    dropped = batch.mask & ~batch.present[..., 1]
    x = model.missing["audio"](batch.features["audio"], dropped)
    assert torch.equal(x[~dropped], batch.features["audio"][~dropped])
    assert torch.allclose(x[dropped], model.missing["audio"].token.expand(int(dropped.sum()), -1))


def test_speaker_relations_shape_the_graph(dataset) -> None:
    space = MercSpace(dataset.signature, SMALL)
    arch = {**NAMED["corect_like"], "position": "early"}
    for speaker, relations in (("embedding", 3), ("relations", 6)):
        graph = space.build({**arch, "speaker": speaker}).context.parts["fused"]
        assert isinstance(graph, GraphContext) and graph.rgcn.num_relations == relations
    with_embedding = space.build({**NAMED["early_fusion"], "speaker": "relations"})
    assert with_embedding.speaker_embedding is None and hasattr(with_embedding.context.parts["fused"], "embedding")
    assert space.build({**NAMED["early_fusion"], "speaker": "embedding"}).speaker_embedding is not None


def test_multidag_reads_the_moved_dag_blocks() -> None:
    assert multidag.DAGLayer is dag.DAGLayer and multidag.dag_adjacency is dag.dag_adjacency
    assert multidag.dag_edges is dag.dag_edges


# -- the config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("hidden_dim", 7), ("hidden_dim", 0), ("n_heads", 3), ("graph_heads", 3),
                                        ("dropout", 1.0), ("graph_past", -2), ("ffn_ratio", 0.0),
                                        ("missing_weight", -1.0), ("contexts", ("lstm", "gcn")),
                                        ("fusions", ()), ("encoders", ("linear", "linear")),
                                        ("unimodal_weights", (0.0, -0.5)), ("dag_window", 0)])
def test_bad_config_is_refused_naming_the_key(dataset, key: str, value) -> None:
    with pytest.raises(NasmercError, match=key):
        MercSpace(dataset.signature, replace(SMALL, **{key: value}))


def test_presets_and_overrides(dataset) -> None:
    assert MercSpace.from_preset(dataset.signature, "paper").config.hidden_dim == 256
    space = MercSpace.from_preset(dataset.signature, "default", {"contexts": "lstm,dag", "hidden_dim": "16"})
    assert space.config.contexts == ("lstm", "dag") and space.config.hidden_dim == 16
    with pytest.raises(NasmercError, match="hidden_dim"):
        MercSpace.from_preset(dataset.signature, "default", {"hidden_dim": "9"})


def test_every_named_architecture_on_two_modalities_at_utterance_level() -> None:
    for mods in combinations(MODS, 2):
        sig = signature("regression", "utterance", mods)
        space = MercSpace(sig, SMALL)
        for name in NAMED:
            assert space.build(named_arch(name, sig))(batch_for(sig)).logits.shape == (3,)


def test_search_takes_tpe_with_hyperband_by_default(tmp_path) -> None:
    """``nasmerc search --space merc`` names no strategy: the space's default, TPE with its Hyperband
    and parsimony settings, searches every gene; ``--set strategy.KEY`` still wins over those settings,
    and a strategy named on the command line starts from its own defaults."""
    import json

    from nasmerc.cli import main

    tiny = ["--set", "hidden_dim=16", "--set", "n_heads=2", "--set", "graph_heads=2",
            *[f"--set=data.{k}={v}" for k, v in TINY.items()]]
    out = tmp_path / "run"
    assert main(["search", "--space", "merc", "--no-dashboard", "--out", str(out), "--set", "strategy.trials=3",
                 "--set", "strategy.startup_trials=2", "--set", "strategy.candidate_epochs=2",
                 "--set", "strategy.min_epochs=1", "--set", "strategy.reduction_factor=2", *tiny]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["strategy"] == "tpe" and {"speaker", "missing_loss", "unimodal_weight"} <= set(summary["arch"])
    config = yaml.safe_load((out / "config.yaml").read_text())["strategy_config"]
    assert config["pruner"] == "hyperband" and config["parsimony"] == MercSpace.default_strategy_config["parsimony"]
    assert (config["trials"], config["candidate_epochs"], config["min_epochs"]) == (3, 2, 1)
    named = tmp_path / "named"
    assert main(["search", "--space", "merc", "--strategy", "tpe", "--no-dashboard", "--out", str(named),
                 "--set", "strategy.trials=1", "--set", "strategy.candidate_epochs=1", *tiny]) == 0
    config = yaml.safe_load((named / "config.yaml").read_text())["strategy_config"]
    assert config["pruner"] == "median" and config["parsimony"] == 0.0


def test_evolution_starts_from_the_named_architectures(dataset, tmp_path) -> None:
    """Generation 1 begins with the hand-designed models' points (warm start), then random genomes."""
    from nasmerc.events import Events, ListSink
    from nasmerc.nas.strategy import SearchContext
    from nasmerc.train.trainer import TrainConfig
    from strategies.evolution import Evolution, EvolutionConfig

    space = MercSpace.from_preset(dataset.signature, "default", {"hidden_dim": 16, "n_heads": 2, "graph_heads": 2})
    named = space.named_architectures()
    assert list(named) == list(NAMED) and named["early_fusion"] == space.canonical(NAMED["early_fusion"])
    for warm, expected in ((True, list(named.values())[:2]), (False, None)):
        sink = ListSink()
        ctx = SearchContext(space, dataset, TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,)),
                            torch.device("cpu"), 0, Events([sink]), tmp_path)
        Evolution(EvolutionConfig(population=3, generations=1, candidate_epochs=1, warm_start=warm)).search(ctx)
        trials = [e["arch"] for e in sink.events if e["type"] == "trial"]
        if warm:
            assert trials[:2] == expected and len(trials) == 3
        else:
            assert not any(t == a for t in trials for a in named.values())


def test_lr_scale_sets_the_rate_the_point_trains_at(dataset) -> None:
    """``lr_scale`` changes no weight and multiplies the optimiser's rate; a model without one trains at
    ``train.lr``; a named architecture trains at it."""
    from nasmerc.train.trainer import TrainConfig, Trainer

    space = MercSpace(dataset.signature, SMALL)
    train = TrainConfig(epochs=1, lr=2e-3)
    slow, fast = (space.build({**NAMED["early_fusion"], "lr_scale": s}) for s in (1.0, 3.0))
    assert [k for k, _ in slow.named_parameters()] == [k for k, _ in fast.named_parameters()]
    rates = [Trainer(m, dataset.signature, train).optimizer.param_groups[0]["lr"] for m in (slow, fast)]
    assert rates == [pytest.approx(2e-3), pytest.approx(6e-3)]
    plain = EarlyFusionModel(dataset.signature, RecurrentConfig(hidden_dim=8, rnn_dim=4))
    assert Trainer(plain, dataset.signature, train).optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)
    with pytest.raises(NasmercError, match="lr_scales"):
        MercSpace(dataset.signature, replace(SMALL, lr_scales=(1.0, 0.0)))
