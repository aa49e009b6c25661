"""Router: input-dependent architecture search as in ITEACH-Net (sec. "ITEACH Encoder", eq. 8).

Every :class:`~nasmerc.nas.choices.OpChoice` of the supernet gets a small router, attached from
outside as a hook: a ``Linear(in_dim -> n_candidates)`` applied per token to the first tensor
argument ``x`` of the choice's call, ``w(x) = softmax(Router(x))`` (eq. 8), and the choice returns
``sum_k w_k(x) * o_k(...)`` (eq. 9), so different utterances may use different candidates while the
candidates' parameters are shared. ``in_dim`` is read from one probing forward pass.
:class:`~nasmerc.nas.choices.InputChoice` points (BM-NAS cell and step inputs) get *plain softmax
weights* ``softmax(beta)``, one per input, not per token: an input choice decides wiring, which a
fixed retrained model needs as one answer, and the inputs it mixes are not one ``x`` to route on.

Training follows the paper's setup: routers (and ``beta``) and the model weights are trained
*together on the same training loss* (no bilevel split), the weights by the trainer's AdamW at
``train.lr`` (paper 5e-4; the trainer gets ``parameters=`` the model weights only), the routers by
their own AdamW at ``router_lr`` (paper 5e-3). The router step uses the gradients of the trainer's
own backward pass: it is taken just before the next batch's forward (and, for an epoch's last
batch, after validation), which is the same order of updates as a joint step; the router gradients
are clipped at ``train.grad_clip`` like the weights'.

What is recorded: over the real tokens of the validation set (the trainer's validation pass, at
every ``train.valid_rates``), how often each candidate *led* (argmax of the router weights);
``{label: {candidate: share}}`` is emitted as a ``choice_weights`` event every epoch (input
choices show their softmax weights) and the shares of the best validation epoch go into the
result's ``extra["leading_shares"]``. A token is real when the choice's call carries a boolean mask
of the token shape (RMNAS' mixers and BM-NAS ops do), else when the batch mask matches, else every
token counts.

The result (``export``): by default a *routed* architecture, as the paper's NAS encoder keeps its
routers: each op choice becomes ``{routed: [kept candidates], width: D}`` -- the candidates whose
share is at least ``prune_below`` (``--prune-below 0.05`` drops those that never lead), weighed per
token by a fresh router when ``space.build`` makes the fixed model
(:class:`~nasmerc.nas.choices.RoutedOp`), so ``retrain`` trains routers and kept candidates from
scratch together. A choice with one kept candidate is that candidate. ``export=argmax`` gives one
candidate per op choice instead: the most-leading one (``zero`` passed over as DARTS does, unless it
is the only one). Input choices take the top-k ``beta`` either way. The routers of the best epoch
are kept in ``routers.pt`` (the :class:`Routers` state dict, ``weights_only`` loadable); the shares
go into ``router.json`` (with the input weights and the routers' widths; ``nasmerc export`` derives
from it again), ``search.json`` and the ``search`` section of ``arch.yaml`` (``leading_shares``).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import iterate_batches
from nasmerc.errors import NasmercError
from nasmerc.io import write_json, write_torch
from nasmerc.nas.choices import InputChoice, OpChoice, choice_modules, first_tensor, route, softmax_inputs
from nasmerc.nas.specs import ChoiceSpec, OpSpec
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy, require_fixed_values
from nasmerc.outputs import count_parameters
from nasmerc.train.distributed import average_gradients
from nasmerc.train.trainer import Trainer, TrainHook

ROUTERS_FILE = "routers.pt"
WEIGHTS_FILE = "router.json"


@dataclass(frozen=True)
class RouterConfig:
    """``router``: ``linear`` (the paper's NAS encoder; ``identity`` is its plain Transformer and needs
    no search); ``router_lr`` / ``router_weight_decay``: the routers' AdamW (paper: AdamW, 5e-3);
    ``prune_below``: candidates leading on fewer tokens than this share are dropped from
    ``kept_candidates``; ``init_scale``: the initial spread of the input choices' ``beta``;
    ``export``: ``routed`` (kept candidates and a router per op choice) or ``argmax``."""

    router: str = "linear"
    router_lr: float = 5e-3
    router_weight_decay: float = 1e-2
    prune_below: float = 0.0
    init_scale: float = 1e-3
    export: str = "routed"

    def __post_init__(self) -> None:
        where = "strategy 'router'"
        if self.router != "linear":
            raise NasmercError(f"{where}: router={self.router!r}: expected 'linear' "
                               "(an identity router is a fixed model: use the fixed strategy)")
        checks.in_range(where, "prune_below", self.prune_below, 0.0, 1.0, high_open=True)
        checks.greater_than_zero(where, router_lr=self.router_lr)
        checks.non_negative(where, router_weight_decay=self.router_weight_decay, init_scale=self.init_scale)
        checks.one_of(where, "export", self.export, ("routed", "argmax"))


def _key(label: str) -> str:
    return label.replace(".", "/")


class Routers(nn.Module):
    """The strategy's state: a router per op choice, ``beta`` per input choice, and lead counts.

    ``in_dims`` maps each op choice's label to the width of its first tensor argument.
    """

    def __init__(self, supernet: nn.Module, in_dims: Mapping[str, int], init_scale: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.routers = nn.ModuleDict()
        self.beta = nn.ParameterDict()
        self.candidates: dict[str, list[str]] = {}
        self.kinds: dict[str, str] = {}
        self.counts: dict[str, Tensor] = {}
        self.batch_mask: Tensor | None = None
        for choice in choice_modules(supernet):
            label = choice.label
            self.candidates[label] = list(choice.names)
            if isinstance(choice, OpChoice):
                if label not in in_dims:
                    raise NasmercError(f"strategy 'router': choice {label!r} was not reached by a forward pass, "
                                       "so its router's input width is unknown")
                router = nn.Linear(in_dims[label], len(choice.names))
                with torch.no_grad():  # seeded from the strategy's generator, not the global RNG
                    bound = 1.0 / in_dims[label] ** 0.5
                    router.weight.uniform_(-bound, bound, generator=generator)
                    router.bias.uniform_(-bound, bound, generator=generator)
                self.routers[_key(label)] = router
                self.kinds[label] = "op"
                choice.attach(self._op_hook(label, router))
            else:
                self.beta[_key(label)] = nn.Parameter(init_scale * torch.randn(choice.n_candidates, generator=generator))
                self.kinds[label] = "input"
                choice.attach(softmax_inputs(self.beta[_key(label)]))
        if not self.kinds:
            raise NasmercError("the space has no op or input choice for the router strategy: "
                               "use the fixed strategy or a population strategy")
        self.reset_counts()

    # -- hooks ---------------------------------------------------------------------------------
    def _op_hook(self, label: str, router: nn.Linear):
        def hook(choice: OpChoice, *args: Any, **kwargs: Any) -> Any:
            out, w = route(router, list(choice.candidates.values()), label, args, kwargs)  # eqs. 8-9
            if not choice.training:
                self._count(label, w, first_tensor(args, kwargs), args[1:], kwargs)
            return out

        return hook

    # -- lead counts ---------------------------------------------------------------------------
    def _real(self, x: Tensor, rest: Sequence[Any], kwargs: Mapping[str, Any]) -> Tensor:
        shape = x.shape[:-1]
        for value in list(rest) + list(kwargs.values()):
            if isinstance(value, Tensor) and value.dtype == torch.bool and value.shape == shape:
                return value
        if self.batch_mask is not None and self.batch_mask.shape == shape:
            return self.batch_mask.bool()
        return torch.ones(shape, dtype=torch.bool, device=x.device)

    @torch.no_grad()
    def _count(self, label: str, w: Tensor, x: Tensor, rest: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        lead = w.argmax(dim=-1)[self._real(x, rest, kwargs)]
        self.counts[label] += torch.bincount(lead.flatten().cpu(), minlength=w.shape[-1]).double()

    def reset_counts(self) -> None:
        self.counts = {label: torch.zeros(len(self.candidates[label]), dtype=torch.float64)
                       for label, kind in self.kinds.items() if kind == "op"}

    def shares(self) -> dict[str, dict[str, float]]:
        """``{op label: {candidate: share of counted tokens it led}}``; uniform if none was counted."""
        out = {}
        for label, c in self.counts.items():
            total = float(c.sum())
            vals = (c / total).tolist() if total > 0 else [1.0 / len(c)] * len(c)
            out[label] = dict(zip(self.candidates[label], vals))
        return out

    def input_weights(self) -> dict[str, dict[str, float]]:
        """``{input label: {input name: softmax(beta)}}``."""
        return {label: dict(zip(self.candidates[label], torch.softmax(self.beta[_key(label)].detach().float().cpu(),
                                                                       0).tolist()))
                for label, kind in self.kinds.items() if kind == "input"}

    def router_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


def probe_in_dims(supernet: nn.Module, batch: Any) -> dict[str, int]:
    """The width of each op choice's first tensor argument, from one uniform forward pass."""
    dims: dict[str, int] = {}

    def op_probe(choice: OpChoice, *args: Any, **kwargs: Any) -> Any:
        x = first_tensor(args, kwargs)
        if x is not None:
            dims[choice.label] = int(x.shape[-1])
        return torch.stack([c(*args, **kwargs) for c in choice.candidates.values()]).mean(0)

    def input_probe(choice: InputChoice, inputs: Sequence[Tensor]) -> Tensor:
        return torch.stack(list(inputs)).mean(0)

    for choice in choice_modules(supernet):
        choice.attach(op_probe if isinstance(choice, OpChoice) else input_probe)
    was_training = supernet.training
    supernet.eval()
    with torch.no_grad():
        supernet(batch)
    supernet.train(was_training)
    for choice in choice_modules(supernet):
        choice.attach(None)
    return dims


