"""Training on several processes: ``torchrun --nproc_per_node N -m nasmerc search ...``.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`setup` joins the process group
(``gloo`` on the CPU, ``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``), and every training loop of
the run is data-parallel:

- the model starts from rank 0's weights (:func:`broadcast_model`) and every weight step averages
  the gradients over the ranks (:func:`average_gradients`, one ``all_reduce`` of all of them
  flattened): the arithmetic of ``DistributedDataParallel``. DDP itself is not used because its
  reducer requires every tensor a model returns to take part in the loss, and nasmerc models return
  per-modality logits that only some plug-ins (SPCL) train on;
- batches are sharded by rank: every rank draws the same shuffled order (the trainer's batch-order
  generator has the run's seed on every rank) and takes every ``WORLD_SIZE``-th batch from its own
  rank on; an epoch has ``n_batches // WORLD_SIZE`` steps on every rank (the remainder is left out
  of that epoch, a different one each time), so the ranks step together;
- the training masks are drawn per rank (a generator seeded by seed and rank), so the ranks see
  different missing-modality patterns, as different batches would on one process;
- what a strategy trains beside the weights (DARTS' ``alpha``, the router's routers) is averaged the
  same way by :func:`average_gradients` before each of its steps, so it stays identical on every rank;
- validation runs on every rank over the whole validation split (identical weights, fixed masks:
  identical values), so the best epoch, patience and pruning agree without a message.

Rank 0 writes the run folder and the event log; the other ranks write to a private scratch folder
that is removed at the end. One process (no ``torchrun``) is the unchanged single-process loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from nasmerc.errors import NasmercError


@dataclass(frozen=True)
class World:
    """Where this process stands: its ``rank`` among ``size`` ranks (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes the run folder."""
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise NasmercError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None


def world_from_env() -> World:
    """The :class:`World` that ``torchrun``'s environment variables describe (one process without them)."""
    size = _int_env("WORLD_SIZE", 1)
    world = World(rank=_int_env("RANK", 0), size=size, local_rank=_int_env("LOCAL_RANK", 0),
                  local_size=_int_env("LOCAL_WORLD_SIZE", size))
    if not (world.size >= 1 and 0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size):
        raise NasmercError(f"torchrun environment RANK={world.rank} WORLD_SIZE={world.size} "
                           f"LOCAL_RANK={world.local_rank}: expected 0 <= RANK < WORLD_SIZE")
    return world


def current() -> World:
    """This process's world: one process unless the process group was joined by :func:`setup`."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return world_from_env()


def setup(device: str) -> World:
    """Join the process group when started by ``torchrun``; return the world. ``device`` ``cuda`` becomes
    ``cuda:LOCAL_RANK`` through :func:`rank_device`."""
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return world
    if not dist.is_available():
        raise NasmercError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    try:
        dist.init_process_group(backend=backend)
    except Exception as exc:  # a rendezvous that fails: name it, in one line
        raise NasmercError(f"torchrun: could not join the process group ({backend}): "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return world


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str, world: World) -> str:
    """``cuda`` (or ``auto`` on a machine with CUDA) means this rank's GPU (``cuda:LOCAL_RANK``) under
    torchrun; anything else as given."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return f"cuda:{world.local_rank}" if world.distributed and cuda else device


def broadcast_model(model: nn.Module) -> None:
    """Rank 0's weights and buffers on every rank (a no-op on one process)."""
    if not current().distributed:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks in one ``all_reduce`` (a parameter without a
    gradient on this rank counts as zero there, as DDP counts an unused one)."""
    world = current()
    if not world.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world.size)
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
        offset += n


def default_threads(local_processes: int) -> int:
    """Torch's intra-op threads for one of ``local_processes`` processes sharing this machine: the
    cores divided among them (at least one); torch's own default for a lone process."""
    if local_processes <= 1:
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_processes)
