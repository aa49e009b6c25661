"""Checkpoints of a training loop: what a killed run needs to go on as if it had never stopped.

After every epoch :class:`~nasmerc.train.trainer.Trainer` hands :meth:`Checkpoint.save` the whole
state of the loop: the epoch count, the model's weights and the optimizer's state, the best epoch's
weights and numbers, the history, every random state the loop draws from (the trainer's numpy
generator, which orders batches and draws the training masks; the rank's own mask generator under
torchrun; the torch generator that draws training masks on the device under ``train.data=device``;
torch's global generator, which dropout draws from; Python's ``random``), and the state of every
hook and plug-in (DARTS' ``alpha``, its optimizer and its batch order; the router's routers). Beside
it goes ``resume.json``: which checkpoint is the last one, and where the run's event log stood when
it was written (its byte offset and event count), so a resumed run cuts the log there and writes
nothing twice (see ``nasmerc.events.Events``).

Both files are written atomically (``nasmerc.io``): a kill leaves the previous checkpoint or the new
one, never half of one. They are read with ``torch.load(..., weights_only=True)``: tensors, numbers,
strings, lists, tuples and dicts only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.io import read_torch, write_json, write_torch

RESUME_FILE = "resume.json"


def random_states(rng: np.random.Generator, mask_rng: np.random.Generator | None = None,
                  mask_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The state of ``rng``, of torch's global generator and of Python's ``random``; with them the
    state of ``mask_rng`` (a second numpy generator for masks, when it is not ``rng``) and of
    ``mask_generator`` (a torch generator for masks drawn on the device), when given."""
    states: dict[str, Any] = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(),
                              "python": random.getstate()}
    if mask_rng is not None and mask_rng is not rng:
        states["mask_numpy"] = mask_rng.bit_generator.state
    if mask_generator is not None:
        states["mask_torch"] = mask_generator.get_state()  # a CPU byte tensor, whatever the device
    return states


def restore_random_states(rng: np.random.Generator, states: dict[str, Any], mask_rng: np.random.Generator | None = None,
                          mask_generator: torch.Generator | None = None) -> None:
    """Put back what :func:`random_states` took (a generator whose state was not saved is left as it is)."""
    rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if mask_rng is not None and mask_rng is not rng and "mask_numpy" in states:
        mask_rng.bit_generator.state = states["mask_numpy"]
    if mask_generator is not None and "mask_torch" in states:
        mask_generator.set_state(states["mask_torch"])


class Checkpoint:
    """One training loop's checkpoint file in a run folder (``name``, e.g. ``checkpoint.pt``)."""

    def __init__(self, run_dir: Path, name: str, events: Events) -> None:
        self.path = Path(run_dir) / name
        self.events = events

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Any]:
        """The saved state; a damaged file is a one-line error naming it."""
        state = read_torch(self.path, "a nasmerc checkpoint (remove it to restart that training from its first epoch)")
        if not isinstance(state, dict) or "epoch" not in state:
            raise NasmercError(f"{self.path}: not a nasmerc checkpoint (expected a mapping with 'epoch')")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` and then ``resume.json`` naming it, with the event log's position."""
        write_torch(self.path, {**state, "events_count": self.events.position})
        write_json(self.path.parent / RESUME_FILE, {
            "checkpoint": self.path.name, "epoch": state["epoch"], "events_count": self.events.position,
            "events_offset": self.events.offset()})


def read_resume(run_dir: Path) -> dict[str, Any] | None:
    """``resume.json`` of a run folder, or ``None`` when no checkpoint was written."""
    path = Path(run_dir) / RESUME_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        int(data["events_count"]), int(data["events_offset"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise NasmercError(f"{path}: not a nasmerc resume record (expected events_count and events_offset)") from None
    return data
