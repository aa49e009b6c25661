"""Protocols: how a model is trained and judged, one named object per paper.

A :class:`Protocol` holds what a paper's table depends on besides the model: the missing-rate
schedule of training, the masking level, the validation rates a model is selected on, the optimizer
settings (optimizer, learning rate, batch, epochs, early-stopping patience), the evaluation sweep and
whether it is UME (one model judged at every rate) or IME (one model per rate, each judged at its own),
and how many runs, on which folds, a reported number averages. ``--protocol NAME`` (``search``,
``retrain``) sets the training settings (``--set train.KEY`` still wins); the name is kept in the run
record, and ``nasmerc evaluate`` sweeps the protocol's rates by default. ``nasmerc list`` lists them.

Selection is on the validation split in every protocol. The settings come from the papers (the
section is named in each description); where a paper is silent, today's default is kept and said so.
Where a paper selected on the test set (RMNAS and ITEACH-Net on IEMOCAP report "the best WAF on the
test sets", as GCNet's code validates on its test loader), the description says so, and nasmerc
still selects on validation.

``runs`` and ``folds`` are what ``nasmerc reproduce`` runs (``nasmerc.reproduce``): ``runs`` seeds
0, 1, ... on every fold, ``folds="session"`` IEMOCAP's five leave-one-session-out folds
(``--set data.fold=K``, ``nasmerc.data.folds``) where the data have sessions, the dataset's own split
elsewhere. A search or retrain under a protocol writes the protocol itself into ``config.yaml``
(``protocol_config``, :meth:`Protocol.to_dict`), which :meth:`Protocol.from_dict` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from nasmerc import checks
from nasmerc.config import apply_overrides, plain
from nasmerc.data.missing import DEFAULT_RATES, check_rate
from nasmerc.errors import NasmercError
from nasmerc.train.trainer import TrainConfig

EVALUATIONS = ("ume", "ime")
FOLDS = ("", "session")

TO_ONE = tuple(round(0.1 * i, 1) for i in range(11))
"""The sentence-level sweep, 0, 0.1, ..., 1.0 (RMNAS table 1, MFMB-Net table 4)."""


@dataclass(frozen=True)
class Protocol:
    """One paper's way of training and judging (module docstring)."""

    name: str
    paper: str
    description: str
    train: Mapping[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields the protocol sets (the rest keep their defaults)."""
    sweep: tuple[float, ...] = DEFAULT_RATES
    evaluation: str = "ume"
    """``ume``: one model judged at every rate of ``sweep``; ``ime``: one model per rate, trained at that
    rate (``missing=fixed:RATE``) and judged at it."""
    runs: int = 1
    folds: str = ""
    """``""``: the dataset's own split; ``session``: IEMOCAP's five leave-one-session-out folds."""

    def __post_init__(self) -> None:
        """Every value checked when the protocol is made (a hand-edited ``protocol_config`` too)."""
        where = f"protocol {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise NasmercError(f"protocol: name={self.name!r}: expected a non-empty name")
        for key in ("paper", "description"):
            if not isinstance(getattr(self, key), str):
                raise NasmercError(f"{where}: {key}={getattr(self, key)!r}: expected text")
        checks.one_of(where, "evaluation", self.evaluation, EVALUATIONS)
        checks.one_of(where, "folds", self.folds, FOLDS)
        checks.positive(where, runs=self.runs)
        if not self.sweep:
            raise NasmercError(f"{where}: sweep: expected at least one missing rate")
        for rate in self.sweep:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise NasmercError(f"{where}: sweep: {rate!r} is not a missing rate (expected numbers in [0, 1])")
            check_rate(rate)
        if not isinstance(self.train, Mapping):
            raise NasmercError(f"{where}: train: expected a mapping of TrainConfig fields")
        self.train_config()

    def to_dict(self) -> dict[str, Any]:
        """The protocol as plain YAML / JSON values (``config.yaml``'s ``protocol_config``)."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Protocol":
        """The protocol a file holds (:meth:`to_dict`'s mapping), every key and value checked."""
        names = [f.name for f in fields(cls)]
        if not isinstance(d, Mapping):
            raise NasmercError(f"{where}: a protocol must be a mapping with keys {', '.join(names)}, "
                               f"found {type(d).__name__}")
        unknown, missing = sorted(set(map(str, d)) - set(names)), [k for k in ("name", "paper", "description") if k not in d]
        if unknown or missing:
            raise NasmercError(f"{where}: protocol key {(unknown or missing)[0]!r} "
                               f"{'unknown' if unknown else 'missing'} (expected {', '.join(names)})")
        values = dict(d)
        if not isinstance(values.get("train", {}), Mapping):
            raise NasmercError(f"{where}: protocol 'train' must be a mapping of TrainConfig fields")
        if not isinstance(values.get("sweep", []), (list, tuple)):
            raise NasmercError(f"{where}: protocol 'sweep' must be a list of missing rates")
        values["train"] = dict(values.get("train", {}))
        values["sweep"] = tuple(float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else r
                                for r in values.get("sweep", DEFAULT_RATES))
        try:
            return cls(**values)
        except NasmercError as exc:
            raise NasmercError(f"{where}: {exc}") from None

    def train_config(self, base: TrainConfig = TrainConfig()) -> TrainConfig:
        """``base`` with the protocol's training settings."""
        return apply_overrides(base, dict(self.train), where=f"protocol {self.name!r}")

    def at_rate(self, rate: float) -> "Protocol":
        """For IME: the protocol of the model trained (and selected) at ``rate`` alone."""
        return replace(self, train={**self.train, "missing": f"fixed:{rate:g}", "valid_rates": [rate]},
                       sweep=(rate,), evaluation="ume")

    def fold_list(self, has_sessions: bool) -> tuple[int, ...]:
        """The folds a reported number averages on data with or without sessions (0: the own split)."""
        return tuple(range(1, 6)) if self.folds == "session" and has_sessions else (0,)

    def summary(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.train.items())
        folds = f", {self.folds} folds" if self.folds else ""
        return (f"{self.name}: {self.paper}; {self.evaluation.upper()} over rho {self.sweep[0]:g}..{self.sweep[-1]:g}, "
                f"{self.runs} run(s){folds}; {settings or 'the default training'}")


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("default", "nasmerc", "ITEACH-Net's Random strategy at nasmerc's CPU-sized training settings: a "
             "missing rate drawn per batch from 0..0.7, one model judged at every rate (UME), selected on the mean "
             "validation metric over rho 0 / 0.35 / 0.7"),
    Protocol("iteach-random", "ITEACH-Net", "sec. 4.4 'Setup' and 5.4.2 'Random Strategy': AdamW 5e-4 (routers "
             "5e-3), batch 32, 100 epochs, 3 runs; each batch at a rate drawn from 0..0.7; UME over 0..0.7 (table 4); "
             "IEMOCAP reported as the mean over 5 leave-one-session-out folds of the best test WAF (the paper "
             "selects on the test set; nasmerc selects on validation, carved from the training sessions); "
             "MOSI / MOSEI selected on validation WAF (nasmerc: validation MAE), WAF without label-0 samples",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "missing": "random"},
             runs=3, folds="session"),
    Protocol("iteach-progressive", "ITEACH-Net", "as iteach-random, with the Progressive strategy (sec. 5.4.2, "
             "table 5): the rate starts at 0 and rises by 0.1 every 10 epochs up to 0.7",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "missing": "progressive"},
             runs=3, folds="session"),
    Protocol("rmnas", "RMNAS", "sec. 'Experiments Setup' and 'Evaluation Metrics', dialogue level (following "
             "GCNet): AdamW 5e-4 (architecture: SGD 5), batch 32, 100 epochs, 3 runs, one model per missing rate "
             "(IME) over 0..0.7, reported as the mean WAF over the rates (table 3); IEMOCAP as the mean over 5 "
             "leave-one-session-out folds of the best test WAF (the paper selects on the test set; nasmerc selects "
             "on validation, carved from the training sessions); MOSI / MOSEI selected on validation WAF (nasmerc: "
             "validation MAE), WAF without label-0 samples",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100},
             evaluation="ime", runs=3, folds="session"),
    Protocol("rmnas-sentence", "RMNAS", "sec. 'Experiments Setup', sentence level (MOSI / MOSEI, following "
             "EMT-DLFR): AdamW 5e-4, batch 32, 100 epochs with early stopping after 8, 3 runs, selected on "
             "validation MAE; frames of each modality dropped independently; AUILC over rho 0..1.0 (table 1)",
             {"optimizer": "adamw", "lr": 5e-4, "batch_size": 32, "epochs": 100, "patience": 8, "masking": "frame",
              "missing": "random"}, sweep=TO_ONE, runs=3),
    Protocol("mfmb", "MFMB-Net", "sec. 'Implementation Details': Adam 2e-3, batch 24, early stopping after 6 epochs "
             "(on validation; the epoch count is not given, nasmerc's default is kept); random temporal masks per "
             "modality (frame level); AUILC over rho 0..1.0 (table 4); runs not stated",
             {"optimizer": "adam", "lr": 2e-3, "batch_size": 24, "patience": 6, "masking": "frame", "missing": "random"},
             sweep=TO_ONE),
    Protocol("micga", "Mi-CGA (dissertation)", "one model per missing rate (IME) over 0..0.7, as the dissertation's "
             "incomplete-modality tables report it; training settings are nasmerc's defaults (not stated per model)",
             evaluation="ime"),
    Protocol("complete", "CORECT, MultiDAG+CL, Ada2I, SPCL (dissertation)", "trained and tested on complete "
             "modalities (rho 0) as their tables report; training settings are nasmerc's defaults",
             {"missing": "fixed:0", "valid_rates": [0.0]}, sweep=(0.0,)),
    Protocol("haemsa", "HAEMSA", "sec. 4.2: trained and tested on complete modalities, results averaged over ten "
             "runs with different seeds; training settings are nasmerc's defaults (not stated)",
             {"missing": "fixed:0", "valid_rates": [0.0]}, sweep=(0.0,), runs=10),
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise NasmercError(f"--protocol {name!r}: unknown (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def list_protocols() -> list[str]:
    return list(PROTOCOLS)


# -- the papers' tables (``nasmerc reproduce``) ---------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One published number of a paper's own model, and how nasmerc computes the same number.

    ``metric`` is nasmerc's key (``nasmerc.metrics``; ``None``: nasmerc does not compute it, the note
    says why); ``at`` the statistic over the protocol's sweep: ``mean`` (the papers' "Average"),
    ``auilc`` (RMNAS eq. 14) or one missing rate; ``scale`` turns nasmerc's value into the paper's unit
    (100 for percentages)."""

    label: str
    source: str
    paper: float | None
    metric: str | None
    at: str | float = "mean"
    scale: float = 100.0
    note: str = ""


@dataclass(frozen=True)
class Experiment:
    """A paper's own model (``space`` searched by ``strategy``, with training ``plugins``) under a named
    protocol, and its table rows per dataset shape (``iemocap4``, ``iemocap6``, ``meld``, ``mosi``,
    ``mosei``) for data of ``level`` (``dialogue``, ``utterance`` or ``any``)."""

    name: str
    space: str
    strategy: str
    protocol: str
    rows: Mapping[str, tuple[Row, ...]]
    level: str = "dialogue"
    plugins: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Paper:
    """A paper, its first dataset (the default ``--data``) and its experiments."""

    name: str
    title: str
    data: str
    experiments: tuple[Experiment, ...]


IEMOCAP_TEST = "the paper takes each fold's best test WAF over epochs; ours is the model selected on validation"
NON0 = "the paper's WAF leaves out label-0 samples: nasmerc's f1_non0 (selected on validation MAE, not WAF)"
COLUMNS = {"iemocap4": "IEMOCAP (four-class)", "iemocap6": "IEMOCAP (six-class)", "mosi": "CMU-MOSI",
           "mosei": "CMU-MOSEI"}


def _waf(shape: str, test_selected: bool = True) -> tuple[str, str]:
    """nasmerc's metric for a paper's WAF column of ``shape``, and what differs (``test_selected``: the
    paper picked IEMOCAP epochs on the test folds)."""
    if shape.startswith("iemocap"):
        return "waf", IEMOCAP_TEST if test_selected else ""
    return "f1_non0", NON0


def _sweep(table: str, row: str, shape: str, values: Sequence[float], test_selected: bool = True) -> tuple[Row, ...]:
    """A table row of WAF at rho 0, 0.1, ..., 0.7 then its Average (ITEACH-Net tables 4-5, Mi-CGA 3.2)."""
    metric, note = _waf(shape, test_selected)
    where = f"table {table}, row '{row}' of {COLUMNS[shape]}"
    return (*(Row(f"WAF at rho {r:g}", f"{where}, column {r:g}", v, metric, r, note=note)
              for r, v in zip(DEFAULT_RATES, values[:-1])),
            Row("WAF, average over rho 0-0.7", f"{where}, column 'Average'", values[-1], metric, "mean", note=note))


def _named(table: str, row: str, column: str, at: str | float, items: Sequence[tuple[str, str | None, float]],
           note: str = "") -> tuple[Row, ...]:
    """One row of a table, a Row per named column: ``(column name, nasmerc metric, published value)``."""
    return tuple(Row(f"{name}" + (f" ({at})" if isinstance(at, str) else f" at rho {at:g}"),
                     f"table {table}, row '{row}'" + (f", {column}" if column else "") + f", column '{name}'", value,
                     metric, at, 1.0 if metric in ("mae", "corr") else 100.0,
                     note if metric is not None else "not computed by nasmerc: " + note)
                 for name, metric, value in items)


def _sentiment(values: Sequence[float], acc2: str = "non0") -> list[tuple[str, str | None, float]]:
    """MAE, Corr, Acc-7, Acc-5, Acc-2, F1 (Acc-2 and F1 without label-0 samples, RMNAS sec. 'Evaluation Metrics')."""
    names = (("MAE", "mae"), ("Corr", "corr"), ("Acc-7", "acc7"), ("Acc-5", "acc5"), ("Acc-2", f"acc2_{acc2}"),
             ("F1", f"f1_{acc2}"))
    return [(n, m, v) for (n, m), v in zip(names, values)]


def _mfmb(values: Sequence[float]) -> list[tuple[str, str | None, float]]:
    """MFMB-Net's columns: MAE, Corr, Acc-7, Acc-5, then Acc-2 and F1 each as Has0 / Non0."""
    names = (("MAE", "mae"), ("Corr", "corr"), ("Acc-7", "acc7"), ("Acc-5", "acc5"), ("Acc-2 Has0", "acc2_has0"),
             ("Acc-2 Non0", "acc2_non0"), ("F1 Has0", "f1_has0"), ("F1 Non0", "f1_non0"))
    return [(n, m, v) for (n, m), v in zip(names, values)]


