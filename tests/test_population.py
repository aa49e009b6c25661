"""Population strategies (random, evolution, TPE) and their shared genome code, on a toy space here.

The toy network over a :class:`~nasmerc.data.batch.Batch` asks, in order: a value choice ``width``,
an op choice ``op`` (three small modules), an input choice ``pick`` (2 of 4 features: one stem per
modality and their mean) and a float choice ``p`` (dropout). Candidates train one epoch on the tiny
synthetic data of ``conftest.TINY``, single-threaded.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY
from nasmerc.data.batch import Batch
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.evaluator import CandidateRequest, Evaluator
from nasmerc.nas.population import (TrialLog, decode, encode, genes, is_null, neighbours, removals, sample_arch, smaller,
                                    sample_genome, search_result)
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput, count_parameters
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy
from nasmerc.train.trainer import TrainConfig
from strategies.evolution import Evolution, EvolutionConfig, crossover, diversity, mutate
from strategies.random import RandomConfig, RandomSearch
from strategies.tpe import STUDY_FILE, TPE, TPEConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,))


@dataclass
class ToyConfig:
    pass


class ToyNet(nn.Module):
    def __init__(self, space: "ToySpace", ctx: ChoiceContext) -> None:
        super().__init__()
        sig = space.signature
        width = ctx.value("width", [4, 8])
        self.modalities = sig.modalities
        self.stems = nn.ModuleDict({m: nn.Linear(sig.dims[m], width) for m in sig.modalities})
        self.op = ctx.op("op", {"small": lambda: nn.Linear(width, width), "relu": nn.ReLU, "skip": nn.Identity})
        self.pick = ctx.inputs("pick", 4, 2, names=(*sig.modalities, "mean"))
        self.drop = nn.Dropout(ctx.float("p", 0.0, 0.5))
        self.regression = sig.task == "regression"
        self.head = nn.Linear(width, 1 if self.regression else sig.n_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = [self.stems[m](batch.features[m]) for m in self.modalities]
        feats.append(torch.stack(feats).mean(0))
        out = self.head(self.drop(self.op(self.pick(feats))))
        return ModelOutput(out.squeeze(-1) if self.regression else out)


class ToySpace(SearchSpace):
    name = "toy"
    Config = ToyConfig
    presets = {"default": ToyConfig}

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return ToyNet(self, ctx)


@pytest.fixture(scope="module")
def dataset():
    return load("iemocap6", TINY)


@pytest.fixture(scope="module")
def regression():
    return load("mosi", {**TINY, "dims.audio": 5})


@pytest.fixture(scope="module")
def space(dataset) -> ToySpace:
    return ToySpace(dataset.signature)


def context(space: SearchSpace, dataset: Any, run_dir: Path, seed: int = 0,
            fixed: dict[str, Any] | None = None, workers: int = 1) -> tuple[SearchContext, ListSink]:
    sink = ListSink()
    return SearchContext(space=space, dataset=dataset, train=TRAIN, device=torch.device("cpu"), seed=seed,
                         events=Events([sink]), run_dir=run_dir, fixed=fixed or {}, workers=workers), sink


def of_type(sink: ListSink, kind: str) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["type"] == kind]


# -- genomes ---------------------------------------------------------------------------------------
def test_gene_layout_and_round_trip(space: ToySpace) -> None:
    specs = space.choices()
    layout = genes(specs)
    assert [(g.label, g.kind, g.size) for g in layout] == [
        ("width", "categorical", 2), ("op", "categorical", 3), ("pick", "categorical", 4),
        ("pick", "categorical", 4), ("p", "float", 0)]
    arch = {"width": 8, "op": "relu", "pick": [1, 3], "p": 0.125}
    genome = encode(arch, specs)
    assert genome == [1, 1, 1, 3, 0.125]
    assert decode(genome, specs) == arch
    assert decode([0, 2, 3, 0, 0.5], specs) == {"width": 4, "op": "skip", "pick": [0, 3], "p": 0.5}


def test_fixed_labels_are_not_genes(space: ToySpace) -> None:
    fixed = {"width": 8, "p": 0.25}
    specs = space.choices(fixed)
    assert [g.label for g in genes(specs, fixed)] == ["op", "pick", "pick"]
    arch = {"width": 8, "op": "small", "pick": [0, 2], "p": 0.25}
    assert encode(arch, specs, fixed) == [0, 0, 2]
    assert decode([0, 0, 2], specs, fixed) == arch
    for seed in range(5):
        sampled = sample_arch(specs, np.random.default_rng(seed), fixed)
        assert sampled["width"] == 8 and sampled["p"] == 0.25


def test_sampled_architectures_are_valid(space: ToySpace) -> None:
    specs = space.choices()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        arch = sample_arch(specs, rng)
        assert space.canonical(arch) == arch
        seen.add((arch["width"], arch["op"], tuple(arch["pick"])))
    assert len(seen) > 10
    assert sample_arch(specs, np.random.default_rng(3)) == sample_arch(specs, np.random.default_rng(3))


def test_crossover_blends_floats_and_keeps_inputs_distinct(space: ToySpace) -> None:
    specs = space.choices()
    layout = genes(specs)
    rng = np.random.default_rng(1)
    for seed in range(30):
        a, b = sample_genome(layout, rng), sample_genome(layout, rng)
        c, d = crossover(list(a), list(b), layout, random.Random(seed))
        alpha = random.Random(seed).random()  # the first draw of a crossover is its alpha
        assert c[4] == pytest.approx(alpha * a[4] + (1 - alpha) * b[4])
        assert d[4] == pytest.approx((1 - alpha) * a[4] + alpha * b[4])
        for child in (c, d):
            assert space.canonical(decode(child, specs)) == decode(child, specs)
            assert child[2] != child[3]
        for p in range(4):  # categorical genes come from one parent or the other, swapped in pairs
            assert {c[p], d[p]} == {a[p], b[p]}
        assert (c[2], c[3]) in ((a[2], a[3]), (b[2], b[3]))


def test_mutation_keeps_genomes_valid(space: ToySpace) -> None:
    specs = space.choices()
    layout = genes(specs)
    rng, prng = np.random.default_rng(2), random.Random(2)
    changed = 0
    for _ in range(50):
        genome = sample_genome(layout, rng)
        mutant = mutate(list(genome), layout, prob=0.8, sigma=0.5, rng=prng)
        arch = decode(mutant, specs)
        assert space.canonical(arch) == arch and 0.0 <= mutant[4] <= 0.5
        changed += mutant != genome
    assert changed > 40
    genome = sample_genome(layout, rng)
    assert mutate(list(genome), layout, prob=0.0, sigma=0.5, rng=prng) == genome
    assert diversity([genome, genome], layout) == 0.0
    assert 0.0 < diversity([sample_genome(layout, rng) for _ in range(6)], layout) <= 1.0


# -- candidates -------------------------------------------------------------------------------------
def test_evaluate_candidate_is_silent_and_seeded(space: ToySpace, dataset) -> None:
    arch = {"width": 4, "op": "skip", "pick": [0, 3], "p": 0.1}
    a, = Evaluator(space, dataset, TRAIN).score_all([CandidateRequest(arch, 1, seed=3)])
    torch.manual_seed(99)  # the global RNG does not matter: the evaluator seeds
    b, = Evaluator(space, dataset, TRAIN, seed=5).score_all([CandidateRequest(arch, 1, seed=3)])
    assert a.value == b.value and a.metrics == b.metrics and 0.0 <= a.value <= 1.0
    assert a.parameters == sum(p.numel() for p in space.build(arch).parameters())
    sink = ListSink()
    log = TrialLog("waf", Events([sink]))
    log.add(arch, a)
    result = search_result(space, {}, log)
    assert [e["type"] for e in sink.events] == ["trial"]
    assert result.supernet_parameters == a.parameters  # no supernet with width / p unresolved
    fixed = {"width": 4, "p": 0.1}
    assert search_result(space, fixed, log).supernet_parameters > a.parameters


# -- strategies --------------------------------------------------------------------------------------
STRATEGIES = {
    "random": lambda: RandomSearch(RandomConfig(trials=3, candidate_epochs=1)),
    "evolution": lambda: Evolution(EvolutionConfig(population=4, generations=2, candidate_epochs=1, tournament=2,
                                                   cx_prob=0.9, mut_prob=0.3)),
    "tpe": lambda: TPE(TPEConfig(trials=4, candidate_epochs=1, startup_trials=2)),
}


def run(name: str, space: SearchSpace, dataset: Any, run_dir: Path, seed: int = 0,
        strategy: Strategy | None = None, workers: int = 1) -> tuple[SearchResult, ListSink]:
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx, sink = context(space, dataset, run_dir, seed, workers=workers)
    return (strategy or STRATEGIES[name]()).search(ctx), sink


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_search_finds_a_buildable_arch_reproducibly(name: str, space: ToySpace, dataset, tmp_path: Path) -> None:
    result, sink = run(name, space, dataset, tmp_path / "a")
    assert space.canonical(result.arch) == result.arch
    space.build(result.arch)
    trials = of_type(sink, "trial")
    assert trials and [t["trial"] for t in trials] == list(range(1, len(trials) + 1))
    assert result.metric == "waf" and result.best_value == max(t["value"] for t in trials)
    assert all(t["best"] == max(u["value"] for u in trials[: i + 1]) for i, t in enumerate(trials))
    assert result.derived_parameters == sum(p.numel() for p in space.build(result.arch).parameters())
    assert result.supernet_parameters == max(t["parameters"] for t in trials)
    assert len(result.extra["trials"]) == len(trials)
    again, _ = run(name, space, dataset, tmp_path / "b")
    assert (again.arch, again.best_value, again.best_epoch) == (result.arch, result.best_value, result.best_epoch)
    assert [t["arch"] for t in again.extra["trials"]] == [t["arch"] for t in result.extra["trials"]]
    if name == "evolution":
        gens = of_type(sink, "generation")
        assert [g["generation"] for g in gens] == [1, 2] and gens[-1]["generations"] == 2
        assert gens[-1]["best"] == result.best_value and gens[-1]["best_genome"] == result.arch
        assert all(0.0 <= g["diversity"] <= 1.0 for g in gens)
        assert len(result.extra["logbook"]) == 2
    if name == "random":
        assert len(trials) == 3 and result.best_epoch == result.extra["best_trial"]


def test_tpe_writes_its_study(space: ToySpace, dataset, tmp_path: Path) -> None:
    import optuna

    result, _ = run("tpe", space, dataset, tmp_path)
    assert (tmp_path / STUDY_FILE).is_file()
    study = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_value == result.best_value
    assert set(study.best_params) == {"width", "op", "pick#0", "pick#1", "p"}


def test_tpe_samples_the_choices_jointly(space: ToySpace, dataset, tmp_path: Path) -> None:
    """One objective: Optuna's TPE is multivariate (one joint density over every choice), as the module
    docstring says; its trials carry the jointly sampled (relative) parameters."""
    import optuna

    from strategies.tpe import make_sampler

    study = optuna.create_study(sampler=make_sampler(TPEConfig(), 0))
    assert study.sampler._is_multivariate(study)
    run("tpe", space, dataset, tmp_path, strategy=TPE(TPEConfig(trials=5, candidate_epochs=1, startup_trials=2)))
    db = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    assert any(key.startswith("tpe:relative_params") for t in db.trials[2:] for key in t.system_attrs)


@pytest.mark.parametrize("name", ["random", "tpe", "evolution"])
def test_a_diverging_candidate_fails_and_the_search_goes_on(name: str, space: ToySpace, dataset, tmp_path: Path,
                                                             monkeypatch) -> None:
    """A candidate whose loss stops being finite is a failed trial (``diverged``, the metric's worst value,
    never the result), not the end of the search; its record is kept, so a rerun replays it."""
    from nasmerc.errors import Diverged
    from nasmerc.train.trainer import Trainer

    fit = Trainer.fit

    def diverging(self, *args, **kwargs):
        if self.model.head.in_features == 8:  # every candidate of width 8
            raise Diverged("training diverged: the loss is not finite from epoch 1, step 1")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", diverging)
    configs = {"random": RandomSearch(RandomConfig(trials=6, candidate_epochs=1)),
               "tpe": TPE(TPEConfig(trials=6, candidate_epochs=1, startup_trials=2)),
               "evolution": Evolution(EvolutionConfig(population=4, generations=2, candidate_epochs=1))}
    result, sink = run(name, space, dataset, tmp_path, strategy=configs[name])
    trials = result.extra["trials"]
    failed = [t for t in trials if t.get("diverged")]
    assert failed and all(t["arch"]["width"] == 8 and t["value"] == 0.0 for t in failed)
    assert all(not t.get("diverged") for t in trials if t["arch"]["width"] == 4)
    assert result.arch["width"] == 4 and "diverged" in of_type(sink, "trial")[trials.index(failed[0])]
    lines = (tmp_path / "candidates.jsonl").read_text()
    assert '"diverged": "training diverged' in lines
    for event in sink.events:  # plain JSON: no infinity or NaN reaches an event
        json.dumps(event, allow_nan=False)


def test_neighbours_change_one_categorical_gene(space: ToySpace) -> None:
    specs = space.choices()
    genome = encode({"width": 8, "op": "relu", "pick": [1, 3], "p": 0.125}, specs)
    around = neighbours(genome, genes(specs))
    # width: 1 other value; op: 2 others; each pick gene: the 2 inputs the choice does not hold; p kept
    assert len(around) == 7
    assert all(sum(a != b for a, b in zip(g, genome)) == 1 and g[-1] == 0.125 for g in around)
    picks = [decode(g, specs)["pick"] for g in around[3:]]
    assert picks == [[0, 3], [2, 3], [0, 1], [1, 2]]


@pytest.mark.parametrize("name", ["random", "tpe", "evolution"])
def test_local_search_climbs_from_the_best(name: str, space: ToySpace, dataset, tmp_path: Path) -> None:
    """``local_steps``: each step trains the best's one-choice neighbours not trained yet and moves to
    the best of them while it improves; the result is where it stopped, and a second run over the same
    folder replays every candidate from ``candidates.jsonl``, training nothing."""
    configs = {"random": (RandomSearch, RandomConfig(trials=3, candidate_epochs=1, local_steps=2)),
               "tpe": (TPE, TPEConfig(trials=3, candidate_epochs=1, startup_trials=2, local_steps=2)),
               "evolution": (Evolution, EvolutionConfig(population=2, generations=1, candidate_epochs=1,
                                                        local_steps=2))}
    make, cfg = configs[name]
    result, sink = run(name, space, dataset, tmp_path, strategy=make(cfg))
    trials = result.extra["trials"]
    searched = [t for t in trials if "local_step" not in t]
    start = max((t for t in searched if not t.get("pruned")), key=lambda t: t["value"])
    steps = of_type(sink, "local_step")
    assert 1 <= len(steps) <= 2 and steps[0]["neighbours"] == 7 and steps[0]["trained"] >= 1
    assert [e["step"] for e in steps] == list(range(1, len(steps) + 1))
    assert result.extra["local_steps"] == sum(e["moved"] for e in steps)
    assert result.best_value >= start["value"] and result.best_value == steps[-1]["best"]
    assert [t["trial"] for t in trials] == list(range(1, len(trials) + 1))
    local = [t for t in trials if "local_step" in t]
    assert {t["local_step"] for t in local} <= {1, 2} and len(local) == sum(e["trained"] for e in steps)
    chosen = next(t for t in trials if t["trial"] == result.extra["best_trial"])
    assert chosen["arch"] == result.arch and chosen["value"] == result.best_value
    keys = [repr(sorted(t["arch"].items())) for t in local]
    assert len(set(keys)) == len(keys)  # no neighbour trained twice
    (tmp_path / STUDY_FILE).unlink(missing_ok=True)  # TPE's study is derived state, made again (as --resume does)
    lines = (tmp_path / "candidates.jsonl").read_text().count("\n")
    assert lines == len(trials)
    again, _ = run(name, space, dataset, tmp_path, strategy=make(cfg))
    assert (again.arch, again.best_value) == (result.arch, result.best_value)
    assert [t["value"] for t in again.extra["trials"]] == [t["value"] for t in trials]
    assert (tmp_path / "candidates.jsonl").read_text().count("\n") == lines  # nothing trained again


@pytest.mark.parametrize("make, where", [
    (lambda: RandomConfig(local_steps=-1), "local_steps"),
    (lambda: RandomConfig(local_steps=1, study="s", storage="journal"), "shared study"),
    (lambda: TPEConfig(local_steps=1, objectives=("metric", "params")), "objectives=metric"),
    (lambda: EvolutionConfig(local_steps=1, weights="evolve"), "weights='scratch'"),
])
def test_local_search_refuses_what_it_cannot_climb(make, where) -> None:
    with pytest.raises(NasmercError, match=where):
        make()


class ExtrasNet(nn.Module):
    """A text stem, then an optional hidden layer (``extra``: ``none`` or ``mlp``), an optional audio path
    added to it (``audio``: ``off`` or ``linear``) and a head; ``scale`` (0 or 1) multiplies nothing the
    output depends on when 0, so it is a null value choice too."""

    def __init__(self, space: "ExtrasSpace", ctx: ChoiceContext) -> None:
        super().__init__()
        sig = space.signature
        self.stem = nn.Linear(sig.dims["text"], 8)
        self.extra = ctx.op("extra", {"mlp": lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU()), "none": nn.Identity})
        self.audio = ctx.op("audio", {"linear": lambda: nn.Linear(sig.dims["audio"], 8), "off": lambda: None})
        self.scale = float(ctx.value("scale", [1.0, 0.0]))
        self.head = nn.Linear(8, sig.n_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.extra(self.stem(batch.features["text"]))
        if self.audio is not None:
            h = h + self.audio(batch.features["audio"])
        return ModelOutput(self.head(h))


class ExtrasSpace(SearchSpace):
    name = "extras"
    Config = ToyConfig
    presets = {"default": ToyConfig}

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return ExtrasNet(self, ctx)


def test_removals_leave_one_component_out(dataset) -> None:
    """Every op / value choice set to a null candidate it does not hold (``none``, ``off``, 0), one at a
    time; a fixed label is left as it is."""
    space = ExtrasSpace(dataset.signature)
    specs = space.choices()
    full = {"extra": "mlp", "audio": "linear", "scale": 1.0}
    assert list(removals(full, specs, {}).values()) == [{**full, "extra": "none"}, {**full, "audio": "off"},
                                                        {**full, "scale": 0.0}]
    assert list(removals(full, specs, {"audio": "linear"}).values()) == [{**full, "extra": "none"},
                                                                         {**full, "scale": 0.0}]
    assert removals({"extra": "none", "audio": "off", "scale": 0.0}, specs, {}) == {}
    assert [is_null(c) for c in ("none", "off", "zero", "zeros", 0, 0.0, 1, False)] == [True] * 3 + [False, True,
                                                                                          True, False, False]


@pytest.mark.parametrize("name", ["random", "tpe", "evolution"])
def test_simplify_leaves_out_what_validation_cannot_tell_is_needed(name: str, dataset, tmp_path: Path) -> None:
    """``simplify``: each step trains the result's removals and moves to the best one within the
    tolerance of the search's best value; with a tolerance no removal can miss, every component goes,
    one per step, and a second run over the same folder replays every candidate."""
    space = ExtrasSpace(dataset.signature)
    common = {"candidate_epochs": 1, "simplify": 3, "parsimony": 1.0}
    configs = {"random": (RandomSearch, RandomConfig(trials=1, **common)),
               "tpe": (TPE, TPEConfig(trials=1, startup_trials=1, **common)),
               "evolution": (Evolution, EvolutionConfig(population=2, generations=1, **common))}
    make, cfg = configs[name]
    result, sink = run(name, space, dataset, tmp_path, seed=2, strategy=make(cfg))  # a start with 2+ components
    assert result.arch == {"extra": "none", "audio": "off", "scale": 0.0}
    steps = of_type(sink, "simplify_step")
    assert [e["step"] for e in steps] == list(range(1, len(steps) + 1)) and steps[0]["removals"] >= 2
    assert [e["removals"] for e in steps] == list(range(steps[0]["removals"], steps[0]["removals"] - len(steps), -1))
    removed = result.extra["simplify"]["removed"]
    assert len(removed) == len(set(removed)) == steps[0]["removals"] and set(removed) <= {"extra", "audio", "scale"}
    assert [e["removed"] for e in steps][:len(removed)] == removed
    trials = result.extra["trials"]
    chosen = next(t for t in trials if t["trial"] == result.extra["best_trial"])
    assert chosen["arch"] == result.arch and chosen["value"] == result.best_value
    assert len([t for t in trials if "simplify_step" in t]) == sum(e["trained"] for e in steps)
    (tmp_path / STUDY_FILE).unlink(missing_ok=True)
    lines = (tmp_path / "candidates.jsonl").read_text().count("\n")
    again, _ = run(name, space, dataset, tmp_path, seed=2, strategy=make(cfg))
    assert (again.arch, again.best_value) == (result.arch, result.best_value)
    assert (tmp_path / "candidates.jsonl").read_text().count("\n") == lines  # nothing trained again


def test_simplify_keeps_what_falls_below_the_best(dataset, tmp_path: Path) -> None:
    """A removal below the search's best by more than the tolerance is trained but not taken: with a
    tolerance of 0 only a removal at least as good as the best moves, and the result is never worse."""
    space = ExtrasSpace(dataset.signature)
    result, sink = run("random", space, dataset, tmp_path,
                       strategy=RandomSearch(RandomConfig(trials=3, candidate_epochs=1, simplify=2)))
    top = max(t["value"] for t in result.extra["trials"] if "simplify_step" not in t)
    assert result.best_value >= top and result.extra["simplify"]["reference"] == top
    for event in of_type(sink, "simplify_step"):
        assert (event["removed"] is None) == (event["within"] == 0)


@pytest.mark.parametrize("by", ["value", "parameters"])
def test_simplify_by_chooses_among_the_removals_within(by: str, dataset, tmp_path: Path) -> None:
    """Of a step's removals within the tolerance, ``simplify_by=value`` takes the best value and
    ``simplify_by=parameters`` the fewest parameters, as ``parsimony`` chooses."""
    space = ExtrasSpace(dataset.signature)
    cfg = RandomConfig(trials=1, candidate_epochs=1, simplify=1, parsimony=1.0, simplify_by=by)
    result, sink = run("random", space, dataset, tmp_path, seed=2, strategy=RandomSearch(cfg))
    step = [t for t in result.extra["trials"] if t.get("simplify_step") == 1]
    assert len(step) >= 2 and result.extra["simplify"]["by"] == by
    chosen = next(t for t in step if t["trial"] == result.extra["best_trial"])
    if by == "value":
        assert chosen["value"] == max(t["value"] for t in step)
    else:
        assert int(chosen["parameters"]) == min(int(t["parameters"]) for t in step)
    assert len({int(t["parameters"]) for t in step}) == len(step)  # the toy's removals differ in size


class SizesNet(nn.Module):
    """A text stem, a hidden block (``block``: ``wide``, 8 -> 64 -> 8, or ``narrow``, 8 -> 8: neither is
    null), an optional audio path (``audio``: ``linear`` or ``off``) and a head."""

    def __init__(self, space: "SizesSpace", ctx: ChoiceContext) -> None:
        super().__init__()
        sig = space.signature
        self.stem = nn.Linear(sig.dims["text"], 8)
        self.block = ctx.op("block", {"wide": lambda: nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 8)),
                                      "narrow": lambda: nn.Linear(8, 8)})
        self.audio = ctx.op("audio", {"linear": lambda: nn.Linear(sig.dims["audio"], 8), "off": lambda: None})
        self.head = nn.Linear(8, sig.n_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.block(self.stem(batch.features["text"]))
        if self.audio is not None:
            h = h + self.audio(batch.features["audio"])
        return ModelOutput(self.head(h))


class SizesSpace(SearchSpace):
    name = "sizes"
    Config = ToyConfig
    presets = {"default": ToyConfig}

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return SizesNet(self, ctx)


def test_smaller_moves_are_the_removals_and_every_smaller_candidate(dataset) -> None:
    """``smaller``: the removals, and a choice changed to a non-null candidate only when the model it
    builds has fewer parameters."""
    space = SizesSpace(dataset.signature)
    specs = space.choices()

    def size(arch):
        return count_parameters(space.build(dict(arch)))

    wide = {"block": "wide", "audio": "linear"}
    assert list(smaller(wide, specs, {}, size).values()) == [{**wide, "audio": "off"}, {**wide, "block": "narrow"}]
    assert list(smaller({**wide, "block": "narrow"}, specs, {}, size).values()) == [{"block": "narrow", "audio": "off"}]
    assert smaller(wide, specs, {"block": "wide"}, size) == removals(wide, specs, {"block": "wide"})


@pytest.mark.parametrize("moves", ["removals", "smaller", "removals_first"])
def test_simplify_moves_smaller_takes_a_smaller_candidate(moves: str, dataset, tmp_path: Path) -> None:
    """From a wide block with audio, removals can only turn audio off; ``simplify_moves=smaller`` with
    ``simplify_by=parameters`` also narrows the block, the larger saving first, recorded as
    ``block=narrow`` in the step event and in ``extra["simplify"]``; ``removals_first`` turns audio off
    first, training no smaller change at that step, and narrows the block when no removal is left."""
    space = SizesSpace(dataset.signature)
    cfg = RandomConfig(trials=1, candidate_epochs=1, simplify=3, parsimony=1.0, simplify_by="parameters",
                       simplify_moves=moves)
    result, sink = run("random", space, dataset, tmp_path, seed=11, strategy=RandomSearch(cfg))
    assert result.extra["trials"][0]["arch"] == {"block": "wide", "audio": "linear"}  # the seed's start
    expected = {"removals": ["audio"], "smaller": ["block=narrow", "audio"],
                "removals_first": ["audio", "block=narrow"]}[moves]
    assert result.extra["simplify"]["removed"] == expected and result.extra["simplify"]["moves"] == moves
    assert [e["removed"] for e in of_type(sink, "simplify_step")] == expected + [None]
    assert result.arch == {"block": "wide" if moves == "removals" else "narrow", "audio": "off"}
    first = [t["arch"] for t in result.extra["trials"] if t.get("simplify_step") == 1]
    assert first == ([{"block": "wide", "audio": "off"}] if moves != "smaller" else
                     [{"block": "wide", "audio": "off"}, {"block": "narrow", "audio": "linear"}])


@pytest.mark.parametrize("make, where", [
    (lambda: RandomConfig(simplify=-1), "simplify"),
    (lambda: RandomConfig(simplify=1, study="s", storage="journal:trials.log"), "shared study"),
    (lambda: TPEConfig(simplify=1, finalists=2), "finalists"),
    (lambda: RandomConfig(simplify=1, evaluation="oneshot", finalists=0), "evaluation=scratch"),
    (lambda: TPEConfig(simplify=1, objectives=("metric", "params")), "objectives=metric"),
    (lambda: EvolutionConfig(simplify=1, weights="evolve"), "weights='scratch'"),
])
def test_simplify_refuses_what_it_cannot_compare(make, where) -> None:
    with pytest.raises(NasmercError, match=where):
        make()


def test_evolution_map_switch(space: ToySpace, dataset, tmp_path: Path) -> None:
    """``workers=2`` runs fitness in a spawned process pool and finds what ``workers=1`` finds."""
    cfg = EvolutionConfig(population=2, generations=1, candidate_epochs=1)
    serial, _ = run("evolution", space, dataset, tmp_path / "1", strategy=Evolution(cfg))
    pooled, _ = run("evolution", space, dataset, tmp_path / "2", strategy=Evolution(cfg), workers=2)
    assert (pooled.arch, pooled.best_value) == (serial.arch, serial.best_value)
    assert [t["value"] for t in pooled.extra["trials"]] == [t["value"] for t in serial.extra["trials"]]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_minimises_mae_on_regression(name: str, regression, tmp_path: Path) -> None:
    space = ToySpace(regression.signature)
    result, sink = run(name, space, regression, tmp_path)
    trials = of_type(sink, "trial")
    assert result.metric == "mae" and result.best_value == min(t["value"] for t in trials)
    assert trials[-1]["best"] == result.best_value
    if name == "tpe":
        import optuna
        study = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
        assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_fixed_choices_stay_fixed(space: ToySpace, dataset, tmp_path: Path) -> None:
    ctx, sink = context(space, dataset, tmp_path, fixed={"width": 8, "p": 0.0})
    result = RandomSearch(RandomConfig(trials=2, candidate_epochs=1)).search(ctx)
    assert all(t["arch"]["width"] == 8 and t["arch"]["p"] == 0.0 for t in of_type(sink, "trial"))
    assert result.supernet_parameters > result.derived_parameters  # the supernet can be built now


# -- TPE: pruning, storage, objectives ----------------------------------------------------------------
class _StubTrial:
    def __init__(self, prune: bool) -> None:
        self.prune, self.reports = prune, []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune


def test_prune_reporter_reports_and_prunes_before_the_last_epoch() -> None:
    import optuna

    from strategies.tpe import PruneReporter

    keep = _StubTrial(prune=False)
    reporter = PruneReporter(keep, epochs=3, metric="waf")
    for epoch, value in enumerate([0.2, 0.5, 0.4]):
        reporter(epoch, value)
    assert keep.reports == [(1, 0.2), (2, 0.5), (3, 0.4)] and reporter.best == 0.5  # steps: epochs trained
    stop = _StubTrial(prune=True)
    with pytest.raises(optuna.TrialPruned):
        PruneReporter(stop, epochs=3, metric="waf")(0, 0.1)
    PruneReporter(_StubTrial(prune=True), epochs=1, metric="mae")(0, 0.3)  # the last epoch: nothing to stop


def test_evaluate_candidate_on_epoch_can_stop_training(space: ToySpace, dataset) -> None:
    arch = {"width": 4, "op": "skip", "pick": [0, 3], "p": 0.1}
    seen = []

    def stop(epoch: int, value: float) -> None:
        seen.append((epoch, value))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Evaluator(space, dataset, TRAIN).score_all([CandidateRequest(arch, 3, seed=0, stop=stop)])
    assert len(seen) == 1 and seen[0][0] == 0


def test_tpe_prunes_trials(space: ToySpace, dataset, tmp_path: Path, monkeypatch) -> None:
    """A pruner that prunes every trial but the first: pruned trials are PRUNED in the study, their
    events say ``pruned: true`` and the result is the completed trial."""
    import optuna

    import strategies.tpe as tpe

    class AllButFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return trial.number >= 1

    made = []
    monkeypatch.setattr(tpe, "make_pruner", lambda name, *sizes: made.append(name) or AllButFirst())
    result, sink = run("tpe", space, dataset, tmp_path,
                       strategy=TPE(TPEConfig(trials=3, candidate_epochs=2, startup_trials=1)))
    assert made == ["median"]
    study = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    assert list(study.trials[1].intermediate_values) == [1]  # steps are epochs trained
    assert list(study.trials[0].intermediate_values) == [1, 2]
    trials = of_type(sink, "trial")
    assert [t.get("pruned", False) for t in trials] == [False, True, True]
    assert [t["epochs"] for t in trials] == [2, 1, 1]
    assert all(t["best"] == trials[0]["value"] for t in trials)
    assert result.best_epoch == 1 and result.arch == trials[0]["arch"]


def test_tpe_hyperband_stops_trials_at_its_rungs(space: ToySpace, dataset, tmp_path: Path) -> None:
    """Optuna's Hyperband pruner over epochs: a trial stops only at a rung (``min_epochs * 3 ** k``
    epochs, after at least ``min_epochs``), the completed ones train ``candidate_epochs``, some trial is
    pruned, and each trial record says the epochs it trained, which the bench's budget adds up."""
    import optuna

    from nasmerc.bench import candidate_epochs

    cfg = TPEConfig(trials=12, candidate_epochs=6, startup_trials=2, pruner="hyperband", min_epochs=2,
                    reduction_factor=3)
    assert isinstance(cfg.make_pruner(), optuna.pruners.HyperbandPruner)
    result, sink = run("tpe", space, dataset, tmp_path, strategy=TPE(cfg))
    trials = of_type(sink, "trial")
    pruned = [t for t in trials if t.get("pruned")]
    complete = [t for t in trials if not t.get("pruned")]
    assert pruned and complete
    assert all(t["epochs"] == 2 for t in pruned)  # the one rung below 6 epochs: 2 (2 * 3 = 6 is the end)
    assert all(t["epochs"] == 6 for t in complete)
    assert result.arch in [t["arch"] for t in complete]
    found = {"trials": result.extra["trials"]}
    assert candidate_epochs(found, {"strategy_config": {"candidate_epochs": 6}}) == sum(t["epochs"] for t in trials)
    study = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    assert all(min(t.intermediate_values) == 1 for t in study.trials)  # steps are epochs, 1-based