class RouterHook(TrainHook):
    """Steps the routers with the gradients of the trainer's backward pass; reports shares per epoch;
    hands the routers each batch's mask of real utterances before the model sees the batch."""

    def __init__(self, routers: Routers, lr: float, weight_decay: float) -> None:
        self.routers = routers
        self.optimizer = torch.optim.AdamW(routers.router_parameters(), lr=lr, weight_decay=weight_decay)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        """The routers, shares and input weights of the best validation epoch so far."""

    def step(self, grad_clip: float) -> None:
        """One router step if the last backward pass left gradients; then clear them."""
        params = [p for p in self.routers.router_parameters() if p.grad is not None]
        if not params:
            return
        average_gradients(params)  # under torchrun: the same routers on every rank
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(params, grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def before_forward(self, trainer: Trainer, batch: Any) -> None:
        self.routers.batch_mask = getattr(batch, "mask", None)

    def before_step(self, trainer: Trainer, batch: Any, epoch: int, step: int) -> None:
        if step == 0:
            self.routers.reset_counts()  # counts are of this epoch's validation pass only
        self.step(trainer.config.grad_clip)

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        shares = self.routers.shares()
        record = {"leading_shares": shares, "input_weights": self.routers.input_weights()}
        self.history.append(record)
        trainer.events.emit("choice_weights", epoch=epoch + 1, weights={**shares, **record["input_weights"]})
        self.step(trainer.config.grad_clip)  # the epoch's last batch, after its validation
        self.routers.reset_counts()

    def state_dict(self) -> dict[str, Any]:
        return {"routers": self.routers.state_dict(), "optimizer": self.optimizer.state_dict(),
                "history": self.history, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.routers.load_state_dict(state["routers"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.best = list(state["history"]), dict(state["best"])


def derive(shares: Mapping[str, Mapping[str, float]], input_weights: Mapping[str, Mapping[str, float]],
           specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any], prune_below: float, inactive: Sequence[str] = (),
           in_dims: Mapping[str, int] | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The architecture and the kept candidates per op choice (see module docstring): with
    ``in_dims`` (the routers' input widths) op choices with several kept candidates are routed,
    without it each takes its most-leading candidate. ``inactive`` choices (asked, but not in the
    supernet) take their first candidate."""
    arch: dict[str, Any] = {}
    kept: dict[str, list[str]] = {}
    for spec in specs:
        if not spec.in_supernet:
            arch[spec.label] = fixed[spec.label]
            continue
        if spec.label in inactive:
            arch[spec.label] = spec.first()
            continue
        op = isinstance(spec, OpSpec)  # op choices have routers (shares per candidate), input choices beta
        table = shares if op else input_weights
        if spec.label not in table:
            raise NasmercError(f"strategy 'router': no weights for choice {spec.label!r}; was the search run "
                               "on this space?")
        w = table[spec.label]
        names = spec.option_names
        if len(w) != len(names) or set(w) != set(names):
            raise NasmercError(f"strategy 'router': choice {spec.label!r} has weights for {list(w)}, "
                               f"expected {names}")
        choice = spec.derive([float(w[n]) for n in names])  # ties keep the space's order
        if op:
            kept[spec.label] = [n for n in names if float(w[n]) >= prune_below or n == choice]
            routed = in_dims is not None and len(kept[spec.label]) > 1
            choice = {"routed": kept[spec.label], "width": int(in_dims[spec.label])} if routed else choice
        arch[spec.label] = choice
    return arch, kept


class Router(Strategy):
    """Input-dependent search with per-token routers (see module docstring)."""

    name = "router"
    Config = RouterConfig
    shortcuts = ("prune_below",)

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        require_fixed_values(space, fixed)

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg: RouterConfig = self.config
        evaluator = ctx.evaluator
        supernet = evaluator.supernet().to(evaluator.device)
        sig = ctx.dataset.signature
        train = ctx.dataset.split("train")
        if not train:
            raise NasmercError("strategy 'router': the training split is empty")
        _, first = next(iter(iterate_batches(train[: ctx.train.batch_size], sig, ctx.train.batch_size)))
        in_dims = probe_in_dims(supernet, first.to(evaluator.device))
        routers = Routers(supernet, in_dims, cfg.init_scale, torch.Generator().manual_seed(ctx.seed)).to(evaluator.device)
        weights = [p for p in supernet.parameters() if p.requires_grad]
        hook = RouterHook(routers, cfg.router_lr, cfg.router_weight_decay)
        path = Path(ctx.run_dir) / ROUTERS_FILE

        def on_best(epoch: int, value: float) -> None:
            # Called after the epoch's validation pass, before the hook's after_epoch: the counts and
            # routers are exactly those that were validated. router.json is written at once, so an
            # interrupted search can be exported.
            hook.best.update(state=copy.deepcopy(routers.state_dict()), shares=routers.shares(),
                             input_weights=routers.input_weights())
            write_torch(path, {k: v.detach().cpu() for k, v in routers.state_dict().items()})
            write_json(Path(ctx.run_dir) / WEIGHTS_FILE, {"leading_shares": hook.best["shares"],
                                                          "input_weights": hook.best["input_weights"],
                                                          "router_in_dims": in_dims})
            ctx.events.emit("checkpoint", epoch=epoch, path=ROUTERS_FILE, metric=evaluator.metric, value=value)

        fit = evaluator.fit(supernet, hooks=[hook], on_best=on_best, parameters=weights)
        best = hook.best  # on resume, as the checkpoint had it
        if not best:
            raise NasmercError("strategy 'router': no validation epoch finished, so there is no architecture")
        routers.load_state_dict(best["state"])
        record = {"leading_shares": best["shares"], "input_weights": best["input_weights"], "router_in_dims": in_dims}
        found = self.derive(ctx.space, ctx.run_dir, ctx.fixed)
        _, kept = derive(best["shares"], best["input_weights"], ctx.space.choices(ctx.fixed), ctx.fixed,
                         cfg.prune_below, ctx.space.inactive(ctx.fixed))
        return SearchResult(
            arch=found,
            metric=evaluator.metric,
            best_value=fit.best_value,
            best_epoch=fit.best_epoch,
            supernet_parameters=count_parameters(supernet),
            derived_parameters=count_parameters(ctx.space.build(found)),
            extra={**record, "kept_candidates": kept, "prune_below": cfg.prune_below, "routers_file": ROUTERS_FILE,
                   "router_parameters": count_parameters(routers), "valid": fit.best_metrics},
            summary={"leading_shares": best["shares"]},
        )


    def derive(self, space: SearchSpace, run_dir: Path, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        """From the shares, input weights and router widths the search wrote to ``router.json``
        (``None`` when there is none: export keeps the saved ``arch.yaml``)."""
        path = Path(run_dir) / WEIGHTS_FILE
        if not path.exists():
            return None
        what = "the router shares of a router search: JSON with leading_shares, input_weights, router_in_dims"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NasmercError(f"{path}: not {what} ({str(exc).splitlines()[0]})") from None
        tables = {"leading_shares": data.get("leading_shares") if isinstance(data, dict) else None,
                  "input_weights": data.get("input_weights", {}) if isinstance(data, dict) else None}
        for key, table in tables.items():
            if not isinstance(table, dict) or not all(
                    isinstance(w, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                and math.isfinite(x) for x in w.values()) for w in table.values()):
                raise NasmercError(f"{path}: {key!r}: expected a mapping of choice label to {{candidate: finite "
                                   f"number}} ({what})")
        routed = self.config.export == "routed"
        dims = data.get("router_in_dims") if routed else {}
        if not isinstance(dims, dict) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                 for d in dims.values()):
            raise NasmercError(f"{path}: 'router_in_dims': expected a mapping of choice label to a width >= 1 ({what})")
        missing = [label for label in data["leading_shares"] if routed and label not in dims]
        if missing:
            raise NasmercError(f"{path}: 'router_in_dims' has no width for choice {missing[0]!r} ({what})")
        arch, _ = derive(data["leading_shares"], data.get("input_weights", {}), space.choices(fixed), fixed,
                         float(self.config.prune_below), space.inactive(fixed),
                         data["router_in_dims"] if routed else None)
        return arch
