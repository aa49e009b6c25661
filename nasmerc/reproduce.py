"""``nasmerc reproduce PAPER``: a paper's protocol run for its own models, its table printed beside ours.

A :class:`Paper` holds :class:`Experiment` s: a model (a space and strategy, with training plug-ins)
under one named protocol (``nasmerc.protocols``), and the rows of the paper's tables for that model
on each dataset it reports (:class:`Row`: the published number, cited by table, row and column of
the paper text, with the nasmerc metric and the statistic it corresponds to). Every row is a number
nasmerc computes the same way, or says in its note that it does not.

For the data given (``--data``, default the synthetic preset shaped like the paper's first dataset)
the plan (:func:`plan`) is every applicable experiment x fold x run: the protocol's folds
(IEMOCAP's five leave-one-session-out folds where the data have sessions, ``--set data.fold=K``; the
data's own split elsewhere) and runs (seeds 0, 1, ...), reduced for a quick try by ``--folds``,
``--runs``, ``--epochs``. One unit is what a user runs by hand (``--dry-run`` prints the commands):
``nasmerc search`` under the protocol, ``nasmerc retrain`` of the found architecture when the
strategy searches, ``nasmerc evaluate`` of the model over the protocol's sweep, or, for an IME
protocol, one search (and retrain) per rate trained and selected at that rate alone, each model
judged at its own rate. Every selection is on validation (``nasmerc.data.folds`` says where the
papers differ). Units run through the workflow functions, in this process.

A finished unit is one JSON line of ``reproduce.jsonl`` in the output folder (its row values, the
exact oracle's on synthetic data, the seconds it took); an interrupted reproduce goes on where it
stopped: a unit in the file is not run again, a finished search or retrain folder of an unfinished
unit is kept, an unfinished one made anew. ``reproduce.json`` and ``reproduce.txt`` hold the table:
per row the paper's number, ours (mean +- sd over runs x folds, ``nasmerc.bench.Spread``), and on
synthetic data the oracle's value on the same test masks and our share of it. The published tables
live beside the protocols (``nasmerc.protocols.PAPERS``).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nasmerc.bench import Spread, read_results
from nasmerc.errors import NasmercError
from nasmerc.io import write_json, write_text
from nasmerc.protocols import Experiment, Paper, Protocol, Row, get_protocol
from nasmerc.report import table

RESULTS_FILE = "reproduce.jsonl"
FRAME_FALLBACK = ("the data are dialogue-level, so whole utterances' modalities are dropped (train.masking=auto), "
                  "not frames; the protocol's frame masking needs utterance-level data (an MMSA file)")
SECONDS_PER_EPOCH = {"rmnas": (1.3, 0.9), "iteach": (8.7, 6.6), "mfmb": (0.0, 4.1), "corect": (0.0, 0.6),
                     "micga": (0.0, 1.1), "multidag": (0.0, 1.0), "ada2i": (0.0, 1.7), "haemsa": (1.9, 1.6)}
"""Seconds of one (search, training) epoch per 1000 training utterances (validation included), each space
at its default preset under its paper's protocol on its default data, on a shared 2-core CPU with one
thread: the wall seconds of ``search.json`` / ``metrics.json`` over epochs and training utterances after
``nasmerc reproduce PAPER --epochs 1 --runs 1 [--folds 1] --threads 1``. A search's epochs are a
population strategy's candidate epochs. The ``--dry-run`` estimate scales them by the data's training
utterances and adds :data:`SECONDS_PER_MODEL`; early stopping ends sooner."""
SECONDS_PER_MODEL = 8.0
"""Seconds per trained model besides its epochs (making the data, the test evaluation with the oracle),
from the same runs (their total time less their epochs)."""


def shape_of(config: dict[str, Any]) -> str:
    """Which real set a dataset is shaped like: the synthetic preset or the file's variant."""
    origin = config.get("origin") if isinstance(config.get("origin"), dict) else {}
    for source in (config, origin):
        for key in ("preset", "variant"):
            if isinstance(source.get(key), str) and source[key] not in ("", "npz"):
                return source[key]
    return ""


