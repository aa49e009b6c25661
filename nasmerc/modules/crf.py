"""Structured output layers for emotion sequences: exact posterior marginals by forward-backward.

A conversation's emotions are not independent given its utterances: a speaker's emotion persists
between their turns and spreads to the listener. The layers here turn per-utterance emission scores
``e_t(y)`` (any model's logits) into the log posterior marginals ``log p(y_t | x_1..x_T)`` of a
conditional random field over the conversation, computed exactly by the forward-backward recursions
in log space; trained with the usual cross-entropy, the loss is the marginal negative log-likelihood
of every label. Both take ``(emissions [B, L, K], mask [B, L], speakers [B, L])`` and return
``[B, L, K]`` log-probabilities (zeros on padding rows).

- :class:`ChainCRF`, a linear-chain CRF over the utterance labels (the emotion-sequence tagging view
  of CESTa, Wang et al. 2020), with one transition matrix for a turn kept by the same speaker and one
  for a change of speaker, so that it can tell inertia from contagion. Any number of speakers.
- :class:`PartyCRF`, party states made exact (DialogueRNN's idea of one emotional state per party):
  the hidden state is the pair of both parties' current emotions, ``K^2`` states for a dyad; when
  party ``s`` speaks, ``s``'s emotion moves by a learned potential of (its own last emotion, the other
  party's emotion) and the other party's is kept; the utterance is emitted from the speaker's
  emotion. Dyadic data only (speakers 0 and 1: :func:`structure_names` offers it when the data
  signature has two speakers).

Potentials are learned, initialised at zero (every transition equally likely), so an untrained layer
returns the per-utterance softmax of the emissions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SCALE = 10.0
"""The potentials are ``SCALE * theta`` with ``theta`` the parameters: a learning-rate multiplier (Caffe's
``lr_mult``) of 10 under Adam, whose steps do not depend on the gradient's scale. Log-potentials of
emotion transitions are of order 1-5 and at the default learning rate (1e-3) would take thousands of
steps to get there; the network's weights keep the trainer's rate."""


def forward_backward(emissions: Tensor, transitions: Tensor, start: Tensor, mask: Tensor) -> Tensor:
    """``log alpha_t(s) + log beta_t(s)`` of a chain over ``S`` states, ``[B, L, S]``: ``emissions`` ``[B, L, S]``,
    ``transitions`` ``[B, L, S, S]`` (the log-potential of the step into row ``t``, from, to; row 0's is not
    read), ``start`` ``[S]`` (row 0's prior). On padding rows (``mask`` false) the forward message is
    carried on unchanged and the backward one is zero, so a row's sum over states is ``log Z``."""
    b, length, states = emissions.shape
    alphas = [start + emissions[:, 0]]
    for t in range(1, length):
        step = torch.logsumexp(alphas[-1].unsqueeze(-1) + transitions[:, t], dim=1) + emissions[:, t]
        alphas.append(torch.where(mask[:, t].unsqueeze(-1), step, alphas[-1]))
    betas = [torch.zeros(b, states, device=emissions.device)]
    for t in range(length - 2, -1, -1):
        nxt = transitions[:, t + 1] + (emissions[:, t + 1] + betas[0]).unsqueeze(1)  # [B, from, to]
        step = torch.logsumexp(nxt, dim=2)
        betas.insert(0, torch.where(mask[:, t + 1].unsqueeze(-1), step, torch.zeros_like(step)))
    return torch.stack(alphas, 1) + torch.stack(betas, 1)


class ChainCRF(nn.Module):
    """Linear-chain CRF with speaker-kept / speaker-changed transitions (module docstring)."""

    def __init__(self, n_classes: int, scale: float = SCALE) -> None:
        super().__init__()
        self.scale = float(scale)
        self.start_ = nn.Parameter(torch.zeros(n_classes))
        self.transitions_ = nn.Parameter(torch.zeros(2, n_classes, n_classes))  # [same / changed, from, to]

    @property
    def start(self) -> Tensor:
        return self.scale * self.start_

    @property
    def transitions(self) -> Tensor:
        return self.scale * self.transitions_

    def forward(self, emissions: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        e = emissions.float()
        b, length, _ = e.shape
        changed = torch.zeros(b, length, dtype=torch.long, device=e.device)
        if length > 1:
            changed[:, 1:] = (speakers[:, 1:] != speakers[:, :-1]).long()
        joint = forward_backward(e, self.transitions[changed], self.start, mask)  # [B, L, K]
        out = joint - torch.logsumexp(joint, dim=-1, keepdim=True)
        return out * mask.unsqueeze(-1)


class PartyCRF(nn.Module):
    """CRF over both parties' emotions of a dyad (module docstring)."""

    def __init__(self, n_classes: int, scale: float = SCALE) -> None:
        super().__init__()
        k = n_classes
        self.k = k
        self.scale = float(scale)
        self.start_ = nn.Parameter(torch.zeros(k, k))  # [emotion of party 0, emotion of party 1]
        # [speaking party, its last emotion, the other party's emotion, its new emotion]
        self.moves_ = nn.Parameter(torch.zeros(2, k, k, k))

    @property
    def start(self) -> Tensor:
        return self.scale * self.start_

    @property
    def moves(self) -> Tensor:
        return self.scale * self.moves_

    def _transition(self, party: int) -> Tensor:
        """The ``[K^2, K^2]`` log-potential of a turn by ``party`` (the other's emotion is kept)."""
        k = self.k
        own_other_new = torch.log_softmax(self.moves[party], dim=-1)  # [own, other, new]
        full = torch.full((k, k, k, k), float("-inf"), device=self.moves.device)
        idx = torch.arange(k, device=self.moves.device)
        if party == 0:  # state (e0, e1) -> (new, e1)
            full[:, idx, :, idx] = own_other_new.permute(1, 0, 2)  # [e1, e0, new] at (e0, e1, new, e1)
        else:  # state (e0, e1) -> (e0, new)
            full[idx, :, idx, :] = own_other_new.permute(1, 0, 2)  # [e0, e1, new] at (e0, e1, e0, new)
        return full.reshape(k * k, k * k)

    def _emission(self, e: Tensor, speakers: Tensor) -> Tensor:
        """Per joint state: the speaker's emotion's emission, ``[B, L, K^2]``."""
        k = self.k
        by0 = e.unsqueeze(-1).expand(*e.shape, k).reshape(*e.shape[:-1], k * k)  # state (y, *) -> e[y]
        by1 = e.unsqueeze(-2).expand(*e.shape[:-1], k, k).reshape(*e.shape[:-1], k * k)  # state (*, y) -> e[y]
        return torch.where(speakers.unsqueeze(-1) == 0, by0, by1)

    def forward(self, emissions: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        e = emissions.float()
        b, length, k = e.shape
        trans = torch.stack([self._transition(0), self._transition(1)])  # [2, K^2, K^2]
        em = self._emission(e, speakers)
        party = speakers.clamp(0, 1)
        # the first turn: the start distribution over both emotions, then the speaker's emission
        start = torch.log_softmax(self.start.reshape(-1), 0)
        joint = forward_backward(em, trans[party], start, mask).reshape(b, length, k, k)
        # the marginal of the speaker's emotion: sum out the listener's
        speaker0 = torch.logsumexp(joint, dim=3)
        speaker1 = torch.logsumexp(joint, dim=2)
        own = torch.where(speakers.unsqueeze(-1) == 0, speaker0, speaker1)
        out = own - torch.logsumexp(own, dim=-1, keepdim=True)
        return out * mask.unsqueeze(-1)


class NoStructure(nn.Module):
    """The emission scores as they are: every utterance decided on its own."""

    def forward(self, emissions: Tensor, mask: Tensor, speakers: Tensor) -> Tensor:
        return emissions


#: The output structures a space may offer: name -> constructor taking the number of classes.
STRUCTURES = {"none": lambda k: NoStructure(), "crf": ChainCRF, "party_crf": PartyCRF}


def structure_names(names: tuple[str, ...], task: str, level: str, n_speakers: int) -> tuple[str, ...]:
    """The structures of ``names`` that apply to data of this kind: a CRF needs a classification of
    the utterances of a conversation; the party CRF a dyad (``n_speakers == 2``). ``none`` always applies."""
    if task != "classification" or level != "dialogue":
        return ("none",)
    return tuple(n for n in names if n != "party_crf" or n_speakers == 2) or ("none",)
