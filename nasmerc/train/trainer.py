"""The training loop shared by every space and strategy.

Each epoch goes over the training conversations in shuffled batches; every batch gets a fresh
missing-modality mask at the rate of the configured schedule (``nasmerc.data.missing``); the loss
is the task loss over real utterances plus the model's auxiliary losses times their weights. After
every epoch the model is validated on the validation split at fixed masks for each of
``valid_rates`` and the primary metric averaged over them selects the best epoch, whose weights are
kept (the test split is never used here). Strategies extend the loop through :class:`TrainHook`
(DARTS takes an architecture step before each weight step); training plug-ins
(``nasmerc.train.plugins``: a curriculum, self-paced learning) choose each epoch's conversations and
the task term of the weight step, whatever the model and strategy. Everything is seeded.

Two data paths give the batches (``train.data``). ``host``: each batch is padded on the host
(``nasmerc.data.batch.collate``), masked by the numpy generator and copied to the device, as the loop
always did. ``device``: every split is padded once into tensors on the device
(``nasmerc.data.resident``), batches are gathered there, training masks are drawn there by a seeded
``torch.Generator`` (``nasmerc.data.missing.mask_batch_torch``, the same distribution), evaluation
masks are stacked once per split and rate, and losses are masked sums (``nasmerc.train.losses``), so
a training epoch reads from the device once, at its end, and a validation pass once, at its end.
``auto`` takes ``device`` on CUDA and ``host`` on the CPU. The batch order is the numpy generator's
in both paths.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from nasmerc import checks, metrics
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.data.missing import (fixed_masks, make_schedule, mask_batch, mask_batch_torch, mask_generator,
                                  stack_masks)
from nasmerc.data.resident import ResidentCache
from nasmerc.errors import Diverged, NasmercError
from nasmerc.events import Events
from nasmerc.outputs import ModelOutput, fit_data_modules, lr_scale
from nasmerc.train import distributed
from nasmerc.train.checkpoint import Checkpoint, random_states, restore_random_states
from nasmerc.train.losses import flat_rows, task_loss
from nasmerc.train.plugins import make_plugins


MASKINGS = ("auto", "frame")
OPTIMIZERS = ("adamw", "adam")
PRECISIONS = ("auto", "bf16", "fp32")
DATA_PATHS = ("auto", "host", "device")
HOST_READ = "nasmerc.host_read"
"""The profiler label of the loop's deliberate reads from the device (one an epoch, one a validation pass)."""


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; ``--set train.KEY=VALUE`` reaches every field."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    missing: str = "random"
    valid_rates: tuple[float, ...] = (0.0, 0.35, 0.7)
    patience: int = 0
    eval_batch_size: int = 16
    mask_seed: int = 0
    plugins: tuple[str, ...] = ()
    plugin_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adamw"
    """``adamw`` (decoupled weight decay; RMNAS, ITEACH-Net) or ``adam`` (L2 weight decay; MFMB-Net)."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, with TF32 matmuls; fp32 on the CPU), ``bf16`` (autocast to
    bfloat16 on any device) or ``fp32``."""
    compile: bool = False
    """``torch.compile`` the model's forward pass (``--compile``); a compiler failure is a one-line error."""
    masking: str = "auto"
    """How a missing modality is dropped (``nasmerc.data.missing``): ``auto`` -- for each utterance of a
    conversation, or for a whole sample of utterance-level data; ``frame`` -- each modality's frames
    of utterance-level data independently (MFMB-Net's protocol)."""
    data: str = "auto"
    """Where batches are made (module docstring): ``host`` (padded and masked on the host every step),
    ``device`` (splits resident on the device, masks drawn there by a seeded torch generator, no host
    read per step) or ``auto`` (``device`` on CUDA, ``host`` on the CPU)."""

    def __post_init__(self) -> None:
        """Ranges, checked when the config is made (``--set train.lr=-1`` stops before any run folder)."""
        where = "train"
        checks.positive(where, epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        checks.at_least(where, 0, patience=self.patience)
        checks.greater_than_zero(where, lr=self.lr)
        checks.non_negative(where, weight_decay=self.weight_decay, grad_clip=self.grad_clip)
        make_schedule(self.missing)
        if self.optimizer not in OPTIMIZERS:
            raise NasmercError(f"train: optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise NasmercError(f"train: precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.masking not in MASKINGS:
            raise NasmercError(f"train: masking={self.masking!r}: expected one of {', '.join(MASKINGS)}")
        if self.data not in DATA_PATHS:
            raise NasmercError(f"train: data={self.data!r}: expected one of {', '.join(DATA_PATHS)}")
        if not self.valid_rates:
            raise NasmercError("train: valid_rates: expected at least one missing rate in [0, 1]")
        for rate in self.valid_rates:
            checks.in_range(where, "valid_rates", rate, 0.0, 1.0)


def check_training(config: TrainConfig, signature: DataSignature) -> None:
    """What a training config asks of the data, checked before any run folder exists."""
    if config.masking == "frame" and signature.level != "utterance":
        raise NasmercError("train: masking=frame: frame-level masking is for utterance-level data (MOSI / MOSEI "
                           "shaped); dialogue data drops whole utterances (masking=auto)")


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device
    without CUDA is a named error."""
    if device == "auto":  # the default: this machine's GPU when it has one
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NasmercError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        return torch.device(device)
    raise NasmercError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class TrainHook:
    """What a strategy may add to the loop. Every method does nothing by default.

    - :meth:`before_forward` is called with every batch just before the model sees it, in training and
      in validation (the router reads the batch's mask of real tokens here);
    - :meth:`before_step` before every weight step, with the masked training batch (DARTS takes its
      architecture step here);
    - :meth:`after_epoch` after every epoch's validation (both report their weights here).
    """

    def before_forward(self, trainer: "Trainer", batch: Batch) -> None:
        """Called with each batch (on the device, masked) before ``model(batch)``."""

    def before_step(self, trainer: "Trainer", batch: Batch, epoch: int, step: int) -> None:
        """Called before each weight step of epoch ``epoch`` (0-based), step ``step`` (0-based)."""

    def after_epoch(self, trainer: "Trainer", epoch: int) -> None:
        """Called after epoch ``epoch`` (0-based) is validated."""

    def state_dict(self) -> dict[str, Any]:
        """What the hook must get back to go on after a resume (saved with every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""


@dataclass
class Prediction:
    """Model outputs on real rows of a split at one missing rate."""

    outputs: np.ndarray   # [N, C] scores or [N] regression scores
    labels: np.ndarray    # [N]
    loss: float


@dataclass
class FitResult:
    best_value: float
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Trains one model on one dataset signature; see the module docstring."""

    def __init__(self, model: nn.Module, signature: DataSignature, config: TrainConfig, *,
                 device: torch.device | str = "cpu", seed: int = 0, events: Events | None = None,
                 parameters: Sequence[nn.Parameter] | None = None) -> None:
        self.model = model
        self.signature = signature
        self.config = config
        self.device = torch.device(device)
        self.events = events or Events()
        self.rng = seed_everything(seed)
        self.schedule = make_schedule(config.missing)
        self.metric = metrics.primary_metric(signature.task)
        self.model.to(self.device)
        params = list(parameters) if parameters is not None else [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(params, lr=config.lr * lr_scale(model), weight_decay=config.weight_decay)
        self.world = distributed.current()
        # under torchrun the batch order stays the run seed's on every rank and the masks are the rank's own
        self.mask_rng = np.random.default_rng([seed, self.world.rank]) if self.world.distributed else self.rng
        self.params = params
        distributed.broadcast_model(self.model)
        self.forward = torch.compile(self.model) if config.compile else self.model
        cuda = self.device.type == "cuda"
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
        if cuda and config.precision != "fp32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.utterance_level = signature.level == "utterance"
        self.resident = config.data == "device" or (config.data == "auto" and cuda)
        self.splits = ResidentCache(signature, self.device) if self.resident else None
        self.mask_generator = mask_generator(self.device, seed, self.world.rank) if self.resident else None
        self.current_rate = 0.0
        self.plugins = make_plugins(config.plugins, config.plugin_options, signature)
        self.hooks: list[TrainHook] = []

    # -- one batch -----------------------------------------------------------------------------
    def loss(self, batch: Batch, epoch: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], ModelOutput]:
        """Total loss of ``batch`` and each named term (``task`` and every auxiliary loss), the terms as
        detached tensors on the device (read by the host once per epoch).

        With ``epoch`` (a weight step of the training loop) a plug-in may replace the task term.
        """
        for hook in self.hooks:
            hook.before_forward(self, batch)
        with self.autocast():
            out: ModelOutput = self.run(batch)
        total = None
        if epoch is not None:
            for plugin in self.plugins:
                replaced = plugin.task_loss(batch, out, epoch)
                total = replaced if replaced is not None else total
        if total is None:
            total = task_loss(out.logits, batch, self.signature.task)
        terms = {"task": total.detach()}
        for name, value in out.aux_losses.items():
            total = total + out.aux_weights.get(name, 1.0) * value
            terms[name] = value.detach()
        return total, terms, out

    def run(self, batch: Batch) -> ModelOutput:
        """The model's forward pass on ``batch`` (compiled with ``train.compile``)."""
        if not self.config.compile:
            return self.model(batch)
        try:
            return self.forward(batch)
        except Exception as exc:
            if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NasmercError(f"--compile: torch.compile failed ({type(exc).__name__}: {first}); "
                               "run without --compile") from None

    def autocast(self) -> Any:
        """The forward pass's precision context: bf16 autocast (``precision``), else nothing."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def masked(self, batch: Batch, epoch: int) -> Batch:
        """``batch`` on the device with a fresh training mask at the schedule's rate (the rate from the
        numpy generator; the pattern from it on the host path, from the torch generator on the device
        path, where the batch is marked ``resident``: its losses read nothing back)."""
        self.current_rate = self.schedule.rate(epoch, self.config.epochs, self.mask_rng)
        frames = self.config.masking == "frame"
        if self.mask_generator is None:
            batch = mask_batch(batch, self.current_rate, self.mask_rng, self.utterance_level, frames=frames)
            return batch.to(self.device)
        batch = replace(batch.to(self.device), resident=True)
        return mask_batch_torch(batch, self.current_rate, self.mask_generator, self.utterance_level, frames=frames)

    def chunks(self, n: int) -> list[np.ndarray]:
        """An epoch's shuffled batches as indices into the ``n`` training conversations, drawn by the numpy
        generator in both data paths: all of them on one process, this rank's share under torchrun
        (``nasmerc.train.distributed``)."""
        size = self.config.batch_size
        order = self.rng.permutation(n)
        chunks = [order[i: i + size] for i in range(0, n, size)]
        if not self.world.distributed:
            return chunks
        steps = len(chunks) // self.world.size
        if steps < 1:
            raise NasmercError(f"torchrun: {len(chunks)} training batches for {self.world.size} ranks: expected at "
                               "least one batch per rank (lower train.batch_size or the number of processes)")
        return chunks[self.world.rank::self.world.size][:steps]

    def batches(self, convs: Sequence[Conversation]) -> tuple[Iterator[tuple[np.ndarray, Batch]], int]:
        """An epoch's training batches (:meth:`chunks`) and their count: collated on the host, or gathered
        from the training split resident on the device (``train.data``)."""
        chunks = self.chunks(len(convs))
        if self.splits is None or not convs:
            return ((idx, collate([convs[i] for i in idx], self.signature)) for idx in chunks), len(chunks)
        split, positions = self.splits.find(convs)
        picked = [positions[idx] for idx in chunks]
        order = split.upload(np.concatenate(picked))  # the epoch's order: one copy to the device
        ends = np.cumsum([len(p) for p in picked]).tolist()
        return ((idx, split.gather(pos, order[end - len(pos): end]))
                for idx, pos, end in zip(chunks, picked, ends)), len(chunks)

    def train_epoch(self, convs: Sequence[Conversation], epoch: int, hooks: Sequence[TrainHook] = ()) -> dict[str, float]:
        """One epoch of weight steps. Nothing is read back from the device inside it: the loss terms are
        summed there, with the first step whose loss is not finite, and reach the host once, at the end
        (a diverged epoch is refused then, naming that step, before any checkpoint of it is written);
        ``batch`` events carry the step counter only."""
        self.model.train()
        steps: list[dict[str, torch.Tensor]] = []  # every step's terms, on the device
        bad = torch.full((), -1, dtype=torch.long, device=self.device)  # the first step with a non-finite loss
        batches, n_batches = self.batches(convs)
        rates = []
        for step, (_, batch) in enumerate(batches):
            batch = self.masked(batch, epoch)
            rates.append(self.current_rate)
            for hook in hooks:
                hook.before_step(self, batch, epoch, step)
            self.model.train()
            total, terms, _ = self.loss(batch, epoch)
            terms["loss"] = total.detach()
            bad = torch.where((bad < 0) & ~torch.isfinite(terms["loss"]), torch.full_like(bad, step), bad)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            distributed.average_gradients(self.params)  # under torchrun (nasmerc.train.distributed)
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            steps.append(terms)
            self.events.emit("batch", epoch=epoch + 1, batch=step + 1, n_batches=n_batches)
        flat = [bad.double(), *(v.double() for terms in steps for v in terms.values())]
        with record_function(HOST_READ):
            host = torch.stack(flat).tolist()  # the one read of the epoch
        if host[0] >= 0:
            raise Diverged(f"training diverged: the loss is not finite from epoch {epoch + 1}, step "
                               f"{int(host[0]) + 1} (try a lower train.lr or train.grad_clip); the last checkpoint "
                               "and best-so-far files are kept")
        sums: dict[str, float] = {}
        values = iter(host[1:])
        for terms in steps:  # summed in step order, as floats, as before
            for k in terms:
                sums[k] = sums.get(k, 0.0) + next(values)
        means = {k: v / max(1, n_batches) for k, v in sums.items()}
        means["missing_rate"] = float(np.mean(rates)) if rates else 0.0
        return means

    # -- evaluation ------------------------------------------------------------------------------
    def eval_batches(self, convs: Sequence[Conversation], rate: float, seed: int) -> Iterator[tuple[int, Batch]]:
        """``convs`` in order, in batches of ``eval_batch_size`` on the device under the fixed masks of
        ``(rate, seed)``, each with its count of real rows (known on the host): collated and masked per
        batch on the host path; on the device path gathered from the resident split with the split's
        masks, stacked on the device once per rate and seed and kept."""
        size, frames = self.config.eval_batch_size, self.config.masking == "frame"
        if self.splits is None or not convs:
            masks = fixed_masks(convs, len(self.signature.modalities), rate, seed, self.utterance_level, frames=frames)
            for start in range(0, len(convs), size):
                idx = np.arange(start, min(start + size, len(convs)))
                batch = collate([convs[i] for i in idx], self.signature)
                n_rows = sum(len(convs[i]) for i in idx) if not self.utterance_level else len(idx)
                yield n_rows, batch.with_present(stack_masks([masks[i] for i in idx], batch)).to(self.device)
            return
        split, _ = self.splits.find(convs, exact=True)  # the masks depend on the order of the conversations
        present = split.fixed_present(rate, seed, self.utterance_level, frames)
        for start in range(0, len(split), size):
            idx = np.arange(start, min(start + size, len(split)))
            index = torch.arange(start, start + len(idx), device=split.device)  # made there, nothing copied
            yield split.rows(idx), split.gather_masked(idx, present, index)

    @torch.no_grad()
    def predict(self, convs: Sequence[Conversation], rate: float, mask_seed: int | None = None) -> Prediction:
        """Outputs on the real rows of ``convs`` under the fixed mask of ``(rate, mask_seed)``. The outputs
        are kept on the device, one row per padded row, and the real rows are selected once, at the end
        of the pass, when everything is read back. A plug-in whose ``prediction(batch, out)`` gives a
        tensor replaces the model's logits with it (in the outputs and their loss)."""
        self.model.eval()
        seed = self.config.mask_seed if mask_seed is None else mask_seed
        outs, labels, real, losses, counts = [], [], [], [], []  # kept on the device; read back once, at the end
        for n_rows, batch in self.eval_batches(convs, rate, seed):
            for hook in self.hooks:
                hook.before_forward(self, batch)
            with self.autocast():
                out: ModelOutput = self.run(batch)
            logits = out.logits
            for plugin in self.plugins:
                prediction = getattr(plugin, "prediction", None)
                given = prediction(batch, out) if prediction is not None else None
                logits = given if isinstance(given, torch.Tensor) else logits
            losses.append(task_loss(logits, batch, self.signature.task).detach())
            rows, target, keep = flat_rows(logits, batch)
            outs.append(rows.float())
            labels.append(target)
            real.append(keep)
            counts.append(n_rows)
        with record_function(HOST_READ):
            per_batch = torch.stack(losses).tolist() if losses else []
            loss = sum(value * count for value, count in zip(per_batch, counts)) / max(1, sum(counts))
            rows, target = torch.cat(outs), torch.cat(labels)
            if real and real[0] is not None:
                keep = torch.cat(real)
                rows, target = rows[keep], target[keep]
            return Prediction(rows.cpu().numpy(), target.cpu().numpy(), loss)

    def evaluate(self, convs: Sequence[Conversation], rate: float, mask_seed: int | None = None) -> dict[str, float]:
        """The task's metrics (and ``loss``) at one missing rate."""
        pred = self.predict(convs, rate, mask_seed)
        return {**score(self.signature, pred), "loss": pred.loss}

    def validate(self, convs: Sequence[Conversation]) -> dict[str, float]:
        """Metrics averaged over ``valid_rates``; the primary one selects the best epoch. With a single
        modality nothing can go missing, so every rate is rate 0 and it is validated once."""
        single = len(self.signature.modalities) == 1 and self.config.masking != "frame"
        rates = (0.0,) if single else self.config.valid_rates
        per_rate = [self.evaluate(convs, r) for r in rates]
        return {k: float(np.mean([m[k] for m in per_rate])) for k in per_rate[0]}

    # -- the loop -------------------------------------------------------------------------------
    def _restore(self, saved: dict[str, Any], hooks: Sequence[TrainHook]) -> None:
        """Put back the state a checkpoint holds (see :meth:`fit`)."""
        if len(saved["hooks"]) != len(hooks) or len(saved["plugins"]) != len(self.plugins):
            raise NasmercError("checkpoint: it was written by a training with other hooks or plug-ins; "
                               "remove it to restart that training from its first epoch")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        restore_random_states(self.rng, saved["random"], self.mask_rng, self.mask_generator)
        for hook, state in zip(hooks, saved["hooks"]):
            hook.load_state_dict(state)
        for plugin, state in zip(self.plugins, saved["plugins"]):
            plugin.load_state_dict(state)

    def fit(self, train: Sequence[Conversation], valid: Sequence[Conversation], hooks: Sequence[TrainHook] = (),
            on_best: Callable[[int, float], None] | None = None,
            stop: Callable[[int, float], bool] | None = None, checkpoint: Checkpoint | None = None) -> FitResult:
        """Train for ``epochs``; keep (and load back at the end) the weights of the best validation epoch.

        ``on_best(epoch, value)`` is called when an epoch (1-based) is the best so far; ``stop(epoch,
        value)`` after every epoch (0-based ``epoch``, its validation value): ``True`` ends the training
        there (a pruned candidate), as ``patience`` does. With ``checkpoint`` the loop's whole state is
        saved after every epoch, and a checkpoint already there is restored first: training goes on
        from the epoch after it exactly as if it had never stopped (``nasmerc.train.checkpoint``).
        """
        start = time.time()
        self.hooks = list(hooks)
        best_value: float | None = None
        best_epoch, best_metrics, best_state = 0, {}, None
        history: list[dict[str, Any]] = []
        first, ended = 0, False
        for plugin in self.plugins:
            plugin.start(train, self.config.epochs)
        valid = list(valid)
        if self.splits is not None:  # both splits on the device once, before the first epoch
            for split in (train, valid):
                if split:
                    self.splits.find(split, exact=True)
        if checkpoint is not None and checkpoint.exists():
            saved = checkpoint.load()
            self._restore(saved, hooks)
            first, ended, history = int(saved["epoch"]), bool(saved.get("ended")), list(saved["history"])
            best_value, best_epoch, best_metrics = saved["best_value"], int(saved["best_epoch"]), saved["best_metrics"]
            best_state = saved["best_state"]
            self.events.skip_to(int(saved["events_count"]))
        fit_data_modules(self.model, train)  # a PCA encoder, say, on the training split (a restored model is fitted)
        for epoch in range(first, self.config.epochs):
            if ended:
                break
            convs: Sequence[Conversation] = train
            for plugin in self.plugins:
                convs = plugin.conversations(epoch, convs)
            train_terms = self.train_epoch(convs, epoch, hooks)
            for plugin in self.plugins:
                train_terms.update(plugin.end_epoch(epoch))
            val = self.validate(valid)
            value = val[self.metric]
            if metrics.is_better(self.metric, value, best_value):
                best_value, best_epoch, best_metrics = value, epoch + 1, val
                best_state = copy.deepcopy(self.model.state_dict())
                if on_best is not None:
                    on_best(epoch + 1, value)
            for hook in hooks:
                hook.after_epoch(self, epoch)
            record = {
                "epoch": epoch + 1, "epochs": self.config.epochs, "train_loss": train_terms["loss"],
                "valid_loss": val["loss"], "valid": val, "metric": self.metric, "value": value,
                "best": best_value, "best_epoch": best_epoch, "missing_rate": train_terms["missing_rate"],
                "losses": {k: v for k, v in train_terms.items() if k not in ("loss", "missing_rate")},
                "elapsed": time.time() - start,
            }
            history.append(record)
            self.events.emit("epoch", **record)
            ended = bool(self.config.patience and epoch + 1 - best_epoch >= self.config.patience)
            ended = ended or bool(stop is not None and stop(epoch, value))
            if checkpoint is not None:
                checkpoint.save({
                    "epoch": epoch + 1, "ended": ended, "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "best_value": best_value, "best_epoch": best_epoch,
                    "best_metrics": best_metrics, "best_state": best_state, "history": history,
                    "random": random_states(self.rng, self.mask_rng, self.mask_generator),
                    "hooks": [h.state_dict() for h in hooks],
                    "plugins": [p.state_dict() for p in self.plugins]})
            if ended:
                break
        self.hooks = []
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return FitResult(float(best_value if best_value is not None else float("nan")), best_epoch, best_metrics,
                         history, time.time() - start)


def score(signature: DataSignature, pred: Prediction) -> dict[str, float]:
    """The task's metrics of a :class:`Prediction`."""
    if signature.task == "classification":
        return metrics.classification_metrics(pred.labels.astype(int), pred.outputs.argmax(-1),
                                              signature.n_classes, list(signature.classes))
    return metrics.regression_metrics(pred.labels, pred.outputs.reshape(-1))
