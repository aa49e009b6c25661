"""DARTS as RMNAS states it: the 0.2 derivation, eq. 13 input gates, whole-split weight steps.

- RMNAS fig. 4: candidates whose softmax weight (an input's gate) is at least 0.2 are kept, so an op
  choice may keep several operations (``{mixed: {name: weight}}``) and an input choice several
  inputs; such an architecture builds, trains, round-trips through ``arch.yaml`` and retrains.
- RMNAS eq. 13: every input of a cell or step passes through ``{Identity, Zero}`` mixed by its own
  two-way softmax.
- The data of the weight and ``alpha`` steps: the whole training split and the validation split
  (``whole``) or the training split cut in two (``half``).

Everything runs on the tiny synthetic IEMOCAP-6 data of ``conftest.TINY`` and a one-block RMNAS space.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import TINY
from nasmerc.cli import main
from nasmerc.data.batch import collate
from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.nas import population
from nasmerc.nas.choices import InputChoice, WeightedOp, choice_modules, gated_inputs
from nasmerc.nas.specs import InputSpec, OpSpec
from nasmerc.nas.strategy import SearchContext
from nasmerc.outputs import count_parameters
from nasmerc.runs import ArchFile
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.rmnas import RMNASSpace
from strategies import darts as darts_module
from test_darts import SPACE, dataset, space  # noqa: F401 (the tiny RMNAS fixtures)
from strategies.darts import ALPHA_FILE, ArchWeights, Darts, DartsConfig, derive, option_weights

TRAIN = TrainConfig(epochs=1, batch_size=2, valid_rates=(0.0,))

pytestmark = pytest.mark.usefixtures("one_thread")


def logits(probs: list[float]) -> torch.Tensor:
    """``alpha`` whose softmax is ``probs``."""
    return torch.log(torch.tensor(probs, dtype=torch.float64)).float()


def gates(values: list[float]) -> torch.Tensor:
    """Eq. 13 ``beta`` ``[n, 2]`` whose Identity weights are ``values``."""
    return torch.log(torch.tensor([[g, 1.0 - g] for g in values], dtype=torch.float64)).float()


# -- the threshold derivation ---------------------------------------------------------------------
SPECS = [
    OpSpec("mix", ("attention", "random", "pool", "identity")),
    OpSpec("flat", ("attention", "random", "pool", "identity", "a", "b")),
    OpSpec("fuse", ("zero", "sum", "attention", "concat_fc")),
    OpSpec("only_zero", ("zero",)),
    InputSpec("gated", n_candidates=4, n_chosen=1),
    InputSpec("dim", n_candidates=3, n_chosen=1),
    InputSpec("soft", n_candidates=5, n_chosen=1),
    InputSpec("two", n_candidates=4, n_chosen=2),
]
ALPHA = {
    "mix": logits([0.45, 0.30, 0.15, 0.10]),            # two pass 0.2
    "flat": logits([0.19, 0.18, 0.17, 0.16, 0.15, 0.15]),  # none does: the argmax alone
    "fuse": logits([0.50, 0.35, 0.10, 0.05]),            # zero passes but is not kept: sum alone
    "only_zero": torch.tensor([0.0]),
    "gated": gates([0.9, 0.1, 0.25, 0.19]),              # eq. 13 gates: each on its own
    "dim": gates([0.15, 0.05, 0.1]),                     # no gate passes: the highest alone
    "soft": logits([0.3, 0.3, 0.2, 0.1, 0.1]),           # one softmax over the inputs
    "two": logits([0.7, 0.1, 0.1, 0.1]),                 # one passes, two are asked: top 2
}


def test_threshold_keeps_exactly_the_candidates_at_or_above_it() -> None:
    arch = derive(ALPHA, SPECS, {}, threshold=0.2)
    assert arch["mix"] == {"mixed": {"attention": pytest.approx(0.45), "random": pytest.approx(0.30)}}
    assert arch["flat"] == "attention"
    assert arch["fuse"] == "sum"
    assert arch["only_zero"] == "zero"
    assert arch["gated"] == [0, 2]
    assert arch["dim"] == [0]
    assert arch["soft"] == [0, 1, 2]
    assert arch["two"] == [0, 1]  # ties keep the space's order
    for spec in SPECS:
        assert spec.check(arch[spec.label]) == arch[spec.label]
    # argmax (the option) keeps one of each, as before.
    assert derive(ALPHA, SPECS, {}) == {"mix": "attention", "flat": "attention", "fuse": "sum",
                                         "only_zero": "zero", "gated": [0], "dim": [0], "soft": [0],
                                         "two": [0, 1]}


def test_threshold_boundary_and_other_thresholds() -> None:
    op = OpSpec("o", ("a", "b", "c"))
    assert op.derive_kept([0.2, 0.5, 0.3], 0.2) == {"mixed": {"a": 0.2, "b": 0.5, "c": 0.3}}
    assert op.derive_kept([0.2, 0.5, 0.3], 0.3) == {"mixed": {"b": 0.5, "c": 0.3}}
    assert op.derive_kept([0.2, 0.5, 0.3], 0.6) == "b"
    inp = InputSpec("i", n_candidates=3, n_chosen=1)
    assert inp.derive_kept([0.2, 0.1999, 0.5], 0.2) == [0, 2]


def test_option_weights_are_softmax_or_eq13_gates() -> None:
    assert option_weights(logits([0.6, 0.4])) == pytest.approx([0.6, 0.4])
    assert option_weights(gates([0.9, 0.3, 0.5])) == pytest.approx([0.9, 0.3, 0.5])


# -- multi-op / multi-input architectures ---------------------------------------------------------
def multi_arch(space: RMNASSpace) -> dict[str, Any]:
    arch = {spec.label: spec.first() for spec in space.choices()}
    arch["text.block0.mixer"] = {"mixed": {"random": 0.3, "attention": 0.5}}
    arch["cell0.input0"] = [2, 0]
    arch["cell0.step0.op"] = {"mixed": {"sum": 0.25, "linear_glu": 0.25, "concat_fc": 0.5}}
    return arch


def test_multi_op_architecture_is_checked_and_canonical(space: RMNASSpace) -> None:
    got = space.canonical(multi_arch(space))
    assert got["text.block0.mixer"] == {"mixed": {"attention": 0.5, "random": 0.3}}  # the space's order
    assert list(got["text.block0.mixer"]["mixed"]) == ["attention", "random"]
    assert got["cell0.input0"] == [0, 2]
    assert space.canonical(got) == got
    assert space.canonical({**got, "audio.block0.mixer": {"mixed": {"pool": 1}}})["audio.block0.mixer"] == "pool"


@pytest.mark.parametrize("value, needle", [
    ({"mixed": {}}, "expected {mixed: {candidate name: weight}}"),
    ({"mixed": {"attention": 1.0}, "width": 4}, "expected {mixed: {candidate name: weight}}"),
    ({"mixed": ["attention", "pool"]}, "expected {mixed: {candidate name: weight}}"),
    ({"mixed": {"nosuch": 1.0, "pool": 1.0}}, r"mixed candidates \['nosuch'\] are not among"),
    ({"mixed": {"attention": 0.0, "pool": 1.0}}, "mixed weight of 'attention' = 0.0: expected a positive number"),
    ({"mixed": {"attention": math.inf, "pool": 1.0}}, "expected a positive number"),
    ({"mixed": {"attention": "big", "pool": 1.0}}, "expected a positive number"),
])
def test_bad_mixed_values_are_refused_naming_the_label(space: RMNASSpace, value: Any, needle: str) -> None:
    arch = {**multi_arch(space), "text.block0.mixer": value}
    for fn in (space.build, space.canonical):
        with pytest.raises(NasmercError, match=needle) as info:
            fn(arch)
        assert "'text.block0.mixer'" in str(info.value)


def test_multi_op_model_is_the_weighted_sum_of_the_kept_candidates(space: RMNASSpace) -> None:
    arch = multi_arch(space)
    torch.manual_seed(0)
    model = space.build(arch)
    assert choice_modules(model) == []
    mixer = model.branches["text"].blocks[0].mixer
    assert isinstance(mixer, WeightedOp) and list(mixer.candidates) == ["attention", "random"]
    assert torch.allclose(mixer.weights, torch.tensor([0.5 / 0.8, 0.3 / 0.8]))
    assert not any("weights" in k for k in model.state_dict())  # from the architecture, not trained
    mixer.eval()
    h, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        want = sum(w * mixer.candidates[n](h, None, mask) for n, w in (("attention", 0.625), ("random", 0.375)))
        assert torch.allclose(mixer(h, None, mask), want, atol=1e-6)
    # Only the kept candidates have parameters: the mixed model is larger than the one-op model.
    one = {**arch, "text.block0.mixer": "random", "cell0.step0.op": "concat_fc"}
    extra = count_parameters(model) - count_parameters(space.build(one))
    assert extra == count_parameters(mixer.candidates["attention"]) + sum(
        count_parameters(m) for n, m in model.fusion.cells[0].steps[0].op.candidates.items() if n != "concat_fc")
    # Several kept inputs are summed (eq. 13 with the others at Zero).
    cands = [torch.randn(2, 5, 16) for _ in range(3)]
    assert torch.allclose(model.fusion.cells[0].inputs[0](cands), cands[0] + cands[2])


def test_multi_op_model_trains_a_step(space: RMNASSpace, dataset) -> None:
    torch.manual_seed(0)
    model = space.build(multi_arch(space))
    trainer = Trainer(model, dataset.signature, TrainConfig(epochs=1, batch_size=4), seed=0)
    batch = trainer.masked(collate(dataset.split("train")[:4], dataset.signature), 0)
    mixer, op = model.branches["text"].blocks[0].mixer, model.fusion.cells[0].steps[0].op
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, _, _ = trainer.loss(batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("branches.text.blocks.0.mixer.candidates.attention.") for n in moved)
    for kept in ("linear_glu", "concat_fc"):  # every kept step op with weights learns
        assert any(n.startswith(f"fusion.cells.0.steps.0.op.candidates.{kept}.") for n in moved)
    assert isinstance(mixer, WeightedOp) and isinstance(op, WeightedOp) and list(op.candidates) == [
        "sum", "linear_glu", "concat_fc"]


def test_multi_values_have_no_gene_form(space: RMNASSpace) -> None:
    specs = space.choices()
    with pytest.raises(NasmercError, match=r"'text.block0.mixer' = .* keeps several candidates, which a "
                                           r"population strategy cannot encode"):
        population.encode(multi_arch(space), specs)
    arch = {**multi_arch(space), "text.block0.mixer": "pool", "cell0.step0.op": "sum"}
    with pytest.raises(NasmercError, match=r"'cell0.input0' = \[0, 2\] keeps 2 inputs, which a population strategy"):
        population.encode(arch, specs)
    arch["cell0.input0"] = [2]
    assert population.decode(population.encode(arch, specs), specs) == space.canonical(arch)


# -- eq. 13 gating ----------------------------------------------------------------------------------
def test_gated_inputs_is_eq_13() -> None:
    """``X = sum_c sum_{o in {Identity, Zero}} softmax(beta_c)_o o(h_c)``, written out term by term."""
    beta = torch.tensor([[0.3, -0.2], [-1.0, 2.0], [0.5, 0.5]], requires_grad=True)
    h = [torch.randn(2, 3, 4) for _ in range(3)]
    pool = {"identity": lambda x: x, "zero": lambda x: torch.zeros_like(x)}
    want = torch.zeros(2, 3, 4)
    b = beta.detach().tolist()
    for c, hc in enumerate(h):
        den = sum(math.exp(b[c][j]) for j in range(2))
        for j, op in enumerate(pool.values()):
            want = want + math.exp(b[c][j]) / den * op(hc)
    summed = InputChoice("x", 3, 1, reduction="sum")
    summed.attach(gated_inputs(beta))
    out = summed(h)
    assert torch.allclose(out, want, atol=1e-6)
    # Each gate is its own: not a softmax across inputs (the gates here sum to 1.5, not 1).
    g = torch.softmax(beta.detach(), -1)[:, 0]
    assert float(g.sum()) != pytest.approx(1.0)
    out.sum().backward()
    assert beta.grad is not None and torch.allclose(beta.grad[:, 0], -beta.grad[:, 1])  # one difference per input
    averaged = InputChoice("y", 3, 2, reduction="mean")
    averaged.attach(gated_inputs(beta.detach()))
    assert torch.allclose(averaged(h), want / 2, atol=1e-6)


def test_supernet_fusion_inputs_are_gated_by_eq_13(space: RMNASSpace) -> None:
    torch.manual_seed(0)
    supernet = space.supernet()
    arch = ArchWeights(supernet, 1e-3, torch.Generator().manual_seed(0), inputs="gate")
    assert tuple(arch.state()["cell0.input0"].shape) == (3, 2)
    assert tuple(arch.state()["text.block0.mixer"].shape) == (4,)
    cell_input = supernet.fusion.cells[0].inputs[0]
    assert cell_input.reduction == "sum"
    with torch.no_grad():
        arch.alpha["cell0/input0"].copy_(gates([0.9, 0.2, 0.6]))
    h = [torch.randn(2, 3, 16) for _ in range(3)]
    with torch.no_grad():
        assert torch.allclose(cell_input(h), 0.9 * h[0] + 0.2 * h[1] + 0.6 * h[2], atol=1e-5)
    weights = arch.weights()["cell0.input0"]
    assert list(weights) == ["text.block0", "audio.block0", "visual.block0"]
    assert list(weights.values()) == pytest.approx([0.9, 0.2, 0.6])
    assert sum(arch.weights()["text.block0.mixer"].values()) == pytest.approx(1.0)


# -- which data the steps see ----------------------------------------------------------------------
def count_steps(monkeypatch, dataset, space: RMNASSpace, run_dir: Path, config: DartsConfig) -> dict[str, Any]:
    """One epoch of search; the conversations of every weight step and every alpha step."""
    seen: dict[str, Any] = {"weight": [], "alpha": [], "alpha_pool": None}
    real_step = darts_module.DartsHook.before_step
    real_next = darts_module.BatchCycle.__next__

    def before_step(self, trainer, batch, epoch, step):
        seen["weight"].append(int(batch.mask.shape[0]))
        return real_step(self, trainer, batch, epoch, step)

    def take(self):
        batch = real_next(self)
        seen["alpha"].append(int(batch.mask.shape[0]))
        seen["alpha_pool"] = self.convs
        return batch

    monkeypatch.setattr(darts_module.DartsHook, "before_step", before_step)
    monkeypatch.setattr(darts_module.BatchCycle, "__next__", take)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(space, dataset, TRAIN, torch.device("cpu"), 0, Events(), run_dir)
    seen["result"] = Darts(config).search(ctx)
    return seen


def test_whole_weight_steps_see_the_whole_training_split(monkeypatch, dataset, space, tmp_path) -> None:
    seen = count_steps(monkeypatch, dataset, space, tmp_path, DartsConfig(weight_data="whole"))
    n_train, n_valid = len(dataset.split("train")), len(dataset.split("valid"))
    assert sum(seen["weight"]) == n_train == TINY["n_train"]  # one epoch: every training conversation once
    assert len(seen["alpha"]) == len(seen["weight"])           # one alpha step before each weight step
    assert seen["alpha"] == [min(TRAIN.batch_size, n_valid)] * len(seen["weight"])
    assert [c.id for c in seen["alpha_pool"]] == [c.id for c in dataset.split("valid")]
    extra = seen["result"].extra
    assert (extra["weight_conversations"], extra["arch_conversations"], extra["arch_data"]) == (n_train, n_valid, "valid")


def test_half_cuts_the_training_split(monkeypatch, dataset, space, tmp_path) -> None:
    seen = count_steps(monkeypatch, dataset, space, tmp_path, DartsConfig(weight_data="half", arch_fraction=0.5))
    n_train = len(dataset.split("train"))
    assert sum(seen["weight"]) == n_train - round(0.5 * n_train) == 3
    alpha_ids = {c.id for c in seen["alpha_pool"]}
    assert len(alpha_ids) == 3 and alpha_ids <= {c.id for c in dataset.split("train")}
    assert not alpha_ids & {c.id for c in dataset.split("valid")}
    extra = seen["result"].extra
    assert (extra["weight_conversations"], extra["arch_conversations"], extra["arch_data"]) == (3, 3, "train")
    weight_ids = {c.id for c in Darts(DartsConfig(weight_data="half")).split(dataset, 0)[0]}
    assert weight_ids.isdisjoint(alpha_ids) and len(weight_ids | alpha_ids) == n_train


# -- bad values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, needle", [
    ({"derive": "max"}, "derive"),
    ({"threshold": 0.0}, "threshold=0.0: expected a number in (0.0, 1.0]"),
    ({"threshold": 1.5}, "threshold=1.5"),
    ({"weight_data": "all"}, "weight_data"),
    ({"inputs": "sigmoid"}, "inputs"),
])
def test_bad_values_are_refused(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(NasmercError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        Darts.from_overrides(overrides)
    with pytest.raises(NasmercError, match="strategy 'darts'"):
        DartsConfig(**overrides)


# -- the whole path: search, export, retrain, evaluate ---------------------------------------------
CLI_TINY = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3",
            "--set", "data.length_max=10", "--set", "data.length_min=3", "--set", "data.length_mean=6",
            "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16", "--set", "n_heads=2",
            "--set", "n_cells=1", "--set", "train.batch_size=4", "--set", "train.valid_rates=0,0.5",
            "--set", "strategy.derive=threshold", "--set", "strategy.inputs=gate"]


def test_threshold_search_exports_retrains_and_evaluates(tmp_path: Path) -> None:
    """Two epochs leave the weights near uniform, so the 0.2 rule keeps several mixers and inputs."""
    run = tmp_path / "s"
    torch.manual_seed(0)
    assert main(["search", "--space", "rmnas", "--strategy", "darts", "--no-dashboard", "--out", str(run),
                 "--epochs", "2", *CLI_TINY]) == 0
    af = ArchFile.read(run / "arch.yaml")
    assert any(isinstance(v, dict) and "mixed" in v for v in af.arch.values())
    assert any(isinstance(v, list) and len(v) > 1 for v in af.arch.values())
    space = RMNASSpace.from_preset(af.signature, af.preset, af.space_config)
    assert space.canonical(af.arch) == af.arch
    alpha = torch.load(run / ALPHA_FILE, weights_only=True)
    assert af.arch == derive(alpha, space.choices(), {}, threshold=0.2)
    assert main(["export", str(run)]) == 0
    assert ArchFile.read(run / "arch.yaml").arch == af.arch
    assert main(["retrain", str(run / "arch.yaml"), "--epochs", "1", "--no-dashboard"]) == 0
    ckpt = torch.load(run / "retrain" / "model.pt", weights_only=True)
    assert ckpt["arch"] == af.arch
    model = space.build(ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    assert any(isinstance(m, WeightedOp) for m in model.modules())
    assert main(["evaluate", str(run / "retrain"), "--rates", "0,0.5"]) == 0
