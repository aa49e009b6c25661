"""HAEMSA's evolution of weights (``strategy.weights=evolve``): the operators against eqs. 9-10 on tiny
tensors, the fitness against eq. 8, offspring starting from their parents' weights, and whole searches
(seeded twice, killed and resumed) on the toy space of ``test_population`` and on ``haemsa``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import benchmark_module
from nasmerc.cli import main
from nasmerc.data.batch import iterate_batches
from nasmerc.nas.evaluator import CANDIDATES_FILE, CandidateCache, CandidateRequest, CandidateResult
from nasmerc.nas.population import blend_weights, inherit_weights, perturb_weights
from nasmerc.train.losses import select_real
from strategies.evolution import Evolution, EvolutionConfig, EvolutionProposer, individual_class
from test_population import ToySpace, context, dataset, space  # noqa: F401 (the shared fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

kill_resume = benchmark_module("kill_resume", "kill_resume_weights")

FIXED = {"width": 8}


# -- the operators -------------------------------------------------------------------------------------
def test_blend_is_eq_9() -> None:
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([1.0, -1.0]), "n": torch.tensor(3),
         "only_a": torch.tensor([5.0]), "shape": torch.zeros(2)}
    b = {"w": torch.tensor([[-1.0, 0.0], [1.0, 8.0]]), "b": torch.tensor([3.0, 1.0]), "n": torch.tensor(7),
         "shape": torch.ones(3)}
    out = blend_weights(a, b, 0.25)
    assert torch.allclose(out["w"], torch.tensor([[-0.5, 0.5], [1.5, 7.0]]))  # 0.25 a + 0.75 b
    assert torch.allclose(out["b"], 0.25 * a["b"] + 0.75 * b["b"])
    assert out["n"].item() == 3 and out["only_a"].item() == 5.0 and torch.equal(out["shape"], a["shape"])
    assert torch.allclose(blend_weights(a, b, 1.0)["w"], a["w"]) and torch.allclose(blend_weights(a, b, 0.0)["w"], b["w"])
    only_w = blend_weights(a, b, 0.5, names=["w"])
    assert torch.equal(only_w["b"], a["b"]) and torch.allclose(only_w["w"], (a["w"] + b["w"]) / 2)
    out["w"][0, 0] = 99.0
    assert a["w"][0, 0] == 1.0  # new tensors, parents untouched


def test_perturbation_is_eq_10() -> None:
    w = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4), "steps": torch.tensor(2), "buf": torch.zeros(2)}
    out = perturb_weights(w, ["w", "b", "steps"], sigma=0.5, prob=1.0, generator=torch.Generator().manual_seed(3))
    twin = torch.Generator().manual_seed(3)  # per tensor, in order: the mask's uniforms, then the noise
    for name in ("w", "b"):
        torch.rand(w[name].shape, generator=twin)
        assert torch.allclose(out[name] - w[name], 0.5 * torch.randn(w[name].shape, generator=twin))
    assert out["steps"].item() == 2 and torch.equal(out["buf"], w["buf"])  # integers and unnamed tensors kept
    big = {"w": torch.zeros(200_000)}
    noise = perturb_weights(big, ["w"], 0.1, 1.0, torch.Generator().manual_seed(0))["w"]
    assert abs(noise.mean().item()) < 1e-3 and abs(noise.std().item() - 0.1) < 1e-3  # N(0, sigma)
    sparse = perturb_weights(big, ["w"], 0.1, 0.3, torch.Generator().manual_seed(0))["w"]
    assert abs((sparse != 0).float().mean().item() - 0.3) < 0.01  # each weight with probability prob
    assert torch.equal(perturb_weights(big, ["w"], 0.0, 1.0, torch.Generator())["w"], big["w"])


def test_parents_of_different_architectures() -> None:
    fresh = {"shared": torch.zeros(2), "reshaped": torch.zeros(3), "fitter_only": torch.zeros(1),
             "other_only": torch.zeros(1), "new": torch.full((2,), 7.0), "buffer": torch.zeros(2)}
    names = ["shared", "reshaped", "fitter_only", "other_only", "new"]
    fitter = {"shared": torch.tensor([1.0, 2.0]), "reshaped": torch.ones(4), "fitter_only": torch.tensor([4.0]),
              "buffer": torch.tensor([5.0, 5.0])}
    other = {"shared": torch.tensor([3.0, 6.0]), "reshaped": torch.full((3,), 2.0), "other_only": torch.tensor([9.0]),
             "buffer": torch.tensor([1.0, 1.0])}
    out = inherit_weights(fresh, names, fitter, other, alpha=0.25, fitter_is_i=True)
    assert torch.allclose(out["shared"], 0.25 * fitter["shared"] + 0.75 * other["shared"])  # eq. 9 where both hold it
    assert torch.equal(out["reshaped"], other["reshaped"])  # the fitter's has another shape
    assert out["fitter_only"].item() == 4.0 and out["other_only"].item() == 9.0
    assert torch.equal(out["new"], fresh["new"]) and torch.equal(out["buffer"], fitter["buffer"])
    flipped = inherit_weights(fresh, names, fitter, other, alpha=0.25, fitter_is_i=False)
    assert torch.allclose(flipped["shared"], 0.25 * other["shared"] + 0.75 * fitter["shared"])
    alone = inherit_weights(fresh, names, fitter)
    assert torch.equal(alone["shared"], fitter["shared"]) and torch.equal(alone["reshaped"], fresh["reshaped"])


def test_the_candidate_cache_keeps_weights_for_an_exact_replay(tmp_path: Path) -> None:
    arch = {"width": 8, "op": "relu", "pick": [0, 1], "p": 0.0}
    plain = CandidateRequest(arch, 2, 5)
    assert CandidateCache.key(plain) == json.dumps({"arch": arch, "epochs": 2, "seed": 5}, sort_keys=True)  # as before
    init = {"w": torch.tensor([1.0, 2.0])}
    request = CandidateRequest(arch, 1, 5, init=init, keep=True)
    other = CandidateRequest(arch, 1, 5, init={"w": torch.tensor([1.0, 2.5])}, keep=True)
    assert len({CandidateCache.key(plain), CandidateCache.key(request), CandidateCache.key(other)}) == 3
    cache = CandidateCache(tmp_path / CANDIDATES_FILE)
    cache.put(request, CandidateResult(0.5, {"loss": 1.2}, 3, 0.1, [0.5], state={"w": torch.tensor([0.0, 3.0])}))
    line = json.loads((tmp_path / CANDIDATES_FILE).read_text())
    assert "state" not in line["result"] and len(list((tmp_path / "weights").glob("*.pt"))) == 1
    again = CandidateCache(tmp_path / CANDIDATES_FILE).get(request)  # a resumed run's cache
    assert again.value == 0.5 and torch.equal(again.state["w"], torch.tensor([0.0, 3.0]))
    assert CandidateCache(tmp_path / CANDIDATES_FILE).get(other) is None
    next((tmp_path / "weights").glob("*.pt")).unlink()
    assert CandidateCache(tmp_path / CANDIDATES_FILE).get(request) is None  # without its weights it trains again


# -- in the evolution ----------------------------------------------------------------------------------
def test_offspring_start_from_their_parents_weights(space: ToySpace, dataset, tmp_path: Path) -> None:
    cfg = EvolutionConfig(population=4, generations=2, weights="evolve", cx_prob=1.0, mut_prob=0.0, weight_epochs=0,
                          warm_start=False)
    ctx, _ = context(space, dataset, tmp_path, fixed=FIXED)
    proposer = EvolutionProposer(ctx, cfg)
    first = proposer.ask(1)
    assert all(p.init is None and p.keep and p.epochs is None for p in first)  # generation 1 trains from scratch
    results = ctx.evaluator.score_all([CandidateRequest(p.arch, cfg.candidate_epochs, ctx.seed + p.index, keep=True)
                                       for p in first])
    for k, (p, r) in enumerate(zip(first, results)):
        proposer.tell(p, r, k + 1)
    assert all(set(p.ref.weights) == set(space.build(p.arch).state_dict()) for p in first)
    second = proposer.ask(1)
    assert len(second) == 4 and all(p.epochs == 0 and p.index == 4 + k for k, p in enumerate(second))
    blended = 0
    for p in second:
        parents = p.ref.parents
        own, other, alpha = parents["own"], parents["other"], parents["alpha"]
        fitter, second_parent = (own, other) if parents["own_fitter"] else (other, own)
        fresh = ctx.evaluator.build(p.arch, seed=ctx.seed + p.index).state_dict()
        for name, tensor in p.init.items():
            has = [w for w in (fitter, second_parent) if name in w and w[name].shape == tensor.shape]
            if len(has) == 2:
                assert torch.allclose(tensor, alpha * own[name] + (1 - alpha) * other[name]), name  # eq. 9
                blended += 1
            else:  # from the fitter parent, else the other, else the fresh initialisation
                assert torch.equal(tensor, has[0][name] if has else fresh[name]), name
    assert blended and 0 < alpha < 1
    scored = ctx.evaluator.score_all([CandidateRequest(p.arch, 0, ctx.seed + p.index, init=p.init, keep=True)
                                      for p in second])
    for p, r in zip(second, scored):
        assert all(torch.equal(r.state[k], v) for k, v in p.init.items())  # no training: scored as evolved


def _mean_validation_loss(model: torch.nn.Module, dataset) -> float:
    """HAEMSA eq. 8 by hand: the mean cross-entropy over every real validation utterance."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for _, batch in iterate_batches(dataset.split("valid"), dataset.signature, 16):
            rows, target = select_real(model(batch).logits, batch)
            logits.append(rows)
            labels.append(target)
    return float(F.cross_entropy(torch.cat(logits), torch.cat(labels)))