@dataclass(frozen=True)
class Settings:
    """What the user asked, checked (``reproduce`` takes it from the command line)."""

    paper: Paper
    data: str
    out: Path
    epochs: int | None = None
    runs: int | None = None
    folds: tuple[int, ...] | None = None
    preset: str = "default"
    sets: tuple[str, ...] = ()
    device: str | None = None


@dataclass(frozen=True)
class Unit:
    """One experiment on one fold with one seed: the trainings behind one value of each of its rows."""

    experiment: Experiment
    protocol: Protocol
    fold: int
    run: int
    folder: Path
    sets: tuple[str, ...]
    key: str
    shape: str
    rates: tuple[float | None, ...] = (None,)
    """IME: the rates, one search (and retrain) each; UME: one model."""


@dataclass
class Plan:
    """The units to run, and per applicable experiment its protocol, folds and extra ``--set`` values."""

    settings: Settings
    shape: str
    level: str
    utterances: int
    experiments: list[tuple[Experiment, Protocol, tuple[int, ...], list[str]]] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)


def parse_folds(text: str | None) -> tuple[int, ...] | None:
    """``--folds 1,3`` as fold numbers 0-5 (0: the dataset's own split)."""
    if text is None:
        return None
    try:
        folds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise NasmercError(f"--folds {text!r}: expected fold numbers 1-5 separated by commas (0: the data's own "
                           "split)") from None
    if not folds or any(not 0 <= f <= 5 for f in folds) or len(set(folds)) != len(folds):
        raise NasmercError(f"--folds {text!r}: expected distinct fold numbers 1-5 (0: the data's own split)")
    return folds


def _folds(settings: Settings, protocol: Protocol, has_sessions: bool) -> tuple[int, ...]:
    """The protocol's folds on these data, or the ``--folds`` asked when they are among them (or 0)."""
    folds = protocol.fold_list(has_sessions)
    if settings.folds is None:
        return folds
    bad = [f for f in settings.folds if f not in (0, *folds)]
    given = ",".join(map(str, settings.folds))
    if bad and folds == (0,):
        why = " (the data have no sessions)" if protocol.folds == "session" else ""
        raise NasmercError(f"--folds {given}: protocol {protocol.name!r} on {settings.data} uses the data's own "
                           f"split{why}: expected --folds 0 or none")
    if bad:
        raise NasmercError(f"--folds {given}: fold {bad[0]} is not a fold of protocol {protocol.name!r} "
                           f"(its folds: {', '.join(map(str, folds))}; 0: the data's own split)")
    return settings.folds


def _check(exp: Experiment, protocol: Protocol, settings: Settings, extra: Sequence[str], signature: Any) -> None:
    """What a search of ``exp`` would refuse (space, strategy, training, plug-in values), refused now."""
    from nasmerc.registry import get_search_space, get_strategy
    from nasmerc.train.plugins import make_plugins
    from nasmerc.train.trainer import check_training
    from nasmerc.workflow import split_sets, train_config

    sections = split_sets([*settings.sets, *extra])
    get_search_space(exp.space).from_preset(signature, settings.preset, sections.space).check_fixed({})
    get_strategy(exp.strategy).from_overrides(sections.strategy)
    train = train_config(protocol.train_config(), sections.train, exp.plugins, settings.epochs)
    check_training(train, signature)
    make_plugins(train.plugins, train.plugin_options, signature)


