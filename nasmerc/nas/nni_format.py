"""NNI's architecture dict, as plain JSON: to and from a nasmerc architecture, with no NNI import.

NNI 3.0 names an architecture by the *sample* that freezes its model space (what
``NasExperiment.export_top_models(formatter='dict')`` and a one-shot module's ``export()`` return):
``{label: value}``, where a ``LayerChoice`` holds its candidate's index (the adapter builds it from a
list: a candidate's name may be an attribute of ``LayerChoice``, as ``random`` is), an ``InputChoice``
the list of chosen input indices, an ``nni.choice`` its value and an ``nni.uniform`` its number. The NNI model space
of a nasmerc space (``strategies/nni.py``) uses nasmerc's labels, so the two forms differ only in
detail:

- an op choice is read by index or by name (nasmerc's ``arch.yaml`` holds the name);
- an input choice is a sorted index list in both (NNI may also write it in its *categorical* form,
  ``label/0: true, label/1: false, ...``, or, from a strategy that only knows categorical
  parameters, as nasmerc's TPE parameters ``label#0, label#1, ...``; all three are read);
- a choice a space asks for but its network never holds (say, the fusion of a level beyond a fixed
  depth) is not in NNI's dict; it takes its first candidate, as nasmerc's derivation does;
- a routed op choice (the router strategy's ``{routed: [...], width: D}``), a mixed one (DARTS' threshold
  derivation, ``{mixed: {name: weight}}``) and an input choice keeping more inputs than it chooses have
  no NNI form.

The file ``nasmerc export --format nni RUN`` writes (``nni_arch.json``) is such a dict and nothing
else, so NNI code can freeze the model space with it; ``nasmerc retrain`` reads it back with the run
record of the ``arch.yaml`` beside it (or of ``--arch-from``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from nasmerc.errors import NasmercError
from nasmerc.nas.specs import ChoiceSpec, FloatSpec, InputSpec, OpSpec, ValueSpec

NNI_ARCH_FILE = "nni_arch.json"
"""Where ``nasmerc export --format nni RUN`` writes by default."""


def to_nni(arch: Mapping[str, Any], specs: Sequence[ChoiceSpec]) -> dict[str, Any]:
    """The NNI sample of a (checked) nasmerc architecture: one entry per choice, in the space's order."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.label not in arch:
            raise NasmercError(f"architecture: choice {spec.label!r} is missing")
        choice = spec.check(arch[spec.label])
        if isinstance(spec, OpSpec) and isinstance(choice, Mapping) and "mixed" in choice:
            raise NasmercError(f"architecture: choice {spec.label!r} is mixed ({dict(choice)!r}); NNI has no form for "
                               "it (derive one candidate per choice: --set strategy.derive=argmax)")
        if isinstance(spec, OpSpec) and isinstance(choice, Mapping):
            raise NasmercError(f"architecture: choice {spec.label!r} is routed ({dict(choice)!r}); NNI has no form for "
                               "it (export the router's argmax: --set strategy.export=argmax)")
        if isinstance(spec, InputSpec) and len(choice) != spec.n_chosen:
            raise NasmercError(f"architecture: choice {spec.label!r} keeps {len(choice)} inputs {list(choice)}; NNI's "
                               f"input choice takes exactly {spec.n_chosen} (derive with --set strategy.derive=argmax)")
        if isinstance(spec, OpSpec):
            choice = spec.candidates.index(choice)
        out[spec.label] = [int(i) for i in choice] if isinstance(spec, InputSpec) else choice
    return out


