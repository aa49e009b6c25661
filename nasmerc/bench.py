"""``nasmerc bench``: a declared grid of searches, run as a user would, reported over seeds.

A grid (a YAML file or flags; :class:`Grid`) names cells (a space and a strategy, with their own
``--set`` / ``--fix`` values), datasets and seeds. Every run of the grid is what a user does:
``nasmerc search``, ``nasmerc retrain`` of its ``arch.yaml`` when the search leaves no trained model,
then ``nasmerc evaluate`` (UME over the missing-rate sweep, test split). Beside the cells the bench
runs, paired by seed:

- the **baselines** (default ``early_fusion``): hand-designed models trained at the same settings;
- **random search at the same budget** for every searching cell: as many candidate-epochs as the
  cell spent (a supernet strategy's training epochs, a population strategy's trials x epochs),
  ``random_epochs`` per candidate. Both budgets are reported, in candidate-epochs and wall seconds.

Each finished run is appended as one JSON line to the results file (``bench.jsonl`` in the runs
folder by default), so an interrupted bench goes on where it stopped: a run already in the file is
not run again (a half-made run folder is made anew). :func:`summarise` turns the lines into one row
per cell: the mean, standard deviation and 95 % interval (Student's t) over seeds of the share of the
exact oracle (and of every other reported number), and the mean paired difference to each baseline
and to random search with its 95 % interval.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nasmerc.config import load_yaml
from nasmerc.errors import NasmercError
from nasmerc.registry import get_search_space, get_strategy
from nasmerc.report import table

DEFAULT_BASELINES = ("early_fusion",)
RANDOM = "random"
RESULTS_FILE = "bench.jsonl"

# two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); beyond, the normal's
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


@dataclass(frozen=True)
class Cell:
    """One space under one strategy, with its own ``--set`` and ``--fix`` values."""

    space: str
    strategy: str | None = None
    sets: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    role: str = "cell"  # "cell", "baseline" or "random"
    origin: str = ""    # for random search: the cell whose budget it has

    @property
    def name(self) -> str:
        """How tables name the cell (random search: by the cell it is compared with)."""
        if self.role == "random":
            return f"random search, budget of {self.origin}"
        extra = "".join(f" {s}" for s in (*self.sets, *(f"fix:{f}" for f in self.fixes)))
        return f"{self.space}/{self.strategy or 'default'}{extra}"

    @property
    def folder(self) -> str:
        """The cell's folder under the bench's runs: space, strategy and a digest of the rest."""
        digest = hashlib.sha1(json.dumps([self.sets, self.fixes, self.role, self.origin]).encode()).hexdigest()[:8]
        return f"{self.space}-{self.strategy or 'default'}-{digest}"


@dataclass(frozen=True)
class Grid:
    """What a bench runs: ``cells`` x ``data`` x ``seeds``, with ``sets`` for every run (say, epochs
    ``train.epochs=...``), the ``baselines`` and, unless ``random_search`` is off, equal-budget random
    search with ``random_epochs`` epochs per candidate."""

    cells: tuple[Cell, ...]
    data: tuple[str, ...] = ("iemocap6",)
    seeds: tuple[int, ...] = (0, 1, 2)
    sets: tuple[str, ...] = ()
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    random_search: bool = True
    random_epochs: int = 3

    def __post_init__(self) -> None:
        if not self.cells:
            raise NasmercError("bench: the grid has no cell (expected at least one space/strategy)")
        if not self.seeds or not self.data:
            raise NasmercError("bench: the grid needs at least one seed and one dataset")
        if self.random_epochs < 1:
            raise NasmercError(f"bench: random_epochs={self.random_epochs}: expected an integer >= 1")
        spaced = [s for s in self.sets if s.split("=", 1)[0].split(".", 1)[0] not in ("data", "train", "plugin")]
        if spaced:
            raise NasmercError(f"bench: --set {spaced[0]!r} applies to every run and space: give only data.*, "
                               "train.* and plugin.* keys there (a space's keys go in its cell's set)")
        for cell in self.cells:
            get_search_space(cell.space)
            if cell.strategy is not None:
                get_strategy(cell.strategy)
        for name in self.baselines:
            get_search_space(name)

    @classmethod
    def from_yaml(cls, path: str) -> "Grid":
        """A grid file: ``cells`` (a list of ``space/strategy`` strings or mappings with ``space``,
        ``strategy``, ``set``, ``fix``), ``data``, ``seeds``, ``set``, ``baselines``, ``random_search``,
        ``random_epochs``."""
        d = load_yaml(path)
        known = {"cells", "data", "seeds", "set", "baselines", "random_search", "random_epochs"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NasmercError(f"bench grid {path!r}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
        cells = tuple(parse_cell(c, f"bench grid {path!r}") for c in d.get("cells") or [])
        return cls(cells=cells, data=tuple(_names(d.get("data", ["iemocap6"]), "data", path)),
                   seeds=tuple(_ints(d.get("seeds", [0, 1, 2]), "seeds", path)),
                   sets=tuple(_names(d.get("set", []), "set", path)),
                   baselines=tuple(_names(d.get("baselines", list(DEFAULT_BASELINES)), "baselines", path)),
                   random_search=bool(d.get("random_search", True)), random_epochs=int(d.get("random_epochs", 3)))


def _names(value: Any, key: str, path: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if any(not isinstance(v, str) for v in items):
        raise NasmercError(f"bench grid {path!r}: {key!r} must be a list of strings, found {value!r}")
    return items


def _ints(value: Any, key: str, path: str) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise NasmercError(f"bench grid {path!r}: {key!r} must be a list of integers, found {value!r}")
    return items


def parse_cell(spec: Any, where: str = "bench") -> Cell:
    """``"space/strategy"``, ``"space"`` or ``{space, strategy, set: [...], fix: [...]}``."""
    if isinstance(spec, str):
        space, _, strategy = spec.partition("/")
        return Cell(space, strategy or None)
    if isinstance(spec, Mapping) and isinstance(spec.get("space"), str):
        unknown = sorted(set(spec) - {"space", "strategy", "set", "fix"})
        if unknown:
            raise NasmercError(f"{where}: cell {dict(spec)!r}: unknown key(s) {unknown}")
        return Cell(spec["space"], spec.get("strategy"), tuple(_names(spec.get("set", []), "set", where)),
                    tuple(_names(spec.get("fix", []), "fix", where)))
    raise NasmercError(f"{where}: cell {spec!r}: expected 'space/strategy' or a mapping with 'space'")


# -- running -----------------------------------------------------------------------------------------
def run_key(cell: Cell, data: str, seed: int, grid_sets: Sequence[str]) -> str:
    """The identity of one run in the results file."""
    return json.dumps({"cell": cell.name, "role": cell.role, "data": data, "seed": seed, "set": list(grid_sets),
                       "cell_set": list(cell.sets)}, sort_keys=True)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every run recorded in ``path`` (none when it does not exist); a torn last line is skipped."""
    if not path.exists():
        return []
    if not path.is_file():
        raise NasmercError(f"bench: results {path}: expected a results file (JSON lines), found a folder")
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def run_one(cell: Cell, data: str, seed: int, grid_sets: Sequence[str], out: Path) -> dict[str, Any]:
    """search (+ retrain) + evaluate of one cell, one dataset, one seed; the numbers of the run."""
    from nasmerc.workflow import search

    if out.exists():
        shutil.rmtree(out)  # a run not in the results file did not finish: made anew
    t0 = time.time()
    run_dir = search(cell.space, cell.strategy, data=data, sets=[*grid_sets, *cell.sets], fixes=cell.fixes,
                     seed=seed, out=str(out))
    return finish_run(cell, data, seed, grid_sets, run_dir, time.time() - t0)


