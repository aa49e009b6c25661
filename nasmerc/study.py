"""A study that workers share, seen as slots; and ``nasmerc study``, its state as a table.

The study's work is a list of slots (``nasmerc.nas.storage`` says how workers claim, beat and retry
them): candidate ``i`` of the search is every trial whose user attribute ``slot`` is ``i``, the first
try and the retries of a worker that died. A slot is *done* when one of its trials is ``COMPLETE``
or ``PRUNED``, *pending* while one is ``WAITING`` or ``RUNNING`` (or a retry is on its way), *lost*
when its retries are used up (:func:`slot_states`). Its record (:func:`slot_records`) is its first
finished trial, and the study's best is the first best record in slot order (:func:`best_record`),
as one process would choose.

:class:`StudyProposer` is the trial loop's proposer over such a study: random search and TPE use it
as it is, evolution adds its generations (``strategies/evolution.py``).

:func:`study_state` reads a study (of any storage nasmerc opens) into a :class:`StudyState`, and
:func:`format_state` prints it: trials by state, the best value and architecture, and the workers
seen (``nasmerc study URL NAME``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nasmerc.errors import NasmercError
from nasmerc.nas import storage
from nasmerc.nas.evaluator import CandidateResult
from nasmerc.nas.population import Proposal, Proposer, TrialLog, supernet_parameters
from nasmerc.nas.strategy import SearchContext, SearchResult

STATES = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")


def is_individual(trial: Any) -> bool:
    """Whether ``trial`` is a candidate (it has a ``slot``), not one of evolution's breeding slots."""
    return "slot" in trial.user_attrs and trial.user_attrs.get("role") not in ("breed", "unused")


def individuals(trials: Iterable[Any]) -> list[Any]:
    """The trials that are candidates (:func:`is_individual`)."""
    return [t for t in trials if is_individual(t)]


def slot_states(trials: Iterable[Any]) -> dict[int, str]:
    """``done``, ``pending`` or ``lost`` for each slot of ``trials`` (see the module docstring)."""
    from optuna.trial import TrialState

    by_slot: dict[int, list[Any]] = {}
    for t in individuals(trials):
        by_slot.setdefault(int(t.user_attrs["slot"]), []).append(t)
    states = {}
    for slot, group in by_slot.items():
        if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in group):
            states[slot] = "done"
        elif any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in group) \
                or len(group) <= storage.MAX_RETRIES:
            states[slot] = "pending"  # a retry is waiting, running, or being enqueued
        else:
            states[slot] = "lost"
    return states


def slot_records(trials: Iterable[Any]) -> dict[int, dict[str, Any]]:
    """The first finished trial of each slot as a trial record (``trial`` is the slot's 1-based number)."""
    from optuna.trial import TrialState

    out: dict[int, dict[str, Any]] = {}
    for t in individuals(trials):
        slot = int(t.user_attrs["slot"])
        if slot in out or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        a = t.user_attrs
        record = {"trial": slot + 1, "arch": a["arch"], "value": a.get("value"), "metrics": a.get("metrics", {}),
                  "parameters": a.get("parameters", 0), "seconds": a.get("seconds", 0.0), "worker": a.get("worker"),
                  "study_trial": t.number}
        if "generation" in a:
            record["generation"] = a["generation"]
        if t.state == TrialState.PRUNED:
            record["pruned"] = True
        out[slot] = record
    return dict(sorted(out.items()))


def best_record(records: Iterable[Mapping[str, Any]], higher: bool) -> Mapping[str, Any] | None:
    """The first best record in slot order (pruned ones never), as one process would choose."""
    best = None
    for r in records:
        value = r.get("value")
        if r.get("pruned") or value is None or not math.isfinite(value):
            continue
        if best is None or (value > best["value"] if higher else value < best["value"]):
            best = r
    return best