IEMOCAP6_CLASSES = (("Happy", "f1_hap"), ("Sad", "f1_sad"), ("Neutral", "f1_neu"), ("Angry", "f1_ang"),
                    ("Excited", "f1_exc"), ("Frustrated", "f1_fru"))


def _iemocap6(table: str, row: str, f1s: Sequence[float], acc: float | None, waf: float,
              names: Sequence[str] = ("Acc.", "w-F1"), classes: Sequence[str] = ()) -> tuple[Row, ...]:
    """A six-class IEMOCAP row at rho 0: F1 per class (the table's column names ``classes``, in nasmerc's
    class order), accuracy, weighted F1 (standard split, complete data)."""
    items = [(c or n, m, v) for (n, m), v, c in zip(IEMOCAP6_CLASSES, f1s, [*classes] or [""] * 6)]
    items += [(names[0], "acc", acc)] if acc is not None else []
    return _named(table, row, "", 0.0, [*items, (names[1], "waf", waf)])


RMNAS_ROWS = {shape: (Row("WAF, mean over rho 0-0.7", f"table 3, row 'RMNAS', column '{COLUMNS[shape]}'", t3,
                          _waf(shape)[0], "mean", note=_waf(shape)[1]),
                      Row("WAF at rho 0.7", f"table 6, row 'RMNAS', column '{COLUMNS[shape]}'", t6, _waf(shape)[0],
                          0.7, note=_waf(shape)[1]))
              for shape, t3, t6 in (("iemocap4", 75.93, 73.28), ("iemocap6", 57.32, 55.79), ("mosi", 75.58, 66.05),
                                    ("mosei", 83.00, 79.64))}
