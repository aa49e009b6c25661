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

Every question is recorded as a typed :class:`ChoiceSpec` (:class:`OpSpec`, :class:`InputSpec`,
:class:`ValueSpec`, :class:`FloatSpec`): the one place that knows how a kind of choice is checked,
laid out as genes, sampled, suggested by a black-box optimiser and derived from weights, so no
strategy switches on a kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

import torch
from torch import nn

from nasmerc.errors import NasmercError


@dataclass(frozen=True)
class Gene:
    """One position of an encoded architecture (a genome): ``size`` categories (indices
    ``0..size-1``) or a real in ``[low, high]``.

    ``spec`` is the index of the choice the gene belongs to among the searched choices: the ``k``
    genes of an input choice share it and must hold distinct indices.
    """

    label: str
    kind: str  # "categorical" | "float"
    spec: int
    size: int = 0
    low: float = 0.0
    high: float = 0.0


@dataclass(frozen=True)
class Param:
    """One named parameter of a choice as a black-box optimiser (Optuna, NNI) asks for it: categorical
    over ``choices``, or, when ``choices`` is empty, a float in ``[low, high]``."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def is_float(self) -> bool:
        return not self.choices


class ChoiceSpec:
    """The description of one choice point, as strategies and architecture files see it.

    One small class per kind (:class:`OpSpec`, :class:`InputSpec`, :class:`ValueSpec`,
    :class:`FloatSpec`, as Optuna has one class per distribution), each with what strategies ask of
    a choice: its check, its gene layout and sampling (population strategies), its parameters for a
    black-box optimiser (TPE), and its derivation from architecture weights (DARTS, the router).
    ``in_supernet`` says whether a supernet holds every candidate (op and input choices) or the
    choice must be fixed to build one (value and float choices: ``--fix``).
    """

    label: str
    kind: ClassVar[str] = ""
    in_supernet: ClassVar[bool] = False

    def check(self, choice: Any) -> Any:
        """Return ``choice`` in canonical form, or raise naming the label and what is allowed."""
        raise NotImplementedError

    @property
    def where(self) -> str:
        return f"architecture: choice {self.label!r}"

    def first(self) -> Any:
        """The first allowed choice: what a choice without effect (asked, but not in the supernet) takes,
        and the placeholder while the choice points are listed."""
        raise NotImplementedError

    def genes(self, index: int) -> list[Gene]:
        """The genes of this choice, the ``index``-th searched one."""
        raise NotImplementedError

    def encode(self, choice: Any) -> list[Any]:
        """The gene values of ``choice``."""
        raise NotImplementedError

    def decode(self, values: Sequence[Any]) -> Any:
        """The choice of its gene values (as many as :meth:`genes`)."""
        raise NotImplementedError

    def params(self) -> list[Param]:
        """The parameters a black-box optimiser suggests for this choice."""
        raise NotImplementedError

    def from_params(self, values: Sequence[Any]) -> Any:
        """The choice of suggested ``values``, one per :meth:`params` entry."""
        raise NotImplementedError

    def derive(self, weights: Sequence[float]) -> Any:
        """The discrete choice of architecture weights, one per candidate (op and input choices)."""
        raise NotImplementedError(f"choice {self.label!r} ({self.kind}) has no architecture weights")

    def display(self, choice: Any) -> Any:
        """``choice`` as people read it (input indices by name)."""
        return choice

    def unresolved_hint(self) -> str:
        """How to resolve this choice when a supernet cannot hold it."""
        return f"--fix {self.label}={self.first()}"


def _stable_order(weights: Sequence[float]) -> list[int]:
    """Indices by decreasing weight; ties keep the space's order."""
    return sorted(range(len(weights)), key=lambda i: -float(weights[i]))


