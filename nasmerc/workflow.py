"""``search``, ``export`` and ``retrain``: the steps a user runs, each writing one run folder.

Each function takes plain keyword arguments (``cli.py`` turns flags into them once) and returns the
run folder. ``--set`` keys go to one section each: ``train.KEY`` (the trainer), ``strategy.KEY``,
``data.KEY`` (the dataset), ``plugin.NAME.KEY`` (a training plug-in, kept in the trainer's
``plugin_options``) and anything else to the space's config. A space with nothing to search takes the
``fixed`` strategy by default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml

from nasmerc.config import apply_overrides, load_yaml, parse_assignments, to_plain
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.events import EventSink
from nasmerc.io import write_json, write_torch
from nasmerc.nas.choices import named_arch
from nasmerc.outputs import count_parameters
from nasmerc.nas.strategy import SearchContext, require_something_to_search
from nasmerc.registry import create_dataset, get_search_space, get_strategy
from nasmerc.runs import (ARCH_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, SEARCH_FILE, ArchFile, new_run_dir,
                          open_events, read_yaml, write_config)
from nasmerc.train.plugins import make_plugins
from nasmerc.train.trainer import TrainConfig, Trainer, resolve_device

SECTIONS = ("train", "strategy", "data", "plugin")
DEFAULT_DATA = "iemocap6"


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


def train_config(overrides: dict[str, Any], plugins: Sequence[str] | None, epochs: int | None) -> TrainConfig:
    """The trainer's config from ``train.*`` overrides, ``--plugin`` names and ``--epochs``."""
    over = dict(overrides)
    if plugins:
        over["plugins"] = [*(over.get("plugins") or []), *plugins]
    if epochs is not None:
        over["epochs"] = epochs
    cfg = apply_overrides(TrainConfig(), over, where="train")
    if cfg.epochs < 1:
        raise NasmercError(f"--epochs {cfg.epochs}: expected at least 1")
    return cfg


