"""The search-space base classes: :class:`SearchSpace` and, for hand-designed models, :class:`FixedSpace`.

A space is declared apart from any strategy: a config dataclass with named presets, a
:meth:`SearchSpace.check_config` hook that refuses values that cannot work (with the helpers of
``nasmerc.checks``), and a network class built as ``Network(signature, config, ctx)``, asking a
:class:`~nasmerc.nas.choices.ChoiceContext` for every free decision. From that one constructor the
base class derives the rest: the list of choice points, the supernet a differentiable strategy
trains, and :meth:`SearchSpace.build`, the pure map from an architecture to a fixed model.

A degenerate space (a hand-designed model) asks no question: its architecture is empty, and it sets
``Model`` (built as ``Model(signature, config)``) on a :class:`FixedSpace`.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, Callable, ClassVar, Mapping

from torch import nn

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.nas.choices import ChoiceContext, choice_modules
from nasmerc.nas.specs import ChoiceSpec


class SearchSpace(ABC):
    """Base class of every space. Subclasses set ``name``, ``Config``, ``presets`` and ``Network``
    (or override :meth:`network`), and may override :meth:`check_config`.

    ``Config`` is a dataclass whose defaults run on a CPU in seconds; ``presets`` maps a preset name
    (at least ``default``; ``paper`` for the paper's sizes) to a function returning a config.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    presets: ClassVar[dict[str, Callable[[], Any]]] = {}
    Network: ClassVar[Callable[..., nn.Module] | None] = None
    """Called as ``Network(signature, config, ctx)`` by the default :meth:`network`."""
    default_strategy: ClassVar[str | None] = None
    """The strategy ``nasmerc search --space NAME`` takes when none is named, on the command line or in
    a config file (``None``: ``darts``, or ``fixed`` for a space with nothing to search). A space sets
    it when its paper searches another way: ``iteach`` searches with its router (eqs. 8-9)."""
    default_strategy_config: ClassVar[dict[str, Any]] = {}
    """The settings of :attr:`default_strategy` when the search takes it by default (``--set
    strategy.KEY`` still wins); a strategy named on the command line or in a config file starts from
    its own defaults."""

    def __init__(self, signature: DataSignature, config: Any = None) -> None:
        self.signature = signature
        self.config = config if config is not None else self.presets["default"]()
        check_signature(self.where, signature)
        self.check_config()

    @property
    def where(self) -> str:
        """How error messages name this space: ``space 'rmnas'``."""
        return f"space {self.name!r}"

    def named_architectures(self) -> dict[str, dict[str, Any]]:
        """Architectures of this space that stand for known designs (a hand-designed model's nearest
        point), by name; a search may start from them. Default: none."""
        return {}

    def check_config(self) -> None:
        """Refuse a config (``self.config``) that cannot work with ``self.signature``, naming the first bad
        field (a :class:`~nasmerc.errors.NasmercError`; see ``nasmerc.checks``). Called once, when the
        space is made, so a bad ``--set`` stops before any run folder exists. Default: accept."""

    @classmethod
    def from_preset(cls, signature: DataSignature, preset: str = "default",
                    overrides: Mapping[str, Any] | None = None) -> "SearchSpace":
        """The space at a named preset with ``--set`` style overrides applied."""
        if preset not in cls.presets:
            raise NasmercError(f"space {cls.name!r}: unknown preset {preset!r} (known: {', '.join(cls.presets)})")
        config = apply_overrides(cls.presets[preset](), dict(overrides or {}), where=f"space {cls.name!r}")
        return cls(signature, config)

    def config_dict(self) -> dict[str, Any]:
        return to_plain(self.config)

    def network(self, ctx: ChoiceContext) -> nn.Module:
        """Build the network, asking ``ctx`` for every free decision; the model's ``forward`` takes a
        :class:`~nasmerc.data.batch.Batch` and returns a :class:`~nasmerc.outputs.ModelOutput`.
        Default: ``Network(signature, config, ctx)``."""
        if self.Network is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither Network nor network()")
        return self.Network(self.signature, self.config, ctx)

    # -- derived from network() ---------------------------------------------------------------
    def supernet(self, fixed: Mapping[str, Any] | None = None) -> nn.Module:
        """Every candidate of every op / input choice, value choices fixed by ``fixed``."""
        self.check_fixed(fixed or {})
        return self.network(ChoiceContext(arch=None, fixed=dict(fixed or {})))

    def choices(self, fixed: Mapping[str, Any] | None = None) -> list[ChoiceSpec]:
        """The space's choice points, in the order the network asks them.

        Value / float choices not in ``fixed`` take placeholder values while listing, so a
        population strategy can see every gene before it has chosen any. Listed once per ``fixed``.
        """
        return list(self._listing(fixed)[0])

    def inactive(self, fixed: Mapping[str, Any] | None = None) -> list[str]:
        """Op / input choices the space asks for but its network with ``fixed`` does not hold as
        modules (say, the fusion of a level beyond a fixed depth): they have no effect, so a derived
        architecture gives them their first candidate."""
        return list(self._listing(fixed)[1])

    def _listing(self, fixed: Mapping[str, Any] | None) -> tuple[tuple[ChoiceSpec, ...], tuple[str, ...]]:
        """The specs and inactive labels of the network with ``fixed``, built once and cached."""
        fixed = dict(fixed or {})
        key = repr(sorted(fixed.items()))
        cache = self.__dict__.setdefault("_listings", {})
        if key not in cache:
            ctx = ChoiceContext(arch=None, fixed=fixed, placeholders=True)
            present = {m.label for m in choice_modules(self.network(ctx))}
            specs = tuple(ctx.specs.values())
            cache[key] = specs, tuple(s.label for s in specs if s.in_supernet and s.label not in present)
        return cache[key]

    def check_fixed(self, fixed: Mapping[str, Any]) -> None:
        """Refuse ``--fix`` labels the space does not have, or that are not value / float choices."""
        if not fixed:
            return
        specs = {s.label: s for s in self.choices(fixed)}
        unknown = sorted(set(fixed) - set(specs))
        if unknown:
            raise NasmercError(f"--fix: unknown choice label(s) {unknown} (known: {sorted(specs)})")
        for label in fixed:
            if specs[label].in_supernet:
                raise NasmercError(f"--fix {label!r}: an {specs[label].kind} choice is searched, not fixed "
                                   "(--fix takes value and float choices)")

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        """The fixed model of ``arch``: no choice point left, no parameter of an unchosen candidate.

        A missing, unknown or out-of-range label is refused with a message that names it.
        """
        ctx = ChoiceContext(arch=dict(arch))
        model = self.network(ctx)
        unknown = set(arch) - set(ctx.specs)
        if unknown:
            raise NasmercError(
                f"architecture: unknown choice label(s) {sorted(unknown)} for space {self.name!r}"
            )
        return model

    def canonical(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``arch`` checked against the space and written in canonical form (sorted input indices)."""
        ctx = ChoiceContext(arch=dict(arch))
        self.network(ctx)
        unknown = set(arch) - set(ctx.specs)
        if unknown:
            raise NasmercError(f"architecture: unknown choice label(s) {sorted(unknown)} for space {self.name!r}")
        return {label: spec.check(arch[label]) for label, spec in ctx.specs.items()}


class FixedSpace(SearchSpace):
    """A hand-designed model: a space with no choice point. Subclasses set ``Model``, built as
    ``Model(signature, config)``; ``paper_params`` is the parameter count its paper reports, if any."""

    Model: ClassVar[Callable[..., nn.Module] | None] = None
    paper_params: ClassVar[int | None] = None

    def network(self, ctx: ChoiceContext) -> nn.Module:
        if self.Model is None:
            raise NotImplementedError(f"{type(self).__name__} sets no Model")
        return self.Model(self.signature, self.config)


def check_signature(where: str, signature: DataSignature) -> None:
    """What every space needs of the data: modalities, each with a feature width, and something to
    predict."""
    if not signature.modalities or any(m not in signature.dims for m in signature.modalities):
        raise NasmercError(f"{where}: the data signature needs modalities with dims, got "
                           f"modalities={list(signature.modalities)}, dims={signature.dims}")
    if signature.n_outputs < 1:
        raise NasmercError(f"{where}: a classification signature needs classes, got none")
