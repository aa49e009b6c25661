"""Evolution: a genetic algorithm over encoded architectures with DEAP, after HAEMSA sec. 3.2.

The algorithm sees only genomes (``nasmerc.nas.population``: categorical genes as indices, float
genes as reals), as in PyGlove's regularized evolution, and is a short chain of operators:

1. generation 1 is ``population`` genomes: the space's named architectures first (the hand-designed
   models' points, ``SearchSpace.named_architectures``; ``warm_start=false`` leaves them out), then
   random ones;
2. every next generation: tournament selection of ``tournament`` individuals
   (``deap.tools.selTournament``, HAEMSA: "k individuals are randomly sampled ... the one with the
   highest fitness is selected"), then for each consecutive pair of offspring, with probability
   ``cx_prob``, :func:`crossover`, then :func:`mutate` on every offspring;
3. offspring whose genome changed are trained for ``candidate_epochs`` and scored on validation.

:func:`crossover` blends float genes as HAEMSA eq. 9, ``p_o = a p_i + (1 - a) p_j`` with one
``a ~ U(0, 1)`` per crossover (the second child takes ``1 - a``), and mixes categorical choices
uniformly: each op / value gene is swapped with probability 0.5, and each input choice as a whole
(its ``k`` distinct indices together), so inputs stay distinct. :func:`mutate` resets each
categorical gene with probability ``mut_prob`` to a uniformly drawn allowed category (an input index
not already chosen by the same choice) and adds Gaussian noise ``N(0, mut_sigma * (high - low))`` to
each float gene with probability ``mut_prob``, clipped to ``[low, high]`` (HAEMSA eq. 10).

A ``tools.HallOfFame(1)`` keeps the best individual ever evaluated; it is the result. The algorithm
is a proposer (``nasmerc.nas.population``): each ``ask`` closes the generation before and breeds the
next, whose changed individuals the evaluator trains (in a process pool with ``--workers N``).
Candidate ``n`` (in evaluation order) trains with seed ``seed + n``, so the result does not depend on
the workers. Every random draw is from generators of this search (``random.Random(seed)`` for the
operators and, separately, for the tournaments; ``numpy`` for generation 1), and the individual class
is made per search, so nothing global is touched. Every generation emits a ``generation`` event: ``generation``, ``generations``, ``best``
(of the hall of fame), ``mean`` (of the population), ``diversity`` and ``best_genome`` (the decoded
hall-of-fame architecture). Diversity is the mean over genes of: for a categorical gene, the share
of distinct values in the population, ``(distinct - 1) / (min(population, categories) - 1)``; for a
float gene, its standard deviation over half its range, capped at 1. It is 0 when the population
has converged to one genome and 1 when every gene is as varied as it can be.

**Weights** (``weights=evolve``, HAEMSA sec. 3.2: "the structure and weights of the hierarchical
experts are optimized through an evolutionary process"). Every individual carries its weights.
Generation 1 trains from its seeded initialisation for ``candidate_epochs``; an offspring starts from
weights made by the paper's operators (``nasmerc.nas.population``) and trains ``weight_epochs``
(default ``candidate_epochs``; 0 scores the evolved weights as they are: the paper gives no budget):
crossover blends the parents' parameters by eq. 9 with the crossover's ``alpha`` (the first child
``alpha w_i + (1 - alpha) w_j``, the second ``alpha w_j + (1 - alpha) w_i``, as the float genes), and
mutation adds ``N(0, weight_sigma)`` to each weight with probability ``mut_prob`` (eq. 10). The paper
is silent on parents of different architectures: the operators act on the parameters both parents
hold by name and shape; every other tensor comes from the fitter parent (else the other, else the
offspring's fresh initialisation). With weight mutation on, every offspring is evaluated again. The
fitness is the paper's eq. 8, the mean validation loss ``1/|D_val| sum L(p(x), y)`` (lower is fitter;
``fitness=auto`` takes it with ``weights=evolve`` and the validation metric otherwise), and the result
is the hall of fame's architecture *with its weights*, written as ``model.pt``. Trained weights are
kept in the run folder (``weights/``), so a resumed run replays exactly.

**One-shot** (``evaluation=oneshot``, ``nasmerc.nas.oneshot``): every generation is scored with a
supernet's weights instead of being trained; ``finalists`` (default 3) are retrained from scratch.

**Through a study** (``storage``, ``study``; see ``nasmerc.nas.storage`` and ``nasmerc.study`` for
how workers claim, beat and retry trials). ``nasmerc search --strategy evolution --storage URL --study
NAME`` on many machines runs one evolution. DEAP still selects, crosses and mutates, in every worker:
each holds a replica of the algorithm (same seed, same operators, generation 1 made at start), and
the study holds what the replicas must agree on:

- every individual to evaluate is a trial with user attributes ``slot`` (its evaluation number
  ``n``, trained with seed ``seed + n``, as one process numbers them), ``generation``, ``genome``
  and ``arch``, and once told its value;
- a generation is closed when all its slots are done (a lost one gets the worst fitness). Every
  replica then closes it (hall of fame, ``generation`` event) and breeds the next from the same
  fitnesses, so every worker holds the same next generation, and checks each enqueued genome
  against its own;
- *who enqueues it*: after each generation's individuals the study holds a **breeding slot**, a
  ``WAITING`` trial with role ``breed`` whose ``slot`` is the next generation's first. A worker claims
  it only once its replica has closed the generation before, and a claim is exclusive (one worker
  moves a trial to ``RUNNING``). The claimer enqueues the new generation's other individuals (those
  not there yet: a breeder that died half way may have enqueued some) and the next breeding slot;
  then the breeding slot itself becomes the generation's first individual, which it trains.
  Generation 1 is bred the same way from the breeding slot the study's creator enqueues. A breeder
  that dies is retried like any trial: its slot comes back ``WAITING`` for another worker.

Each worker's run folder gets the hall of fame's best, and the study's trials, values and best are
those of one process with the same seed. A breeding slot whose generations bring no new individual
up to the last is ended ``FAIL`` with role ``unused``. Without ``study`` the study is named
``nasmerc`` and must not exist yet (one worker).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Mapping, Sequence

from pathlib import Path

import numpy as np
import torch
from deap import base, tools

from nasmerc import checks
from nasmerc.config import plain
from nasmerc.errors import NasmercError
from nasmerc.nas import storage
from nasmerc.nas.specs import Gene
from nasmerc.nas.evaluator import CandidateResult
from nasmerc.nas.oneshot import check_evaluation, finalists_of
from nasmerc.nas.population import (PopulationStrategy, Proposal, Proposer, TrialLog, check_local_steps, check_simplify, climbs, decode,
                                    encode, genes, inherit_weights, perturb_weights, sample_genome, search_result)
from nasmerc.nas.selection import check_finalist_folds, check_parsimony
from nasmerc.nas.space import SearchSpace
from nasmerc.nas.strategy import SearchContext, SearchResult
from nasmerc.study import StudyProposer, individuals, is_individual, slot_records, slot_states


@dataclass(frozen=True)
class EvolutionConfig:
    """Defaults sized for a CPU: about 20 candidates of 2 epochs each (``haemsa`` in under 10 minutes)."""

    population: int = 8
    generations: int = 3
    candidate_epochs: int = 2
    finalists: int | None = None
    """Retrained from scratch at the end; unset: 0, or 3 with ``evaluation=oneshot``."""
    finalist_folds: int = 0
    """Choose between the finalists by cross-validation over this many folds of the training and
    validation conversations (0: on the validation split; ``nasmerc.nas.selection.choose_finalist``)."""
    parsimony: float = 0.0
    """Keep the smallest candidate within this much of the best validation value (0: the best;
    ``nasmerc.nas.selection.parsimonious``)."""
    tournament: int = 3
    cx_prob: float = 0.5
    mut_prob: float = 0.3
    mut_sigma: float = 0.1
    warm_start: bool = True
    storage: str = ""
    study: str = ""
    heartbeat: int = 10
    evaluation: str = "scratch"
    """``scratch`` or ``oneshot`` (``nasmerc.nas.oneshot``)."""
    oneshot_epochs: int = 0
    """The supernet's epochs with ``evaluation=oneshot`` (0: ``train.epochs``)."""
    weights: str = "scratch"
    """``scratch`` (every candidate from its seeded initialisation) or ``evolve`` (module docstring)."""
    weight_sigma: float = 0.01
    weight_epochs: int | None = None
    fitness: str = "auto"
    """``metric`` (validation metric), ``loss`` (HAEMSA eq. 8) or ``auto`` (``loss`` with ``weights=evolve``)."""
    local_steps: int = 0
    """Steps of best-improvement local search from the best candidate (``nasmerc.nas.population.local_search``)."""
    simplify: int = 0
    """Steps of backward elimination from the result, within ``parsimony`` of the best (``nasmerc.nas.population.simplify``)."""
    simplify_by: str = "value"
    """How a simplify step chooses among the removals within ``parsimony``: ``value`` (the best) or
    ``parameters`` (the fewest, as ``parsimony`` chooses)."""
    simplify_moves: str = "removals"
    """What a simplify step tries: ``removals`` (a component left out) or ``smaller`` (also any one
    choice changed to a model with fewer parameters)."""

    def __post_init__(self) -> None:
        where = "strategy 'evolution'"
        checks.at_least(where, 2, population=self.population)  # crossover pairs individuals
        checks.positive(where, generations=self.generations, candidate_epochs=self.candidate_epochs,
                        tournament=self.tournament)
        checks.probability(where, cx_prob=self.cx_prob, mut_prob=self.mut_prob)
        checks.non_negative(where, mut_sigma=self.mut_sigma, weight_sigma=self.weight_sigma)
        storage.check_storage_value(where, self.storage, self.study, self.heartbeat)
        check_evaluation(where, self.evaluation, self.oneshot_epochs, self.finalists, self.study)
        check_finalist_folds(where, self.finalist_folds, finalists_of(self))
        check_parsimony(where, self.parsimony)
        check_local_steps(where, self.local_steps, self.study)
        check_simplify(where, self.simplify, self.study, finalists_of(self), self.evaluation,
                       self.simplify_by, self.simplify_moves)
        checks.one_of(where, "weights", self.weights, WEIGHTS)
        checks.one_of(where, "fitness", self.fitness, FITNESSES)
        if self.weight_epochs is not None:
            checks.at_least(where, 0, weight_epochs=self.weight_epochs)
        if self.weights == "evolve" and self.evaluation == "oneshot":
            raise NasmercError(f"{where}: weights='evolve' with evaluation='oneshot': an individual's own weights "
                               "and a supernet's shared ones exclude each other; choose one")
        after = climbs(self)
        if after and (self.weights == "evolve" or self.fitness_kind == "loss"):
            raise NasmercError(f"{where}: {after} with weights={self.weights!r}, fitness={self.fitness!r}: a local "
                               "search trains architectures from scratch on the metric; use weights='scratch', "
                               "fitness='metric'")
        if self.storage and (self.weights == "evolve" or self.fitness_kind == "loss"):
            raise NasmercError(f"{where}: storage={storage.masked(self.storage)!r} with weights={self.weights!r}, "
                               f"fitness={self.fitness!r}: a study keeps the metric, not weights or losses; drop "
                               "storage or use weights='scratch', fitness='metric'")

    @property
    def fitness_kind(self) -> str:
        """``metric`` or ``loss``: what the individuals' fitness is (``auto`` resolved)."""
        if self.fitness == "auto":
            return "loss" if self.weights == "evolve" else "metric"
        return self.fitness


