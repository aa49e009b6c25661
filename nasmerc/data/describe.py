"""``nasmerc data``: what a dataset holds and, for synthetic data, how well the Bayes oracle does.

:func:`describe` returns a JSON-ready report (signature, per-split sizes and label distribution,
and with ``rates`` the full-context and context-free oracle metrics on the test split at every
missing rate, with their AUILC, beside the learnable ceiling: the same forward-backward under the
generator's parameters estimated from the training split, ``nasmerc.data.learnable``);
:func:`format_report` turns it into the text the command prints.
"""

from __future__ import annotations

from typing import Any, Sequence

from nasmerc import checks, metrics
from nasmerc.data.conversation import ConversationDataset
from nasmerc.data.learnable import LearnableOracle
from nasmerc.errors import NasmercError
from nasmerc.report import table

ORACLE_COLUMNS = {
    "classification": ("waf", "acc"),
    "regression": ("mae", "corr", "acc2_non0", "acc7"),
}
ORACLE_KINDS = (("full", "oracle"), ("learnable", "learnable"), ("context_free", "context-free"))


def describe(dataset: ConversationDataset, rates: Sequence[float] | None = None, mask_seed: int = 0) -> dict[str, Any]:
    """Summary of ``dataset``; with ``rates``, the oracle's metrics on the test split at each rate.

    The exact oracle gives ``full`` and ``context_free``; the learnable ceiling, fitted on the
    training split only, gives ``learnable`` (its fitted process in ``learnable_fit``).
    """
    checks.at_least("data", 0, mask_seed=mask_seed)
    report = dataset.summary()
    report["config"] = dataset.config
    if rates is not None:
        if dataset.oracle is None:
            raise NasmercError(f"dataset {dataset.name!r} has no oracle: only synthetic data has a known process")
        test = dataset.split("test")
        result = dataset.oracle.evaluate(test, rates, seed=mask_seed)
        learnable = LearnableOracle.fit(dataset)
        result["learnable"] = learnable.evaluate(test, rates, seed=mask_seed)["full"]
        report["oracle"] = {
            "split": "test",
            "mask_seed": mask_seed,
            "rates": [float(r) for r in rates],
            **{kind: {str(rate): m for rate, m in per_rate.items()} for kind, per_rate in result.items()},
            "learnable_fit": learnable.summary(),
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
        kinds = [(kind, name) for kind, name in ORACLE_KINDS if kind in oracle]
        headers = ["rho", *[f"{name} {c}" for _, name in kinds for c in cols]]
        rows = [[f"{float(r):.2f}", *[oracle[kind][r][c] for kind, _ in kinds for c in cols]]
                for r in map(str, oracle["rates"])]
        if "auilc" in oracle:
            rows.append(["AUILC", *[oracle["auilc"][kind][c] for kind, _ in kinds for c in cols]])
        lines += ["", f"Bayes oracle on the {oracle['split']} split (masks seeded {oracle['mask_seed']}): "
                  "full context (forward-backward) vs each utterance alone", table(headers, rows)]
        if "learnable" in oracle:
            lines += learnable_lines(oracle, cols[0])
    return "\n".join(lines)


def learnable_lines(oracle: dict[str, Any], key: str) -> list[str]:
    """What the learnable ceiling was fitted on, and its mean ``key`` as a share of the oracle's."""
    fit, rates = oracle["learnable_fit"], list(map(str, oracle["rates"]))
    mean = {kind: sum(oracle[kind][r][key] for r in rates) / len(rates) for kind, _ in ORACLE_KINDS}
    share = mean["learnable"] / mean["full"] if metrics.HIGHER_IS_BETTER.get(key, True) else mean["full"] / mean["learnable"]
    return [
        f"learnable: the same forward-backward under parameters estimated from the training split "
        f"({fit['conversations']} conversations, {fit['utterances']} utterances; inertia {fit['inertia']:.3f}, "
        f"contagion {fit['contagion']:.3f})",
        f"mean {key} over rho {float(rates[0]):g}..{float(rates[-1]):g}: oracle {mean['full']:.4f}, learnable "
        f"{mean['learnable']:.4f} ({100 * share:.1f} % of the oracle), context-free {mean['context_free']:.4f}",
    ]
