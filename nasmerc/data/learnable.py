"""The learnable ceiling: the synthetic generator's parameters estimated from the training split.

The exact oracle (``nasmerc.data.oracle``) knows the true parameters; a model only sees the training
split. Between the two stands the **learnable ceiling**: an estimator that knows the generator's
*family* (modalities, dims, ``latent_dim``, the ``chain`` / ``joint`` process, the number of classes
or levels, ``n_speaker_ids``, the task) but none of its fitted parameters estimates them from the
training conversations, and then takes the exact oracle's forward-backward and Bayes decisions on
the same test masks. The gap from the exact oracle is what a finite training set costs an estimator
that is told the model family; the gap below it is what a model's architecture and training cost.

The emission family is ``x = W_m (mu_m[y] + nu_m[g] + noise) + f e`` (``nasmerc.data.synthetic``).
Per modality the estimator fits, in this order:

1. the signal subspace ``span W_m``: the top ``r = min(latent_dim, D_m)`` principal directions of
   the training features (:func:`principal_subspace`);
2. inside it, additive class means and speaker offsets by least squares (:func:`fit_additive_means`);
3. the residuals' covariance, shrunk by Ledoit-Wolf (:func:`ledoit_wolf`).

The hidden process is fitted from the observed label sequences: the class prior from the label
frequencies (:func:`estimate_prior`) and ``inertia`` / ``contagion`` by maximum likelihood under the
same process (:func:`transition_terms`, :func:`fit_process`).

:class:`LearnableOracle` is a :class:`~nasmerc.data.oracle.SyntheticOracle` built from the fitted
values, so the forward-backward, the context-free posterior and the per-metric decisions are the
exact oracle's own code. The fitted emission is handed to it in whitened coordinates (see
:func:`whitened_world`), which is the form the exact oracle's Gaussian log-likelihood takes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from nasmerc.data.conversation import Conversation, ConversationDataset, speaker_roles
from nasmerc.data.oracle import SyntheticOracle
from nasmerc.data.process import SyntheticConfig, World
from nasmerc.errors import NasmercError


@dataclass(frozen=True)
class ModalityFit:
    """One modality's fitted emission, in the coordinates of its principal basis.

    ``basis`` ``[D, r]`` spans the estimated signal subspace; ``class_means`` ``[K, r]`` and
    ``speaker_offsets`` ``[n_speaker_ids, r]`` are additive (an offset is zero for a speaker absent
    from the training split); ``covariance`` ``[r, r]`` is the residuals' shrunk covariance and
    ``shrinkage`` the Ledoit-Wolf weight of its scaled-identity target.
    """

    basis: np.ndarray
    class_means: np.ndarray
    speaker_offsets: np.ndarray
    covariance: np.ndarray
    shrinkage: float


@dataclass(frozen=True)
class LearnedParameters:
    """Everything the learnable ceiling estimated, and from how much data."""

    prior: np.ndarray
    inertia: float
    contagion: float
    emissions: dict[str, ModalityFit]
    n_conversations: int
    n_utterances: int


# -- the hidden process -----------------------------------------------------------------------
def label_levels(conv: Conversation, task: str) -> np.ndarray:
    """The generator's class of every utterance: the label itself, or ``score + 3`` for regression."""
    if task == "regression":
        return np.rint(conv.labels.astype(np.float64) + 3.0).astype(np.int64)
    return conv.labels.astype(np.int64)


def estimate_prior(levels: Sequence[np.ndarray], n_levels: int) -> np.ndarray:
    """The class prior from the training label frequencies, with one pseudo-count per class.

    The process keeps every label's marginal at the prior, so the frequencies estimate it; the
    pseudo-count (a uniform Dirichlet) keeps a class unseen in a tiny training set possible, and
    shifts the estimate by at most ``K / N``.
    """
    counts = np.zeros(n_levels)
    for y in levels:
        counts += np.bincount(y, minlength=n_levels)
    return (counts + 1.0) / (counts.sum() + n_levels)