def test_tpe_median_pruner_config() -> None:
    import optuna

    from strategies.tpe import make_pruner

    pruner = make_pruner("median", 2)
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("none", 2), optuna.pruners.NopPruner)
    with pytest.raises(NasmercError, match="median, hyperband, none"):
        make_pruner("asha", 2)
    with pytest.raises(NasmercError, match="min_epochs=5 with pruner='hyperband': expected fewer than candidate_epochs=5"):
        TPEConfig(candidate_epochs=5, pruner="hyperband", min_epochs=5)


def test_tpe_custom_storage_and_existing_study(space: ToySpace, dataset, tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'other.db'}"
    cfg = TPEConfig(trials=2, candidate_epochs=1, startup_trials=1, storage=url)
    result, _ = run("tpe", space, dataset, tmp_path / "run", strategy=TPE(cfg))
    assert not (tmp_path / "run" / STUDY_FILE).exists() and (tmp_path / "other.db").is_file()
    study = optuna.load_study(study_name="nasmerc", storage=url)
    assert len(study.trials) == 2 and study.best_value == result.best_value
    assert result.extra["study"] == url
    with pytest.raises(NasmercError, match="other.db"):
        run("tpe", space, dataset, tmp_path / "run2", strategy=TPE(cfg))


def test_tpe_journal_storage(space: ToySpace, dataset, tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from strategies.tpe import JOURNAL_FILE

    cfg = TPEConfig(trials=2, candidate_epochs=1, startup_trials=1, storage="journal")
    result, _ = run("tpe", space, dataset, tmp_path / "run", strategy=TPE(cfg))
    path = tmp_path / "run" / JOURNAL_FILE
    assert path.is_file() and not (tmp_path / "run" / STUDY_FILE).exists()
    study = optuna.load_study(study_name="nasmerc",
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    assert len(study.trials) == 2 and study.best_value == result.best_value
    assert result.extra["study"] == JOURNAL_FILE
    elsewhere = TPEConfig(trials=1, candidate_epochs=1, startup_trials=1, storage=f"journal:{path}")
    with pytest.raises(NasmercError, match="already holds a study"):
        run("tpe", space, dataset, tmp_path / "run2", strategy=TPE(elsewhere))
    with pytest.raises(NasmercError, match="does not exist"):  # refused when the config is made
        missing = TPEConfig(trials=1, candidate_epochs=1, storage=f"journal:{tmp_path / 'no' / 'x.journal'}")
        run("tpe", space, dataset, tmp_path / "run3", strategy=TPE(missing))


def test_tpe_multi_objective_pareto(space: ToySpace, dataset, tmp_path: Path) -> None:
    import json

    import optuna

    from strategies.tpe import PARETO_FILE

    cfg = TPEConfig(trials=5, candidate_epochs=1, objectives=("metric", "params"))
    result, sink = run("tpe", space, dataset, tmp_path, strategy=TPE(cfg))
    pareto = json.loads((tmp_path / PARETO_FILE).read_text())
    front = pareto["front"]
    assert pareto["objectives"] == ["metric", "params"] and front
    for a in front:
        for b in front:
            dominates = (b["value"] >= a["value"] and b["parameters"] <= a["parameters"]
                         and (b["value"] > a["value"] or b["parameters"] < a["parameters"]))
            assert not dominates
    trials = of_type(sink, "trial")
    for a in front:  # nothing evaluated dominates a member either
        assert not any(t["value"] >= a["value"] and t["parameters"] <= a["parameters"]
                       and (t["value"] > a["value"] or t["parameters"] < a["parameters"]) for t in trials)
    assert result.arch == front[0]["arch"] and result.best_value == max(m["value"] for m in front)
    assert result.best_value == max(t["value"] for t in trials)
    space.build(result.arch)
    assert result.derived_parameters == front[0]["parameters"]
    assert [m["trial"] for m in result.extra["pareto"]] == [m["trial"] for m in front]
    study = optuna.load_study(study_name="nasmerc", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]


def test_tpe_refuses_bad_objectives(space: ToySpace, dataset, tmp_path: Path) -> None:
    for objectives, pattern in ((("metric", "latency"), "'latency'.*metric, params"),
                                (("params",), "metric"), (("metric", "metric"), "metric")):
        with pytest.raises(NasmercError, match=pattern):
            run("tpe", space, dataset, tmp_path, strategy=TPE(TPEConfig(trials=1, objectives=objectives)))
    assert not (tmp_path / STUDY_FILE).exists()


def test_finalists_are_trained_in_full_and_the_best_kept(space: ToySpace, dataset, tmp_path: Path) -> None:
    """``finalists=2``: the two best distinct candidates train ``train.epochs`` with the run seed (as
    ``retrain`` will) and the better of them is the result."""
    train = TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0,))
    sink = ListSink()
    ctx = SearchContext(space=space, dataset=dataset, train=train, device=torch.device("cpu"), seed=4,
                        events=Events([sink]), run_dir=tmp_path)
    result = RandomSearch(RandomConfig(trials=4, candidate_epochs=1, finalists=2)).search(ctx)
    trials = sorted(result.extra["trials"], key=lambda t: -t["value"])
    finalists = result.extra["finalists"]
    assert [f["trial"] for f in finalists] == [t["trial"] for t in trials if t["arch"] in
                                               [f["arch"] for f in finalists]][:2]
    assert finalists[0]["arch"] == trials[0]["arch"] and len({str(f["arch"]) for f in finalists}) == 2
    assert result.extra["finalist_epochs"] == 4 and len(of_type(sink, "finalist")) == 2
    best = max(finalists, key=lambda f: f["final_value"])
    assert result.arch == best["arch"] and result.best_value == best["final_value"]
    again, = Evaluator(space, dataset, train, seed=4).score_all([CandidateRequest(best["arch"], 2, seed=4)])
    assert again.value == best["final_value"]  # what retrain gives the chosen architecture


