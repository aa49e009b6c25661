"""The ``nasmerc`` command: argument parsing only; each subcommand calls one function elsewhere.

Command-line values become keyword arguments here, once; no argparse namespace travels into the
library. A :class:`~nasmerc.errors.NasmercError` from anywhere becomes one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from nasmerc.checks import output_file
from nasmerc.errors import NasmercError
from nasmerc.spec import RunSpec

DEFAULT_DATA = RunSpec().data


def cmd_data(args: argparse.Namespace) -> int:
    from nasmerc.config import parse_assignments
    from nasmerc.data.describe import describe, format_report
    from nasmerc.data.missing import DEFAULT_RATES, parse_rates
    from nasmerc.io import write_json
    from nasmerc.registry import create_dataset

    if args.name == "convert":
        from nasmerc.data.files import convert

        if len(args.extra) != 2:
            raise NasmercError("data convert: expected SPEC OUT.npz (e.g. nasmerc data convert "
                               "dialoguegcn:iemocap6:IEMOCAP_features.pkl iemocap6.npz)")
        overrides = parse_assignments(args.data_set)
        if args.nan_to_zero:
            overrides["nan_to_zero"] = "true"
        path = convert(args.extra[0], args.extra[1], overrides)
        print(f"wrote {path}")
        return 0
    if args.extra:
        raise NasmercError(f"data: unexpected argument(s) {args.extra} (expected one dataset name)")
    if args.json is not None:
        output_file("--json", args.json)
    rates = None
    if args.oracle or args.rates is not None:
        rates = parse_rates(args.rates) if args.rates is not None else DEFAULT_RATES
    overrides = parse_assignments(args.data_set)
    if args.nan_to_zero:
        overrides["nan_to_zero"] = "true"
    dataset = create_dataset(args.name, overrides)
    report = describe(dataset, rates, mask_seed=args.mask_seed)
    print(format_report(report))
    if args.json is not None:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nasmerc.registry import list_datasets, list_plugins, list_search_spaces, list_strategies

    from nasmerc.protocols import PROTOCOLS

    for title, names in (("search spaces", list_search_spaces()), ("strategies", list_strategies()),
                         ("datasets", list_datasets()), ("training plug-ins", list_plugins())):
        print(f"{title}: {', '.join(names) if names else '(none registered yet)'}")
    print("protocols (--protocol NAME):")
    for protocol in PROTOCOLS.values():
        print(f"  {protocol.summary()}")
    from nasmerc.protocols import PAPERS

    print(f"papers (nasmerc reproduce PAPER): {', '.join(PAPERS)}")
    return 0


def _sinks(live: bool) -> list:
    from nasmerc.dashboard import make_sink

    return [make_sink(live)]


def _with_sinks(live: bool, fn: Callable[[list], object]) -> object:
    """Run ``fn(sinks)`` with the dashboard (a live view on a terminal, plain lines elsewhere)."""
    sinks = _sinks(live)
    sink = sinks[0]
    if hasattr(sink, "__enter__"):
        with sink:
            return fn(sinks)
    return fn(sinks)


def _processes(args: argparse.Namespace, workers: int = 1) -> "object":
    """Join torchrun's process group when started by it, and set torch's threads (``--threads``, by
    default the cores shared among this machine's ranks or ``workers``); the world it returns."""
    import torch

    from nasmerc.train import distributed

    world = distributed.setup(args.device or "auto")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise NasmercError(f"--threads {threads}: expected an integer >= 1")
    torch.set_num_threads(threads or distributed.default_threads(world.local_size if world.distributed else workers))
    if world.distributed and getattr(args, "resume", None) is not None:
        raise NasmercError("--resume under torchrun: resume the run with one process, or start it again")
    return world


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from nasmerc.registry import list_search_spaces
    from nasmerc.workflow import search

    if not list_search_spaces():
        print("nasmerc is installed; no search space is registered, so there is nothing to search.")
        return 0
    shortcuts = [f"strategy.{key}={value}" for key, value in args.strategy_flags.items()]
    if args.nan_to_zero:
        shortcuts.append("data.nan_to_zero=true")
    world = _processes(args, args.workers or 1)
    if args.resume is not None:
        from nasmerc.workflow import resume_search

        _resume_alone(args, ("space", "strategy", "data", "preset", "config", "set", "plugin", "fix", "epochs",
                             "seed", "device", "workers", "out", "nan_to_zero", "protocol", "compile"),
                      bool(shortcuts))
        run_dir = _with_sinks(not args.no_dashboard, lambda sinks: resume_search(args.resume, sinks=sinks))
    else:
        run_dir = _with_sinks(not args.no_dashboard, lambda sinks: search(
            args.space, args.strategy, data=args.data, preset=args.preset, config_file=args.config,
            sets=[*args.set, *shortcuts, *(["train.compile=true"] if args.compile else [])],
            fixes=args.fix, epochs=args.epochs, seed=args.seed, device=args.device, workers=args.workers,
            out=args.out, plugins=args.plugin, protocol=args.protocol, sinks=sinks))
    if not world.leader:  # rank 0 reports
        return 0
    summary = json.loads((run_dir / "search.json").read_text())
    print(f"search {summary['space']}/{summary['strategy']} on {summary['data']}: best valid {summary['metric']} "
          f"{summary['best_valid']:.4f} (epoch {summary['best_epoch']}), {summary['wall_seconds']:.0f}s; "
          + (f"{summary['derived_parameters']:,} parameters" if summary["strategy"] == "fixed" else
             f"supernet {summary['supernet_parameters']:,} parameters, derived {summary['derived_parameters']:,}"))
    for label, choice in summary["arch_named"].items():
        print(f"  {label}: {choice}")
    if summary.get("note"):
        print(f"note: {summary['note']}")
    if (run_dir / "model.pt").exists():
        print(f"run folder: {run_dir} (model.pt: the trained model)\nnext: nasmerc evaluate {run_dir}")
    else:
        print(f"run folder: {run_dir}\nnext: nasmerc retrain {run_dir / 'arch.yaml'}")
    return 0


def _resume_alone(args: argparse.Namespace, options: Sequence[str], others: bool = False) -> None:
    """``--resume`` takes the run's own record: refuse any other option that would change it."""
    given = [name for name in options if getattr(args, name, None) not in (None, [], False)]
    if given or others:
        flag = f"--{given[0].replace('_', '-')}" if given else "a strategy flag"
        raise NasmercError(f"--resume {args.resume}: {flag} cannot be given with --resume (the run's config.yaml "
                           "holds its settings; start a new run to change them)")


def cmd_export(args: argparse.Namespace) -> int:
    from nasmerc.workflow import export

    if args.out:
        output_file("--out", args.out)
    path, arch = export(args.run, args.out, args.format)
    for label, choice in arch.items():
        print(f"  {label}: {choice}")
    print(f"wrote {path}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import json

    from nasmerc.workflow import retrain

    world = _processes(args)
    if args.resume is not None:
        from nasmerc.workflow import resume_retrain

        _resume_alone(args, ("arch", "epochs", "set", "plugin", "seed", "device", "out", "protocol", "compile"))
        run_dir = _with_sinks(not args.no_dashboard, lambda sinks: resume_retrain(args.resume, sinks=sinks))
    elif args.arch is None:
        raise NasmercError("retrain: expected an arch.yaml (or the run folder holding it), or --resume RUN")
    else:
        run_dir = _with_sinks(not args.no_dashboard, lambda sinks: retrain(
            args.arch, epochs=args.epochs, out=args.out, device=args.device, seed=args.seed,
            sets=[*args.set, *(["train.compile=true"] if args.compile else [])],
            plugins=args.plugin, protocol=args.protocol, sinks=sinks))
    if not world.leader:
        return 0
    if not (run_dir / "metrics.json").exists():  # an IME protocol: one model per rate
        for folder in sorted(run_dir.glob("rate-*")):
            m = json.loads((folder / "metrics.json").read_text())
            print(f"{folder.name}: best valid {m['metric']} {m['best_valid']:.4f} at epoch {m['best_epoch']}")
        print(f"wrote one model per rate under {run_dir}\nnext: nasmerc evaluate {run_dir}")
        return 0
    m = json.loads((run_dir / "metrics.json").read_text())
    print(f"retrained {m['parameters']:,} parameters for {m['epochs']} epochs in {m['wall_seconds']:.0f}s: "
          f"best valid {m['metric']} {m['best_valid']:.4f} at epoch {m['best_epoch']}")
    print(f"wrote {run_dir / 'model.pt'}\nnext: nasmerc evaluate {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nasmerc.data.missing import parse_rates
    from nasmerc.evaluate import evaluate_run, format_evaluation

    rates = parse_rates(args.rates) if args.rates is not None else None  # None: the run's protocol's sweep
    report = evaluate_run(args.run, rates, device=args.device, mask_seed=args.mask_seed, plot=args.plot)
    print(format_evaluation(report))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nasmerc import bench

    runs = Path(args.runs)
    results = Path(args.results) if args.results else runs / bench.RESULTS_FILE
    if args.plot is not None:
        output_file("--plot", args.plot)
    if args.table:
        rows = bench.read_results(results)
        if not rows:
            raise NasmercError(f"bench: {results}: no results yet (run the bench first)")
    else:
        if args.grid:
            grid = bench.Grid.from_yaml(args.grid)
        else:
            if not args.cell:
                raise NasmercError("bench: expected a grid file or at least one --cell space/strategy")
            grid = bench.Grid(cells=tuple(bench.parse_cell(c) for c in args.cell))
        changes = {k: v for k, v in (("data", tuple(args.data) if args.data else None),
                                     ("seeds", tuple(int(x) for x in args.seeds.split(",")) if args.seeds else None),
                                     ("sets", (*grid.sets, *args.set) if args.set else None),
                                     ("baselines", tuple(args.baseline) if args.baseline is not None else None),
                                     ("random_search", False if args.no_random else None),
                                     ("random_epochs", args.random_epochs)) if v is not None}
        if changes:
            import dataclasses

            grid = dataclasses.replace(grid, **changes)
        rows = bench.run_grid(grid, runs, results)
    summaries = bench.summarise(rows)
    print(bench.format_table(summaries))
    if args.plot is not None:
        print(f"wrote {bench.plot_summaries(summaries, args.plot)}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nasmerc import reproduce
    from nasmerc.protocols import get_paper

    paper = get_paper(args.paper)
    if args.threads is not None and args.threads < 1:
        raise NasmercError(f"--threads {args.threads}: expected an integer >= 1")
    data = args.data or paper.data
    settings = reproduce.Settings(paper, data, Path(args.out) if args.out else reproduce.default_out(paper.name, data),
                                  epochs=args.epochs, runs=args.runs, folds=reproduce.parse_folds(args.folds),
                                  preset=args.preset, sets=tuple(args.set), device=args.device)
    if args.dry_run:
        print(reproduce.format_plan(reproduce.plan(settings)))
        return 0
    _processes(args)
    try:
        report = reproduce.reproduce(settings)
    except KeyboardInterrupt as exc:  # the way on is this command again, not the stopped run's own --resume
        exc.resume = f"the same nasmerc reproduce command (it keeps what {settings.out} holds)"
        raise
    print(report["text"])
    print(f"wrote {settings.out / 'reproduce.json'} and {settings.out / 'reproduce.txt'}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from nasmerc.dashboard import follow

    follow(args.run, once=args.once, timeout=args.timeout)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from nasmerc.study import format_state, study_state

    print(format_state(study_state(args.storage, args.name)))
    return 0


class _StrategyFlag(argparse.Action):
    """Collects ``--trials 8`` style flags into ``args.strategy_flags`` (``{"trials": "8"}``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        flags = dict(getattr(namespace, "strategy_flags", None) or {})
        flags[self.dest] = values
        namespace.strategy_flags = flags


def add_strategy_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every config field a registered strategy offers as a shortcut (``Strategy.shortcuts``):
    ``--trials N`` is ``--set strategy.trials=N``, checked by the strategy's config like any ``--set``."""
    from dataclasses import fields

    from nasmerc.registry import get_strategy, list_strategies

    parser.set_defaults(strategy_flags={})
    offered: dict[str, list[str]] = {}
    for name in list_strategies():
        cls = get_strategy(name)
        for key in cls.shortcuts:
            if key in {f.name for f in fields(cls.Config)}:
                offered.setdefault(key, []).append(name)
    for key, names in sorted(offered.items()):
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, action=_StrategyFlag, default=argparse.SUPPRESS,
                            metavar="VALUE", help=f"strategy.{key} ({', '.join(names)})")


def build_parser() -> argparse.ArgumentParser:
    from nasmerc import __version__

    parser = argparse.ArgumentParser(
        prog="nasmerc",
        description="Neural architecture search for multimodal emotion recognition in conversation.",
    )
    parser.add_argument("--version", action="version", version=f"nasmerc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("data", help="describe a dataset; with --oracle, the Bayes ceiling per missing rate")
    p.add_argument("name", nargs="?", default=DEFAULT_DATA,
                   help=f"dataset name or file spec (default {DEFAULT_DATA}); 'convert SPEC OUT.npz' converts a file")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--set", dest="data_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dataset parameter, e.g. --set inertia=0.8 --set snr.text=1.5 (repeatable)")
    p.add_argument("--nan-to-zero", action="store_true", help="zero NaN / inf features of a file instead of refusing it")
    p.add_argument("--oracle", action="store_true", help="evaluate the exact oracle (synthetic data only)")
    p.add_argument("--rates", default=None, help="missing rates, e.g. 0,0.1,0.2 (default 0,0.1,...,0.7)")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the evaluation masks (default 0)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("list", help="list registered search spaces, strategies and datasets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("search", help="search an architecture (default: rmnas with darts on iemocap6)")
    p.add_argument("--space", default=None, help="search space (default rmnas; see nasmerc list)")
    p.add_argument("--strategy", default=None,
                   help="search strategy (default darts; fixed for a space with nothing to search)")
    p.add_argument("--data", default=None, help=f"dataset (default {DEFAULT_DATA})")
    p.add_argument("--preset", default=None, help="space preset: default or paper")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="a config file (a run's config.yaml works)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="space key, or train.KEY / strategy.KEY / data.KEY / plugin.NAME.KEY (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="NAME",
                   help="a training plug-in: curriculum or spcl (repeatable; see nasmerc list)")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="fix a value choice")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of the search")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--device", default=None, help="auto (default: CUDA when available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="train N candidates at a time in worker processes (population strategies; default 1; "
                        "0: as many as the GPU's free memory holds, one on a CPU)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/<time>-<space>-<strategy>)")
    p.add_argument("--no-dashboard", action="store_true", help="plain progress lines instead of the live view")
    p.add_argument("--nan-to-zero", action="store_true", help="zero NaN / inf features of a file instead of refusing it")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="go on with a search that did not finish (killed, interrupted, failed), as if it never stopped")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch's threads per process (default: the cores shared among --workers or torchrun's ranks)")
    p.add_argument("--protocol", default=None, metavar="NAME",
                   help="a paper's training and evaluation protocol (see nasmerc list; default: default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile=true)")
    add_strategy_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="derive the architecture of a search run again and write arch.yaml")
    p.add_argument("run", help="a search run folder")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="where to write (default RUN/arch.yaml, or RUN/nni_arch.json with --format nni)")
    p.add_argument("--format", default="yaml", choices=("yaml", "nni"),
                   help="yaml: nasmerc's arch.yaml (default); nni: NNI's architecture dict as JSON (docs/nni.md), "
                        "which nasmerc retrain also reads")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("retrain", help="train a found architecture from scratch")
    p.add_argument("arch", nargs="?", default=None, help="an arch.yaml (or the run folder holding it)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE")
    p.add_argument("--plugin", action="append", default=[], metavar="NAME", help="add a training plug-in")
    p.add_argument("--seed", type=int, default=None, help="default: the arch file's")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the arch file's)")
    p.add_argument("--out", default=None, metavar="DIR", help="default: retrain/ beside the arch file")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--resume", default=None, metavar="RUN", help="go on with a retrain run that did not finish")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch's threads per process (default: the cores shared among torchrun's ranks)")
    p.add_argument("--protocol", default=None, metavar="NAME",
                   help="a paper's protocol (default: the arch file's); an IME one trains a model per rate")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile=true)")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("evaluate", help="evaluate a trained model at every missing rate (UME)")
    p.add_argument("run", help="a run folder holding model.pt (or its retrain/ folder)")
    p.add_argument("--rates", default=None, help="missing rates (default 0,0.1,...,0.7)")
    p.add_argument("--mask-seed", type=int, default=0)
    p.add_argument("--plot", default=None, metavar="FILE.png", help="draw the metric against the missing rate")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="run a grid of searches over seeds; mean, spread and 95 %% intervals against "
                                     "baselines and equal-budget random search")
    p.add_argument("grid", nargs="?", default=None, metavar="GRID.yaml", help="a grid file (see nasmerc.bench.Grid)")
    p.add_argument("--cell", action="append", default=[], metavar="SPACE/STRATEGY", help="a cell (repeatable)")
    p.add_argument("--data", action="append", default=[], metavar="NAME", help="a dataset (repeatable; default iemocap6)")
    p.add_argument("--seeds", default=None, metavar="0,1,2", help="seeds (default 0,1,2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="--set for every run (repeatable)")
    p.add_argument("--baseline", action="append", default=None, metavar="SPACE",
                   help="a hand-designed baseline (repeatable; default early_fusion)")
    p.add_argument("--no-random", action="store_true", help="no equal-budget random search")
    p.add_argument("--random-epochs", type=int, default=None, metavar="N", help="epochs per random candidate (default 3)")
    p.add_argument("--runs", default="runs/bench", metavar="DIR", help="the run folders (default runs/bench)")
    p.add_argument("--results", default=None, metavar="FILE", help="results file (default RUNS/bench.jsonl)")
    p.add_argument("--table", action="store_true", help="print the table of the results file and run nothing")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="draw the shares with their intervals")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("reproduce", help="run a paper's protocol for its models and print its table beside ours")
    p.add_argument("paper", metavar="PAPER", help="rmnas, iteach, mfmb, corect, multidag, micga, ada2i or haemsa")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="a dataset name or feature file spec (default: the synthetic preset shaped like the paper's)")
    p.add_argument("--dry-run", action="store_true", help="print the runs (commands) and an estimated time only")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs of every training (a quick try)")
    p.add_argument("--runs", type=int, default=None, metavar="N", help="seeds per fold (default: the protocol's)")
    p.add_argument("--folds", default=None, metavar="LIST",
                   help="folds to run, e.g. 1,2 (default: the protocol's; 0: the data's own split)")
    p.add_argument("--preset", default="default", help="the spaces' preset: default (CPU-sized) or paper")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="data.KEY / train.KEY / strategy.KEY or a space key for every run (repeatable)")
    p.add_argument("--out", default=None, metavar="DIR", help="default runs/reproduce-PAPER-DATA (run again to go on)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch's threads (default: the cores)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("dashboard", help="follow a running or finished run in the terminal")
    p.add_argument("run", help="a run folder")
    p.add_argument("--once", action="store_true", help="draw the current state once and exit")
    p.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("study", help="a study that workers share: trials by state, best value and architecture, "
                                     "workers seen")
    p.add_argument("storage", metavar="URL", help="the workers' --storage: a database URL or journal:PATH")
    p.add_argument("name", metavar="NAME", help="the workers' --study")
    p.set_defaults(func=cmd_study)
    return parser


def _resume_hint(exc: BaseException) -> str:
    """How to go on with the run that was being written when the command was stopped (``nasmerc.runs``
    puts it on the interruption)."""
    command = getattr(exc, "resume", None)
    return f"; resume with: {command}" if command else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop) delivered as an interruption: the run folder's event log ends with
    ``run_end: interrupted``, as on Ctrl-C, and the command exits 143."""


def _terminate(signum: int, frame: object) -> None:
    """The first SIGTERM stops the run; later ones (a scheduler and a wrapper both signalling) are
    ignored, so the run folder is closed and the resume command said."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(f"terminated by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return func(args)
    except NasmercError as exc:
        print(f"nasmerc: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print("nasmerc: terminated" + _resume_hint(exc), file=sys.stderr)
        return 143
    except KeyboardInterrupt as exc:
        print("nasmerc: interrupted" + _resume_hint(exc), file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        from nasmerc.train.distributed import teardown

        teardown()


if __name__ == "__main__":
    sys.exit(main())
