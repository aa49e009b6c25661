"""Single-path one-shot evaluation (Guo et al., "Single Path One-Shot NAS with uniform sampling", SPOS)
for the population strategies: train one supernet on uniformly sampled paths, score many candidates
with its weights, retrain the best few from scratch. ``strategy.evaluation=oneshot`` of random search,
evolution and TPE; everything runs through the :class:`~nasmerc.nas.evaluator.Evaluator`.

1. **The supernet** (:class:`OneShotSupernet`) holds every candidate of every op / input choice
   (``space.supernet``). A hook on every choice module runs only the candidate, or the inputs, of the
   current *path* (an architecture), so a forward pass is the path's model. Value and float choices are
   fixed when a network is built: one whose every value gives the supernet the same weights (the same
   names and shapes: a loss weight, a dropout rate) is searched too -- the path's values get a network
   of their own, built without weights on the ``meta`` device, whose parameters and buffers *are* the
   supernet's. A choice that changes a weight's shape (a width, a depth) cannot share weights: it is
   refused before the run, naming it and the ``--fix`` that resolves it (:func:`shared_values`), as
   DARTS refuses value choices.
2. **Training** (SPOS sec. 3, uniform path sampling): ``oneshot_epochs`` epochs of the ordinary
   training loop; before every weight step :class:`PathSampler` draws a path uniformly -- each op or
   value choice uniform over its candidates, an input choice uniform over its ``k``-subsets, a float
   choice uniform in its range (``nasmerc.nas.population.sample_genome``) -- so each step trains the
   weights of one path. The validation after each epoch scores the supernet on paths drawn from the same
   fixed generator every epoch (one path per validation batch), so epochs are compared on the same paths
   and the best epoch's weights are kept, as for any training. Its ``epoch`` events are the run's, then
   one ``supernet`` event (``epochs``, ``best_epoch``, ``value``, ``metric``, ``parameters``); the
   trainer's checkpoint (with the sampler's generator in it) makes it resumable.
3. **Inherited scoring** (SPOS sec. 3, search with inherited weights): a candidate's validation metric
   with the supernet's weights on its path and no training (``CandidateRequest(inherit=True)``): one
   pass over the validation split per missing rate of ``train.valid_rates``. SPOS may recalibrate
   BatchNorm statistics per candidate first; no nasmerc search space normalises with BatchNorm
   (LayerNorm throughout, so that a row never depends on the other rows of a batch), so there is
   nothing to recalibrate.

Then the strategy's ``finalists`` (default :data:`ONESHOT_FINALISTS` here) train from scratch for
``train.epochs`` and the best on validation is the result (``nasmerc.nas.selection.choose_finalist``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from itertools import chain
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.errors import NasmercError
from nasmerc.events import Events
from nasmerc.nas.choices import ChoiceContext, InputChoice, OpChoice, choice_modules
from nasmerc.nas.evaluator import CandidateRequest, CandidateResult, Evaluator
from nasmerc.nas.genome import arch_key, decode, genes, sample_genome
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.specs import ChoiceSpec, FloatSpec
from nasmerc.outputs import count_parameters
from nasmerc.train.trainer import TrainConfig, Trainer, TrainHook

EVALUATIONS = ("scratch", "oneshot")
ONESHOT_FINALISTS = 3
"""Finalists retrained from scratch after a one-shot search when ``finalists`` is not set: inherited
weights rank candidates only roughly (a path trained one step in many is not the model trained alone),
so the top few by inherited score are trained for ``train.epochs`` and chosen on validation."""
VARIANTS = 16
"""Networks kept for the values of shared value / float choices (the least recently used goes first)."""


def check_evaluation(where: str, evaluation: str, oneshot_epochs: int, finalists: int | None, study: str = "") -> None:
    """The one-shot options of a population strategy's config (its ``__post_init__``)."""
    checks.one_of(where, "evaluation", evaluation, EVALUATIONS)
    checks.at_least(where, 0, oneshot_epochs=oneshot_epochs)
    if finalists is not None:
        checks.at_least(where, 0, finalists=finalists)
    if evaluation == "oneshot" and study:
        raise NasmercError(f"{where}: evaluation='oneshot' with study={study!r}: the supernet lives in one process; "
                           "drop study (or use evaluation='scratch' for a shared study)")


