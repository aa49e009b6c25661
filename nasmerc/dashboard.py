"""The live terminal dashboard: folds the event stream of :mod:`nasmerc.events` into one screen.

This is the only module of nasmerc that imports rich; the core emits plain dicts and never renders.
The design follows rich's ``examples/fullscreen.py``: :class:`DashboardState` is a snapshot of the
run that :meth:`DashboardState.update` folds each event into, :func:`render` rebuilds every panel
from that snapshot, and one ``Live`` (owned by :class:`LiveDashboard` or :func:`follow`) repaints it.

Three ways to watch a run:

- :class:`LiveDashboard`, an event sink for a terminal, in the training process itself;
- :class:`PlainProgress`, an event sink for CI logs and pipes: one line per epoch, no escape codes;
- :func:`follow`, the engine of ``nasmerc dashboard RUN``, which replays and tails ``events.jsonl``
  from another terminal.

Unknown event types are ignored, so an older dashboard can watch a newer run. ``generation`` events
(``generation``, ``generations``, ``best``, ``mean``, ``diversity``, ``best_genome``) of population
strategies add a population panel; so do ``trial`` events (``trial``, ``arch``, ``value``, ``best``,
``metric``, ``parameters``, ``seconds``), one per trained candidate of random, TPE or evolution.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from nasmerc.errors import NasmercError
from nasmerc.runs import holder, read_process, resume_command, run_status

__all__ = ["DashboardState", "LiveDashboard", "PlainProgress", "follow", "make_sink", "render"]

SHOWN_EPOCHS = 8
SHOWN_LABELS = 16
SHOWN_GENERATIONS = 6
SHOWN_LOSS_TERMS = 4
_STATUS_STYLE = {"waiting": "dim", "running": "bold yellow", "finished": "bold green",
                 "failed": "bold red", "interrupted": "bold magenta", "stopped": "bold red"}


def _best(value: float | None, epoch: int | None) -> str:
    """``0.6123@3``; without an epoch (population strategies), the value alone; ``-`` for none."""
    if value is None:
        return "-"
    return f"{_num(value)}@{epoch}" if epoch is not None else _num(value)


def _num(value: Any, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or ``-`` when it is missing (None, NaN written as null)."""
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    """``12.3s``, ``4m05s`` or ``1h02m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class EpochRow:
    """One ``epoch`` event, as the losses/metrics table shows it."""

    epoch: int
    train_loss: float | None
    valid_loss: float | None
    value: float | None
    best: float | None
    best_epoch: int | None
    missing_rate: float | None
    losses: dict[str, float | None]
    elapsed: float | None


@dataclass
class DashboardState:
    """A snapshot of one run, folded from its events; :func:`render` draws it.

    A second ``run_start`` (a new run appended to the same file) starts a fresh snapshot.
    """

    command: str = ""
    space: str = ""
    strategy: str = ""
    data: str = ""
    seed: int | None = None
    metric: str = "metric"
    higher_is_better: bool = True
    epochs: int | None = None
    n_batches: int | None = None
    epoch: int | None = None
    batch: int | None = None
    batch_loss: float | None = None
    started: float | None = None
    last_time: float | None = None
    epoch_times: list[float] = field(default_factory=list)
    history: deque[EpochRow] = field(default_factory=lambda: deque(maxlen=64))
    best: float | None = None
    best_epoch: int | None = None
    best_row: EpochRow | None = None
    weights: dict[str, dict[str, float | None]] = field(default_factory=dict)
    weights_epoch: int | None = None
    checkpoint: dict[str, Any] | None = None
    status: str = "waiting"
    message: str = ""
    end_elapsed: float | None = None
    generations: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))
    best_genome: Any = None
    trials: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def ended(self) -> bool:
        """Whether a ``run_end`` has arrived (whatever its status)."""
        return self.status not in ("waiting", "running")

    @property
    def leaders(self) -> dict[str, str]:
        """The candidate with the largest weight at each choice label."""
        leaders = {label: _leader(ws) for label, ws in self.weights.items()}
        return {label: lead for label, lead in leaders.items() if lead}

    def elapsed(self, now: float | None = None) -> float | None:
        """Wall time since ``run_start``: the run's own figure once it ended, else up to ``now``
        (default: the time of the last event, which keeps a replayed file deterministic)."""
        if self.end_elapsed is not None:
            return self.end_elapsed
        if self.started is None:
            return None
        clock = now if now is not None and not self.ended else self.last_time
        return max((clock or self.started) - self.started, 0.0)

    def eta(self, now: float | None = None) -> float | None:
        """Remaining time from the average epoch so far, less the time already spent on this one."""
        if self.ended:
            return 0.0
        done = len(self.epoch_times)
        if not done or self.started is None or not self.epochs:
            return None
        average = (self.epoch_times[-1] - self.started) / done
        in_epoch = max((now if now is not None else self.last_time or 0.0) - self.epoch_times[-1], 0.0)
        return max(average * max(self.epochs - done, 0) - in_epoch, 0.0)

    def update(self, event: dict[str, Any]) -> None:
        """Fold one event in; events of an unknown type (or with no type) are ignored."""
        handler = getattr(self, f"_on_{event.get('type')}", None)
        if handler is None:
            return
        if isinstance(event.get("time"), (int, float)):
            self.last_time = float(event["time"])
        handler(event)

    def _on_run_start(self, ev: dict[str, Any]) -> None:
        fresh = DashboardState()  # a new run: forget everything folded so far
        fresh.__dict__.update(
            command=ev.get("command") or "", space=ev.get("space") or "", strategy=ev.get("strategy") or "",
            data=ev.get("data") or "", seed=ev.get("seed"), metric=ev.get("metric") or "metric",
            higher_is_better=ev.get("higher_is_better", True) is not False, epochs=ev.get("epochs"),
            n_batches=ev.get("n_batches"), started=self.last_time, last_time=self.last_time,
            status="running")
        self.__dict__.update(fresh.__dict__)

    def _on_batch(self, ev: dict[str, Any]) -> None:
        self.epoch = ev.get("epoch", self.epoch)
        self.batch = ev.get("batch")
        self.n_batches = ev.get("n_batches") or self.n_batches
        self.batch_loss = ev.get("loss")

    def _on_epoch(self, ev: dict[str, Any]) -> None:
        row = EpochRow(epoch=ev.get("epoch", len(self.epoch_times) + 1), train_loss=ev.get("train_loss"),
                       valid_loss=ev.get("valid_loss"), value=ev.get("value"), best=ev.get("best"),
                       best_epoch=ev.get("best_epoch"), missing_rate=ev.get("missing_rate"),
                       losses=dict(ev.get("losses") or {}), elapsed=ev.get("elapsed"))
        if row.best is None and row.value is not None and (
                self.best is None or (row.value > self.best) == self.higher_is_better):
            row.best, row.best_epoch = row.value, row.epoch
        if row.best is not None:
            self.best, self.best_epoch = row.best, row.best_epoch if row.best_epoch is not None else row.epoch
        self.history.append(row)
        if self.best_epoch == row.epoch:
            self.best_row = row
        self.epoch, self.epochs = row.epoch, ev.get("epochs") or self.epochs
        self.batch = self.n_batches
        self.metric = ev.get("metric") or self.metric
        self.epoch_times.append(self.last_time if self.last_time is not None else time.time())

    def _on_choice_weights(self, ev: dict[str, Any]) -> None:
        weights = ev.get("weights")
        if not isinstance(weights, dict):
            return
        self.weights = {str(label): (dict(ws) if isinstance(ws, dict) else dict(enumerate(ws)))
                        for label, ws in weights.items()}
        self.weights_epoch = ev.get("epoch")

    def _on_run_resume(self, ev: dict[str, Any]) -> None:
        self.status, self.message, self.end_elapsed = "running", "", None

    def _on_checkpoint(self, ev: dict[str, Any]) -> None:
        self.checkpoint = {k: ev.get(k) for k in ("epoch", "path", "metric", "value")}

    def _on_run_end(self, ev: dict[str, Any]) -> None:
        self.status = ev.get("status") or "finished"
        self.message = ev.get("message") or ""
        if ev.get("best") is not None:
            self.best = ev["best"]
        if isinstance(ev.get("elapsed"), (int, float)):
            self.end_elapsed = float(ev["elapsed"])
        elif self.started is not None and self.last_time is not None:
            self.end_elapsed = self.last_time - self.started

    def _on_trial(self, ev: dict[str, Any]) -> None:
        self.trials.append({k: ev.get(k) for k in ("trial", "value", "best", "parameters", "seconds", "arch")})
        self.metric = ev.get("metric") or self.metric

    def _on_generation(self, ev: dict[str, Any]) -> None:
        self.generations.append({k: ev.get(k) for k in ("generation", "generations", "best", "mean", "diversity")})
        if ev.get("best_genome") is not None:
            self.best_genome = ev["best_genome"]


def _leader(weights: dict[Any, float | None]) -> str:
    """The candidate of largest weight (the first of equals), or ``""`` when no weight is a number."""
    scored = [(str(c), w) for c, w in weights.items() if isinstance(w, (int, float))]
    return max(scored, key=lambda cw: cw[1])[0] if scored else ""


# ---------------------------------------------------------------------------------------------
# panels, each rebuilt from the snapshot


def _header(state: DashboardState, now: float | None) -> Panel:
    grid = Table.grid(padding=(0, 2), expand=True)
    for _ in range(6):
        grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    arrow = "↑" if state.higher_is_better else "↓"
    status = Text(state.status, style=_STATUS_STYLE.get(state.status, "bold"))
    grid.add_row(f"[b]space[/] {state.space or '-'}", f"[b]strategy[/] {state.strategy or '-'}",
                 f"[b]data[/] {state.data or '-'}", f"[b]seed[/] {state.seed if state.seed is not None else '-'}",
                 f"[b]metric[/] {state.metric} {arrow}", f"[b]elapsed[/] {_duration(state.elapsed(now))}", status)
    body: RenderableType = grid
    if state.message:
        body = Group(grid, Text(state.message, style=_STATUS_STYLE.get(state.status, "")))
    title = f"nasmerc {state.command}".strip()
    return Panel(body, title=f"[b]{title}[/]", title_align="left", box=box.ROUNDED)


def _progress(state: DashboardState, now: float | None) -> Panel:
    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(no_wrap=True, min_width=14)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, min_width=24)
    epochs, n_batches = state.epochs or 0, state.n_batches or 0
    done = len(state.epoch_times)
    grid.add_row(f"epoch {state.epoch if state.epoch is not None else '-'}/{epochs or '-'}",
                 ProgressBar(total=max(epochs, 1), completed=min(done, epochs)),
                 f"elapsed {_duration(state.elapsed(now))}  ETA {'done' if state.ended else _duration(state.eta(now))}")
    batch = state.batch or 0
    grid.add_row(f"batch {batch if state.batch is not None else '-'}/{n_batches or '-'}",
                 ProgressBar(total=max(n_batches, 1), completed=min(batch, n_batches)),
                 f"loss {_num(state.batch_loss, 3)}")
    if state.checkpoint:
        ck = state.checkpoint
        grid.add_row("checkpoint", Text(f"{ck.get('path') or '-'}", overflow="ellipsis", no_wrap=True),
                     f"epoch {ck.get('epoch')}  {ck.get('metric') or state.metric} {_num(ck.get('value'))}")
    return Panel(grid, title="progress", title_align="left")


def _epochs(state: DashboardState) -> Panel:
    rows = list(state.history)[-SHOWN_EPOCHS:]
    if state.best_row is not None and state.best_row not in rows:
        rows.insert(0, state.best_row)  # keep the best epoch in view after it scrolls out
    terms = list(dict.fromkeys(k for r in rows for k in r.losses))[:SHOWN_LOSS_TERMS]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("epoch", justify="right", no_wrap=True)
    for name in ("train loss", "valid loss", state.metric, "best", "rho", *terms, "time"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for r in rows:
        is_best = r.epoch == state.best_epoch
        best = _best(r.best, r.best_epoch)
        table.add_row(str(r.epoch), _num(r.train_loss, 3), _num(r.valid_loss, 3), _num(r.value), best,
                      _num(r.missing_rate, 2), *(_num(r.losses.get(t), 3) for t in terms), _duration(r.elapsed),
                      "◀ best" if is_best else "", style="bold green" if is_best else None)
    if not rows:
        table.add_row("-", *([""] * (len(terms) + 7)))
    best = f"best {state.metric} {_num(state.best)} @ epoch {state.best_epoch}" if state.best is not None else ""
    return Panel(table, title="epochs", title_align="left", subtitle=best, subtitle_align="right")


def _weights(state: DashboardState) -> Panel:
    """One table per distinct candidate set, so that every column is a named candidate."""
    labels = list(state.weights)
    shown = labels[:SHOWN_LABELS]
    groups: dict[tuple[str, ...], list[str]] = {}
    for label in shown:
        groups.setdefault(tuple(str(c) for c in state.weights[label]), []).append(label)
    tables: list[RenderableType] = []
    for candidates, group in groups.items():
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("choice", no_wrap=True, overflow="ellipsis", max_width=32)
        for c in candidates:
            table.add_column(c, justify="right", overflow="fold")
        table.add_column("leader", style="bold cyan", no_wrap=True)
        for label in group:
            ws = {str(c): w for c, w in state.weights[label].items()}
            lead = _leader(ws)
            cells = [Text(_num(ws[c], 2), style="bold green" if c == lead else "") for c in candidates]
            table.add_row(label, *cells, lead or "-")
        tables.append(table)
    if not labels:
        tables.append(Text("no choice weights yet", style="dim"))
    if len(labels) > len(shown):
        tables.append(Text(f"… and {len(labels) - len(shown)} more labels", style="dim"))
    epoch = f" (epoch {state.weights_epoch})" if state.weights_epoch is not None else ""
    return Panel(Group(*tables), title=f"choice weights{epoch}", title_align="left")


def _population(state: DashboardState) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("generation", "best", "mean", "diversity"):
        table.add_column(name, justify="right", no_wrap=True)
    for g in list(state.generations)[-SHOWN_GENERATIONS:]:
        table.add_row(f"{g['generation']}/{g['generations'] or '-'}", _num(g["best"]), _num(g["mean"]),
                      _num(g["diversity"], 3))
    parts: list[RenderableType] = [table] if state.generations else []
    if state.trials:
        trials = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("trial", state.metric, "best", "params", "time"):
            trials.add_column(name, justify="right", no_wrap=True)
        trials.add_column("arch", no_wrap=True, overflow="ellipsis", max_width=60)
        for t in list(state.trials)[-SHOWN_GENERATIONS:]:
            arch = t["arch"]
            text = ", ".join(f"{k}={v}" for k, v in arch.items()) if isinstance(arch, dict) else "-"
            trials.add_row(str(t["trial"]), _num(t["value"]), _num(t["best"]),
                           str(t["parameters"]) if t["parameters"] is not None else "-", _duration(t["seconds"]),
                           text)
        parts.append(trials)
    if state.best_genome is not None:
        genome = state.best_genome
        text = ", ".join(f"{k}={v}" for k, v in genome.items()) if isinstance(genome, dict) else json.dumps(genome)
        parts.append(Text(f"best genome: {text}", overflow="ellipsis", no_wrap=True))
    return Panel(Group(*parts), title="population", title_align="left")


def render(state: DashboardState, now: float | None = None) -> RenderableType:
    """One screen for ``state``: header, progress, epochs, choice weights, population (if any).

    ``now`` (seconds since the epoch) makes elapsed/ETA tick in a live view; by default they are
    measured to the last event, so a replay renders the same text every time.
    """
    panels = [_header(state, now), _progress(state, now), _epochs(state)]
    if state.weights or (state.strategy not in ("", "fixed", "retrain") and not state.generations
                         and not state.trials):
        panels.append(_weights(state))
    if state.generations or state.trials:
        panels.append(_population(state))
    return Group(*panels)


# ---------------------------------------------------------------------------------------------
# sinks and the follower


class LiveDashboard:
    """An event sink that repaints one ``rich.live.Live`` (which it owns) from its state.

    Use as a context manager around the run. Events update the state under a lock; the Live
    thread rebuilds the screen from it about four times a second, and at once after every event
    other than ``batch``. The final screen stays on the terminal.
    """

    def __init__(self, console: Console | None = None, refresh_per_second: float = 4.0) -> None:
        self.state = DashboardState()
        self._lock = threading.Lock()
        self.live = Live(console=console, refresh_per_second=refresh_per_second, transient=False,
                         get_renderable=self._renderable)

    def _renderable(self) -> RenderableType:
        with self._lock:
            return render(self.state, now=time.time())

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.state.update(event)
        if event.get("type") != "batch" and self.live.is_started:
            self.live.refresh()

    def __enter__(self) -> LiveDashboard:
        self.live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()


class PlainProgress:
    """An event sink for logs and pipes: one plain line per run start, epoch, trial, generation, finalist
    and run end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.state = DashboardState()

    def emit(self, event: dict[str, Any]) -> None:
        self.state.update(event)
        line = self.line(event)
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def line(self, ev: dict[str, Any]) -> str:
        """The line printed for ``ev``, or ``""`` for events not worth a line."""
        s, kind = self.state, ev.get("type")
        if kind == "run_start":
            what = "/".join(x for x in (s.space, s.strategy) if x) or "run"
            epochs = f", {s.epochs} epochs" if s.epochs else ""
            return f"{s.command or 'run'} {what} on {s.data or '-'}{epochs}"
        if kind == "epoch":
            best = _best(s.best, s.best_epoch)
            elapsed = ev.get("elapsed") if ev.get("elapsed") is not None else s.elapsed()
            return (f"epoch {ev.get('epoch')}/{s.epochs or '-'}  train {_num(ev.get('train_loss'), 3)}  "
                    f"valid {_num(ev.get('valid_loss'), 3)}  {s.metric} {_num(ev.get('value'))}  best {best}  "
                    f"rho {_num(ev.get('missing_rate'), 2)}  {_duration(elapsed)}")
        if kind == "trial":
            t = s.trials[-1]
            return (f"trial {t['trial']}  {s.metric} {_num(t['value'])}  best {_num(t['best'])}  "
                    f"params {t['parameters'] if t['parameters'] is not None else '-'}  {_duration(t['seconds'])}")
        if kind == "generation":
            g = s.generations[-1]
            return (f"generation {g['generation']}/{g['generations'] or '-'}  best {_num(g['best'])}  "
                    f"mean {_num(g['mean'])}  diversity {_num(g['diversity'], 3)}")
        if kind == "finalist":
            return (f"finalist: trial {ev.get('trial')}  {s.metric} {_num(ev.get('value'))} after its short "
                    f"training, {_num(ev.get('final_value'))} after the full one")
        if kind == "simplify_step":
            removed = f"leaves {ev.get('removed')} out" if ev.get("removed") else "keeps every component"
            return (f"simplify step {ev.get('step')}: {ev.get('within')} of {ev.get('removals')} removals within "
                    f"the tolerance; {removed}")
        if kind == "run_end":
            best = f"  best {s.metric} {_best(s.best, s.best_epoch)}" if s.best is not None else ""
            message = f"  {s.message}" if s.message else ""
            return f"run {s.status}{best}  {_duration(s.elapsed())}{message}"
        return ""


