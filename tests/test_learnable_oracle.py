"""The learnable ceiling: the generator's family fitted on the training split, then the exact oracle's
forward-backward. It converges to the exact oracle on a large training set, sits between the exact
and the context-free oracle on a small one, and reaches the commands' reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nasmerc.cli import main
from nasmerc.data.conversation import ConversationDataset, speaker_roles
from nasmerc.data.learnable import (LearnableOracle, fit_process, ledoit_wolf, principal_subspace,
                                    process_log_likelihood, transition_terms)
from nasmerc.data.missing import fixed_masks
from nasmerc.data.oracle import SyntheticOracle, _joint_states
from nasmerc.data.synthetic import World, load, make_config

SMALL_DIMS = {"dims.text": 8, "dims.audio": 8, "dims.visual": 8, "latent_dim": 4}
SHORT = {"length_min": 4, "length_max": 10, "length_mean": 6}


@pytest.fixture(scope="module")
def large():
    """iemocap6's process on ~18k training utterances (short conversations, small dims: fast)."""
    ds = load("iemocap6", {"n_train": 3000, "n_valid": 1, "n_test": 100, **SHORT, **SMALL_DIMS})
    return ds, LearnableOracle.fit(ds)


def mean_abs_posterior_gap(a: SyntheticOracle, b: SyntheticOracle, convs, rate: float) -> float:
    masks = fixed_masks(convs, 3, rate, 0)
    return float(np.mean(np.concatenate([np.abs(a.posterior(c, m) - b.posterior(c, m)).ravel()
                                         for c, m in zip(convs, masks)])))


def test_converges_to_the_exact_oracle_on_a_large_training_set(large):
    ds, learnable = large
    test = ds.split("test")
    exact = ds.oracle.evaluate(test, [0.0, 0.5], seed=0)["full"]
    fitted = learnable.evaluate(test, [0.0, 0.5], seed=0)["full"]
    for rate in (0.0, 0.5):
        assert fitted[rate]["waf"] == pytest.approx(exact[rate]["waf"], abs=0.015)
        assert fitted[rate]["acc"] == pytest.approx(exact[rate]["acc"], abs=0.015)
    assert mean_abs_posterior_gap(ds.oracle, learnable, test, 0.0) < 0.01
    # ... and the gap is a finite-sample one: a hundred times fewer conversations, a wider gap.
    few = load("iemocap6", {"n_train": 30, "n_valid": 1, "n_test": 100, **SHORT, **SMALL_DIMS})
    assert mean_abs_posterior_gap(few.oracle, LearnableOracle.fit(few), few.split("test"), 0.0) > \
        3 * mean_abs_posterior_gap(ds.oracle, learnable, test, 0.0)


def test_estimated_process_is_close_to_the_true_one(large):
    ds, learnable = large
    cfg = ds.oracle.cfg
    assert learnable.params.inertia == pytest.approx(cfg.inertia, abs=0.025)
    assert learnable.params.contagion == pytest.approx(cfg.contagion, abs=0.025)
    np.testing.assert_allclose(learnable.params.prior, cfg.prior, atol=0.02)  # 3000 correlated sequences
    assert learnable.cfg.inertia == learnable.params.inertia and learnable.cfg.prior == pytest.approx(
        learnable.params.prior)
    # the chain process (MELD: up to six speakers)
    meld = load("meld", {"n_train": 2500, "n_valid": 1, "n_test": 1, "dims.text": 4, "dims.audio": 4,
                         "dims.visual": 4, "latent_dim": 2})
    fitted = LearnableOracle.fit(meld).params
    assert fitted.inertia == pytest.approx(0.45, abs=0.025) and fitted.contagion == pytest.approx(0.25, abs=0.025)


def test_small_training_set_is_below_the_exact_and_above_the_context_free_oracle():
    ds = load("iemocap6", {"n_train": 12, "dims.visual": 64})
    test = ds.split("test")
    exact = ds.oracle.evaluate(test, [0.0], seed=0)
    fitted = LearnableOracle.fit(ds).evaluate(test, [0.0], seed=0)["full"][0.0]
    assert fitted["waf"] <= exact["full"][0.0]["waf"] + 0.01
    assert fitted["waf"] > exact["context_free"][0.0]["waf"] + 0.05


