"""NNI interoperability (``docs/nni.md``): the adapter, the ``nni:*`` strategies, the NNI dict format.

The format tests and the refusal without NNI run everywhere; the rest need the ``nni`` extra
(``pip install 'nasmerc[nni]'``) and are skipped without it. Every search runs the user's path at
tiny sizes: ``nasmerc search``, then ``retrain`` and ``evaluate``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nasmerc.cli import build_parser, main
from nasmerc.errors import NasmercError
from nasmerc.nas import nni_format
from nasmerc.nas.population import sample_arch
from nasmerc.nas.space import FixedSpace
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space, list_search_spaces, list_strategies

DATA = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
        "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
        "--set", "data.dims.visual=16", "--set", "train.batch_size=4", "--set", "train.valid_rates=0,0.5"]
RMNAS = ["--space", "rmnas", "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16",
         "--set", "n_heads=2", "--set", "n_cells=1"]
NNI_STRATEGIES = [name for name in list_strategies() if name.startswith("nni:")]
MULTI_TRIAL = ["--trials", "3", "--set", "strategy.candidate_epochs=1"]
TINY_SPACE = {"rmnas": {"hidden_dim": 16, "n_blocks": 1, "fusion_dim": 16, "n_heads": 2, "n_cells": 1},
              "iteach": {"dim": 16, "heads": 2, "student_layers": 1, "teacher_layers": 1}}

pytestmark = pytest.mark.usefixtures("one_thread")


def has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_nni = pytest.mark.skipif(not has("nni", "pytorch_lightning"), reason="needs the nni extra")
needs_rl = pytest.mark.skipif(not has("nni", "pytorch_lightning", "tianshou", "gym"), reason="needs tianshou and gym")


def searchable(signature) -> list:
    """Every registered space with something to search, at its default preset (tiny where known)."""
    out = []
    for name in list_search_spaces():
        cls = get_search_space(name)
        if issubclass(cls, FixedSpace):
            continue
        try:
            space = cls.from_preset(signature, "default", TINY_SPACE.get(name, {}))
        except NasmercError:  # a tiny override this space does not know
            space = cls.from_preset(signature, "default")
        if space.choices():
            out.append(space)
    return out


# -- the NNI dict, without NNI ---------------------------------------------------------------------
def test_every_space_round_trips_through_the_nni_dict(tiny_dataset) -> None:
    """to_nni then from_nni gives the architecture back, for random points of every searchable space,
    and the dict is plain JSON with ops by index and inputs as index lists."""
    rng = np.random.default_rng(0)
    for space in searchable(tiny_dataset.signature):
        specs = space.choices()
        for _ in range(3):
            arch = space.canonical(sample_arch(specs, rng))
            sample = json.loads(json.dumps(nni_format.to_nni(arch, specs)))
            assert nni_format.from_nni(sample, specs) == arch, space.name
            for spec in specs:
                if spec.kind == "op":
                    assert sample[spec.label] == spec.candidates.index(arch[spec.label])
                elif spec.kind == "input":
                    assert sample[spec.label] == arch[spec.label]


def test_the_other_forms_nni_writes_are_read(tiny_dataset) -> None:
    space = get_search_space("rmnas").from_preset(tiny_dataset.signature, "default", TINY_SPACE["rmnas"])
    specs = space.choices()
    arch = space.canonical(sample_arch(specs, np.random.default_rng(1)))
    sample = nni_format.to_nni(arch, specs)
    by_name = {**sample, **{s.label: arch[s.label] for s in specs if s.kind == "op"}}  # ops by name
    assert nni_format.from_nni(by_name, specs) == arch
    label = next(s for s in specs if s.kind == "input")
    flags = {k: v for k, v in sample.items() if k != label.label}  # CategoricalMultiple's categorical form
    flags.update({f"{label.label}/{i}": i in arch[label.label] for i in range(label.n_candidates)})
    assert nni_format.from_nni(flags, specs) == arch


@pytest.mark.parametrize("sample, needle", [
    ({"nosuch": 1}, "unknown choice label(s) ['nosuch']"),
    ({}, "choice 'text.block0.mixer' is missing"),
    ({"text.block0.mixer": "nosuch"}, "= 'nosuch' is not a candidate"),
    ({"text.block0.mixer": 7}, "= 7 is not a candidate"),
])
def test_a_bad_nni_dict_is_named(sample, needle, tiny_dataset) -> None:
    space = get_search_space("rmnas").from_preset(tiny_dataset.signature, "default", TINY_SPACE["rmnas"])
    specs = space.choices()
    full = nni_format.to_nni(space.canonical(sample_arch(specs, np.random.default_rng(2))), specs)
    bad = {**full, **sample} if sample else {k: v for k, v in full.items() if k != "text.block0.mixer"}
    with pytest.raises(NasmercError, match="x.json") as err:
        nni_format.from_nni(bad, specs, source="x.json")
    assert needle in str(err.value)


def test_a_routed_op_has_no_nni_form(tiny_dataset) -> None:
    space = get_search_space("rmnas").from_preset(tiny_dataset.signature, "default", TINY_SPACE["rmnas"])
    specs = space.choices()
    arch = space.canonical(sample_arch(specs, np.random.default_rng(3)))
    arch["text.block0.mixer"] = {"routed": ["attention", "pool"], "width": 16}
    with pytest.raises(NasmercError, match="routed"):
        nni_format.to_nni(arch, specs)


# -- without NNI installed ----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", NNI_STRATEGIES)
def test_without_nni_choosing_one_is_one_line_and_no_folder(strategy: str, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] in ("nni", "pytorch_lightning") else real(name, *a, **k))
    out = tmp_path / "run"
    assert main(["search", "--no-dashboard", "--out", str(out), *RMNAS, *DATA, "--strategy", strategy]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "pip install 'nasmerc[nni]'" in err and strategy in err
    assert not out.exists()


def test_without_nni_list_and_the_parser_work(monkeypatch, capsys) -> None:
    for name in [m for m in sys.modules if m == "nni" or m.startswith(("nni.", "strategies.nni."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nni", None)  # import nni fails
    assert main(["list"]) == 0
    assert "nni:darts" in capsys.readouterr().out
    build_parser()  # loads every strategy class for its flags


# -- the adapter ------------------------------------------------------------------------------------
@needs_nni
def test_the_adapter_builds_every_searchable_space_as_an_nni_model_space(tiny_dataset) -> None:
    from strategies.nni.space import model_space, nni_labels

    rng = np.random.default_rng(0)
    for space in searchable(tiny_dataset.signature):
        ms = model_space(space)
        specs = space.choices()
        searched = {s.label for s in specs if s.label not in space.inactive()}
        assert set(nni_labels(ms)) == searched, space.name
        arch = space.canonical(sample_arch(specs, rng))
        frozen = ms.freeze({k: v for k, v in nni_format.to_nni(arch, specs).items() if k in searched})
        assert count_parameters(frozen) == count_parameters(space.build(arch)), space.name
        params = model_space(space, inputs_as="params")
        assert all(type(m).__name__ in ("Categorical", "Numerical") for m in nni_labels(params).values()), space.name


# -- searches -----------------------------------------------------------------------------------------
def run_user_path(tmp_path: Path, strategy: str, *extra: str) -> dict:
    out = tmp_path / "run"
    assert main(["search", "--no-dashboard", "--out", str(out), *RMNAS, *DATA, "--strategy", strategy, *extra]) == 0
    search = json.loads((out / "search.json").read_text())
    assert main(["retrain", str(out / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    assert main(["evaluate", str(out / "retrain"), "--rates", "0,0.5"]) == 0
    assert (out / "retrain" / "evaluation-rates-0-0.5.json").exists()
    return search


@needs_nni
def test_nni_darts_searches_retrains_evaluates_and_exports(tmp_path: Path, capsys) -> None:
    search = run_user_path(tmp_path, "nni:darts", "--epochs", "2")
    out = tmp_path / "run"
    assert search["strategy"] == "nni:darts" and search["nni_strategy"] == "DARTS"
    assert search["best_epoch"] in (1, 2) and np.isfinite(search["best_valid"])
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    assert any(e["type"] == "choice_weights" for e in events)
    record = json.loads((out / "nni.json").read_text())
    assert record["epoch"] == search["best_epoch"]
    arch = yaml.safe_load((out / "arch.yaml").read_text())["arch"]

    capsys.readouterr()
    assert main(["export", str(out), "--format", "nni"]) == 0
    assert f"wrote {out / 'nni_arch.json'}" in capsys.readouterr().out
    exported = json.loads((out / "nni_arch.json").read_text())
    assert exported == {**record["sample"], **exported}  # NNI's own sample, with every label
    assert main(["export", str(out)]) == 0
    assert yaml.safe_load((out / "arch.yaml").read_text())["arch"] == arch

    assert main(["retrain", str(out / "nni_arch.json"), "--epochs", "1", "--no-dashboard",
                 "--out", str(tmp_path / "from-nni")]) == 0
    from_yaml = json.loads((out / "retrain" / "metrics.json").read_text())
    from_nni = json.loads((tmp_path / "from-nni" / "metrics.json").read_text())
    assert from_nni["parameters"] == from_yaml["parameters"] and from_nni["best_valid"] == from_yaml["best_valid"]
    assert yaml.safe_load((tmp_path / "from-nni" / "config.yaml").read_text())["arch"] == arch


@needs_nni
def test_an_nni_dict_without_its_run_record_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "nni_arch.json").write_text('{"text.block0.mixer": 0}')
    assert main(["retrain", str(tmp_path / "nni_arch.json"), "--no-dashboard"]) == 2
    assert "expected " + str(tmp_path / "arch.yaml") in capsys.readouterr().err


@needs_nni
@pytest.mark.parametrize("strategy, extra", [
    ("nni:gumbel_darts", ["--epochs", "1"]),
    ("nni:proxyless", ["--epochs", "1"]),
    ("nni:random_one_shot", ["--epochs", "1"]),
    pytest.param("nni:enas", ["--epochs", "1"], marks=needs_rl),
    ("nni:regularized_evolution", MULTI_TRIAL),
    ("nni:tpe", MULTI_TRIAL),
    ("nni:random", MULTI_TRIAL),
    pytest.param("nni:policy_based_rl", MULTI_TRIAL, marks=needs_rl),
])
def test_every_nni_strategy_runs_the_user_path(strategy: str, extra: list[str], tmp_path: Path) -> None:
    search = run_user_path(tmp_path, strategy, *extra)
    assert search["strategy"] == strategy and np.isfinite(search["best_valid"])
    if "--trials" in extra:
        assert 1 <= len(search["trials"]) <= 3
        assert (tmp_path / "run" / "candidates.jsonl").exists()


@needs_nni
def test_a_value_choice_must_be_fixed_for_one_shot_and_is_searched_by_trials(tmp_path: Path, capsys) -> None:
    haemsa = ["--space", "haemsa", "--set", "dim=8", "--set", "widths=8,16"]
    assert main(["search", "--no-dashboard", "--out", str(tmp_path / "a"), *haemsa, *DATA,
                 "--strategy", "nni:darts"]) == 2
    assert "must be fixed to build a supernet" in capsys.readouterr().err
    assert main(["search", "--no-dashboard", "--out", str(tmp_path / "b"), *haemsa, *DATA,
                 "--strategy", "nni:regularized_evolution", *MULTI_TRIAL]) == 0
    arch = yaml.safe_load((tmp_path / "b" / "arch.yaml").read_text())["arch"]
    assert "depth" in arch and isinstance(arch["gamma"], float)


@pytest.mark.parametrize("strategy", NNI_STRATEGIES)
def test_an_nni_run_is_not_resumed(strategy: str, tmp_path: Path) -> None:
    from nasmerc.registry import get_strategy

    with pytest.raises(NasmercError, match="cannot be resumed"):
        get_strategy(strategy)().check_resume(tmp_path)


def test_the_core_never_imports_nni() -> None:
    import ast

    root = Path(__file__).resolve().parents[1] / "nasmerc"
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            assert not any(n.split(".")[0] in ("nni", "pytorch_lightning") for n in names), path
