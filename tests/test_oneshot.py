"""Single-path one-shot evaluation (``strategy.evaluation=oneshot``, ``nasmerc.nas.oneshot``).

The toy space of ``test_population`` (``width`` value, ``op`` op, ``pick`` 2-of-4 input, ``p`` float
choice) with ``width`` fixed: ``p`` (a dropout rate) shares the supernet's weights, ``width`` would
not. End-to-end searches run the command line on tiny ``rmnas`` and ``merc`` spaces.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import benchmark_module
from nasmerc.cli import main
from nasmerc.data.batch import iterate_batches
from nasmerc.errors import NasmercError
from nasmerc.events import read_events
from nasmerc.nas.evaluator import CandidateRequest, Evaluator
from nasmerc.nas.oneshot import ONESHOT_FINALISTS, OneShot, finalists_of, shared_values, supernet_epochs, train_supernet
from nasmerc.outputs import count_parameters
from nasmerc.train.trainer import Trainer
from strategies.evolution import Evolution, EvolutionConfig
from strategies.random import RandomConfig, RandomSearch
from strategies.tpe import TPE, TPEConfig
from test_population import TRAIN, ToySpace, context, dataset, space  # noqa: F401 (the shared fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

kill_resume = benchmark_module("kill_resume", "kill_resume_oneshot")

FIXED = {"width": 8}
ONESHOT = ["--set", "strategy.evaluation=oneshot", "--set", "strategy.oneshot_epochs=2",
           "--set", "strategy.finalists=1", "--epochs", "1"]
MERC = ["--space", "merc", "--set", "hidden_dim=16", "--fix", "speaker=none", "--fix", "missing_loss=none"]


def evaluator(space: ToySpace, dataset, run_dir: Path | None = None, seed: int = 0) -> Evaluator:
    return Evaluator(space, dataset, TRAIN, seed=seed, run_dir=run_dir, fixed=FIXED)


# -- the supernet ------------------------------------------------------------------------------------
def test_defaults_of_the_budget() -> None:
    assert finalists_of(RandomConfig()) == 0 and finalists_of(TPEConfig(finalists=2)) == 2
    assert finalists_of(RandomConfig(evaluation="oneshot")) == ONESHOT_FINALISTS == 3
    assert finalists_of(EvolutionConfig(evaluation="oneshot", finalists=0)) == 0
    assert supernet_epochs(RandomConfig(evaluation="oneshot"), TRAIN) == TRAIN.epochs
    assert supernet_epochs(RandomConfig(evaluation="oneshot", oneshot_epochs=5), TRAIN) == 5


def test_value_choices_that_change_shapes_are_refused(space: ToySpace) -> None:
    with pytest.raises(NasmercError, match=r"choice 'width' \(value\) = 8 changes the supernet's weights.*"
                                           r"--fix width=4"):
        shared_values(space, {})
    assert shared_values(space, FIXED) == {"p": 0.0}  # a dropout rate shares every weight


def test_path_sampling_is_uniform_over_candidates(space: ToySpace, dataset) -> None:
    sampler = OneShot(evaluator(space, dataset), 1).sampler
    rng = np.random.default_rng(0)
    n = 3000
    ops, picks, ps = Counter(), Counter(), []
    for _ in range(n):
        arch = sampler.sample(rng)
        assert arch["width"] == 8
        ops[arch["op"]] += 1
        picks[tuple(arch["pick"])] += 1
        ps.append(arch["p"])
    assert set(ops) == {"small", "relu", "skip"} and all(abs(c / n - 1 / 3) < 0.03 for c in ops.values())
    assert len(picks) == 6 and all(abs(c / n - 1 / 6) < 0.025 for c in picks.values())  # every 2-subset of 4
    assert 0.0 <= min(ps) and max(ps) <= 0.5 and abs(np.mean(ps) - 0.25) < 0.01
    assert abs(np.std(ps) - 0.5 / np.sqrt(12)) < 0.01  # uniform on [0, 0.5]


def test_a_weight_step_samples_a_path_and_trains_only_it(space: ToySpace, dataset) -> None:
    oneshot = OneShot(evaluator(space, dataset), 1)
    supernet, sampler = oneshot.supernet, oneshot.sampler
    trainer = Trainer(supernet, dataset.signature, TRAIN)
    twin = np.random.default_rng(0)
    twin.bit_generator.state = sampler.rng.bit_generator.state
    _, batch = next(iterate_batches(dataset.split("train"), dataset.signature, 4))
    sampler.before_step(trainer, batch, 0, 0)
    assert supernet.path == sampler.sample(twin)  # the path of the step is the sampler's next draw
    supernet.use({"width": 8, "op": "relu", "pick": [0, 1], "p": 0.0})
    supernet.train()
    trainer.loss(batch)[0].backward()
    net = supernet.net
    assert net.op.candidates["small"].weight.grad is None  # not on the path
    assert net.stems["visual"].weight.grad is None  # input 2 (visual) and 3 (their mean) not picked
    assert net.stems["text"].weight.grad is not None and net.head.weight.grad is not None


def test_shared_values_run_on_the_supernets_weights(space: ToySpace, dataset) -> None:
    supernet = OneShot(evaluator(space, dataset), 1).supernet
    _, batch = next(iterate_batches(dataset.split("valid"), dataset.signature, 4))
    arch = {"width": 8, "op": "small", "pick": [1, 3], "p": 0.0}
    supernet.eval()
    supernet.use(arch)
    base = supernet(batch).logits
    supernet.use({**arch, "p": 0.4})
    variant = supernet._current
    assert variant is not supernet.net and variant.drop.p == 0.4 and supernet.net.drop.p == 0.0
    assert variant.head.weight is supernet.net.head.weight
    assert variant.op.candidates["small"].bias is supernet.net.op.candidates["small"].bias
    assert torch.equal(supernet(batch).logits, base)  # dropout is off in evaluation: the same weights
    supernet.train()
    torch.manual_seed(0)
    dropped = supernet(batch).logits
    assert not torch.equal(dropped, base)  # p = 0.4 acts in training


def _path_weights(supernet_state: dict, model: torch.nn.Module, arch: dict) -> dict:
    """The supernet's weights of ``arch``'s path, named as the discrete model names them."""
    out = {}
    for key in model.state_dict():
        source = key.replace("op.", f"op.candidates.{arch['op']}.", 1) if key.startswith("op.") else key
        out[key] = supernet_state[f"net.{source}"]
    return out


def test_inherited_scores_equal_a_manual_forward_with_the_same_weights(space: ToySpace, dataset) -> None:
    ev = evaluator(space, dataset)
    oneshot = train_supernet(ev, 2)
    state = {k: v.clone() for k, v in oneshot.supernet.state_dict().items()}
    archs = [{"width": 8, "op": op, "pick": pick, "p": p}
             for op, pick, p in (("small", [0, 1], 0.1), ("relu", [2, 3], 0.4), ("skip", [1, 3], 0.0),
                                 ("small", [0, 3], 0.5))]
    results = ev.score_all([CandidateRequest(a, 0, 7, inherit=True) for a in archs])
    for arch, result in zip(archs, results):
        model = space.build(arch)
        model.load_state_dict(_path_weights(state, model, arch))
        manual = Trainer(model, dataset.signature, TRAIN).validate(dataset.split("valid"))
        assert result.metrics == pytest.approx(manual, abs=1e-6)
        assert result.value == pytest.approx(manual["waf"], abs=1e-6) and result.history == [result.value]
        assert result.parameters == count_parameters(model)
    assert all(torch.equal(v, state[k]) for k, v in oneshot.supernet.state_dict().items())  # nothing trained
    assert len({round(r.metrics["loss"], 6) for r in results}) == len(archs)  # each path is its own model


def test_merc_paths_on_the_supernet_are_the_discrete_models(dataset) -> None:
    """The one-shot mechanics on ``merc`` (PCA encoders fitted on the supernet, CRF structures, the
    early / late streams a supernet always computes, ``unimodal_weight`` as a shared value on a network
    built on the meta device): for sampled paths, the supernet's loss, logits and gradients are those of
    ``space.build(arch)`` holding the supernet's weights of that path, and every gradient lands on a
    parameter the optimiser steps. (A merc supernet that learns slowly under uniform path sampling does
    so because its candidates interfere, not because a path runs other weights than its model's.)"""
    from nasmerc.nas.choices import OpChoice
    from nasmerc.outputs import fit_data_modules
    from search_spaces.merc import MercConfig, MercSpace

    merc = MercSpace(dataset.signature, MercConfig(hidden_dim=16, pca_dim=4))
    ev = Evaluator(merc, dataset, TRAIN, fixed={"speaker": "none", "missing_loss": "none"})
    oneshot = OneShot(ev, 1)
    supernet, sampler = oneshot.supernet, oneshot.sampler
    assert oneshot.values == {"unimodal_weight": 0.0, "lr_scale": 1.0}
    assert fit_data_modules(supernet, dataset.split("train")) == len(dataset.signature.modalities)  # one PCA encoder a modality
    trainer = Trainer(supernet, dataset.signature, TRAIN)
    stepped = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    prefixes = {name: m.label for name, m in supernet.net.named_modules() if isinstance(m, OpChoice)}
    state = supernet.net.state_dict()
    _, batch = next(iterate_batches(dataset.split("train"), dataset.signature, 4))
    rng = np.random.default_rng(0)
    for i in range(8):
        arch = {**sampler.sample(rng), "unimodal_weight": (0.0, 1.0)[i % 2]}
        model = merc.build(arch)
        weights = {}
        for key in model.state_dict():
            prefix = next((p for p in prefixes if key.startswith(p + ".")), None)
            weights[key] = state[key if prefix is None else
                                 f"{prefix}.candidates.{arch[prefixes[prefix]]}{key[len(prefix):]}"]
        model.load_state_dict(weights)
        supernet.use(arch)
        supernet.eval(), model.eval()  # no dropout: the supernet's extra streams draw other masks
        ours, _, out = trainer.loss(batch)
        theirs, _, want = Trainer(model, dataset.signature, TRAIN).loss(batch)
        assert torch.allclose(out.logits, want.logits, atol=1e-5), arch
        assert ours.item() == pytest.approx(theirs.item(), abs=1e-5), arch  # the unimodal terms too
        trainer.optimizer.zero_grad(set_to_none=True)
        ours.backward()
        grads = [p for p in supernet.parameters() if p.grad is not None]
        assert grads and all(id(p) in stepped for p in grads)
        assert sum(p.numel() for p in grads) <= count_parameters(model)  # only the path's weights


def test_inherited_scores_need_a_supernet(space: ToySpace, dataset) -> None:
    with pytest.raises(NasmercError, match="needs a trained supernet"):
        evaluator(space, dataset).score_all([CandidateRequest({"width": 8, "op": "relu", "pick": [0, 1], "p": 0.0},
                                                              0, 0, inherit=True)])


# -- searches ----------------------------------------------------------------------------------------
STRATEGIES = {
    "random": lambda: RandomSearch(RandomConfig(trials=10, evaluation="oneshot", oneshot_epochs=2, finalists=2)),
    "evolution": lambda: Evolution(EvolutionConfig(population=4, generations=2, evaluation="oneshot",
                                                   oneshot_epochs=2, finalists=1)),
    "tpe": lambda: TPE(TPEConfig(trials=6, startup_trials=2, evaluation="oneshot", oneshot_epochs=2, finalists=1)),
}


def _search(name: str, space: ToySpace, dataset, run_dir: Path, seed: int = 0):
    run_dir.mkdir()
    strategy = STRATEGIES[name]()
    strategy.check(space, FIXED)
    ctx, sink = context(space, dataset, run_dir, seed, fixed=FIXED)
    return strategy.search(ctx), sink


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_seeded_oneshot_searches_are_identical(name: str, space: ToySpace, dataset, tmp_path: Path) -> None:
    first, sink = _search(name, space, dataset, tmp_path / "a")
    again, _ = _search(name, space, dataset, tmp_path / "b")
    strip = lambda r: [(t["arch"], t["value"], t["metrics"]) for t in r.extra["trials"]]  # noqa: E731
    assert strip(first) == strip(again) and first.arch == again.arch and first.best_value == again.best_value
    assert [f["final_value"] for f in first.extra["finalists"]] == [f["final_value"] for f in again.extra["finalists"]]
    types = [e["type"] for e in sink.events]
    assert types.count("epoch") == 2 and types.count("supernet") == 1 and types.index("supernet") < types.index("trial")
    trials = [e for e in sink.events if e["type"] == "trial"]
    assert trials and all(e["inherited"] for e in trials)
    assert first.extra["oneshot"]["shared_values"] == ["p"] and first.supernet_parameters > first.derived_parameters
    assert space.canonical(first.arch) == first.arch


def _cli(out: Path, *args: str) -> list[str]:
    return ["search", "--no-dashboard", "--out", str(out), *args, *kill_resume.DATA]


@pytest.mark.parametrize("strategy, extra", [
    ("random", [*kill_resume.RMNAS, "--trials", "8"]),
    ("tpe", [*kill_resume.RMNAS, "--trials", "5", "--set", "strategy.startup_trials=2"]),
    ("evolution", [*MERC, "--population", "4", "--generations", "2"]),
])
def test_a_oneshot_search_runs_end_to_end_and_its_architecture_retrains(strategy: str, extra: list[str],
                                                                         tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(out, *extra, "--strategy", strategy, *ONESHOT)) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["oneshot"]["supernet_epochs"] == 2 and len(summary["finalists"]) == 1
    assert all(t["inherited"] and t["parameters"] > 0 for t in summary["trials"])
    assert summary["arch"] == summary["finalists"][0]["arch"]
    if strategy == "evolution":
        assert summary["oneshot"]["shared_values"] == ["lr_scale", "unimodal_weight"]  # merc's shared value choices
    events = read_events(out / "events.jsonl")
    assert [e["type"] for e in events].count("supernet") == 1
    arch = yaml.safe_load((out / "arch.yaml").read_text())
    assert arch["arch"] == summary["arch"]
    assert main(["retrain", "--no-dashboard", str(out / "arch.yaml"), "--out", str(tmp_path / "re"),
                 "--epochs", "1"]) == 0
    assert (tmp_path / "re" / "model.pt").exists()


def test_a_killed_oneshot_search_resumes_to_the_same_result(tmp_path: Path) -> None:
    """Killed once while the supernet trains and once while candidates are scored."""
    kill_resume.CASES["oneshot"] = [*kill_resume.RMNAS, "--strategy", "random", "--trials", "8",
                                    "--set", "strategy.evaluation=oneshot", "--set", "strategy.oneshot_epochs=3",
                                    "--set", "strategy.finalists=1", "--epochs", "1"]
    want, n_events = kill_resume.reference("oneshot", tmp_path)
    kinds = [e["type"] for e in want["events"]]
    in_training, in_scoring = kinds.index("epoch") + 2, kinds.index("trial") + 4
    for event in (in_training, in_scoring):
        row = kill_resume.kill_and_resume("oneshot", tmp_path, event, want)
        assert not row["finished_before_kill"], row
        assert row["same"], row


BAD = [
    (["--strategy", "random", "--set", "strategy.evaluation=twice"], "evaluation='twice': expected one of"),
    (["--strategy", "tpe", "--set", "strategy.oneshot_epochs=-1"], "oneshot_epochs=-1: expected an integer >= 0"),
    (["--strategy", "evolution", "--set", "strategy.finalists=-2"], "finalists=-2: expected an integer >= 0"),
    (["--strategy", "random", "--set", "strategy.evaluation=oneshot", "--set", "strategy.study=s",
      "--set", "strategy.storage=journal:x.log"], "evaluation='oneshot' with study='s'"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[a[-1] for a, _ in BAD])
def test_bad_oneshot_options_are_one_line_and_no_folder(args: list[str], needle: str, tmp_path: Path,
                                                        capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(out, *kill_resume.RMNAS, *args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasmerc: error: ") and needle in err, err
    assert not out.exists()


def test_a_value_choice_that_changes_shapes_exits_2_naming_the_fix(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(out, "--space", "merc", "--set", "hidden_dim=16", "--strategy", "random", *ONESHOT)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choice 'speaker' (value)" in err and "--fix speaker=none" in err, err
    assert not out.exists()