def test_selection_folds_partition_the_labelled_conversations(dataset) -> None:
    """Every training and validation conversation is validated on in exactly one fold and trained on in
    the others; the test split is the data's own; the same seed gives the same folds."""
    from nasmerc.data.folds import selection_folds
    folds = selection_folds(dataset.splits, 3, seed=5, where="here")
    pool = [c.id for s in ("train", "valid") for c in dataset.splits[s]]
    held = [c.id for f in folds for c in f["valid"]]
    assert sorted(held) == sorted(pool) and len(set(held)) == len(pool)
    for f in folds:
        assert sorted(c.id for c in f["train"] + f["valid"]) == sorted(pool)
        assert [c.id for c in f["test"]] == [c.id for c in dataset.splits["test"]]
    assert max(len(f["valid"]) for f in folds) - min(len(f["valid"]) for f in folds) <= 1
    assert [[c.id for c in f["valid"]] for f in selection_folds(dataset.splits, 3, seed=5, where="here")] == \
        [[c.id for c in f["valid"]] for f in folds]
    with pytest.raises(NasmercError, match=r"here: 1 folds over \d+ training and validation conversations"):
        selection_folds(dataset.splits, 1, seed=5, where="here")
    with pytest.raises(NasmercError, match="expected 2 to"):
        selection_folds(dataset.splits, len(pool) + 1, seed=5, where="here")


