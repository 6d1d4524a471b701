"""The one event-time parser of freshet: the stream (``streams.core.validate``) and the batch engine
(``streams.features.batch``) both call :func:`parse_event_time`, so they accept and reject the same values.

An event time is

* a JSON number (or a numeric CSV column): epoch seconds, ``0 <= t <= 1e11``;
* an ISO-8601 string **with** a timezone (``Z`` or ``+01:00``);
* in a DataFrame, a timezone-aware ``datetime`` / ``pandas.Timestamp``.

Everything else is refused with a one-line reason: a naive time (which zone?), a boolean, NaN or ±inf,
a negative time, and a *string* of digits (``"1700000000.5"``: send epoch seconds as a number; a
string is read as ISO-8601 only). The stream dead-letters such an event (``bad_timestamp``); the batch
engine marks its row ``_invalid`` and applies it nowhere.

>>> parse_event_time(1_700_000_000.5), parse_event_time("2023-11-14T22:13:20.5Z")
(1700000000.5, 1700000000.5)
>>> parse_event_time("2023-11-14T23:13:20+01:00")
1700000000.0
>>> for bad in ("1700000000.5", "2023-11-14T22:13:20", True, -1.0, float("nan")):
...     try:
...         parse_event_time(bad)
...     except ValueError as exc:
...         print(exc)
timestamp '1700000000.5' is a string of digits; send epoch seconds as a number, or ISO-8601 with a timezone
timestamp '2023-11-14T22:13:20' has no timezone; add one (e.g. +00:00 or Z)
timestamp True is a boolean
timestamp -1.0 is negative
timestamp nan is not finite
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime
from typing import Any

from streams.features.windows import MAX_EVENT_TIME_S

__all__ = ["MAX_EVENT_TIME_S", "parse_event_time"]


def parse_event_time(value: Any) -> float:
    """Epoch seconds of one event-time value (see the module docstring); raises ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is a boolean")
    if isinstance(value, numbers.Real):  # numpy's numbers too
        try:
            ts = float(value)
        except OverflowError:
            ts = math.inf
    elif isinstance(value, str):
        ts = _from_text(value)
    elif isinstance(value, datetime):  # pandas.Timestamp is a datetime
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} is a naive datetime; make it timezone-aware")
        ts = value.timestamp()
    else:
        raise ValueError(f"timestamp {value!r} is neither epoch seconds nor ISO-8601")
    return checked_seconds(ts, value)


def checked_seconds(ts: float, value: Any) -> float:
    """``ts`` when it is a usable event time (finite, not negative, at most ``MAX_EVENT_TIME_S``)."""
    if not math.isfinite(ts):
        raise ValueError(f"timestamp {value!r} is not finite")
    if ts < 0:
        raise ValueError(f"timestamp {value!r} is negative")
    if ts > MAX_EVENT_TIME_S:
        raise ValueError(f"timestamp {value!r} is more than {MAX_EVENT_TIME_S:g} s from the epoch")
    return ts


def _from_text(value: str) -> float:
    stripped = value.strip()
    if stripped and stripped.lstrip("+-").replace(".", "", 1).replace("e", "", 1).isdigit():
        raise ValueError(
            f"timestamp {value!r} is a string of digits; send epoch seconds as a number, or ISO-8601 with a timezone"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"timestamp {value!r} is neither epoch seconds nor ISO-8601") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone; add one (e.g. +00:00 or Z)")
    return parsed.timestamp()
