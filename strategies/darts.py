"""DARTS: differentiable architecture search by bilevel optimisation (Liu et al.), as RMNAS uses it.

Architecture weights live here, one tensor per :class:`~nasmerc.nas.choices.OpChoice` and
:class:`~nasmerc.nas.choices.InputChoice`, attached to the supernet from outside as hooks (RMNAS sec.
"Architecture Search": ``alpha`` for the token mixers, ``beta`` for the inputs of cells and
cell-steps, ``lambda`` for the step operations, all called ``alpha`` here):

- an op choice returns ``sum_i softmax(alpha)_i o_i(x)`` (RMNAS eq. 5; the step ops likewise);
- an input choice, with ``inputs="gate"``, is RMNAS eq. 13: every input passes through
  ``{Identity, Zero}`` mixed by its own two-way softmax (``alpha`` ``[n_inputs, 2]``), so each input
  has a gate ``softmax(beta_c)_Identity`` of its own (``nasmerc.nas.choices.gated_inputs``); with
  ``inputs="softmax"`` the inputs share one softmax and compete (DARTS' edges; nasmerc before eq. 13).

Data (``weight_data``). ``whole`` (RMNAS, following BM-NAS's search loop): weights take AdamW steps
on the whole training split and, before every weight step, ``alpha`` takes a step on a batch of the
validation split; the best epoch is selected on the validation split too, so **selection and
``alpha`` share the validation split** (the test split is never touched). ``half``: the training
split is cut in two, deterministically by seed, weights on one part and ``alpha`` on the other
(``arch_fraction`` of it), the validation split left for selection alone. The paper's optimisers:
SGD with lr 5 for ``{alpha, beta, lambda}``. First order by default; ``order=2`` uses the unrolled
objective with the finite-difference Hessian-vector product of DARTS eq. 7-8.

Derivation (``derive``), from the weights of the best validation epoch (saved as ``alpha.pt`` in
the run folder, which ``nasmerc export`` reads again). ``threshold`` (RMNAS fig. 4: "operations
with alpha, beta, gamma less than 0.2 after softmax computation are considered discarded"): every
candidate whose softmax weight (an input's eq. 13 gate) is at least ``threshold`` is kept, at least
the argmax one; several kept ops become ``{mixed: {name: weight}}`` (their weighted sum, eq. 5 without
the discarded terms), several kept inputs a list of indices (their sum, eq. 13 with the discarded
ones at Zero). ``argmax``: one op per choice (a ``zero`` candidate is passed over, as DARTS does with
its ``none`` op, unless it is the only one) and the top-k inputs. The softmax weights (gates for
eq. 13 inputs) are emitted as ``choice_weights`` events every epoch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nasmerc.data.batch import Batch, iterate_batches
from nasmerc.data.conversation import Conversation, ConversationDataset, carve_validation
from nasmerc.errors import NasmercError
from nasmerc.io import read_torch, write_torch
from nasmerc import checks
from nasmerc.nas.choices import OpChoice, choice_modules, gated_inputs, softmax_inputs
from nasmerc.nas.specs import ChoiceSpec
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy, derive_from_weights, require_fixed_values
from nasmerc.outputs import count_parameters
from nasmerc.train.distributed import average_gradients
from nasmerc.train.trainer import Trainer, TrainHook

ALPHA_FILE = "alpha.pt"


@dataclass(frozen=True)
class DartsConfig:
    """``arch_optimizer`` / ``arch_lr`` / ``arch_momentum`` / ``arch_weight_decay``: the optimiser of
    ``alpha`` (paper: SGD, lr 5); ``order``: 1 (first order) or 2 (unrolled, DARTS eq. 7-8) with the
    virtual step ``unroll_lr`` (0: ``train.lr``); ``weight_data``: ``whole`` (weights on the whole
    training split, ``alpha`` on the validation split, as RMNAS / BM-NAS) or ``half`` (the training
    split cut in two, ``alpha`` on the share ``arch_fraction`` of it); ``warmup_epochs``: epochs of
    weight steps alone first; ``init_scale``: the spread of the initial ``alpha``; ``inputs``:
    ``gate`` (RMNAS eq. 13) or ``softmax`` input weights; ``derive``: ``threshold`` (keep every
    candidate of weight ``>= threshold``, RMNAS fig. 4, 0.2) or ``argmax``.

    The defaults are the paper's for every space preset. On rmnas ``default`` (iemocap6, 10-epoch
    search and retrain, seeds 0-2, share of the exact oracle) they measured 76.2 / 73.9 / 78.8 against
    65.4 / 71.2 / 74.5 for argmax, softmax inputs and the half split: argmax flips between the
    near-equal weights of the fusion choices from seed to seed, the 0.2 rule keeps them all. ``half``
    (78.1 / 74.6 / 80.7) and ``warmup_epochs=3`` (75.5 / 75.2 / 80.9) differ by less than the seeds do,
    so the paper's whole split and no warm-up stay."""

    arch_optimizer: Literal["sgd", "adam"] = "sgd"
    arch_lr: float = 5.0
    arch_momentum: float = 0.0
    arch_weight_decay: float = 0.0
    order: int = 1
    unroll_lr: float = 0.0
    weight_data: Literal["whole", "half"] = "whole"
    arch_fraction: float = 0.5
    warmup_epochs: int = 0
    init_scale: float = 1e-3
    inputs: Literal["gate", "softmax"] = "gate"
    derive: Literal["threshold", "argmax"] = "threshold"
    threshold: float = 0.2

    def __post_init__(self) -> None:
        where = "strategy 'darts'"
        if self.order not in (1, 2):
            raise NasmercError(f"{where}: order={self.order!r}: expected 1 or 2")
        checks.one_of(where, "arch_optimizer", self.arch_optimizer, ("sgd", "adam"))
        checks.one_of(where, "weight_data", self.weight_data, ("whole", "half"))
        checks.one_of(where, "inputs", self.inputs, ("gate", "softmax"))
        checks.one_of(where, "derive", self.derive, ("threshold", "argmax"))
        checks.in_range(where, "arch_fraction", self.arch_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.in_range(where, "threshold", self.threshold, 0.0, 1.0, low_open=True)
        checks.greater_than_zero(where, arch_lr=self.arch_lr)
        checks.non_negative(where, arch_momentum=self.arch_momentum, arch_weight_decay=self.arch_weight_decay,
                            unroll_lr=self.unroll_lr, init_scale=self.init_scale)
        checks.at_least(where, 0, warmup_epochs=self.warmup_epochs)


def _softmax_mix(alpha: nn.Parameter):
    """The hook of an op choice: ``sum_i softmax(alpha)_i o_i(...)`` (RMNAS eq. 5)."""

    def op_hook(choice: OpChoice, *args: Any, **kwargs: Any) -> Any:
        w = torch.softmax(alpha, dim=0)
        return sum(w[i] * cand(*args, **kwargs) for i, cand in enumerate(choice.candidates.values()))

    return op_hook


def option_weights(alpha: torch.Tensor) -> list[float]:
    """One weight per option of a choice's ``alpha``: its softmax (``[n]``), or for eq. 13 input gates
    (``[n, 2]``, columns Identity and Zero) each input's Identity weight."""
    a = alpha.detach().float().cpu()
    return (torch.softmax(a, -1)[:, 0] if a.dim() == 2 else torch.softmax(a.flatten(), 0)).tolist()


class ArchWeights(nn.Module):
    """``alpha`` for every op / input choice of a supernet, attached to it as hooks: softmax mixing of
    the candidates for op choices (eq. 5), and for input choices eq. 13's per-input gates
    (``inputs="gate"``, ``[n, 2]`` per choice) or one softmax over the inputs (``"softmax"``, ``[n]``)."""

    def __init__(self, supernet: nn.Module, init_scale: float, generator: torch.Generator,
                 inputs: str = "gate") -> None:
        super().__init__()
        self.alpha = nn.ParameterDict()
        self.candidates: dict[str, list[str]] = {}
        self._labels: dict[str, str] = {}
        for choice in choice_modules(supernet):
            op = isinstance(choice, OpChoice)
            shape = (len(choice.names),) if op else (choice.n_candidates, 2) if inputs == "gate" else (choice.n_candidates,)
            key = choice.label.replace(".", "/")
            self._labels[key] = choice.label
            self.alpha[key] = nn.Parameter(init_scale * torch.randn(*shape, generator=generator))
            self.candidates[choice.label] = list(choice.names)
            a = self.alpha[key]
            choice.attach(_softmax_mix(a) if op else gated_inputs(a) if inputs == "gate" else softmax_inputs(a))
        if not self.alpha:
            raise NasmercError("the space has no op or input choice for DARTS to weigh: "
                               "use the fixed strategy or a population strategy")

    def weights(self) -> dict[str, dict[str, float]]:
        """``{label: {candidate: weight}}``: softmax weights, or eq. 13 gates for gated inputs (which do
        not sum to one: each input has its own)."""
        return {self._labels[key]: dict(zip(self.candidates[self._labels[key]], option_weights(a)))
                for key, a in self.alpha.items()}

    def state(self) -> dict[str, torch.Tensor]:
        return {self._labels[k]: a.detach().cpu().clone() for k, a in self.alpha.items()}


def derive(alpha: Mapping[str, torch.Tensor], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any],
           inactive: Sequence[str] = (), threshold: float | None = None) -> dict[str, Any]:
    """The discrete architecture of ``alpha`` (see the module docstring): argmax per op choice (``zero``
    passed over) and top-k per input choice, or with ``threshold`` every candidate whose softmax
    weight / eq. 13 gate (:func:`option_weights`) reaches it (RMNAS fig. 4).

    ``inactive`` names choices the space asks but the supernet does not contain (their value has no
    effect on the model); they take their first candidate.
    """
    weights = {label: option_weights(a) for label, a in alpha.items()}
    return derive_from_weights(specs, weights, fixed, inactive, ALPHA_FILE, threshold)