@dataclass(frozen=True)
class OpSpec(ChoiceSpec):
    """One of several modules (``candidates`` are their names); in a routed architecture, several of
    them weighed per token: ``{"routed": [names], "width": D}`` (:class:`RoutedOp`)."""

    label: str
    candidates: tuple[str, ...] = ()
    kind: ClassVar[str] = "op"
    in_supernet: ClassVar[bool] = True

    @property
    def n_options(self) -> int:
        """How many architecture weights the choice has: one per candidate."""
        return len(self.candidates)

    @property
    def option_names(self) -> list[str]:
        """The names its weights are reported under."""
        return list(self.candidates)

    def check(self, choice: Any) -> Any:
        if isinstance(choice, Mapping):
            return self._routed(choice)
        if isinstance(choice, (list, dict)) or choice not in self.candidates:
            raise NasmercError(f"{self.where} = {choice!r} is not a candidate (expected one of {list(self.candidates)})")
        return choice

    def _routed(self, choice: Mapping[str, Any]) -> Any:
        names, width = choice.get("routed"), choice.get("width")
        if set(choice) != {"routed", "width"} or not isinstance(names, (list, tuple)) or not names:
            raise NasmercError(f"{self.where} = {dict(choice)!r}: expected {{routed: [candidate names], width: D}}")
        bad = [n for n in names if n not in self.candidates]
        if bad or len(set(names)) != len(names):
            raise NasmercError(f"{self.where}: routed candidates {list(names)} must be distinct names among "
                               f"{list(self.candidates)}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise NasmercError(f"{self.where}: routed width {width!r}: expected a positive integer")
        ordered = [n for n in self.candidates if n in names]
        return ordered[0] if len(ordered) == 1 else {"routed": ordered, "width": width}

    def first(self) -> Any:
        return self.candidates[0]

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "categorical", index, size=len(self.candidates))]

    def encode(self, choice: Any) -> list[Any]:
        return [self.candidates.index(self.check(choice))]

    def decode(self, values: Sequence[Any]) -> Any:
        return self.candidates[int(values[0])]

    def params(self) -> list[Param]:
        return [Param(self.label, tuple(self.candidates))]

    def from_params(self, values: Sequence[Any]) -> Any:
        return values[0]

    def derive(self, weights: Sequence[float]) -> Any:
        """The highest weight; a ``zero`` candidate is passed over (DARTS' ``none``) unless it is the only one."""
        names = [self.candidates[i] for i in _stable_order(weights)]
        real = [n for n in names if n != "zero"]
        return real[0] if real else names[0]

    def unresolved_hint(self) -> str:
        return "search it (--strategy darts, router, evolution, random or tpe)"


@dataclass(frozen=True)
class InputSpec(ChoiceSpec):
    """``n_chosen`` distinct inputs of ``n_candidates``; ``candidates`` may name the inputs for display,
    the architecture keeps the indices, sorted."""

    label: str
    candidates: tuple[str, ...] = ()
    n_candidates: int = 0
    n_chosen: int = 1
    kind: ClassVar[str] = "input"
    in_supernet: ClassVar[bool] = True

    @property
    def n_options(self) -> int:
        """How many architecture weights the choice has: one per input."""
        return self.n_candidates

    @property
    def option_names(self) -> list[str]:
        """The names its weights are reported under: the inputs' names, or their indices."""
        return list(self.candidates) or [str(i) for i in range(self.n_candidates)]

    def check(self, choice: Any) -> Any:
        idx = [choice] if isinstance(choice, int) else list(choice) if isinstance(choice, (list, tuple)) else None
        if (idx is None or len(idx) != self.n_chosen or len(set(idx)) != len(idx)
                or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_candidates for i in idx)):
            raise NasmercError(f"{self.where} = {choice!r}: expected {self.n_chosen} distinct input indices in "
                               f"0..{self.n_candidates - 1}")
        return sorted(idx)

    def first(self) -> Any:
        return list(range(self.n_chosen))

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "categorical", index, size=self.n_candidates) for _ in range(self.n_chosen)]

    def encode(self, choice: Any) -> list[Any]:
        return [int(i) for i in self.check(choice)]

    def decode(self, values: Sequence[Any]) -> Any:
        return self.check([int(i) for i in values])

    def params(self) -> list[Param]:
        """One parameter for one input; for ``k > 1``, ``label#j`` picks a position among the ``n - j``
        inputs not chosen yet, so every parameter keeps one fixed set of choices (as Optuna requires)."""
        n = self.n_candidates
        if self.n_chosen == 1:
            return [Param(self.label, tuple(range(n)))]
        return [Param(f"{self.label}#{j}", tuple(range(n - j))) for j in range(self.n_chosen)]

    def from_params(self, values: Sequence[Any]) -> Any:
        if self.n_chosen == 1:
            return [values[0]]
        free = list(range(self.n_candidates))
        return sorted(free.pop(v) for v in values)

    def derive(self, weights: Sequence[float]) -> Any:
        """The ``n_chosen`` highest weights."""
        return sorted(_stable_order(weights)[: self.n_chosen])

    def display(self, choice: Any) -> Any:
        if not self.candidates:
            return choice
        return [self.candidates[i] for i in ([choice] if isinstance(choice, int) else list(choice))]

    def unresolved_hint(self) -> str:
        return "search it (--strategy darts, router, evolution, random or tpe)"


