"""The exact Bayes oracle of the synthetic generator, the ceiling every model is measured against.

Two oracles, both given the generator's true parameters and the speakers:

- **full context**: ``p(y_t | all observed modalities of the conversation)`` by forward-backward
  over the hidden emotion process (``nasmerc.data.hmm``);
- **context-free**: ``p(y_t | x_t) ∝ pi(y_t) p(x_t | y_t)``, each utterance alone (the label's
  marginal is ``pi`` at every step).

A missing modality contributes no likelihood. Decisions are Bayes-optimal per metric: the posterior
mode for accuracy (and the WAF reported with it); for regression the posterior median for MAE, the
posterior mean for Corr, the most probable bin for Acc-7 / Acc-5 and the more probable side for the
Acc-2 / F1 pairs (Non0 conditioned on a non-zero label).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from nasmerc import metrics
from nasmerc.data.conversation import Conversation, speaker_roles
from nasmerc.data.hmm import label_posteriors
from nasmerc.data.missing import fixed_masks
from nasmerc.data.process import SyntheticConfig, World


class SyntheticOracle:
    """Exact posteriors and metrics for conversations drawn from one synthetic config."""

    def __init__(self, cfg: SyntheticConfig, world: World) -> None:
        self.cfg = cfg
        self.world = world
        self.prior = cfg.prior
        self._joint_cache: dict[tuple[int, int, int], np.ndarray] = {}

    # -- likelihoods -------------------------------------------------------------------------
    def log_likelihood(self, conv: Conversation, present: np.ndarray | None = None) -> np.ndarray:
        """``[L, K]`` log p(observed modalities of x_t | y_t = k), up to a per-step constant."""
        n, k = len(conv), self.cfg.n_levels
        ll = np.zeros((n, k))
        for j, m in enumerate(self.cfg.modalities):
            z = conv.features[m].astype(np.float64) @ self.world.projections[m]          # [L, r]
            a = self.world.means[m][None, :, :] + self.world.speakers[m][conv.speakers][:, None, :]  # [L, K, r]
            term = np.einsum("lr,lkr->lk", z, a) - 0.5 * (a * a).sum(-1)
            if present is not None:
                term = term * present[:, j : j + 1]
            ll += term
        return ll

    # -- the hidden process ----------------------------------------------------------------
    def _chain_transition(self, same_speaker: bool) -> np.ndarray:
        k, cfg = self.cfg.n_levels, self.cfg
        stay = cfg.inertia + cfg.contagion if same_speaker else cfg.contagion
        return stay * np.eye(k) + (1.0 - stay) * self.prior[None, :]

    def _joint_transition(self, n_roles: int, s: int, p: int) -> np.ndarray:
        """``[K^S, K^S]``: speaker ``s`` updates after ``p`` (keep / copy ``p`` / redraw); others fixed."""
        key = (n_roles, s, p)
        if key not in self._joint_cache:
            k, cfg = self.cfg.n_levels, self.cfg
            states = _joint_states(k, n_roles)                     # [N, S]
            others = [j for j in range(n_roles) if j != s]
            same = np.all(states[:, None, others] == states[None, :, others], axis=-1)
            new = states[None, :, s]
            q = (cfg.inertia * (new == states[:, None, s])
                 + cfg.contagion * (new == states[:, None, p])
                 + (1.0 - cfg.inertia - cfg.contagion) * self.prior[new])
            self._joint_cache[key] = same * q
        return self._joint_cache[key]

    def posterior(self, conv: Conversation, present: np.ndarray | None = None) -> np.ndarray:
        """``[L, K]`` exact posterior of every label given the whole conversation."""
        ll = self.log_likelihood(conv, present)
        roles = speaker_roles(conv.speakers)
        n, k = len(conv), self.cfg.n_levels
        if self.cfg.process == "chain":
            labels = [np.arange(k)] * n
            trans = [self._chain_transition(bool(roles[t] == roles[t - 1])) for t in range(1, n)]
            return label_posteriors(self.prior, trans, labels, ll)
        n_roles = int(roles.max()) + 1
        states = _joint_states(k, n_roles)
        initial = np.prod(self.prior[states], axis=1)
        labels = [states[:, roles[t]] for t in range(n)]
        trans = [self._joint_transition(n_roles, int(roles[t]), int(roles[t - 1])) for t in range(1, n)]
        return label_posteriors(initial, trans, labels, ll)

    def posterior_context_free(self, conv: Conversation, present: np.ndarray | None = None) -> np.ndarray:
        """``[L, K]`` posterior of each label from its own utterance only."""
        ll = self.log_likelihood(conv, present) + np.log(self.prior)[None, :]
        ll -= ll.max(axis=1, keepdims=True)
        p = np.exp(ll)
        return p / p.sum(axis=1, keepdims=True)

    # -- metrics ---------------------------------------------------------------------------
    def evaluate(
        self, conversations: Sequence[Conversation], rates: Sequence[float], seed: int = 0
    ) -> dict[str, dict[float, dict[str, float]]]:
        """Metrics of both oracles at every missing rate, on masks fixed by ``(rate, seed)``.

        The masks are those of ``nasmerc.data.missing.fixed_masks``, the same that ``evaluate``
        applies to a model, so the two are compared on identical inputs.
        """
        out: dict[str, dict[float, dict[str, float]]] = {"full": {}, "context_free": {}}
        n_mod = len(self.cfg.modalities)
        for rate in rates:
            masks = fixed_masks(conversations, n_mod, rate, seed)
            for kind, fn in (("full", self.posterior), ("context_free", self.posterior_context_free)):
                post = np.concatenate([fn(c, pm) for c, pm in zip(conversations, masks)])
                truth = np.concatenate([c.labels for c in conversations])
                out[kind][float(rate)] = self.decide_metrics(post, truth)
        return out

    def decide_metrics(self, post: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """The task's metrics of the Bayes decisions taken from posteriors ``post`` ``[N, K]``."""
        if self.cfg.task == "classification":
            return metrics.classification_metrics(truth.astype(int), post.argmax(1), len(self.cfg.classes),
                                                  list(self.cfg.classes))
        return regression_decisions(post, truth.astype(np.float64))


def regression_decisions(post: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Regression metrics of the per-metric Bayes decisions over the 7 levels ``-3..3``."""
    scores = np.arange(7) - 3.0
    cdf = np.cumsum(post, axis=1)
    decided = {
        "mae": scores[np.argmax(cdf >= 0.5, axis=1)],                    # posterior median
        "corr": post @ scores,                                           # posterior mean
        "acc7": scores[post.argmax(1)],
    }
    bins5 = np.clip(scores, -2, 2)
    p5 = np.stack([post[:, bins5 == b].sum(1) for b in range(-2, 3)], axis=1)
    decided["acc5"] = p5.argmax(1) - 2.0
    p_nonneg = post[:, scores >= 0].sum(1)
    decided["acc2_has0"] = decided["f1_has0"] = np.where(p_nonneg >= 0.5, 1.0, -1.0)
    p_pos, p_neg = post[:, scores > 0].sum(1), post[:, scores < 0].sum(1)
    decided["acc2_non0"] = decided["f1_non0"] = np.where(p_pos > p_neg, 1.0, -1.0)
    return {key: metrics.regression_metrics(truth, pred)[key] for key, pred in decided.items()}


@lru_cache(maxsize=16)
def _joint_states(k: int, n_roles: int) -> np.ndarray:
    """All ``K^S`` joint emotion states as rows of per-speaker labels."""
    grids = np.meshgrid(*[np.arange(k)] * n_roles, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)