WEIGHTS = ("scratch", "evolve")
FITNESSES = ("auto", "metric", "loss")


def _groups(layout: Sequence[Gene]) -> dict[int, list[int]]:
    """Gene positions of each choice."""
    out: dict[int, list[int]] = {}
    for pos, gene in enumerate(layout):
        out.setdefault(gene.spec, []).append(pos)
    return out


def crossover(a: list, b: list, layout: Sequence[Gene], rng: random.Random) -> tuple[list, list]:
    """Blend float genes (HAEMSA eq. 9, one ``alpha`` per crossover) and swap categorical choices
    uniformly (an input choice's genes together); in place, returns ``(a, b)``."""
    blend_crossover(a, b, layout, rng)
    return a, b


def blend_crossover(a: list, b: list, layout: Sequence[Gene], rng: random.Random) -> float:
    """:func:`crossover`, returning its ``alpha`` (which the weights of the children blend by too)."""
    alpha = rng.random()
    for positions in _groups(layout).values():
        if layout[positions[0]].kind == "float":
            for p in positions:
                x, y = a[p], b[p]
                a[p], b[p] = alpha * x + (1 - alpha) * y, (1 - alpha) * x + alpha * y
        elif rng.random() < 0.5:
            for p in positions:
                a[p], b[p] = b[p], a[p]
    return alpha