def test_the_fitness_is_eq_8_and_the_result_carries_its_weights(space: ToySpace, dataset, tmp_path: Path) -> None:
    cfg = EvolutionConfig(population=4, generations=2, weights="evolve", candidate_epochs=1)
    assert cfg.fitness_kind == "loss" and EvolutionConfig().fitness_kind == "metric"
    ctx, sink = context(space, dataset, tmp_path, fixed=FIXED)
    result = Evolution(cfg).search(ctx)
    assert result.extra["fitness"] == "loss" and result.model is not None
    best = result.extra["trials"][result.extra["best_trial"] - 1]
    assert result.extra["best_fitness"] == pytest.approx(best["metrics"]["loss"])
    assert result.extra["best_fitness"] == pytest.approx(_mean_validation_loss(result.model, dataset), abs=1e-5)
    assert result.extra["best_fitness"] == min(t["metrics"]["loss"] for t in result.extra["trials"])  # lower is fitter
    generations = [e for e in sink.events if e["type"] == "generation"]
    assert len(generations) == 2 and all(e["fitness"] == "loss" for e in generations)
    Individual = individual_class(False)
    low, high = Individual([0]), Individual([1])
    low.fitness.values, high.fitness.values = (0.5,), (0.9,)
    assert low.fitness > high.fitness


