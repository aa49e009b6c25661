"""Choice points: the labelled free decisions of a search space.

A space builds its network through a :class:`ChoiceContext`. Each decision is asked of the context
with a unique label:

- ``ctx.op(label, {name: factory})``: one of several modules with the same call signature (or, in
  a *routed* architecture, several of them weighed per token by a router: :class:`RoutedOp`);
- ``ctx.inputs(label, n_candidates, n_chosen)``: which of the earlier features feed a node;
- ``ctx.value(label, values)`` / ``ctx.float(label, low, high)``: numeric or structural genes.

With an architecture (``ChoiceContext(arch)``) the context answers each question with the chosen
candidate, so the network holds no choice point and no parameter of an unchosen candidate. Without
one (the supernet) it returns :class:`OpChoice` / :class:`InputChoice` modules holding every
candidate; they do nothing until a strategy attaches a *hook* from outside
(:meth:`OpChoice.attach`), so the space never owns strategy state: DARTS attaches softmax mixing
over its own ``alpha``, the router strategy attaches per-token routers. A ``ValueChoice`` or
``FloatChoice`` must be fixed to build a supernet (``fixed={"depth": 4}``); otherwise
:class:`UnresolvedChoice` names the label and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from nasmerc.errors import NasmercError


@dataclass(frozen=True)
class ChoiceSpec:
    """The description of one choice point, as strategies and architecture files see it.

    ``kind`` is ``"op"`` (``candidates`` are names), ``"input"`` (``n_candidates`` and
    ``n_chosen``; ``candidates`` may name the inputs for display, the architecture keeps indices),
    ``"value"`` (``candidates`` are the values) or ``"float"`` (``low``, ``high``).
    """

    label: str
    kind: str
    candidates: tuple[Any, ...] = ()
    n_candidates: int = 0
    n_chosen: int = 1
    low: float = 0.0
    high: float = 0.0

    def check(self, choice: Any) -> Any:
        """Return ``choice`` in canonical form, or raise naming the label and what is allowed.

        An op choice is one candidate name, or ``{"routed": [names], "width": D}``: the candidates a
        router weighs per token of width ``D`` (:class:`RoutedOp`), listed in the space's order.
        """
        where = f"architecture: choice {self.label!r}"
        if self.kind == "op" and isinstance(choice, Mapping):
            return self._routed(choice, where)
        if self.kind == "op":
            if isinstance(choice, (list, dict)) or choice not in self.candidates:
                raise NasmercError(f"{where} = {choice!r} is not a candidate (expected one of {list(self.candidates)})")
            return choice
        if self.kind == "input":
            idx = [choice] if isinstance(choice, int) else list(choice) if isinstance(choice, (list, tuple)) else None
            if (idx is None or len(idx) != self.n_chosen or len(set(idx)) != len(idx)
                    or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_candidates
                           for i in idx)):
                raise NasmercError(
                    f"{where} = {choice!r}: expected {self.n_chosen} distinct input indices in 0..{self.n_candidates - 1}"
                )
            return sorted(idx)
        if self.kind == "value":
            if choice not in self.candidates:
                raise NasmercError(f"{where} = {choice!r} is not allowed (expected one of {list(self.candidates)})")
            return choice
        if isinstance(choice, bool) or not isinstance(choice, (int, float)) or not self.low <= choice <= self.high:
            raise NasmercError(f"{where} = {choice!r}: expected a number in [{self.low}, {self.high}]")
        return float(choice)

    def _routed(self, choice: Mapping[str, Any], where: str) -> Any:
        names, width = choice.get("routed"), choice.get("width")
        if set(choice) != {"routed", "width"} or not isinstance(names, (list, tuple)) or not names:
            raise NasmercError(f"{where} = {dict(choice)!r}: expected {{routed: [candidate names], width: D}}")
        bad = [n for n in names if n not in self.candidates]
        if bad or len(set(names)) != len(names):
            raise NasmercError(f"{where}: routed candidates {list(names)} must be distinct names among "
                               f"{list(self.candidates)}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise NasmercError(f"{where}: routed width {width!r}: expected a positive integer")
        ordered = [n for n in self.candidates if n in names]
        return ordered[0] if len(ordered) == 1 else {"routed": ordered, "width": width}


class UnresolvedChoice(NasmercError):
    """A value or float choice reached while building a supernet, with no value fixed for it."""

    def __init__(self, spec: ChoiceSpec) -> None:
        example = spec.candidates[0] if spec.kind == "value" else spec.low
        super().__init__(
            f"choice {spec.label!r} ({spec.kind}) must be fixed to build a supernet: "
            f"pass --fix {spec.label}={example} or use a population strategy (evolution, random, tpe)"
        )
        self.spec = spec


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
    def spec(self) -> ChoiceSpec:
        return ChoiceSpec(self.label, "op", tuple(self.names))

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
    def spec(self) -> ChoiceSpec:
        return ChoiceSpec(self.label, "input", tuple(self.names), n_candidates=self.n_candidates,
                          n_chosen=self.n_chosen)

    attach = OpChoice.attach

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.n_candidates:
            raise ValueError(f"choice {self.label!r}: got {len(inputs)} inputs, expected {self.n_candidates}")
        if self._hook is None:
            raise NasmercError(f"choice {self.label!r} has no strategy attached: build the space with an architecture")
        return self._hook(self, inputs)


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
        spec = ChoiceSpec(label, "op", tuple(candidates))
        self._record(spec)
        if self.arch is not None:
            chosen = self._chosen(spec)
            if isinstance(chosen, dict):
                return RoutedOp(label, {name: candidates[name]() for name in chosen["routed"]}, chosen["width"])
            return candidates[chosen]()
        return OpChoice(label, {name: make() for name, make in candidates.items()})

    def inputs(self, label: str, n_candidates: int, n_chosen: int = 1, reduction: str = "mean",
               names: Sequence[str] = ()) -> nn.Module:
        """Choose ``n_chosen`` of ``n_candidates`` inputs; ``names`` label them for display."""
        spec = ChoiceSpec(label, "input", tuple(names), n_candidates=n_candidates, n_chosen=n_chosen)
        self._record(spec)
        if self.arch is not None:
            return ChosenInputs(self._chosen(spec), reduction)
        return InputChoice(label, n_candidates, n_chosen, reduction, names)

    def value(self, label: str, values: Sequence[Any]) -> Any:
        spec = ChoiceSpec(label, "value", tuple(values))
        return self._resolve(spec, placeholder=spec.candidates[0])

    def float(self, label: str, low: float, high: float) -> float:
        spec = ChoiceSpec(label, "float", low=float(low), high=float(high))
        return self._resolve(spec, placeholder=spec.low)

    def _resolve(self, spec: ChoiceSpec, placeholder: Any) -> Any:
        """A value / float choice: from the architecture, from ``fixed``, a placeholder, or an error."""
        self._record(spec)
        if self.arch is not None:
            return self._chosen(spec)
        if spec.label in self.fixed:
            return spec.check(self.fixed[spec.label])
        if self.placeholders:
            return placeholder
        raise UnresolvedChoice(spec)

def choice_modules(model: nn.Module) -> list[OpChoice | InputChoice]:
    """The choice modules of a supernet, in module order."""
    return [m for m in model.modules() if isinstance(m, (OpChoice, InputChoice))]


def named_arch(specs: Sequence[ChoiceSpec], arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` with input indices replaced by their candidates' names, for people to read."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.label not in arch:
            continue
        choice = arch[spec.label]
        if spec.kind == "input" and spec.candidates:
            idx = [choice] if isinstance(choice, int) else list(choice)
            out[spec.label] = [spec.candidates[i] for i in idx]
        else:
            out[spec.label] = choice
    return out