def transition_terms(levels: Sequence[np.ndarray], speakers: Sequence[np.ndarray], prior: np.ndarray,
                     process: str) -> tuple[np.ndarray, np.ndarray]:
    """The observed labels' likelihood under the process, as ``p_t = P + i (A - P) + c (B - P)``.

    With the labels observed, every step after the first has probability
    ``i * A + c * B + (1 - i - c) * P`` with ``P = pi[y_t]`` and ``B = [y_t == y_{t-1}]`` (the
    previous utterance's label, copied by contagion), and ``A`` whether ``y_t`` is the emotion that
    inertia keeps:

    - ``chain``: ``A = [y_t == y_{t-1}]`` when the speaker goes on (so ``stay = i + c``), else
      ``A = P`` (a change keeps nothing but the copy, ``stay = c``);
    - ``joint``: ``A = [y_t == y_last]`` with ``y_last`` the current speaker's label at its last
      turn (its emotion since then; the previous label when the speaker goes on); at a speaker's
      first turn its emotion is still its initial draw from ``pi``, independent of everything seen,
      so ``A = P`` exactly.

    The first step's ``pi[y_0]`` does not depend on ``(i, c)`` and is left out. Returns the distinct
    rows ``[n, 3]`` of ``(A, B, P)`` and how often each occurs.
    """
    rows: list[tuple[float, float, float]] = []
    for y, spk in zip(levels, speakers):
        roles = speaker_roles(spk)
        last: dict[int, int] = {int(roles[0]): int(y[0])} if len(y) else {}
        for t in range(1, len(y)):
            s, p_lab, cur = int(roles[t]), float(prior[y[t]]), int(y[t])
            copy = float(cur == y[t - 1])
            if process == "chain":
                keep = copy if roles[t] == roles[t - 1] else p_lab
            else:
                keep = float(cur == last[s]) if s in last else p_lab
            rows.append((keep, copy, p_lab))
            last[s] = cur
    if not rows:
        return np.zeros((0, 3)), np.zeros(0)
    terms, counts = np.unique(np.asarray(rows), axis=0, return_counts=True)
    return terms, counts.astype(np.float64)


def process_log_likelihood(inertia: np.ndarray, contagion: np.ndarray, terms: np.ndarray,
                           counts: np.ndarray) -> np.ndarray:
    """``sum_t log p_t`` of the labelled training sequences at each ``(inertia, contagion)``."""
    i, c = np.asarray(inertia, np.float64)[..., None], np.asarray(contagion, np.float64)[..., None]
    a, b, p = terms[:, 0], terms[:, 1], terms[:, 2]
    with np.errstate(divide="ignore"):
        return (counts * np.log(np.maximum(p + i * (a - p) + c * (b - p), 0.0))).sum(-1)


def fit_process(terms: np.ndarray, counts: np.ndarray, levels: int = 5) -> tuple[float, float]:
    """Maximum-likelihood ``(inertia, contagion)`` on the triangle ``i, c >= 0, i + c <= 1``.

    The log-likelihood is a sum of logs of affine functions, hence concave, so a grid at step 0.01
    followed by ``levels - 1`` zooms (each ten times finer, around the best point) finds its maximum
    to ``10^-(levels + 1)``, deterministically and without an optimiser dependency. When no step
    tells the two apart (every ``A == B``: a monologue, where the speaker always goes on), only
    ``i + c`` is identified; it is given to inertia and contagion is 0, since contagion is only
    seen at a change of speaker.
    """
    free_c = bool(np.any(terms[:, 0] != terms[:, 1])) if len(terms) else False
    best, step = (0.0, 0.0), 0.01
    for level in range(levels):
        if level:
            step /= 10.0
            axis_i, axis_c = best[0] + step * np.arange(-10, 11), best[1] + step * np.arange(-10, 11)
        else:
            axis_i = axis_c = np.arange(0.0, 1.0 + step / 2, step)
        gi, gc = np.meshgrid(axis_i, axis_c if free_c else np.zeros(1), indexing="ij")
        gi, gc = gi.ravel(), gc.ravel()
        ok = (gi >= 0) & (gc >= 0) & (gi + gc <= 1.0 + 1e-12)
        gi, gc = gi[ok], np.minimum(gc[ok], 1.0 - gi[ok])
        j = int(np.argmax(process_log_likelihood(gi, gc, terms, counts)))
        best = (float(gi[j]), float(gc[j]))
    return round(best[0], levels + 1), round(best[1], levels + 1)


