"""Choice points and the space base class on a toy space defined here (no RMNAS, no data).

The toy network asks, in order: a value choice ``width``, an op choice ``op`` among three Linear-ish
candidates, an input choice ``pick`` (2 of 3 stem outputs) and a float choice ``p`` (dropout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.nas.choices import ChoiceContext, ChosenInputs, InputChoice, OpChoice, choice_modules
from nasmerc.nas.specs import InputSpec, OpSpec, UnresolvedChoice
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import count_parameters

IN_DIM, N_OUT = 4, 3
SIG = DataSignature(("text",), {"text": IN_DIM}, "classification", "dialogue", ("a", "b", "c"), 1)
FIXED = {"width": 8, "p": 0.25}


@dataclass
class ToyConfig:
    in_dim: int = IN_DIM
    n_out: int = N_OUT


def candidates(width: int) -> dict[str, Any]:
    return {
        "small": lambda: nn.Linear(width, width, bias=False),
        "big": lambda: nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width)),
        "skip": nn.Identity,
    }


def candidate_parameters(width: int) -> dict[str, int]:
    return {"small": width * width, "big": (width * 2 * width + 2 * width) + (2 * width * width + width), "skip": 0}


def fixed_parameters(width: int) -> int:
    """Stems and head: present whatever the op and input choices are."""
    return 3 * (IN_DIM * width + width) + (width * N_OUT + N_OUT)


class ToyNet(nn.Module):
    def __init__(self, cfg: ToyConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        width = ctx.value("width", [8, 16])
        self.stems = nn.ModuleList(nn.Linear(cfg.in_dim, width) for _ in range(3))
        self.op = ctx.op("op", candidates(width))
        self.pick = ctx.inputs("pick", 3, 2)
        self.drop = nn.Dropout(ctx.float("p", 0.0, 0.5))
        self.head = nn.Linear(width, cfg.n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [stem(x) for stem in self.stems]
        return self.head(self.drop(self.op(self.pick(feats))))


class ToySpace(SearchSpace):
    name = "toy"
    Config = ToyConfig
    presets = {"default": ToyConfig}

    def network(self, ctx: ChoiceContext) -> nn.Module:
        return ToyNet(self.config, ctx)


class TwiceSpace(ToySpace):
    """Asks for the label ``op`` twice: a bug in a space, refused at once."""

    def network(self, ctx: ChoiceContext) -> nn.Module:
        ctx.op("op", {"a": nn.Identity})
        return nn.ModuleList([ctx.op("op", {"a": nn.Identity})])


def arch(**changes: Any) -> dict[str, Any]:
    return {"width": 8, "op": "big", "pick": [0, 2], "p": 0.0, **changes}


@pytest.fixture
def space() -> ToySpace:
    return ToySpace(SIG)


# -- choice points --------------------------------------------------------------------------------
def test_labels_recorded_in_the_order_asked(space: ToySpace) -> None:
    specs = space.choices(FIXED)
    assert [s.label for s in specs] == ["width", "op", "pick", "p"]
    assert [s.kind for s in specs] == ["value", "op", "input", "float"]
    assert specs[0].candidates == (8, 16)
    assert specs[1].candidates == ("small", "big", "skip")
    assert (specs[2].n_candidates, specs[2].n_chosen) == (3, 2)
    assert (specs[3].low, specs[3].high) == (0.0, 0.5)


def test_duplicate_label_raises() -> None:
    with pytest.raises(ValueError, match="'op' is used twice"):
        TwiceSpace(SIG).supernet()
    ctx = ChoiceContext()
    ctx.inputs("x", 2)
    with pytest.raises(ValueError, match="'x'"):
        ctx.value("x", [1, 2])


# -- supernet -------------------------------------------------------------------------------------
def test_unresolved_value_choice_names_label_and_fix(space: ToySpace) -> None:
    with pytest.raises(UnresolvedChoice) as info:
        space.supernet()
    assert isinstance(info.value, NasmercError)
    assert info.value.spec.label == "width"
    message = str(info.value)
    assert "'width'" in message and "--fix width=8" in message
    # The float choice comes next once the value is fixed; its example is its lower bound.
    with pytest.raises(UnresolvedChoice, match=r"'p' \(float\).*--fix p=0\.0"):
        space.supernet({"width": 16})


def test_fixed_resolves_value_choices(space: ToySpace) -> None:
    net = space.supernet({"width": 16, "p": 0.1})
    assert net.stems[0].out_features == 16 and net.head.in_features == 16
    assert net.drop.p == pytest.approx(0.1)
    modules = choice_modules(net)
    assert [type(m) for m in modules] == [OpChoice, InputChoice]
    assert [m.label for m in modules] == ["op", "pick"]
    assert net.op.names == ["small", "big", "skip"]
    # Every candidate is in the supernet.
    assert count_parameters(net) == fixed_parameters(16) + sum(candidate_parameters(16).values())


def test_fixed_value_is_checked(space: ToySpace) -> None:
    with pytest.raises(NasmercError, match=r"'width' = 12 is not allowed"):
        space.supernet({"width": 12, "p": 0.1})
    with pytest.raises(NasmercError, match=r"'p' = 0\.9: expected a number in \[0\.0, 0\.5\]"):
        space.supernet({"width": 8, "p": 0.9})


def test_unknown_fix_label_raises(space: ToySpace) -> None:
    with pytest.raises(NasmercError, match=r"--fix: unknown choice label\(s\) \['depth'\]"):
        space.supernet({**FIXED, "depth": 3})


@pytest.mark.parametrize("label, value", [("op", "big"), ("pick", [0, 1])])
def test_fix_of_an_op_or_input_choice_is_honoured_or_refused(space: ToySpace, label: str, value: Any) -> None:
    try:
        net = space.supernet({**FIXED, label: value})
    except NasmercError as exc:
        assert f"'{label}'" in str(exc)
        return
    assert label not in {m.label for m in choice_modules(net)}


def test_op_choice_without_hook_names_the_label(space: ToySpace) -> None:
    net = space.supernet(FIXED)
    with pytest.raises(NasmercError, match="choice 'op' has no strategy attached"):
        net.op(torch.zeros(2, 8))
    feats = [torch.zeros(2, 8)] * 3
    with pytest.raises(NasmercError, match="choice 'pick' has no strategy attached"):
        net.pick(feats)
    with pytest.raises(ValueError, match="'pick': got 2 inputs, expected 3"):
        net.pick(feats[:2])


class ScaledSum(nn.Module):
    """A hook with its own parameter, as a router strategy would have."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.calls = 0

    def forward(self, choice: OpChoice, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.scale * sum(c(x) for c in choice.candidates.values())


def test_attach_and_detach_hook_not_a_submodule(space: ToySpace) -> None:
    net = space.supernet(FIXED)
    keys = set(net.state_dict())
    n_params = len(list(net.parameters()))
    n_modules = len(list(net.modules()))
    hook = ScaledSum()
    net.op.attach(hook)
    x = torch.randn(5, 8)
    with torch.no_grad():
        expected = 2.0 * sum(c(x) for c in net.op.candidates.values())
        assert torch.allclose(net.op(x), expected)
    assert hook.calls == 1
    # The hook (and its parameter) stays outside the supernet.
    assert set(net.state_dict()) == keys
    assert len(list(net.parameters())) == n_params
    assert all(p is not hook.scale for p in net.parameters())
    assert len(list(net.modules())) == n_modules and all(m is not hook for m in net.modules())
    assert "_hook" not in net.op._modules
    # An input hook gets the list of inputs.
    net.pick.attach(lambda choice, inputs: inputs[0] + inputs[2])
    feats = [torch.full((1, 8), float(i)) for i in range(3)]
    assert torch.equal(net.pick(feats), torch.full((1, 8), 2.0))
    net.op.attach(None)
    with pytest.raises(NasmercError, match="'op' has no strategy attached"):
        net.op(x)


# -- fixed models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op, width", [("small", 8), ("big", 8), ("skip", 16), ("big", 16)])
def test_build_has_no_choice_modules_and_only_chosen_parameters(space: ToySpace, op: str, width: int) -> None:
    model = space.build(arch(op=op, width=width))
    assert choice_modules(model) == []
    assert not any(isinstance(m, (OpChoice, InputChoice)) for m in model.modules())
    assert isinstance(model.pick, ChosenInputs) and model.pick.indices == [0, 2]
    assert count_parameters(model) == fixed_parameters(width) + candidate_parameters(width)[op]
    supernet = space.supernet({"width": width, "p": 0.0})
    unchosen = sum(count_parameters(c) for name, c in supernet.op.candidates.items() if name != op)
    assert count_parameters(model) == count_parameters(supernet) - unchosen


def test_kept_several_builds_the_weighted_op_and_more_inputs(space: ToySpace) -> None:
    """What a threshold derivation writes: several ops with weights, more inputs than ``n_chosen``."""
    a = arch(op={"mixed": {"skip": 3.0, "small": 1.0}}, pick=[2, 0, 1])
    assert space.canonical(a)["op"] == {"mixed": {"small": 1.0, "skip": 3.0}}
    assert space.canonical(a)["pick"] == [0, 1, 2]
    model = space.build(a).eval()
    assert list(model.op.candidates) == ["small", "skip"] and model.pick.indices == [0, 1, 2]
    assert count_parameters(model) == fixed_parameters(8) + candidate_parameters(8)["small"]
    x = torch.randn(3, IN_DIM)
    with torch.no_grad():
        h = sum(stem(x) for stem in model.stems) / 3  # a mean choice averages every kept input
        want = model.head(0.25 * model.op.candidates["small"](h) + 0.75 * h)
        assert torch.allclose(model(x), want, atol=1e-6)
    with pytest.raises(NasmercError, match="keeps several candidates"):
        space.choices(FIXED)[1].encode(a["op"])
    with pytest.raises(NasmercError, match="keeps 3 inputs"):
        space.choices(FIXED)[2].encode(a["pick"])


def test_built_model_computes_with_chosen_inputs(space: ToySpace) -> None:
    model = space.build(arch(op="skip", pick=[2, 1])).eval()
    x = torch.randn(3, IN_DIM)
    with torch.no_grad():
        want = model.head((model.stems[1](x) + model.stems[2](x)) / 2)
        assert torch.allclose(model(x), want)
    summed = ChosenInputs([0, 2], reduction="sum")
    feats = [torch.full((2,), float(i)) for i in range(3)]
    assert torch.equal(summed(feats), torch.full((2,), 2.0))


@pytest.mark.parametrize("bad, label, needle", [
    ({"op": None}, "op", "is missing"),
    ({"pick": None}, "pick", "is missing"),
    ({"width": None}, "width", "is missing"),
    ({"op": "huge"}, "op", "is not a candidate"),
    ({"width": 12}, "width", "is not allowed"),
    ({"p": 0.75}, "p", "expected a number"),
    ({"p": True}, "p", "expected a number"),
    ({"pick": [0, 3]}, "pick", "distinct input indices in 0..2"),
    ({"pick": [-1, 0]}, "pick", "distinct input indices in 0..2"),
    ({"pick": [1]}, "pick", "expected at least 2 distinct"),
    ({"pick": [1, 1]}, "pick", "expected at least 2 distinct"),
    ({"pick": [0, 1, 1]}, "pick", "expected at least 2 distinct"),
    ({"pick": ["a", 1]}, "pick", "expected at least 2 distinct"),
    ({"pick": "0,1"}, "pick", "expected at least 2 distinct"),
    ({"op": ["small", "big"]}, "op", "is not a candidate"),
    ({"op": {"mixed": {"small": 1.0, "huge": 1.0}}}, "op", r"mixed candidates \['huge'\]"),
    ({"op": {"mixed": {"small": -1.0, "big": 1.0}}}, "op", "expected a positive number"),
    ({"nosuch": 1}, "nosuch", "unknown choice label"),
])
def test_bad_architectures_are_refused_naming_the_label(space: ToySpace, bad: dict, label: str, needle: str) -> None:
    a = arch()
    for k, v in bad.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    for fn in (space.build, space.canonical):
        with pytest.raises(NasmercError, match=needle) as info:
            fn(a)
        assert f"'{label}'" in str(info.value)


def test_canonical_sorts_inputs_and_normalises(space: ToySpace) -> None:
    got = space.canonical({"width": 16, "op": "small", "pick": (2, 0), "p": 0})
    assert got == {"width": 16, "op": "small", "pick": [0, 2], "p": 0.0}
    assert list(got) == ["width", "op", "pick", "p"]
    assert isinstance(got["p"], float)
    assert space.canonical(got) == got


def test_choice_spec_check_directly() -> None:
    single = InputSpec("s", n_candidates=4, n_chosen=1)
    assert single.check(3) == [3] and single.check([2]) == [2]
    with pytest.raises(NasmercError, match="'s' = 4"):
        single.check(4)
    op = OpSpec("o", ("a", "b"))
    assert op.check("b") == "b"
    with pytest.raises(NasmercError, match=r"expected one of \['a', 'b'\]"):
        op.check("c")
