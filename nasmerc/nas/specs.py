"""Choice specs: one small class per kind of free decision, as strategies and architecture files see it.

Every question a space asks its :class:`~nasmerc.nas.choices.ChoiceContext` is recorded as a
:class:`ChoiceSpec`: :class:`OpSpec` (one of several modules), :class:`InputSpec` (``k`` of ``n``
inputs), :class:`ValueSpec` (a structural gene) or :class:`FloatSpec` (a real gene). Each is the one
place that knows how its kind is checked, laid out as genes (:class:`Gene`: population strategies),
sampled, suggested by a black-box optimiser (:class:`Param`: TPE) and derived from architecture
weights (DARTS, the router), as Optuna keeps one class per distribution; no strategy switches on a
kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from nasmerc.errors import NasmercError

__all__ = ["Gene", "Param", "ChoiceSpec", "OpSpec", "InputSpec", "ValueSpec", "FloatSpec", "UnresolvedChoice"]


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

    def derive_kept(self, weights: Sequence[float], threshold: float) -> Any:
        """The choice that keeps every candidate whose weight (a softmax weight, or an input's gate) is
        at least ``threshold``, and at least the one :meth:`derive` picks (RMNAS fig. 4: "operations
        with alpha, beta, gamma less than 0.2 after softmax computation are considered discarded")."""
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
class _OneOf(ChoiceSpec):
    """A choice of one of ``candidates``: one categorical gene, its index."""

    label: str
    candidates: tuple[Any, ...] = ()

    def first(self) -> Any:
        return self.candidates[0]

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "categorical", index, size=len(self.candidates))]

    def encode(self, choice: Any) -> list[Any]:
        return [self.candidates.index(self.check(choice))]

    def decode(self, values: Sequence[Any]) -> Any:
        return self.candidates[int(values[0])]


@dataclass(frozen=True)
class OpSpec(_OneOf):
    """One of several modules (``candidates`` are their names). Two forms keep several of them:

    - routed, weighed per token by a router: ``{"routed": [names], "width": D}``
      (:class:`~nasmerc.nas.choices.RoutedOp`, the router strategy);
    - mixed, weighed by fixed weights: ``{"mixed": {name: weight, ...}}``
      (:class:`~nasmerc.nas.choices.WeightedOp`): what a threshold derivation keeps of RMNAS eq. 5,
      the kept candidates with their softmax weights (the discarded ones dropped from the sum).

    Either form with one name is that name; neither can be encoded as one gene (:meth:`encode`).
    """

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
        if isinstance(choice, Mapping) and "mixed" in choice:
            return self._mixed(choice)
        if isinstance(choice, Mapping):
            return self._routed(choice)
        if isinstance(choice, (list, dict)) or choice not in self.candidates:
            raise NasmercError(f"{self.where} = {choice!r} is not a candidate (expected one of {list(self.candidates)})")
        return choice

    def _mixed(self, choice: Mapping[str, Any]) -> Any:
        """``{mixed: {name: weight}}``: distinct candidates with positive finite weights, in the space's order."""
        kept = choice.get("mixed")
        if set(choice) != {"mixed"} or not isinstance(kept, Mapping) or not kept:
            raise NasmercError(f"{self.where} = {dict(choice)!r}: expected {{mixed: {{candidate name: weight}}}}")
        bad = [n for n in kept if n not in self.candidates]
        if bad:
            raise NasmercError(f"{self.where}: mixed candidates {bad} are not among {list(self.candidates)}")
        for name, w in kept.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 < float(w) < float("inf"):
                raise NasmercError(f"{self.where}: mixed weight of {name!r} = {w!r}: expected a positive number")
        ordered = {n: float(kept[n]) for n in self.candidates if n in kept}
        return next(iter(ordered)) if len(ordered) == 1 else {"mixed": ordered}

    def encode(self, choice: Any) -> list[Any]:
        """The candidate's index; a choice that keeps several candidates has no one-gene form."""
        checked = self.check(choice)
        if isinstance(checked, Mapping):
            raise NasmercError(f"{self.where} = {dict(checked)!r} keeps several candidates, which a population "
                               f"strategy cannot encode (one of {list(self.candidates)} per op choice); derive "
                               "one (--set strategy.derive=argmax) or write one name")
        return [self.candidates.index(checked)]

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

    def params(self) -> list[Param]:
        return [Param(self.label, tuple(self.candidates))]

    def from_params(self, values: Sequence[Any]) -> Any:
        return values[0]

    def derive(self, weights: Sequence[float]) -> Any:
        """The highest weight; a ``zero`` candidate is passed over (DARTS' ``none``) unless it is the only one."""
        names = [self.candidates[i] for i in _stable_order(weights)]
        real = [n for n in names if n != "zero"]
        return real[0] if real else names[0]

    def derive_kept(self, weights: Sequence[float], threshold: float) -> Any:
        """Every candidate of softmax weight ``>= threshold`` with that weight (``{mixed: ...}``), or
        :meth:`derive`'s pick alone when none is (or when it is the only one). ``zero`` is not kept:
        its term of eq. 5 is nothing, so keeping it would only shrink the others once renormalised."""
        kept = {n: float(f"{float(w):.4g}") for n, w in zip(self.candidates, weights)
                if float(w) >= threshold and n != "zero"}  # four digits: arch.yaml is read by people
        if len(kept) < 2:
            return next(iter(kept)) if kept else self.derive(weights)
        return {"mixed": kept}

    def unresolved_hint(self) -> str:
        return "search it (--strategy darts, router, evolution, random or tpe)"