def finalists_of(cfg: Any) -> int:
    """``cfg.finalists``, or when it is unset (``None``) 0 for scratch and :data:`ONESHOT_FINALISTS` for one-shot."""
    value = getattr(cfg, "finalists", 0)
    if value is None:
        return ONESHOT_FINALISTS if getattr(cfg, "evaluation", "scratch") == "oneshot" else 0
    return int(value)


def supernet_epochs(cfg: Any, train: TrainConfig) -> int:
    """``cfg.oneshot_epochs``, or when 0 ``train.epochs``: the supernet is trained as one model is (as
    DARTS' and the router's supernets are), which at the strategies' defaults is about the 24-48
    candidate-epochs of a scratch search, and does not grow when ``trials`` grows (scoring is free)."""
    return int(cfg.oneshot_epochs) or int(train.epochs)


# -- which value choices can share weights ---------------------------------------------------------
def skeleton(build: Any) -> nn.Module:
    """``build()`` on the ``meta`` device: the module tree and its weights' shapes, with no memory and no
    random draws; on the CPU (torch's generator put back after) where a module cannot be built there."""
    try:
        with torch.device("meta"):
            return build()
    except (RuntimeError, NotImplementedError, TypeError):
        with torch.random.fork_rng(devices=[]):
            return build()


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of ``model`` by name (tied ones under each name) and its shape."""
    return {name: tuple(t.shape) for name, t in chain(model.named_parameters(remove_duplicate=False),
                                                      model.named_buffers(remove_duplicate=False))}


def _values_to_try(spec: ChoiceSpec) -> Sequence[Any]:
    return (spec.low, spec.high) if isinstance(spec, FloatSpec) else spec.candidates


def shared_values(space: SearchSpace, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The value / float choices not in ``fixed``, each at its first value (what the supernet is built
    with); a choice with a value that changes the supernet's weights (names or shapes) is refused,
    naming the label and the ``--fix`` that resolves it. Called before the run folder exists."""
    specs = [s for s in space.choices(fixed) if not s.in_supernet and s.label not in fixed]
    firsts = {s.label: s.first() for s in specs}
    base = weight_shapes(skeleton(lambda: space.supernet({**fixed, **firsts})))
    for spec in specs:
        for value in _values_to_try(spec):
            if value == firsts[spec.label]:
                continue
            other = weight_shapes(skeleton(lambda: space.supernet({**fixed, **firsts, spec.label: value})))
            if other != base:
                raise NasmercError(
                    f"strategy.evaluation=oneshot: choice {spec.label!r} ({spec.kind}) = {value!r} changes the "
                    f"supernet's weights, so its candidates cannot share them: pass {spec.unresolved_hint()} "
                    "or use strategy.evaluation=scratch")
    return firsts


