"""What population strategies (random search, evolution, TPE) share: the trial loop and its log.

The algorithms see only an *encoded* architecture, a genome (``nasmerc.nas.genome``: :func:`genes`,
:func:`encode`, :func:`decode`, :func:`sample_genome`, re-exported here).

Each algorithm is a :class:`Proposer` (ask / tell, as Optuna's ``Study``) inside the one trial loop
:func:`run_trials`, which has the :class:`~nasmerc.nas.evaluator.Evaluator` train the proposals and
records every candidate in a :class:`TrialLog` (one ``trial`` event each); :func:`search_result`
turns the best one into a :class:`~nasmerc.nas.strategy.SearchResult`. A
:class:`PopulationStrategy` is a strategy whose search is that loop around its proposer; with
``evaluation=oneshot`` the evaluator first trains a one-shot supernet and the loop scores every
candidate with its weights (``nasmerc.nas.oneshot``).

:func:`blend_weights`, :func:`perturb_weights` and :func:`inherit_weights` are HAEMSA's operators on
an individual's weights (eqs. 9-10), for evolutions whose individuals carry weights.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from nasmerc import checks, metrics
from nasmerc.data.conversation import ConversationDataset
from nasmerc.data.folds import selection_folds
from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.nas import oneshot
from nasmerc.nas.genome import Genome, arch_key, decode, encode, genes, neighbours, sample_arch, sample_genome, searched
from nasmerc.nas.specs import ChoiceSpec, UnresolvedChoice
from nasmerc.nas.evaluator import CandidateRequest, CandidateResult, Evaluator
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.selection import choose_finalist, eligible, parsimonious, result_at
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy
from nasmerc.outputs import count_parameters

@dataclass
class Proposal:
    """One candidate a proposer asks to have evaluated: ``arch``, the fields its ``trial`` event and log
    record carry besides the usual ones (``extra``, say ``generation``), an optional per-epoch
    ``stop(epoch, value)`` (see :class:`~nasmerc.nas.evaluator.CandidateRequest`) and the proposer's
    own handle on it (``ref``: a DEAP individual, an Optuna trial). ``index`` is the candidate's number
    in the whole search when the proposer numbers candidates itself (a shared study's slot, see
    ``nasmerc.nas.storage``); it trains with seed ``evaluator.seed + index`` (default: its place in
    this loop). ``epochs`` replaces the loop's epochs for this candidate; ``init`` are the weights it
    starts from and ``keep`` asks for its trained weights back (an evolution of weights; see
    :class:`~nasmerc.nas.evaluator.CandidateRequest`)."""

    arch: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    stop: Callable[[int, float], bool] | None = None
    ref: Any = None
    index: int | None = None
    epochs: int | None = None
    init: dict[str, torch.Tensor] | None = None
    keep: bool = False


class Proposer(ABC):
    """A population strategy's algorithm, seen from the trial loop (:func:`run_trials`): ask / tell.

    A proposer is made for one search (``ctx``). The loop calls :meth:`ask` while :meth:`done` is
    false, has the evaluator train every proposal it gets, and calls :meth:`tell` with each result, in
    order. After the last one it calls :meth:`result` and, whatever happened, :meth:`close`.
    :meth:`abandon` is called with the proposals of a batch whose evaluation failed, before the error
    propagates.
    """

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def done(self) -> bool:
        """True when nothing is left to ask."""

    @abstractmethod
    def ask(self, n: int) -> list[Proposal]:
        """Proposals to evaluate next: up to ``n`` (the evaluator's workers) where the algorithm can
        choose, its whole batch where it cannot (a generation); may be empty."""

    @abstractmethod
    def tell(self, proposal: Proposal, result: CandidateResult, trial: int) -> None:
        """The result of ``proposal``, recorded as trial number ``trial`` (1-based) of the log."""

    def abandon(self, proposals: Sequence[Proposal]) -> None:
        """The evaluation of ``proposals`` failed (default: nothing to undo)."""

    def result(self, log: "TrialLog") -> SearchResult:
        """The search's result once :meth:`done` (default: the best trial of ``log``)."""
        return search_result(self.ctx.space, self.ctx.fixed, log)

    def close(self) -> None:
        """Release what the proposer holds (a study's storage); called once at the end."""


def run_trials(proposer: Proposer, evaluator: Evaluator, epochs: int, inherit: bool = False) -> SearchResult:
    """The trial loop every population strategy runs: ask, evaluate ``epochs`` epochs each, tell.

    Trial ``n`` (0-based, in the order asked) trains with seed ``evaluator.seed + n``, so the result
    does not depend on the evaluator's worker count. A candidate stopped early (pruned) is recorded
    with ``pruned: true`` and is never the best. With ``inherit`` (and ``epochs = 0``) every candidate
    is scored with the one-shot supernet's weights and recorded with ``inherited: true``. After every
    trial the best so far is handed to ``ctx.best_so_far`` (``arch.yaml`` in the run folder).
    """
    log = TrialLog(evaluator.metric, evaluator.events)
    try:
        while not proposer.done():
            proposals = proposer.ask(evaluator.concurrency)
            first = len(log.trials)
            requests = [CandidateRequest(p.arch, epochs if p.epochs is None else p.epochs,
                                         evaluator.seed + (first + k if p.index is None else p.index), p.stop,
                                         init=p.init, keep=p.keep, inherit=inherit)
                        for k, p in enumerate(proposals)]
            try:
                results = evaluator.score_all(requests)
            except BaseException:
                proposer.abandon(proposals)
                raise
            for proposal, result in zip(proposals, results):
                extra = {**proposal.extra, **outcome(result, inherit)}
                record = log.add(proposal.arch, result, eligible=not result.stopped, **extra)
                proposer.tell(proposal, result, record["trial"])
                if log.best_index is not None and proposer.ctx.best_so_far is not None:
                    top = log.trials[log.best_index]
                    proposer.ctx.best_so_far(dict(top["arch"]), {
                        "metric": log.metric, "best_valid": top["value"], "best_trial": top["trial"],
                        "trials_done": len(log.trials), "derived_parameters": top["parameters"]})
        return proposer.result(log)
    finally:
        evaluator.close()
        proposer.close()


def outcome(result: CandidateResult, inherit: bool = False) -> dict[str, Any]:
    """What a trial record says of how a candidate was scored: ``pruned`` (stopped by its pruner) or
    ``diverged`` (why its loss stopped being finite), either never the best; ``inherited`` when it was
    scored with a one-shot supernet's weights."""
    said: dict[str, Any] = {"diverged": result.diverged} if result.diverged else {}
    if result.stopped and not result.diverged:
        said["pruned"] = True
    if inherit:
        said["inherited"] = True
    return said


# -- the record of a search --------------------------------------------------------------------------
@dataclass
class TrialLog:
    """Every evaluated candidate of one search, in order; emits one ``trial`` event per candidate.

    ``trial`` event: ``trial`` (1-based), ``arch``, ``value``, ``best`` (best so far), ``metric``,
    ``parameters``, ``seconds``, ``epochs`` (trained: fewer than asked for a pruned or diverged one, none
    for one scored with inherited weights).
    """

    metric: str
    events: Events
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_index: int | None = None

    @property
    def best(self) -> dict[str, Any] | None:
        return None if self.best_index is None else self.trials[self.best_index]

    def add(self, arch: Mapping[str, Any], result: CandidateResult, *, eligible: bool = True,
            **extra: Any) -> dict[str, Any]:
        """Record one candidate; ``eligible=False`` (say, a pruned trial) records it without letting it be
        the best (its event's ``best`` is ``None`` while no eligible trial is recorded)."""
        record = {"trial": len(self.trials) + 1, "arch": dict(arch), "value": result.value,
                  "metrics": result.metrics, "parameters": result.parameters, "seconds": result.seconds,
                  "epochs": len(result.history), **extra}
        self.trials.append(record)
        best = self.best
        if eligible and metrics.is_better(self.metric, result.value, None if best is None else best["value"]):
            self.best_index = len(self.trials) - 1
        self.events.emit("trial", trial=record["trial"], arch=record["arch"], value=result.value,
                         best=None if self.best_index is None else self.trials[self.best_index]["value"],
                         metric=self.metric,
                         parameters=result.parameters, seconds=result.seconds, epochs=record["epochs"], **extra)
        return record


def supernet_parameters(space: SearchSpace, fixed: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> int:
    """Parameters of ``space.supernet(fixed)``, or of the largest candidate when value / float choices
    are unresolved (no supernet can be built then)."""
    try:
        return count_parameters(space.supernet(fixed))
    except UnresolvedChoice:
        return max((int(t["parameters"]) for t in trials), default=0)


def search_result(space: SearchSpace, fixed: Mapping[str, Any], log: TrialLog, best_epoch: int | None = None,
                  trial: int | None = None, **extra: Any) -> SearchResult:
    """The :class:`SearchResult` of the best trial of ``log`` (or of trial number ``trial`` when given,
    e.g. the hall of fame's). ``best_epoch`` defaults to the chosen trial's number."""
    best = log.best if trial is None else log.trials[trial - 1]
    if best is None:
        raise NasmercError("the search evaluated no candidate: expected at least one trial")
    return SearchResult(
        arch=dict(best["arch"]), metric=log.metric, best_value=float(best["value"]),
        best_epoch=int(best_epoch if best_epoch is not None else best["trial"]),
        supernet_parameters=supernet_parameters(space, fixed, log.trials),
        derived_parameters=int(best["parameters"]),
        extra={"valid": best["metrics"], "best_trial": best["trial"], "trials": log.trials, **extra},
    )


class PopulationStrategy(Strategy):
    """A strategy whose search is :func:`run_trials` around its :meth:`proposer`; its ``Config`` has
    ``candidate_epochs``, the epochs every candidate trains, and may have ``finalists`` (see
    :func:`nasmerc.nas.selection.choose_finalist`; none when absent), ``finalist_folds`` and
    ``parsimony`` (:mod:`nasmerc.nas.selection`) and ``evaluation`` / ``oneshot_epochs``
    (``nasmerc.nas.oneshot``: ``scratch``, every candidate trained from its own initialisation, or
    ``oneshot``, every candidate scored with a supernet's weights, then ``finalists``, default
    :data:`~nasmerc.nas.oneshot.ONESHOT_FINALISTS`, retrained from scratch)."""

    @abstractmethod
    def proposer(self, ctx: SearchContext) -> Proposer:
        """The algorithm for one search of ``ctx`` (its space, fixed labels, seed, run folder)."""

    @property
    def oneshot(self) -> bool:
        return getattr(self.config, "evaluation", "scratch") == "oneshot"

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """With one-shot evaluation, every value / float choice left to search must share weights."""
        if self.oneshot:
            oneshot.shared_values(space, fixed)

    def search(self, ctx: SearchContext) -> SearchResult:
        if self.oneshot:
            trained = oneshot.train_supernet(ctx.evaluator, oneshot.supernet_epochs(self.config, ctx.train))
            result = run_trials(self.proposer(ctx), ctx.evaluator, 0, inherit=True)
            result = dataclasses.replace(result, supernet_parameters=trained.parameters,
                                         extra={**result.extra, "oneshot": trained.summary()})
        else:
            result = run_trials(self.proposer(ctx), ctx.evaluator, self.config.candidate_epochs)
        steps = int(getattr(self.config, "local_steps", 0))
        if steps:
            result = local_search(result, ctx, steps, 0 if self.oneshot else self.config.candidate_epochs,
                                  inherit=self.oneshot)
        finalists = oneshot.finalists_of(self.config)
        folds = int(getattr(self.config, "finalist_folds", 0))
        if finalists:
            result = choose_finalist(result, ctx, finalists, folds)
        tolerance = float(getattr(self.config, "parsimony", 0.0))
        if tolerance:
            result = parsimonious(result, ctx, tolerance)
        removal_steps = int(getattr(self.config, "simplify", 0))
        if removal_steps:
            result = simplify(result, ctx, removal_steps, self.config.candidate_epochs, tolerance,
                              self.config.simplify_by, self.config.simplify_moves)
        return result

    def check_data(self, dataset: ConversationDataset) -> None:
        """``finalist_folds`` no more than the training and validation conversations."""
        folds = int(getattr(self.config, "finalist_folds", 0))
        if folds:
            selection_folds(dataset.splits, folds, seed=0, where=f"strategy {self.name!r}: finalist_folds")


def local_search(result: SearchResult, ctx: SearchContext, steps: int, epochs: int,
                 inherit: bool = False) -> SearchResult:
    """Best-improvement local search from the search's best (``local_steps``; White, Nolen and Savani,
    "Exploring the loss landscape in neural architecture search", 2021: local search from a good
    start is a strong NAS method). A step trains every architecture one categorical choice away from
    the current one (:func:`~nasmerc.nas.genome.neighbours`; one already in the log is not trained
    again) as the search trained its candidates, and moves to the best of them when it beats the
    current one; the search ends after ``steps`` steps or at a step that finds nothing better (a local
    optimum). Neighbours are trials of the log, numbered on from the search's (candidate ``n`` trains
    with seed ``seed + n``, so a resumed run replays them from ``candidates.jsonl``), with
    ``local_step`` in their ``trial`` events; one ``local_step`` event per step (``step``,
    ``neighbours``, ``trained``, ``best``, ``moved``). The result is the local optimum, and
    ``extra["local_steps"]`` how many steps moved."""
    evaluator = ctx.evaluator
    specs = ctx.space.choices(ctx.fixed)
    layout = genes(specs, ctx.fixed)
    log, seen = continued_log(result, evaluator)
    current = log.trials[log.best_index]
    moved = 0
    for step in range(1, steps + 1):
        around = {}
        for genome in neighbours(encode(current["arch"], specs, ctx.fixed), layout):
            arch = decode(genome, specs, ctx.fixed)
            around.setdefault(arch_key(arch), arch)
        trained = train_new(around, seen, log, evaluator, epochs, inherit, local_step=step)
        best = current
        for key in around:
            if key in seen and metrics.is_better(evaluator.metric, seen[key]["value"], best["value"]):
                best = seen[key]
        ctx.events.emit("local_step", step=step, neighbours=len(around), trained=trained, best=best["value"],
                        moved=best is not current, metric=evaluator.metric)
        if best is current:
            break
        current, moved = best, moved + 1
    return result_at(result, current, trials=log.trials, local_steps=moved)


def continued_log(result: SearchResult, evaluator: Evaluator) -> tuple["TrialLog", dict[str, dict[str, Any]]]:
    """The trial log of a finished search ``result``, to train more candidates into (its best: the
    result's trial), and its records that were not pruned by :func:`arch_key`."""
    log = TrialLog(evaluator.metric, evaluator.events, trials=list(result.extra["trials"]),
                   best_index=int(result.extra["best_trial"]) - 1)
    return log, {arch_key(t["arch"]): t for t in log.trials if not t.get("pruned")}


def train_new(around: Mapping[str, dict[str, Any]], seen: dict[str, dict[str, Any]], log: "TrialLog",
              evaluator: Evaluator, epochs: int, inherit: bool = False, **extra: Any) -> int:
    """Train the architectures of ``around`` (by :func:`arch_key`) that ``seen`` lacks as trials of
    ``log``, numbered on from its last (candidate ``n`` trains with seed ``seed + n``, so a resumed run
    replays them), each record carrying ``extra``; ``seen`` gains them. How many were trained."""
    new = [arch for key, arch in around.items() if key not in seen]
    first = len(log.trials)
    scores = evaluator.score_all([CandidateRequest(arch, epochs, evaluator.seed + first + k, inherit=inherit)
                                  for k, arch in enumerate(new)]) if new else []
    for arch, score in zip(new, scores):
        seen[arch_key(arch)] = log.add(arch, score, eligible=not score.stopped, **extra, **outcome(score, inherit))
    return len(new)


NULL_CHOICES = ("none", "off", "zero")
"""Candidate names that leave out what their choice would add: no context model, no CRF, no path."""


def is_null(candidate: Any) -> bool:
    """Whether ``candidate`` leaves its component out: a name of :data:`NULL_CHOICES` or the number 0
    (a loss weight of 0)."""
    if isinstance(candidate, str):
        return candidate in NULL_CHOICES
    return isinstance(candidate, (int, float)) and not isinstance(candidate, bool) and candidate == 0


def removals(arch: Mapping[str, Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every architecture that leaves one more component of ``arch`` out: one op or value choice not in
    ``fixed`` set to a null candidate (:func:`is_null`) it does not hold yet; by :func:`arch_key`, in
    spec order."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec.kind not in ("op", "value") or spec.label in fixed:
            continue
        for candidate in spec.candidates:
            if is_null(candidate) and arch[spec.label] != candidate:
                smaller = {**arch, spec.label: candidate}
                out.setdefault(arch_key(smaller), smaller)
    return out


def smaller(arch: Mapping[str, Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any],
            size: Callable[[Mapping[str, Any]], int]) -> dict[str, dict[str, Any]]:
    """The :func:`removals` of ``arch`` and every architecture one op or value choice away (not in
    ``fixed``) whose model has fewer parameters by ``size``: a smaller encoder, fusion or context
    model as well as none, by :func:`arch_key`, in spec order."""
    out = removals(arch, specs, fixed)
    base = size(arch)
    for spec in specs:
        if spec.kind not in ("op", "value") or spec.label in fixed:
            continue
        for candidate in spec.candidates:
            other = {**arch, spec.label: candidate}
            key = arch_key(other)
            if candidate != arch[spec.label] and key not in out and size(other) < base:
                out[key] = other
    return out


def simplify(result: SearchResult, ctx: SearchContext, steps: int, epochs: int, tolerance: float,
             by: str = "value", moves: str = "removals") -> SearchResult:
    """Backward elimination from the search's result (``simplify``): a step trains, as the search
    trained its candidates, every architecture that leaves one more component out (:func:`removals`: no
    context model, no CRF, a modality's path off, a loss weight 0; ``moves="smaller"``: also every
    change of one choice to a model with fewer parameters, :func:`smaller`; ``moves="removals_first"``:
    the removals, and the smaller changes only at a step where no removal is within, so a component
    the data does not need is dropped before another is shrunk), and moves to the best of
    them when it is within ``tolerance`` of the best validation value of the whole search (the
    parsimony rule of :func:`nasmerc.nas.selection.parsimonious` applied to what the search did not
    try: a component the validation split cannot tell is needed is left out or made smaller). Of the
    moves within, ``by="value"`` takes the best value (then the fewest parameters), ``by="parameters"``
    the fewest parameters (then the best value), as ``parsimony`` chooses. It ends after ``steps``
    steps or at a step whose moves all fall below. Moves are numbered trials of the log, with
    ``simplify_step`` in their ``trial`` events (a resumed run replays them); one ``simplify_step``
    event per step (``step``, ``removals``: the moves, ``trained``, ``within``, ``removed``: the label
    left out, ``label=candidate`` for a smaller candidate, or ``None``). ``extra["simplify"]`` records
    the tolerance, the rule, the moves, the reference value and the changes made."""
    evaluator = ctx.evaluator
    specs = ctx.space.choices(ctx.fixed)
    log, seen = continued_log(result, evaluator)
    sign = 1.0 if evaluator.higher_is_better else -1.0
    top = max(sign * t["value"] for t in eligible(log.trials))
    current, removed = log.trials[log.best_index], []
    sizes: dict[str, int] = {}

    def size(arch: Mapping[str, Any]) -> int:
        key = arch_key(arch)
        if key not in sizes:
            sizes[key] = count_parameters(ctx.space.build(dict(arch)))
        return sizes[key]

    def within_of(around: Mapping[str, Any]) -> list[dict]:
        return [seen[key] for key in around if key in seen and eligible([seen[key]])
                and sign * seen[key]["value"] >= top - tolerance]

    for step in range(1, steps + 1):
        around = (smaller(current["arch"], specs, ctx.fixed, size) if moves == "smaller" else
                  removals(current["arch"], specs, ctx.fixed))
        trained = train_new(around, seen, log, evaluator, epochs, simplify_step=step)
        within = within_of(around)
        if moves == "removals_first" and not within:
            around = smaller(current["arch"], specs, ctx.fixed, size)
            trained += train_new(around, seen, log, evaluator, epochs, simplify_step=step)
            within = within_of(around)
        order = ((lambda t: (sign * t["value"], -int(t["parameters"]), -t["trial"])) if by == "value" else
                 (lambda t: (-int(t["parameters"]), sign * t["value"], -t["trial"])))
        chosen = max(within, key=order, default=None)
        label = None if chosen is None else changed(current["arch"], chosen["arch"])
        ctx.events.emit("simplify_step", step=step, removals=len(around), trained=trained, within=len(within),
                        removed=label, metric=evaluator.metric)
        if chosen is None:
            break
        current = chosen
        removed.append(label)
    return result_at(result, current, trials=log.trials,
                     simplify={"tolerance": tolerance, "by": by, "moves": moves, "reference": sign * top,
                               "removed": removed})


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The one choice ``after`` changes in ``before``: its label when it is left out (:func:`is_null`),
    else ``label=candidate``."""
    label = next(k for k in after if after[k] != before[k])
    return label if is_null(after[label]) else f"{label}={after[label]}"


SIMPLIFY_BY = ("value", "parameters")
"""How a ``simplify`` step chooses among the moves within the tolerance (:func:`simplify`)."""
SIMPLIFY_MOVES = ("removals", "smaller", "removals_first")
"""What a ``simplify`` step tries: :func:`removals` or :func:`smaller` (:func:`simplify`)."""


def check_simplify(where: str, steps: int, study: str, finalists: int, evaluation: str, by: str = "value",
                   moves: str = "removals") -> None:
    """``simplify`` >= 0, ``simplify_by`` one of :data:`SIMPLIFY_BY` and ``simplify_moves`` one of
    :data:`SIMPLIFY_MOVES`, and no simplify with a shared
    study (it runs in one process), finalists (they are trained longer than the removals would be) or
    one-shot evaluation (removals train from scratch)."""
    checks.at_least(where, 0, simplify=steps)
    checks.one_of(where, "simplify_by", by, SIMPLIFY_BY)
    checks.one_of(where, "simplify_moves", moves, SIMPLIFY_MOVES)
    if not steps:
        return
    if study:
        raise NasmercError(f"{where}: simplify={steps} with study={study!r}: it runs in one process; run it "
                           "without a shared study (simplify=0 there)")
    if finalists:
        raise NasmercError(f"{where}: simplify={steps} with finalists={finalists}: removals are compared with "
                           "candidates at candidate_epochs, finalists train longer; use one of them")
    if evaluation != "scratch":
        raise NasmercError(f"{where}: simplify={steps} with evaluation={evaluation!r}: removals train from "
                           "scratch; use evaluation=scratch")


def climbs(config: Any) -> str:
    """The options of ``config`` that train architectures after the search, from scratch on the metric
    (``local_steps``, ``simplify``), as ``key=value`` for an error message; empty when none is set."""
    return ", ".join(f"{k}={getattr(config, k)}" for k in ("local_steps", "simplify") if getattr(config, k, 0))


def check_local_steps(where: str, steps: int, study: str = "") -> None:
    """``local_steps`` >= 0, and none with a study that workers share (a local search runs in one process)."""
    checks.at_least(where, 0, local_steps=steps)
    if steps and study:
        raise NasmercError(f"{where}: local_steps={steps} with study={study!r}: a local search runs in one "
                           "process; run it without a shared study (local_steps=0 there)")


# -- the weights of individuals (HAEMSA eqs. 9-10) ----------------------------------------------------
Weights = dict  # a state dict: name -> tensor


def blend_weights(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float,
                  names: Sequence[str] | None = None) -> Weights:
    """HAEMSA eq. 9 on weights, ``w_o = alpha w_i + (1 - alpha) w_j``, for every floating-point tensor
    that ``a`` (``w_i``) and ``b`` (``w_j``) both hold under a name of ``names`` (default: all of
    ``a``'s) with the same shape; every other tensor of ``a`` is copied as it is."""
    out: Weights = {}
    names = None if names is None else set(names)
    for name, x in a.items():
        y = b.get(name)
        blend = (names is None or name in names) and y is not None and y.shape == x.shape and x.is_floating_point()
        out[name] = alpha * x + (1.0 - alpha) * y.to(x.dtype) if blend else x.clone()
    return out


def perturb_weights(weights: Mapping[str, torch.Tensor], names: Sequence[str], sigma: float, prob: float,
                    generator: torch.Generator) -> Weights:
    """HAEMSA eq. 10 on weights, ``w' = w + N(0, sigma)``, on each element of the floating-point tensors
    named in ``names`` with probability ``prob`` (as DEAP's Gaussian mutation mutates each attribute
    with ``indpb``; ``prob = 1`` perturbs every weight). For each tensor, in ``weights``' order, the
    mask ``U(0, 1) < prob`` is drawn from ``generator`` first, then the noise."""
    out: Weights = {}
    names = set(names)
    for name, w in weights.items():
        if name not in names or not w.is_floating_point() or sigma == 0 or prob == 0:
            out[name] = w.clone()
            continue
        mask = torch.rand(w.shape, generator=generator) < prob
        noise = torch.randn(w.shape, generator=generator) * sigma
        out[name] = w + (mask * noise).to(w.dtype)
    return out


def inherit_weights(fresh: Mapping[str, torch.Tensor], names: Sequence[str], fitter: Mapping[str, torch.Tensor],
                    other: Mapping[str, torch.Tensor] | None = None, alpha: float | None = None,
                    fitter_is_i: bool = True) -> Weights:
    """The starting weights of an offspring whose model has the state dict ``fresh`` (its seeded
    initialisation) and the parameters ``names``, from its parents' weights.

    HAEMSA is silent on parents of different architectures, so: a parameter both parents hold by name
    and shape is blended by eq. 9 (:func:`blend_weights`, ``w_i`` the parent the offspring stands in for:
    ``fitter`` when ``fitter_is_i``, else ``other``); every other tensor (buffers too) comes from the
    fitter parent where it has it with that shape, else from the other parent, else it keeps its
    fresh initialisation. Without ``other`` (no crossover) the offspring inherits from ``fitter`` alone."""
    out: Weights = {}
    for name, x in fresh.items():
        held = [p[name] for p in (fitter, other) if p is not None and name in p and p[name].shape == x.shape]
        out[name] = held[0].clone() if held else x.clone()
    if other is not None and alpha is not None:
        w_i, w_j = (fitter, other) if fitter_is_i else (other, fitter)
        shared = [n for n in names if n in fresh and all(n in p and p[n].shape == fresh[n].shape for p in (w_i, w_j))]
        blended = blend_weights({n: w_i[n] for n in shared}, w_j, alpha)
        out.update(blended)
    return out
