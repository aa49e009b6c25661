"""Evaluation metrics for emotion recognition in conversation and for MOSI/MOSEI sentiment.

Everything here is plain numpy so that the library does not depend on scikit-learn; the tests
check the values against ``sklearn.metrics``. Accuracies and F1 scores are fractions in ``[0, 1]``,
not percentages.

- Classification (IEMOCAP, MELD, ...): accuracy, per-class one-vs-rest F1, macro F1 and the weighted
  F1 (WAF, per-class F1 weighted by true support) that ERC papers report.
- Regression (MOSI/MOSEI, labels in ``[-3, 3]``): MAE, Pearson correlation, Acc-7, Acc-5 and the
  binary accuracy / weighted F1 in both conventions of the MMSA toolkit (Has0 and Non0).
- Model selection: :data:`HIGHER_IS_BETTER`, :func:`is_better` and :func:`primary_metric`.
- Robustness to missing modalities: :func:`auilc`, the area under the indicator line chart over
  missing rates (eq. 14 of the RMNAS paper).

Bad input (different lengths, empty arrays, NaN or inf, labels out of range) raises
:class:`~nasmerc.errors.NasmercError` with a one-line message naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nasmerc.errors import NasmercError

TASKS = ("classification", "regression")

_METRIC_KEYS = ("acc", "waf", "macro_f1", "mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0",
                "acc2_non0", "f1_non0", "auilc")
HIGHER_IS_BETTER: dict[str, bool] = {key: key != "mae" for key in _METRIC_KEYS}
"""Direction of each metric key; per-class ``f1_<classname>`` keys are higher-is-better too."""


def _as_1d(name: str, values: Any) -> np.ndarray:
    """Return ``values`` as a non-empty 1-D array, or raise naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise NasmercError(f"{name} has shape {arr.shape}: expected a 1-D array [N]")
    if arr.size == 0:
        raise NasmercError(f"{name} is empty: expected at least one sample")
    return arr


