"""Evolution: a genetic algorithm over encoded architectures with DEAP, after HAEMSA sec. 3.2.

The algorithm sees only genomes (``nasmerc.nas.population``: categorical genes as indices, float
genes as reals), as in PyGlove's regularized evolution, and is a short chain of operators:

1. generation 1 is ``population`` random genomes;
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

A ``tools.HallOfFame(1)`` keeps the best individual ever evaluated; it is the result. Fitness is
evaluated through ``toolbox.map``: the builtin ``map`` with ``workers = 1``, else the ``map`` of a
``ProcessPoolExecutor`` (spawned workers, same torch thread count) over picklable candidate tasks.
Candidate ``n`` (in evaluation order) trains with seed ``seed + n``, so the result does not depend on
``workers``. Every generation emits a ``generation`` event: ``generation``, ``generations``, ``best``
(of the hall of fame), ``mean`` (of the population), ``diversity`` and ``best_genome`` (the decoded
hall-of-fame architecture). Diversity is the mean over genes of: for a categorical gene, the share
of distinct values in the population, ``(distinct - 1) / (min(population, categories) - 1)``; for a
float gene, its standard deviation over half its range, capped at 1. It is 0 when the population
has converged to one genome and 1 when every gene is as varied as it can be.
"""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from deap import base, creator, tools

from nasmerc import metrics
from nasmerc.errors import NasmercError
from nasmerc.nas.population import (CandidateTask, Gene, TrialLog, check_positive, decode, evaluate_task, genes,
                                    init_worker, sample_genome, search_result)
from nasmerc.nas.strategy import SearchContext, SearchResult, Strategy


@dataclass(frozen=True)
class EvolutionConfig:
    """Defaults sized for a CPU: about 20 candidates of 2 epochs each (``haemsa`` in under 10 minutes)."""

    population: int = 8
    generations: int = 3
    candidate_epochs: int = 2
    tournament: int = 3
    cx_prob: float = 0.5
    mut_prob: float = 0.3
    mut_sigma: float = 0.1
    workers: int = 1


def individual_class(higher_is_better: bool) -> type:
    """DEAP's individual class for a metric direction, created once in ``deap.creator``."""
    suffix = "Max" if higher_is_better else "Min"
    if not hasattr(creator, f"NasmercFitness{suffix}"):
        creator.create(f"NasmercFitness{suffix}", base.Fitness, weights=(1.0 if higher_is_better else -1.0,))
    if not hasattr(creator, f"NasmercGenome{suffix}"):
        creator.create(f"NasmercGenome{suffix}", list, fitness=getattr(creator, f"NasmercFitness{suffix}"),
                       trial=0)
    return getattr(creator, f"NasmercGenome{suffix}")


def _groups(layout: Sequence[Gene]) -> dict[int, list[int]]:
    """Gene positions of each choice."""
    out: dict[int, list[int]] = {}
    for pos, gene in enumerate(layout):
        out.setdefault(gene.spec, []).append(pos)
    return out


def crossover(a: list, b: list, layout: Sequence[Gene], rng: random.Random) -> tuple[list, list]:
    """Blend float genes (HAEMSA eq. 9, one ``alpha`` per crossover) and swap categorical choices
    uniformly (an input choice's genes together); in place, returns ``(a, b)``."""
    alpha = rng.random()
    for positions in _groups(layout).values():
        if layout[positions[0]].kind == "float":
            for p in positions:
                x, y = a[p], b[p]
                a[p], b[p] = alpha * x + (1 - alpha) * y, (1 - alpha) * x + alpha * y
        elif rng.random() < 0.5:
            for p in positions:
                a[p], b[p] = b[p], a[p]
    return a, b


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


