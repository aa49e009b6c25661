"""Missing-modality masks and training schedules, following GCNet's protocol.

For a missing rate ``rho`` each modality of each row (utterance, or sample for utterance-level
tasks) is dropped so that the expected kept fraction is ``1 - rho`` and every row keeps at least one
modality: one modality per row is kept for sure, chosen uniformly, and each of the other ``M - 1``
is kept independently with probability ``q = (M (1 - rho) - 1) / (M - 1)``. When ``1 - rho`` is
below ``1 / M`` the floor of one modality per row wins and exactly one is kept (GCNet does the same),
so the kept fraction is ``1 / M``. Dropped features are zeros; ``present`` records the pattern.

Evaluation masks are deterministic per ``(rate, seed)`` (:func:`fixed_masks`); training masks are
redrawn for every batch (:func:`mask_batch`, numpy on the host; :func:`mask_batch_torch`, the same
distribution drawn on the batch's device by a seeded ``torch.Generator``, for data resident there) at
the rate a schedule gives:

- ``fixed:RHO`` (or a bare number): the same rate every batch;
- ``random``: each batch draws ``rho`` uniformly in ``[0, 0.7]`` (ITEACH-Net's Random training);
- ``progressive``: ``0``, then ``+0.1`` every tenth of the epochs, up to ``0.7`` (ITEACH-Net).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from nasmerc.data.batch import Batch
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.errors import NasmercError

MAX_RATE = 0.7
DEFAULT_RATES = tuple(round(0.1 * i, 1) for i in range(8))


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not (0.0 <= rate <= 1.0) or rate != rate:
        raise NasmercError(f"missing rate {rate!r}: expected a number in [0, 1]")
    return rate


def parse_rates(text: str) -> tuple[float, ...]:
    """Parse ``"0,0.1,0.2"`` into rates; a bad entry is named in the error."""
    rates = []
    for part in text.split(","):
        part = part.strip()
        try:
            rates.append(check_rate(float(part)))
        except ValueError:
            raise NasmercError(f"--rates: {part!r} is not a number (expected e.g. 0,0.1,...,0.7)") from None
    if not rates:
        raise NasmercError("--rates: expected at least one rate")
    return tuple(rates)


def draw_present(n_rows: int, n_modalities: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a ``[n_rows, M]`` bool pattern with kept fraction ``1 - rate`` and one modality per row."""
    check_rate(rate)
    m = n_modalities
    present = np.zeros((n_rows, m), dtype=bool)
    if n_rows == 0:
        return present
    keep_one = rng.integers(0, m, size=n_rows)
    present[np.arange(n_rows), keep_one] = True
    if m > 1:
        q = keep_other(m, rate)
        extra = rng.random((n_rows, m)) < q
        present |= extra
    return present


def keep_other(n_modalities: int, rate: float) -> float:
    """``q``, the probability that each modality other than the one kept for sure is kept (module docstring)."""
    m = n_modalities
    return min(1.0, max(0.0, (m * (1.0 - rate) - 1.0) / (m - 1))) if m > 1 else 1.0


def mask_seed(rate: float, seed: int) -> np.random.Generator:
    """The generator behind evaluation masks: one stream per ``(rate, seed)``."""
    return np.random.default_rng([int(seed), int(round(check_rate(rate) * 1000))])


