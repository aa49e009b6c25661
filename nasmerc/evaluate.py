"""Unified-model evaluation (UME) over the missing-rate sweep, with the oracle beside the model.

One trained model is evaluated, weights unchanged, on the test split at every rate of the sweep
under the fixed masks of ``(rate, mask_seed)`` (``nasmerc.data.missing``); on synthetic data the
exact oracle is scored on the very same masks. The report holds per rate every metric of the task,
AUILC of each metric over the sweep (RMNAS eq. 14), and the model's share of the oracle: the mean
primary metric over the sweep divided by the oracle's (inverted for MAE, where lower is better).
Beside the exact oracle stands the learnable ceiling (``nasmerc.data.learnable``): the generator's
parameters estimated from the training split alone, then the same forward-backward on the same
masks; ``share_of_learnable`` measures the model against it. This is the only place where the test
split is used.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasmerc import checks, metrics
from nasmerc.data.learnable import LearnableOracle
from nasmerc.data.missing import DEFAULT_RATES, check_rate, single_modality_note
from nasmerc.errors import NasmercError
from nasmerc.io import write_json
from nasmerc.report import table
from nasmerc.runs import EVALUATION_FILE, find_model
from nasmerc.train.trainer import Trainer, resolve_device


def _auilc(rates: Sequence[float], per_rate: dict[str, dict[str, float]]) -> dict[str, float]:
    if len(rates) < 2:
        return {}
    keys = per_rate[str(rates[0])].keys()
    return {k: metrics.auilc(list(rates), [per_rate[str(r)][k] for r in rates]) for k in keys}


def share_of_oracle(metric: str, model_values: Sequence[float], oracle_values: Sequence[float]) -> float:
    """Mean model metric over the sweep as a share of the oracle's (oracle / model for MAE)."""
    m, o = float(np.mean(model_values)), float(np.mean(oracle_values))
    if metrics.HIGHER_IS_BETTER.get(metric, True):
        return m / o if o else float("nan")
    return o / m if m else float("nan")


def trained_share(trainer: Trainer, dataset, rates: Sequence[float] = DEFAULT_RATES) -> tuple[list[float], float]:
    """A trained ``Trainer``'s primary metric on the test split of synthetic ``dataset`` at every rate
    (UME), and its share of the exact oracle on the same masks."""
    test = dataset.split("test")
    values = [trainer.evaluate(test, r)[trainer.metric] for r in rates]
    oracle = dataset.oracle.evaluate(test, rates)["full"]
    return values, share_of_oracle(trainer.metric, values, [oracle[r][trainer.metric] for r in rates])


def protocol_rates(model_path: Path) -> tuple[float, ...]:
    """The evaluation sweep of the protocol a model was trained under (``nasmerc.protocols``), read from
    the ``config.yaml`` beside its ``model.pt`` (the protocol it records, else the one it names); the
    default sweep when there is none."""
    from nasmerc.protocols import PROTOCOLS, Protocol
    from nasmerc.runs import CONFIG_FILE, read_yaml

    path = model_path.parent / CONFIG_FILE
    config = read_yaml(path, "a run's config.yaml") if path.exists() else {}
    if "protocol_config" in config:
        return Protocol.from_dict(config["protocol_config"], f"{path}: protocol_config").sweep
    name = config.get("protocol", "default")
    return PROTOCOLS[name].sweep if name in PROTOCOLS else DEFAULT_RATES


def report_suffix(rates: Sequence[float], mask_seed: int, sweep: Sequence[float] = DEFAULT_RATES) -> str:
    """What names an evaluation other than the default one: ``""`` for the default sweep with masks
    seeded 0, else ``rates-0-0.5`` and / or ``seed-3`` (a long list of rates by its count and a hash)."""
    parts = []
    if tuple(rates) != tuple(sweep):
        listed = "-".join(f"{r:g}" for r in rates)
        parts.append(f"rates-{listed}" if len(listed) <= 60 else
                     f"rates-{len(rates)}-{hashlib.sha1(listed.encode()).hexdigest()[:8]}")
    if mask_seed:
        parts.append(f"seed-{mask_seed}")
    return "-".join(parts)


