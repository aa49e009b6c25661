"""Every invalid strategy and trainer option is refused before a run folder exists: exit status 2, one
line naming the option, and nothing created.

The walk covers every field of every registered strategy's config and of the trainer's config (a
test checks that), each with a value it must refuse.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nasmerc.cli import main
from nasmerc.registry import get_strategy, list_strategies
from nasmerc.train.trainer import TrainConfig

TINY = ["--set", "data.n_train=4", "--set", "data.n_valid=2", "--set", "data.n_test=2", "--set", "data.length_max=6",
        "--set", "data.length_min=3", "--set", "data.length_mean=4"]
RMNAS = ["--space", "rmnas", "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16",
         "--set", "n_heads=2", "--set", "n_cells=1"]

# (strategy, option, value, what the one line must say)
BAD = [
    ("darts", "order", "3", "order=3: expected 1 or 2"),
    ("darts", "arch_fraction", "1.0", "arch_fraction=1.0"),
    ("darts", "arch_fraction", "0", "arch_fraction=0.0"),
    ("darts", "arch_lr", "-1", "arch_lr=-1.0: expected a finite number > 0"),
    ("darts", "arch_lr", "inf", "arch_lr=inf: expected a finite number > 0"),
    ("darts", "arch_momentum", "-0.5", "arch_momentum=-0.5"),
    ("darts", "arch_weight_decay", "-1", "arch_weight_decay=-1.0"),
    ("darts", "unroll_lr", "-1", "unroll_lr=-1.0"),
    ("darts", "warmup_epochs", "-1", "warmup_epochs=-1"),
    ("darts", "init_scale", "-1", "init_scale=-1.0"),
    ("darts", "arch_optimizer", "rmsprop", "arch_optimizer='rmsprop'"),
    ("darts", "derive", "max", "derive='max': expected one of 'threshold', 'argmax'"),
    ("darts", "threshold", "0", "threshold=0.0: expected a number in (0.0, 1.0]"),
    ("darts", "threshold", "1.5", "threshold=1.5"),
    ("darts", "weight_data", "all", "weight_data='all': expected one of 'whole', 'half'"),
    ("darts", "inputs", "sigmoid", "inputs='sigmoid': expected one of 'gate', 'softmax'"),
    ("router", "router", "identity", "router='identity'"),
    ("router", "router_lr", "0", "router_lr=0.0"),
    ("router", "router_weight_decay", "-1", "router_weight_decay=-1.0"),
    ("router", "prune_below", "1.5", "prune_below=1.5"),
    ("router", "prune_below", "-0.1", "prune_below=-0.1"),
    ("router", "init_scale", "-1", "init_scale=-1.0"),
    ("router", "export", "all", "export='all'"),
    ("evolution", "population", "0", "population=0"),
    ("evolution", "population", "1", "population=1: expected an integer >= 2"),
    ("evolution", "generations", "0", "generations=0"),
    ("evolution", "candidate_epochs", "0", "candidate_epochs=0"),
    ("evolution", "tournament", "0", "tournament=0"),
    ("evolution", "cx_prob", "2", "cx_prob=2.0: expected a number in [0.0, 1.0]"),
    ("evolution", "mut_prob", "-0.1", "mut_prob=-0.1"),
    ("evolution", "mut_sigma", "-1", "mut_sigma=-1.0"),
    ("evolution", "warm_start", "maybe", "warm_start='maybe': expected bool"),
    ("random", "trials", "0", "trials=0"),
    ("random", "candidate_epochs", "-2", "candidate_epochs=-2"),
    ("random", "finalists", "-1", "finalists=-1: expected an integer >= 0"),
    ("evolution", "finalists", "-1", "finalists=-1"),
    ("tpe", "finalists", "-1", "finalists=-1"),
    ("random", "finalist_folds", "1", "finalist_folds=1: expected 0 (choose on the validation split) or 2 to 10"),
    ("evolution", "finalist_folds", "11", "finalist_folds=11: expected 0"),
    ("tpe", "finalist_folds", "3", "finalist_folds=3 with no finalists: expected finalists >= 1"),
    ("random", "parsimony", "-0.01", "parsimony=-0.01: expected a finite number >= 0"),
    ("evolution", "parsimony", "nan", "parsimony='nan': expected float"),
    ("tpe", "parsimony", "1e400", "parsimony"),
    ("tpe", "trials", "0", "trials=0"),
    ("tpe", "candidate_epochs", "0", "candidate_epochs=0"),
    ("tpe", "startup_trials", "0", "startup_trials=0"),
    ("tpe", "pruner", "asha", "pruner='asha': expected one of median, hyperband, none"),
    ("tpe", "min_epochs", "0", "min_epochs=0"),
    ("tpe", "reduction_factor", "1", "reduction_factor=1: expected an integer >= 2"),
    ("tpe", "objectives", "metric,latency", "'latency'"),
    ("tpe", "objectives", "params", "objectives=params"),
    ("tpe", "storage", "journal:/nonexistent/folder/x.journal", "does not exist"),
    ("tpe", "study", "shared", "study='shared' needs a storage every worker reaches"),
    ("tpe", "heartbeat", "0", "heartbeat=0: expected an integer >= 1"),
    ("random", "storage", "journal:/nonexistent/folder/x.journal", "does not exist"),
    ("random", "study", "shared", "study='shared' needs a storage every worker reaches"),
    ("random", "heartbeat", "-1", "heartbeat=-1"),
    ("evolution", "storage", "journal:/nonexistent/folder/x.journal", "does not exist"),
    ("evolution", "study", "shared", "study='shared' needs a storage every worker reaches"),
    ("evolution", "heartbeat", "0", "heartbeat=0"),
    ("fixed", "nosuch", "1", "strategy 'fixed': unknown key 'nosuch'"),
    ("nni:darts", "arch_fraction", "1.0", "strategy 'nni:darts': arch_fraction=1.0"),
    ("nni:darts", "warmup_epochs", "-1", "warmup_epochs=-1"),
    ("nni:darts", "arc_learning_rate", "0", "arc_learning_rate=0.0: expected a finite number > 0"),
    ("nni:gumbel_darts", "arch_fraction", "0", "arch_fraction=0.0"),
    ("nni:gumbel_darts", "warmup_epochs", "x", "warmup_epochs='x'"),
    ("nni:gumbel_darts", "arc_learning_rate", "-1", "arc_learning_rate=-1.0"),
    ("nni:gumbel_darts", "temperature_init", "0", "temperature_init=0.0"),
    ("nni:gumbel_darts", "temperature_min", "2", "temperature_min=2.0: expected a number <= temperature_init"),
    ("nni:proxyless", "arch_fraction", "2", "arch_fraction=2.0"),
    ("nni:proxyless", "warmup_epochs", "-3", "warmup_epochs=-3"),
    ("nni:proxyless", "arc_learning_rate", "inf", "arc_learning_rate=inf"),
    ("nni:random_one_shot", "nosuch", "1", "strategy 'nni:random_one_shot': unknown key 'nosuch'"),
    ("nni:enas", "arch_fraction", "-0.5", "arch_fraction=-0.5"),
    ("nni:enas", "warmup_epochs", "-1", "warmup_epochs=-1"),
    ("nni:enas", "batches_per_update", "0", "batches_per_update=0"),
    ("nni:regularized_evolution", "trials", "0", "trials=0"),
    ("nni:regularized_evolution", "candidate_epochs", "0", "candidate_epochs=0"),
    ("nni:regularized_evolution", "population", "0", "population=0"),
    ("nni:regularized_evolution", "sample_size", "9", "sample_size=9: expected an integer <= population (4)"),
    ("nni:regularized_evolution", "mutation_prob", "1.5", "mutation_prob=1.5"),
    ("nni:regularized_evolution", "crossover", "maybe", "crossover='maybe': expected bool"),
    ("nni:regularized_evolution", "dedup", "maybe", "dedup='maybe': expected bool"),
    ("nni:tpe", "trials", "-1", "trials=-1"),
    ("nni:tpe", "candidate_epochs", "0", "candidate_epochs=0"),
    ("nni:random", "trials", "0", "trials=0"),
    ("nni:random", "candidate_epochs", "-1", "candidate_epochs=-1"),
    ("nni:random", "dedup", "often", "dedup='often': expected bool"),
    ("nni:policy_based_rl", "trials", "0", "trials=0"),
    ("nni:policy_based_rl", "candidate_epochs", "0", "candidate_epochs=0"),
    ("nni:policy_based_rl", "samples_per_update", "0", "samples_per_update=0"),
    *[(s, "evaluation", "twice", "evaluation='twice': expected one of") for s in ("random", "tpe", "evolution")],
    *[(s, "oneshot_epochs", "-1", "oneshot_epochs=-1: expected an integer >= 0") for s in ("random", "tpe", "evolution")],
    *[(s, "local_steps", "-1", "local_steps=-1: expected an integer >= 0") for s in ("random", "tpe", "evolution")],
    *[(s, "simplify", "-1", "simplify=-1: expected an integer >= 0") for s in ("random", "tpe", "evolution")],
    *[(s, "simplify_by", "size", "simplify_by='size': expected one of") for s in ("random", "tpe", "evolution")],
    *[(s, "simplify_moves", "swaps", "simplify_moves='swaps': expected one of") for s in ("random", "tpe", "evolution")],
    ("evolution", "weights", "mutate", "weights='mutate'"),
    ("evolution", "weight_sigma", "-1", "weight_sigma=-1.0"),
    ("evolution", "weight_epochs", "-1", "weight_epochs=-1"),
    ("evolution", "fitness", "size", "fitness='size'"),
]
BAD_TRAIN = [
    ("epochs", "0", "epochs=0"),
    ("batch_size", "0", "batch_size=0"),
    ("eval_batch_size", "-1", "eval_batch_size=-1"),
    ("lr", "-1", "lr=-1.0: expected a finite number > 0"),
    ("lr", "inf", "lr=inf: expected a finite number > 0"),
    ("lr", "nan", "lr='nan': expected float"),
    ("weight_decay", "-1", "weight_decay=-1.0"),
    ("grad_clip", "-1", "grad_clip=-1.0"),
    ("missing", "sometimes", "missing schedule 'sometimes'"),
    ("valid_rates", "0,1.5", "valid_rates=1.5"),
    ("patience", "-1", "patience=-1"),
    ("mask_seed", "x", "mask_seed='x': expected int"),
    ("plugins", "nosuch", "unknown plug-in 'nosuch'"),
    ("plugin_options.spcl.alpha", "-1", "alpha"),
    ("masking", "pixel", "masking='pixel': expected one of auto, frame"),
    ("optimizer", "sgd", "optimizer='sgd': expected one of adamw, adam"),
    ("precision", "fp8", "precision='fp8': expected one of auto, bf16, fp32"),
    ("compile", "maybe", "compile='maybe'"),
    ("data", "gpu", "data='gpu': expected one of auto, host, device"),
    ("masking", "frame", "frame-level masking is for utterance-level data"),
]
SPACE_OF = {"fixed": "early_fusion"}


def refused(tmp_path: Path, capsys, args: list[str], needle: str) -> str:
    out = tmp_path / "run"
    assert main(["search", "--no-dashboard", "--out", str(out), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("nasmerc: error: "), err
    assert needle in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("strategy, key, value, needle", BAD, ids=[f"{s}.{k}={v}" for s, k, v, _ in BAD])
def test_bad_strategy_option_is_one_line_and_no_folder(strategy: str, key: str, value: str, needle: str,
                                                       tmp_path: Path, capsys) -> None:
    space = ["--space", SPACE_OF[strategy]] if strategy in SPACE_OF else RMNAS
    refused(tmp_path, capsys, [*space, "--strategy", strategy, "--set", f"strategy.{key}={value}"], needle)


@pytest.mark.parametrize("key, value, needle", BAD_TRAIN, ids=[f"train.{k}={v}" for k, v, _ in BAD_TRAIN])
def test_bad_trainer_option_is_one_line_and_no_folder(key: str, value: str, needle: str, tmp_path: Path,
                                                      capsys) -> None:
    extra = ["--plugin", "spcl"] if key.startswith("plugin_options.spcl") else []
    refused(tmp_path, capsys, [*RMNAS, "--set", f"train.{key}={value}", *extra], needle)


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_a_seed_out_of_range_is_refused(seed: str, tmp_path: Path, capsys) -> None:
    refused(tmp_path, capsys, [*RMNAS, "--seed", seed], f"seed={seed}: expected an integer in [0, 2**32)")


def test_an_out_that_holds_other_files_is_left_alone(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own settings\n")
    assert main(["search", "--no-dashboard", "--out", str(mine), *TINY, *RMNAS]) == 2
    assert "holds an unfinished run" in capsys.readouterr().err
    (mine / "config.yaml").unlink()
    (mine / "notes.txt").write_text("mine\n")
    assert main(["search", "--no-dashboard", "--out", str(mine), *TINY, *RMNAS]) == 2
    assert "holds other files (notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["search", "--no-dashboard", "--out", str(afile), *TINY, *RMNAS]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"


def test_bad_workers_and_strategy_flags(tmp_path: Path, capsys) -> None:
    refused(tmp_path, capsys, [*RMNAS, "--strategy", "random", "--workers", "-2"], "--workers -2")
    refused(tmp_path, capsys, [*RMNAS, "--strategy", "random", "--trials", "0"], "trials=0")
    refused(tmp_path, capsys, [*RMNAS, "--strategy", "router", "--prune-below", "2"], "prune_below=2.0")


def test_the_walk_covers_every_option() -> None:
    """Every config field of every registered strategy and of the trainer has a bad value above."""
    walked = {(s, k) for s, k, _, _ in BAD}
    for name in list_strategies():
        for f in dataclasses.fields(get_strategy(name).Config):
            assert (name, f.name) in walked, f"strategy {name!r}: no bad value for {f.name!r}"
    trained = {k.split(".")[0] for k, _, _ in BAD_TRAIN}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= trained


def test_a_tpe_storage_with_a_study_is_refused_before_the_run(tmp_path: Path, capsys) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=url, study_name="nasmerc")
    capsys.readouterr()
    refused(tmp_path, capsys, [*RMNAS, "--strategy", "tpe", "--storage", url], "already holds a study 'nasmerc'")
    err = refused(tmp_path, capsys, [*RMNAS, "--strategy", "tpe", "--storage", "mysql+nosuchdriver://u:secret@h/db"],
                  "storage 'mysql+nosuchdriver://u:***@h/db'")
    assert "secret" not in err
