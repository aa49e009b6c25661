"""The run record: what a run is, written once and read back everywhere.

A :class:`RunSpec` holds everything a run depends on: the space (name, preset and resolved config), the
data (name, overrides and the signature it had), the training config, the strategy (name and
resolved config), the ``--fix`` values, the seed, the device and the worker count. The same record is
the body of ``config.yaml`` (``nasmerc search --config`` reads it back), of ``arch.yaml`` (beside the
architecture and the search's numbers) and of the metadata of ``model.pt``; :meth:`RunSpec.to_dict`
writes it and :meth:`RunSpec.from_dict` reads and checks it, so no file is written or read by hand.
Every default of a run is a default of this dataclass, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from nasmerc.config import apply_overrides, plain, to_plain
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.train.trainer import TrainConfig


@dataclass(frozen=True)
class RunSpec:
    """One run (see the module docstring). ``signature`` is ``None`` only before the data are loaded;
    ``strategy`` is empty until it is resolved (a space with nothing to search takes ``fixed``)."""

    space: str = "rmnas"
    preset: str = "default"
    space_config: dict[str, Any] = field(default_factory=dict)
    data: str = "iemocap6"
    data_overrides: dict[str, Any] = field(default_factory=dict)
    signature: DataSignature | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: str = ""
    strategy_config: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    workers: int = 1
    protocol: str = "default"
    """The named protocol the training settings came from (``nasmerc.protocols``)."""

    def __post_init__(self) -> None:
        from nasmerc.protocols import get_protocol

        get_protocol(self.protocol)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise NasmercError(f"seed={self.seed!r}: expected an integer in [0, 2**32)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise NasmercError(f"--workers {self.workers!r}: expected an integer >= 1, or 0 for as many as fit")

    def to_dict(self) -> dict[str, Any]:
        """The record as plain YAML / JSON / ``torch.save`` values (``weights_only`` loadable)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TrainConfig):
                value = to_plain(value)
            elif isinstance(value, DataSignature):
                value = value.to_dict()
            elif isinstance(value, dict):
                value = plain(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str, require: tuple[str, ...] = (),
                  others: tuple[str, ...] = ()) -> "RunSpec":
        """The record of a mapping read from a file (``where`` names it in errors). Keys in ``require``
        must be present; the others take their defaults; keys in ``others`` belong to the file, not
        the record (``arch``, ``command`` ...), and any other key is refused. Every value is checked
        (the training config as ``--set train.KEY`` would be)."""
        missing = [k for k in require if k not in d]
        if missing:
            raise NasmercError(f"{where}: missing key(s) {missing}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - set(others) - {"nasmerc"})
        if unknown:
            raise NasmercError(f"{where}: unknown key(s) {unknown} (a run record has: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for key in known & set(d):
            value = d[key]
            if key in ("space", "preset", "data", "strategy", "device", "protocol"):
                if not isinstance(value, str):
                    raise NasmercError(f"{where}: {key!r} must be a name, found {value!r}")
            elif key in ("space_config", "data_overrides", "strategy_config", "fixed"):
                if value is None:
                    value = {}
                if not isinstance(value, Mapping):
                    raise NasmercError(f"{where}: {key!r} must be a mapping, found {type(value).__name__}")
                value = dict(value)
            elif key == "train":
                if value is not None and not isinstance(value, Mapping):
                    raise NasmercError(f"{where}: 'train' must be a mapping, found {type(value).__name__}")
                try:
                    value = apply_overrides(TrainConfig(), dict(value or {}), where="train")
                except NasmercError as exc:
                    raise NasmercError(f"{where}: {exc}") from None
            elif key == "signature":
                value = None if value is None else signature_of(value, where)
            elif key in ("seed", "workers") and (isinstance(value, bool) or not isinstance(value, int)):
                raise NasmercError(f"{where}: {key!r} must be an integer, found {value!r}")
            values[key] = value
        try:
            return cls(**values)
        except NasmercError as exc:  # a range check of __post_init__ (seed, workers): name the file
            raise NasmercError(f"{where}: {exc}") from None

    def with_(self, **changes: Any) -> "RunSpec":
        """A copy with ``changes``."""
        return replace(self, **changes)


def signature_of(value: Any, where: str) -> DataSignature:
    """A :class:`DataSignature` from its dict, refused naming ``where`` when it is not one."""
    if not isinstance(value, Mapping):
        raise NasmercError(f"{where}: 'signature' must be a mapping, found {type(value).__name__}")
    try:
        return DataSignature.from_dict(value)
    except NasmercError as exc:  # from_dict names the field
        raise NasmercError(f"{where}: 'signature': {exc}") from None
