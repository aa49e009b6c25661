"""The search-space base class and the model output contract.

A space is declared apart from any strategy: a config dataclass with named presets, and one method,
:meth:`SearchSpace.network`, that builds the network by asking a
:class:`~nasmerc.nas.choices.ChoiceContext` for every free decision. From that one method the base
class derives the rest: the list of choice points, the supernet a differentiable strategy trains,
and :meth:`SearchSpace.build`, the pure map from an architecture to a fixed model.

A degenerate space (a hand-designed model) asks no question: its architecture is empty.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.nas.choices import ChoiceContext, ChoiceSpec


@dataclass
class ModelOutput:
    """What a model returns for a :class:`~nasmerc.data.batch.Batch`.

    - ``logits``: ``[B, L, C]`` class scores, or ``[B, L]`` regression scores (``[B, C]`` / ``[B]``
      for utterance-level tasks);
    - ``aux_losses``: named scalar losses (reconstruction, distillation, unimodal task losses ...);
      the trainer adds each times ``aux_weights[name]`` (1.0 when absent) and logs each one;
    - ``per_modality_logits``: optional unimodal predictions for plug-ins that balance modalities.
    """

    logits: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_weights: dict[str, float] = field(default_factory=dict)
    per_modality_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class SearchSpace(ABC):
    """Base class of every space. Subclasses set ``name``, ``Config``, ``presets`` and ``network``.

    ``Config`` is a dataclass whose defaults run on a CPU in seconds; ``presets`` maps a preset name
    (at least ``default``; ``paper`` for the paper's sizes) to a function returning a config.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    presets: ClassVar[dict[str, Callable[[], Any]]] = {}

    def __init__(self, signature: DataSignature, config: Any = None) -> None:
        self.signature = signature
        self.config = config if config is not None else self.presets["default"]()

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

    @abstractmethod
    def network(self, ctx: ChoiceContext) -> nn.Module:
        """Build the network, asking ``ctx`` for every free decision; the model's ``forward`` takes a
        :class:`~nasmerc.data.batch.Batch` and returns a :class:`ModelOutput`."""

    # -- derived from network() ---------------------------------------------------------------
    def supernet(self, fixed: Mapping[str, Any] | None = None) -> nn.Module:
        """Every candidate of every op / input choice, value choices fixed by ``fixed``."""
        self.check_fixed(fixed or {})
        return self.network(ChoiceContext(arch=None, fixed=dict(fixed or {})))

    def choices(self, fixed: Mapping[str, Any] | None = None) -> list[ChoiceSpec]:
        """The space's choice points, in the order the network asks them.

        Value / float choices not in ``fixed`` take placeholder values while listing, so a
        population strategy can see every gene before it has chosen any.
        """
        ctx = ChoiceContext(arch=None, fixed=dict(fixed or {}), placeholders=True)
        self.network(ctx)
        return list(ctx.specs.values())

    def check_fixed(self, fixed: Mapping[str, Any]) -> None:
        """Refuse ``--fix`` labels the space does not have, or that are not value / float choices."""
        if not fixed:
            return
        specs = {s.label: s for s in self.choices(fixed)}
        unknown = sorted(set(fixed) - set(specs))
        if unknown:
            raise NasmercError(f"--fix: unknown choice label(s) {unknown} (known: {sorted(specs)})")
        for label in fixed:
            if specs[label].kind not in ("value", "float"):
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


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