class StudyProposer(Proposer):
    """The trial loop's proposer over a :class:`storage.SharedStudy` whose slots are all enqueued up front
    (random search, TPE): ``ask`` claims ``WAITING`` trials, ``tell`` records their results, and the
    search is done when every slot is done or lost. :meth:`propose` (the architecture of a claimed
    trial) and :meth:`values` are the strategy's part."""

    def __init__(self, ctx: SearchContext, shared: storage.SharedStudy, slots: int) -> None:
        super().__init__(ctx)
        self.shared = shared
        self.slots = slots
        self.metric = ctx.evaluator.metric
        self.mine: list[int] = []
        self.overtaken: list[int] = []

    def done(self) -> bool:
        self.shared.fail_stale()
        states = slot_states(self.shared.trials())
        return len(states) >= self.slots and all(s != "pending" for s in states.values())

    def ask(self, n: int) -> list[Proposal]:
        self.shared.fail_stale()
        proposals = []
        for frozen in self.shared.trials():
            if len(proposals) == n:
                break
            if frozen.state.name == "WAITING" and is_individual(frozen):
                trial = self.claim(frozen)
                if trial is not None:
                    proposals.append(self.propose(trial, dict(frozen.user_attrs)))
        if not proposals:
            self.shared.pause()
        return proposals

    def claim(self, frozen: Any) -> Any | None:
        return self.shared.claim(frozen)

    def propose(self, trial: Any, attrs: dict[str, Any]) -> Proposal:
        """The proposal of a claimed trial: its enqueued ``arch`` (random search; TPE suggests one)."""
        slot = int(attrs["slot"])
        return Proposal(dict(attrs["arch"]), {"study_trial": slot + 1}, ref=trial, index=slot)

    def values(self, proposal: Proposal, result: CandidateResult) -> list[float]:
        """What the study is told for a finished candidate (default: its metric value)."""
        return [result.value]

    def tell(self, proposal: Proposal, result: CandidateResult, trial: int) -> None:
        attrs = {"arch": proposal.arch, "value": result.value, "metrics": result.metrics,
                 "parameters": int(result.parameters), "seconds": result.seconds}
        if self.shared.finish(proposal.ref, attrs, values=self.values(proposal, result), pruned=result.stopped):
            self.mine.append(int(proposal.index) + 1)
        else:  # this worker was taken for dead (no heartbeat for 3 beats): the slot's retry counts
            self.overtaken.append(int(proposal.index) + 1)

    def abandon(self, proposals: Sequence[Proposal]) -> None:
        for proposal in proposals:
            self.shared.give_back(proposal.ref)

    def records(self) -> dict[int, dict[str, Any]]:
        return slot_records(self.shared.trials())

    def result(self, log: TrialLog, best: Mapping[str, Any] | None = None, **extra: Any) -> SearchResult:
        """The study's best slot (``best`` when the strategy chose it), the same for every worker."""
        records = self.records()
        best = best if best is not None else best_record(records.values(), self.ctx.evaluator.higher_is_better)
        if best is None:
            raise NasmercError(f"study {self.shared.name!r}: no candidate finished: expected at least one trial")
        trials = list(records.values())
        lost = sorted(s + 1 for s, state in slot_states(self.shared.trials()).items() if state == "lost")
        workers = sorted({r["worker"] for r in trials if r.get("worker")})
        return SearchResult(
            arch=dict(best["arch"]), metric=self.metric, best_value=float(best["value"]),
            best_epoch=int(extra.pop("best_epoch", best["trial"])),
            supernet_parameters=supernet_parameters(self.ctx.space, self.ctx.fixed, trials),
            derived_parameters=int(best["parameters"]),
            extra={"valid": best["metrics"], "best_trial": best["trial"], "trials": trials,
                   "study": storage.storage_ref(self.shared.storage_value), "study_name": self.shared.name,
                   "worker": self.shared.worker, "worker_trials": sorted(self.mine), "workers": workers,
                   "lost_trials": lost, **extra,
                   **({"overtaken_trials": self.overtaken, "heartbeat_error": self.shared.beat_error}
                      if self.overtaken else {})})

    def close(self) -> None:
        self.shared.close()


# -- nasmerc study ----------------------------------------------------------------------------------
@dataclass
class StudyState:
    """What ``nasmerc study`` shows of one study."""

    name: str
    storage: str
    counts: dict[str, int]
    direction: str
    setup: dict[str, Any] | None = None
    slots: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    workers: list[tuple[str, int, str]] = field(default_factory=list)
    """(worker, trials finished, run folder) for every worker seen in the study's trials."""


