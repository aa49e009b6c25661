"""The event stream: small dicts that training and search emit, written as JSON lines.

Every event has a ``type`` and a wall-clock ``time`` (seconds since the epoch). Kinds emitted now:

- ``run_start``: ``command``, ``space``, ``strategy``, ``epochs``, ``n_batches`` (per epoch),
  ``data``, ``seed``, ``metric`` (the validation metric selected on) and ``higher_is_better``;
- ``batch``: ``epoch``, ``batch``, ``n_batches``, ``loss`` (every training step);
- ``epoch``: ``epoch``, ``epochs``, ``train_loss``, ``valid_loss``, ``valid`` (metrics dict),
  ``metric``, ``value``, ``best``, ``best_epoch``, ``missing_rate``, ``losses`` (each named term),
  ``elapsed``;
- ``choice_weights``: ``epoch``, ``weights`` ``{label: {candidate: weight}}`` (DARTS' softmax, the
  router's leading shares);
- ``checkpoint``: ``epoch``, ``path``, ``metric``, ``value``;
- ``trial``: one evaluated candidate of a population strategy: ``trial`` (1-based), ``arch``,
  ``value``, ``best`` (best so far, ``None`` while none is eligible), ``metric``, ``parameters``,
  ``seconds``, and the proposer's fields (``generation`` for evolution, ``pruned: true`` for a pruned
  TPE trial);
- ``finalist``: one of a population search's best candidates trained for the full ``train.epochs``
  (``finalists > 0``): ``trial``, ``arch``, ``value`` (its short score), ``final_value``, ``parameters``,
  ``metric``;
- ``generation``: one closed generation of evolution: ``generation``, ``generations``, ``best`` (of the
  hall of fame), ``mean``, ``diversity``, ``best_genome`` (the decoded best architecture);
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

    def close(self) -> None:
        self._fh.close()


class ListSink:
    """Keeps events in memory (tests, summaries)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(_clean(event))


class Events:
    """Stamps events with their type and time and fans them out to every sink."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks: list[EventSink] = list(sinks)

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, type: str, **fields: Any) -> None:
        event = {"type": type, "time": time.time(), **fields}
        for sink in self.sinks:
            sink.emit(event)


class CallbackSink:
    """Calls a function with every event."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def emit(self, event: dict[str, Any]) -> None:
        self.fn(event)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete JSON lines of an events file (a partly written last line is skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
