"""Tests for nasmerc.metrics: sklearn cross-checks, hand-computed MMSA examples and error cases."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from sklearn import metrics as skm

from nasmerc import metrics as M
from nasmerc.errors import NasmercError


# ---------------------------------------------------------------------------------------------
# classification against sklearn


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Random labels where some classes are missing from y_true, y_pred or both."""
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    n = int(rng.integers(1, 60))
    t = rng.integers(0, n_classes, size=n)
    p = rng.integers(0, n_classes, size=n)
    if n_classes > 2:
        t[t == n_classes - 1] = 0  # last class never true
        p[p == 1] = 2  # class 1 never predicted
    return t, p, n_classes


@pytest.mark.parametrize("seed", range(12))
def test_classification_matches_sklearn(seed: int) -> None:
    t, p, c = _random_case(seed)
    labels = list(range(c))
    assert M.accuracy(t, p, c) == pytest.approx(skm.accuracy_score(t, p))
    np.testing.assert_allclose(
        M.per_class_f1(t, p, c),
        skm.f1_score(t, p, labels=labels, average=None, zero_division=0),
    )
    assert M.macro_f1(t, p, c) == pytest.approx(
        skm.f1_score(t, p, labels=labels, average="macro", zero_division=0)
    )
    assert M.weighted_f1(t, p, c) == pytest.approx(
        skm.f1_score(t, p, average="weighted", zero_division=0)
    )


def test_class_absent_everywhere_gets_zero_f1() -> None:
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    f1 = M.per_class_f1(t, p, 3)
    assert f1[2] == 0.0
    # class 0: tp=1, fp=0, fn=1 -> 2/3; class 1: tp=2, fp=1, fn=0 -> 4/5
    np.testing.assert_allclose(f1, [2 / 3, 4 / 5, 0.0])
    assert M.macro_f1(t, p, 3) == pytest.approx((2 / 3 + 4 / 5) / 3)
    # class 2 has no support, so it has no weight in WAF
    assert M.weighted_f1(t, p, 3) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_classification_metrics_keys_and_values() -> None:
    t = np.array([0, 1, 2, 2, 1])
    p = np.array([0, 2, 2, 2, 1])
    out = M.classification_metrics(t, p, 3, class_names=["neu", "hap", "sad"])
    assert set(out) == {"acc", "waf", "macro_f1", "f1_neu", "f1_hap", "f1_sad"}
    assert out["acc"] == pytest.approx(0.8)
    assert out["f1_hap"] == pytest.approx(skm.f1_score(t, p, labels=[1], average=None)[0])
    assert out["waf"] == pytest.approx(skm.f1_score(t, p, average="weighted"))
    default = M.classification_metrics(t, p, 3)
    assert {"f1_0", "f1_1", "f1_2"} <= set(default)
    assert all(isinstance(v, float) for v in out.values())


def test_task_metrics_classification_ids_and_scores_agree() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(0, 4, size=30)
    logits = rng.normal(size=(30, 4))
    from_scores = M.task_metrics("classification", t, logits)
    from_ids = M.task_metrics("classification", t, logits.argmax(axis=1), class_names=list("abcd"))
    assert from_scores["waf"] == pytest.approx(from_ids["waf"])
    assert from_scores["f1_3"] == pytest.approx(from_ids["f1_d"])
    # without names or scores the class count is inferred from the largest id
    inferred = M.task_metrics("classification", [0, 1, 1], [0, 1, 0])
    assert set(inferred) == {"acc", "waf", "macro_f1", "f1_0", "f1_1"}


# ---------------------------------------------------------------------------------------------
# regression


def test_mae_and_pearson_by_hand() -> None:
    t = np.array([1.0, 2.0, 3.0])
    p = np.array([2.0, 4.0, 7.0])
    # |1-2| + |2-4| + |3-7| = 1 + 2 + 4 = 7 over 3 samples
    assert M.mae(t, p) == pytest.approx(7 / 3)
    # deviations t: [-1, 0, 1]; p (mean 13/3): [-7/3, -1/3, 8/3]
    # cov sum = 7/3 + 8/3 = 5; sum dt^2 = 2; sum dp^2 = 114/9 -> r = 15 / sqrt(228)
    assert M.pearson_corr(t, p) == pytest.approx(15 / math.sqrt(228))