def finish_run(cell: Cell, data: str, seed: int, grid_sets: Sequence[str], run_dir: Path,
               search_seconds: float) -> dict[str, Any]:
    """Retrain (when the search left no model) and evaluate the finished search ``run_dir`` of one cell,
    one dataset, one seed, which took ``search_seconds``; the numbers of the run (a results row)."""
    from nasmerc.evaluate import evaluate_run
    from nasmerc.workflow import retrain

    t1 = time.time()
    model_dir = run_dir
    if not (run_dir / "model.pt").exists():
        model_dir = retrain(str(run_dir / "arch.yaml"))
    t2 = time.time()
    report = evaluate_run(str(model_dir))
    found = json.loads((run_dir / "search.json").read_text())
    trained = json.loads((model_dir / "metrics.json").read_text())
    config = load_yaml(str(run_dir / "config.yaml"))
    return {
        "cell": cell.name, "role": cell.role, "space": cell.space, "strategy": found["strategy"], "data": data,
        "seed": seed, "set": list(grid_sets), "cell_set": list(cell.sets), "metric": report["metric"],
        "share_of_oracle": report.get("share_of_oracle"), "mean": report["mean"][report["metric"]],
        "auilc": report["model_auilc"].get(report["metric"]), "parameters": trained["parameters"],
        "best_valid": found["best_valid"], "candidate_epochs": candidate_epochs(found, config),
        "search_seconds": search_seconds, "retrain_seconds": t2 - t1 if model_dir != run_dir else 0.0,
        "arch": found["arch"], "run": str(run_dir),
    }


