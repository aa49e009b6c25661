"""The one exception a user sees as a one-line message.

Library code raises :class:`NasmercError` for bad input (a path, a key, a label, a shape, a NaN)
with a message that names the bad value and says what was expected. ``nasmerc.cli`` prints it as
``nasmerc: error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class NasmercError(Exception):
    """Bad input from the user; the message names it and says what was expected."""


class Diverged(NasmercError):
    """A training whose loss stopped being finite: one line for a run; a candidate of a search that
    diverges is recorded as failed and the search goes on (``nasmerc.nas.evaluator``)."""
