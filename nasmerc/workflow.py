"""``search``, ``export`` and ``retrain``: the steps a user runs, each writing one run folder.

Each function takes plain keyword arguments (``cli.py`` turns flags into them once) and returns the
run folder. ``--set`` keys go to one section each: ``train.KEY`` (the trainer), ``strategy.KEY``,
``data.KEY`` (the dataset), ``plugin.NAME.KEY`` (a training plug-in, kept in the trainer's
``plugin_options``) and anything else to the space's config. A space with nothing to search takes the
``fixed`` strategy by default.

Every value is resolved into one :class:`~nasmerc.spec.RunSpec` and checked (the configs check
themselves when they are made) before :func:`~nasmerc.runs.open_run` makes the run folder; the
record is then what ``config.yaml``, ``arch.yaml`` and ``model.pt`` carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml

from nasmerc.config import apply_overrides, load_yaml, parse_assignments
from nasmerc.data.conversation import ConversationDataset, DataSignature
from nasmerc.data.missing import single_modality_note
from nasmerc.errors import NasmercError
from nasmerc.events import EventSink
from nasmerc.io import write_json, write_torch
from nasmerc.nas.choices import named_arch
from nasmerc.nas import nni_format
from nasmerc.nas.evaluator import Evaluator
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, Strategy, require_something_to_search
from nasmerc.outputs import count_parameters
from nasmerc.registry import create_dataset, get_search_space, get_strategy
from nasmerc.protocols import get_protocol
from nasmerc.runs import (ARCH_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, SEARCH_FILE, ArchFile, new_run_dir, open_run,
                          holder, read_yaml, run_status)
from nasmerc.spec import RunSpec
from nasmerc.train import distributed
from nasmerc.train.plugins import make_plugins
from nasmerc.train.trainer import TrainConfig, check_training, resolve_device

SECTIONS = ("train", "strategy", "data", "plugin")
CONFIG_OTHERS = ("command", "data_config", "protocol_config", "arch_file", "arch")
"""Keys of a ``config.yaml`` that are not part of the run record (``protocol_config``: the named
protocol itself, ``nasmerc.protocols.Protocol.to_dict``)."""


@dataclass
class Sections:
    space: dict[str, Any]
    train: dict[str, Any]
    strategy: dict[str, Any]
    data: dict[str, Any]


def split_sets(sets: Iterable[str]) -> Sections:
    """Route ``--set`` assignments: ``train.lr=...`` to the trainer, plain keys to the space."""
    out = Sections({}, {}, {}, {})
    for key, value in parse_assignments(sets).items():
        head, _, rest = key.partition(".")
        if head == "plugin" and rest:
            out.train[f"plugin_options.{rest}"] = value
        elif head in SECTIONS and rest:
            getattr(out, head)[rest] = value
        else:
            out.space[key] = value
    return out


def parse_fixes(fixes: Iterable[str]) -> dict[str, Any]:
    """``--fix label=value`` with the value read as YAML (``depth=6`` is an int, ``op=pool`` a string)."""
    return {k: yaml.safe_load(v) for k, v in parse_assignments(fixes, flag="--fix").items()}


def train_config(base: TrainConfig, overrides: dict[str, Any], plugins: Sequence[str] | None,
                 epochs: int | None) -> TrainConfig:
    """``base`` with ``train.*`` overrides, ``--plugin`` names and ``--epochs`` applied (and checked)."""
    if epochs is not None and epochs < 1:
        raise NasmercError(f"--epochs {epochs}: expected at least 1")
    over = dict(overrides)
    if plugins:
        over["plugins"] = [*(over.get("plugins") or base.plugins), *plugins]
    if epochs is not None:
        over["epochs"] = epochs
    return apply_overrides(base, over, where="train")


def space_of(spec: RunSpec, signature: DataSignature) -> SearchSpace:
    """The space a record names, at its preset and config, for data of ``signature``."""
    return get_search_space(spec.space).from_preset(signature, spec.preset, spec.space_config)


def load_data(spec: RunSpec, *, what: str) -> ConversationDataset:
    """The dataset a record names, checked against the signature it was searched on."""
    dataset = create_dataset(spec.data, spec.data_overrides)
    want, got = spec.signature, dataset.signature
    if want is not None and want != got:
        diffs = [f"{k}: expected {v!r}, found {got.to_dict()[k]!r}" for k, v in want.to_dict().items()
                 if got.to_dict()[k] != v]
        raise NasmercError(f"{what}: the data differ from those the architecture was searched on ({'; '.join(diffs)})")
    return dataset


def n_batches(dataset: ConversationDataset, train: TrainConfig) -> int:
    return -(-len(dataset.split("train")) // train.batch_size)


def search(space: str | None = None, strategy: str | None = None, *, data: str | None = None,
           preset: str | None = None, config_file: str | None = None, sets: Sequence[str] = (),
           fixes: Sequence[str] = (), epochs: int | None = None, seed: int | None = None,
           device: str | None = None, workers: int | None = None, out: str | None = None,
           plugins: Sequence[str] = (), protocol: str | None = None, sinks: Sequence[EventSink] = ()) -> Path:
    """Run one search and write its run folder (see ``nasmerc.runs``). ``protocol`` names the training
    settings (``nasmerc.protocols``; ``--set train.KEY`` still wins)."""
    base = (RunSpec.from_dict(load_yaml(config_file), f"config file {config_file!r}", others=CONFIG_OTHERS)
            if config_file else RunSpec())
    sections = split_sets(sets)
    spec = base.with_(**{k: v for k, v in (("space", space), ("data", data), ("preset", preset), ("seed", seed),
                                           ("device", device), ("workers", workers)) if v is not None})
    data_overrides = {**spec.data_overrides, **sections.data}
    fixed = {**spec.fixed, **parse_fixes(fixes)}
    if protocol is not None:
        spec = spec.with_(protocol=get_protocol(protocol).name, train=get_protocol(protocol).train_config(spec.train))
    train_cfg = train_config(spec.train, sections.train, plugins, epochs)
    resolve_device(spec.device)
    dataset = create_dataset(spec.data, data_overrides)
    same_space = spec.space == base.space  # a config file's space settings belong to its own space
    space_obj = get_search_space(spec.space).from_preset(dataset.signature, spec.preset,
                                                         {**(spec.space_config if same_space else {}), **sections.space})
    by_default = not (strategy or spec.strategy) and space_obj.default_strategy is not None
    strategy_name = (strategy or spec.strategy or space_obj.default_strategy
                     or ("darts" if space_obj.choices() else "fixed"))
    strategy_cls = get_strategy(strategy_name)
    same_strategy = strategy_name == spec.strategy
    strategy_obj = strategy_cls.from_overrides({**(space_obj.default_strategy_config if by_default else {}),
                                                **(spec.strategy_config if same_strategy else {}),
                                                **sections.strategy})
    spec = spec.with_(space_config=space_obj.config_dict(), data_overrides=data_overrides,
                      signature=dataset.signature, train=train_cfg, strategy=strategy_name,
                      strategy_config=strategy_obj.config_dict(), fixed=fixed)
    check_search(spec, dataset, space_obj, strategy_obj)
    return run_search(spec, dataset, space_obj, strategy_obj, out, sinks)


def check_search(spec: RunSpec, dataset: ConversationDataset, space_obj: SearchSpace, strategy_obj: Strategy) -> None:
    """Everything a search checks before its run folder is touched."""
    check_training(spec.train, dataset.signature)
    make_plugins(spec.train.plugins, spec.train.plugin_options, dataset.signature)
    space_obj.check_fixed(spec.fixed)
    require_something_to_search(strategy_obj, space_obj, spec.fixed)
    strategy_obj.check(space_obj, spec.fixed)
    strategy_obj.check_data(dataset)


def resume_search(run: str, *, sinks: Sequence[EventSink] = ()) -> Path:
    """Go on with the search of run folder ``run`` that did not finish (``nasmerc search --resume``):
    its record is read back from ``config.yaml`` and the search replayed (``nasmerc.runs``)."""
    run_dir, config = _resumable(run, "search")
    spec = RunSpec.from_dict(config, str(run_dir / CONFIG_FILE), require=("space", "strategy", "data", "signature"),
                             others=CONFIG_OTHERS)
    dataset = load_data(spec, what=str(run_dir / CONFIG_FILE))
    space_obj = space_of(spec, dataset.signature)
    strategy_obj = get_strategy(spec.strategy).from_overrides(spec.strategy_config)
    check_search(spec, dataset, space_obj, strategy_obj)
    strategy_obj.check_resume(run_dir)
    return run_search(spec, dataset, space_obj, strategy_obj, str(run_dir), sinks, resume=True)


def _resumable(run: str, command: str) -> tuple[Path, dict[str, Any]]:
    """The folder and ``config.yaml`` of a run of ``command`` that can be resumed, or a one-line refusal."""
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise NasmercError(f"--resume {run}: no such run folder")
    config = read_yaml(run_dir / CONFIG_FILE, "the config.yaml of a nasmerc run folder")
    if config.get("command") != command:
        raise NasmercError(f"--resume {run}: a {config.get('command')!r} run, not a {command!r} run "
                           f"(resume it with nasmerc {config.get('command')} --resume)")
    status = run_status(run_dir)
    if status == "finished":
        raise NasmercError(f"--resume {run}: the run finished; there is nothing to resume")
    if status == "running":
        raise NasmercError(f"--resume {run}: in use by {holder(run_dir, command=False)}; it is still running")
    return run_dir, config


def run_search(spec: RunSpec, dataset: ConversationDataset, space_obj: SearchSpace, strategy_obj: Strategy,
               out: str | None, sinks: Sequence[EventSink], resume: bool = False) -> Path:
    """The search of a checked record, in a new run folder or resumed in ``out``."""
    strategy_name = spec.strategy
    torch_device = resolve_device(distributed.rank_device(spec.device, distributed.current()))
    with open_run(out, f"{spec.space}-{strategy_name}", "search", spec, sinks, n_batches=n_batches(dataset, spec.train),
                  extra_config={"data_config": dataset.config,
                                "protocol_config": get_protocol(spec.protocol).to_dict()}, resume=resume) as run:

        def best_so_far(arch: dict[str, Any], numbers: dict[str, Any]) -> None:
            ArchFile(spec, arch, {**numbers, "partial": True}).write(run.path / ARCH_FILE)

        ctx = SearchContext(space_obj, dataset, spec.train, torch_device, spec.seed, run.events, run.path, spec.fixed,
                            spec.workers, resuming=resume, best_so_far=best_so_far)
        result = strategy_obj.search(ctx)
        numbers = {"metric": result.metric, "best_valid": result.best_value, "best_epoch": result.best_epoch,
                   "wall_seconds": run.elapsed}
        summary = {"space": spec.space, "strategy": strategy_name, "data": spec.data, **numbers,
                   "supernet_parameters": result.supernet_parameters, "derived_parameters": result.derived_parameters,
                   "arch": result.arch, "arch_named": named_arch(space_obj.choices(spec.fixed), result.arch),
                   **result.extra}
        note = single_modality_note(dataset.signature, spec.train.masking)
        if note:
            summary["note"] = note
        arch_file = ArchFile(spec, result.arch, {**numbers, "derived_parameters": result.derived_parameters,
                                                 **result.summary})
        if result.model is not None:
            save_model(run.path, result.model, spec, result.arch, {**numbers, "valid": result.extra.get("valid", {})})
        arch_file.write(run.path / ARCH_FILE)
        write_json(run.path / SEARCH_FILE, summary)
        run.finish(result.best_value, f"architecture written to {run.path / ARCH_FILE}")
    return run.path


def export(run: str, out: str | None = None, fmt: str = "yaml") -> tuple[Path, dict[str, Any]]:
    """Derive the architecture again from a search run's files and write it as ``arch.yaml``, or with
    ``fmt="nni"`` as NNI's architecture dict (``nni_arch.json``, ``nasmerc.nas.nni_format``).

    Returns the file and the architecture with input indices shown by name.
    """
    if fmt not in ("yaml", "nni"):
        raise NasmercError(f"export: --format {fmt!r}: expected yaml or nni")
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise NasmercError(f"{run}: no such run folder")
    config = run_dir / CONFIG_FILE
    spec = RunSpec.from_dict(read_yaml(config, "the config.yaml of a nasmerc run folder"), str(config),
                             require=("space", "strategy", "data", "signature"), others=CONFIG_OTHERS)
    space_obj = space_of(spec, spec.signature)
    strategy_obj = get_strategy(spec.strategy).from_overrides(spec.strategy_config)
    arch = strategy_obj.derive(space_obj, run_dir, spec.fixed)
    previous = ArchFile.read(run_dir / ARCH_FILE) if (run_dir / ARCH_FILE).exists() else None
    if arch is None:
        if previous is None:
            raise NasmercError(f"{run}: the strategy keeps no files to derive from and there is no {ARCH_FILE}")
        arch = previous.arch
    arch = space_obj.canonical(arch)
    if fmt == "nni":
        target = Path(out) if out else run_dir / nni_format.NNI_ARCH_FILE
        write_json(target, nni_format.to_nni(arch, space_obj.choices(spec.fixed)))
        return target, named_arch(space_obj.choices(spec.fixed), arch)
    target = Path(out) if out else run_dir / ARCH_FILE
    ArchFile(spec, arch, previous.search if previous else {}).write(target)
    return target, named_arch(space_obj.choices(spec.fixed), arch)


def read_arch(arch_path: str) -> ArchFile:
    """An ``arch.yaml`` (or the run folder holding it), or an NNI architecture dict (a ``.json`` file,
    ``nasmerc.nas.nni_format``) converted with the run record of the ``arch.yaml`` beside it."""
    if not nni_format.is_nni_file(arch_path):
        return ArchFile.read(arch_path)
    beside = Path(arch_path).parent / ARCH_FILE
    if not beside.exists():
        raise NasmercError(f"{arch_path}: an NNI architecture dict is read with the run record of its search: "
                           f"expected {beside} (put the file in the search's run folder)")
    record = ArchFile.read(beside)
    space_obj = space_of(record.spec, record.spec.signature)
    fixed = record.spec.fixed
    arch = nni_format.from_nni({**fixed, **nni_format.read_nni_file(arch_path)}, space_obj.choices(fixed),
                               space_obj.inactive(fixed), source=str(arch_path))
    return ArchFile(record.spec, space_obj.canonical(arch), {"nni_file": str(arch_path)})


def save_model(run_dir: Path, model: torch.nn.Module, spec: RunSpec, arch: dict[str, Any],
               numbers: dict[str, Any]) -> None:
    """Write ``model.pt`` (weights, architecture and run record) and ``metrics.json``."""
    write_torch(run_dir / MODEL_FILE, {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "arch": arch, **spec.to_dict()})
    write_json(run_dir / METRICS_FILE, {**numbers, "parameters": count_parameters(model), "epochs": spec.train.epochs})


def retrain(arch_path: str, *, epochs: int | None = None, out: str | None = None, device: str | None = None,
            seed: int | None = None, sets: Sequence[str] = (), plugins: Sequence[str] = (),
            protocol: str | None = None, sinks: Sequence[EventSink] = ()) -> Path:
    """Build the fixed model of ``arch_path`` from scratch, train it and write ``model.pt`` and ``metrics.json``.

    Under an IME protocol (``--protocol rmnas``, ``micga``) one model is trained per rate of its sweep,
    at that rate alone, each in its own folder ``rate-R`` of the run folder (``nasmerc evaluate`` of the
    run folder judges each at its own rate)."""
    af = read_arch(arch_path)
    sections = split_sets(sets)
    if sections.space or sections.strategy or sections.data:
        raise NasmercError("retrain: only --set train.KEY=VALUE and plugin.NAME.KEY=VALUE apply "
                           "(the space and data are fixed by the arch file)")
    chosen = get_protocol(protocol) if protocol is not None else None
    base = af.spec if chosen is None else af.spec.with_(protocol=chosen.name, train=chosen.train_config(af.spec.train))
    spec = base.with_(train=train_config(base.train, sections.train, plugins, epochs),
                      **{k: v for k, v in (("seed", seed), ("device", device)) if v is not None})
    arch_dir = Path(arch_path) if Path(arch_path).is_dir() else Path(arch_path).parent
    folder = out if out is not None else str(arch_dir / "retrain")
    if chosen is None or chosen.evaluation != "ime":
        return run_retrain(spec, af.arch, str(arch_path), folder, sinks)
    specs = {rate: spec.with_(train=train_config(chosen.at_rate(rate).train_config(base.train), sections.train,
                                                 plugins, epochs)) for rate in chosen.sweep}
    root = new_run_dir(folder, "ime")
    for rate, one in specs.items():
        run_retrain(one, af.arch, str(arch_path), str(root / f"rate-{rate:g}"), sinks)
    return root


def resume_retrain(run: str, *, sinks: Sequence[EventSink] = ()) -> Path:
    """Go on with the training of retrain run folder ``run`` that did not finish (``nasmerc retrain --resume``)."""
    run_dir, config = _resumable(run, "retrain")
    spec = RunSpec.from_dict(config, str(run_dir / CONFIG_FILE), require=("space", "data", "signature"),
                             others=CONFIG_OTHERS)
    arch = config.get("arch")
    if not isinstance(arch, dict):
        raise NasmercError(f"{run_dir / CONFIG_FILE}: 'arch' must be a mapping of choice label to choice")
    return run_retrain(spec, arch, str(config.get("arch_file", "")), str(run_dir), sinks, resume=True)


def run_retrain(spec: RunSpec, arch: dict[str, Any], arch_file: str, out: str, sinks: Sequence[EventSink],
                resume: bool = False) -> Path:
    """The training of a checked record's ``arch``, in a new run folder or resumed in ``out``."""
    dataset = load_data(spec, what=arch_file)
    torch_device = resolve_device(distributed.rank_device(spec.device, distributed.current()))
    check_training(spec.train, dataset.signature)
    make_plugins(spec.train.plugins, spec.train.plugin_options, dataset.signature)
    evaluator = Evaluator(space_of(spec, dataset.signature), dataset, spec.train, device=torch_device, seed=spec.seed)
    model = evaluator.build(arch)
    with open_run(out, f"{spec.space}-retrain", "retrain", spec, sinks, n_batches=n_batches(dataset, spec.train),
                  extra_config={"protocol_config": get_protocol(spec.protocol).to_dict(), "arch_file": arch_file,
                                "arch": arch}, resume=resume) as run:
        evaluator.events, evaluator.run_dir = run.events, run.path
        fit = evaluator.fit(model)
        save_model(run.path, model, spec, arch, {
            "metric": evaluator.metric, "best_valid": fit.best_value, "best_epoch": fit.best_epoch,
            "valid": fit.best_metrics, "wall_seconds": fit.seconds})
        run.finish(fit.best_value, f"model written to {run.path / MODEL_FILE}")
    return run.path