@pytest.mark.parametrize("seed", range(5))
def test_pearson_matches_corrcoef(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.uniform(-3, 3, size=50)
    p = 0.5 * t + rng.normal(size=50)
    assert M.pearson_corr(t, p) == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert M.mae(t, p) == pytest.approx(np.mean(np.abs(t - p)))


def test_constant_side_gives_zero_corr() -> None:
    assert M.pearson_corr([0.5, -1.0, 2.0], [0.1, 0.1, 0.1]) == 0.0
    assert M.pearson_corr([0.7, 0.7], [1.0, 2.0]) == 0.0
    assert M.regression_metrics([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])["corr"] == 0.0


def test_acc7_acc5_by_hand() -> None:
    t = np.array([-3.0, -1.4, 0.4, 2.6, 0.5, 2.4])
    p = np.array([-3.6, -0.6, 0.0, 3.2, 1.5, 3.0])
    # acc7, clip to [-3, 3] then np.round (half to even):
    #   t -> [-3, -1, 0, 3, 0, 2]   (0.5 -> 0)
    #   p -> [-3, -1, 0, 3, 2, 3]   (-3.6 -> -3 by clipping, 1.5 -> 2)
    #   equal at 0, 1, 2, 3 -> 4 / 6
    assert M.acc7(t, p) == pytest.approx(4 / 6)
    # acc5, clip to [-2, 2] then round:
    #   t -> [-2, -1, 0, 2, 0, 2]; p -> [-2, -1, 0, 2, 2, 2]; only index 4 differs -> 5 / 6
    assert M.acc5(t, p) == pytest.approx(5 / 6)


BIN_T = np.array([-1.0, 0.0, 0.0, 2.0, 1.5, -0.5])
BIN_P = np.array([-0.2, 0.3, -0.1, 1.0, -0.4, 0.0])


def test_has0_by_hand() -> None:
    # truth >= 0: [F, T, T, T, T, F]; pred >= 0: [F, T, F, T, F, T]
    # right at 0, 1, 3 -> 3 / 6
    assert M.acc2_has0(BIN_T, BIN_P) == pytest.approx(0.5)
    # non-negative: tp=2 (1, 3), fp=1 (5), fn=2 (2, 4) -> F1 = 4 / 7, support 4
    # negative:     tp=1 (0),    fp=2 (2, 4), fn=1 (5) -> F1 = 2 / 5, support 2
    # weighted: (4 * 4/7 + 2 * 2/5) / 6 = 18 / 35
    assert M.f1_has0(BIN_T, BIN_P) == pytest.approx(18 / 35)
    assert M.f1_has0(BIN_T, BIN_P) == pytest.approx(
        skm.f1_score(BIN_T >= 0, BIN_P >= 0, average="weighted")
    )


def test_non0_by_hand() -> None:
    # label-0 samples (indices 1, 2) dropped; left indices 0, 3, 4, 5
    # truth > 0: [F, T, T, F]; pred > 0: [F, T, F, F]  (pred 0.0 at index 5 counts as negative)
    # right at 0, 3, 5 -> 3 / 4
    assert M.acc2_non0(BIN_T, BIN_P) == pytest.approx(0.75)
    # positive: tp=1, fp=0, fn=1 -> 2 / 3; negative: tp=2, fp=1, fn=0 -> 4 / 5; supports 2 and 2
    # weighted: (2/3 + 4/5) / 2 = 11 / 15
    assert M.f1_non0(BIN_T, BIN_P) == pytest.approx(11 / 15)


def test_non0_all_labels_zero_gives_zero() -> None:
    assert M.acc2_non0([0.0, 0.0], [1.0, -1.0]) == 0.0
    assert M.f1_non0([0.0, 0.0], [1.0, -1.0]) == 0.0


def test_regression_metrics_dict() -> None:
    out = M.regression_metrics(BIN_T, BIN_P)
    assert set(out) == {"mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"}
    assert out["acc2_has0"] == pytest.approx(0.5)
    assert out["f1_non0"] == pytest.approx(11 / 15)
    assert out["mae"] == pytest.approx(M.mae(BIN_T, BIN_P))
    as_task = M.task_metrics("regression", BIN_T, BIN_P[:, None])
    assert as_task == pytest.approx(out)


# ---------------------------------------------------------------------------------------------
# direction and selection


def test_direction() -> None:
    assert M.HIGHER_IS_BETTER["mae"] is False
    assert all(v for k, v in M.HIGHER_IS_BETTER.items() if k != "mae")
    assert M.is_better("mae", 0.7, 0.8)
    assert not M.is_better("mae", 0.9, 0.8)
    assert M.is_better("waf", 0.61, 0.60)
    assert not M.is_better("waf", 0.60, 0.60)  # ties keep the earlier checkpoint
    assert M.is_better("f1_happy", 0.5, 0.4)
    assert M.is_better("mae", 5.0, None)
    assert M.primary_metric("classification") == "waf"
    assert M.primary_metric("regression") == "mae"


# ---------------------------------------------------------------------------------------------
# AUILC


def test_auilc_by_hand() -> None:
    # trapezoids: 0.5 (0.8 + 0.6) 0.1 = 0.07 and 0.5 (0.6 + 0.5) 0.2 = 0.11 -> 0.18
    assert M.auilc([0.0, 0.1, 0.3], [0.8, 0.6, 0.5]) == pytest.approx(0.18)
    # unsorted input is sorted together with its values
    assert M.auilc([0.3, 0.0, 0.1], [0.5, 0.8, 0.6]) == pytest.approx(0.18)


def test_auilc_matches_trapezoid() -> None:
    rng = np.random.default_rng(0)
    rates = np.round(np.arange(8) * 0.1, 1)
    values = rng.uniform(0.4, 0.7, size=8)
    assert M.auilc(rates, values) == pytest.approx(np.trapezoid(values, rates))
    perm = rng.permutation(8)
    assert M.auilc(rates[perm], values[perm]) == pytest.approx(np.trapezoid(values, rates))


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: M.accuracy([0, 1], [0, 1, 1], 2), "same length"),
        (lambda: M.accuracy([], [], 2), "empty"),
        (lambda: M.macro_f1([0, 3], [0, 1], 3), "y_true holds class id 3"),
        (lambda: M.macro_f1([0, 1], [0, -1], 3), "y_pred holds class id -1"),
        (lambda: M.weighted_f1([0, 1], [0.0, 0.5], 2), "integer class ids"),
        (lambda: M.accuracy([0, 1], [0, 1], 0), "n_classes"),
        (lambda: M.accuracy([[0, 1]], [[0, 1]], 2), "1-D"),
        (lambda: M.classification_metrics([0, 1], [0, 1], 2, ["a"]), "class_names"),
        (lambda: M.mae([1.0, 2.0], [1.0, float("nan")]), "y_pred holds 1 non-finite"),
        (lambda: M.pearson_corr([1.0, 2.0], [1.0, float("inf")]), "y_pred"),
        (lambda: M.regression_metrics([float("nan"), 1.0], [0.0, 1.0]), "y_true"),
        (lambda: M.acc7([1.0], [1.0, 2.0]), "same length"),
        (lambda: M.regression_metrics([], []), "empty"),
        (lambda: M.task_metrics("ranking", [0], [0]), "ranking"),
        (lambda: M.task_metrics("classification", [0, 1], np.array([[0.1, np.nan], [1, 0]])), "non-finite"),
        (lambda: M.task_metrics("classification", [0, 1], np.zeros((2, 3)), ["a", "b"]), "class_names"),
        (lambda: M.primary_metric("ranking"), "ranking"),
        (lambda: M.is_better("bleu", 1.0, 0.5), "bleu"),
        (lambda: M.is_better("waf", float("nan"), 0.5), "finite"),
        (lambda: M.auilc([0.0], [0.5]), "at least 2"),
        (lambda: M.auilc([0.0, 0.1, 0.1], [0.5, 0.4, 0.3]), "distinct"),
        (lambda: M.auilc([0.0, 0.1], [0.5, float("nan")]), "values"),
        (lambda: M.auilc([0.0, 0.1], [0.5]), "same number"),
        (lambda: M.auilc(["a", "b"], [0.5, 0.4]), "rates"),
    ],
)
def test_errors(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(NasmercError) as info:
        call()
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
