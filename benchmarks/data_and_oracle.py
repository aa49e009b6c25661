"""Time the synthetic generator and the exact oracle on every preset at paper size.

    python benchmarks/data_and_oracle.py [--rates 0,0.7]

Prints, per preset, the generation time, the oracle's time over the test split at each rate, and the
oracle's primary metric at the first and last rate.
"""

from __future__ import annotations

import argparse
import time

from nasmerc.data.missing import parse_rates
from nasmerc.data.synthetic import PRESETS, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,0.7")
    args = parser.parse_args()
    rates = parse_rates(args.rates)
    print(f"{'preset':10} {'utterances':>10} {'generate s':>11} {'oracle s':>9}  first / last rate")
    for name in PRESETS:
        t0 = time.perf_counter()
        ds = load(name)
        t1 = time.perf_counter()
        result = ds.oracle.evaluate(ds.splits["test"], rates)
        t2 = time.perf_counter()
        key = "waf" if ds.signature.task == "classification" else "mae"
        full = result["full"]
        n = sum(len(c) for _, convs in ds for c in convs)
        print(f"{name:10} {n:>10} {t1 - t0:>11.2f} {t2 - t1:>9.2f}  "
              f"{key} {full[rates[0]][key]:.4f} / {full[rates[-1]][key]:.4f}")


if __name__ == "__main__":
    main()