RMNAS_SENTENCE = {shape: (*_named("1", "RMNAS", COLUMNS[shape], "auilc", _sentiment(t1)),
                          *_named("4", "RMNAS", COLUMNS[shape], 0.7, _sentiment(t4)))
                  for shape, t1, t4 in (("mosi", (1.054, 0.582, 29.9, 36.2, 75.8, 75.3), (1.014, 0.646, 32.4, 38.5,
                                                                                          77.7, 77.7)),
                                        ("mosei", (0.575, 0.639, 51.8, 52.6, 80.2, 79.2), (0.577, 0.645, 51.7, 52.5,
                                                                                           79.9, 78.5)))}
ITEACH_RANDOM = {"iemocap4": (77.61, 77.23, 76.46, 75.97, 75.12, 73.99, 72.40, 71.73, 75.06),
                 "iemocap6": (59.90, 59.32, 58.61, 57.86, 57.01, 56.36, 55.29, 54.01, 57.30),
                 "mosi": (86.23, 84.22, 81.65, 79.27, 76.43, 75.18, 70.65, 68.96, 77.82),
                 "mosei": (87.40, 86.50, 85.11, 84.59, 82.81, 82.30, 80.66, 79.79, 83.65)}
ITEACH_PROGRESSIVE = {"iemocap4": (77.47, 76.86, 76.78, 75.86, 75.26, 74.33, 73.73, 71.79, 75.26),
                      "iemocap6": (59.09, 58.72, 58.13, 57.53, 57.18, 56.39, 55.53, 55.06, 57.21),
                      "mosi": (84.40, 82.39, 80.54, 78.86, 75.62, 74.30, 69.92, 65.77, 76.48),
                      "mosei": (86.91, 85.78, 84.86, 84.16, 82.77, 81.60, 79.80, 78.91, 83.10)}