def make_sink(live: bool, console: Console | None = None) -> LiveDashboard | PlainProgress:
    """A :class:`LiveDashboard` when ``live`` and the console is a terminal, else :class:`PlainProgress`
    (writing to the console's file, or to stderr when no console is given)."""
    console = console if console is not None else Console(stderr=True)
    if live and console.is_terminal:
        return LiveDashboard(console=console)
    return PlainProgress(console.file)


def _read_new(fh: TextIO, pending: str) -> tuple[list[dict[str, Any]], str]:
    """Events from the complete lines appended since the last call; a partial last line waits. ``fh``
    decodes with ``errors="surrogateescape"``: a line with bytes that are not UTF-8 is skipped."""
    text = pending + fh.read()
    *lines, rest = text.split("\n")
    events = []
    for line in lines:
        try:
            line.encode("utf-8")  # fails on the surrogates standing for undecodable bytes
            event = json.loads(line)
        except (UnicodeEncodeError, json.JSONDecodeError):
            continue  # a corrupt line, as read_events skips it
        if isinstance(event, dict):
            events.append(event)
    return events, rest


def mark_stopped(state: DashboardState, run_dir: Path) -> None:
    """``state`` of a run no process is writing: ``stopped``, with who wrote it last and how to go on."""
    beat = (read_process(run_dir) or {}).get("heartbeat")
    ago = f", last heartbeat {_duration(time.time() - beat)} ago" if isinstance(beat, (int, float)) else ""
    command = state.command if state.command in ("search", "retrain") else "search"
    state.status = "stopped"
    state.message = (f"no process is writing this run (it was {holder(run_dir, command=False)}{ago}); "
                     f"resume it with: {resume_command(run_dir, command)}")