def test_finalist_folds_choose_on_the_mean_of_the_folds(space: ToySpace, dataset, tmp_path: Path) -> None:
    """``finalist_folds=2``: each finalist trains once per fold, with the run seed, on that fold's
    conversations; its value is the mean of the two folds' best validation values (what an evaluator
    of that fold gives), and the best mean is the result. The cost counts every fold."""
    from nasmerc.data.folds import selection_folds
    import dataclasses
    train = TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0,))
    sink = ListSink()
    ctx = SearchContext(space=space, dataset=dataset, train=train, device=torch.device("cpu"), seed=4,
                        events=Events([sink]), run_dir=tmp_path)
    result = RandomSearch(RandomConfig(trials=4, candidate_epochs=1, finalists=2, finalist_folds=2)).search(ctx)
    finalists = result.extra["finalists"]
    assert len(finalists) == 2 and result.extra["finalist_epochs"] == 2 * 2 * 2 and result.extra["finalist_folds"] == 2
    splits = selection_folds(dataset.splits, 2, seed=4, where="test")
    for f in finalists:
        want = [Evaluator(space, dataclasses.replace(dataset, splits=s), train, seed=4)
                .score_all([CandidateRequest(f["arch"], 2, seed=4)])[0].value for s in splits]
        assert f["fold_values"] == want and f["final_value"] == pytest.approx(sum(want) / 2)
    best = max(finalists, key=lambda f: f["final_value"])
    assert result.arch == best["arch"] and result.best_value == best["final_value"]
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["1", "2"]
    assert all(len((tmp_path / "folds" / j / "candidates.jsonl").read_text().splitlines()) == 2 for j in ("1", "2"))
    events = of_type(sink, "finalist")
    assert [e["fold_values"] for e in events] == [f["fold_values"] for f in finalists]
    again = RandomSearch(RandomConfig(trials=4, candidate_epochs=1, finalists=2, finalist_folds=2)).search(ctx)
    assert again.arch == result.arch and again.extra["finalists"] == finalists  # answered from RUN/folds/J