def draw_frames(n_frames: int, n_modalities: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Frame-level masking of one utterance-level sample: every frame of every modality is dropped
    independently with probability ``rate`` (MFMB-Net's protocol, and the one RMNAS follows for MOSI /
    MOSEI); no modality is kept by force, so at ``rate = 1`` nothing is observed."""
    return rng.random((n_frames, n_modalities)) >= rate


def _check_frames(utterance_level: bool) -> None:
    if not utterance_level:
        raise NasmercError("train.masking=frame: frame-level masking is for utterance-level data "
                           "(MOSI / MOSEI shaped); dialogue data drops whole utterances (masking=auto)")


def _pattern(n: int, m: int, rate: float, rng: np.random.Generator, utterance_level: bool, frames: bool) -> np.ndarray:
    if frames:
        _check_frames(utterance_level)
        return draw_frames(n, m, rate, rng)
    if utterance_level:
        return np.repeat(draw_present(1, m, rate, rng), n, axis=0)
    return draw_present(n, m, rate, rng)


def fixed_masks(
    conversations: Sequence[Conversation], n_modalities: int, rate: float, seed: int, utterance_level: bool = False,
    frames: bool = False,
) -> list[np.ndarray]:
    """Deterministic ``present`` patterns, one ``[L_i, M]`` array per conversation.

    For utterance-level data one pattern is drawn per sample and repeated over its frames, or with
    ``frames`` one per frame and modality (:func:`draw_frames`).
    """
    rng = mask_seed(rate, seed)
    return [_pattern(len(conv), n_modalities, rate, rng, utterance_level, frames) for conv in conversations]


def stack_masks(masks: Sequence[np.ndarray], batch: Batch) -> torch.Tensor:
    """Pad per-conversation patterns (in batch order) to the batch's ``[B, L, M]``."""
    present = torch.zeros(batch.present.shape, dtype=torch.bool)
    for i, pat in enumerate(masks):
        present[i, : pat.shape[0]] = torch.from_numpy(pat)
    return present


def mask_batch(batch: Batch, rate: float, rng: np.random.Generator, utterance_level: bool = False,
               frames: bool = False) -> Batch:
    """Draw a fresh pattern at ``rate`` for the real rows of ``batch`` and apply it (see :func:`fixed_masks`)."""
    lengths = batch.mask.sum(dim=1).tolist()
    m = len(batch.modalities)
    masks = [_pattern(int(n), m, rate, rng, utterance_level, frames) for n in lengths]
    return batch.with_present(stack_masks(masks, batch))


def draw_present_torch(shape: tuple[int, ...], n_modalities: int, rate: float,
                       generator: torch.Generator) -> torch.Tensor:
    """:func:`draw_present` on ``generator``'s device: a ``[*shape, M]`` bool pattern, per row one modality
    kept for sure (uniformly) and each of the others kept with probability ``q`` (:func:`keep_other`),
    so every modality is kept with probability ``1 - rate`` and every row keeps at least one. The same
    distribution as the numpy draw, not the same numbers (another generator)."""
    check_rate(rate)
    device = generator.device
    keep_one = torch.randint(0, n_modalities, shape, generator=generator, device=device)
    sure = keep_one.unsqueeze(-1) == torch.arange(n_modalities, device=device)  # one-hot without a host check
    if n_modalities == 1:
        return sure
    extra = torch.rand((*shape, n_modalities), generator=generator, device=device) < keep_other(n_modalities, rate)
    return sure | extra


def draw_frames_torch(shape: tuple[int, ...], n_modalities: int, rate: float,
                      generator: torch.Generator) -> torch.Tensor:
    """:func:`draw_frames` on ``generator``'s device: every frame of every modality kept independently
    with probability ``1 - rate``, ``[*shape, M]``."""
    check_rate(rate)
    return torch.rand((*shape, n_modalities), generator=generator, device=generator.device) >= rate


def mask_generator(device: torch.device | str, seed: int, rank: int = 0) -> torch.Generator:
    """The torch generator of training masks drawn on ``device`` (``train.data=device``), seeded from the
    run seed and the rank (as the numpy mask generator is under torchrun) through a numpy seed sequence,
    so its stream is not that of torch's global generator, which ``torch.manual_seed(seed)`` starts."""
    state = int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(state)


def mask_batch_torch(batch: Batch, rate: float, generator: torch.Generator, utterance_level: bool = False,
                     frames: bool = False) -> Batch:
    """:func:`mask_batch` drawn on the device by ``generator`` (on the batch's device), nothing read back:
    a pattern per row (dialogue data), one per sample repeated over its frames (utterance-level data),
    or one per frame and modality (``frames``, :func:`draw_frames_torch`). Padding rows are drawn too
    and then cleared, so the real rows' patterns do not depend on which rows are real."""
    b, length = batch.mask.shape
    m = len(batch.modalities)
    if frames:
        _check_frames(utterance_level)
        present = draw_frames_torch((b, length), m, rate, generator)
    elif utterance_level:
        present = draw_present_torch((b, 1), m, rate, generator).expand(b, length, m)
    else:
        present = draw_present_torch((b, length), m, rate, generator)
    return batch.with_present(present)


class MissingSchedule(Protocol):
    """Gives the training missing rate of a batch."""

    name: str

    def rate(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> float: ...


@dataclass
class FixedRate:
    value: float = 0.0
    name: str = "fixed"

    def rate(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> float:
        return self.value


@dataclass
class RandomRate:
    """ITEACH-Net's Random training: each batch draws its rate uniformly in ``[0, high]``."""

    high: float = MAX_RATE
    name: str = "random"

    def rate(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> float:
        return float(rng.uniform(0.0, self.high))


@dataclass
class ProgressiveRate:
    """ITEACH-Net's Progressive training: ``0``, then ``+step`` every tenth of the epochs, up to ``high``."""

    step: float = 0.1
    high: float = MAX_RATE
    name: str = "progressive"

    def rate(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> float:
        period = max(1, n_epochs // 10)
        return float(min(self.high, round(self.step * (epoch // period), 6)))


def make_schedule(spec: str | float) -> MissingSchedule:
    """``"random"``, ``"progressive"``, ``"fixed:0.3"`` or a bare rate such as ``0.3``."""
    if isinstance(spec, (int, float)):
        return FixedRate(check_rate(spec))
    text = str(spec).strip().lower()
    if text == "random":
        return RandomRate()
    if text == "progressive":
        return ProgressiveRate()
    value = text.split(":", 1)[1] if text.startswith("fixed:") else text
    try:
        return FixedRate(check_rate(float(value)))
    except ValueError:
        raise NasmercError(
            f"missing schedule {spec!r}: expected 'random', 'progressive', 'fixed:RHO' or a rate in [0, 1]"
        ) from None


def single_modality_note(signature: DataSignature, masking: str = "auto") -> str:
    """What to say of data with a single modality (nothing to drop), or ``""`` (also under frame-level
    masking, which can drop a lone modality's frames)."""
    if len(signature.modalities) != 1 or masking == "frame":
        return ""
    return (f"the data have one modality ({signature.modalities[0]}): none can go missing (at least one is kept "
            "per utterance), so every missing rate is rate 0 and one row is reported")