@pytest.mark.parametrize("process, n_ids", [("joint", 2), ("joint", 3), ("chain", 3)])
def test_label_likelihood_equals_the_process_forward_pass(process, n_ids):
    """``log pi[y_0] + sum_t log p_t`` is the labels' probability summed over the hidden joint states."""
    cfg = make_config("iemocap6", {"classes": "a,b,c", "class_prior": "1,2,3", "process": process,
                                   "n_speaker_ids": n_ids, "speakers_max": n_ids, "speakers_min": 1})
    rng = np.random.default_rng(n_ids)
    speakers = [rng.integers(0, n_ids, 9) for _ in range(3)]
    labels = [rng.integers(0, 3, 9) for _ in range(3)]
    terms, counts = transition_terms(labels, speakers, cfg.prior, process)
    for i, c in ((0.5, 0.3), (0.1, 0.7), (0.0, 0.0)):
        oracle = SyntheticOracle(replace(cfg, inertia=i, contagion=c), World.draw(cfg))
        total = 0.0
        for spk, y in zip(speakers, labels):
            roles = speaker_roles(spk)
            if process == "chain":
                alpha = cfg.prior * (np.arange(3) == y[0])
                for t in range(1, len(y)):
                    alpha = (alpha @ oracle._chain_transition(bool(roles[t] == roles[t - 1]))) * (np.arange(3) == y[t])
            else:
                n_roles = int(roles.max()) + 1
                states = _joint_states(3, n_roles)
                alpha = np.prod(cfg.prior[states], axis=1) * (states[:, roles[0]] == y[0])
                for t in range(1, len(y)):
                    alpha = (alpha @ oracle._joint_transition(n_roles, int(roles[t]), int(roles[t - 1]))
                             ) * (states[:, roles[t]] == y[t])
            total += np.log(alpha.sum())
        first = sum(np.log(cfg.prior[y[0]]) for y in labels)
        assert first + float(process_log_likelihood(i, c, terms, counts)) == pytest.approx(total, abs=1e-9)


def test_fit_process_finds_the_maximum_and_monologues_give_contagion_zero():
    rng = np.random.default_rng(0)
    terms = np.column_stack([rng.integers(0, 2, 8), rng.integers(0, 2, 8), rng.uniform(0.1, 0.5, 8)])
    counts = rng.integers(1, 50, 8).astype(float)
    i, c = fit_process(terms, counts)
    gi, gc = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 201), indexing="ij")
    ok = gi + gc <= 1
    assert process_log_likelihood(i, c, terms, counts) >= process_log_likelihood(gi[ok], gc[ok], terms, counts).max()
    same = terms.copy()
    same[:, 1] = same[:, 0]
    assert fit_process(same, counts)[1] == 0.0