class BatchCycle:
    """Shuffled batches of ``convs``, pass after pass, forever; :meth:`state_dict` is where it stands
    (the generator's state at the start of the current pass and the batches taken in it)."""

    def __init__(self, convs: Sequence[Any], signature: Any, batch_size: int, rng: np.random.Generator) -> None:
        self.convs, self.signature, self.batch_size, self.rng = convs, signature, batch_size, rng
        self._start_pass()

    def _start_pass(self) -> None:
        self.pass_state = copy.deepcopy(self.rng.bit_generator.state)
        self.taken = 0
        self._batches = iterate_batches(self.convs, self.signature, self.batch_size, True, self.rng)

    def __next__(self) -> Batch:
        for _ in range(2):
            for _, batch in self._batches:
                self.taken += 1
                return batch
            self._start_pass()
        raise NasmercError("strategy 'darts': no conversation to take architecture steps on")

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.pass_state, "taken": self.taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._start_pass()
        for _ in range(int(state["taken"])):
            next(self)


class DartsHook(TrainHook):
    """Takes an architecture step before every weight step and reports the weights every epoch."""

    def __init__(self, arch: ArchWeights, arch_batches: BatchCycle, config: DartsConfig) -> None:
        self.arch = arch
        self.batches = arch_batches
        self.config = config
        params = list(arch.parameters())
        if config.arch_optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.arch_lr, momentum=config.arch_momentum, weight_decay=config.arch_weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=config.arch_lr, betas=(0.5, 0.999),
                                              weight_decay=config.arch_weight_decay)
        self.history: list[dict[str, Any]] = []

    def before_step(self, trainer: Trainer, batch: Batch, epoch: int, step: int) -> None:
        if epoch < self.config.warmup_epochs:
            return
        val_batch = trainer.masked(next(self.batches), epoch)
        trainer.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.order == 2:
            self._second_order(trainer, batch, val_batch)
        else:
            loss, _, _ = trainer.loss(val_batch)
            grads = torch.autograd.grad(loss, list(self.arch.parameters()))
            for p, g in zip(self.arch.parameters(), grads):
                p.grad = g
        average_gradients(self.arch.parameters())  # under torchrun: the same alpha on every rank
        self.optimizer.step()

    def _second_order(self, trainer: Trainer, train_batch: Batch, val_batch: Batch) -> None:
        """Unrolled gradient (DARTS eq. 7) with the finite-difference Hessian-vector product (eq. 8)."""
        weights = [p for p in trainer.model.parameters() if p.requires_grad]
        alphas = list(self.arch.parameters())
        xi = self.config.unroll_lr or trainer.config.lr
        backup = [p.detach().clone() for p in weights]
        loss, _, _ = trainer.loss(train_batch)
        g_train = torch.autograd.grad(loss, weights, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(weights, g_train):
                if g is not None:
                    p.sub_(xi * g)
        loss, _, _ = trainer.loss(val_batch)
        grads = torch.autograd.grad(loss, alphas + weights, allow_unused=True)
        d_alpha = [g if g is not None else torch.zeros_like(a) for g, a in zip(grads[: len(alphas)], alphas)]
        d_w = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads[len(alphas):], weights)]
        norm = torch.sqrt(sum((g * g).sum() for g in d_w))
        eps = 0.01 / float(norm) if float(norm) > 0 else 0.0
        hvp = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, b, g in zip(weights, backup, d_w):
                    p.copy_(b + sign * eps * g)
            loss, _, _ = trainer.loss(train_batch)
            hvp.append(torch.autograd.grad(loss, alphas, allow_unused=True))
        with torch.no_grad():
            for p, b in zip(weights, backup):
                p.copy_(b)
        for a, da, gp, gm in zip(alphas, d_alpha, *hvp):
            correction = ((gp if gp is not None else 0) - (gm if gm is not None else 0)) / (2 * eps) if eps else 0
            a.grad = da - xi * correction

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        weights = self.arch.weights()
        self.history.append(weights)
        trainer.events.emit("choice_weights", epoch=epoch + 1, weights=weights)

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.arch.state_dict(), "optimizer": self.optimizer.state_dict(),
                "batches": self.batches.state_dict(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.arch.load_state_dict(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        self.history = list(state["history"])


class Darts(Strategy):
    """Differentiable search over every op and input choice of a space (see module docstring)."""

    name = "darts"
    Config = DartsConfig

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        require_fixed_values(space, fixed)

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg: DartsConfig = self.config
        evaluator = ctx.evaluator
        supernet = evaluator.supernet()
        generator = torch.Generator().manual_seed(ctx.seed)
        arch = ArchWeights(supernet, cfg.init_scale, generator, cfg.inputs).to(evaluator.device)
        sig = ctx.dataset.signature
        weight_part, arch_part = self.split(ctx.dataset, ctx.seed)
        hook = DartsHook(arch, BatchCycle(arch_part, sig, ctx.train.batch_size, np.random.default_rng(ctx.seed + 1)), cfg)
        alpha_path = Path(ctx.run_dir) / ALPHA_FILE

        def on_best(epoch: int, value: float) -> None:
            write_torch(alpha_path, arch.state())
            ctx.events.emit("checkpoint", epoch=epoch, path=ALPHA_FILE, metric=evaluator.metric, value=value)

        fit = evaluator.fit(supernet, hooks=[hook], on_best=on_best, train=weight_part)
        found = self.derive(ctx.space, ctx.run_dir, ctx.fixed)
        return SearchResult(
            arch=found,
            metric=evaluator.metric,
            best_value=fit.best_value,
            best_epoch=fit.best_epoch,
            supernet_parameters=count_parameters(supernet),
            derived_parameters=count_parameters(ctx.space.build(found)),
            extra={"final_weights": hook.history[-1] if hook.history else {}, "valid": fit.best_metrics,
                   "weight_conversations": len(weight_part), "arch_conversations": len(arch_part),
                   "arch_data": "valid" if cfg.weight_data == "whole" else "train"},
        )

    def split(self, dataset: ConversationDataset, seed: int) -> tuple[list[Conversation], list[Conversation]]:
        """The conversations of the weight steps and of the ``alpha`` steps: the whole training split and
        the validation split (``whole``), or the training split cut in two by ``seed`` (``half``,
        ``arch_fraction`` of it for ``alpha``)."""
        train = dataset.split("train")
        if self.config.weight_data == "whole":
            return list(train), list(dataset.split("valid"))
        return carve_validation(train, self.config.arch_fraction, seed)

    def derive(self, space: SearchSpace, run_dir: Path, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        path = Path(run_dir) / ALPHA_FILE
        if not path.exists():
            raise NasmercError(f"{path}: no architecture weights in this run folder (expected {ALPHA_FILE} "
                               "written by a DARTS search)")
        what = "the architecture weights of a DARTS search"
        alpha = read_torch(path, what)
        if not isinstance(alpha, Mapping) or not all(isinstance(v, torch.Tensor) for v in alpha.values()):
            raise NasmercError(f"{path}: not {what} (expected a mapping of choice label to tensor)")
        bad = next((label for label, v in alpha.items() if not torch.isfinite(v.float()).all()), None)
        if bad is not None:
            raise NasmercError(f"{path}: choice {bad!r} has NaN or inf weights (expected finite architecture weights)")
        threshold = self.config.threshold if self.config.derive == "threshold" else None
        return derive(alpha, space.choices(fixed), fixed, space.inactive(fixed), threshold)
