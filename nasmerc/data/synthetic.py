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
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.conversation import Conversation, ConversationDataset, DataSignature, speaker_roles
from nasmerc.data.oracle import SyntheticOracle
from nasmerc.errors import NasmercError

MAX_JOINT_STATES = 512


@dataclass(frozen=True)
class SyntheticConfig:
    """Every parameter of the synthetic generator; presets fill it, ``--set`` overrides it."""

    preset: str = "iemocap6"
    task: Literal["classification", "regression"] = "classification"
    classes: tuple[str, ...] = ("hap", "sad", "neu", "ang", "exc", "fru")
    class_prior: tuple[float, ...] = (648, 1084, 1708, 1103, 1041, 1849)
    modalities: tuple[str, ...] = ("text", "audio", "visual")
    dims: dict[str, int] = field(default_factory=lambda: {"text": 100, "audio": 100, "visual": 512})
    snr: dict[str, float] = field(default_factory=lambda: {"text": 1.2, "audio": 0.8, "visual": 0.6})
    latent_dim: int = 16
    speaker_effect: float = 1.0
    feature_noise: float = 0.3
    process: Literal["joint", "chain"] = "joint"
    inertia: float = 0.6
    contagion: float = 0.15
    n_train: int = 108
    n_valid: int = 12
    n_test: int = 31
    length_mean: float = 49.0
    length_min: int = 20
    length_max: int = 110
    length_spread: float = 0.4
    n_speaker_ids: int = 2
    speakers_min: int = 2
    speakers_max: int = 2
    switch_prob: float = 0.8
    seed: int = 0

    @property
    def n_levels(self) -> int:
        return len(self.classes)

    def check(self) -> None:
        """Refuse inconsistent parameters with the key named."""
        k = len(self.classes)
        if k < 2:
            raise NasmercError(f"classes: expected at least 2, found {list(self.classes)}")
        if len(self.class_prior) != k:
            raise NasmercError(f"class_prior: expected {k} values (one per class), found {len(self.class_prior)}")
        if any(p <= 0 for p in self.class_prior):
            raise NasmercError(f"class_prior: expected positive values, found {list(self.class_prior)}")
        for m in self.modalities:
            if m not in self.dims or self.dims[m] < 1:
                raise NasmercError(f"dims.{m}: expected a positive dimension for every modality")
            if m not in self.snr or self.snr[m] < 0:
                raise NasmercError(f"snr.{m}: expected a non-negative signal-to-noise ratio for every modality")
        if not self.modalities:
            raise NasmercError("modalities: expected at least one modality")
        for name in ("inertia", "contagion", "switch_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise NasmercError(f"{name}={v}: expected a probability in [0, 1]")
        if self.inertia + self.contagion > 1.0:
            raise NasmercError(
                f"inertia + contagion = {self.inertia + self.contagion}: expected at most 1"
            )
        if self.n_train < 2 or self.n_valid < 1 or self.n_test < 1:
            raise NasmercError("n_train >= 2, n_valid >= 1 and n_test >= 1 are expected")
        if not 1 <= self.length_min <= self.length_max:
            raise NasmercError(f"length_min={self.length_min}, length_max={self.length_max}: expected 1 <= min <= max")
        if not 1 <= self.speakers_min <= self.speakers_max <= self.n_speaker_ids:
            raise NasmercError(
                f"speakers_min={self.speakers_min}, speakers_max={self.speakers_max}, "
                f"n_speaker_ids={self.n_speaker_ids}: expected 1 <= min <= max <= n_speaker_ids"
            )
        if self.process == "joint" and k**self.speakers_max > MAX_JOINT_STATES:
            raise NasmercError(
                f"process=joint with {k} classes and up to {self.speakers_max} speakers needs "
                f"{k}^{self.speakers_max} states (at most {MAX_JOINT_STATES}); use --set process=chain"
            )
        if self.task == "regression" and k != 7:
            raise NasmercError(f"task=regression expects the 7 sentiment levels -3..3, found {k} classes")
        if not 0.0 < self.feature_noise <= 1.0:
            raise NasmercError(f"feature_noise={self.feature_noise}: expected a number in (0, 1]")
        if self.latent_dim < 1:
            raise NasmercError(f"latent_dim={self.latent_dim}: expected a positive integer")

    @property
    def prior(self) -> np.ndarray:
        p = np.asarray(self.class_prior, dtype=np.float64)
        return p / p.sum()


def _regression(**kw: Any) -> SyntheticConfig:
    base = dict(
        task="regression",
        classes=("-3", "-2", "-1", "0", "1", "2", "3"),
        class_prior=(0.06, 0.17, 0.2, 0.1, 0.2, 0.18, 0.09),
        process="chain",
        n_speaker_ids=1,
        speakers_min=1,
        speakers_max=1,
        switch_prob=0.0,
        inertia=0.6,
        contagion=0.0,
    )
    base.update(kw)
    return SyntheticConfig(**base)


PRESETS: dict[str, Callable[[], SyntheticConfig]] = {
    "iemocap6": lambda: SyntheticConfig(preset="iemocap6"),
    "iemocap4": lambda: SyntheticConfig(
        preset="iemocap4", classes=("ang", "hap", "neu", "sad"), class_prior=(1103, 1636, 1708, 1084)
    ),
    "meld": lambda: SyntheticConfig(
        preset="meld",
        classes=("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"),
        class_prior=(4710, 1205, 268, 683, 1743, 271, 1109),
        dims={"text": 600, "audio": 300, "visual": 342},
        snr={"text": 1.4, "audio": 0.8, "visual": 0.5},
        process="chain",
        inertia=0.45,
        contagion=0.25,
        n_train=1039, n_valid=114, n_test=280,
        length_mean=9.6, length_min=1, length_max=24, length_spread=0.6,
        n_speaker_ids=9, speakers_min=1, speakers_max=6, switch_prob=0.75,
    ),
    "mosi": lambda: _regression(
        preset="mosi",
        dims={"text": 768, "audio": 5, "visual": 20},
        snr={"text": 1.4, "audio": 0.6, "visual": 0.6},
        n_train=52, n_valid=10, n_test=31,
        length_mean=23.6, length_min=5, length_max=60, length_spread=0.5,
    ),
    "mosei": lambda: _regression(
        preset="mosei",
        dims={"text": 768, "audio": 74, "visual": 35},
        snr={"text": 1.4, "audio": 0.8, "visual": 0.7},
        n_train=2249, n_valid=300, n_test=679,
        length_mean=7.2, length_min=1, length_max=40, length_spread=0.7,
    ),
}


def make_config(preset: str, overrides: Mapping[str, Any] | None = None) -> SyntheticConfig:
    """The preset's config with ``overrides`` applied and checked."""
    if preset not in PRESETS:
        raise NasmercError(f"unknown synthetic preset {preset!r} (known: {', '.join(PRESETS)})")
    cfg = apply_overrides(PRESETS[preset](), dict(overrides or {}), where=f"dataset {preset!r}")
    cfg = replace(cfg, preset=preset)
    cfg.check()
    return cfg


@dataclass
class World:
    """The fixed parameters of the emission model: means, speaker offsets, projections."""

    means: dict[str, np.ndarray]       # [K, r_m], already scaled by snr_m
    speakers: dict[str, np.ndarray]    # [n_speaker_ids, r_m], already scaled by speaker_effect
    projections: dict[str, np.ndarray]  # [D_m, r_m], orthonormal columns

    @classmethod
    def draw(cls, cfg: SyntheticConfig) -> "World":
        rng = np.random.default_rng([cfg.seed, 0])
        means, speakers, projections = {}, {}, {}
        k = cfg.n_levels
        for m in cfg.modalities:
            r = min(cfg.latent_dim, cfg.dims[m])
            if cfg.task == "regression":
                direction = rng.normal(size=r)
                direction /= np.linalg.norm(direction)
                levels = (np.arange(k) - (k - 1) / 2) / ((k - 1) / 2)
                mu = levels[:, None] * direction[None, :] * 1.5 + 0.5 * rng.normal(size=(k, r)) / np.sqrt(r)
            else:
                mu = rng.normal(size=(k, r)) / np.sqrt(r)
            nu = rng.normal(size=(cfg.n_speaker_ids, r)) / np.sqrt(r)
            q, _ = np.linalg.qr(rng.normal(size=(cfg.dims[m], r)))
            means[m] = cfg.snr[m] * mu
            speakers[m] = cfg.speaker_effect * nu
            projections[m] = q
        return cls(means, speakers, projections)


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


def generate(cfg: SyntheticConfig) -> ConversationDataset:
    """Draw the train / valid / test conversations of ``cfg`` and attach the exact oracle."""
    cfg.check()
    world = World.draw(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
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
            ))
        splits[split] = convs
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
        config={"source": "synthetic", **to_plain(cfg)},
        oracle=SyntheticOracle(cfg, world),
    )


def load(preset: str, overrides: Mapping[str, Any] | None = None) -> ConversationDataset:
    """Entry point of the ``nasmerc.datasets`` group for every synthetic preset."""
    return generate(make_config(preset, overrides))


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
