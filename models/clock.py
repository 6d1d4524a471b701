"""The one clock of freshet's pure code: a :data:`Clock` is a function returning epoch seconds.

Pure modules (``models``, ``streams.core``, ``streams.features``) never read the wall clock themselves:
they take a ``clock`` argument, whose default is :func:`system_clock`, the only place their code reads
``time.time()``. Tests inject a fixed or stepping clock (``streams.runtime.testing.FixedClock``). Event time is
never taken from a clock: it is in the data (a label without one is dead-lettered unless the spec says
otherwise, see ``[label] missing_time``).

>>> clock: Clock = lambda: 1_700_000_000.0
>>> clock(), system_clock() > 1_700_000_000
(1700000000.0, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "system_clock"]

Clock = Callable[[], float]


def system_clock() -> float:
    """The wall clock, epoch seconds (what a process gives its pure steps unless a test injects another)."""
    return time.time()