@pytest.mark.parametrize("options, message", [
    ({"finalists": 2, "finalist_folds": 1}, r"finalist_folds=1: expected 0 \(choose on the validation split\) or 2 to 10"),
    ({"finalists": 2, "finalist_folds": 11}, "finalist_folds=11: expected 0"),
    ({"finalist_folds": 3}, r"finalist_folds=3 with no finalists: expected finalists >= 1"),
])
def test_finalist_folds_are_checked(options: dict, message: str) -> None:
    for config in (RandomConfig, TPEConfig, EvolutionConfig):
        with pytest.raises(NasmercError, match=message):
            config(**options)


def test_finalist_folds_beyond_the_data_are_refused_before_the_run(dataset) -> None:
    """More folds than training and validation conversations: refused by ``check_data``, which the
    workflow asks before the run folder exists."""
    small = type(dataset)(dataset.name, dataset.signature, {"train": dataset.splits["train"][:3],
                                                             "valid": dataset.splits["valid"][:1],
                                                             "test": dataset.splits["test"]})
    with pytest.raises(NasmercError, match="strategy 'random': finalist_folds: 5 folds over 4 training and "
                                           "validation conversations: expected 2 to 4 folds"):
        RandomSearch(RandomConfig(trials=2, finalists=1, finalist_folds=5)).check_data(small)
    RandomSearch(RandomConfig(trials=2, finalists=1, finalist_folds=4)).check_data(small)


