"""``nasmerc data``: what a dataset holds and, for synthetic data, how well the Bayes oracle does.

:func:`describe` returns a JSON-ready report (signature, per-split sizes and label distribution,
and with ``rates`` the full-context and context-free oracle metrics on the test split at every
missing rate, with their AUILC); :func:`format_report` turns it into the text the command prints.
"""

from __future__ import annotations

from typing import Any, Sequence

from nasmerc import metrics
from nasmerc.data.conversation import ConversationDataset
from nasmerc.errors import NasmercError
from nasmerc.report import table

ORACLE_COLUMNS = {
    "classification": ("waf", "acc"),
    "regression": ("mae", "corr", "acc2_non0", "acc7"),
}


def describe(dataset: ConversationDataset, rates: Sequence[float] | None = None, mask_seed: int = 0) -> dict[str, Any]:
    """Summary of ``dataset``; with ``rates``, the oracle's metrics on the test split at each rate."""
    report = dataset.summary()
    report["config"] = dataset.config
    if rates is not None:
        if dataset.oracle is None:
            raise NasmercError(f"dataset {dataset.name!r} has no oracle: only synthetic data has a known process")
        result = dataset.oracle.evaluate(dataset.split("test"), rates, seed=mask_seed)
        report["oracle"] = {
            "split": "test",
            "mask_seed": mask_seed,
            "rates": [float(r) for r in rates],
            **{kind: {str(rate): m for rate, m in per_rate.items()} for kind, per_rate in result.items()},
        }
        if len(rates) >= 2:
            report["oracle"]["auilc"] = {
                kind: {key: metrics.auilc(list(per_rate), [m[key] for m in per_rate.values()])
                       for key in next(iter(per_rate.values()))}
                for kind, per_rate in result.items()
            }
    return report


def format_report(report: dict[str, Any]) -> str:
    sig = report["signature"]
    lines = [
        f"dataset {report['name']}: {sig['task']} ({sig['level']} level), "
        + (f"{len(sig['classes'])} classes" if sig["classes"] else "scores in [-3, 3]"),
        "modalities: " + ", ".join(f"{m} {sig['dims'][m]}" for m in sig["modalities"])
        + f"; speakers: {sig['n_speakers']}",
        "",
    ]
    rows = []
    for split, info in report["splits"].items():
        rows.append([split, info["conversations"], info["utterances"],
                     f"{info['length_min']}-{info['length_max']} (mean {info['length_mean']:.1f})"])
    lines.append(table(["split", "conversations", "utterances", "length"], rows))
    lines.append("")
    label_names = list(next(iter(report["splits"].values()))["labels"])
    lines.append(table(["split", *label_names], [[s, *[i["labels"][k] for k in label_names]]
                                                  for s, i in report["splits"].items()], digits=3))
    if "oracle" in report:
        oracle = report["oracle"]
        cols = ORACLE_COLUMNS[sig["task"]]
        headers = ["rho", *[f"oracle {c}" for c in cols], *[f"context-free {c}" for c in cols]]
        rows = [[f"{float(r):.2f}", *[oracle["full"][r][c] for c in cols], *[oracle["context_free"][r][c] for c in cols]]
                for r in map(str, oracle["rates"])]
        if "auilc" in oracle:
            rows.append(["AUILC", *[oracle["auilc"]["full"][c] for c in cols],
                         *[oracle["auilc"]["context_free"][c] for c in cols]])
        lines += ["", f"Bayes oracle on the {oracle['split']} split (masks seeded {oracle['mask_seed']}): "
                  "full context (forward-backward) vs each utterance alone", table(headers, rows)]
    return "\n".join(lines)