class OneShotSupernet(nn.Module):
    """The supernet of ``space`` (``fixed`` and the shared ``values`` applied) running one path at a time.

    :meth:`use` sets the path (an architecture); the op / input choices' hooks read it, and a path whose
    shared values differ from ``values`` runs on a network of those values that shares this one's
    parameters and buffers (see the module docstring). Its weights are ``net``'s, so its state dict
    is the supernet's.
    """

    def __init__(self, space: SearchSpace, fixed: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        super().__init__()
        self.space, self.fixed, self.values = space, dict(fixed), dict(values)
        self.net = space.supernet({**self.fixed, **self.values})
        self.path: dict[str, Any] = {}
        self._attach(self.net)
        object.__setattr__(self, "_current", self.net)  # not a submodule: the weights are net's
        object.__setattr__(self, "_variants", OrderedDict())

    def _attach(self, net: nn.Module) -> None:
        for choice in choice_modules(net):
            choice.attach(self._run_op if isinstance(choice, OpChoice) else self._run_inputs)

    def _run_op(self, choice: OpChoice, *args: Any, **kwargs: Any) -> Any:
        return choice.candidates[self.path[choice.label]](*args, **kwargs)

    def _run_inputs(self, choice: InputChoice, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        chosen = self.path[choice.label]
        out = torch.stack([inputs[i] for i in chosen]).sum(0)
        return out / len(chosen) if choice.reduction == "mean" else out

    def use(self, arch: Mapping[str, Any]) -> None:
        """Run the path of ``arch`` (every op / input choice and shared value it names) from now on."""
        self.path = dict(arch)
        values = {label: arch[label] for label in self.values}
        if values == self.values:
            object.__setattr__(self, "_current", self.net)
            return
        key = arch_key(values)
        variant = self._variants.pop(key, None)
        if variant is None:  # the values were checked with the space's labels: build without listing again
            variant = skeleton(lambda: self.space.network(ChoiceContext(arch=None, fixed={**self.fixed, **values})))
            self._attach(variant)
        self._tie(variant, values)
        self._variants[key] = variant
        while len(self._variants) > VARIANTS:
            self._variants.popitem(last=False)
        object.__setattr__(self, "_current", variant)

    def _tie(self, variant: nn.Module, values: Mapping[str, Any]) -> None:
        """Put ``net``'s parameters and buffers in ``variant`` (again at every use: moving ``net`` to a
        device replaces its buffers)."""
        own = dict(self.net.named_modules(remove_duplicate=False))
        for name, module in variant.named_modules(remove_duplicate=False):
            source = own.get(name)
            for slot in ("_parameters", "_buffers"):
                mine, theirs = getattr(module, slot), getattr(source, slot, {})
                for key, tensor in mine.items():
                    shared = theirs.get(key)
                    if tensor is None:
                        continue
                    if shared is None or tuple(shared.shape) != tuple(tensor.shape):
                        raise NasmercError(
                            f"strategy.evaluation=oneshot: the values {dict(values)} change the supernet's weight "
                            f"{name + '.' + key!r}: fix one of {sorted(values)} with --fix")
                    mine[key] = shared
        if set(weight_shapes(variant)) != set(weight_shapes(self.net)):
            raise NasmercError(f"strategy.evaluation=oneshot: the values {dict(values)} change the supernet's "
                               f"weights: fix one of {sorted(values)} with --fix")

    def forward(self, batch: Batch) -> Any:
        net = self._current
        if net is not self.net and net.training != self.training:
            net.train(self.training)
        return net(batch)


class PathSampler(TrainHook):
    """Draws the path of every weight step uniformly (``sample_genome``), and of every validation batch
    from a generator started again each epoch (see the module docstring)."""

    def __init__(self, supernet: OneShotSupernet, specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any],
                 seed: int) -> None:
        self.supernet, self.specs, self.fixed = supernet, list(specs), dict(fixed)
        self.layout = genes(self.specs, self.fixed)
        self.rng = np.random.default_rng([seed, 1])
        self.valid_seed = [seed, 2]
        self.valid_rng = np.random.default_rng(self.valid_seed)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly drawn architecture (``fixed`` labels as given)."""
        return decode(sample_genome(self.layout, rng), self.specs, self.fixed)

    def before_step(self, trainer: Trainer, batch: Batch, epoch: int, step: int) -> None:
        self.supernet.use(self.sample(self.rng))

    def before_forward(self, trainer: Trainer, batch: Batch) -> None:
        if not trainer.model.training:  # a validation batch (a weight step's path is already set)
            self.supernet.use(self.sample(self.valid_rng))

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        self.valid_rng = np.random.default_rng(self.valid_seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class OneShot:
    """The trained supernet of one search and its inherited scoring (:func:`train_supernet`)."""

    def __init__(self, evaluator: Evaluator, epochs: int) -> None:
        checks.positive("strategy", oneshot_epochs=epochs)
        self.evaluator, self.epochs = evaluator, epochs
        space, fixed = evaluator.space, evaluator.fixed
        self.specs = space.choices(fixed)
        self.values = shared_values(space, fixed)
        torch.manual_seed(evaluator.seed)  # the supernet's initial weights come from the run seed
        self.supernet = OneShotSupernet(space, fixed, self.values)
        self.sampler = PathSampler(self.supernet, self.specs, fixed, evaluator.seed)
        self.parameters = count_parameters(self.supernet)
        self.tag = f"supernet:{epochs}"
        """What a cached inherited score is keyed by besides its request."""
        self.best_epoch, self.best_value = 0, float("nan")
        self._trainer: Trainer | None = None
        self._sizes: dict[str, int] = {}

    def train(self) -> "OneShot":
        """Train the supernet (module docstring, step 2) through :meth:`Evaluator.fit`; emits ``supernet``."""
        fit = self.evaluator.fit(self.supernet, hooks=[self.sampler], epochs=self.epochs)
        self.best_epoch, self.best_value = fit.best_epoch, fit.best_value
        self.evaluator.events.emit("supernet", epochs=self.epochs, best_epoch=fit.best_epoch, value=fit.best_value,
                                   metric=self.evaluator.metric, parameters=self.parameters,
                                   shared_values=sorted(self.values))
        return self

    def trainer(self) -> Trainer:
        """A silent trainer over the supernet that validates paths (made once; torch's generator kept)."""
        if self._trainer is None:
            ev = self.evaluator
            with torch.random.fork_rng(devices=[]):
                self._trainer = Trainer(self.supernet, ev.dataset.signature, dataclasses.replace(ev.train, compile=False),
                                        device=ev.device, seed=ev.seed, events=Events())
        return self._trainer

    def parameters_of(self, arch: Mapping[str, Any]) -> int:
        """Parameters of ``space.build(arch)``, counted on a build without weights (once per path: a
        shared value changes no weight)."""
        key = arch_key({label: choice for label, choice in arch.items() if label not in self.values})
        if key not in self._sizes:
            self._sizes[key] = count_parameters(skeleton(lambda: self.evaluator.space.build(arch)))
        return self._sizes[key]

    def score(self, request: CandidateRequest) -> CandidateResult:
        """The validation metrics of ``request.arch``'s path with the supernet's weights (no training)."""
        start = time.time()
        trainer = self.trainer()
        self.supernet.use(request.arch)
        valid = trainer.validate(self.evaluator.dataset.split("valid"))
        value = float(valid[trainer.metric])
        if not np.isfinite(value):
            raise NasmercError(f"candidate {dict(request.arch)} gave no finite validation {trainer.metric} "
                               "with the supernet's weights")
        return CandidateResult(value, dict(valid), self.parameters_of(request.arch), time.time() - start, [value])

    def summary(self) -> dict[str, Any]:
        """The supernet's numbers, for the search's ``extra["oneshot"]``."""
        return {"supernet_epochs": self.epochs, "supernet_best_epoch": self.best_epoch,
                "supernet_value": self.best_value, "supernet_parameters": self.parameters,
                "shared_values": sorted(self.values)}


def train_supernet(evaluator: Evaluator, epochs: int) -> OneShot:
    """Train ``evaluator``'s space's supernet for ``epochs`` epochs, one uniformly sampled path per weight
    step, and give it to the evaluator for inherited scoring (requests with ``inherit``: it answers them
    with :meth:`OneShot.score`); the trained :class:`OneShot`. The evaluator's :meth:`Evaluator.fit`
    trains it, so its checkpoint makes it resumable."""
    evaluator.oneshot = OneShot(evaluator, epochs).train()
    return evaluator.oneshot