def load_model(model_path: Path, device: torch.device) -> tuple[torch.nn.Module, ConversationDataset, RunSpec,
                                                                 dict[str, Any]]:
    """Rebuild a trained model from ``model.pt`` (``weights_only=True``): the model on ``device``, its
    data, its run record and its architecture. A state that does not fit the architecture (a missing,
    extra or differently shaped tensor) is refused naming the first such key."""
    from nasmerc.io import read_torch

    ckpt = read_torch(model_path, "a nasmerc model file (model.pt written by nasmerc retrain)")
    if not isinstance(ckpt, dict):
        raise NasmercError(f"{model_path}: not a nasmerc model file (expected a mapping)")
    for key in ("state_dict", "arch", "space", "signature", "data"):
        if key not in ckpt:
            raise NasmercError(f"{model_path}: missing {key!r} (expected a model.pt written by nasmerc retrain)")
    for key, kind in (("state_dict", dict), ("arch", dict)):
        if not isinstance(ckpt[key], kind):
            raise NasmercError(f"{model_path}: {key!r} is a {type(ckpt[key]).__name__}, expected a mapping")
    spec = RunSpec.from_dict({k: v for k, v in ckpt.items() if k not in ("state_dict", "arch")}, str(model_path))
    dataset = load_data(spec, what=str(model_path))
    model = space_of(spec, dataset.signature).build(ckpt["arch"])
    want, found = model.state_dict(), ckpt["state_dict"]
    for key in [*want, *(k for k in found if k not in want)]:
        value = found.get(key)
        if key not in found or key not in want or not isinstance(value, torch.Tensor) or value.shape != want[key].shape:
            shape = lambda t: "no such key" if t is None else (  # noqa: E731
                f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__)
            raise NasmercError(f"{model_path}: state_dict key {key!r}: expected {shape(want.get(key))}, "
                               f"found {shape(value)} (the weights do not fit the architecture)")
    model.load_state_dict(found)
    model.to(device)
    return model, dataset, spec, dict(ckpt["arch"])