def test_parsimony_keeps_the_smallest_model_within_the_tolerance() -> None:
    """``parsimonious``: of the eligible trials within ``tolerance`` of the best, the fewest parameters
    win (then the better value); a pruned or diverged trial never does; a lower-is-better metric
    counts the tolerance upwards; with finalists, their final values are the pool."""
    from types import SimpleNamespace
    from nasmerc.nas.selection import parsimonious

    def trial(n, value, parameters, **extra):
        return {"trial": n, "arch": {"a": n}, "value": value, "parameters": parameters, "metrics": {"m": value}, **extra}

    trials = [trial(1, 0.70, 900), trial(2, 0.69, 300), trial(3, 0.68, 100), trial(4, 0.695, 50, pruned=True),
              trial(5, 0.60, 10), trial(6, 0.69, 300)]
    result = SearchResult(arch={"a": 1}, metric="waf", best_value=0.70, best_epoch=1, supernet_parameters=0,
                          derived_parameters=900, extra={"trials": trials, "best_trial": 1, "valid": {"m": 0.70}})
    ctx = SimpleNamespace(evaluator=SimpleNamespace(higher_is_better=True))
    kept = parsimonious(result, ctx, 0.015)
    assert kept.arch == {"a": 2} and kept.best_value == 0.69 and kept.derived_parameters == 300
    assert kept.extra["parsimony"] == {"tolerance": 0.015, "best_by_value": 1, "within": 3, "chosen": 2}
    assert kept.extra["best_trial"] == 2 and kept.extra["valid"] == {"m": 0.69}
    assert parsimonious(result, ctx, 0.025).arch == {"a": 3}
    assert parsimonious(result, ctx, 0.001).arch == {"a": 1}  # only the best is within
    lower = SimpleNamespace(evaluator=SimpleNamespace(higher_is_better=False))
    mae = dataclasses_replace(result, extra={**result.extra, "trials": [trial(1, 0.50, 900), trial(2, 0.52, 100),
                                                                        trial(3, 0.49, 500)]})
    assert parsimonious(mae, lower, 0.02).arch == {"a": 3}   # 0.52 is 0.03 above the best 0.49
    assert parsimonious(mae, lower, 0.03).arch == {"a": 2}
    finals = dataclasses_replace(result, extra={**result.extra, "finalists": [
        {**trial(1, 0.70, 900), "final_value": 0.66}, {**trial(3, 0.68, 100), "final_value": 0.65}]})
    assert parsimonious(finals, ctx, 0.02).arch == {"a": 3} and parsimonious(finals, ctx, 0.005).arch == {"a": 1}


def dataclasses_replace(obj, **changes):
    import dataclasses
    return dataclasses.replace(obj, **changes)


def test_parsimony_runs_in_a_search(space: ToySpace, dataset, tmp_path: Path) -> None:
    """``parsimony`` large enough to hold every trial: the search's result is its smallest trial."""
    train = TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,))
    ctx = SearchContext(space=space, dataset=dataset, train=train, device=torch.device("cpu"), seed=2,
                        events=Events(), run_dir=tmp_path)
    result = RandomSearch(RandomConfig(trials=4, candidate_epochs=1, parsimony=1.0)).search(ctx)
    smallest = min(result.extra["trials"], key=lambda t: (t["parameters"], -t["value"], t["trial"]))
    assert result.arch == smallest["arch"] and result.extra["parsimony"]["within"] == 4
    with pytest.raises(NasmercError, match=r"parsimony=-0.1: expected a finite number >= 0"):
        RandomConfig(parsimony=-0.1)
