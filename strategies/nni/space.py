"""Any nasmerc space as an NNI 3.0 model space (the adapter); imports NNI, so it is loaded only by a run.

A space builds its network through a :class:`~nasmerc.nas.choices.ChoiceContext`; :class:`NNIChoiceContext`
answers every question with NNI's own mutables, inside :class:`NasmercModelSpace` (an
``nni.nas.nn.pytorch.ModelSpace``), so NNI's strategies, one-shot and multi-trial, search it as they
search any NNI space:

- ``ctx.op(label, {name: factory})`` -> ``LayerChoice([module, ...], label=label)``, its candidates by
  index (a dict would take the names as attribute names, and ``random`` or ``float`` are taken),
  inside a :class:`NNIOpChoice` that shows the space the candidates by name;
- ``ctx.inputs(label, n, k)`` -> ``InputChoice(n, k, reduction, label=label)``, or with
  ``inputs_as="params"`` (for NNI's TPE and RL, which know categorical parameters only) ``k``
  ``nni.choice`` parameters named as nasmerc's TPE names them (``label``, or ``label#0 .. label#{k-1}``);
- ``ctx.value(label, values)`` -> ``nni.choice(label, values)`` and ``ctx.float(label, low, high)`` ->
  ``nni.uniform(label, low, high)``, registered on the model space and read with ``ensure_frozen``
  (their dry-run default while the space is listed, the sampled value when NNI builds a model); a
  label fixed by ``--fix`` is a constant, not a mutable.

The labels are nasmerc's own (NNI forbids only ``/``), so an NNI sample is a nasmerc architecture up to
the details ``nasmerc.nas.nni_format`` converts. When NNI builds one architecture (a multi-trial
strategy's ``executable_model()``, under ``model_context(sample)``), the space is built by
``space.build(arch)``: the very model nasmerc's own strategies train.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from torch import nn

from nasmerc.errors import NasmercError
from nasmerc.nas.choices import ChoiceContext, ChosenInputs
from nasmerc.nas.nni_format import from_nni
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.specs import ChoiceSpec, FloatSpec, InputSpec, OpSpec

# NNI 3.0 warns at import about torch classes newer than it; gym (NNI's RL strategies) prints a notice
with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
    warnings.simplefilter("ignore")
    import nni
    from nni.mutable import ensure_frozen
    from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace
    from nni.nas.space import current_model, model_context

QUIET = ("nni", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "torchmetrics")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNI's and Lightning's loggers off and their warnings off for the block; restored after. A failure
    reaches the user as nasmerc's own error or the traceback, not as NNI's log line about it."""
    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class NNIOpChoice(nn.Module):
    """An op choice as NNI sees it, a ``LayerChoice`` of the candidates by index (``choice``), held as a
    space sees a nasmerc op choice: ``label``, ``names`` and ``candidates`` (name -> module, the same
    modules; ``merc`` reads them). NNI's one-shot strategies replace ``choice`` by their mixed layer."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.label = label
        # a list, not a dict: a candidate's name may be an attribute of LayerChoice ("random", "float")
        self.choice = LayerChoice(list(candidates.values()), label=label)
        object.__setattr__(self, "candidates", dict(candidates))  # not registered twice

    @property
    def names(self) -> list[str]:
        return list(self.candidates)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.choice(*args, **kwargs)


@dataclass
class NNIChoiceContext(ChoiceContext):
    """A :class:`ChoiceContext` that answers with NNI mutables registered on ``owner`` (the model space
    being built); see the module docstring."""

    owner: Any = field(default=None, repr=False)
    inputs_as: str = "choice"

    def op(self, label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> nn.Module:
        self._record(OpSpec(label, tuple(candidates)))
        return NNIOpChoice(label, {name: make() for name, make in candidates.items()})

    def inputs(self, label: str, n_candidates: int, n_chosen: int = 1, reduction: str = "mean",
               names: Sequence[str] = ()) -> nn.Module:
        spec = InputSpec(label, tuple(names), n_candidates=n_candidates, n_chosen=n_chosen)
        self._record(spec)
        if self.inputs_as == "params":
            values = [self._mutable(nni.choice(p.name, list(p.choices))) for p in spec.params()]
            return ChosenInputs(spec.from_params(values), reduction)
        return InputChoice(n_candidates, n_chosen, reduction=reduction, label=label)

    def _resolve(self, spec: ChoiceSpec) -> Any:
        self._record(spec)
        if spec.label in self.fixed:
            return spec.check(self.fixed[spec.label])
        if isinstance(spec, FloatSpec):
            return self._mutable(nni.uniform(spec.label, spec.low, spec.high))
        return self._mutable(nni.choice(spec.label, list(spec.candidates)))

    def _mutable(self, mutable: Any) -> Any:
        """Register ``mutable`` on the model space and read its value in the current frozen context."""
        self.owner.add_mutable(mutable)
        return ensure_frozen(mutable)


class NasmercModelSpace(ModelSpace):
    """The NNI model space of ``space`` with the ``--fix`` values ``fixed`` (see the module docstring).

    ``forward(batch)`` runs the network on a nasmerc :class:`~nasmerc.data.batch.Batch` and returns its
    :class:`~nasmerc.outputs.ModelOutput`. ``specs`` lists the space's choice points as nasmerc sees
    them, in the order asked.
    """

    def __init__(self, space: SearchSpace, fixed: Mapping[str, Any] | None = None, inputs_as: str = "choice") -> None:
        super().__init__()
        if inputs_as not in ("choice", "params"):
            raise ValueError(f"inputs_as={inputs_as!r}: expected 'choice' or 'params'")
        fixed = dict(fixed or {})
        sample = current_model()
        self.specs: list[ChoiceSpec] = space.choices(fixed)
        if sample is not None:  # NNI builds one architecture of the space
            arch = from_nni({**fixed, **sample}, self.specs, space.inactive(fixed), source="NNI sample")
            self.net = space.build(arch)
        else:
            self.net = space.network(NNIChoiceContext(fixed=fixed, owner=self, inputs_as=inputs_as))

    def forward(self, batch: Any) -> Any:
        return self.net(batch)

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """The fixed model of ``sample`` (an NNI architecture dict): the space built again under it."""
        self.validate(sample)
        with model_context(dict(sample)):
            return self.__class__(*self.trace_args, **self.trace_kwargs)


def import_rl() -> None:
    """Import gym (for NNI's ENAS and PolicyBasedRL) without the deprecation notice it prints on stderr."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gym  # noqa: F401
        import nni.nas.strategy._rl_impl  # noqa: F401


def model_space(space: SearchSpace, fixed: Mapping[str, Any] | None = None, inputs_as: str = "choice") -> NasmercModelSpace:
    """The NNI model space of ``space``, its NNI warnings and log lines kept quiet."""
    with quiet():
        try:
            return NasmercModelSpace(space, dict(fixed or {}), inputs_as)
        except (AssertionError, ValueError, TypeError) as exc:
            if isinstance(exc, NasmercError):
                raise
            raise NasmercError(f"space {space.name!r}: NNI refused its model space ({exc})") from None


def nni_labels(ms: NasmercModelSpace) -> dict[str, Any]:
    """The mutables NNI searches in ``ms``, by label (``ModelSpace.simplify()``)."""
    with quiet():
        return dict(ms.simplify())


def weights_by_name(probs: Mapping[str, Mapping[Any, float]], specs: Sequence[ChoiceSpec]) -> dict[str, dict[str, float]]:
    """NNI's ``export_probs()`` (``{label: {candidate or input index: probability}}``) with inputs named
    as nasmerc reports them (``choice_weights`` events)."""
    by_label = {s.label: s for s in specs}
    out: dict[str, dict[str, float]] = {}
    for label, dist in probs.items():
        spec = by_label.get(label)
        names = spec.option_names if isinstance(spec, (OpSpec, InputSpec)) else []
        out[label] = {(names[k] if isinstance(k, int) and 0 <= k < len(names) else str(k)): float(v)
                      for k, v in dist.items()}
    return out