MICGA = {"iemocap4": (83.42, 82.83, 82.27, 81.50, 83.17, 80.08, 79.96, 79.35, 81.50),
         "iemocap6": (66.04, 65.83, 64.07, 63.08, 61.72, 59.96, 59.52, 59.18, 62.65),
         "mosi": (87.21, 85.02, 83.28, 81.83, 79.56, 78.62, 75.63, 73.05, 80.05),
         "mosei": (87.61, 86.21, 85.80, 84.81, 84.26, 84.82, 82.85, 81.56, 83.92)}
MFMB_ROWS = {shape: (*_named("4", "Ours", COLUMNS[shape], "auilc", _mfmb(t4)),
                     *_named("3", "Ours", COLUMNS[shape], 0.0, _mfmb(t3), note="ours: the same model at rho 0 (the "
                             "paper's table 3 is its complete-data setting)"))
             for shape, t4, t3 in (("mosi", (1.115, 0.461, 27.5, 30.5, 66.4, 67.0, 69.3, 69.8),
                                    (0.709, 0.798, 45.8, 53.7, 82.7, 85.7, 83.2, 86.0)),
                                   ("mosei", (0.680, 0.524, 47.0, 47.9, 72.8, 75.0, 73.0, 76.2),
                                    (0.532, 0.758, 54.2, 55.9, 84.7, 85.1, 85.0, 85.1)))}