@dataclass(frozen=True)
class ValueSpec(ChoiceSpec):
    """A structural or numeric gene among ``candidates`` (a depth, a width), fixed when the model is built."""

    label: str
    candidates: tuple[Any, ...] = ()
    kind: ClassVar[str] = "value"

    def check(self, choice: Any) -> Any:
        if choice not in self.candidates:
            raise NasmercError(f"{self.where} = {choice!r} is not allowed (expected one of {list(self.candidates)})")
        return choice

    def first(self) -> Any:
        return self.candidates[0]

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "categorical", index, size=len(self.candidates))]

    def encode(self, choice: Any) -> list[Any]:
        return [self.candidates.index(self.check(choice))]

    def decode(self, values: Sequence[Any]) -> Any:
        return self.candidates[int(values[0])]

    def _plain(self) -> bool:
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in self.candidates)

    def params(self) -> list[Param]:
        """Over the values themselves, or over their indices when a value is not a plain scalar."""
        return [Param(self.label, tuple(self.candidates) if self._plain() else tuple(range(len(self.candidates))))]

    def from_params(self, values: Sequence[Any]) -> Any:
        return values[0] if self._plain() else self.candidates[values[0]]


@dataclass(frozen=True)
class FloatSpec(ChoiceSpec):
    """A real gene in ``[low, high]`` (a loss weight), fixed when the model is built."""

    label: str
    low: float = 0.0
    high: float = 0.0
    kind: ClassVar[str] = "float"

    def check(self, choice: Any) -> Any:
        if isinstance(choice, bool) or not isinstance(choice, (int, float)) or not self.low <= choice <= self.high:
            raise NasmercError(f"{self.where} = {choice!r}: expected a number in [{self.low}, {self.high}]")
        return float(choice)

    def first(self) -> Any:
        return self.low

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "float", index, low=self.low, high=self.high)]

    def encode(self, choice: Any) -> list[Any]:
        return [float(self.check(choice))]

    def decode(self, values: Sequence[Any]) -> Any:
        return self.check(float(values[0]))

    def params(self) -> list[Param]:
        return [Param(self.label, (), self.low, self.high)]

    def from_params(self, values: Sequence[Any]) -> Any:
        return values[0]


class UnresolvedChoice(NasmercError):
    """A value or float choice reached while building a supernet, with no value fixed for it."""

    def __init__(self, spec: ChoiceSpec) -> None:
        super().__init__(
            f"choice {spec.label!r} ({spec.kind}) must be fixed to build a supernet: "
            f"pass {spec.unresolved_hint()} or use a population strategy (evolution, random, tpe)"
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
        spec = OpSpec(label, tuple(candidates))
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
