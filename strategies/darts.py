"""DARTS: differentiable architecture search by bilevel optimisation (Liu et al.), as RMNAS uses it.

Architecture weights ``alpha`` live here, one vector per :class:`~nasmerc.nas.choices.OpChoice`
(one entry per candidate) and per :class:`~nasmerc.nas.choices.InputChoice` (one per input), and are
attached to the supernet from outside as hooks: an op choice returns ``sum_i softmax(alpha)_i o_i(x)``
(RMNAS eq. 5), an input choice the softmax-weighted sum of its inputs. The training split is cut in
two, deterministically by seed: weights take AdamW steps on one half, and before every weight step
``alpha`` takes a step on a batch of the other half (RMNAS sec. "Search": two optimisers, SGD with
lr 5 for ``{alpha, beta, lambda}`` in the paper). First order by default; ``order=2`` uses the
unrolled objective with the finite-difference Hessian-vector product of DARTS eq. 7-8.

The discrete architecture is derived by argmax per op choice (a ``zero`` candidate is passed over,
as DARTS does with its ``none`` op, unless it is the only one) and top-k per input choice, from the
``alpha`` of the best validation epoch (saved as ``alpha.pt`` in the run folder, which ``nasmerc
export`` reads again). The softmax weights are emitted as ``choice_weights`` events every epoch.
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
from nasmerc.data.conversation import carve_validation
from nasmerc.errors import NasmercError
from nasmerc.io import read_torch, write_torch
from nasmerc import checks
from nasmerc.nas.choices import OpChoice, choice_modules, softmax_inputs
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
    virtual step ``unroll_lr`` (0: ``train.lr``); ``arch_fraction``: the share of the training split
    that ``alpha`` is trained on; ``warmup_epochs``: epochs of weight steps alone first;
    ``init_scale``: the spread of the initial ``alpha``."""

    arch_optimizer: Literal["sgd", "adam"] = "sgd"
    arch_lr: float = 5.0
    arch_momentum: float = 0.0
    arch_weight_decay: float = 0.0
    order: int = 1
    unroll_lr: float = 0.0
    arch_fraction: float = 0.5
    warmup_epochs: int = 0
    init_scale: float = 1e-3

    def __post_init__(self) -> None:
        where = "strategy 'darts'"
        if self.order not in (1, 2):
            raise NasmercError(f"{where}: order={self.order!r}: expected 1 or 2")
        checks.in_range(where, "arch_fraction", self.arch_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.greater_than_zero(where, arch_lr=self.arch_lr)
        checks.non_negative(where, arch_momentum=self.arch_momentum, arch_weight_decay=self.arch_weight_decay,
                            unroll_lr=self.unroll_lr, init_scale=self.init_scale)
        checks.at_least(where, 0, warmup_epochs=self.warmup_epochs)


def _softmax_mix(alpha: nn.Parameter):
    def op_hook(choice: OpChoice, *args: Any, **kwargs: Any) -> Any:
        w = torch.softmax(alpha, dim=0)
        return sum(w[i] * cand(*args, **kwargs) for i, cand in enumerate(choice.candidates.values()))

    return op_hook, softmax_inputs(alpha)


class ArchWeights(nn.Module):
    """``alpha`` for every op / input choice of a supernet, attached to it as softmax-mixing hooks."""

    def __init__(self, supernet: nn.Module, init_scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.alpha = nn.ParameterDict()
        self.candidates: dict[str, list[str]] = {}
        self._labels: dict[str, str] = {}
        for choice in choice_modules(supernet):
            n = len(choice.names) if isinstance(choice, OpChoice) else choice.n_candidates
            key = choice.label.replace(".", "/")
            self._labels[key] = choice.label
            self.alpha[key] = nn.Parameter(init_scale * torch.randn(n, generator=generator))
            self.candidates[choice.label] = list(choice.names)
            op_hook, input_hook = _softmax_mix(self.alpha[key])
            choice.attach(op_hook if isinstance(choice, OpChoice) else input_hook)
        if not self.alpha:
            raise NasmercError("the space has no op or input choice for DARTS to weigh: "
                               "use the fixed strategy or a population strategy")

    def weights(self) -> dict[str, dict[str, float]]:
        """``{label: {candidate: softmax weight}}``."""
        out = {}
        for key, a in self.alpha.items():
            label = self._labels[key]
            w = torch.softmax(a.detach().float().cpu(), 0).tolist()
            out[label] = dict(zip(self.candidates[label], w))
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {self._labels[k]: a.detach().cpu().clone() for k, a in self.alpha.items()}


def derive(alpha: Mapping[str, torch.Tensor], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any],
           inactive: Sequence[str] = ()) -> dict[str, Any]:
    """The discrete architecture: argmax per op choice (``zero`` passed over), top-k per input choice.

    ``inactive`` names choices the space asks but the supernet does not contain (their value has no
    effect on the model); they take their first candidate.
    """
    weights = {label: a.float().flatten().tolist() for label, a in alpha.items()}
    return derive_from_weights(specs, weights, fixed, inactive, ALPHA_FILE)


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
        arch = ArchWeights(supernet, cfg.init_scale, generator).to(evaluator.device)
        sig = ctx.dataset.signature
        weight_part, arch_part = carve_validation(ctx.dataset.split("train"), cfg.arch_fraction, ctx.seed)
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
                   "weight_conversations": len(weight_part), "arch_conversations": len(arch_part)},
        )

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
        return derive(alpha, space.choices(fixed), fixed, space.inactive(fixed))
