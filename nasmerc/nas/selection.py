"""Choosing a population search's result among its candidates, after the search.

By default the result is the candidate with the best validation value. Three options choose
otherwise (a strategy's ``finalists``, ``finalist_folds`` and ``parsimony``), applied in that order by
:meth:`nasmerc.nas.population.PopulationStrategy.search`:

- :func:`choose_finalist`: the few best candidates train for the full ``train.epochs`` and the best
  of them on validation, or by cross-validation over the training and validation conversations, is
  the result (a few epochs rank candidates roughly; a validation split of a few conversations tells
  close ones apart by chance);
- :func:`parsimonious`: of the candidates within a tolerance of the best, the smallest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nasmerc import checks, metrics
from nasmerc.data.folds import selection_folds
from nasmerc.errors import NasmercError
from nasmerc.nas.evaluator import CandidateRequest, Evaluator
from nasmerc.nas.strategy import SearchContext, SearchResult

OPTIONS = ("finalists", "finalist_folds", "parsimony")
"""The strategy options of this module: they change which candidate is the result, not the search."""
RESELECTABLE = (*OPTIONS, "simplify", "simplify_by", "simplify_moves")
"""The options a finished search can take again without searching again: this module's and backward
elimination from the result (:func:`nasmerc.nas.population.simplify`, whose trained removals a resumed
run replays); ``benchmarks/reselect.py`` replaces them."""
RESELECTABLE_SETS = tuple(f"strategy.{name}=" for name in RESELECTABLE)
"""The ``--set`` prefixes of :data:`RESELECTABLE`, as a grid cell writes them."""


def eligible(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that could be a search's result: not pruned, not diverged (in their order)."""
    return [t for t in trials if not (t.get("pruned") or t.get("diverged"))]


def result_at(result: SearchResult, trial: dict[str, Any], **extra: Any) -> SearchResult:
    """``result`` with the candidate of log record ``trial`` as the search's result (its architecture,
    value, parameters and validation metrics); ``extra`` joins ``result.extra``."""
    return dataclasses.replace(
        result, arch=dict(trial["arch"]), best_value=float(trial["value"]), best_epoch=int(trial["trial"]),
        derived_parameters=int(trial["parameters"]),
        extra={**result.extra, "valid": trial["metrics"], "best_trial": trial["trial"], **extra})


def parsimonious(result: SearchResult, ctx: SearchContext, tolerance: float) -> SearchResult:
    """The smallest model among those within ``tolerance`` of the best (``parsimony``): the
    one-standard-error rule of Breiman, Friedman, Olshen and Stone (*Classification and Regression
    Trees*, 1984, sec. 3.4.3), with ``tolerance`` (in the metric's units) standing for the error of the
    validation estimate. A validation split of a few conversations cannot tell models apart by less
    than that, and of models it cannot tell apart the one with the fewest parameters is the one least
    fitted to the training split. The pool is the finalists (their ``final_value``) when the search had
    them, else every trial that could be the result (not pruned, not diverged); the fewest parameters
    win, then the better value, then the earlier trial. ``extra["parsimony"]`` records the tolerance,
    the best trial by value and the chosen one."""
    evaluator = ctx.evaluator
    if "finalists" in result.extra:
        pool = [{**f, "value": f["final_value"]} for f in result.extra["finalists"]]
    else:
        pool = eligible(result.extra["trials"])
    if not pool:
        return result
    sign = 1.0 if evaluator.higher_is_better else -1.0
    top = max(sign * t["value"] for t in pool)
    within = [t for t in pool if sign * t["value"] >= top - tolerance]
    chosen = min(within, key=lambda t: (int(t["parameters"]), -sign * t["value"], t["trial"]))
    return result_at(result, chosen, parsimony={"tolerance": tolerance, "best_by_value": result.extra.get("best_trial"),
                                                "within": len(within), "chosen": chosen["trial"]})


def check_parsimony(where: str, tolerance: float) -> None:
    """``parsimony``: a finite tolerance >= 0 (0: the best value wins)."""
    checks.non_negative(where, parsimony=tolerance)


FINALIST_FOLDS_MAX = 10
"""The most folds ``finalist_folds`` takes: each fold trains every finalist once more."""


def check_finalist_folds(where: str, folds: int, finalists: int) -> None:
    """``finalist_folds``: 0 (choose on the validation split), or 2 to :data:`FINALIST_FOLDS_MAX` with
    at least one finalist to choose between."""
    if folds == 0:
        return
    if not 2 <= folds <= FINALIST_FOLDS_MAX:
        raise NasmercError(f"{where}: finalist_folds={folds}: expected 0 (choose on the validation split) "
                           f"or 2 to {FINALIST_FOLDS_MAX}")
    if finalists < 1:
        raise NasmercError(f"{where}: finalist_folds={folds} with no finalists: expected finalists >= 1 "
                           "(the candidates the folds choose between)")


