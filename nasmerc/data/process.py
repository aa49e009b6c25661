"""The parameters of the synthetic generative process: its config, presets and fixed world.

:class:`SyntheticConfig` holds every parameter (``--set`` overrides it), ``PRESETS`` the shapes of the
real sets, and :class:`World` the emission parameters drawn once from the seed. Both the generator
(``nasmerc.data.synthetic``) and its exact oracle (``nasmerc.data.oracle``) read them; neither needs
the other to know them. The process itself is described in ``nasmerc.data.synthetic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np

from nasmerc.config import apply_overrides
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
    where = f"dataset {preset!r}"
    cfg = apply_overrides(PRESETS[preset](), dict(overrides or {}), where=where)
    cfg = replace(cfg, preset=preset)
    _check_modality_keys(cfg, overrides or {}, where)
    cfg.check()
    return cfg


def _check_modality_keys(cfg: SyntheticConfig, overrides: Mapping[str, Any], where: str) -> None:
    """``dims`` and ``snr`` are per-modality mappings: a key set for anything but one of the config's
    modalities (``--set snr.smell=1``) is refused with the known keys, not silently kept unused."""
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        if head not in ("dims", "snr"):
            continue
        for name in [rest] if rest else list(value) if isinstance(value, Mapping) else []:
            if name not in cfg.modalities:
                known = ", ".join(f"{head}.{m}" for m in cfg.modalities)
                raise NasmercError(f"{where}: unknown key '{head}.{name}' (known: {known})")


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
