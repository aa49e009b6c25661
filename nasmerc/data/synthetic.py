"""Synthetic MERC data with a known generative process, the embedded default dataset.

The process, all of it determined by ``seed``:

1. **Conversations.** Lengths follow a clipped log-normal with the preset's mean and range; each
   conversation draws its speakers from a pool of ``n_speaker_ids`` (2 for IEMOCAP, 9 for MELD, 1
   for the monologues of MOSI / MOSEI), and the next utterance changes speaker with probability
   ``switch_prob``.
2. **Hidden emotions** with inertia and contagion. Let ``i = inertia``, ``c = contagion``,
   ``r = 1 - i - c`` and ``pi`` the class prior.

   - ``process = "joint"`` (dyadic presets): every speaker holds an emotion, all drawn from ``pi``
     at the start. When speaker ``s`` takes the turn after speaker ``p``, ``s`` keeps its emotion
     with probability ``i``, takes ``p``'s with probability ``c`` (contagion) and draws a fresh one
     from ``pi`` with probability ``r``; the others keep theirs. The utterance's label is ``s``'s
     emotion. The exact posterior runs over the ``K^S`` joint states, so ``K^S`` is bounded.
   - ``process = "chain"`` (any number of speakers): the label follows the previous utterance's:
     kept with probability ``i + c`` when the same speaker goes on, copied with probability ``c``
     when the speaker changes, else drawn from ``pi``. It is the joint process with a memory of one
     utterance, tractable for the nine speakers of MELD.

   Both keep the marginal label distribution at ``pi``.
3. **Emissions.** Modality ``m`` of an utterance with label ``y`` by speaker ``g`` is
   ``W_m (snr_m mu_m[y] + speaker_effect nu_m[g] + sqrt(1 - f^2) u) + f e`` with ``u ~ N(0, I_r)``,
   ``e ~ N(0, I_D)`` and ``f = feature_noise``: class means ``mu_m`` and speaker offsets ``nu_m`` of
   unit scale in a ``latent_dim`` space, and ``W_m`` a fixed random projection with orthonormal
   columns into ``D_m`` dimensions. Within the projected subspace the noise has unit variance, so
   ``snr`` alone sets each modality's strength (text strongest, visual weakest: modality imbalance)
   and the Bayes ceiling; ``f`` spreads a little noise over every feature dimension, as real
   features concentrate their variance in a few directions without being exactly low-rank. Regression presets use a
   7-level latent with ordinal means (levels along one direction) and the score ``level - 3``.

Because every part is known, :class:`SyntheticOracle` computes the Bayes posterior of each label
exactly (``nasmerc.data.hmm``), and the context-free posterior of each utterance alone.

Sessions and folds. The IEMOCAP-shaped presets (``iemocap4``, ``iemocap6``) record a session 1-5 for
every conversation (``nasmerc.data.folds.synthetic_sessions``: the test conversations are session 5,
the others fill sessions 1-4), drawn after the fact so the conversations and the default split are
the same as without sessions. ``--set data.fold=K`` (1-5) gives leave-one-session-out fold ``K``
(``nasmerc.data.folds.apply_fold``): test = session ``K``, validation carved from the other sessions
at the preset's own share (``n_valid / (n_train + n_valid)``, seeded by ``seed``); 0 keeps the preset's
split. The sessions group conversations only: the speakers are the preset's speaker pool throughout.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from nasmerc.config import to_plain
from nasmerc.data.conversation import Conversation, ConversationDataset, DataSignature, speaker_roles
from nasmerc.data.folds import apply_fold, check_fold, synthetic_sessions
from nasmerc.data.oracle import SyntheticOracle
from nasmerc.data.process import PRESETS, SyntheticConfig, World, make_config

__all__ = ["PRESETS", "SyntheticConfig", "World", "make_config", "generate", "load"]

SESSION_PRESETS = ("iemocap4", "iemocap6")
"""The presets shaped like IEMOCAP, whose conversations have sessions (and so folds)."""

def _sample_labels(cfg: SyntheticConfig, roles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the hidden emotions of one conversation by the rules in the module docstring."""
    prior, i, c = cfg.prior, cfg.inertia, cfg.contagion
    k = cfg.n_levels
    n = len(roles)
    labels = np.empty(n, dtype=np.int64)
    if cfg.process == "joint":
        emotion = rng.choice(k, size=int(roles.max()) + 1, p=prior)
        labels[0] = emotion[roles[0]]
        for t in range(1, n):
            s, p = roles[t], roles[t - 1]
            u = rng.random()
            if u >= i + c:
                emotion[s] = rng.choice(k, p=prior)
            elif u >= i:
                emotion[s] = emotion[p]
            labels[t] = emotion[s]
        return labels
    labels[0] = rng.choice(k, p=prior)
    for t in range(1, n):
        stay = i + c if roles[t] == roles[t - 1] else c
        labels[t] = labels[t - 1] if rng.random() < stay else rng.choice(k, p=prior)
    return labels


