"""NNI's one-shot strategies, trained by nasmerc's steps: the Lightning module NNI wraps, and the run.

NNI's one-shot strategies (``DARTS``, ``GumbelDARTS``, ``Proxyless``, ``RandomOneShot``, ``ENAS``)
mutate the model space into their supernet and wrap the evaluator's Lightning module in theirs, which
calls its ``training_step`` for the weight steps and, for DARTS and its kin, for the architecture steps
too. :class:`NasmercTask` is that module, written with nasmerc's :class:`~nasmerc.train.trainer.Trainer`:

- ``training_step``: ``Trainer.masked`` (a fresh missing-modality mask at the training schedule's rate),
  then ``Trainer.loss`` (the task loss, or a plug-in's, plus the model's weighted auxiliary losses; a
  loss that is not finite stops the run as nasmerc's trainer does);
- ``configure_optimizers``: the trainer's AdamW (NNI takes its architecture weights out of it);
  ``configure_gradient_clipping``: nasmerc's norm clipping at ``train.grad_clip``;
- ``validation_step`` (ENAS' reward): the primary metric of an architecture batch;
- after every epoch: the architecture NNI exports then is put on the supernet's sampling modules and
  validated by ``Trainer.validate`` (the primary metric averaged over ``train.valid_rates`` on the
  validation split); the export of the best epoch is kept in ``nni.json``, and the epoch is reported
  as every nasmerc training reports it (``epoch``, ``choice_weights`` and ``checkpoint`` events).

The data are nasmerc's batches (``nasmerc.data.batch``), one shuffled pass per epoch, handed to Lightning
in a wrapper it does not open (it would move them to the device before they are masked).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from nasmerc import metrics
from nasmerc.data.batch import Batch, iterate_batches
from nasmerc.data.conversation import Conversation, DataSignature, carve_validation
from nasmerc.errors import NasmercError
from nasmerc.io import write_json
from nasmerc.nas.nni_format import from_nni
from nasmerc.nas.strategy import SearchContext, SearchResult
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import select_real
from nasmerc.train.trainer import Prediction, Trainer, score
from strategies.nni import NNI_FILE
from strategies.nni.space import NasmercModelSpace, quiet, weights_by_name

with quiet():
    from nni.nas.evaluator.pytorch import Lightning, LightningModule
    from nni.nas.evaluator.pytorch import Trainer as LightningTrainer
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace

if TYPE_CHECKING:
    from strategies.nni import OneShot


class Carried:
    """One nasmerc batch and its role (``weights`` or ``arch``), opaque to Lightning (not a sequence,
    a mapping or a dataclass, so Lightning does not open it).

    NNI 3.0's ENAS unpacks every batch as ``batch, mode = batch_packed`` (the form its Lightning 1.x
    loader gave; under Lightning 2 its loader hands over the bare batch), so a ``Carried`` unpacks as
    itself and ``"train"`` (a weight batch) or ``"val"`` (an architecture batch)."""

    __slots__ = ("batch", "role")

    def __init__(self, batch: Batch, role: str) -> None:
        self.batch, self.role = batch, role

    def __len__(self) -> int:
        return 2

    def __iter__(self):
        return iter((self, "train" if self.role == "weights" else "val"))


class Batches:
    """Shuffled batches of the conversations ``source()`` gives, one pass per iteration (an epoch)."""

    def __init__(self, source: Callable[[], Sequence[Conversation]], signature: DataSignature, batch_size: int,
                 rng: np.random.Generator, role: str) -> None:
        self.source, self.signature, self.batch_size, self.rng, self.role = source, signature, batch_size, rng, role

    def __len__(self) -> int:
        return max(1, -(-len(self.source()) // self.batch_size))

    def __iter__(self):
        for _, batch in iterate_batches(self.source(), self.signature, self.batch_size, True, self.rng):
            yield Carried(batch, self.role)


class NasmercTask(LightningModule):
    """The Lightning module of a one-shot search (see the module docstring)."""

    def __init__(self, ctx: SearchContext, strategy: str, weight_part: Sequence[Conversation]) -> None:
        super().__init__()
        self.ctx, self.strategy_name, self.weight_part = ctx, strategy, list(weight_part)
        self.nasmerc: Trainer | None = None
        self.metric = metrics.primary_metric(ctx.dataset.signature.task)
        self.best_value: float | None = None
        self.best_epoch, self.best_metrics, self.best_sample = 0, {}, None
        self.history: list[dict[str, Any]] = []
        self.last_weights: dict[str, dict[str, float]] = {}
        self.epoch_seconds: list[float] = []
        self._sums: dict[str, float] = {}
        self._steps, self._rates = 0, []
        self._start = self._epoch_start = time.time()

    # -- what NNI's module calls ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.nasmerc is None:
            self.nasmerc = Trainer(self.model, self.ctx.dataset.signature, self.ctx.train, device=self.ctx.device,
                                   seed=self.ctx.seed, events=self.ctx.events)
            for plugin in self.nasmerc.plugins:
                plugin.start(self.weight_part, self.ctx.train.epochs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.trainer_().optimizer

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None,
                                    gradient_clip_algorithm: Any = None) -> None:
        if self.ctx.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.ctx.train.grad_clip)

    def training_step(self, carried: Carried, batch_idx: int) -> torch.Tensor:
        trainer, epoch = self.trainer_(), self.trainer.current_epoch
        batch = trainer.masked(carried.batch, epoch)
        self.model.train()
        weights = carried.role == "weights"
        total, terms, _ = trainer.loss(batch, epoch if weights else None)
        if weights:
            loss = float(total.detach())
            if not np.isfinite(loss):
                raise NasmercError(f"training diverged: the loss is {loss} at epoch {epoch + 1}, step {self._steps + 1} "
                                   "(try a lower train.lr or train.grad_clip)")
            self._steps += 1
            self._rates.append(trainer.current_rate)
            for k, v in {**terms, "loss": loss}.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
            self.ctx.events.emit("batch", epoch=epoch + 1, batch=self._steps, n_batches=self.n_weight_batches(),
                                 loss=loss)
        return total

    def validation_step(self, carried: Carried, batch_idx: int) -> None:
        """ENAS' reward: the primary metric of one architecture batch (masked at the schedule's rate)."""
        trainer = self.trainer_()
        batch = trainer.masked(carried.batch, self.trainer.current_epoch)
        with torch.no_grad():
            self.model.eval()
            out = self.model(batch)
        rows, target = select_real(out.logits, batch)
        value = score(self.ctx.dataset.signature, Prediction(rows.float().cpu().numpy(), target.cpu().numpy(), 0.0))
        reward = value[self.metric] if metrics.HIGHER_IS_BETTER[self.metric] else -value[self.metric]
        self.log("reward", float(reward), on_step=True, batch_size=int(batch.size))

    def on_train_epoch_start(self) -> None:
        self._sums, self._steps, self._rates, self._epoch_start = {}, 0, [], time.time()

    def on_train_epoch_end(self) -> None:
        trainer, epoch, outer = self.trainer_(), self.trainer.current_epoch, self.trainer.lightning_module
        with quiet():
            sample = dict(outer.export())
            try:
                self.last_weights = weights_by_name(outer.export_probs(), self.model.specs)
            except (NotImplementedError, AttributeError):
                self.last_weights = {}
            for module in outer.supernet_modules():  # validate the exported path of a sampling supernet
                module.resample(memo=dict(sample))
        terms = {k: v / max(1, self._steps) for k, v in self._sums.items()}
        for plugin in trainer.plugins:
            terms.update(plugin.end_epoch(epoch))
        val = trainer.validate(self.ctx.dataset.split("valid"))
        value = val[self.metric]
        if metrics.is_better(self.metric, value, self.best_value):
            self.best_value, self.best_epoch, self.best_metrics, self.best_sample = value, epoch + 1, val, sample
            write_json(Path(self.ctx.run_dir) / NNI_FILE, {"strategy": self.strategy_name, "epoch": epoch + 1,
                                                          "metric": self.metric, "value": value, "sample": sample})
            self.ctx.events.emit("checkpoint", epoch=epoch + 1, path=NNI_FILE, metric=self.metric, value=value)
        if self.last_weights:
            self.ctx.events.emit("choice_weights", epoch=epoch + 1, weights=self.last_weights)
        self.epoch_seconds.append(time.time() - self._epoch_start)
        record = {"epoch": epoch + 1, "epochs": self.ctx.train.epochs, "train_loss": terms.get("loss", float("nan")),
                  "valid_loss": val["loss"], "valid": val, "metric": self.metric, "value": value,
                  "best": self.best_value, "best_epoch": self.best_epoch,
                  "missing_rate": float(np.mean(self._rates)) if self._rates else 0.0,
                  "losses": {k: v for k, v in terms.items() if k != "loss"}, "elapsed": time.time() - self._start}
        self.history.append(record)
        self.ctx.events.emit("epoch", **record)
        patience = self.ctx.train.patience
        if patience and epoch + 1 - self.best_epoch >= patience:
            self.trainer.should_stop = True

    # -- helpers -------------------------------------------------------------------------------------
    def trainer_(self) -> Trainer:
        if self.nasmerc is None:
            raise RuntimeError("NasmercTask: setup() has not run")
        return self.nasmerc

    def n_weight_batches(self) -> int:
        return max(1, -(-len(self.weight_part) // self.ctx.train.batch_size))

    def conversations(self) -> Sequence[Conversation]:
        """This epoch's weight-step conversations (a curriculum plug-in chooses them)."""
        convs: Sequence[Conversation] = self.weight_part
        if self.nasmerc is not None and self._trainer is not None:
            for plugin in self.nasmerc.plugins:
                convs = plugin.conversations(self.trainer.current_epoch, convs)
        return convs


