"""Choice points: the labelled free decisions of a search space.

A space builds its network through a :class:`ChoiceContext`. Each decision is asked of the context
with a unique label:

- ``ctx.op(label, {name: factory})``: one of several modules with the same call signature (or, in
  a *routed* architecture, several of them weighed per token by a router: :class:`RoutedOp`; in a
  *mixed* one, several of them weighed by fixed weights: :class:`WeightedOp`);
- ``ctx.inputs(label, n_candidates, n_chosen)``: which of the earlier features feed a node (at least
  ``n_chosen`` of them in an architecture);
- ``ctx.value(label, values)`` / ``ctx.float(label, low, high)``: numeric or structural genes.

With an architecture (``ChoiceContext(arch)``) the context answers each question with the chosen
candidate, so the network holds no choice point and no parameter of an unchosen candidate. Without
one (the supernet) it returns :class:`OpChoice` / :class:`InputChoice` modules holding every
candidate; they do nothing until a strategy attaches a *hook* from outside
(:meth:`OpChoice.attach`), so the space never owns strategy state: DARTS attaches softmax mixing
over its own ``alpha`` (and, for inputs, the per-input gates of RMNAS eq. 13, :func:`gated_inputs`),
the router strategy attaches per-token routers. A ``ValueChoice`` or
``FloatChoice`` must be fixed to build a supernet (``fixed={"depth": 4}``); otherwise
:class:`UnresolvedChoice` names the label and the fix.

Every question is recorded as a typed spec of ``nasmerc.nas.specs`` (:class:`OpSpec`,
:class:`InputSpec`, :class:`ValueSpec`, :class:`FloatSpec`): the one place that knows how a kind of
choice is checked, laid out as genes, sampled, suggested by a black-box optimiser and derived from
weights, so no strategy switches on a kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from nasmerc.errors import NasmercError
from nasmerc.nas.specs import ChoiceSpec, FloatSpec, InputSpec, OpSpec, UnresolvedChoice, ValueSpec


class Hook(Protocol):
    """What a strategy attaches to a choice module: it computes the module's output."""

    def __call__(self, choice: nn.Module, *args: Any, **kwargs: Any) -> Any: ...


class OpChoice(nn.Module):
    """Several candidate modules with one call signature; the attached hook decides how to mix them."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.label = label
        self.candidates = nn.ModuleDict(dict(candidates))
        self._hook: Hook | None = None

    @property
    def names(self) -> list[str]:
        return list(self.candidates.keys())

    @property
    def spec(self) -> OpSpec:
        return OpSpec(self.label, tuple(self.names))

    def attach(self, hook: Hook | None) -> None:
        """Attach (or with ``None`` remove) a strategy's hook; the hook is not a submodule."""
        object.__setattr__(self, "_hook", hook)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._hook is None:
            raise NasmercError(f"choice {self.label!r} has no strategy attached: build the space with an architecture")
        return self._hook(self, *args, **kwargs)


class InputChoice(nn.Module):
    """Choose ``n_chosen`` of ``n_candidates`` input tensors and reduce them (``mean`` or ``sum``)."""

    def __init__(self, label: str, n_candidates: int, n_chosen: int = 1, reduction: str = "mean",
                 names: Sequence[str] = ()) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction {reduction!r}: expected 'mean' or 'sum'")
        if names and len(names) != n_candidates:
            raise ValueError(f"choice {label!r}: {len(names)} names for {n_candidates} inputs")
        self.label = label
        self.names = list(names) if names else [str(i) for i in range(n_candidates)]
        self.n_candidates = n_candidates
        self.n_chosen = n_chosen
        self.reduction = reduction
        self._hook: Hook | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.label, tuple(self.names), n_candidates=self.n_candidates, n_chosen=self.n_chosen)

    attach = OpChoice.attach

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.n_candidates:
            raise ValueError(f"choice {self.label!r}: got {len(inputs)} inputs, expected {self.n_candidates}")
        if self._hook is None:
            raise NasmercError(f"choice {self.label!r} has no strategy attached: build the space with an architecture")
        return self._hook(self, inputs)