def _check_same_length(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape[0] != y_pred.shape[0]:
        raise NasmercError(
            f"y_pred has shape {y_pred.shape} but y_true has shape {y_true.shape}: "
            "expected the same length"
        )


def _check_finite(name: str, arr: np.ndarray) -> None:
    """Raise if ``arr`` is not numeric or holds NaN/inf, naming the first bad position."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise NasmercError(f"{name} has dtype {arr.dtype}: expected numbers")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NasmercError(
            f"{name} holds {int(bad.sum())} non-finite value(s), e.g. {arr[first].item()!r} at index "
            f"{first if len(first) > 1 else first[0]}: expected finite numbers"
        )


def _check_labels(name: str, values: Any, n_classes: int) -> np.ndarray:
    """Return class ids as an int64 array [N]; they must be integral and in ``[0, n_classes)``."""
    arr = _as_1d(name, values)
    _check_finite(name, arr)
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        if not np.all(arr == np.round(arr)):
            bad = arr[arr != np.round(arr)][0].item()
            raise NasmercError(f"{name} holds {bad!r}: expected integer class ids")
    ids = arr.astype(np.int64)
    out = (ids < 0) | (ids >= n_classes)
    if out.any():
        raise NasmercError(
            f"{name} holds class id {int(ids[out][0])}: expected ids in [0, {n_classes})"
        )
    return ids


def _check_n_classes(n_classes: int) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise NasmercError(f"n_classes is {n_classes!r}: expected a positive integer")
    return int(n_classes)


def _classification_inputs(
    y_true: Any, y_pred: Any, n_classes: int
) -> tuple[np.ndarray, np.ndarray, int]:
    n_classes = _check_n_classes(n_classes)
    t = _check_labels("y_true", y_true, n_classes)
    p = _check_labels("y_pred", y_pred, n_classes)
    _check_same_length(t, p)
    return t, p, n_classes


def _regression_inputs(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_1d("y_true", y_true)
    p = _as_1d("y_pred", y_pred)
    _check_finite("y_true", t)
    _check_finite("y_pred", p)
    _check_same_length(t, p)
    return t.astype(np.float64), p.astype(np.float64)


def accuracy(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p, _ = _classification_inputs(y_true, y_pred, n_classes)
    return float(np.mean(t == p))


def _confusion(t: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts ``[C, C]``, rows are true classes and columns predicted ones."""
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def _f1_from_confusion(conf: np.ndarray) -> np.ndarray:
    """One-vs-rest F1 ``2 tp / (2 tp + fp + fn)`` per class; 0 where the denominator is 0.

    A class with no true and no predicted samples gets 0, as sklearn with ``zero_division=0``.
    """
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def per_class_f1(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """F1 of each class ``0 .. n_classes-1`` one-vs-rest, as a float array ``[C]``."""
    t, p, c = _classification_inputs(y_true, y_pred, n_classes)
    return _f1_from_confusion(_confusion(t, p, c))


def macro_f1(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over all ``n_classes`` classes.

    Classes absent from both sides count as 0, like sklearn with ``labels=range(n_classes)``.
    """
    return float(np.mean(per_class_f1(y_true, y_pred, n_classes)))


def _weighted(f1: np.ndarray, support: np.ndarray) -> float:
    return float(np.sum(f1 * support) / np.sum(support))


def weighted_f1(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """Weighted F1 (WAF): per-class F1 weighted by true support, as sklearn ``average='weighted'``."""
    t, p, c = _classification_inputs(y_true, y_pred, n_classes)
    conf = _confusion(t, p, c)
    return _weighted(_f1_from_confusion(conf), conf.sum(axis=1))


def classification_metrics(
    y_true: Any, y_pred: Any, n_classes: int, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """All classification metrics: ``acc``, ``waf``, ``macro_f1`` and ``f1_<classname>`` per class.

    ``class_names`` defaults to ``'0', '1', ...``; when given it must have ``n_classes`` entries.
    """
    t, p, c = _classification_inputs(y_true, y_pred, n_classes)
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise NasmercError(f"class_names has {len(names)} entries {names!r}: expected n_classes={c}")
    if len(set(names)) != c:
        raise NasmercError(f"class_names {names!r} has duplicates: expected distinct names")
    conf = _confusion(t, p, c)
    f1 = _f1_from_confusion(conf)
    out = {
        "acc": float(np.mean(t == p)),
        "waf": _weighted(f1, conf.sum(axis=1)),
        "macro_f1": float(np.mean(f1)),
    }
    for name, value in zip(names, f1):
        out[f"f1_{name}"] = float(value)
    return out


@dataclass(frozen=True)
class BinaryScores:
    """Accuracy and weighted F1 of one binary view of sentiment scores."""

    acc: float
    f1: float


def _binary_scores(truth: np.ndarray, pred: np.ndarray) -> BinaryScores:
    """Accuracy and sklearn-style weighted F1 of two bool arrays; zeros when they are empty."""
    if truth.size == 0:
        return BinaryScores(acc=0.0, f1=0.0)
    conf = _confusion(truth.astype(np.int64), pred.astype(np.int64), 2)
    f1 = _weighted(_f1_from_confusion(conf), conf.sum(axis=1))
    return BinaryScores(acc=float(np.mean(truth == pred)), f1=f1)


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error."""
    t, p = _regression_inputs(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def pearson_corr(y_true: Any, y_pred: Any) -> float:
    """Pearson correlation; 0.0 (not NaN) when either side is constant, so selection never sees NaN."""
    t, p = _regression_inputs(y_true, y_pred)
    if np.ptp(t) == 0 or np.ptp(p) == 0:
        return 0.0
    dt = t - t.mean()
    dp = p - p.mean()
    r = np.dot(dt, dp) / np.sqrt(np.dot(dt, dt) * np.dot(dp, dp))
    return float(np.clip(r, -1.0, 1.0))


def _multiclass_acc(t: np.ndarray, p: np.ndarray, bound: float) -> float:
    return float(np.mean(np.round(np.clip(t, -bound, bound)) == np.round(np.clip(p, -bound, bound))))


def acc7(y_true: Any, y_pred: Any) -> float:
    """Seven-class accuracy: ``round(clip(x, -3, 3))`` of both sides compared.

    Uses ``np.round``, which rounds halves to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2), exactly as the
    MMSA toolkit does, so numbers stay comparable with published results.
    """
    t, p = _regression_inputs(y_true, y_pred)
    return _multiclass_acc(t, p, 3.0)


def acc5(y_true: Any, y_pred: Any) -> float:
    """Five-class accuracy: ``round(clip(x, -2, 2))`` compared; ``np.round`` is half-to-even as in MMSA."""
    t, p = _regression_inputs(y_true, y_pred)
    return _multiclass_acc(t, p, 2.0)


def _has0(t: np.ndarray, p: np.ndarray) -> BinaryScores:
    """MMSA's Has0 view: negative (< 0) vs non-negative (>= 0) over all samples."""
    return _binary_scores(t >= 0, p >= 0)


def _non0(t: np.ndarray, p: np.ndarray) -> BinaryScores:
    """MMSA's Non0 view: samples labelled exactly 0 dropped, then positive (> 0) vs not.

    A prediction of exactly 0 counts as negative. If every label is 0 nothing is left and both
    scores are 0.0.
    """
    keep = t != 0
    return _binary_scores(t[keep] > 0, p[keep] > 0)


def acc2_has0(y_true: Any, y_pred: Any) -> float:
    """Binary accuracy, Has0 convention: negative (< 0) vs non-negative (>= 0)."""
    return _has0(*_regression_inputs(y_true, y_pred)).acc


def f1_has0(y_true: Any, y_pred: Any) -> float:
    """Weighted binary F1, Has0 convention (sklearn ``average='weighted'`` on the two classes)."""
    return _has0(*_regression_inputs(y_true, y_pred)).f1


def acc2_non0(y_true: Any, y_pred: Any) -> float:
    """Binary accuracy, Non0 convention: label-0 samples dropped, then positive vs negative."""
    return _non0(*_regression_inputs(y_true, y_pred)).acc


def f1_non0(y_true: Any, y_pred: Any) -> float:
    """Weighted binary F1, Non0 convention (label-0 samples dropped)."""
    return _non0(*_regression_inputs(y_true, y_pred)).f1


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """All sentiment metrics: ``mae``, ``corr``, ``acc7``, ``acc5`` and both binary conventions."""
    t, p = _regression_inputs(y_true, y_pred)
    has0 = _has0(t, p)
    non0 = _non0(t, p)
    return {
        "mae": float(np.mean(np.abs(t - p))),
        "corr": pearson_corr(t, p),
        "acc7": _multiclass_acc(t, p, 3.0),
        "acc5": _multiclass_acc(t, p, 2.0),
        "acc2_has0": has0.acc,
        "f1_has0": has0.f1,
        "acc2_non0": non0.acc,
        "f1_non0": non0.f1,
    }


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise NasmercError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    return task


def task_metrics(
    task: str, y_true: Any, y_pred_or_scores: Any, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Metrics for ``task``, straight from what a model returns.

    For ``'classification'`` the predictions may be class ids ``[N]`` or logits / probabilities
    ``[N, C]`` (argmax taken). The number of classes is ``C`` for scores, else
    ``len(class_names)`` when given, else one more than the largest id on either side. For
    ``'regression'`` the scores are ``[N]`` (``[N, 1]`` is accepted and flattened).
    """
    _check_task(task)
    scores = np.asarray(y_pred_or_scores)
    if task == "regression":
        flat = scores[:, 0] if scores.ndim == 2 and scores.shape[1] == 1 else scores
        return regression_metrics(y_true, flat)
    if scores.ndim == 2:
        if scores.size == 0:
            raise NasmercError(f"y_pred_or_scores has shape {scores.shape}: expected [N, C] with N, C > 0")
        _check_finite("y_pred_or_scores", scores)
        n_classes = scores.shape[1]
        if class_names is not None and len(class_names) != n_classes:
            raise NasmercError(
                f"class_names has {len(class_names)} entries but scores have {n_classes} columns: "
                "expected one name per column"
            )
        preds = np.argmax(scores, axis=1)
    elif scores.ndim == 1:
        preds = scores
        if class_names is not None:
            n_classes = len(class_names)
        else:
            t = _as_1d("y_true", y_true)
            _as_1d("y_pred_or_scores", preds)
            _check_finite("y_true", t)
            _check_finite("y_pred_or_scores", preds)
            n_classes = int(max(t.max(), preds.max(), 0)) + 1
    else:
        raise NasmercError(
            f"y_pred_or_scores has shape {scores.shape}: expected class ids [N] or scores [N, C]"
        )
    return classification_metrics(y_true, preds, n_classes, class_names)


def primary_metric(task: str) -> str:
    """The metric used to select checkpoints: ``'waf'`` for ERC, ``'mae'`` for MOSI/MOSEI."""
    return "waf" if _check_task(task) == "classification" else "mae"


def is_better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` strictly improves on ``old`` for ``metric``; anything beats ``old=None``.

    Ties are not improvements, so the first checkpoint reaching a value is kept.
    """
    if metric in HIGHER_IS_BETTER:
        higher = HIGHER_IS_BETTER[metric]
    elif metric.startswith("f1_"):
        higher = True
    else:
        raise NasmercError(
            f"metric {metric!r} is unknown: expected one of {', '.join(HIGHER_IS_BETTER)} or f1_<class>"
        )
    if not np.isfinite(new):
        raise NasmercError(f"new value {new!r} for metric {metric!r}: expected a finite number")
    if old is None:
        return True
    return bool(new > old) if higher else bool(new < old)


def _float_1d(name: str, seq: Sequence[float]) -> np.ndarray:
    """``seq`` as a 1-D float array, or a NasmercError naming ``name``."""
    try:
        arr = np.asarray(seq, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1:
        raise NasmercError(f"{name} {seq!r}: expected a 1-D sequence of numbers")
    return arr


def auilc(rates: Sequence[float], values: Sequence[float]) -> float:
    """Area under the indicator line chart (eq. 14 of RMNAS) over missing rates.

    ``sum_i 0.5 (p_i + p_{i+1}) (mr_{i+1} - mr_i)`` with the rates ``mr`` sorted ascending and the
    values ``p`` reordered with them: the trapezoid area under a metric-vs-missing-rate curve, a
    single number for how well a model holds up as modalities go missing.
    """
    mr = _float_1d("rates", rates)
    pv = _float_1d("values", values)
    if mr.size != pv.size:
        raise NasmercError(f"rates has {mr.size} points but values has {pv.size}: expected the same number")
    if mr.size < 2:
        raise NasmercError(f"rates has {mr.size} point(s): expected at least 2 to form an area")
    if not np.all(np.isfinite(mr)):
        raise NasmercError(f"rates {mr.tolist()}: expected finite numbers")
    if not np.all(np.isfinite(pv)):
        raise NasmercError(f"values {pv.tolist()}: expected finite numbers")
    order = np.argsort(mr, kind="stable")
    mr, pv = mr[order], pv[order]
    if np.any(np.diff(mr) == 0):
        dup = float(mr[1:][np.diff(mr) == 0][0])
        raise NasmercError(f"rates {mr.tolist()} repeat {dup!r}: expected distinct rates")
    return float(np.sum(0.5 * (pv[:-1] + pv[1:]) * np.diff(mr)))