def _open_for_reading(value: str) -> tuple[Any, str]:
    """The storage of ``value`` (a database URL, ``journal:PATH`` or a journal file's path), refusing one
    that is not there rather than making it."""
    if "://" not in value and not value.startswith("journal:"):
        value = f"journal:{value}"
    journal = storage.journal_path(value)
    if journal is not None and not journal.is_file():
        raise NasmercError(f"study: storage {storage.storage_ref(value)!r}: no such journal file")
    if value.startswith("sqlite:///"):
        path = Path(value[len("sqlite:///"):])
        if str(path) != ":memory:" and not path.is_file():
            raise NasmercError(f"study: storage {storage.storage_ref(value)!r}: no such database file")
    return storage.open_storage(value, None, "study"), value


def study_state(url: str, name: str) -> StudyState:
    """Read study ``name`` of storage ``url`` (see the module docstring); one line for a storage that
    cannot be opened or read, or a study it does not hold."""
    import optuna

    opened, value = _open_for_reading(url)
    ref = storage.storage_ref(value)
    try:
        names = storage.study_names(opened, ref, "study")
        if name not in names:
            held = f"it holds {', '.join(map(repr, sorted(names)))}" if names else "it holds no study"
            raise NasmercError(f"study: storage {ref!r} has no study {name!r} ({held})")
        study = optuna.load_study(study_name=name, storage=opened)
        trials = study.get_trials(deepcopy=False)
        setup = study.user_attrs.get(storage.SETUP_KEY)
        direction = study.directions[0].name.lower()
    finally:
        storage.close_storage(opened)
    counts = Counter(t.state.name for t in trials)
    state = StudyState(name, ref, {s: counts.get(s, 0) for s in STATES}, direction, setup)
    if any(is_individual(t) for t in trials):
        states = Counter(slot_states(trials).values())
        state.slots = {s: states.get(s, 0) for s in ("done", "pending", "lost")}
        records = list(slot_records(trials).values())
    else:  # a study nasmerc did not share: its complete trials as they are
        records = [{"trial": t.number + 1, "arch": t.user_attrs.get("arch", t.params), "value": t.values[0],
                    "worker": t.user_attrs.get("worker")} for t in trials if t.state.name == "COMPLETE"]
    best = best_record(records, direction == "maximize")
    state.best = dict(best) if best is not None else None
    seen: dict[str, list[Any]] = {}
    for t in trials:
        worker = t.user_attrs.get("worker")
        if worker:
            entry = seen.setdefault(worker, [0, t.user_attrs.get("run", "")])
            entry[0] += t.state.name in ("COMPLETE", "PRUNED")
    state.workers = [(w, n, run) for w, (n, run) in sorted(seen.items())]
    return state


def format_state(state: StudyState) -> str:
    """``state`` as the lines ``nasmerc study`` prints."""
    setup = state.setup or {}
    about = (f": {setup.get('strategy')} on {setup.get('space')}, seed {setup.get('seed')}" if setup
             else " (not started by nasmerc)")
    lines = [f"study {state.name!r} on {state.storage}{about}", f"  {'state':<10}{'trials':>7}"]
    lines += [f"  {s:<10}{n:>7}" for s, n in state.counts.items()]
    if state.slots:
        lines.append(f"  slots: {state.slots['done']} done, {state.slots['pending']} pending, "
                     f"{state.slots['lost']} lost")
    metric = setup.get("metric", "value")
    if state.best is None:
        lines.append("best: none yet (no trial has finished)")
    else:
        by = f" by {state.best['worker']}" if state.best.get("worker") else ""
        lines.append(f"best valid {metric} {state.best['value']:.4f}: trial {state.best['trial']}{by} "
                     f"({state.direction})")
        arch = state.best.get("arch") or {}
        lines += [f"  {label}: {choice}" for label, choice in arch.items()]
    lines.append(f"workers seen: {len(state.workers)}")
    lines += [f"  {worker}  {n} trials  {run}" for worker, n, run in state.workers]
    return "\n".join(lines)