def plan(settings: Settings) -> Plan:
    """Every unit of the paper's protocols on ``settings.data``, every value checked before anything is written."""
    from nasmerc.registry import create_dataset
    from nasmerc.workflow import split_sets

    for key, value in (("--epochs", settings.epochs), ("--runs", settings.runs)):
        if value is not None and value < 1:
            raise NasmercError(f"{key} {value}: expected an integer >= 1")
    data_sets = split_sets(settings.sets).data
    if "fold" in data_sets:
        raise NasmercError("reproduce: --set data.fold: the folds come from the protocol (use --folds)")
    dataset = create_dataset(settings.data, data_sets)
    sig, paper = dataset.signature, settings.paper
    has_sessions = all(c.session is not None for _, convs in dataset for c in convs)
    out = Plan(settings, shape_of(dataset.config), sig.level, sum(len(c) for c in dataset.split("train")))
    for exp in paper.experiments:
        if exp.level not in ("any", sig.level) or out.shape not in exp.rows:
            continue
        protocol = get_protocol(exp.protocol)
        extra = ["train.masking=auto"] if protocol.train.get("masking") == "frame" and sig.level != "utterance" else []
        folds = _folds(settings, protocol, has_sessions)
        _check(exp, protocol, settings, extra, sig)
        out.experiments.append((exp, protocol, folds, extra))
        rates = tuple(protocol.sweep) if protocol.evaluation == "ime" else (None,)
        for fold in folds:
            for run in range(settings.runs or protocol.runs):
                key = json.dumps({"paper": paper.name, "experiment": exp.name, "data": settings.data, "fold": fold,
                                  "run": run, "epochs": settings.epochs, "preset": settings.preset,
                                  "set": list(settings.sets)}, sort_keys=True)
                folder = settings.out / exp.name / (f"fold{fold}" if fold else "split") / f"run{run}"
                sets = (*settings.sets, *([f"data.fold={fold}"] if fold else []), *extra)
                out.units.append(Unit(exp, protocol, fold, run, folder, sets, key, out.shape, rates))
    if not out.experiments:
        covered = "; ".join(f"{e.name}: {', '.join(e.rows)} ({e.level} level)" for e in paper.experiments)
        raise NasmercError(f"reproduce {paper.name}: {paper.title} has no table for {settings.data} "
                           f"(shaped like {out.shape or 'no known set'}, {sig.level} level); it reports {covered}")
    return out


# -- the commands ------------------------------------------------------------------------------------
def _search_dir(unit: Unit, rate: float | None, searches: bool) -> Path:
    if rate is None:
        return unit.folder / "search"
    return unit.folder / (f"search-rate-{rate:g}" if searches else f"rate-{rate:g}")


def _model_dir(unit: Unit, rate: float | None, searches: bool) -> Path:
    if not searches:
        return _search_dir(unit, rate, searches)
    return unit.folder / ("retrain" if rate is None else f"rate-{rate:g}")


def _rate_sets(rate: float | None) -> list[str]:
    return [] if rate is None else [f"train.missing=fixed:{rate:g}", f"train.valid_rates={rate:g}"]


def commands(unit: Unit, settings: Settings) -> list[str]:
    """The command lines a user runs by hand for ``unit``."""
    from nasmerc.registry import get_strategy

    exp, searches = unit.experiment, get_strategy(unit.experiment.strategy).searches
    common = [*(["--epochs", str(settings.epochs)] if settings.epochs else []),
              *(["--device", settings.device] if settings.device else []), "--no-dashboard"]
    lines = []
    for rate in unit.rates:
        search_dir = _search_dir(unit, rate, searches)
        argv = ["nasmerc", "search", "--space", exp.space, "--strategy", exp.strategy, "--protocol", exp.protocol,
                "--data", settings.data, *(["--preset", settings.preset] if settings.preset != "default" else []),
                *(a for p in exp.plugins for a in ("--plugin", p)),
                *(a for s in (*unit.sets, *_rate_sets(rate)) for a in ("--set", s)),
                "--seed", str(unit.run), *common, "--out", str(search_dir)]
        lines.append(shlex.join(argv))
        if searches:
            lines.append(shlex.join(["nasmerc", "retrain", str(search_dir / "arch.yaml"), *common,
                                     "--out", str(_model_dir(unit, rate, searches))]))
    target = unit.folder if unit.rates != (None,) else _model_dir(unit, None, searches)
    lines.append(shlex.join(["nasmerc", "evaluate", str(target)]))
    return lines


def done_keys(out: Path) -> set[str]:
    """The units ``out``'s results file already holds (none when there is no such file)."""
    return {r["key"] for r in read_results(out / RESULTS_FILE)} if (out / RESULTS_FILE).is_file() else set()


