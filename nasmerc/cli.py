"""The ``nasmerc`` command: argument parsing only; each subcommand calls one function elsewhere.

Command-line values become keyword arguments here, once; no argparse namespace travels into the
library. A :class:`~nasmerc.errors.NasmercError` from anywhere becomes one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from nasmerc.errors import NasmercError

DEFAULT_DATA = "iemocap6"


def cmd_data(args: argparse.Namespace) -> int:
    from nasmerc.config import parse_assignments
    from nasmerc.data.describe import describe, format_report
    from nasmerc.data.missing import DEFAULT_RATES, parse_rates
    from nasmerc.io import write_json
    from nasmerc.registry import create_dataset

    rates = None
    if args.oracle or args.rates is not None:
        rates = parse_rates(args.rates) if args.rates is not None else DEFAULT_RATES
    dataset = create_dataset(args.name, parse_assignments(args.data_set))
    report = describe(dataset, rates, mask_seed=args.mask_seed)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nasmerc.registry import list_datasets, list_search_spaces, list_strategies

    for title, names in (("search spaces", list_search_spaces()), ("strategies", list_strategies()),
                         ("datasets", list_datasets())):
        print(f"{title}: {', '.join(names) if names else '(none registered yet)'}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nasmerc.registry import list_search_spaces

    spaces = list_search_spaces()
    if not spaces:
        print("nasmerc is installed; no search space is registered yet, so there is nothing to search. "
              "Try `nasmerc data iemocap6 --oracle`.")
        return 0
    raise NasmercError(f"search is not available in this version (spaces registered: {', '.join(spaces)})")


def build_parser() -> argparse.ArgumentParser:
    from nasmerc import __version__

    parser = argparse.ArgumentParser(
        prog="nasmerc",
        description="Neural architecture search for multimodal emotion recognition in conversation.",
    )
    parser.add_argument("--version", action="version", version=f"nasmerc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("data", help="describe a dataset; with --oracle, the Bayes ceiling per missing rate")
    p.add_argument("name", nargs="?", default=DEFAULT_DATA, help=f"dataset (default {DEFAULT_DATA})")
    p.add_argument("--set", dest="data_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dataset parameter, e.g. --set inertia=0.8 --set snr.text=1.5 (repeatable)")
    p.add_argument("--oracle", action="store_true", help="evaluate the exact oracle (synthetic data only)")
    p.add_argument("--rates", default=None, help="missing rates, e.g. 0,0.1,0.2 (default 0,0.1,...,0.7)")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the evaluation masks (default 0)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("list", help="list registered search spaces, strategies and datasets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("search", help="search an architecture")
    p.set_defaults(func=cmd_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except NasmercError as exc:
        print(f"nasmerc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasmerc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
