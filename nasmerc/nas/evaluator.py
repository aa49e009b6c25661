"""The evaluator: how anything in a search is trained. Strategies never build a trainer themselves.

A strategy is handed one :class:`Evaluator` (``ctx.evaluator``) and asks it for one of two things:

- :meth:`Evaluator.fit`: train a model it holds (a supernet with its hooks attached, or the one
  model of a fixed space) through the ordinary training loop, with the run's events, and get the
  :class:`~nasmerc.train.trainer.FitResult`; :meth:`Evaluator.supernet` and :meth:`Evaluator.build`
  make the model, seeded;
- :meth:`Evaluator.score_all`: train and score candidate architectures for a budget of epochs each
  (:class:`CandidateRequest`), silently (a candidate's epochs would confuse the search's dashboard),
  and get a :class:`CandidateResult` for each, in order. A request may start from given weights
  (``init``: HAEMSA's evolved weights) and ask for its trained weights back (``keep``); with
  ``epochs = 0`` the candidate is only scored;
- :func:`nasmerc.nas.oneshot.train_supernet` trains the space's supernet one uniformly sampled path
  per step (single-path one-shot) and hands it to the evaluator; from then on a request with ``inherit`` is scored
  with the supernet's weights on its path, in milliseconds, without training.

A candidate whose loss stops being finite (:class:`~nasmerc.errors.Diverged`) is a failed candidate,
not a failed search: its result has ``diverged`` (the message), ``stopped`` and the metric's worst
value, it is recorded like any other (so a resumed run replays it), and the trial loop never takes it
as the best.

The evaluator owns what must not differ between strategies: seeding (a model is built after
``torch.manual_seed`` of the run seed, or of the candidate's seed; the trainer seeds its own masks
and batches), the device, and where the work runs. With ``workers = 1`` candidates train in this
process; with ``workers > 1`` in a pool of spawned processes with the parent's torch thread count,
so the same requests give the same results either way. ``workers = 0`` (``--workers 0``) chooses the
count at the first generation: on CUDA as many as the free memory holds of the measured peak of one
candidate's training step, each in its own process and CUDA stream; on a CPU one
(``nasmerc.nas.device_share``).

With a run folder it is also what makes a run resumable, without the strategy doing anything:

- :meth:`Evaluator.fit` saves the training loop's checkpoint after every epoch (``checkpoint.pt``,
  ``checkpoint-2.pt`` for a run's second training ...) and restores one it finds;
- :meth:`Evaluator.score_all` appends every finished candidate to ``candidates.jsonl`` (its request
  and its result, exactly) and answers a request found there from the file. A resumed population
  search replays its proposer from the seed; every candidate that finished before the kill comes
  back from the file in the order it was asked, so the proposer takes the same path and only the
  work that had not finished is done again. A cached candidate asked with a ``stop`` replays its
  epochs' values through ``stop``, so a pruner sees what it saw the first time.

  A request with ``init`` is keyed by a digest of those weights too, and one with ``keep`` has its
  trained weights in ``weights/`` (written before its line), so an evolution of weights replays exactly;
- :func:`nasmerc.nas.oneshot.train_supernet` trains through :meth:`Evaluator.fit`, so the supernet's
  training resumes from its checkpoint, and inherited scores come back from ``candidates.jsonl`` as well.

Distributed workers and weight-sharing evaluation plug in here too: a strategy that asks through
the evaluator gets them without change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nasmerc import metrics
from nasmerc.data.conversation import Conversation, ConversationDataset
from nasmerc.errors import Diverged, NasmercError
from nasmerc.events import Events
from nasmerc.io import read_torch, write_torch
from nasmerc.nas import device_share
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import count_parameters
from nasmerc.train.checkpoint import Checkpoint
from nasmerc.train.trainer import FitResult, TrainConfig, Trainer, TrainHook

CANDIDATES_FILE = "candidates.jsonl"
WORST_LOWER = 1e30
"""The value of a diverged candidate for a metric where lower is better (and its ``loss``): finite, so
``candidates.jsonl`` stays strict JSON."""
WEIGHTS_DIR = "weights"


@dataclass
class CandidateRequest:
    """One candidate to train and score: ``arch`` for ``epochs`` epochs, built and trained with ``seed``.

    ``stop(epoch, value)``, when given, is asked after every epoch (0-based ``epoch``, its validation
    value); ``True`` ends the candidate's training there (TPE's pruning). It runs in this process, so
    a request with ``stop`` is never sent to a worker process.

    ``init``: the weights the candidate starts from (a state dict of its model; default: the seeded
    initialisation); ``keep``: return the trained weights in :attr:`CandidateResult.state`;
    ``epochs = 0``: score without training. ``inherit``: score with the weights of the supernet
    :func:`nasmerc.nas.oneshot.train_supernet` trained (``epochs`` must be 0).
    """

    arch: dict[str, Any]
    epochs: int
    seed: int
    stop: Callable[[int, float], bool] | None = None
    init: dict[str, torch.Tensor] | None = None
    keep: bool = False
    inherit: bool = False


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
    state: dict[str, torch.Tensor] | None = None
    """The trained weights (CPU tensors), when the request asked for them (``keep``)."""
    diverged: str = ""
    """Why its training stopped with a loss that is not finite (then ``stopped``, and ``value`` the
    metric's worst): a failed candidate, never a search's result, while the search goes on."""

    def record(self) -> dict[str, Any]:
        """The result as ``candidates.jsonl`` keeps it: everything but the weights."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "state"}


def weights_digest(weights: Mapping[str, torch.Tensor]) -> str:
    """A digest of a state dict's names, shapes, dtypes and values: what keys a request's ``init``."""
    digest = hashlib.sha1()
    for name, tensor in weights.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class _Job:
    """What a worker process needs for one candidate (picklable: the device as a string)."""

    space: SearchSpace
    dataset: ConversationDataset
    train: TrainConfig
    request: CandidateRequest
    device: str


class CandidateCache:
    """``candidates.jsonl``: one line per finished candidate, ``{"key": ..., "result": ...}``,
    appended and flushed to disk as each finishes (a partly written last line is ignored); the
    trained weights of a ``keep`` request in ``weights/<digest of its key>.pt``, written first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.weights = path.parent / WEIGHTS_DIR
        self.results: dict[str, CandidateResult] = {}
        if path.exists():
            with open(path, "rb") as fh:
                for raw in fh:
                    try:
                        line = json.loads(raw.decode("utf-8"))
                        self.results[line["key"]] = CandidateResult(**line["result"])
                    except (ValueError, KeyError, TypeError):
                        continue  # the line a kill cut short

    @staticmethod
    def key(request: CandidateRequest, inherit: str = "") -> str:
        """The request as JSON; ``init``, ``keep`` and ``inherit`` (the supernet's tag) only when set,
        so a plain request keeps the key it always had."""
        key: dict[str, Any] = {"arch": request.arch, "epochs": request.epochs, "seed": request.seed}
        if request.init is not None:
            key["init"] = weights_digest(request.init)
        if request.keep:
            key["keep"] = True
        if request.inherit:
            key["inherit"] = inherit
        return json.dumps(key, sort_keys=True)

    def _weights_file(self, key: str) -> Path:
        return self.weights / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"

    def get(self, request: CandidateRequest, inherit: str = "") -> CandidateResult | None:
        key = self.key(request, inherit)
        result = self.results.get(key)
        if result is None or not request.keep:
            return result
        path = self._weights_file(key)
        if not path.exists():
            return None  # its weights were not kept: train it again
        if result.state is None:
            result.state = read_torch(path, "a candidate's trained weights (remove it to train the candidate again)")
        return result

    def put(self, request: CandidateRequest, result: CandidateResult, inherit: str = "") -> None:
        key = self.key(request, inherit)
        self.results[key] = result
        if request.keep and result.state is not None:
            self.weights.mkdir(exist_ok=True)
            write_torch(self._weights_file(key), result.state)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "result": result.record()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _replay(request: CandidateRequest, result: CandidateResult) -> CandidateResult:
    """A cached result, its epochs shown to the request's ``stop`` again (see the module docstring)."""
    if request.stop is not None:
        for epoch, value in enumerate(result.history):
            if request.stop(epoch, value):
                break
    return result


def seeded_build(space: SearchSpace, arch: Mapping[str, Any], seed: int) -> nn.Module:
    """``space.build(arch)`` after ``torch.manual_seed(seed)``: the same seed, the same initial weights."""
    torch.manual_seed(seed)
    return space.build(arch)


def _score(space: SearchSpace, dataset: ConversationDataset, train: TrainConfig, request: CandidateRequest,
           device: torch.device | str) -> CandidateResult:
    """Build ``request.arch`` after ``torch.manual_seed(request.seed)`` (then load ``request.init``, if
    any), train it ``request.epochs`` epochs with a silent event stream and return its best validation
    value (with ``epochs = 0``: its validation value as it is)."""
    start = time.time()
    model = seeded_build(space, request.arch, request.seed)
    if request.init is not None:
        model.load_state_dict(request.init)
    trainer = Trainer(model, dataset.signature, dataclasses.replace(train, epochs=max(1, request.epochs)),
                      device=device, seed=request.seed, events=Events())
    if request.epochs == 0:
        valid = trainer.validate(dataset.split("valid"))
        value = float(valid[trainer.metric])
        if not np.isfinite(value):
            raise NasmercError(f"candidate {dict(request.arch)} gave no finite validation {trainer.metric}")
        return CandidateResult(value, dict(valid), count_parameters(model), time.time() - start, [value], False,
                               _state(model) if request.keep else None)
    history: list[float] = []
    stopped = [False]

    def stop(epoch: int, value: float) -> bool:
        history.append(float(value))
        stopped[0] = request.stop is not None and bool(request.stop(epoch, value))
        return stopped[0]

    try:
        fit = trainer.fit(dataset.split("train"), dataset.split("valid"), stop=stop)
    except Diverged as failed:
        worst = 0.0 if metrics.HIGHER_IS_BETTER[trainer.metric] else WORST_LOWER
        return CandidateResult(worst, {trainer.metric: worst, "loss": WORST_LOWER}, count_parameters(model),
                               time.time() - start, history, True, None, diverged=str(failed))
    if not np.isfinite(fit.best_value):
        raise NasmercError(f"candidate {dict(request.arch)} gave no finite validation {trainer.metric}")
    return CandidateResult(float(fit.best_value), dict(fit.best_metrics), count_parameters(model),
                           time.time() - start, history, stopped[0], _state(model) if request.keep else None)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights as CPU copies (what a ``keep`` request gets back)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _run_job(job: _Job) -> CandidateResult:
    """:func:`_score` of one job in a worker process: a top-level function, so a process pool can pickle
    it; on CUDA the candidate trains on a stream of its own (``nasmerc.nas.device_share``)."""
    with device_share.own_stream(torch.device(job.device)):
        return _score(job.space, job.dataset, job.train, job.request, job.device)


def _init_worker(threads: int) -> None:
    """Process-pool initializer: the parent's torch thread count, so results match a serial run."""
    torch.set_num_threads(threads)


class Evaluator:
    """Trains models and candidates for one search (see the module docstring)."""

    def __init__(self, space: SearchSpace, dataset: ConversationDataset, train: TrainConfig, *,
                 device: torch.device | str = "cpu", seed: int = 0, events: Events | None = None,
                 run_dir: Path | None = None, fixed: Mapping[str, Any] | None = None, workers: int = 1) -> None:
        if workers < 0:
            raise NasmercError(f"--workers {workers}: expected an integer >= 1, or 0 for as many as fit")
        self.space = space
        self.dataset = dataset
        self.train = train
        self.device = torch.device(device)
        self.seed = seed
        self.events = events if events is not None else Events()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.fixed = dict(fixed or {})
        self.workers = workers
        if workers == 0 and self.device.type != "cuda":  # auto on a CPU: nothing to measure
            self.workers = device_share.plan_workers(0, self.device).workers
        self.metric = metrics.primary_metric(dataset.signature.task)
        self.higher_is_better = metrics.HIGHER_IS_BETTER[self.metric]
        self._pool: Executor | None = None
        self._fits = 0
        self._cache: CandidateCache | None = None
        self.oneshot: Any = None
        """The :class:`~nasmerc.nas.oneshot.OneShot` given by :func:`nasmerc.nas.oneshot.train_supernet`, once
        trained (anything with ``tag`` and ``score(request)``: this module does not import that one)."""

    @property
    def concurrency(self) -> int:
        """How many candidates to ask for at a time: the workers, or with ``workers = 0`` not yet resolved
        (:meth:`_plan`) the most that could run at once."""
        return self.workers if self.workers >= 1 else device_share.MAX_WORKERS

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
            parameters: Sequence[nn.Parameter] | None = None, epochs: int | None = None) -> FitResult:
        """Train ``model`` through the training loop with the run's events, on ``train`` (default: the
        training split) and validated on the validation split. ``hooks`` see every step and epoch;
        ``on_best(epoch, value)`` is called at every new best epoch; ``parameters`` are the weights the
        trainer's optimiser steps (default: every trainable parameter of ``model``); ``epochs`` replaces
        ``train.epochs`` (a one-shot supernet's budget)."""
        config = self.train if epochs is None else dataclasses.replace(self.train, epochs=epochs)
        trainer = Trainer(model, self.dataset.signature, config, device=self.device, seed=self.seed,
                          events=self.events, parameters=parameters)
        self._fits += 1
        checkpoint = None
        if self.run_dir is not None:
            name = "checkpoint.pt" if self._fits == 1 else f"checkpoint-{self._fits}.pt"
            checkpoint = Checkpoint(self.run_dir, name, self.events)
        return trainer.fit(self.dataset.split("train") if train is None else train, self.dataset.split("valid"),
                           hooks=hooks, on_best=on_best, checkpoint=checkpoint)

    # -- candidates --------------------------------------------------------------------------------
    def score_all(self, requests: Sequence[CandidateRequest]) -> list[CandidateResult]:
        """Train and score every request; the results in the order of the requests (a request that
        finished in an earlier life of the run comes from ``candidates.jsonl``). Inherited requests are
        scored in this process, on the supernet."""
        cache = self._candidates()
        results: list[CandidateResult | None] = [None] * len(requests)
        todo, inherited = [], []
        tag = self.oneshot.tag if self.oneshot is not None else ""
        for i, request in enumerate(requests):
            if request.inherit and (self.oneshot is None or request.epochs != 0):
                raise NasmercError("an inherited candidate needs a trained supernet "
                                   "(nasmerc.nas.oneshot.train_supernet) and epochs=0")
            cached = cache.get(request, tag) if cache is not None else None
            if cached is not None:
                results[i] = _replay(request, cached)
            else:
                (inherited if request.inherit else todo).append(i)
        for i in inherited:
            results[i] = self.oneshot.score(requests[i])
            if cache is not None:
                cache.put(requests[i], results[i], tag)
        if self.workers == 0 and len(todo) >= 2:
            self._plan(requests[todo[0]].arch)
        if self.workers <= 1 or len(todo) < 2 or any(requests[i].stop is not None for i in todo):
            done: Iterator[CandidateResult] = (_score(self.space, self.dataset, self.train, requests[i], self.device)
                                               for i in todo)
        else:
            jobs = [_Job(self.space, self.dataset, self.train, requests[i], str(self.device)) for i in todo]
            done = self._executor().map(_run_job, jobs)
        for i, result in zip(todo, done):
            if cache is not None:
                cache.put(requests[i], result)
            results[i] = result
        return [r for r in results if r is not None]

    def _plan(self, arch: Mapping[str, Any]) -> None:
        """Resolve ``workers = 0`` (auto) once, from the device's free memory and the measured peak of a
        training step of ``arch`` (``nasmerc.nas.device_share``); a ``workers`` event says what and why."""
        peak = device_share.candidate_bytes(self.space, self.dataset, self.train, arch, self.device)
        plan = device_share.plan_workers(0, self.device, device_share.free_memory(self.device), peak)
        self.workers = plan.workers
        self.events.emit("workers", **plan.to_event())

    def _candidates(self) -> CandidateCache | None:
        if self._cache is None and self.run_dir is not None:
            self._cache = CandidateCache(self.run_dir / CANDIDATES_FILE)
        return self._cache

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
