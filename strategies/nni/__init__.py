"""NNI 3.0's strategies on nasmerc's spaces: ``nasmerc search --strategy nni:<name>`` (``docs/nni.md``).

Every nasmerc space is an NNI model space through the adapter of ``strategies/nni/space.py`` (the
space's ``ChoiceContext`` questions answered with ``LayerChoice`` / ``InputChoice`` / ``nni.choice`` /
``nni.uniform``), and NNI's own strategy searches it:

- **one-shot** (``nni:darts``, ``nni:gumbel_darts``, ``nni:proxyless``, ``nni:random_one_shot``,
  ``nni:enas``): NNI turns the model space into its supernet and trains it through a Lightning module
  whose every step is nasmerc's (``Trainer.masked``: the missing-modality mask of the training
  schedule; ``Trainer.loss``: the task loss and the model's auxiliary losses; the trainer's AdamW and
  gradient clipping) and whose every epoch ends with nasmerc's validation (``Trainer.validate``: the
  primary metric averaged over ``train.valid_rates``) of the architecture NNI exports at that point.
  The export of the best validation epoch is the result (``nni.json`` in the run folder, what ``nasmerc
  export`` derives from again), as nasmerc's DARTS keeps the ``alpha`` of its best epoch. As in
  nasmerc's DARTS, the training split is cut in two by ``arch_fraction``: weights train on one part,
  the architecture (DARTS, GumbelDARTS, Proxyless; ENAS' controller) on the other.
- **multi-trial** (``nni:regularized_evolution``, ``nni:tpe``, ``nni:random``, ``nni:policy_based_rl``):
  NNI's strategy proposes samples; each is trained by nasmerc's evaluator exactly like a candidate of
  nasmerc's own population strategies (``candidate_epochs`` epochs, trial ``n`` seeded ``seed + n``,
  ``candidates.jsonl``, one ``trial`` event each), and its best validation value is NNI's metric
  (negated when lower is better: NNI maximises).

NNI is an optional extra (``pip install 'nasmerc[nni]'``): this module imports it only inside a run,
so ``nasmerc list`` and every other strategy work without it, and choosing one of these without NNI
is a one-line error before any run folder exists. NNI's log lines and warnings are kept quiet during
a run. A run of these strategies cannot be resumed (NNI keeps its state in memory).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from nasmerc import checks
from nasmerc.errors import NasmercError
from nasmerc.nas.nni_format import from_nni
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.specs import FloatSpec
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy, require_fixed_values

NNI_FILE = "nni.json"
"""A one-shot run's record of NNI's export at the best validation epoch (``{"strategy", "epoch", "sample"}``)."""

INSTALL = "pip install 'nasmerc[nni]'"


def require_nni(strategy: str) -> None:
    """Refuse ``strategy`` when NNI 3.0 or pytorch-lightning is not installed, saying how to get them."""
    missing = [name for name in ("nni", "pytorch_lightning") if importlib.util.find_spec(name) is None]
    if missing:
        raise NasmercError(f"strategy {strategy!r} needs NNI 3.0 and pytorch-lightning ({', '.join(missing)} not "
                           f"installed): {INSTALL}")


def require_tianshou(strategy: str) -> None:
    """NNI's ENAS and PolicyBasedRL need tianshou (and gym), which the extra does not install."""
    missing = [name for name in ("tianshou", "gym") if importlib.util.find_spec(name) is None]
    if missing:
        raise NasmercError(f"strategy {strategy!r} needs NNI's reinforcement-learning dependencies "
                           f"({', '.join(missing)} not installed): pip install 'tianshou==0.4.11' 'gym==0.26.2' "
                           "(see docs/nni.md)")


# -- configs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OneShotConfig:
    """``arch_fraction``: the share of the training split the architecture (or ENAS' controller) is
    trained on, as nasmerc's DARTS; ``warmup_epochs``: epochs before the architecture steps start."""

    arch_fraction: float = 0.5
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        self.check(f"strategy {self.where!r}")

    where: ClassVar[str] = "nni"

    def check(self, where: str) -> None:
        checks.in_range(where, "arch_fraction", self.arch_fraction, 0.0, 1.0, low_open=True, high_open=True)
        checks.at_least(where, 0, warmup_epochs=self.warmup_epochs)


@dataclass(frozen=True)
class NNIDartsConfig(OneShotConfig):
    """NNI's DARTS (first order): ``arc_learning_rate``, the lr of NNI's architecture optimiser (Adam,
    betas 0.5 / 0.999, weight decay 1e-3; NNI's default 3e-4)."""

    arc_learning_rate: float = 3e-4
    where: ClassVar[str] = "nni:darts"

    def check(self, where: str) -> None:
        super().check(where)
        checks.greater_than_zero(where, arc_learning_rate=self.arc_learning_rate)


