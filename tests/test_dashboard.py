"""Tests of nasmerc.dashboard: the state folded from events, the rendered screen, both sinks, follow.

As in rich's own tests, screens are rendered into a fixed-width captured console and the text is
checked; the event stream is a hand-written search of 3 epochs over 2 choice labels.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nasmerc.dashboard import DashboardState, LiveDashboard, PlainProgress, follow, make_sink, render
from nasmerc.errors import NasmercError
from nasmerc.events import JsonlSink

T0 = 1_700_000_000.0
VALUES = [0.5012, 0.6123, 0.5987]  # valid WAF per epoch: best 0.6123 at epoch 2
WEIGHTS = {  # final choice weights (epoch 3)
    "fusion.cell0.op": {"sum": 0.11, "concat_fc": 0.52, "attention": 0.27, "linear_glu": 0.10},
    "mixer.text.layer0": {"sum": 0.25, "concat_fc": 0.05, "attention": 0.30, "linear_glu": 0.40},
}


def search_events(end: bool = True) -> list[dict[str, Any]]:
    """run_start, 4 batches per epoch, 3 epochs with choice weights, a checkpoint, run_end."""
    t = T0
    evs: list[dict[str, Any]] = [dict(type="run_start", time=t, command="search", space="rmnas", strategy="darts",
                                      epochs=20, n_batches=4, data="iemocap6", seed=0, metric="waf",
                                      higher_is_better=True)]
    for epoch, value in enumerate(VALUES, start=1):
        for batch in range(1, 5):
            t += 2.0
            evs.append(dict(type="batch", time=t, epoch=epoch, batch=batch, n_batches=4, loss=1.5 - 0.1 * epoch))
        t += 2.0
        best = max(VALUES[:epoch])
        evs.append(dict(type="epoch", time=t, epoch=epoch, epochs=20, train_loss=1.4 - 0.1 * epoch,
                        valid_loss=1.3 - 0.05 * epoch, valid={"waf": value, "acc": value + 0.01}, metric="waf",
                        value=value, best=best, best_epoch=VALUES.index(best) + 1, missing_rate=0.0,
                        losses={"ce": 1.2 - 0.1 * epoch, "recon": 0.2}, elapsed=t - T0))
        weights = WEIGHTS if epoch == 3 else {k: {c: 0.25 for c in w} for k, w in WEIGHTS.items()}
        evs.append(dict(type="choice_weights", time=t, epoch=epoch, weights=weights))
        if value == best:
            evs.append(dict(type="checkpoint", time=t, epoch=epoch, path="runs/x/best.pt", metric="waf", value=value))
    if end:
        evs.append(dict(type="run_end", time=t + 1.0, status="finished", best=0.6123, elapsed=t + 1.0 - T0,
                        message=""))
    return evs


def folded(events: list[dict[str, Any]]) -> DashboardState:
    state = DashboardState()
    for ev in events:
        state.update(ev)
    return state


def screen(renderable: Any, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_state_folds_the_run() -> None:
    s = folded(search_events())
    assert (s.space, s.strategy, s.data, s.seed, s.metric, s.higher_is_better) == (
        "rmnas", "darts", "iemocap6", 0, "waf", True)
    assert (s.epoch, s.epochs, s.batch, s.n_batches) == (3, 20, 4, 4)
    assert (s.best, s.best_epoch) == (0.6123, 2)
    assert [r.value for r in s.history] == VALUES
    assert s.best_row is not None and s.best_row.epoch == 2
    assert s.history[-1].losses == pytest.approx({"ce": 0.9, "recon": 0.2})
    assert s.leaders == {"fusion.cell0.op": "concat_fc", "mixer.text.layer0": "linear_glu"}
    assert s.weights_epoch == 3
    assert s.checkpoint == {"epoch": 2, "path": "runs/x/best.pt", "metric": "waf", "value": 0.6123}
    assert s.status == "finished" and s.ended
    assert s.elapsed() == pytest.approx(31.0)


def test_progress_and_eta_while_running() -> None:
    s = folded(search_events(end=False))
    assert s.status == "running" and not s.ended
    assert s.elapsed() == pytest.approx(30.0)  # to the last event
    assert s.elapsed(now=T0 + 45.0) == pytest.approx(45.0)
    # 3 epochs in 30 s: 10 s each, 17 to go, 5 s already into epoch 4
    assert s.eta(now=T0 + 35.0) == pytest.approx(170.0 - 5.0)
    s.update(dict(type="batch", time=T0 + 32.0, epoch=4, batch=1, n_batches=4, loss=1.0))
    assert (s.epoch, s.batch) == (4, 1)


def test_best_is_computed_when_the_event_lacks_it() -> None:
    s = DashboardState()
    s.update(dict(type="run_start", time=T0, metric="mae", higher_is_better=False, epochs=3))
    for epoch, value in enumerate([0.9, 0.7, 0.8], start=1):
        s.update(dict(type="epoch", time=T0 + epoch, epoch=epoch, value=value))
    assert (s.best, s.best_epoch) == (0.7, 2)


def test_unknown_and_untyped_events_are_ignored() -> None:
    s = folded(search_events(end=False))
    before = screen(render(s))
    s.update({"type": "telemetry", "time": T0 + 999.0, "gpu": 0.9})
    s.update({"time": T0 + 999.0})
    s.update({})
    assert s.last_time == pytest.approx(T0 + 30.0)
    assert screen(render(s)) == before


def test_render_shows_the_run() -> None:
    text = screen(render(folded(search_events())))
    assert "3/20" in text and "4/4" in text  # epoch and batch counters
    assert "0.6123" in text and "0.6123@2" in text and "best waf 0.6123 @ epoch 2" in text
    assert "◀ best" in text
    for label in WEIGHTS:
        assert label in text
    for name in ("sum", "concat_fc", "attention", "linear_glu", "leader"):
        assert name in text
    fusion = next(line for line in text.splitlines() if "fusion.cell0.op" in line)
    assert fusion.split("│")[1].split() == ["fusion.cell0.op", "0.11", "0.52", "0.27", "0.10", "concat_fc"]
    mixer = next(line for line in text.splitlines() if "mixer.text.layer0" in line)
    assert mixer.split("│")[1].split() == ["mixer.text.layer0", "0.25", "0.05", "0.30", "0.40", "linear_glu"]
    for word in ("rmnas", "darts", "iemocap6", "finished", "31.0s", "runs/x/best.pt"):
        assert word in text


def test_best_row_stays_in_view_and_labels_are_capped() -> None:
    s = DashboardState()
    s.update(dict(type="run_start", time=T0, strategy="darts", metric="waf", epochs=30))
    for epoch in range(1, 21):
        s.update(dict(type="epoch", time=T0 + epoch, epoch=epoch, value=0.9 if epoch == 1 else 0.5,
                      best=0.9, best_epoch=1))
    s.update(dict(type="choice_weights", time=T0 + 21, epoch=20,
                  weights={f"edge{i:02d}": {"a": 0.6, "b": 0.4} for i in range(20)}))
    text = screen(render(s))
    rows = [line.split("│")[1].split() for line in text.splitlines() if "◀ best" in line]
    assert len(rows) == 1 and rows[0][0] == "1"  # epoch 1 pinned above the last 8
    assert " 12 " not in text and "20" in text
    assert "edge15" in text and "edge16" not in text and "and 4 more labels" in text


def test_population_panel() -> None:
    s = folded(search_events(end=False))
    s.update(dict(type="generation", time=T0 + 40, generation=3, generations=10, best=0.64, mean=0.58,
                  diversity=0.4, best_genome={"fusion.cell0.op": "attention"}))
    text = screen(render(s))
    assert "population" in text and "3/10" in text and "0.6400" in text and "0.5800" in text
    assert "fusion.cell0.op=attention" in text
    assert "population" not in screen(render(folded(search_events())))


def trial_events() -> list[dict[str, Any]]:
    """run_start of a random search, then two trials (the second the best)."""
    return [dict(type="run_start", time=T0, command="search", space="toy", strategy="random", epochs=3,
                 data="iemocap6", seed=0, metric="waf", higher_is_better=True),
            dict(type="trial", time=T0 + 5, trial=1, arch={"op": "big", "pick": [0, 2]}, value=0.41, best=0.41,
                 metric="waf", parameters=1234, seconds=5.0),
            dict(type="trial", time=T0 + 9, trial=2, arch={"op": "skip", "pick": [1, 3]}, value=0.47, best=0.47,
                 metric="waf", parameters=321, seconds=4.0)]


def test_population_panel_shows_trials() -> None:
    s = folded(trial_events())
    assert [t["trial"] for t in s.trials] == [1, 2]
    text = screen(render(s))
    assert "population" in text and "choice weights" not in text
    assert "0.4700" in text and "1234" in text and "op=skip, pick=[1, 3]" in text
    assert "generation" not in text  # no generation table without generation events


def test_plain_progress_trial_and_generation_lines() -> None:
    stream = io.StringIO()
    sink = PlainProgress(stream)
    for ev in trial_events():
        sink.emit(ev)
    sink.emit(dict(type="generation", time=T0 + 10, generation=1, generations=4, best=0.47, mean=0.44,
                   diversity=0.5, best_genome={"op": "skip"}))
    sink.emit(dict(type="simplify_step", time=T0 + 11, step=1, removals=3, trained=3, within=1, removed="context"))
    sink.emit(dict(type="simplify_step", time=T0 + 12, step=2, removals=2, trained=2, within=0, removed=None))
    assert stream.getvalue().splitlines()[1:] == [
        "trial 1  waf 0.4100  best 0.4100  params 1234  5.0s",
        "trial 2  waf 0.4700  best 0.4700  params 321  4.0s",
        "generation 1/4  best 0.4700  mean 0.4400  diversity 0.500",
        "simplify step 1: 1 of 3 removals within the tolerance; leaves context out",
        "simplify step 2: 0 of 2 removals within the tolerance; keeps every component",
    ]


@pytest.mark.parametrize("width", [100, 160])
def test_render_fits_the_width(width: int) -> None:
    text = screen(render(folded(search_events())), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "mixer.text.layer0" in text and "linear_glu" in text


def test_render_before_any_event() -> None:
    text = screen(render(DashboardState()))
    assert "waiting" in text


def test_plain_progress_lines() -> None:
    stream = io.StringIO()
    sink = PlainProgress(stream)
    for ev in search_events():
        sink.emit(ev)
    assert stream.getvalue().splitlines() == [
        "search rmnas/darts on iemocap6, 20 epochs",
        "epoch 1/20  train 1.300  valid 1.250  waf 0.5012  best 0.5012@1  rho 0.00  10.0s",
        "epoch 2/20  train 1.200  valid 1.200  waf 0.6123  best 0.6123@2  rho 0.00  20.0s",
        "epoch 3/20  train 1.100  valid 1.150  waf 0.5987  best 0.6123@2  rho 0.00  30.0s",
        "run finished  best waf 0.6123@2  31.0s",
    ]


def test_plain_progress_failed_run_names_the_message() -> None:
    stream = io.StringIO()
    sink = PlainProgress(stream)
    sink.emit(dict(type="run_start", time=T0, command="train", space="rmnas", data="mosi", epochs=5))
    sink.emit(dict(type="run_end", time=T0 + 3, status="failed", elapsed=3.0, message="loss is NaN at epoch 1"))
    assert stream.getvalue().splitlines() == ["train rmnas on mosi, 5 epochs",
                                              "run failed  3.0s  loss is NaN at epoch 1"]


def test_make_sink_picks_by_terminal() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    pipe = Console(file=io.StringIO(), force_terminal=False, width=120)
    assert isinstance(make_sink(True, terminal), LiveDashboard)
    assert isinstance(make_sink(False, terminal), PlainProgress)
    sink = make_sink(True, pipe)
    assert isinstance(sink, PlainProgress) and sink.stream is pipe.file


def test_live_dashboard_runs_through_the_events() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    with LiveDashboard(console=console) as dash:
        for ev in search_events():
            dash.emit(ev)
    assert dash.state.status == "finished" and not dash.live.is_started
    out = console.file.getvalue()
    assert "mixer.text.layer0" in out and "finished" in out and "0.6123" in out


def write_events(path: Path, events: list[dict[str, Any]]) -> None:
    sink = JsonlSink(path)
    for ev in events:
        sink.emit(ev)
    sink.close()


def test_follow_a_finished_run(tmp_path: Path) -> None:
    write_events(tmp_path / "events.jsonl", search_events())
    console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
    state = follow(tmp_path, console=console, poll=0.01, timeout=5.0)
    assert state.status == "finished" and state.best == 0.6123
    assert "concat_fc" in console.file.getvalue()
    assert follow(tmp_path / "events.jsonl", console=console).status == "finished"  # the file itself


def test_follow_tails_until_run_end(tmp_path: Path) -> None:
    events = search_events()
    path = tmp_path / "events.jsonl"
    write_events(path, events[:10])
    line = json.dumps(events[10]) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:20])  # a partly written line waits for the rest

    def finish() -> None:
        time.sleep(0.1)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line[20:])
        write_events(path, events[11:])

    writer = threading.Thread(target=finish)
    writer.start()
    console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
    state = follow(tmp_path, console=console, poll=0.01, timeout=10.0)
    writer.join()
    assert state.status == "finished" and state.leaders["mixer.text.layer0"] == "linear_glu"
    assert console.file.getvalue().count("choice weights") == 1  # printed once, at the end


def test_follow_once_and_timeout_return_a_running_state(tmp_path: Path) -> None:
    write_events(tmp_path / "events.jsonl", search_events(end=False))
    console = Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)
    assert follow(tmp_path, console=console, once=True).status == "running"
    start = time.monotonic()
    assert follow(tmp_path, console=console, poll=0.01, timeout=0.1).status == "running"
    assert time.monotonic() - start < 2.0
    terminal = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    assert follow(tmp_path, console=terminal, poll=0.01, timeout=0.1).epoch == 3
    assert "running" in terminal.file.getvalue()


def test_follow_missing_run(tmp_path: Path) -> None:
    with pytest.raises(NasmercError, match="expected a run folder with events.jsonl") as info:
        follow(tmp_path / "nope")
    assert "nope" in str(info.value)
    with pytest.raises(NasmercError, match="events.jsonl"):
        follow(tmp_path)  # a folder without an events file
