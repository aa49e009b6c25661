"""Training plug-ins: what changes how any model is trained, apart from the model.

A plug-in is named in ``TrainConfig.plugins`` (``--plugin NAME`` on the command line) and configured
by ``--set plugin.NAME.KEY=VALUE`` (kept in ``TrainConfig.plugin_options`` as ``NAME.KEY``), so it
travels with the training config into every trainer a strategy builds, into ``arch.yaml`` and into
``retrain``. Plug-ins are found through the ``nasmerc.plugins`` entry-point group.

The trainer calls, per fit, in this order (every method does nothing by default):

- :meth:`Plugin.start` once, with the training conversations, before the first epoch;
- :meth:`Plugin.conversations` at the start of every epoch: the conversations the epoch trains on
  (a curriculum grows this set);
- :meth:`Plugin.task_loss` for every training batch: a replacement of the task term of the loss
  (``None`` keeps the trainer's);
- :meth:`Plugin.end_epoch` after every epoch: numbers to log beside the epoch's losses;
- :meth:`Plugin.prediction` on every evaluation forward pass (validation, test, the missing-rate
  sweeps): a replacement of the model's ``out.logits`` as what is scored (``None`` keeps them), for a
  method whose prediction rule is not the backbone's own output (SPCL predicts from the sum of the
  uni-modal logits).
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch

from nasmerc.config import apply_overrides, to_plain
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.errors import NasmercError

if TYPE_CHECKING:  # pragma: no cover
    from nasmerc.outputs import ModelOutput


class Plugin:
    """Base of every training plug-in: a ``Config`` dataclass and the hooks of the module docstring."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    def __init__(self, signature: DataSignature, config: Any = None) -> None:
        self.signature = signature
        self.config = config if config is not None else self.Config()
        self.check(signature)

    def check(self, signature: DataSignature) -> None:
        """Refuse data the plug-in cannot work with (a one-line :class:`NasmercError`)."""

    def start(self, train: Sequence[Conversation], epochs: int) -> None:
        """Called once before the first epoch with the training conversations."""

    def conversations(self, epoch: int, train: Sequence[Conversation]) -> Sequence[Conversation]:
        """The conversations epoch ``epoch`` (0-based) trains on."""
        return train

    def task_loss(self, batch: Batch, out: "ModelOutput", epoch: int) -> torch.Tensor | None:
        """A replacement for the task term of the loss of a training batch (``None``: keep it)."""
        return None

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Numbers to log with the epoch (shown in the dashboard's losses)."""
        return {}

    def prediction(self, batch: Batch, out: "ModelOutput") -> torch.Tensor | None:
        """What an evaluation forward pass of ``batch`` predicts, in place of ``out.logits`` (``None``:
        keep them). Called by the trainer on every evaluation forward pass, after the model's, with
        the model in evaluation mode and no gradient. A replacement has the shape and meaning of
        ``out.logits`` (class logits ``[B, L, C]`` / ``[B, C]``, or scores ``[B, L]`` / ``[B]``) and leaves
        the padding rows as they are: the trainer scores it as it would score ``out.logits``."""
        return None

    def config_dict(self) -> dict[str, Any]:
        return to_plain(self.config)

    def state_dict(self) -> dict[str, Any]:
        """What the plug-in carries from epoch to epoch, saved with every checkpoint (default: nothing;
        :meth:`start` rebuilds whatever it derives from the training split)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""


def plugin_options(name: str, options: Mapping[str, Any], config_type: type) -> dict[str, Any]:
    """The ``NAME.KEY`` entries of ``options`` that belong to plug-in ``name``, as ``KEY``."""
    prefix = f"{name}."
    own = {k[len(prefix):]: v for k, v in options.items() if k.startswith(prefix)}
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(own) - known)
    if unknown:
        raise NasmercError(f"--set plugin.{name}.{unknown[0]}: unknown option of plug-in {name!r} "
                           f"(known: {', '.join(sorted(known)) or 'none'})")
    return own


def make_plugins(names: Sequence[str], options: Mapping[str, Any], signature: DataSignature) -> list[Plugin]:
    """The plug-ins ``names`` with their options; an unknown name or option is a named error."""
    from nasmerc.registry import get_plugin

    prefixes = {k.partition(".")[0] for k in options}
    stray = sorted(prefixes - set(names))
    if stray:
        raise NasmercError(f"--set plugin.{stray[0]}...: plug-in {stray[0]!r} is not enabled (add --plugin {stray[0]})")
    if len(set(names)) != len(names):
        raise NasmercError(f"--plugin: {list(names)} names a plug-in twice")
    out = []
    for name in names:
        cls = get_plugin(name)
        cfg = apply_overrides(cls.Config(), plugin_options(name, options, cls.Config), where=f"plug-in {name!r}")
        out.append(cls(signature, cfg))
    return out