def estimate_seconds(p: Plan, done: set[str] = frozenset()) -> float:
    """The documented estimate (:data:`SECONDS_PER_EPOCH`, :data:`SECONDS_PER_MODEL`) of the units not in ``done``."""
    from nasmerc.registry import get_strategy

    total = 0.0
    for unit in p.units:
        if unit.key in done:
            continue
        exp, strategy = unit.experiment, get_strategy(unit.experiment.strategy)
        search_s, train_s = SECONDS_PER_EPOCH.get(exp.space, (5.0, 5.0))
        epochs = p.settings.epochs or unit.protocol.train_config().epochs
        cfg = strategy.Config()
        candidates = getattr(cfg, "population", 0) * getattr(cfg, "generations", 0) or getattr(cfg, "trials", 0)
        search_epochs = candidates * getattr(cfg, "candidate_epochs", 1) if candidates else epochs
        one = search_s * search_epochs + train_s * epochs if strategy.searches else train_s * epochs
        total += (one * p.utterances / 1000.0 + SECONDS_PER_MODEL) * len(unit.rates)
    return total


def format_plan(p: Plan) -> str:
    s = p.settings
    lines = [f"reproduce {s.paper.name}: {s.paper.title} on {s.data} (shaped like {p.shape or '?'}, {p.level} level)",
             *reduced_lines(p)]
    for exp, protocol, folds, extra in p.experiments:
        units = [u for u in p.units if u.experiment is exp]
        lines += ["", f"{exp.name}: {exp.space} / {exp.strategy}"
                  + (f" + {', '.join(exp.plugins)}" if exp.plugins else "") + f", protocol {protocol.summary()}",
                  f"  {len(units)} unit(s): {len({u.run for u in units})} run(s) x "
                  + (f"folds {', '.join(map(str, folds))} (leave-one-session-out)" if folds != (0,)
                     else "the data's own split")
                  + (f"; {len(units[0].rates)} rates each (IME)" if protocol.evaluation == "ime" else "; UME"),
                  *([f"  note: {exp.note}"] if exp.note else []),
                  *([f"  note: {FRAME_FALLBACK}"] if extra else [])]
        for unit in units:
            lines += [f"  {line}" for line in commands(unit, s)]
    done = done_keys(s.out)
    if done & {u.key for u in p.units}:
        lines += ["", f"{len(done & {u.key for u in p.units})} of {len(p.units)} unit(s) already done in {s.out}"]
    lines += ["", f"estimated time: {_duration(estimate_seconds(p, done))} on a CPU with one thread (a documented "
              "per-epoch estimate at the default presets, nasmerc.reproduce.SECONDS_PER_EPOCH; early stopping ends "
              "sooner, a GPU or --preset paper changes it)"]
    return "\n".join(lines)


def reduced_lines(p: Plan) -> list[str]:
    """What a quick try changed from the protocols (epochs, runs, folds) and the model sizes, said once each."""
    s = p.settings
    said: dict[str, list[str]] = {}
    for exp, protocol, folds, _ in p.experiments:
        every = protocol.fold_list(protocol.folds == "session" and (folds != (0,) or s.folds is not None))
        parts = [f"epochs {s.epochs} (protocol: {protocol.train_config().epochs})" if s.epochs else "",
                 f"runs {s.runs} (protocol: {protocol.runs})" if s.runs is not None and s.runs != protocol.runs else "",
                 f"folds {','.join(map(str, folds))} of {','.join(map(str, every))}"
                 if s.folds is not None and tuple(folds) != every else ""]
        text = "; ".join(x for x in parts if x)
        if text:
            said.setdefault(text, []).append(exp.name)
    out = [f"changed from the protocol ({', '.join(names)}): {text}" for text, names in said.items()]
    if s.preset != "paper":
        out.append(f"model sizes: the spaces' CPU-sized {s.preset!r} preset (the papers' sizes: --preset paper)")
    return out


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.0f} s"


# -- running -----------------------------------------------------------------------------------------
def _finished(folder: Path) -> bool:
    from nasmerc.runs import run_status

    return folder.is_dir() and run_status(folder) == "finished"


def _fresh(folder: Path) -> str:
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished run: made anew
    return str(folder)