@dataclass(frozen=True)
class NNIGumbelDartsConfig(NNIDartsConfig):
    """GumbelDARTS: the gumbel-softmax temperature anneals linearly from ``temperature_init`` to
    ``temperature_min`` (NNI's defaults 1.0 / 0.33)."""

    temperature_init: float = 1.0
    temperature_min: float = 0.33
    where: ClassVar[str] = "nni:gumbel_darts"

    def check(self, where: str) -> None:
        super().check(where)
        checks.greater_than_zero(where, temperature_init=self.temperature_init, temperature_min=self.temperature_min)
        if self.temperature_min > self.temperature_init:
            raise NasmercError(f"{where}: temperature_min={self.temperature_min!r}: expected a number <= "
                               f"temperature_init ({self.temperature_init})")


@dataclass(frozen=True)
class NNIProxylessConfig(NNIDartsConfig):
    """Proxyless: DARTS' options; one sampled path per step."""

    where: ClassVar[str] = "nni:proxyless"


@dataclass(frozen=True)
class NNIRandomOneShotConfig:
    """RandomOneShot trains the supernet on uniformly sampled paths over the whole training split; NNI
    exports a random architecture of it (NNI means it as the pre-training of a second search)."""


@dataclass(frozen=True)
class NNIEnasConfig(OneShotConfig):
    """ENAS: ``batches_per_update``, the controller's rewards (one per architecture batch, the batch's
    primary metric) gathered before each of its updates (NNI's default 20)."""

    batches_per_update: int = 20
    where: ClassVar[str] = "nni:enas"

    def check(self, where: str) -> None:
        super().check(where)
        checks.positive(where, batches_per_update=self.batches_per_update)


@dataclass(frozen=True)
class TrialsConfig:
    """``trials``: how many samples NNI's strategy may propose; ``candidate_epochs``: epochs each is trained."""

    trials: int = 8
    candidate_epochs: int = 2
    where: ClassVar[str] = "nni"

    def __post_init__(self) -> None:
        self.check(f"strategy {self.where!r}")

    def check(self, where: str) -> None:
        checks.positive(where, trials=self.trials, candidate_epochs=self.candidate_epochs)


@dataclass(frozen=True)
class NNIRegularizedEvolutionConfig(TrialsConfig):
    """Regularized (aging) evolution: ``population`` individuals (the first ones random), a tournament of
    ``sample_size`` picks each parent, every choice mutates with ``mutation_prob``, ``crossover`` mixes
    two winners; ``dedup`` never trains one sample twice (NNI's defaults 100 / 25 / 0.05 / false / true are
    for thousands of trials)."""

    population: int = 4
    sample_size: int = 2
    mutation_prob: float = 0.5
    crossover: bool = False
    dedup: bool = True
    where: ClassVar[str] = "nni:regularized_evolution"

    def check(self, where: str) -> None:
        super().check(where)
        checks.positive(where, population=self.population, sample_size=self.sample_size)
        if self.sample_size > self.population:
            raise NasmercError(f"{where}: sample_size={self.sample_size!r}: expected an integer <= population "
                               f"({self.population})")
        checks.probability(where, mutation_prob=self.mutation_prob)


@dataclass(frozen=True)
class NNITPEConfig(TrialsConfig):
    """NNI's TPE tuner (seeded with the run's seed)."""

    where: ClassVar[str] = "nni:tpe"


@dataclass(frozen=True)
class NNIRandomConfig(TrialsConfig):
    """NNI's random search; ``dedup`` never trains one sample twice."""

    dedup: bool = True
    where: ClassVar[str] = "nni:random"


@dataclass(frozen=True)
class NNIPolicyBasedRLConfig(TrialsConfig):
    """NNI's PolicyBasedRL (a PPO policy over the choices, by tianshou): ``samples_per_update``, the
    trials between two policy updates (NNI's default 20)."""

    samples_per_update: int = 4
    where: ClassVar[str] = "nni:policy_based_rl"

    def check(self, where: str) -> None:
        super().check(where)
        checks.positive(where, samples_per_update=self.samples_per_update)


# -- strategies -------------------------------------------------------------------------------------
class NNIStrategy(Strategy):
    """Base of the ``nni:*`` strategies: refuses a run without NNI before its folder exists."""

    needs_tianshou: ClassVar[bool] = False

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        require_nni(self.name)
        if self.needs_tianshou:
            require_tianshou(self.name)

    def check_resume(self, run_dir: Path) -> None:
        raise NasmercError(f"--resume {run_dir}: a {self.name!r} run cannot be resumed (NNI keeps its search state in "
                           "memory); start it again with nasmerc search --config "
                           f"{Path(run_dir) / 'config.yaml'}")

    def nni_strategy(self, ctx: SearchContext) -> Any:
        """NNI's strategy object for this run (imports NNI)."""
        raise NotImplementedError