# -- the emissions ----------------------------------------------------------------------------
def principal_subspace(x: np.ndarray, r: int) -> np.ndarray:
    """``[D, r]`` orthonormal basis of the top ``r`` eigenvectors of the uncentred second moment.

    Every feature's covariance is ``(1 - f^2) W W^T + f^2 I`` around a mean ``W (mu[y] + nu[g])``,
    so the second moment ``E[x x^T]`` has eigenvalues above ``f^2`` exactly on ``span W`` and ``f^2``
    elsewhere. It is not centred: the generator adds no offset outside ``span W``, so the global mean
    lies in the subspace and counts as signal (centring gives the same subspace in the limit; on the
    presets the two ceilings agree to 0.0003). With fewer rows than dims the same eigenvectors come
    from the smaller ``[n, n]`` Gram matrix, ``v = X^T u / |X^T u|``.
    """
    n, d = x.shape
    if r <= n < d:
        values, vectors = np.linalg.eigh(x @ x.T)
        if values[-r] > 1e-12 * max(values[-1], 1e-300):
            v = x.T @ vectors[:, ::-1][:, :r]
            return v / np.linalg.norm(v, axis=0, keepdims=True)
    _, vectors = np.linalg.eigh(x.T @ x / max(n, 1))    # ascending eigenvalues
    return vectors[:, ::-1][:, :r].copy()