def run_unit(unit: Unit, settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    """Search (+ retrain) every model of ``unit``, evaluate, and return its JSON line."""
    from nasmerc.evaluate import evaluate_run
    from nasmerc.registry import get_strategy
    from nasmerc.workflow import retrain, search

    exp, t0 = unit.experiment, time.time()
    searches = get_strategy(exp.strategy).searches
    for rate in unit.rates:
        search_dir, model_dir = _search_dir(unit, rate, searches), _model_dir(unit, rate, searches)
        at = "" if rate is None else f", rho {rate:g}"
        searched = not _finished(search_dir)
        if searched:
            log(f"reproduce: {exp.name} fold {unit.fold} run {unit.run}{at}: search {exp.space}/{exp.strategy}")
            search(exp.space, exp.strategy, data=settings.data, preset=settings.preset,
                   sets=[*unit.sets, *_rate_sets(rate)], epochs=settings.epochs, seed=unit.run,
                   device=settings.device, out=_fresh(search_dir), plugins=exp.plugins, protocol=exp.protocol)
        if searches and (searched or not _finished(model_dir)):  # a new search: its architecture retrained anew
            log(f"reproduce: {exp.name} fold {unit.fold} run {unit.run}{at}: retrain")
            retrain(str(search_dir / "arch.yaml"), epochs=settings.epochs, out=_fresh(model_dir),
                    device=settings.device)
    if unit.rates == (None,):
        report = evaluate_run(str(_model_dir(unit, None, searches)), list(unit.protocol.sweep),
                              device=settings.device or "auto")
    else:
        report = evaluate_run(str(unit.folder), device=settings.device or "auto")
    rows = exp.rows[unit.shape]
    return {"key": unit.key, "experiment": exp.name, "fold": unit.fold, "run": unit.run,
            "values": [row_value(report, row, "model") for row in rows],
            "oracle": [row_value(report, row, "oracle") for row in rows],
            "evaluation": report.get("written"), "seconds": time.time() - t0}


def row_value(report: dict[str, Any], row: Row, who: str) -> float | None:
    """The number of ``row`` in an evaluation report, for the model or the oracle (``None``: not there)."""
    if row.metric is None or f"{who}_metrics" not in report:
        return None
    per_rate = report[f"{who}_metrics"]
    if row.at == "auilc":
        return report.get(f"{who}_auilc", {}).get(row.metric)
    if row.at == "mean":
        values = [per_rate[str(r)].get(row.metric) for r in report["rates"]]
        return None if None in values else sum(values) / len(values)
    at = per_rate.get(str(float(row.at)))
    return None if at is None else at.get(row.metric)


def reproduce(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unit of the plan not yet done, then write and return the table (``reproduce.json``)."""
    p = plan(settings)
    out = settings.out
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / RESULTS_FILE).exists()):
        raise NasmercError(f"--out {out}: holds something other than a reproduce (no {RESULTS_FILE}); choose a new "
                           "or empty folder")
    results = out / RESULTS_FILE
    done = {r["key"]: r for r in read_results(results)} if results.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    results.touch()  # marks the folder as a reproduce's before its first unit, so a stopped one goes on
    for unit in p.units:
        if unit.key in done:
            continue
        row = run_unit(unit, settings, log)
        with results.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        done[unit.key] = row
    report = summarise(p, [done[u.key] for u in p.units])
    text = format_table(report)
    write_json(out / "reproduce.json", report)
    write_text(out / "reproduce.txt", text + "\n")
    report["text"] = text
    return report


def summarise(p: Plan, lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The table as data: per experiment its protocol and per row the paper's number, ours, the oracle's."""
    s = p.settings
    report: dict[str, Any] = {"paper": s.paper.name, "title": s.paper.title, "data": s.data, "shape": p.shape,
                              "level": p.level, "reduced": reduced_lines(p), "experiments": []}
    for exp, protocol, folds, extra in p.experiments:
        mine = [line for line in lines if line["experiment"] == exp.name]
        rows = []
        for i, row in enumerate(exp.rows[p.shape]):
            ours = Spread.of([m["values"][i] for m in mine if m["values"][i] is not None])
            oracle = Spread.of([m["oracle"][i] for m in mine if m["oracle"][i] is not None])
            share = None
            if ours.n and oracle.n:
                from nasmerc.evaluate import share_of_oracle

                share = share_of_oracle(row.metric or "", [ours.mean], [oracle.mean])
            rows.append({"label": row.label, "source": f"{s.paper.title} {row.source}", "paper": row.paper,
                         "metric": row.metric, "at": row.at, "scale": row.scale, "note": row.note,
                         "ours": {"mean": ours.mean if ours.n else None, "sd": ours.sd if ours.n > 1 else None,
                                  "n": ours.n, "values": ours.values},
                         "oracle": oracle.mean if oracle.n else None, "share_of_oracle": share})
        report["experiments"].append({
            "name": exp.name, "space": exp.space, "strategy": exp.strategy, "plugins": list(exp.plugins),
            "protocol": protocol.to_dict(), "folds": list(folds), "runs": sorted({m["run"] for m in mine}),
            "note": exp.note, "masking_fallback": bool(extra), "rows": rows,
            "seconds": sum(m["seconds"] for m in mine), "units": [m["key"] for m in mine]})
    return report


def _num(value: float | None, scale: float) -> str:
    """A number in the paper's unit: MAE / Corr with three decimals, percentages with two."""
    if value is None:
        return "-"
    return f"{value:.3f}" if scale == 1 else f"{value:.2f}"


def format_table(report: dict[str, Any]) -> str:
    """The side-by-side table of :func:`summarise`'s report; each distinct note once, under its table."""
    lines = [f"reproduce {report['paper']}: {report['title']} on {report['data']} "
             f"(shaped like {report['shape'] or '?'}, {report['level']} level)", *report["reduced"]]
    for e in report["experiments"]:
        p = e["protocol"]
        runs = e["runs"]
        lines += ["", f"{e['name']}: {e['space']} / {e['strategy']}" + (f" + {', '.join(e['plugins'])}" if e["plugins"]
                                                                         else "")
                  + f", protocol {p['name']} ({p['evaluation'].upper()}); {len(runs)} run(s) (seeds "
                  f"{','.join(map(str, runs))}) x " + (f"folds {','.join(map(str, e['folds']))}" if e["folds"] != [0]
                                                         else "the data's own split") + f"; {e['seconds']:.0f}s",
                  f"  protocol: {p['description']}", "  selection: on the validation split in every run"]
        notes: list[str] = [*([e["note"]] if e["note"] else []), *([FRAME_FALLBACK] if e["masking_fallback"] else [])]
        rows = []
        for r in e["rows"]:
            ours, k = r["ours"], r["scale"]
            mine = "not computed" if r["metric"] is None else "-" if not ours["n"] else (
                _num(ours["mean"] * k, k) + (f" ± {_num(ours['sd'] * k, k)}" if ours["n"] > 1 else ""))
            share = "-" if r["share_of_oracle"] is None else f"{100 * r['share_of_oracle']:.1f} %"
            if r["note"] and r["note"] not in notes:
                notes.append(r["note"])
            mark = f"[{notes.index(r['note']) + 1}]" if r["note"] else ""
            rows.append([r["label"], _num(r["paper"], k), mine, ours["n"],
                         "-" if r["oracle"] is None else _num(r["oracle"] * k, k), share,
                         r["source"].removeprefix(report["title"]).strip(), mark])
        lines.append(table(["row", "paper", "ours (mean ± sd)", "n", "oracle", "share of oracle", "published in",
                            "note"], rows))
        lines += [f"  [{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


def default_out(paper: str, data: str) -> Path:
    """``runs/reproduce-PAPER-DATA`` (a file spec by a short hash), the same for the same command."""
    from nasmerc.data.files import is_file_spec

    name = f"{Path(data.split(':')[-1]).stem}-{hashlib.sha1(data.encode()).hexdigest()[:6]}" if is_file_spec(data) \
        else data
    return Path("runs") / f"reproduce-{paper}-{name}"