class Evolution(Strategy):
    """A DEAP genetic algorithm over whole architectures (see module docstring)."""

    name = "evolution"
    Config = EvolutionConfig

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg: EvolutionConfig = self.config
        check_positive(self.name, population=cfg.population, generations=cfg.generations,
                       candidate_epochs=cfg.candidate_epochs, tournament=cfg.tournament, workers=cfg.workers)
        for name in ("cx_prob", "mut_prob"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise NasmercError(f"strategy 'evolution': {name}={getattr(cfg, name)}: expected a number in [0, 1]")
        if cfg.mut_sigma < 0:
            raise NasmercError(f"strategy 'evolution': mut_sigma={cfg.mut_sigma}: expected a number >= 0")
        state = random.getstate()  # selTournament draws from the global `random`: seed it, then restore
        random.seed(ctx.seed)
        try:
            if cfg.workers == 1:
                return self._evolve(ctx, map)
            with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=init_worker, initargs=(torch.get_num_threads(),)) as pool:
                return self._evolve(ctx, pool.map)
        finally:
            random.setstate(state)

    def _evolve(self, ctx: SearchContext, map_fn: Callable) -> SearchResult:
        cfg: EvolutionConfig = self.config
        specs = ctx.space.choices(ctx.fixed)
        fixed = dict(ctx.fixed)
        layout = genes(specs, fixed)
        metric = metrics.primary_metric(ctx.dataset.signature.task)
        Individual = individual_class(metrics.HIGHER_IS_BETTER[metric])
        rng = random.Random(ctx.seed)
        np_rng = np.random.default_rng(ctx.seed)
        log = TrialLog(metric, ctx.events)

        toolbox = base.Toolbox()
        toolbox.register("map", map_fn)
        toolbox.register("evaluate", evaluate_task)
        toolbox.register("individual", lambda: Individual(sample_genome(layout, np_rng)))
        toolbox.register("mate", crossover, layout=layout, rng=rng)
        toolbox.register("mutate", mutate, layout=layout, prob=cfg.mut_prob, sigma=cfg.mut_sigma, rng=rng)
        toolbox.register("select", tools.selTournament, tournsize=cfg.tournament)

        stats = tools.Statistics(lambda ind: ind.fitness.values[0])
        for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
            stats.register(name, fn)
        logbook = tools.Logbook()
        logbook.header = ["generation", "evaluations", "mean", "std", "min", "max", "best", "diversity"]
        hof = tools.HallOfFame(1)
        best_generation = 1

        def evaluate(individuals: list, generation: int) -> int:
            archs = [decode(ind, specs, fixed) for ind in individuals]
            first = len(log.trials)
            tasks = [CandidateTask(ctx.space, ctx.dataset, ctx.train, arch, cfg.candidate_epochs, str(ctx.device),
                                   ctx.seed + first + k) for k, arch in enumerate(archs)]
            for ind, arch, result in zip(individuals, archs, toolbox.map(toolbox.evaluate, tasks)):
                ind.fitness.values = (result.value,)
                ind.trial = log.add(arch, result, generation=generation)["trial"]
            return len(tasks)

        population = [toolbox.individual() for _ in range(cfg.population)]
        for generation in range(1, cfg.generations + 1):
            if generation > 1:
                offspring = [toolbox.clone(ind) for ind in toolbox.select(population, len(population))]
                for i in range(1, len(offspring), 2):
                    if rng.random() < cfg.cx_prob:
                        toolbox.mate(offspring[i - 1], offspring[i])
                        del offspring[i - 1].fitness.values, offspring[i].fitness.values
                for i, ind in enumerate(offspring):
                    before = list(ind)
                    toolbox.mutate(ind)
                    if list(ind) != before:
                        del ind.fitness.values
                population = offspring
            n_evals = evaluate([ind for ind in population if not ind.fitness.valid], generation)
            previous = hof[0].trial if len(hof) else None
            hof.update(population)
            if hof[0].trial != previous:
                best_generation = generation
            best, div = hof[0].fitness.values[0], diversity(population, layout)
            record = stats.compile(population)
            logbook.record(generation=generation, evaluations=n_evals, best=best, diversity=div, **record)
            ctx.events.emit("generation", generation=generation, generations=cfg.generations, best=best,
                            mean=record["mean"], diversity=div, best_genome=decode(hof[0], specs, fixed))
        return search_result(ctx.space, ctx.fixed, log, best_epoch=best_generation, trial=hof[0].trial,
                             logbook=[{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in logbook], best_genome=list(hof[0]))
