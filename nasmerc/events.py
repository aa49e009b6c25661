"""The event stream: small dicts that training and search emit, written as JSON lines.

Every event has a ``type`` and a wall-clock ``time`` (seconds since the epoch). Kinds emitted now:

- ``run_start``: ``command``, ``space``, ``strategy``, ``epochs``, ``n_batches`` (per epoch),
  ``data``, ``seed``, ``device`` (as asked: ``auto`` resolves to CUDA when available), ``protocol``,
  ``metric`` (the validation metric selected on) and ``higher_is_better``;
- ``batch``: ``epoch``, ``batch``, ``n_batches`` (every training step; no loss: reading it would make
  the host wait for the device every step, so losses come with the epoch);
- ``epoch``: ``epoch``, ``epochs``, ``train_loss``, ``valid_loss``, ``valid`` (metrics dict),
  ``metric``, ``value``, ``best``, ``best_epoch``, ``missing_rate``, ``losses`` (each named term),
  ``elapsed``;
- ``choice_weights``: ``epoch``, ``weights`` ``{label: {candidate: weight}}`` (DARTS' softmax of an op
  choice, its per-input Identity gates of an input choice under ``inputs=gate``, which need not sum to
  1; the router's leading shares);
- ``checkpoint``: ``epoch``, ``path``, ``metric``, ``value``;
- ``trial``: one evaluated candidate of a population strategy: ``trial`` (1-based), ``arch``,
  ``value``, ``best`` (best so far, ``None`` while none is eligible), ``metric``, ``parameters``,
  ``seconds``, and the proposer's fields (``generation`` for evolution, ``pruned: true`` for a pruned
  TPE trial), ``inherited: true`` for a candidate scored with a one-shot supernet's weights;
- ``supernet``: a one-shot supernet trained on uniformly sampled paths (``strategy.evaluation=oneshot``,
  ``nasmerc.nas.oneshot``): ``epochs``, ``best_epoch``, ``value``, ``metric``, ``parameters``,
  ``shared_values`` (the value choices scored on the shared weights);
- ``finalist``: one of a population search's best candidates trained for the full ``train.epochs``
  (``finalists > 0``): ``trial``, ``arch``, ``value`` (its short score), ``final_value``, ``parameters``,
  ``metric``;
- ``generation``: one closed generation of evolution: ``generation``, ``generations``, ``best`` (of the
  hall of fame), ``mean``, ``diversity``, ``best_genome`` (the decoded best architecture), and
  ``fitness`` (``metric`` or ``loss``, HAEMSA's eq. 8, with ``strategy.weights=evolve``);
- ``run_resume``: a resumed run picks up here: ``command``, ``events`` (how many events of the run
  were on file), ``pid``, ``host``;
- ``run_end``: ``status`` (``finished`` / ``failed`` / ``interrupted``), ``best``, ``elapsed``,
  ``message``.

The core emits; it never renders. ``nasmerc.dashboard`` turns the same dicts into a live view, in
this process or from another terminal by following ``events.jsonl``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol


class EventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlSink:
    """Appends each event as one JSON line and flushes, so another process can follow the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(_clean(event)) + "\n")
        self._fh.flush()

    def offset(self) -> int:
        """The file's length in bytes after the last event (where a resumed run cuts it)."""
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


class ListSink:
    """Keeps events in memory (tests, summaries)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(_clean(event))


class Events:
    """Stamps events with their type and time and fans them out to every sink.

    Every emitted event has a ``position`` (1-based, counted from the run's ``run_start``). A resumed
    run replays its work from the start and must not write again what the file already holds: events
    at positions up to ``replay_until`` are dropped, and a trainer restoring a checkpoint moves
    :attr:`position` to the checkpoint's with :meth:`skip_to`. Runs are deterministic, so a replay
    emits the same events in the same order as the run it resumes. :meth:`mark` writes an event
    outside that count (``run_resume``).
    """

    def __init__(self, sinks: Iterable[EventSink] = (), journal: "JsonlSink | None" = None) -> None:
        self.sinks: list[EventSink] = list(sinks)
        self.journal = journal
        """The sink writing the run's ``events.jsonl``, whose :meth:`JsonlSink.offset` checkpoints record."""
        self.position = 0
        self.replay_until = 0

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, type: str, **fields: Any) -> None:
        self.position += 1
        if self.position <= self.replay_until:
            return
        self.mark(type, **fields)

    def mark(self, type: str, **fields: Any) -> None:
        """Emit without counting (see the class docstring)."""
        event = {"type": type, "time": time.time(), **fields}
        for sink in self.sinks:
            sink.emit(event)

    def skip_to(self, position: int) -> None:
        """The replay has reached ``position`` without emitting (a restored checkpoint)."""
        self.position = position

    def offset(self) -> int | None:
        """Bytes of ``events.jsonl`` written so far (``None`` without a journal)."""
        return self.journal.offset() if self.journal is not None else None


class CallbackSink:
    """Calls a function with every event."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def emit(self, event: dict[str, Any]) -> None:
        self.fn(event)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete JSON lines of an events file that hold an event (a JSON object). A partly written
    last line is skipped, and so is a line that is not UTF-8, not JSON or not an object (a corrupt or
    hand-edited file): followers and resumes read what is intact."""
    out = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                event = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(event, dict):
                out.append(event)
    return out