def softmax_inputs(weights: torch.Tensor) -> Hook:
    """A hook for an :class:`InputChoice`: its inputs mixed by ``softmax(weights)`` (one per input),
    scaled by ``n_chosen`` for a ``sum`` reduction (DARTS' ``alpha``, the router's ``beta``)."""

    def hook(choice: InputChoice, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        w = torch.softmax(weights, dim=0)
        out = sum(w[i] * x for i, x in enumerate(inputs))
        return out * choice.n_chosen if choice.reduction == "sum" else out

    return hook


def gated_inputs(beta: torch.Tensor) -> Hook:
    """A hook for an :class:`InputChoice`: RMNAS eq. 13 (BM-NAS's edges). Every input ``h_c`` passes
    through the pool ``O_c = {Identity, Zero}`` mixed by its own softmax over the two,
    ``X = sum_c sum_{o in O_c} softmax(beta_c)_o o(h_c) = sum_c softmax(beta_c)_Identity h_c``, so each
    input is gated on its own instead of competing with the others. ``beta`` is ``[n_candidates, 2]``
    (column 0 Identity, column 1 Zero). A ``sum`` choice takes ``X`` as it is (the fusion's inputs);
    a ``mean`` one divides it by ``n_chosen``, as its fixed form averages the chosen inputs."""

    def hook(choice: InputChoice, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        gate = torch.softmax(beta, dim=-1)[:, 0]
        out = sum(gate[c] * x for c, x in enumerate(inputs))
        return out if choice.reduction == "sum" else out / choice.n_chosen

    return hook


def first_tensor(args: Sequence[Any], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """The first tensor among a call's arguments: what a router reads."""
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def route(router: nn.Module, candidates: Sequence[nn.Module], label: str, args: Sequence[Any],
          kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """ITEACH-Net eqs. 8-9: ``w(x) = softmax(Router(x))`` per token of the first tensor argument ``x``
    and ``sum_k w_k(x) o_k(...)``; returns the output and ``w``."""
    x = first_tensor(args, kwargs)
    if x is None:
        raise NasmercError(f"choice {label!r} was called without a tensor to route on")
    w = torch.softmax(router(x), dim=-1)
    out = None
    for k, cand in enumerate(candidates):
        term = w[..., k : k + 1] * cand(*args, **kwargs)
        out = term if out is None else out + term
    return out, w


class RoutedOp(nn.Module):
    """The fixed form of a routed op choice: kept candidates weighed per token by a linear router
    (ITEACH-Net eqs. 8-9), the router trained with the model. The router strategy exports this."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module], width: int) -> None:
        super().__init__()
        self.label = label
        self.candidates = nn.ModuleDict(dict(candidates))
        self.router = nn.Linear(width, len(self.candidates))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return route(self.router, list(self.candidates.values()), self.label, args, kwargs)[0]


class WeightedOp(nn.Module):
    """The fixed form of an op choice that keeps several candidates (``{mixed: {name: weight}}``, a
    threshold derivation of RMNAS eq. 5): ``sum_i w_i o_i(...) / sum_i w_i`` over the kept candidates,
    the weights fixed (a buffer, not trained), renormalised so that the kept mixture has the scale of
    eq. 5's full one and of a single op."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.label = label
        self.candidates = nn.ModuleDict(dict(candidates))
        w = torch.tensor([float(weights[name]) for name in self.candidates], dtype=torch.float32)
        self.register_buffer("weights", w / w.sum(), persistent=False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = None
        for w, cand in zip(self.weights, self.candidates.values()):
            term = w * cand(*args, **kwargs)
            out = term if out is None else out + term
        return out


class ChosenInputs(nn.Module):
    """The fixed form of an :class:`InputChoice`: the chosen inputs, reduced the same way."""

    def __init__(self, indices: Sequence[int], reduction: str = "mean") -> None:
        super().__init__()
        self.indices = list(indices)
        self.reduction = reduction

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = torch.stack([inputs[i] for i in self.indices]).sum(0)
        return out / len(self.indices) if self.reduction == "mean" else out


@dataclass
class ChoiceContext:
    """Answers a space's questions: from ``arch`` when given (fixed model), else with choice modules.

    Every question is recorded in ``specs`` (in the order asked), so building a network once lists
    the space's choice points. ``fixed`` resolves value / float choices of a supernet; with
    ``placeholders`` an unresolved one takes its first value (or ``low``) so that the choice points
    can be listed without knowing it.
    """

    arch: Mapping[str, Any] | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    specs: dict[str, ChoiceSpec] = field(default_factory=dict)
    placeholders: bool = False

    def _record(self, spec: ChoiceSpec) -> None:
        if spec.label in self.specs:
            raise ValueError(f"choice label {spec.label!r} is used twice in this space")
        self.specs[spec.label] = spec

    def _chosen(self, spec: ChoiceSpec) -> Any:
        assert self.arch is not None
        if spec.label not in self.arch:
            raise NasmercError(f"architecture: choice {spec.label!r} is missing")
        return spec.check(self.arch[spec.label])

    def op(self, label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> nn.Module:
        spec = OpSpec(label, tuple(candidates))
        self._record(spec)
        if self.arch is not None:
            chosen = self._chosen(spec)
            if isinstance(chosen, dict) and "mixed" in chosen:
                return WeightedOp(label, {name: candidates[name]() for name in chosen["mixed"]}, chosen["mixed"])
            if isinstance(chosen, dict):
                return RoutedOp(label, {name: candidates[name]() for name in chosen["routed"]}, chosen["width"])
            return candidates[chosen]()
        return OpChoice(label, {name: make() for name, make in candidates.items()})

    def inputs(self, label: str, n_candidates: int, n_chosen: int = 1, reduction: str = "mean",
               names: Sequence[str] = ()) -> nn.Module:
        """Choose ``n_chosen`` of ``n_candidates`` inputs; ``names`` label them for display."""
        spec = InputSpec(label, tuple(names), n_candidates=n_candidates, n_chosen=n_chosen)
        self._record(spec)
        if self.arch is not None:
            return ChosenInputs(self._chosen(spec), reduction)
        return InputChoice(label, n_candidates, n_chosen, reduction, names)

    def value(self, label: str, values: Sequence[Any]) -> Any:
        return self._resolve(ValueSpec(label, tuple(values)))

    def float(self, label: str, low: float, high: float) -> float:
        return self._resolve(FloatSpec(label, float(low), float(high)))

    def _resolve(self, spec: ChoiceSpec) -> Any:
        """A value / float choice: from the architecture, from ``fixed``, a placeholder, or an error."""
        self._record(spec)
        if self.arch is not None:
            return self._chosen(spec)
        if spec.label in self.fixed:
            return spec.check(self.fixed[spec.label])
        if self.placeholders:
            return spec.first()
        raise UnresolvedChoice(spec)


def choice_modules(model: nn.Module) -> list[OpChoice | InputChoice]:
    """The choice modules of a supernet, in module order."""
    return [m for m in model.modules() if isinstance(m, (OpChoice, InputChoice))]


def named_arch(specs: Sequence[ChoiceSpec], arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` with input indices replaced by their candidates' names, for people to read."""
    return {spec.label: spec.display(arch[spec.label]) for spec in specs if spec.label in arch}