MOSEI_EMOTIONS = "MOSEI's emotion labels (nasmerc's MOSEI data carry the sentiment score only)"
CONVENTION = "the dissertation does not say whether label-0 samples count (Non0 taken)"
PAPERS: dict[str, Paper] = {p.name: p for p in (
    Paper("rmnas", "RMNAS", "iemocap6", (
        Experiment("rmnas", "rmnas", "darts", "rmnas", RMNAS_ROWS, note="per rate: a search, then the found "
                   "architecture retrained at that rate (IME)"),
        Experiment("rmnas-sentence", "rmnas", "darts", "rmnas-sentence", RMNAS_SENTENCE, level="utterance"))),
    Paper("iteach", "ITEACH-Net", "iemocap6", (
        Experiment("iteach-random", "iteach", "router", "iteach-random",
                   {k: _sweep("4", "ITEACH-Net", k, v) for k, v in ITEACH_RANDOM.items()}),
        Experiment("iteach-progressive", "iteach", "router", "iteach-progressive",
                   {k: _sweep("5", "ITEACH-Net", k, v) for k, v in ITEACH_PROGRESSIVE.items()}))),
    Paper("mfmb", "MFMB-Net", "mosi", (Experiment("mfmb", "mfmb", "fixed", "mfmb", MFMB_ROWS, level="any"),)),
    Paper("corect", "CORECT (dissertation sec. 2.1)", "iemocap6", (Experiment("corect", "corect", "fixed", "complete", {
        "iemocap6": _iemocap6("2.1", "CORECT (Ours)", (59.30, 80.53, 66.94, 69.59, 72.69, 68.50), 69.93, 70.02),
        "mosei": (*_named("2.3", "CORECT (Ours)", "", 0.0, [("Sentiment 2 Class", "acc2_non0", 83.66),
                                                            ("Sentiment 7 Class", "acc7", 46.31)], note=CONVENTION),
                  *_named("2.3", "CORECT (Ours)", "", 0.0, [(e, None, v) for e, v in (
                      ("Happiness", 71.35), ("Sadness", 72.86), ("Angry", 76.77), ("Fear", 87.90), ("Disgust", 84.26),
                      ("Surprise", 86.48))], note=MOSEI_EMOTIONS))}),)),
    Paper("multidag", "MultiDAG+CL (dissertation sec. 2.2)", "iemocap6", (
        Experiment("multidag+cl", "multidag", "fixed", "complete", {
            "iemocap6": _iemocap6("2.8", "MultiDAG+HCL (Ours)", (45.26, 81.40, 69.53, 70.33, 71.61, 66.94), 69.11,
                                  69.08),
            "meld": _named("2.8", "MultiDAG+HCL (Ours)", "MELD", 0.0, [("Acc. (%)", "acc", 64.41),
                                                                        ("w-F1 (%)", "waf", 64.00)])},
                   plugins=("curriculum",), note="table 2.8 names the curriculum row MultiDAG+HCL, the text "
                   "MultiDAG+CL"),
        Experiment("multidag", "multidag", "fixed", "complete", {
            "iemocap6": _iemocap6("2.8", "MultiDAG (Ours)", (49.65, 79.83, 66.40, 67.59, 71.78, 67.90), 68.30, 68.45),
            "meld": _named("2.8", "MultiDAG (Ours)", "MELD", 0.0, [("Acc. (%)", "acc", 64.29),
                                                                    ("w-F1 (%)", "waf", 63.87)])}))),
    Paper("micga", "Mi-CGA (dissertation ch. 3)", "iemocap6", (
        Experiment("micga", "micga", "fixed", "micga",
                   {k: _sweep("3.2", "Mi-CGA", k, v, False) for k, v in MICGA.items()},
                   note="one model per rate (IME)"),)),
    Paper("ada2i", "Ada2I (dissertation sec. 4.1)", "iemocap6", (Experiment("ada2i", "ada2i", "fixed", "complete", {
        shape: _named("4.2", "Ada2I (Ours)", f"{name} T+A+V", 0.0, [("W-F1", "waf", waf), ("Acc", "acc", acc)])
        for shape, name, waf, acc in (("iemocap6", "IEMOCAP", 68.97, 68.76), ("meld", "MELD", 60.38, 63.03))}),)),
    Paper("haemsa", "HAEMSA", "mosi", (Experiment("haemsa", "haemsa", "evolution", "haemsa", {
        **{shape: _named("1", "HAEMSA (Ours)", COLUMNS[shape], 0.0, [
            ("Acc-7(%)", "acc7", a7), ("Acc-5(%)", "acc5", a5), ("Acc-2(%)", "acc2_non0", a2), ("MAE", "mae", mae)],
            note="the paper does not say whether label-0 samples count in Acc-2 (Non0 taken)")
           for shape, a7, a5, a2, mae in (("mosi", 53.7, 55.2, 86.9, 0.654), ("mosei", 57.1, 58.2, 86.7, 0.482))},
        "iemocap6": _iemocap6("2", "HAEMSA (Ours)", (71.95, 91.61, 72.18, 75.17, 81.56, 75.53), None, 77.67,
                              names=("", "Weighted-F1"), classes=("Happiness", "Sadness", "Neutral", "Anger",
                                                                  "Excitement", "Frustration"))}, note="the search budget is the evolution strategy's "
                   "(population x generations x candidate epochs), the found architecture retrained"),)),
)}
"""Every paper ``nasmerc reproduce`` knows, by name. SPCL (dissertation sec. 4.2) is not among them: its
tables plug it into DialogueGCN, BiDDIN, MMGCN and MM-DFN, none of which nasmerc has."""


def get_paper(name: str) -> Paper:
    if name not in PAPERS:
        raise NasmercError(f"reproduce: unknown paper {name!r} (known: {', '.join(PAPERS)})")
    return PAPERS[name]