def candidate_epochs(found: Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """What a search spent, in epochs of training: its candidates' epochs, or its (super)net's (a
    one-shot search: the supernet's epochs, its inherited scores costing none), with its finalists'."""
    if found.get("oneshot"):
        return int(found["oneshot"]["supernet_epochs"] + found.get("finalist_epochs", 0))
    trials = found.get("trials")
    if trials:  # the epochs each trained (a pruned one fewer); a record without them, candidate_epochs each
        epochs = (config.get("strategy_config") or {}).get("candidate_epochs", 1)
        return int(sum(t.get("epochs", epochs) for t in trials) + found.get("finalist_epochs", 0))
    return int((config.get("train") or {}).get("epochs", 0))


def random_cell(cell: Cell, budget: int, epochs: int) -> Cell:
    """Random search over ``cell``'s space at ``budget`` candidate-epochs, ``epochs`` per candidate."""
    trials = max(1, math.ceil(budget / epochs))
    sets = (*(s for s in cell.sets if not s.startswith("strategy.")), f"strategy.trials={trials}",
            f"strategy.candidate_epochs={epochs}")
    return Cell(cell.space, RANDOM, sets, cell.fixes, role="random", origin=cell.name)


def plan(grid: Grid) -> Iterator[tuple[Cell, str, int]]:
    """The baselines and searching cells of the grid, every dataset and seed (random search follows
    each searching run, since its budget is that run's). The baselines of a seed come first: they are
    quick, and a bench stopped early has what its cells are compared with."""
    baselines = tuple(Cell(name, None, role="baseline") for name in grid.baselines)
    for data in grid.data:
        for seed in grid.seeds:
            for cell in (*baselines, *grid.cells):
                yield cell, data, seed


def run_grid(grid: Grid, runs: Path, results: Path, log=print) -> list[dict[str, Any]]:
    """Run every missing run of ``grid`` under ``runs``, appending each to ``results``; all the grid's runs."""
    done = {run_key_of(r): r for r in read_results(results)}
    runs.mkdir(parents=True, exist_ok=True)

    def record(cell: Cell, data: str, seed: int) -> dict[str, Any]:
        key = run_key(cell, data, seed, grid.sets)
        if key in done:
            return done[key]
        folder = runs / cell.folder / data / f"seed{seed}"
        log(f"bench: {cell.name} on {data}, seed {seed} ...")
        row = run_one(cell, data, seed, grid.sets, folder)
        with results.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        done[key] = row
        log(f"bench: {cell.name} on {data}, seed {seed}: share of the oracle {_pct(row['share_of_oracle'])}, "
            f"{row['candidate_epochs']} candidate-epochs, search {row['search_seconds']:.0f}s")
        return row

    rows = []
    for cell, data, seed in plan(grid):
        row = record(cell, data, seed)
        rows.append(row)
        searching = cell.role == "cell" and get_strategy(row["strategy"]).searches and row["strategy"] != RANDOM
        if grid.random_search and searching:
            rows.append(record(random_cell(cell, row["candidate_epochs"], grid.random_epochs), data, seed))
    return rows


def run_key_of(row: Mapping[str, Any]) -> str:
    return json.dumps({"cell": row["cell"], "role": row["role"], "data": row["data"], "seed": row["seed"],
                       "set": row["set"], "cell_set": row["cell_set"]}, sort_keys=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


# -- statistics ----------------------------------------------------------------------------------------
@dataclass
class Spread:
    """Mean, standard deviation (``n - 1``) and the half-width of the 95 % interval of ``n`` values."""

    mean: float
    sd: float
    half: float
    n: int
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        v = [float(x) for x in values]
        n = len(v)
        if n == 0:
            return cls(float("nan"), float("nan"), float("nan"), 0, [])
        sd = float(np.std(v, ddof=1)) if n > 1 else float("nan")
        half = (_T95[n - 2] if n - 1 <= len(_T95) else 1.96) * sd / math.sqrt(n) if n > 1 else float("nan")
        return cls(float(np.mean(v)), sd, half, n, v)

    def side(self) -> str:
        """Where the 95 % interval of a paired difference lies: ``above 0`` (the cell is better on these
        seeds), ``below 0``, ``spans 0`` (not separated) or ``one seed`` (no interval)."""
        if self.n < 2 or math.isnan(self.half):
            return "one seed"
        if self.mean - self.half > 0:
            return "above 0"
        return "below 0" if self.mean + self.half < 0 else "spans 0"

    def pct(self) -> str:
        """``86.6 ± 0.3 [86.1, 87.1]`` in percent (the interval only with two values or more)."""
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{100 * self.mean:.1f}"
        return (f"{100 * self.mean:.1f} ± {100 * self.sd:.1f} "
                f"[{100 * (self.mean - self.half):.1f}, {100 * (self.mean + self.half):.1f}]")


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Spread:
    """The differences ``a - b`` over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    return Spread.of([a[s] - b[s] for s in seeds])


def summarise(rows: Sequence[Mapping[str, Any]], key: str = "share_of_oracle") -> list[dict[str, Any]]:
    """One summary per (cell, role, data): the spread of ``key`` over seeds, paired differences to each
    baseline and to the cell's equal-budget random search, and the mean budget."""
    groups: dict[tuple[str, str, str], dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        if r.get(key) is not None:
            groups.setdefault((r["cell"], r["role"], r["data"]), {})[int(r["seed"])] = r
    baselines = {(c, d): g for (c, role, d), g in groups.items() if role == "baseline"}
    out = []
    for (cell, role, data), by_seed in groups.items():
        values = {s: float(r[key]) for s, r in by_seed.items()}
        summary = {"cell": cell, "role": role, "data": data, "spread": Spread.of(list(values.values())),
                   "seeds": sorted(values),
                   "candidate_epochs": float(np.mean([r["candidate_epochs"] for r in by_seed.values()])),
                   "seconds": float(np.mean([r["search_seconds"] + r["retrain_seconds"] for r in by_seed.values()])),
                   "parameters": float(np.mean([r["parameters"] for r in by_seed.values()])), "versus": {}}
        if role == "cell":
            for (base, d), g in baselines.items():
                if d == data:
                    summary["versus"][base] = paired(values, {s: float(r[key]) for s, r in g.items()})
            rand = groups.get((Cell(cell, role="random", origin=cell).name, "random", data))
            if rand:
                summary["versus"]["equal-budget random"] = paired(values, {s: float(r[key]) for s, r in rand.items()})
        out.append(summary)
    order = {"cell": 0, "random": 1, "baseline": 2}
    return sorted(out, key=lambda s: (s["data"], order.get(s["role"], 3), -s["spread"].mean))


def format_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The bench table: share of the exact oracle over seeds, paired differences (each with where its
    interval lies, :meth:`Spread.side`), whether the cell beats its equal-budget random search (``yes``
    only when the paired interval is above 0), budget."""
    rows = []
    for s in summaries:
        versus = "; ".join(f"{name} {'+' if d.mean >= 0 else ''}{d.pct()} ({d.side()})"
                           for name, d in s["versus"].items() if d.n)
        rand = s["versus"].get("equal-budget random")
        side = rand.side() if rand is not None and rand.n else None
        beats = "-" if side is None else "yes" if side == "above 0" else f"no ({side})"
        rows.append([s["data"], s["cell"], s["role"], s["spread"].pct(), len(s["seeds"]), versus or "-", beats,
                     f"{s['candidate_epochs']:.0f}", f"{s['seconds']:.0f}", f"{s['parameters']:,.0f}"])
    headers = ["data", "cell", "role", "share of oracle % (mean ± sd [95 % CI])", "seeds",
               "paired difference, points (mean ± sd [95 % CI])", "beats random", "cand.-epochs", "seconds",
               "parameters"]
    return table(headers, rows)


def plot_summaries(summaries: Sequence[Mapping[str, Any]], path: str) -> Path:
    """Bars of the mean share of the oracle per cell with their 95 % intervals, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nasmerc.io import atomic_write

    labels = [textwrap.shorten(f"{s['cell']} ({s['data']})", 60, placeholder=" ...") for s in summaries]
    means = [100 * s["spread"].mean for s in summaries]
    errs = [0.0 if math.isnan(s["spread"].half) else 100 * s["spread"].half for s in summaries]
    colors = {"cell": "tab:blue", "random": "tab:gray", "baseline": "tab:orange"}
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5), dpi=120)
    ax.barh(range(len(labels)), means, xerr=errs, color=[colors.get(s["role"], "tab:blue") for s in summaries])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("share of the exact oracle, % (mean over seeds, 95 % interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    atomic_write(out, lambda fh: fig.savefig(fh, format="png"), binary=True)
    plt.close(fig)
    return out