def suffixed(path: str | Path, suffix: str) -> Path:
    """``path`` with ``-suffix`` before its extension (``sweep.png`` -> ``sweep-rates-0.png``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{suffix}{path.suffix}") if suffix else path


def ime_models(run: str | Path) -> dict[float, Path]:
    """The models of an IME run folder (``nasmerc retrain --protocol rmnas``): ``rate-R/`` -> R."""
    out = {}
    for folder in sorted(Path(run).glob("rate-*")):
        try:
            rate = float(folder.name[len("rate-"):])
        except ValueError:
            continue
        if (folder / "model.pt").exists():
            out[rate] = folder
    return dict(sorted(out.items()))


def summarise(report: dict[str, Any]) -> None:
    """Add to ``report`` (its ``rates``, ``metric`` and per-rate metrics) the model's mean over the rates
    and, where the ceilings were evaluated, its share of the oracle's and of the learnable ceiling's."""
    rates, key = report["rates"], report["metric"]
    model = report["model_metrics"]
    values = [model[str(r)][key] for r in rates]
    if "oracle_metrics" in report:
        for name, ceiling in (("share_of_oracle", "oracle_metrics"), ("share_of_learnable", "learnable_oracle_metrics")):
            report[name] = share_of_oracle(key, values, [report[ceiling][str(r)][key] for r in rates])
    report["mean"] = {k: float(np.mean([model[str(r)][k] for r in rates])) for k in model[str(rates[0])]}


def evaluate_ime(run: str, *, device: str = "auto", mask_seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    """Independent-model evaluation (ITEACH-Net sec. 'Evaluation'): each model of an IME run folder at its
    own rate alone; the report (``evaluation.json`` of the run folder) has the same shape as a UME one."""
    models = ime_models(run)
    parts = {rate: evaluate_run(str(folder), [rate], device=device, mask_seed=mask_seed, protocol_sweep=False)
             for rate, folder in models.items()}
    rates = list(parts)
    first = parts[rates[0]]
    report: dict[str, Any] = {**{k: first[k] for k in ("space", "arch", "data", "split", "metric")},
                              "model": str(run), "protocol": "IME", "mask_seed": mask_seed, "rates": rates}
    for name in ("model", "oracle", "context_free_oracle", "learnable_oracle"):
        if f"{name}_metrics" in first:
            per_rate = {str(r): parts[r][f"{name}_metrics"][str(r)] for r in rates}
            report[f"{name}_metrics"], report[f"{name}_auilc"] = per_rate, _auilc(rates, per_rate)
    summarise(report)
    out = write_json(Path(run) / EVALUATION_FILE, report)
    report["written"] = str(out)
    if plot is not None:
        report["plot"] = str(plot_sweep(report, str(checks.output_file("--plot", plot))))
    return report


def evaluate_run(run: str, rates: Sequence[float] | None = None, *, device: str = "auto", mask_seed: int = 0,
                 plot: str | None = None, protocol_sweep: bool = True) -> dict[str, Any]:
    """Evaluate the run's ``model.pt`` at every rate and write the report beside it.

    The default sweep (``DEFAULT_RATES``, masks seeded 0) writes ``evaluation.json``. Other rates or
    another mask seed write a file named by them, ``evaluation-rates-0.json`` or
    ``evaluation-rates-0-0.5-seed-3.json`` (see :func:`report_suffix`), and the ``plot`` file takes the
    same suffix (``sweep.png`` -> ``sweep-rates-0.png``): an evaluation never replaces a different
    earlier one, only a repeat of itself. ``report["written"]`` and ``report["plot"]`` say where it
    wrote. The rates, the mask seed and the output paths are checked before the model is loaded.
    """
    from nasmerc.workflow import load_model

    if rates is None and not Path(run, "model.pt").exists() and ime_models(run):
        return evaluate_ime(run, device=device, mask_seed=mask_seed, plot=plot)
    sweep = protocol_rates(find_model(run)) if protocol_sweep else DEFAULT_RATES
    rates = [check_rate(r) + 0.0 for r in (sweep if rates is None else rates)]  # + 0.0: -0.0 is 0.0
    if not rates:
        raise NasmercError("rates: expected at least one missing rate")
    repeated = sorted({r for r in rates if rates.count(r) > 1})
    if repeated:
        raise NasmercError(f"rates {rates}: {repeated[0]} repeats (expected distinct rates)")
    checks.at_least("evaluate", 0, mask_seed=mask_seed)
    suffix = report_suffix(rates, mask_seed, sweep)
    plot_path = None
    if plot is not None:  # the path given, then the one written (the same folder)
        checks.output_file("--plot", plot)
        plot_path = checks.output_file("--plot", suffixed(plot, suffix))
    model_path = find_model(run)
    out = checks.output_file("the evaluation report", suffixed(model_path.parent / EVALUATION_FILE, suffix))
    torch_device = resolve_device(device)
    model, dataset, spec, arch = load_model(model_path, torch_device)
    note = single_modality_note(dataset.signature, spec.train.masking)
    if note:  # nothing can go missing: one row, not identical rows for rates that cannot apply
        rates = [0.0]
    trainer = Trainer(model, dataset.signature, dataclasses.replace(spec.train, mask_seed=mask_seed),
                      device=torch_device, seed=spec.seed)
    test = dataset.split("test")
    model_per_rate = {str(r): trainer.evaluate(test, r, mask_seed) for r in rates}
    report: dict[str, Any] = {
        "model": str(model_path), "space": spec.space, "arch": arch, "data": spec.data, "split": "test",
        "protocol": "UME", "mask_seed": mask_seed, "rates": rates,
        "metric": trainer.metric, "model_metrics": model_per_rate, "model_auilc": _auilc(rates, model_per_rate),
    }
    if dataset.oracle is not None:
        result = dataset.oracle.evaluate(test, rates, seed=mask_seed)
        for kind in ("full", "context_free"):
            per_rate = {str(r): result[kind][r] for r in rates}
            name = "oracle" if kind == "full" else "context_free_oracle"
            report[f"{name}_metrics"] = per_rate
            report[f"{name}_auilc"] = _auilc(rates, per_rate)
        learnable = LearnableOracle.fit(dataset).evaluate(test, rates, seed=mask_seed)["full"]
        report["learnable_oracle_metrics"] = {str(r): learnable[r] for r in rates}
        report["learnable_oracle_auilc"] = _auilc(rates, report["learnable_oracle_metrics"])
    summarise(report)
    if note:
        report["note"] = note
    write_json(out, report)
    report["written"] = str(out)
    if plot_path is not None:
        report["plot"] = str(plot_sweep(report, str(plot_path)))
    return report


def format_evaluation(report: dict[str, Any]) -> str:
    key = report["metric"]
    extra = "acc" if key == "waf" else "corr"
    rates = report["rates"]
    has_oracle = "oracle_metrics" in report
    has_learnable = "learnable_oracle_metrics" in report
    headers = ["rho", f"model {key}", f"model {extra}"]
    if has_oracle:
        headers += [f"oracle {key}", *([f"learnable {key}"] if has_learnable else []), f"context-free {key}"]
    rows = []
    for r in rates:
        m = report["model_metrics"][str(r)]
        row = [f"{r:.2f}", m[key], m[extra]]
        if has_oracle:
            row += [report["oracle_metrics"][str(r)][key],
                    *([report["learnable_oracle_metrics"][str(r)][key]] if has_learnable else []),
                    report["context_free_oracle_metrics"][str(r)][key]]
        rows.append(row)
    if len(rates) >= 2:
        row = ["AUILC", report["model_auilc"][key], report["model_auilc"][extra]]
        if has_oracle:
            row += [report["oracle_auilc"][key], *([report["learnable_oracle_auilc"][key]] if has_learnable else []),
                    report["context_free_oracle_auilc"][key]]
        rows.append(row)
    kind = "independent-model (one model per rate)" if report.get("protocol") == "IME" else "unified-model"
    lines = [f"{kind} evaluation of {report['model']} on the test split (masks seeded {report['mask_seed']})",
             *([f"note: {report['note']}"] if report.get("note") else []),
             table(headers, rows)]
    mean = report["mean"][key]
    if has_oracle:
        oracle_mean = float(np.mean([report["oracle_metrics"][str(r)][key] for r in rates]))
        lines.append(f"mean {key} over rho {rates[0]:g}..{rates[-1]:g}: model {mean:.4f}, oracle {oracle_mean:.4f}, "
                     f"share of the oracle {100 * report['share_of_oracle']:.1f} %")
        if has_learnable:
            learnable_mean = float(np.mean([report["learnable_oracle_metrics"][str(r)][key] for r in rates]))
            lines.append(f"learnable ceiling (the generator's family fitted on the training split): {key} "
                         f"{learnable_mean:.4f}, share of the learnable ceiling {100 * report['share_of_learnable']:.1f} %")
    else:
        lines.append(f"mean {key} over rho {rates[0]:g}..{rates[-1]:g}: {mean:.4f}")
    lines.append(f"wrote {report['written']}" + (f" and {report['plot']}" if report.get("plot") else ""))
    return "\n".join(lines)


def plot_sweep(report: dict[str, Any], path: str) -> Path:
    """The metric-against-missing-rate chart with the oracle's lines, as a PNG (atomically written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nasmerc.io import atomic_write

    key, rates = report["metric"], report["rates"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(rates, [report["model_metrics"][str(r)][key] for r in rates], "o-", label=f"{report['space']} (model)")
    if "oracle_metrics" in report:
        ax.plot(rates, [report["oracle_metrics"][str(r)][key] for r in rates], "k--", label="Bayes oracle")
        if "learnable_oracle_metrics" in report:
            ax.plot(rates, [report["learnable_oracle_metrics"][str(r)][key] for r in rates], "-.", color="dimgray",
                    label="learnable ceiling")
        ax.plot(rates, [report["context_free_oracle_metrics"][str(r)][key] for r in rates], ":", color="gray",
                label="context-free oracle")
    ax.set_xlabel("missing rate ρ")
    ax.set_ylabel(key.upper())
    ax.set_title(f"{report['space']} on {report['data']}: {key} under missing modalities")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    atomic_write(out, lambda fh: fig.savefig(fh, format="png"), binary=True)
    plt.close(fig)
    return out
