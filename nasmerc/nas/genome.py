"""Genomes: a space's choice points laid out as a flat list of genes, what population strategies see.

As in PyGlove's regularized evolution, the algorithms see only an *encoded* architecture. A space's
choice points (``SearchSpace.choices(fixed)``) are laid out as a flat list of genes
(:func:`genes`):

- an ``op`` or ``value`` choice is one categorical gene, the index of the chosen candidate;
- an ``input`` choice with ``n_chosen = k`` is ``k`` categorical genes, ``k`` *distinct* input indices
  (their order carries no meaning; :func:`decode` sorts them);
- a ``float`` choice is one real gene in ``[low, high]``.

Labels in ``fixed`` (``--fix``) are not genes: :func:`decode` copies them into every architecture.
Below both the trial loop (``nasmerc.nas.population``) and one-shot evaluation (``nasmerc.nas.oneshot``).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from nasmerc.errors import NasmercError
from nasmerc.nas.specs import ChoiceSpec, Gene

Genome = list
"""A genome is a plain list of genes (ints for categorical genes, floats for float genes); DEAP's
individuals are list subclasses, so they are genomes too."""


def searched(specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> list[ChoiceSpec]:
    """The specs that are genes: every spec whose label is not in ``fixed``."""
    fixed = fixed or {}
    return [s for s in specs if s.label not in fixed]


def genes(specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> list[Gene]:
    """The gene layout of ``specs`` (see the module docstring)."""
    return [gene for i, spec in enumerate(searched(specs, fixed)) for gene in spec.genes(i)]


def encode(arch: Mapping[str, Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> Genome:
    """The genome of ``arch`` (its ``fixed`` labels left out)."""
    genome: Genome = []
    for spec in searched(specs, fixed):
        if spec.label not in arch:
            raise NasmercError(f"architecture: choice {spec.label!r} is missing")
        genome.extend(spec.encode(arch[spec.label]))
    return genome


def decode(genome: Sequence[Any], specs: Sequence[ChoiceSpec], fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture of ``genome``: every label of ``specs``, ``fixed`` ones copied from ``fixed``."""
    fixed = fixed or {}
    layout = genes(specs, fixed)
    if len(genome) != len(layout):
        raise NasmercError(f"genome of {len(genome)} genes for a space of {len(layout)} genes")
    arch: dict[str, Any] = {}
    pos = 0
    for i, spec in enumerate(specs):
        if spec.label in fixed:
            arch[spec.label] = spec.check(fixed[spec.label])
            continue
        n = len(spec.genes(0))
        arch[spec.label] = spec.decode(genome[pos: pos + n])
        pos += n
    return arch


def sample_genome(layout: Sequence[Gene], rng: np.random.Generator) -> Genome:
    """A uniformly random genome: categories uniform, distinct per input choice; floats uniform."""
    genome: Genome = []
    for i, gene in enumerate(layout):
        if gene.kind == "float":
            genome.append(float(rng.uniform(gene.low, gene.high)))
        else:
            taken = {genome[j] for j in range(i) if layout[j].spec == gene.spec}
            free = [c for c in range(gene.size) if c not in taken]
            genome.append(int(free[int(rng.integers(len(free)))]))
    return genome


def neighbours(genome: Sequence[Any], layout: Sequence[Gene]) -> list[Genome]:
    """Every genome one categorical gene away from ``genome``, in gene order then category order: each
    op / value gene set to each of its other categories, each gene of an input choice to each input its
    choice does not hold yet. Float genes are kept (a local search moves over the categories)."""
    out: list[Genome] = []
    for i, gene in enumerate(layout):
        if gene.kind == "float":
            continue
        taken = {genome[j] for j in range(len(layout)) if layout[j].spec == gene.spec}
        for category in range(gene.size):
            if category not in taken:
                out.append([*genome[:i], category, *genome[i + 1:]])
    return out


def sample_arch(specs: Sequence[ChoiceSpec], rng: np.random.Generator,
                fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A uniformly random architecture of ``specs`` (``fixed`` labels as given)."""
    return decode(sample_genome(genes(specs, fixed), rng), specs, fixed)


# -- proposers and the one trial loop ---------------------------------------------------------------


def arch_key(arch: Mapping[str, Any]) -> str:
    """The identity of an architecture (or of some of its choices): its labels and choices as one
    string, whatever their order, for telling candidates apart."""
    return json.dumps(arch, sort_keys=True, default=str)