def mutate(genome: list, layout: Sequence[Gene], prob: float, sigma: float, rng: random.Random) -> list:
    """Reset categorical genes / add clipped Gaussian noise to float genes, each with ``prob``; in place."""
    for p, gene in enumerate(layout):
        if rng.random() >= prob:
            continue
        if gene.kind == "float":
            noisy = genome[p] + rng.gauss(0.0, sigma * (gene.high - gene.low))
            genome[p] = float(min(max(noisy, gene.low), gene.high))
        else:
            taken = {genome[q] for q, other in enumerate(layout) if other.spec == gene.spec and q != p}
            genome[p] = rng.choice([c for c in range(gene.size) if c not in taken])
    return genome


def diversity(population: Sequence[Sequence[Any]], layout: Sequence[Gene]) -> float:
    """Mean over genes of the share of distinct values (categorical) or std / half range (float), in [0, 1]."""
    if len(population) < 2 or not layout:
        return 0.0
    shares = []
    for p, gene in enumerate(layout):
        values = [ind[p] for ind in population]
        if gene.kind == "float":
            half = (gene.high - gene.low) / 2
            shares.append(min(float(np.std(values)) / half, 1.0) if half > 0 else 0.0)
        else:
            most = min(len(values), gene.size) - 1
            shares.append((len(set(values)) - 1) / most if most > 0 else 0.0)
    return float(np.mean(shares))