def follow(path: str | Path, console: Console | None = None, poll: float = 0.5, once: bool = False,
           timeout: float | None = None) -> DashboardState:
    """Replay a run's ``events.jsonl`` and, until ``run_end`` (or ``timeout`` seconds), tail it.

    ``path`` is a run folder or the events file itself. On a terminal the tail is a live view whose
    last screen stays; elsewhere the final screen is printed once. ``once`` renders what is there
    and returns without waiting.
    """
    path = Path(path)
    events_path = path / "events.jsonl" if path.is_dir() else path
    if not events_path.is_file():
        raise NasmercError(f"{str(path)!r} has no events.jsonl: expected a run folder with events.jsonl "
                           "(written by nasmerc train/search), or the events file itself")
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a file: 80 columns would fold every table
            console = Console(width=120)
    state, lock = DashboardState(), threading.Lock()
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(events_path, encoding="utf-8", errors="surrogateescape") as fh:
        events, pending = _read_new(fh, "")
        for event in events:
            state.update(event)

        run_dir = events_path.parent

        def waiting() -> bool:
            if not state.ended and state.status != "waiting" and run_status(run_dir) == "stopped":
                with lock:  # nothing holds the folder: killed, or the machine went away
                    mark_stopped(state, run_dir)
            return not state.ended and (deadline is None or time.monotonic() < deadline)

        still = waiting()

        def tail() -> None:
            nonlocal pending
            time.sleep(poll)
            new, pending = _read_new(fh, pending)
            with lock:
                for event in new:
                    state.update(event)

        if once or not still:
            console.print(render(state))
        elif console.is_terminal:
            def screen() -> RenderableType:
                with lock:
                    return render(state, now=time.time())

            with Live(console=console, refresh_per_second=4, transient=False, get_renderable=screen):
                while waiting():
                    tail()
        else:
            while waiting():
                tail()
            console.print(render(state))
    return state