class OneShot(NNIStrategy):
    """An NNI one-shot strategy: the supernet trained through nasmerc's steps (see the module docstring)."""

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        super().check(space, fixed)
        require_fixed_values(space, fixed)

    def search(self, ctx: SearchContext) -> SearchResult:
        from strategies.nni.oneshot import search_one_shot

        return search_one_shot(self, ctx)

    def derive(self, space: SearchSpace, run_dir: Path, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        path = Path(run_dir) / NNI_FILE
        if not path.exists():
            raise NasmercError(f"{path}: no NNI export in this run folder (expected {NNI_FILE} written by an "
                               f"{self.name!r} search)")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NasmercError(f"{path}: not JSON ({exc}); expected the NNI export of an {self.name!r} search") from None
        if not isinstance(record, dict) or not isinstance(record.get("sample"), dict):
            raise NasmercError(f"{path}: expected an object with the NNI sample under 'sample'")
        return from_nni({**fixed, **record["sample"]}, space.choices(fixed), space.inactive(fixed), source=str(path))


class NNIDarts(OneShot):
    name = "nni:darts"
    Config = NNIDartsConfig

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import DARTS

        cfg = self.config
        return DARTS(arc_learning_rate=cfg.arc_learning_rate, warmup_epochs=cfg.warmup_epochs, log_prob_every_n_step=10**9)


class NNIGumbelDarts(OneShot):
    name = "nni:gumbel_darts"
    Config = NNIGumbelDartsConfig

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import GumbelDARTS

        cfg = self.config
        return GumbelDARTS(temperature=(float(cfg.temperature_init), float(cfg.temperature_min)),
                           arc_learning_rate=cfg.arc_learning_rate, warmup_epochs=cfg.warmup_epochs,
                           log_prob_every_n_step=10**9)


class NNIProxyless(OneShot):
    name = "nni:proxyless"
    Config = NNIProxylessConfig

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import Proxyless

        cfg = self.config
        return Proxyless(arc_learning_rate=cfg.arc_learning_rate, warmup_epochs=cfg.warmup_epochs,
                         log_prob_every_n_step=10**9)


class NNIRandomOneShot(OneShot):
    name = "nni:random_one_shot"
    Config = NNIRandomOneShotConfig

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import RandomOneShot

        return RandomOneShot()


class NNIEnas(OneShot):
    name = "nni:enas"
    Config = NNIEnasConfig
    needs_tianshou = True

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from strategies.nni.space import import_rl

        import_rl()
        from nni.nas.strategy import ENAS

        cfg = self.config
        return ENAS(batches_per_update=cfg.batches_per_update, warmup_epochs=cfg.warmup_epochs,
                    reward_metric_name="reward", log_prob_every_n_step=10**9)


class MultiTrial(NNIStrategy):
    """An NNI multi-trial strategy: NNI proposes, nasmerc's evaluator trains (see the module docstring)."""

    shortcuts = ("trials",)
    inputs_as: ClassVar[str] = "choice"
    """How the adapter presents input choices to this strategy (``space.py``)."""

    def search(self, ctx: SearchContext) -> SearchResult:
        from strategies.nni.trials import search_trials

        return search_trials(self, ctx)


class NNIRegularizedEvolution(MultiTrial):
    name = "nni:regularized_evolution"
    Config = NNIRegularizedEvolutionConfig
    shortcuts = ("trials", "population")

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import RegularizedEvolution

        cfg = self.config
        return RegularizedEvolution(population_size=cfg.population, sample_size=cfg.sample_size,
                                    mutation_prob=cfg.mutation_prob, crossover=cfg.crossover, dedup=cfg.dedup,
                                    seed=ctx.seed)


class NNITPE(MultiTrial):
    name = "nni:tpe"
    Config = NNITPEConfig
    inputs_as = "params"  # NNI's TPE takes categorical and uniform parameters only

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import TPE

        return TPE(optimize_mode="maximize", seed=ctx.seed)


class NNIRandom(MultiTrial):
    name = "nni:random"
    Config = NNIRandomConfig

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from nni.nas.strategy import Random

        return Random(dedup=self.config.dedup, seed=ctx.seed)


class NNIPolicyBasedRL(MultiTrial):
    name = "nni:policy_based_rl"
    Config = NNIPolicyBasedRLConfig
    needs_tianshou = True
    inputs_as = "params"  # its policy acts on categorical parameters only

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        super().check(space, fixed)
        for spec in space.choices(fixed):
            if isinstance(spec, FloatSpec) and spec.label not in fixed:
                raise NasmercError(f"strategy {self.name!r}: NNI's policy chooses among categories only; the float "
                                   f"choice {spec.label!r} needs {spec.unresolved_hint()}")

    def nni_strategy(self, ctx: SearchContext) -> Any:
        from strategies.nni.space import import_rl

        import_rl()
        from nni.nas.strategy import PolicyBasedRL

        return PolicyBasedRL(samples_per_update=self.config.samples_per_update)
