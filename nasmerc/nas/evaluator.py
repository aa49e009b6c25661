"""The evaluator: how anything in a search is trained. Strategies never build a trainer themselves.

A strategy is handed one :class:`Evaluator` (``ctx.evaluator``) and asks it for one of two things:

- :meth:`Evaluator.fit`: train a model it holds (a supernet with its hooks attached, or the one
  model of a fixed space) through the ordinary training loop, with the run's events, and get the
  :class:`~nasmerc.train.trainer.FitResult`; :meth:`Evaluator.supernet` and :meth:`Evaluator.build`
  make the model, seeded;
- :meth:`Evaluator.score_all`: train and score candidate architectures for a budget of epochs each
  (:class:`CandidateRequest`), silently (a candidate's epochs would confuse the search's dashboard),
  and get a :class:`CandidateResult` for each, in order.

The evaluator owns what must not differ between strategies: seeding (a model is built after
``torch.manual_seed`` of the run seed, or of the candidate's seed; the trainer seeds its own masks
and batches), the device, and where the work runs. With ``workers = 1`` candidates train in this
process; with ``workers > 1`` in a pool of spawned processes with the parent's torch thread count,
so the same requests give the same results either way. This is the seam that resume (checkpoints
of finished candidates), distributed workers and weight-sharing evaluation plug into: a strategy
that asks through it gets them without change.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nasmerc import metrics
from nasmerc.data.conversation import Conversation, ConversationDataset
from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import count_parameters
from nasmerc.train.trainer import FitResult, TrainConfig, Trainer, TrainHook


@dataclass
class CandidateRequest:
    """One candidate to train and score: ``arch`` for ``epochs`` epochs, built and trained with ``seed``.

    ``stop(epoch, value)``, when given, is asked after every epoch (0-based ``epoch``, its validation
    value); ``True`` ends the candidate's training there (TPE's pruning). It runs in this process, so
    a request with ``stop`` is never sent to a worker process.
    """

    arch: dict[str, Any]
    epochs: int
    seed: int
    stop: Callable[[int, float], bool] | None = None


@dataclass
class CandidateResult:
    """One trained candidate: the best validation ``value`` of the primary metric and all its
    ``metrics`` at that epoch, its parameter count, the seconds it took, every epoch's validation
    value (``history``) and whether ``stop`` ended it early (``stopped``)."""

    value: float
    metrics: dict[str, float]
    parameters: int
    seconds: float
    history: list[float] = field(default_factory=list)
    stopped: bool = False


@dataclass
class _Job:
    """What a worker process needs for one candidate (picklable: the device as a string)."""

    space: SearchSpace
    dataset: ConversationDataset
    train: TrainConfig
    request: CandidateRequest
    device: str


def seeded_build(space: SearchSpace, arch: Mapping[str, Any], seed: int) -> nn.Module:
    """``space.build(arch)`` after ``torch.manual_seed(seed)``: the same seed, the same initial weights."""
    torch.manual_seed(seed)
    return space.build(arch)


def _score(space: SearchSpace, dataset: ConversationDataset, train: TrainConfig, request: CandidateRequest,
           device: torch.device | str) -> CandidateResult:
    """Build ``request.arch`` after ``torch.manual_seed(request.seed)``, train it ``request.epochs`` epochs
    with a silent event stream and return its best validation value."""
    start = time.time()
    model = seeded_build(space, request.arch, request.seed)
    trainer = Trainer(model, dataset.signature, dataclasses.replace(train, epochs=request.epochs), device=device,
                      seed=request.seed, events=Events())
    history: list[float] = []
    stopped = [False]

    def stop(epoch: int, value: float) -> bool:
        history.append(float(value))
        stopped[0] = request.stop is not None and bool(request.stop(epoch, value))
        return stopped[0]

    fit = trainer.fit(dataset.split("train"), dataset.split("valid"), stop=stop)
    if not np.isfinite(fit.best_value):
        raise NasmercError(f"candidate {dict(request.arch)} gave no finite validation {trainer.metric}")
    return CandidateResult(float(fit.best_value), dict(fit.best_metrics), count_parameters(model),
                           time.time() - start, history, stopped[0])


def _run_job(job: _Job) -> CandidateResult:
    """:func:`_score` of one job: a top-level function, so a process pool can pickle it."""
    return _score(job.space, job.dataset, job.train, job.request, job.device)


def _init_worker(threads: int) -> None:
    """Process-pool initializer: the parent's torch thread count, so results match a serial run."""
    torch.set_num_threads(threads)


class Evaluator:
    """Trains models and candidates for one search (see the module docstring)."""

    def __init__(self, space: SearchSpace, dataset: ConversationDataset, train: TrainConfig, *,
                 device: torch.device | str = "cpu", seed: int = 0, events: Events | None = None,
                 run_dir: Path | None = None, fixed: Mapping[str, Any] | None = None, workers: int = 1) -> None:
        if workers < 1:
            raise NasmercError(f"--workers {workers}: expected an integer >= 1")
        self.space = space
        self.dataset = dataset
        self.train = train
        self.device = torch.device(device)
        self.seed = seed
        self.events = events if events is not None else Events()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.fixed = dict(fixed or {})
        self.workers = workers
        self.metric = metrics.primary_metric(dataset.signature.task)
        self.higher_is_better = metrics.HIGHER_IS_BETTER[self.metric]
        self._pool: Executor | None = None

    # -- models a strategy holds -----------------------------------------------------------------
    def supernet(self) -> nn.Module:
        """The space's supernet with the run's ``fixed`` values, built after seeding with the run seed."""
        torch.manual_seed(self.seed)  # the supernet's initial weights come from the run seed
        return self.space.supernet(self.fixed)

    def build(self, arch: Mapping[str, Any], seed: int | None = None) -> nn.Module:
        """``space.build(arch)`` after seeding with ``seed`` (default: the run seed)."""
        return seeded_build(self.space, arch, self.seed if seed is None else seed)

    def fit(self, model: nn.Module, *, hooks: Sequence[TrainHook] = (),
            on_best: Callable[[int, float], None] | None = None, train: Sequence[Conversation] | None = None,
            parameters: Sequence[nn.Parameter] | None = None) -> FitResult:
        """Train ``model`` through the training loop with the run's events, on ``train`` (default: the
        training split) and validated on the validation split. ``hooks`` see every step and epoch;
        ``on_best(epoch, value)`` is called at every new best epoch; ``parameters`` are the weights the
        trainer's optimiser steps (default: every trainable parameter of ``model``)."""
        trainer = Trainer(model, self.dataset.signature, self.train, device=self.device, seed=self.seed,
                          events=self.events, parameters=parameters)
        return trainer.fit(self.dataset.split("train") if train is None else train, self.dataset.split("valid"),
                           hooks=hooks, on_best=on_best)

    # -- candidates --------------------------------------------------------------------------------
    def score_all(self, requests: Sequence[CandidateRequest]) -> list[CandidateResult]:
        """Train and score every request; the results in the order of the requests."""
        if self.workers == 1 or len(requests) < 2 or any(r.stop is not None for r in requests):
            return [_score(self.space, self.dataset, self.train, r, self.device) for r in requests]
        jobs = [_Job(self.space, self.dataset, self.train, r, str(self.device)) for r in requests]
        return list(self._executor().map(_run_job, jobs))

    def _executor(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(torch.get_num_threads(),))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
