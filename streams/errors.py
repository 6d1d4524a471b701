"""freshet's errors in one place: :class:`FreshetError` (the base the CLI catches once) and the
contract errors of the top-level modules.

Every error freshet raises on purpose derives from :class:`FreshetError`; a subclass may also derive
from ``ValueError`` (bad input) or ``RuntimeError`` (a service is missing) so that callers catching those
keep working.

>>> issubclass(SpecError, FreshetError), issubclass(SpecError, ValueError)
(True, True)
"""

from __future__ import annotations

from models.errors import FreshetError

__all__ = ["FreshetError", "ServiceMissing", "SpecError"]


class SpecError(FreshetError, ValueError):
    """The pipeline spec is malformed; the message names the key and what is expected."""


class ServiceMissing(FreshetError, RuntimeError):
    """A service or topic freshet needs is not there (the message says which command starts it)."""
