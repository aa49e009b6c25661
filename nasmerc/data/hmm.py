"""Exact posteriors of a hidden Markov chain with step-dependent transitions (forward-backward).

The synthetic generator's hidden emotion process is such a chain: its state is either the current
utterance's emotion (``chain``) or the joint emotions of all speakers (``joint``), its transition
matrix at step ``t`` depends on who speaks at ``t`` and ``t - 1``, and the observation at ``t`` is
emitted by the emotion of the current speaker. :func:`label_posteriors` returns
``p(y_t | x_1..x_L)`` for every ``t``; it works in scaled probabilities, so long conversations do
not underflow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def label_posteriors(
    initial: np.ndarray,
    transitions: Sequence[np.ndarray],
    state_labels: Sequence[np.ndarray],
    log_lik: np.ndarray,
) -> np.ndarray:
    """Posterior of each step's label given all observations.

    Args:
        initial: ``[N]`` distribution of the state at step 0.
        transitions: ``L - 1`` matrices ``[N, N]``; ``transitions[t - 1][i, j] = p(z_t = j | z_{t-1} = i)``.
        state_labels: ``L`` int arrays ``[N]``: the label emitted by each state at step ``t``.
        log_lik: ``[L, K]`` log-likelihood of step ``t``'s observation under each label (a step
            with nothing observed has a constant row).

    Returns:
        ``[L, K]`` posterior probabilities of the labels.
    """
    n_steps, n_labels = log_lik.shape
    lik = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    emit = [lik[t, state_labels[t]] for t in range(n_steps)]
    alpha = np.empty((n_steps, initial.shape[0]))
    a = initial * emit[0]
    alpha[0] = a / a.sum()
    for t in range(1, n_steps):
        a = (alpha[t - 1] @ transitions[t - 1]) * emit[t]
        alpha[t] = a / a.sum()
    beta = np.ones_like(alpha)
    for t in range(n_steps - 2, -1, -1):
        b = transitions[t] @ (emit[t + 1] * beta[t + 1])
        beta[t] = b / b.sum()
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    post = np.zeros((n_steps, n_labels))
    for t in range(n_steps):
        np.add.at(post[t], state_labels[t], gamma[t])
    return post