def fit_additive_means(z: np.ndarray, levels: np.ndarray, speakers: np.ndarray, n_levels: int,
                       n_speakers: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``[K, r]`` and speaker offsets ``[G, r]`` of ``z ~ a[y] + b[g]`` by least squares.

    The additive model is the generator's own (``mu_m[y] + nu_m[g]``), with ``K + G - 1`` free vectors
    against ``K G`` for class x speaker cell means, which would be noisier and undefined for the
    cells a training split leaves empty (MELD's rare classes over nine speakers). The split between
    ``a`` and ``b`` is fixed by centring the offsets of the speakers seen in training, so an unseen
    speaker gets the seen speakers' mean offset (``b = 0``); a class unseen in training (tiny splits
    only) gets the mean of the seen classes' means.
    """
    n = len(z)
    design = np.zeros((n, n_levels + n_speakers))
    design[np.arange(n), levels] = 1.0
    design[np.arange(n), n_levels + speakers] = 1.0
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    means, offsets = coef[:n_levels].copy(), coef[n_levels:].copy()
    seen_spk = np.bincount(speakers, minlength=n_speakers) > 0
    shift = offsets[seen_spk].mean(axis=0)
    offsets[seen_spk] -= shift
    offsets[~seen_spk] = 0.0
    means += shift
    seen_cls = np.bincount(levels, minlength=n_levels) > 0
    if not seen_cls.all():
        means[~seen_cls] = means[seen_cls].mean(axis=0)
    return means, offsets


def ledoit_wolf(residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage of ``residuals``' covariance (zero-mean by construction) toward ``mu I``.

    ``S = E^T E / n`` shrunk by ``s = min(b^2, d^2) / d^2`` with ``d^2 = ||S - mu I||^2`` and
    ``b^2 = (sum_k |e_k|^4 / n - ||S||^2) / n`` (Ledoit and Wolf, 2004, the estimator of
    ``sklearn.covariance.ledoit_wolf`` with ``assume_centered=True``). The generator's residual is
    the same for every class and speaker, so one shrunk covariance is pooled over all of them; the
    ``K + G`` fitted means cost ``(K + G) / n`` of its scale (0.7 % on mosi, less elsewhere).
    """
    n, p = residuals.shape
    s = residuals.T @ residuals / n
    mu = np.trace(s) / p
    d2 = float(((s - mu * np.eye(p)) ** 2).sum())
    b2 = float((((residuals**2).sum(1) ** 2).sum() / n - (s**2).sum()) / n)
    shrink = 0.0 if d2 == 0.0 else min(b2, d2) / d2
    return (1.0 - shrink) * s + shrink * mu * np.eye(p), shrink


def fit_emission(x: np.ndarray, levels: np.ndarray, speakers: np.ndarray, r: int, n_levels: int,
                 n_speakers: int) -> ModalityFit:
    """One modality's subspace, additive means and shrunk residual covariance (steps 1 to 3)."""
    basis = principal_subspace(x, r)
    z = x @ basis
    means, offsets = fit_additive_means(z, levels, speakers, n_levels, n_speakers)
    cov, shrink = ledoit_wolf(z - means[levels] - offsets[speakers])
    return ModalityFit(basis, means, offsets, cov, shrink)


def whitened_world(emissions: dict[str, ModalityFit]) -> World:
    """The fitted emissions as a :class:`World` in whitened coordinates.

    The exact oracle scores ``z . a - 0.5 |a|^2`` with ``z = x P`` and ``a = means[y] + speakers[g]``,
    the Gaussian log-likelihood when the noise in ``z`` is unit. With the fitted covariance
    ``S = L L^T``, ``P = V L^-T`` and means and offsets multiplied by ``L^-T`` give
    ``z^T S^-1 a - 0.5 a^T S^-1 a`` in the principal coordinates ``V^T x``: the fitted Gaussian
    log-likelihood, up to terms that do not depend on the label. (``P`` is therefore not
    orthonormal, unlike the drawn world's projections.)
    """
    means, speakers, projections = {}, {}, {}
    for m, fit in emissions.items():
        inv_lt = np.linalg.inv(np.linalg.cholesky(fit.covariance)).T
        projections[m] = fit.basis @ inv_lt
        means[m] = fit.class_means @ inv_lt
        speakers[m] = fit.speaker_offsets @ inv_lt
    return World(means, speakers, projections)


# -- the oracle -------------------------------------------------------------------------------
class LearnableOracle(SyntheticOracle):
    """The exact oracle's posteriors and decisions under parameters fitted on the training split.

    Build it with :meth:`fit` (a dataset) or :meth:`fit_conversations` (a structure and training
    conversations); ``evaluate``, ``posterior`` and ``posterior_context_free`` are the exact oracle's.
    Its ``cfg`` is the structure with the fitted ``class_prior``, ``inertia`` and ``contagion``; the
    config's other parameters (``snr``, ``speaker_effect``, ``feature_noise``, the seed) are never
    read: the oracle's likelihood reads only ``world``, which is fitted.
    """

    def __init__(self, cfg: SyntheticConfig, world: World, params: LearnedParameters) -> None:
        super().__init__(cfg, world)
        self.params = params

    @classmethod
    def fit(cls, dataset: ConversationDataset) -> "LearnableOracle":
        """Fit on ``dataset``'s training split only; the structure comes from its synthetic config."""
        cfg = getattr(dataset.oracle, "cfg", None)
        if not isinstance(cfg, SyntheticConfig):
            raise NasmercError(f"dataset {dataset.name!r}: the learnable ceiling needs synthetic data "
                               "(its model family is the generator's)")
        return cls.fit_conversations(cfg, dataset.split("train"))

    @classmethod
    def fit_conversations(cls, structure: SyntheticConfig, train: Sequence[Conversation]) -> "LearnableOracle":
        """Estimate every parameter from ``train`` given the family ``structure`` describes.

        From ``structure`` only the family is read: modalities, dims, ``latent_dim``, ``process``,
        the classes (their number), ``n_speaker_ids`` and the task. Deterministic.
        """
        if not train:
            raise NasmercError("the learnable ceiling needs at least one training conversation")
        k, n_spk = structure.n_levels, structure.n_speaker_ids
        levels = [label_levels(c, structure.task) for c in train]
        speakers = [np.asarray(c.speakers, dtype=np.int64) for c in train]
        prior = estimate_prior(levels, k)
        inertia, contagion = fit_process(*transition_terms(levels, speakers, prior, structure.process))
        y, g = np.concatenate(levels), np.concatenate(speakers)
        emissions = {}
        for m in structure.modalities:
            x = np.concatenate([c.features[m] for c in train]).astype(np.float64)
            r = min(structure.latent_dim, structure.dims[m])
            emissions[m] = fit_emission(x, y, g, r, k, n_spk)
        params = LearnedParameters(prior, inertia, contagion, emissions, len(train), int(len(y)))
        cfg = replace(structure, class_prior=tuple(float(p) for p in prior), inertia=inertia, contagion=contagion)
        return cls(cfg, whitened_world(emissions), params)

    def summary(self) -> dict[str, float | int | list[float]]:
        """The fitted process parameters and the data they came from, JSON-ready."""
        p = self.params
        return {"fit_split": "train", "conversations": p.n_conversations, "utterances": p.n_utterances,
                "inertia": p.inertia, "contagion": p.contagion, "prior": [float(v) for v in p.prior]}