def search(space: str | None = None, strategy: str | None = None, *, data: str | None = None,
           preset: str | None = None, config_file: str | None = None, sets: Sequence[str] = (),
           fixes: Sequence[str] = (), epochs: int | None = None, seed: int | None = None,
           device: str | None = None, out: str | None = None, plugins: Sequence[str] = (),
           sinks: Sequence[EventSink] = ()) -> Path:
    """Run one search and write its run folder (see ``nasmerc.runs``)."""
    base = load_yaml(config_file) if config_file else {}
    space_name = space or base.get("space") or "rmnas"
    data_name = data or base.get("data") or DEFAULT_DATA
    preset_name = preset or base.get("preset") or "default"
    seed_value = int(seed if seed is not None else base.get("seed", 0))
    device_name = device or base.get("device") or "cpu"
    sections = split_sets(sets)
    data_overrides = {**(base.get("data_overrides") or {}), **sections.data}
    train_overrides = {**(base.get("train") or {}), **sections.train}
    fixed = {**(base.get("fixed") or {}), **parse_fixes(fixes)}

    torch_device = resolve_device(device_name)
    dataset = create_dataset(data_name, data_overrides)
    space_cls = get_search_space(space_name)
    space_obj = space_cls.from_preset(dataset.signature, preset_name,
                                      {**(base.get("space_config") or {}), **sections.space})
    strategy_name = strategy or base.get("strategy") or ("darts" if space_obj.choices() else "fixed")
    strategy_cls = get_strategy(strategy_name)
    strategy_obj = strategy_cls.from_overrides({**(base.get("strategy_config") or {}), **sections.strategy})
    train_cfg = train_config(train_overrides, plugins, epochs)
    make_plugins(train_cfg.plugins, train_cfg.plugin_options, dataset.signature)
    space_obj.check_fixed(fixed)
    require_something_to_search(strategy_obj, space_obj, fixed)
    strategy_obj.check(space_obj, fixed)

    run_dir = new_run_dir(out, f"{space_name}-{strategy_name}")
    resolved = {
        "command": "search", "space": space_name, "preset": preset_name, "space_config": space_obj.config_dict(),
        "strategy": strategy_name, "strategy_config": strategy_obj.config_dict(), "train": to_plain(train_cfg),
        "data": data_name, "data_overrides": data_overrides, "fixed": fixed, "seed": seed_value,
        "device": device_name, "signature": dataset.signature.to_dict(), "data_config": dataset.config,
    }
    write_config(run_dir, resolved)
    events, jsonl = open_events(run_dir)
    for sink in sinks:
        events.add(sink)
    n_batches = -(-len(dataset.split("train")) // train_cfg.batch_size)
    start = time.time()
    events.emit("run_start", command="search", space=space_name, strategy=strategy_name, data=data_name,
                seed=seed_value, epochs=train_cfg.epochs, n_batches=n_batches, run=str(run_dir),
                metric="waf" if dataset.signature.task == "classification" else "mae",
                higher_is_better=dataset.signature.task == "classification")
    try:
        ctx = SearchContext(space_obj, dataset, train_cfg, torch_device, seed_value, events, run_dir, fixed)
        result = strategy_obj.search(ctx)
        elapsed = time.time() - start
        summary = {
            "space": space_name, "strategy": strategy_name, "data": data_name, "metric": result.metric,
            "best_valid": result.best_value, "best_epoch": result.best_epoch, "wall_seconds": elapsed,
            "supernet_parameters": result.supernet_parameters, "derived_parameters": result.derived_parameters,
            "arch": result.arch, "arch_named": named_arch(space_obj.choices(fixed), result.arch), **result.extra,
        }
        af = ArchFile(space_name, preset_name, space_obj.config_dict(), result.arch, data_name, data_overrides,
                      dataset.signature, to_plain(train_cfg), strategy_name, seed_value,
                      {k: summary[k] for k in ("metric", "best_valid", "best_epoch", "wall_seconds",
                                               "derived_parameters", "leading_shares") if k in summary})
        if result.model is not None:
            save_model(run_dir, result.model, af, train_cfg, seed_value, {
                "metric": result.metric, "best_valid": result.best_value, "best_epoch": result.best_epoch,
                "valid": result.extra.get("valid", {}), "wall_seconds": elapsed})
        af.write(run_dir / ARCH_FILE)
        write_json(run_dir / SEARCH_FILE, summary)
        events.emit("run_end", status="finished", best=result.best_value, elapsed=elapsed,
                    message=f"architecture written to {run_dir / ARCH_FILE}")
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        events.emit("run_end", status=status, best=None, elapsed=time.time() - start, message=str(exc))
        raise
    finally:
        jsonl.close()
    return run_dir


def _run_config(run_dir: Path) -> dict[str, Any]:
    return read_yaml(run_dir / CONFIG_FILE, "the config.yaml of a nasmerc run folder")


def export(run: str, out: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Derive the architecture again from a search run's files and write it as ``arch.yaml``.

    Returns the file and the architecture with input indices shown by name.
    """
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise NasmercError(f"{run}: no such run folder")
    cfg = _run_config(run_dir)
    signature = DataSignature.from_dict(cfg["signature"])
    space_obj = get_search_space(cfg["space"]).from_preset(signature, cfg.get("preset", "default"),
                                                           cfg.get("space_config") or {})
    strategy_obj = get_strategy(cfg["strategy"]).from_overrides(cfg.get("strategy_config") or {})
    fixed = cfg.get("fixed") or {}
    arch = strategy_obj.derive(space_obj, run_dir, fixed)
    previous = ArchFile.read(run_dir / ARCH_FILE) if (run_dir / ARCH_FILE).exists() else None
    if arch is None:
        if previous is None:
            raise NasmercError(f"{run}: the strategy keeps no files to derive from and there is no {ARCH_FILE}")
        arch = previous.arch
    arch = space_obj.canonical(arch)
    target = Path(out) if out else run_dir / ARCH_FILE
    ArchFile(cfg["space"], cfg.get("preset", "default"), space_obj.config_dict(), arch, cfg["data"],
             cfg.get("data_overrides") or {}, signature, cfg.get("train") or {}, cfg["strategy"],
             int(cfg.get("seed", 0)), previous.search if previous else {}).write(target)
    return target, named_arch(space_obj.choices(fixed), arch)


def load_data_for(arch_file: ArchFile, *, what: str):
    """The dataset an architecture file names, checked against the signature it was searched on."""
    dataset = create_dataset(arch_file.data, arch_file.data_overrides)
    want, got = arch_file.signature, dataset.signature
    if want != got:
        diffs = [f"{k}: expected {v!r}, found {got.to_dict()[k]!r}" for k, v in want.to_dict().items()
                 if got.to_dict()[k] != v]
        raise NasmercError(f"{what}: the data differ from those the architecture was searched on ({'; '.join(diffs)})")
    return dataset


def save_model(run_dir: Path, model: torch.nn.Module, af: ArchFile, train_cfg: TrainConfig, seed: int,
               numbers: dict[str, Any]) -> None:
    """Write ``model.pt`` (weights and everything needed to rebuild them) and ``metrics.json``."""
    write_torch(run_dir / MODEL_FILE, {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": af.arch, "space": af.space, "preset": af.preset, "space_config": af.space_config,
        "signature": af.signature.to_dict(), "data": af.data, "data_overrides": af.data_overrides,
        "train": to_plain(train_cfg), "seed": seed,
    })
    write_json(run_dir / METRICS_FILE, {**numbers, "parameters": count_parameters(model), "epochs": train_cfg.epochs})


def retrain(arch_path: str, *, epochs: int | None = None, out: str | None = None, device: str = "cpu",
            seed: int | None = None, sets: Sequence[str] = (), plugins: Sequence[str] = (),
            sinks: Sequence[EventSink] = ()) -> Path:
    """Build the fixed model of ``arch_path`` from scratch, train it and write ``model.pt`` and ``metrics.json``."""
    af = ArchFile.read(arch_path)
    dataset = load_data_for(af, what=str(arch_path))
    torch_device = resolve_device(device)
    space_obj = get_search_space(af.space).from_preset(dataset.signature, af.preset, af.space_config)
    seed_value = af.seed if seed is None else seed
    torch.manual_seed(seed_value)
    model = space_obj.build(af.arch)
    sections = split_sets(sets)
    if sections.space or sections.strategy or sections.data:
        raise NasmercError("retrain: only --set train.KEY=VALUE and plugin.NAME.KEY=VALUE apply "
                           "(the space and data are fixed by the arch file)")
    train_cfg = train_config({**af.train, **sections.train}, plugins, epochs)
    make_plugins(train_cfg.plugins, train_cfg.plugin_options, dataset.signature)
    arch_dir = Path(arch_path) if Path(arch_path).is_dir() else Path(arch_path).parent
    run_dir = new_run_dir(out if out is not None else str(arch_dir / "retrain"), f"{af.space}-retrain")
    write_config(run_dir, {"command": "retrain", "arch_file": str(arch_path), "space": af.space, "preset": af.preset,
                           "arch": af.arch, "space_config": af.space_config, "train": to_plain(train_cfg),
                           "data": af.data, "data_overrides": af.data_overrides, "seed": seed_value,
                           "device": device, "signature": af.signature.to_dict()})
    events, jsonl = open_events(run_dir)
    for sink in sinks:
        events.add(sink)
    start = time.time()
    events.emit("run_start", command="retrain", space=af.space, strategy="retrain", data=af.data, seed=seed_value,
                epochs=train_cfg.epochs, n_batches=-(-len(dataset.split("train")) // train_cfg.batch_size),
                run=str(run_dir), metric="waf" if af.signature.task == "classification" else "mae",
                higher_is_better=af.signature.task == "classification")
    try:
        trainer = Trainer(model, dataset.signature, train_cfg, device=torch_device, seed=seed_value, events=events)
        fit = trainer.fit(dataset.split("train"), dataset.split("valid"))
        save_model(run_dir, model, af, train_cfg, seed_value, {
            "metric": trainer.metric, "best_valid": fit.best_value, "best_epoch": fit.best_epoch,
            "valid": fit.best_metrics, "wall_seconds": fit.seconds})
        events.emit("run_end", status="finished", best=fit.best_value, elapsed=time.time() - start,
                    message=f"model written to {run_dir / MODEL_FILE}")
    except BaseException as exc:
        events.emit("run_end", status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                    best=None, elapsed=time.time() - start, message=str(exc))
        raise
    finally:
        jsonl.close()
    return run_dir


def load_model(model_path: Path, device: torch.device):
    """Rebuild a retrained model from ``model.pt`` (``weights_only=True``) and its data."""
    try:
        ckpt = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: name it, do not unpickle anything else
        raise NasmercError(f"{model_path}: not a nasmerc model file ({type(exc).__name__})") from None
    for key in ("state_dict", "arch", "space", "signature", "data"):
        if key not in ckpt:
            raise NasmercError(f"{model_path}: missing {key!r} (expected a model.pt written by nasmerc retrain)")
    af = ArchFile(ckpt["space"], ckpt.get("preset", "default"), ckpt.get("space_config") or {}, ckpt["arch"],
                  ckpt["data"], ckpt.get("data_overrides") or {},
                  DataSignature.from_dict(ckpt["signature"]),
                  ckpt.get("train") or {}, seed=int(ckpt.get("seed", 0)))
    dataset = load_data_for(af, what=str(model_path))
    space_obj = get_search_space(af.space).from_preset(dataset.signature, af.preset, af.space_config)
    model = space_obj.build(af.arch)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    return model, dataset, af
