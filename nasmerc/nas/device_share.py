"""How many candidates train at once: ``--workers 0`` (auto) chooses from the device's free memory.

A population strategy's candidates are independent trainings. On a GPU one small candidate leaves
most of the device idle, so the evaluator runs several at a time, each in its own spawned worker
process (its own CUDA context, and its training on a CUDA stream of its own, so kernels of different
candidates overlap). How many fit is measured, not guessed: :func:`candidate_bytes` trains the
first candidate of the generation for one step on the largest batch the run will see and reads the
peak memory it allocated; :func:`plan_workers` divides the free memory by that peak (with a margin
for the allocator's fragmentation and each process's CUDA context) and caps the count at
:data:`MAX_WORKERS`. On a CPU ``auto`` is one process: torch's intra-op threads already use the cores
(``--threads``), and several processes would only share them.

``--workers N`` (N >= 1) is taken as given on any device.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch

from nasmerc.data.batch import collate
from nasmerc.data.conversation import ConversationDataset
from nasmerc.nas.space import SearchSpace
from nasmerc.train.trainer import TrainConfig, Trainer

MAX_WORKERS = 8
"""At most this many candidates at once on one device."""
MARGIN = 1.5
"""The measured peak times this: the caching allocator's fragmentation and a longer batch than measured."""
CONTEXT_BYTES = 600 * 2**20
"""What a CUDA context costs each worker process before it allocates anything (about 300-600 MiB)."""
USABLE = 0.9
"""The share of the free memory the workers may take."""


@dataclass(frozen=True)
class WorkerPlan:
    """The number of candidates that train at once, and why."""

    workers: int
    device: str
    free_bytes: int | None = None
    candidate_bytes: int | None = None
    reason: str = ""

    def to_event(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_workers(requested: int, device: torch.device, free_bytes: int | None = None,
                 candidate_bytes: int | None = None) -> WorkerPlan:
    """``requested`` workers (``0``: auto) for ``device``: on CUDA with ``auto``, as many as
    ``free_bytes`` holds of ``candidate_bytes`` (each with :data:`MARGIN` and :data:`CONTEXT_BYTES`),
    between 1 and :data:`MAX_WORKERS`."""
    if requested >= 1:
        return WorkerPlan(requested, str(device), reason="--workers")
    if device.type != "cuda":
        return WorkerPlan(1, str(device), reason="auto on a CPU: one process with every thread")
    if free_bytes is None or candidate_bytes is None:
        return WorkerPlan(1, str(device), free_bytes, candidate_bytes, "auto: no measurement")
    each = int(candidate_bytes * MARGIN) + CONTEXT_BYTES
    fit = int(free_bytes * USABLE) // max(1, each)
    count = max(1, min(MAX_WORKERS, fit))
    return WorkerPlan(count, str(device), int(free_bytes), int(candidate_bytes),
                      f"auto: {fit} candidate(s) of {candidate_bytes / 2**20:.0f} MiB fit in "
                      f"{free_bytes / 2**20:.0f} MiB free")


def free_memory(device: torch.device) -> int | None:
    """The device's free bytes (CUDA), else ``None``."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def candidate_bytes(space: SearchSpace, dataset: ConversationDataset, train: TrainConfig, arch: Mapping[str, Any],
                    device: torch.device) -> int | None:
    """The peak memory one training step of ``arch`` allocates on ``device`` (CUDA), on a batch of the
    ``train.batch_size`` longest training conversations; ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    convs = sorted(dataset.split("train"), key=len, reverse=True)[: train.batch_size]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model = space.build(arch)
    trainer = Trainer(model, dataset.signature, dataclasses.replace(train, epochs=1), device=device)
    batch = trainer.masked(collate(convs, dataset.signature), 0)
    total, _, _ = trainer.loss(batch, 0)
    total.backward()
    trainer.optimizer.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del model, trainer, batch, total
    torch.cuda.empty_cache()
    return int(peak)


@contextlib.contextmanager
def own_stream(device: torch.device) -> Iterator[None]:
    """Run the block on a CUDA stream of its own (a worker's candidate), or as it is off CUDA."""
    if device.type != "cuda":
        yield
        return
    stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        yield
    stream.synchronize()