def test_seeded_weight_evolutions_are_identical(space: ToySpace, dataset, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ctx, _ = context(space, dataset, tmp_path / name, fixed=FIXED)
        runs.append(Evolution(EvolutionConfig(population=4, generations=3, weights="evolve", candidate_epochs=1,
                                              weight_sigma=0.05)).search(ctx))
    a, b = runs
    assert [(t["arch"], t["value"]) for t in a.extra["trials"]] == [(t["arch"], t["value"]) for t in b.extra["trials"]]
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert len(a.extra["trials"]) == 12  # with weight mutation every offspring is evaluated again
    assert len(list((tmp_path / "a" / "weights").glob("*.pt"))) == 12


def test_a_killed_weight_evolution_resumes_to_the_same_result(tmp_path: Path) -> None:
    """``model.pt`` (the evolved weights) and everything else are those of the run never stopped."""
    kill_resume.CASES["evolve"] = [*kill_resume.CASES["evolution"], "--set", "strategy.weights=evolve",
                                   "--set", "strategy.finalists=0", "--set", "strategy.weight_epochs=1"]
    want, n_events = kill_resume.reference("evolve", tmp_path)
    assert "model.pt" in want
    kinds = [e["type"] for e in want["events"]]
    row = kill_resume.kill_and_resume("evolve", tmp_path, kinds.index("generation") + 2, want)  # in generation 2
    assert not row["finished_before_kill"], row
    assert row["same"], row


def test_bad_weight_options_exit_2(tmp_path: Path, capsys) -> None:
    cases = [("weights=mutate", "weights='mutate': expected one of 'scratch', 'evolve'"),
             ("weight_sigma=-1", "weight_sigma=-1.0: expected a finite number >= 0"),
             ("weight_epochs=-1", "weight_epochs=-1: expected an integer >= 0"),
             ("fitness=size", "fitness='size': expected one of 'auto', 'metric', 'loss'")]
    for setting, needle in cases:
        out = tmp_path / setting
        assert main(["search", "--no-dashboard", "--out", str(out), *kill_resume.CASES["evolution"], *kill_resume.DATA,
                     "--set", f"strategy.{setting}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err and not out.exists(), err
    out = tmp_path / "both"
    assert main(["search", "--no-dashboard", "--out", str(out), *kill_resume.CASES["evolution"], *kill_resume.DATA,
                 "--set", "strategy.weights=evolve", "--set", "strategy.evaluation=oneshot"]) == 2
    assert "weights='evolve' with evaluation='oneshot'" in capsys.readouterr().err and not out.exists()