def finite_statistic(fn: Any) -> Any:
    """``fn`` over the finite fitnesses of a generation (a diverged individual's is infinite), ``None``
    when there is none, so the ``generation`` event stays plain JSON."""
    def statistic(values: Sequence[float]) -> float | None:
        kept = np.asarray(values, dtype=float)
        kept = kept[np.isfinite(kept)]
        return float(fn(kept)) if kept.size else None
    return statistic


def individual_class(higher_is_better: bool) -> type:
    """A DEAP individual class for a metric direction: a ``list`` of genes with a ``fitness`` of one
    objective (``deap.base.Fitness``, weight +1 to maximise, -1 to minimise) and the ``trial`` that
    evaluated it. Made per search, so nothing is registered in ``deap.creator``'s global namespace."""
    fitness = type("Fitness", (base.Fitness,), {"weights": (1.0 if higher_is_better else -1.0,)})

    class Individual(list):
        def __init__(self, genes: Sequence[Any] = ()) -> None:
            super().__init__(genes)
            self.fitness = fitness()
            self.trial = 0
            self.weights: dict | None = None  # its trained weights (weights=evolve)
            self.parents: dict | None = None  # where an offspring's weights come from

        def __deepcopy__(self, memo: dict) -> "Individual":
            """A copy sharing the weights (never changed in place: operators make new tensors)."""
            twin = type(self)(self)
            twin.fitness = copy.deepcopy(self.fitness, memo)
            twin.trial, twin.weights, twin.parents = self.trial, self.weights, self.parents
            return twin

    return Individual