def _sample_speakers(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    n_spk = int(rng.integers(cfg.speakers_min, cfg.speakers_max + 1))
    pool = rng.choice(cfg.n_speaker_ids, size=n_spk, replace=False)
    seq = np.empty(n, dtype=np.int64)
    seq[0] = rng.choice(pool)
    for t in range(1, n):
        if n_spk > 1 and rng.random() < cfg.switch_prob:
            seq[t] = rng.choice(pool[pool != seq[t - 1]])
        else:
            seq[t] = seq[t - 1]
    return seq


def _sample_length(cfg: SyntheticConfig, rng: np.random.Generator) -> int:
    s = cfg.length_spread
    raw = np.exp(rng.normal(np.log(cfg.length_mean) - s * s / 2, s))
    return int(np.clip(round(raw), cfg.length_min, cfg.length_max))


def _emit(world: World, cfg: SyntheticConfig, labels: np.ndarray, speakers: np.ndarray,
          rng: np.random.Generator) -> dict[str, np.ndarray]:
    feats = {}
    for m in cfg.modalities:
        latent = world.means[m][labels] + world.speakers[m][speakers]
        r = latent.shape[1]
        latent = latent + np.sqrt(1.0 - cfg.feature_noise**2) * rng.normal(size=(len(labels), r))
        x = latent @ world.projections[m].T + cfg.feature_noise * rng.normal(size=(len(labels), cfg.dims[m]))
        feats[m] = x.astype(np.float32)
    return feats


def generate(cfg: SyntheticConfig, fold: int = 0) -> ConversationDataset:
    """Draw the train / valid / test conversations of ``cfg`` and attach the exact oracle; with
    ``fold`` 1-5, re-split them into that leave-one-session-out fold (module docstring)."""
    cfg.check()
    where = f"dataset {cfg.preset!r}"
    fold = check_fold(fold, where)
    world = World.draw(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    sessions = (synthetic_sessions(cfg.n_train, cfg.n_valid, cfg.n_test) if cfg.preset in SESSION_PRESETS
                else None)
    splits: dict[str, list[Conversation]] = {}
    for split, count in (("train", cfg.n_train), ("valid", cfg.n_valid), ("test", cfg.n_test)):
        convs = []
        for j in range(count):
            n = _sample_length(cfg, rng)
            speakers = _sample_speakers(cfg, n, rng)
            levels = _sample_labels(cfg, speaker_roles(speakers), rng)
            labels = (levels - 3).astype(np.float32) if cfg.task == "regression" else levels
            convs.append(Conversation(
                id=f"{cfg.preset}_{split}_{j:04d}",
                features=_emit(world, cfg, levels, speakers, rng),
                speakers=speakers,
                labels=labels,
                session=sessions[split][j] if sessions else None,
            ))
        splits[split] = convs
    if fold:
        splits = apply_fold(splits, fold, valid_fraction=cfg.n_valid / (cfg.n_train + cfg.n_valid), seed=cfg.seed,
                            where=where)
    signature = DataSignature(
        modalities=tuple(cfg.modalities),
        dims={m: int(cfg.dims[m]) for m in cfg.modalities},
        task=cfg.task,
        level="dialogue",
        classes=tuple(cfg.classes) if cfg.task == "classification" else (),
        n_speakers=cfg.n_speaker_ids,
    )
    return ConversationDataset(
        name=cfg.preset,
        signature=signature,
        splits=splits,
        config={"source": "synthetic", **to_plain(cfg), **({"fold": fold} if fold else {})},
        oracle=SyntheticOracle(cfg, world),
    )


def load(preset: str, overrides: Mapping[str, Any] | None = None) -> ConversationDataset:
    """Entry point of the ``nasmerc.datasets`` group for every synthetic preset; ``fold`` among the
    overrides picks a leave-one-session-out fold (module docstring), the others set the generator."""
    rest = dict(overrides or {})
    fold = check_fold(rest.pop("fold", 0), f"dataset {preset!r}")
    return generate(make_config(preset, rest), fold)


def _preset_loader(preset: str) -> Callable[[Mapping[str, Any] | None], ConversationDataset]:
    def loader(overrides: Mapping[str, Any] | None = None) -> ConversationDataset:
        return load(preset, overrides)

    loader.__name__ = preset
    loader.__doc__ = f"The synthetic {preset!r} preset (entry point of ``nasmerc.datasets``)."
    return loader


iemocap4 = _preset_loader("iemocap4")
iemocap6 = _preset_loader("iemocap6")
meld = _preset_loader("meld")
mosi = _preset_loader("mosi")
mosei = _preset_loader("mosei")
