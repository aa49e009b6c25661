"""The exact oracle against brute-force enumeration, and its behaviour across missing rates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nasmerc.data.conversation import Conversation
from nasmerc.data.synthetic import World, load, make_config
from nasmerc.data.oracle import SyntheticOracle

TINY3 = {"classes": "a,b,c", "class_prior": "1,2,3", "dims.text": 5, "dims.audio": 4, "dims.visual": 3,
         "latent_dim": 3, "n_train": 2, "n_valid": 1, "n_test": 1, "inertia": "0.5", "contagion": "0.3",
         "length_min": 1}


def brute_force(oracle: SyntheticOracle, conv: Conversation, present: np.ndarray) -> np.ndarray:
    """Posterior of every label by enumerating every hidden path with the process's own rules."""
    cfg, prior = oracle.cfg, oracle.cfg.prior
    i, c = cfg.inertia, cfg.contagion
    r = 1 - i - c
    ll = oracle.log_likelihood(conv, present)
    lik = np.exp(ll - ll.max())
    order: dict[int, int] = {}
    roles = [order.setdefault(int(s), len(order)) for s in conv.speakers]
    n, k = len(conv), cfg.n_levels
    post = np.zeros((n, k))
    if cfg.process == "joint":
        n_roles = max(roles) + 1
        states = list(itertools.product(range(k), repeat=n_roles))
        for path in itertools.product(states, repeat=n):
            p = np.prod([prior[e] for e in path[0]]) * lik[0, path[0][roles[0]]]
            for t in range(1, n):
                s, prev = roles[t], roles[t - 1]
                if any(path[t][j] != path[t - 1][j] for j in range(n_roles) if j != s):
                    p = 0.0
                    break
                new = path[t][s]
                p *= (i * (new == path[t - 1][s]) + c * (new == path[t - 1][prev]) + r * prior[new]) * lik[t, new]
            for t in range(n):
                post[t, path[t][roles[t]]] += p
    else:
        for path in itertools.product(range(k), repeat=n):
            p = prior[path[0]] * lik[0, path[0]]
            for t in range(1, n):
                stay = i + c if roles[t] == roles[t - 1] else c
                p *= (stay * (path[t] == path[t - 1]) + (1 - stay) * prior[path[t]]) * lik[t, path[t]]
            for t in range(n):
                post[t, path[t]] += p
    return post / post.sum(axis=1, keepdims=True)


def tiny_conversation(cfg, speakers, seed):
    world = World.draw(cfg)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg.n_levels, size=len(speakers))
    feats = {m: (world.means[m][labels] + world.speakers[m][speakers]) @ world.projections[m].T
             + rng.normal(size=(len(speakers), cfg.dims[m])) for m in cfg.modalities}
    return Conversation("tiny", {m: x.astype(np.float32) for m, x in feats.items()},
                        np.asarray(speakers), labels), world


@pytest.mark.parametrize("process, n_ids, speakers", [
    ("joint", 2, [0, 1, 1, 0]),
    ("joint", 3, [2, 0, 1, 0]),
    ("chain", 3, [0, 1, 1, 2, 0]),
    ("chain", 2, [1, 1, 1]),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_backward_equals_enumeration(process, n_ids, speakers, seed):
    cfg = make_config("iemocap6", {**TINY3, "process": process, "n_speaker_ids": n_ids,
                                   "speakers_max": n_ids, "speakers_min": 1})
    conv, world = tiny_conversation(cfg, speakers, seed)
    oracle = SyntheticOracle(cfg, world)
    rng = np.random.default_rng(seed + 10)
    present = rng.random((len(conv), 3)) < 0.6
    present[np.arange(len(conv)), rng.integers(0, 3, len(conv))] = True
    for pres in (None, present):
        pres_arr = np.ones((len(conv), 3), bool) if pres is None else pres
        np.testing.assert_allclose(oracle.posterior(conv, pres), brute_force(oracle, conv, pres_arr), atol=1e-10)


def test_log_likelihood_is_the_gaussian_density_up_to_a_constant():
    cfg = make_config("iemocap6", TINY3)
    conv, world = tiny_conversation(cfg, [0, 1, 0], 3)
    oracle = SyntheticOracle(cfg, world)
    ll = oracle.log_likelihood(conv)
    direct = np.zeros_like(ll)
    f2 = cfg.feature_noise ** 2
    for m in cfg.modalities:
        w = world.projections[m]
        # covariance (1 - f^2) W W^T + f^2 I, whose inverse is W W^T + (I - W W^T) / f^2
        precision = w @ w.T + (np.eye(w.shape[0]) - w @ w.T) / f2
        for t in range(len(conv)):
            for y in range(cfg.n_levels):
                diff = conv.features[m][t] - w @ (world.means[m][y] + world.speakers[m][conv.speakers[t]])
                direct[t, y] += -0.5 * diff @ precision @ diff
    np.testing.assert_allclose(ll - ll[:, :1], direct - direct[:, :1], atol=1e-4)


def test_nothing_observed_gives_the_prior_and_missing_modalities_add_nothing():
    cfg = make_config("iemocap6", TINY3)
    conv, world = tiny_conversation(cfg, [0, 1, 0, 1], 4)
    oracle = SyntheticOracle(cfg, world)
    none = np.zeros((len(conv), 3), bool)
    np.testing.assert_allclose(oracle.posterior(conv, none), np.tile(cfg.prior, (len(conv), 1)), atol=1e-12)
    np.testing.assert_allclose(oracle.posterior_context_free(conv, none), np.tile(cfg.prior, (len(conv), 1)))
    only_text = np.zeros((len(conv), 3), bool)
    only_text[:, 0] = True
    feats = dict(conv.features)
    feats["audio"] = feats["audio"] + 100.0
    moved = Conversation(conv.id, feats, conv.speakers, conv.labels)
    np.testing.assert_allclose(oracle.posterior(conv, only_text), oracle.posterior(moved, only_text))


def test_oracle_falls_with_missing_rate_and_context_helps():
    ds = load("iemocap6")
    result = ds.oracle.evaluate(ds.splits["test"], [0.0, 0.3, 0.7], seed=0)
    full = [result["full"][r]["waf"] for r in (0.0, 0.3, 0.7)]
    free = [result["context_free"][r]["waf"] for r in (0.0, 0.3, 0.7)]
    assert full[0] > full[1] > full[2]
    assert all(f > c for f, c in zip(full, free))
    assert full[0] - free[0] >= 0.05


def test_regression_oracle_reports_every_metric(tiny_regression):
    result = tiny_regression.oracle.evaluate(tiny_regression.splits["test"], [0.0], seed=0)
    m = result["full"][0.0]
    assert set(m) == {"mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"}
    assert 0 <= m["mae"] <= 6 and -1 <= m["corr"] <= 1