@dataclass(frozen=True)
class InputSpec(ChoiceSpec):
    """``n_chosen`` distinct inputs of ``n_candidates``; ``candidates`` may name the inputs for display,
    the architecture keeps the indices, sorted. A threshold derivation may keep more than
    ``n_chosen`` (every input whose gate passes, RMNAS eq. 13 and fig. 4): such a choice is accepted
    and built (the kept inputs reduced as the choice reduces them), but has no gene form
    (:meth:`encode`)."""

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
        if (idx is None or len(idx) < self.n_chosen or len(set(idx)) != len(idx)
                or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_candidates for i in idx)):
            raise NasmercError(f"{self.where} = {choice!r}: expected at least {self.n_chosen} distinct input indices "
                               f"in 0..{self.n_candidates - 1}")
        return sorted(idx)

    def first(self) -> Any:
        return list(range(self.n_chosen))

    def genes(self, index: int) -> list[Gene]:
        return [Gene(self.label, "categorical", index, size=self.n_candidates) for _ in range(self.n_chosen)]

    def encode(self, choice: Any) -> list[Any]:
        """The ``n_chosen`` indices; a choice that keeps more inputs has no gene form."""
        idx = self.check(choice)
        if len(idx) != self.n_chosen:
            raise NasmercError(f"{self.where} = {idx!r} keeps {len(idx)} inputs, which a population strategy "
                               f"cannot encode ({self.n_chosen} per input choice); derive {self.n_chosen} "
                               "(--set strategy.derive=argmax) or write that many")
        return [int(i) for i in idx]

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

    def derive_kept(self, weights: Sequence[float], threshold: float) -> Any:
        """Every input of weight ``>= threshold``, and at least the ``n_chosen`` highest."""
        return sorted(set(self.derive(weights)) | {i for i, w in enumerate(weights) if float(w) >= threshold})

    def display(self, choice: Any) -> Any:
        if not self.candidates:
            return choice
        return [self.candidates[i] for i in ([choice] if isinstance(choice, int) else list(choice))]

    def unresolved_hint(self) -> str:
        return "search it (--strategy darts, router, evolution, random or tpe)"


@dataclass(frozen=True)
class ValueSpec(_OneOf):
    """A structural or numeric gene among ``candidates`` (a depth, a width), fixed when the model is built."""

    kind: ClassVar[str] = "value"

    def check(self, choice: Any) -> Any:
        if choice not in self.candidates:
            raise NasmercError(f"{self.where} = {choice!r} is not allowed (expected one of {list(self.candidates)})")
        return choice

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
