"""Every registered space under every registered strategy: a one-epoch search on tiny data ends
with an architecture the space builds, or the pair is refused at once with the way out named.
Supernet strategies get the value / float choices fixed (their first value), as a user would with
``--fix``; population strategies sample them. ``fixed`` runs exactly the degenerate spaces (the
hand-designed models); every searching strategy refuses them."""

from __future__ import annotations

import pytest

from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.nas.strategy import SearchContext, require_something_to_search
from nasmerc.registry import get_search_space, get_strategy, list_search_spaces, list_strategies
from nasmerc.train.trainer import TrainConfig, resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")

POPULATION = {"random": {"trials": 2, "candidate_epochs": 1},
              "tpe": {"trials": 2, "candidate_epochs": 1, "startup_trials": 1},
              "evolution": {"population": 2, "generations": 1, "candidate_epochs": 1}}


UNSUPPORTED = {("merc", "nni:proxyless"): "keyword arguments.*use nni:darts"}
"""Pairs a strategy cannot run, and what it says: NNI's Proxyless mixes only positionally called ops."""


@pytest.fixture(scope="module")
def data():
    from nasmerc.data.synthetic import load
    from conftest import TINY

    return load("iemocap6", {**TINY, "n_train": 4, "length_max": 8})


@pytest.mark.parametrize("strategy", list_strategies())
@pytest.mark.parametrize("space_name", list_search_spaces())
def test_every_space_under_every_strategy(space_name, strategy, data, tmp_path):
    if strategy.startswith("nni:"):  # the optional extra: pip install 'nasmerc[nni]'
        pytest.importorskip("nni")
    space = get_search_space(space_name).from_preset(data.signature, "default")
    strat = get_strategy(strategy).from_overrides(POPULATION.get(strategy, {}))
    degenerate = not space.choices()
    if degenerate != (strategy == "fixed"):
        with pytest.raises(NasmercError, match="use --strategy fixed" if degenerate else "leaves the"):
            require_something_to_search(strat, space, {})
            strat.check(space, {})
        return
    fixed = {}
    if strategy not in POPULATION:
        for spec in space.choices():
            if spec.kind == "value":
                fixed[spec.label] = spec.candidates[0]
            elif spec.kind == "float":
                fixed[spec.label] = spec.low
    sink = ListSink()
    ctx = SearchContext(space, data, TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,)), resolve_device("cpu"),
                        0, Events([sink]), tmp_path, fixed)
    strat.check(space, fixed)
    if (space_name, strategy) in UNSUPPORTED:  # refused with the way out named
        with pytest.raises(NasmercError, match=UNSUPPORTED[space_name, strategy]):
            strat.search(ctx)
        return
    result = strat.search(ctx)
    model = space.build(result.arch)
    assert sum(p.numel() for p in model.parameters()) == result.derived_parameters
    assert result.best_value == result.best_value  # not NaN
    assert any(e["type"] in ("epoch", "trial") for e in sink.events)