def select_tournament(population: Sequence[Any], k: int, size: int, rng: random.Random) -> list:
    """``k`` winners of tournaments of ``size`` individuals drawn with replacement (HAEMSA sec. 3.2: "k
    individuals are randomly sampled ... the one with the highest fitness is selected"): DEAP's
    ``tools.selTournament`` with its draws taken from ``rng`` instead of the global ``random``."""
    return [max((rng.choice(population) for _ in range(size)), key=attrgetter("fitness")) for _ in range(k)]


class EvolutionProposer(Proposer):
    """The generations of the genetic algorithm, asked and told (see the module docstring)."""

    def __init__(self, ctx: SearchContext, cfg: EvolutionConfig) -> None:
        super().__init__(ctx)
        self.cfg = cfg
        self.specs = ctx.space.choices(ctx.fixed)
        self.fixed = dict(ctx.fixed)
        self.layout = genes(self.specs, self.fixed)
        self.fitness = cfg.fitness_kind
        self.evolve = cfg.weights == "evolve"
        higher = ctx.evaluator.higher_is_better if self.fitness == "metric" else False
        Individual = self.Individual = individual_class(higher)
        self.weight_rng = torch.Generator().manual_seed(ctx.seed)  # eq. 10's noise
        self.asked = 0
        self.rng = random.Random(ctx.seed)
        self.select_rng = random.Random(ctx.seed)
        np_rng = np.random.default_rng(ctx.seed)
        toolbox = base.Toolbox()
        toolbox.register("individual", lambda: Individual(sample_genome(self.layout, np_rng)))
        toolbox.register("mate", blend_crossover, layout=self.layout, rng=self.rng)
        toolbox.register("mutate", mutate, layout=self.layout, prob=cfg.mut_prob, sigma=cfg.mut_sigma, rng=self.rng)
        toolbox.register("select", select_tournament, size=cfg.tournament, rng=self.select_rng)
        self.toolbox = toolbox
        self.stats = tools.Statistics(lambda ind: ind.fitness.values[0])
        for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
            self.stats.register(name, finite_statistic(fn))
        self.logbook = tools.Logbook()
        self.logbook.header = ["generation", "evaluations", "mean", "std", "min", "max", "best", "diversity"]
        self.hof = tools.HallOfFame(1)
        self.best_generation = 1
        self.generation = 0
        self.evaluations = 0
        self.population: list = []

    def done(self) -> bool:
        return self.generation == self.cfg.generations

    def ask(self, n: int) -> list[Proposal]:
        """The next generation's individuals whose genome changed (all of generation 1; with
        ``weights=evolve`` those whose weights changed too, each with its starting weights); the
        generation before is closed first."""
        fresh = self.next_generation()
        out = []
        for k, ind in enumerate(fresh):
            arch = decode(ind, self.specs, self.fixed)
            if not self.evolve:
                out.append(Proposal(arch, {"generation": self.generation}, ref=ind))
                continue
            index = self.asked + k
            offspring = ind.parents is not None
            out.append(Proposal(arch, {"generation": self.generation}, ref=ind, index=index, keep=True,
                                init=self._offspring_weights(ind, arch, index) if offspring else None,
                                epochs=self.cfg.weight_epochs if offspring else None))
        self.asked += len(fresh)
        return out

    def _offspring_weights(self, ind: Any, arch: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
        """Eqs. 9-10 on the weights of ``ind``'s parents, for its architecture (module docstring)."""
        model = self.ctx.evaluator.build(arch, seed=self.ctx.evaluator.seed + index)
        fresh = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        names = [name for name, _ in model.named_parameters()]
        p = ind.parents
        if p["other"] is None:
            start = inherit_weights(fresh, names, p["own"])
        else:
            fitter, other = (p["own"], p["other"]) if p["own_fitter"] else (p["other"], p["own"])
            start = inherit_weights(fresh, names, fitter, other, p["alpha"], fitter_is_i=p["own_fitter"])
        return perturb_weights(start, names, self.cfg.weight_sigma, self.cfg.mut_prob, self.weight_rng)

    def next_generation(self) -> list:
        """Close the generation before (if any) and make the next one; its individuals to evaluate."""
        if self.generation:
            self._close_generation()
        self.generation += 1
        if self.generation == 1:
            starts = self._named_genomes()[: self.cfg.population]
            self.population = [*starts, *(self.toolbox.individual() for _ in range(self.cfg.population - len(starts)))]
        else:
            self.population = self._breed(self.population)
        fresh = [ind for ind in self.population if not ind.fitness.valid]
        self.evaluations = len(fresh)
        return fresh

    def _named_genomes(self) -> list:
        """With ``warm_start``, generation 1 begins with the space's named architectures (the hand-designed
        models' points) that agree with ``--fix``, so the search starts from the known designs."""
        if not self.cfg.warm_start:
            return []
        out = []
        for arch in self.ctx.space.named_architectures().values():
            if all(arch.get(label) == value for label, value in self.fixed.items()):
                out.append(self.Individual(encode(arch, self.specs, self.fixed)))
        return out

    def _breed(self, population: list) -> list:
        offspring = [self.toolbox.clone(ind) for ind in self.toolbox.select(population, len(population))]
        for ind in offspring:
            ind.parents = {"own": ind.weights, "other": None, "alpha": None, "own_fitter": True}
        for i in range(1, len(offspring), 2):
            if self.rng.random() < self.cfg.cx_prob:
                a, b = offspring[i - 1], offspring[i]
                alpha = self.toolbox.mate(a, b)
                a_fitter = not b.fitness > a.fitness  # a tie keeps the first
                a.parents = {"own": a.weights, "other": b.weights, "alpha": alpha, "own_fitter": a_fitter}
                b.parents = {"own": b.weights, "other": a.weights, "alpha": alpha, "own_fitter": not a_fitter}
                del a.fitness.values, b.fitness.values
        weights_mutate = self.evolve and self.cfg.mut_prob > 0 and self.cfg.weight_sigma > 0
        for ind in offspring:
            before = list(ind)
            self.toolbox.mutate(ind)
            if (list(ind) != before or weights_mutate) and ind.fitness.valid:
                del ind.fitness.values
        return offspring

    def tell(self, proposal: Proposal, result: CandidateResult, trial: int) -> None:
        value = result.metrics["loss"] if self.fitness == "loss" else result.value
        if result.diverged:  # worse than every candidate that trained, so never selected over one
            value = -math.inf if proposal.ref.fitness.weights[0] > 0 else math.inf
        proposal.ref.fitness.values = (float(value),)
        proposal.ref.trial = trial
        if self.evolve:
            proposal.ref.weights, proposal.ref.parents = result.state, None

    def _close_generation(self) -> None:
        """Update the hall of fame, record the generation and emit its ``generation`` event."""
        previous = self.hof[0].trial if len(self.hof) else None
        self.hof.update(self.population)
        if self.hof[0].trial != previous:
            self.best_generation = self.generation
        best, div = self.hof[0].fitness.values[0], diversity(self.population, self.layout)
        record = self.stats.compile(self.population)
        self.logbook.record(generation=self.generation, evaluations=self.evaluations, best=best, diversity=div,
                            **record)
        extra = {"fitness": "loss"} if self.fitness == "loss" else {}
        self.ctx.events.emit("generation", generation=self.generation, generations=self.cfg.generations, best=best,
                             mean=record["mean"], diversity=div, best_genome=decode(self.hof[0], self.specs, self.fixed),
                             **extra)

    def result(self, log: TrialLog) -> SearchResult:
        logbook = self.last_generation()
        extra = {"fitness": "loss", "best_fitness": self.hof[0].fitness.values[0]} if self.fitness == "loss" else {}
        result = search_result(self.ctx.space, self.ctx.fixed, log, best_epoch=self.best_generation,
                               trial=self.hof[0].trial, logbook=logbook, best_genome=list(self.hof[0]), **extra)
        if self.evolve:  # the fittest individual's architecture and weights (HAEMSA sec. 3.2)
            result.model = self.ctx.evaluator.build(result.arch)
            result.model.load_state_dict(self.hof[0].weights)
            result.extra["weights"] = "evolve"
        return result

    def last_generation(self) -> list[dict[str, Any]]:
        """Close the last generation; the logbook as plain records."""
        self._close_generation()
        return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in self.logbook]