def lightning_trainer(ctx: SearchContext, automatic: bool) -> Any:
    """NNI's traced Lightning trainer for ``train.epochs`` epochs on the run's device, silent."""
    device = torch.device(ctx.device)
    accelerator, devices = ("gpu", [device.index or 0]) if device.type == "cuda" else ("cpu", 1)
    return LightningTrainer(max_epochs=ctx.train.epochs, accelerator=accelerator, devices=devices, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0 if automatic else None,
                            gradient_clip_val=(ctx.train.grad_clip or None) if automatic else None,
                            default_root_dir=str(ctx.run_dir))


def search_one_shot(strategy: "OneShot", ctx: SearchContext) -> SearchResult:
    """Run ``strategy``'s NNI one-shot search of ``ctx.space`` (see the module docstring)."""
    sig, cfg = ctx.dataset.signature, strategy.config
    train = ctx.dataset.split("train")
    fraction = getattr(cfg, "arch_fraction", None)
    weight_part, arch_part = carve_validation(train, fraction, ctx.seed) if fraction else (list(train), [])
    task = NasmercTask(ctx, strategy.name, weight_part)
    weights = Batches(task.conversations, sig, ctx.train.batch_size, np.random.default_rng(ctx.seed), "weights")
    arch = Batches(lambda: arch_part, sig, ctx.train.batch_size, np.random.default_rng(ctx.seed + 1), "arch")
    with quiet():
        torch.manual_seed(ctx.seed)  # the supernet's initial weights come from the run seed, as in nasmerc's DARTS
        ms = NasmercModelSpace(ctx.space, dict(ctx.fixed))
        supernet_parameters = count_parameters(ms)
        nni_strategy = strategy.nni_strategy(ctx)
        automatic = not arch_part  # RandomOneShot: Lightning's own optimisation loop, no architecture data
        evaluator = Lightning(task, lightning_trainer(ctx, automatic), train_dataloaders=weights,
                              val_dataloaders=arch if arch_part else weights)
        try:
            nni_strategy.initialize(RawFormatModelSpace.from_model(ms, evaluator), SequentialExecutionEngine())
            nni_strategy.run()
        except ValueError as exc:  # NNI's Proxyless mixes only ops called with positional arguments
            if "kwargs is not supported" not in str(exc):
                raise
            raise NasmercError(f"strategy {strategy.name!r}: space {ctx.space.name!r} calls its op choices with "
                               f"keyword arguments, which NNI's {type(nni_strategy).__name__} does not support "
                               "(use nni:darts or nni:gumbel_darts)") from None
    if task.best_sample is None or task.best_value is None or not np.isfinite(task.best_value):
        raise NasmercError(f"strategy {strategy.name!r}: no epoch gave a finite validation {task.metric}")
    found = from_nni({**ctx.fixed, **task.best_sample}, ctx.space.choices(ctx.fixed), ctx.space.inactive(ctx.fixed),
                     source=f"the export of NNI's {type(nni_strategy).__name__}")
    return SearchResult(
        arch=found, metric=task.metric, best_value=float(task.best_value), best_epoch=task.best_epoch,
        supernet_parameters=supernet_parameters, derived_parameters=count_parameters(ctx.space.build(found)),
        extra={"nni_strategy": type(nni_strategy).__name__, "nni_sample": json.loads(json.dumps(task.best_sample)),
               "final_weights": task.last_weights, "valid": task.best_metrics, "epoch_seconds": task.epoch_seconds,
               "weight_conversations": len(weight_part), "arch_conversations": len(arch_part)},
    )
