"""Rate-limited logging: one line per kind per interval, a counter for the rest.

An outage (broker, Redis) makes every retry log the same complaint: aiokafka and Faust wrote 109,845 lines
in a 34 s broker outage. :class:`RateLimitFilter` lets the first record of a *kind* (logger, level and the
message template, before its arguments are filled in) through per ``interval_s``, and counts the others;
the next line of that kind that passes says how many were suppressed. ``on_suppressed`` (the worker and
the learner pass ``freshet_log_lines_suppressed_total``'s ``inc``) is called once per suppressed record.

>>> import logging
>>> now = [0.0]
>>> f = RateLimitFilter(interval_s=10.0, clock=lambda: now[0])
>>> rec = lambda msg: logging.LogRecord("kafka", logging.ERROR, "x.py", 1, msg, ("b1",), None)
>>> [f.filter(rec("cannot reach %s")) for _ in range(4)]
[True, False, False, False]
>>> f.suppressed
3
>>> now[0] = 11.0; r = rec("cannot reach %s"); f.filter(r), r.getMessage(), r.args
(True, 'cannot reach b1 (3 more like this in the last 11 s suppressed)', ())
>>> f.filter(rec("another kind %s"))
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitFilter(logging.Filter):
    """A logging filter for handlers: at most one record per kind per ``interval_s`` (see the module)."""

    def __init__(
        self,
        interval_s: float = 10.0,
        on_suppressed: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 10_000,
    ) -> None:
        super().__init__()
        self.interval_s = float(interval_s)
        self.on_suppressed = on_suppressed
        self.clock = clock
        self.max_kinds = max_kinds
        self.suppressed = 0
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [last passed at, suppressed since]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                self.suppressed += 1
                if self.on_suppressed is not None:
                    self.on_suppressed()
                return False
            if seen is None and len(self._kinds) >= self.max_kinds:
                self._kinds.clear()
            held = int(seen[1]) if seen is not None else 0
            since = now - seen[0] if seen is not None else 0.0
            self._kinds[kind] = [now, 0]
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this in the last {since:.0f} s suppressed)"
            record.args = ()  # not None: mode's formatter turns None into (None,) and formats again
        return True


def install(interval_s: float = 10.0, on_suppressed: Callable[[], None] | None = None) -> RateLimitFilter:
    """Put one :class:`RateLimitFilter` on every handler of the root logger (and on handlers added later
    through :func:`logging.basicConfig`-style setup, by patching none: call this after logging is set up).
    Returns the filter; a handler that already has one is left as it is."""
    limit = RateLimitFilter(interval_s, on_suppressed)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(limit)
    return limit