class SharedEvolutionProposer(StudyProposer):
    """The genetic algorithm over a study that workers share (see the module docstring): a replica of
    the algorithm in every worker, generations enqueued by whoever claims their breeding slot."""

    def __init__(self, ctx: SearchContext, strategy: "Evolution") -> None:
        import optuna

        cfg: EvolutionConfig = strategy.config
        self.cfg = cfg
        self.replica = EvolutionProposer(ctx, cfg)
        self.fresh = self.replica.next_generation()  # generation 1, the same in every worker
        self.first = 0  # the slot of self.fresh[0]
        self.finished = False
        self.worst = float("-inf") if ctx.evaluator.higher_is_better else float("inf")
        if ctx.resuming and cfg.storage == "journal":  # made again by the replay, as TPE's
            (Path(ctx.run_dir) / storage.JOURNAL_FILE).unlink(missing_ok=True)
        direction = "maximize" if ctx.evaluator.higher_is_better else "minimize"
        study = storage.SharedStudy(
            ctx, where="strategy 'evolution'", storage=cfg.storage, name=cfg.study or storage.DEFAULT_STUDY,
            join=bool(cfg.study), heartbeat=cfg.heartbeat,
            setup=storage.setup_of(ctx, "evolution", strategy.config_dict()),
            populate=lambda study: study.enqueue(slot=0, role="breed"), directions=[direction],
            sampler=optuna.samplers.RandomSampler(seed=ctx.seed))
        super().__init__(ctx, study, 0)

    def _advance(self, trials: Sequence[Any]) -> None:
        """Bring the replica up to the study: close every generation whose slots are all done or lost
        (a lost individual gets the worst fitness) and breed the next, as one process would."""
        states, records = slot_states(trials), slot_records(trials)
        genomes = {int(t.user_attrs["slot"]): t.user_attrs.get("genome") for t in individuals(trials)}
        while not self.finished:
            slots = range(self.first, self.first + len(self.fresh))
            if any(states.get(slot) not in ("done", "lost") for slot in slots):
                return
            for slot, ind in zip(slots, self.fresh):
                if genomes.get(slot) is not None and list(genomes[slot]) != list(ind):
                    raise NasmercError(f"strategy 'evolution': study {self.shared.name!r}: trial {slot + 1} holds "
                                       f"genome {genomes[slot]}, this worker's generation {self.replica.generation} "
                                       f"has {list(ind)}: were the workers started with other settings?")
                record = records.get(slot)
                ind.fitness.values = (record["value"] if record is not None else self.worst,)
                ind.trial = slot + 1
            if self.replica.generation == self.cfg.generations:
                self.finished = True
                return
            self.first += len(self.fresh)
            self.fresh = self.replica.next_generation()

    def done(self) -> bool:
        self.shared.fail_stale()
        trials = self.shared.trials()
        self._advance(trials)
        if self.finished:  # breeding slots of generations that had no new individual
            for frozen in trials:
                if frozen.state.name == "WAITING" and frozen.user_attrs.get("role") == "breed":
                    trial = self.shared.claim(frozen)
                    if trial is not None:
                        self.shared.discard(trial)
        return self.finished

    def ask(self, n: int) -> list[Proposal]:
        self.shared.fail_stale()
        trials = self.shared.trials()
        self._advance(trials)
        proposals = self._claim(trials, n)
        if not proposals and not self.finished and self.fresh:
            for frozen in trials:
                if frozen.state.name == "WAITING" and frozen.user_attrs.get("role") == "breed" \
                        and int(frozen.user_attrs["slot"]) == self.first:
                    trial = self.shared.claim(frozen)
                    if trial is not None:
                        proposals = [self._breed_into(trial, trials)]
                        proposals += self._claim(self.shared.trials(), n - 1)
                    break
        if not proposals:
            self.shared.pause()
        return proposals

    def _claim(self, trials: Sequence[Any], n: int) -> list[Proposal]:
        out: list[Proposal] = []
        for frozen in trials:
            if len(out) >= n:
                break
            if frozen.state.name == "WAITING" and is_individual(frozen):
                trial = self.shared.claim(frozen)
                if trial is not None:
                    out.append(self.propose(trial, dict(frozen.user_attrs)))
        return out

    def _attrs(self, j: int) -> dict[str, Any]:
        ind = self.fresh[j]
        return {"slot": self.first + j, "role": "individual", "generation": self.replica.generation,
                "arch": plain(decode(ind, self.replica.specs, self.replica.fixed)), "genome": list(ind)}

    def _breed_into(self, trial: Any, trials: Sequence[Any]) -> Proposal:
        """Enqueue this generation's individuals (those not there yet: a breeder that died may have
        enqueued some) and the next generation's breeding slot; ``trial`` becomes the first individual."""
        present = {(int(t.user_attrs["slot"]), t.user_attrs.get("role")) for t in trials if "slot" in t.user_attrs}
        for j in range(1, len(self.fresh)):
            if (self.first + j, "individual") not in present:
                self.shared.enqueue(**self._attrs(j))
        after = self.first + len(self.fresh)
        if self.replica.generation < self.cfg.generations and not any(slot == after for slot, _ in present):
            self.shared.enqueue(slot=after, role="breed")
        attrs = self._attrs(0)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return self.propose(trial, attrs)

    def propose(self, trial: Any, attrs: dict[str, Any]) -> Proposal:
        slot = int(attrs["slot"])
        return Proposal(dict(attrs["arch"]), {"generation": attrs["generation"], "study_trial": slot + 1}, ref=trial,
                        index=slot)

    def result(self, log: TrialLog) -> SearchResult:
        """The hall of fame's best (the same in every worker, and as one process finds it)."""
        logbook = self.replica.last_generation()
        records = self.records()
        best = records.get(self.replica.hof[0].trial - 1)
        return super().result(log, best=best, best_epoch=self.replica.best_generation, logbook=logbook,
                              best_genome=list(self.replica.hof[0]))


class Evolution(PopulationStrategy):
    """A DEAP genetic algorithm over whole architectures (see module docstring)."""

    name = "evolution"
    Config = EvolutionConfig
    shortcuts = ("population", "generations", "storage", "study")

    def check(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        """An outside storage is opened before the run folder is made (see ``nasmerc.nas.storage``)."""
        super().check(space, fixed)
        cfg: EvolutionConfig = self.config
        storage.check_join("strategy 'evolution'", cfg.storage, cfg.study,
                          storage.check_setup("evolution", space, fixed, self.config_dict()))

    def proposer(self, ctx: SearchContext) -> Proposer:
        if self.config.storage:
            return SharedEvolutionProposer(ctx, self)
        return EvolutionProposer(ctx, self.config)

    def config_dict(self) -> dict[str, Any]:
        """The config as run files keep it: a storage password masked."""
        return {**super().config_dict(), "storage": storage.masked(self.config.storage)}

    def check_resume(self, run_dir: Path) -> None:
        storage.refuse_resume(run_dir, self.config.storage, self.config.study)