def from_nni(sample: Mapping[str, Any], specs: Sequence[ChoiceSpec], inactive: Sequence[str] = (),
             source: str = "NNI architecture") -> dict[str, Any]:
    """The nasmerc architecture of an NNI sample (see the module docstring for the forms read).

    A key that belongs to no choice is refused, naming it and ``source``; so is a choice that is
    missing (unless it is ``inactive``) or a value that is not one of its candidates.
    """
    if not isinstance(sample, Mapping):
        raise NasmercError(f"{source}: expected a JSON object of choice label to value, got {type(sample).__name__}")
    used: set[str] = set()
    arch: dict[str, Any] = {}
    for spec in specs:
        value, keys = _lookup(sample, spec)
        used |= keys
        if value is _MISSING:
            if spec.label in inactive:
                arch[spec.label] = spec.first()
                continue
            raise NasmercError(f"{source}: choice {spec.label!r} is missing")
        arch[spec.label] = _convert(spec, value, source)
    unknown = sorted(set(sample) - used)
    if unknown:
        raise NasmercError(f"{source}: unknown choice label(s) {unknown} (known: {[s.label for s in specs]})")
    return arch


_MISSING = object()


def _lookup(sample: Mapping[str, Any], spec: ChoiceSpec) -> tuple[Any, set[str]]:
    """The value of ``spec`` in ``sample`` and the keys it took, in any of the forms NNI writes."""
    label = spec.label
    if label in sample:
        return sample[label], {label}
    if isinstance(spec, InputSpec):
        flags = [f"{label}/{i}" for i in range(spec.n_candidates)]
        if all(k in sample for k in flags):  # CategoricalMultiple's categorical form
            keys = set(flags) | ({f"{label}/n"} & set(sample))
            return [i for i, k in enumerate(flags) if sample[k] is True], keys
        params = [p.name for p in spec.params()]
        if all(k in sample for k in params):  # nasmerc's TPE parameters
            try:
                return spec.from_params([int(sample[k]) for k in params]), set(params)
            except (TypeError, ValueError, IndexError):
                raise NasmercError(f"choice {label!r}: {[sample[k] for k in params]!r} are not input positions") from None
    return _MISSING, set()


def _convert(spec: ChoiceSpec, value: Any, source: str) -> Any:
    where = f"{source}: choice {spec.label!r}"
    if isinstance(spec, OpSpec):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(spec.candidates):
            value = spec.candidates[value]  # the adapter's LayerChoice names candidates by index
        if not isinstance(value, str) or value not in spec.candidates:
            raise NasmercError(f"{where} = {value!r} is not a candidate (expected one of {list(spec.candidates)})")
        return value
    if isinstance(spec, InputSpec):
        idx = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(idx, list):
            raise NasmercError(f"{where} = {value!r}: expected a list of {spec.n_chosen} input indices")
        return _checked(spec, idx, where)
    if isinstance(spec, ValueSpec):
        for candidate in spec.candidates:
            if _same(_plain(candidate), value):
                return candidate
        raise NasmercError(f"{where} = {value!r} is not allowed (expected one of {list(spec.candidates)})")
    if isinstance(spec, FloatSpec):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise NasmercError(f"{where} = {value!r}: expected a number in [{spec.low}, {spec.high}]")
        return _checked(spec, float(value), where)
    raise NasmercError(f"{where}: a {spec.kind} choice has no NNI form")


def _checked(spec: ChoiceSpec, value: Any, where: str) -> Any:
    try:
        return spec.check(value)
    except NasmercError as exc:
        raise NasmercError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, a bool equal only to the same bool (``True == 1`` in Python)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def read_nni_file(path: str | Path) -> dict[str, Any]:
    """An NNI architecture dict from a JSON file, or a one-line refusal naming the file."""
    path = Path(path)
    if not path.is_file():
        raise NasmercError(f"{path}: no such file (expected an NNI architecture dict, JSON)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NasmercError(f"{path}: not JSON ({exc}); expected an NNI architecture dict") from None
    if not isinstance(data, dict):
        raise NasmercError(f"{path}: expected a JSON object of choice label to value (an NNI architecture dict), "
                           f"found a {type(data).__name__}")
    return data


def is_nni_file(path: str | Path) -> bool:
    """Whether ``path`` names an NNI architecture dict (a ``.json`` file) rather than an ``arch.yaml``."""
    return Path(path).suffix.lower() == ".json"