def fold_evaluators(ctx: SearchContext, folds: int) -> list[Evaluator]:
    """One evaluator per cross-validation fold of the training and validation conversations
    (:func:`nasmerc.data.folds.selection_folds`, shuffled by the run seed), each with its own candidate
    file in ``RUN/folds/J/``, so a resumed run answers the folds it finished from there."""
    splits = selection_folds(ctx.dataset.splits, folds, seed=ctx.seed, where="finalist_folds")
    out = []
    for j, split in enumerate(splits, start=1):
        run_dir = ctx.run_dir / "folds" / str(j)
        run_dir.mkdir(parents=True, exist_ok=True)
        out.append(Evaluator(ctx.space, dataclasses.replace(ctx.dataset, splits=split), ctx.train,
                             device=ctx.device, seed=ctx.seed, events=ctx.events, run_dir=run_dir,
                             fixed=ctx.fixed, workers=ctx.workers))
    return out


def choose_finalist(result: SearchResult, ctx: SearchContext, k: int, folds: int = 0) -> SearchResult:
    """Train the ``k`` best distinct candidates of a search for the full ``train.epochs`` and keep the one
    with the best validation value: a few epochs rank candidates roughly, so the result is chosen on
    the training it will get. Each finalist trains with the run seed, as ``nasmerc retrain`` will
    train the chosen one; ``finalist`` events and ``extra["finalists"]`` record them, and
    ``extra["finalist_epochs"]`` what they cost.

    ``folds`` >= 2 chooses by cross-validation instead (``finalist_folds``): every finalist trains once
    per fold of the training and validation conversations (:func:`fold_evaluators`) and its value is
    the mean of its folds' best validation values (each in ``fold_values``), so the choice rests on
    every labelled conversation rather than on the validation split alone, whose few conversations
    tell close finalists apart by chance. ``nasmerc retrain`` then trains the chosen one on the usual
    split."""
    evaluator = ctx.evaluator
    ranked = sorted(eligible(result.extra["trials"]),  # ties keep the order
                    key=lambda t: -t["value"] if evaluator.higher_is_better else t["value"])
    chosen: list[dict[str, Any]] = []
    for trial in ranked:
        if all(trial["arch"] != c["arch"] for c in chosen) and len(chosen) < k:
            chosen.append(trial)
    requests = [CandidateRequest(dict(t["arch"]), evaluator.train.epochs, evaluator.seed) for t in chosen]
    if folds:
        per_fold = []
        for fold in fold_evaluators(ctx, folds):
            try:
                per_fold.append(fold.score_all(requests))
            finally:
                fold.close()
        scores = per_fold[0]  # the parameters: the same model in every fold
        fold_values = [[fold[i].value for fold in per_fold] for i in range(len(chosen))]
        values = [sum(v) / folds for v in fold_values]
        scored = [{m: sum(fold[i].metrics[m] for fold in per_fold) / folds for m in scores[i].metrics}
                  for i in range(len(chosen))]
    else:
        scores = evaluator.score_all(requests)
        values, scored = [score.value for score in scores], [score.metrics for score in scores]
    finalists, best = [], None
    for i, (trial, score) in enumerate(zip(chosen, scores)):
        record = {"trial": trial["trial"], "arch": trial["arch"], "value": trial["value"],
                  "final_value": values[i], "metrics": scored[i], "parameters": score.parameters,
                  **({"fold_values": fold_values[i]} if folds else {})}
        finalists.append(record)
        ctx.events.emit("finalist", **{k: v for k, v in record.items() if k != "metrics"}, metric=evaluator.metric)
        if best is None or metrics.is_better(evaluator.metric, record["final_value"], best["final_value"]):
            best = record
    if best is None:
        raise NasmercError("the search evaluated no candidate: expected at least one trial")
    return SearchResult(
        arch=dict(best["arch"]), metric=result.metric, best_value=best["final_value"], best_epoch=best["trial"],
        supernet_parameters=result.supernet_parameters, derived_parameters=best["parameters"],
        extra={**result.extra, "valid": best["metrics"], "best_trial": best["trial"], "finalists": finalists,
               "finalist_epochs": len(finalists) * max(folds, 1) * evaluator.train.epochs,
               **({"finalist_folds": folds} if folds else {})}, summary=result.summary)