def test_principal_subspace_is_the_same_from_the_gram_matrix():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3)) @ rng.normal(size=(3, 30)) * 3 + 0.1 * rng.normal(size=(12, 30))
    wide = principal_subspace(x, 3)                      # 12 rows < 30 dims: the [12, 12] Gram matrix
    tall = principal_subspace(np.vstack([x, np.zeros((20, 30))]), 3)   # 32 rows: the [30, 30] second moment
    np.testing.assert_allclose(wide.T @ wide, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(wide @ wide.T, tall @ tall.T, atol=1e-9)


def test_ledoit_wolf_matches_scikit_learn():
    covariance = pytest.importorskip("sklearn.covariance")
    x = np.random.default_rng(1).normal(size=(40, 6)) * np.arange(1, 7)
    ours, shrink = ledoit_wolf(x)
    want, want_shrink = covariance.ledoit_wolf(x, assume_centered=True)
    np.testing.assert_allclose(ours, want, rtol=1e-10)
    assert shrink == pytest.approx(want_shrink)


def test_fit_reads_only_the_training_split_and_the_family():
    ds = load("iemocap6", {"n_train": 6, "n_valid": 2, "n_test": 3, **SHORT, **SMALL_DIMS})
    cfg = ds.oracle.cfg
    lying = replace(cfg, inertia=0.1, contagion=0.0, class_prior=(1, 1, 1, 1, 1, 1), speaker_effect=3.0,
                    feature_noise=0.9, snr={m: 5.0 for m in cfg.modalities}, seed=7)
    other = load("iemocap6", {"n_train": 6, "n_valid": 2, "n_test": 3, **SHORT, **SMALL_DIMS, "seed": 1})
    swapped = ConversationDataset(ds.name, ds.signature, {"train": ds.split("train"), "valid": other.split("valid"),
                                                          "test": other.split("test")}, ds.config,
                                  SyntheticOracle(lying, World.draw(lying)))
    a, b = LearnableOracle.fit(ds), LearnableOracle.fit(swapped)
    assert (a.params.inertia, a.params.contagion) == (b.params.inertia, b.params.contagion)
    np.testing.assert_array_equal(a.params.prior, b.params.prior)
    for m in cfg.modalities:
        for part in ("projections", "means", "speakers"):
            np.testing.assert_array_equal(getattr(a.world, part)[m], getattr(b.world, part)[m])
    conv = ds.split("test")[0]
    np.testing.assert_array_equal(a.posterior(conv), b.posterior(conv))


def test_data_command_prints_the_learnable_column(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "report.json"
    assert main(["data", "iemocap6", "--set", "n_train=40", "--set", "n_valid=1", "--set", "n_test=3",
                 "--set", "length_max=15", "--set", "length_min=5", "--set", "length_mean=8",
                 "--set", "dims.visual=16", "--oracle", "--rates", "0,0.5", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "learnable waf" in text and "learnable acc" in text and "oracle waf" in text
    assert "parameters estimated from the training split (40 conversations" in text and "% of the oracle" in text
    oracle = json.loads(out_json.read_text())["oracle"]
    assert set(oracle["learnable"]) == {"0.0", "0.5"} and 0 <= oracle["learnable"]["0.0"]["waf"] <= 1
    assert "waf" in oracle["auilc"]["learnable"] and oracle["learnable_fit"]["conversations"] == 40
    assert set(oracle["full"]) == set(oracle["context_free"]) == {"0.0", "0.5"}


def test_data_command_regression_columns(capsys) -> None:
    assert main(["data", "mosi", "--set", "n_train=6", "--set", "n_valid=1", "--set", "n_test=2",
                 "--oracle", "--rates", "0"]) == 0
    text = capsys.readouterr().out
    assert "learnable mae" in text and "learnable acc2_non0" in text and "contagion 0.000" in text


@pytest.mark.usefixtures("one_thread")
def test_evaluate_reports_the_learnable_ceiling(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", "early_fusion", "--epochs", "1", "--no-dashboard", "--out", str(out),
                 "--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
                 "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
                 "--set", "data.dims.visual=16", "--set", "hidden_dim=8", "--set", "rnn_dim=8",
                 "--set", "train.batch_size=4", "--set", "train.valid_rates=0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--rates", "0,0.5"]) == 0
    text = capsys.readouterr().out
    assert "learnable waf" in text and "share of the learnable ceiling" in text and "share of the oracle" in text
    report = json.loads((out / "evaluation-rates-0-0.5.json").read_text())
    assert set(report["learnable_oracle_metrics"]) == {"0.0", "0.5"} and "waf" in report["learnable_oracle_auilc"]
    mean_model = sum(report["model_metrics"][r]["waf"] for r in ("0.0", "0.5")) / 2
    mean_learnable = sum(report["learnable_oracle_metrics"][r]["waf"] for r in ("0.0", "0.5")) / 2
    assert report["share_of_learnable"] == pytest.approx(mean_model / mean_learnable)
    # fitted on the training split, deterministically: the same as fitting the run's data here
    data = load("iemocap6", {"n_train": 6, "n_valid": 2, "n_test": 3, "length_max": 10, "length_min": 3,
                             "length_mean": 6, "dims.visual": 16})
    again = LearnableOracle.fit(data).evaluate(data.split("test"), [0.0, 0.5], seed=0)["full"]
    assert report["learnable_oracle_metrics"]["0.5"] == pytest.approx(again[0.5])
