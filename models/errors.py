"""The one base of every error freshet raises on purpose: :class:`FreshetError`.

It lives in the lowest layer (``models`` imports nothing from ``streams``) so that the learning code's
errors share it too. Each subclass carries a one-line message that says what to do; the ``freshet``
command catches ``FreshetError`` once and prints that line (exit status 2), with no traceback.

>>> issubclass(FreshetError, Exception), str(FreshetError("topic x does not exist; run `freshet services up`"))
(True, 'topic x does not exist; run `freshet services up`')
"""

from __future__ import annotations

__all__ = ["FreshetError"]


class FreshetError(Exception):
    """An error with a one-line message for the operator (the CLI prints it as ``freshet: <message>``)."""
