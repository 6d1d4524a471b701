"""The drift alert: what drifted, which detector said so, on what statistic, and where in the stream.

A :class:`DriftAlert` is the value of a message on the ``drift`` topic (key: its ``subject``). It is
versioned (``v``) like every freshet message; :meth:`DriftAlert.from_dict` accepts the versions it knows.

>>> a = DriftAlert(kind="feature", subject="amount_mean_300s", detector="window", statistic="psi",
...                value=0.41, threshold=0.2, event_ts=1700000000.0, offset=1234, level="drift",
...                detected_ts=1700000001.5, n=5000)
>>> DriftAlert.from_dict(a.to_dict()) == a
True
>>> print(a.describe())  # doctest: +NORMALIZE_WHITESPACE
feature drift on amount_mean_300s: window psi=0.41 (threshold 0.2)
at event 2023-11-14T22:13:20Z, offset 1234
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

ALERT_VERSION = 1
KINDS = ("concept", "feature", "prediction", "label")
LEVELS = ("warning", "drift")


@dataclass(frozen=True)
class DriftAlert:
    """One drift (or drift warning) on one subject.

    ``subject`` is the model name for ``concept`` and ``prediction`` drift, the feature name for ``feature``
    drift and the model slot (or ``"labels"``) for ``label`` shift. ``statistic``/``value``/``threshold`` say
    what was measured and against what: for window monitors ``psi`` or ``ks``; for concept-drift detectors
    the detector's own statistic (see :mod:`models.drift.concept`). ``event_ts`` (epoch seconds) and
    ``offset`` locate the value that triggered the alert in its topic; ``n`` counts the values the monitor
    had seen (its position in the subject's stream, 1-based); ``detected_ts`` is the wall clock.
    """

    kind: str
    subject: str
    detector: str
    statistic: str
    value: float
    threshold: float
    event_ts: float | None
    offset: int | None
    level: str = "drift"
    detected_ts: float = 0.0
    n: int | None = None
    v: int = ALERT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift alert kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.level not in LEVELS:
            raise ValueError(f"drift alert level {self.level!r}: use one of {', '.join(LEVELS)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the ``drift`` topic's message value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftAlert:
        """Read a ``drift`` message; raises ``ValueError`` on an unknown version or a missing field."""
        v = int(d.get("v", ALERT_VERSION))
        if v != ALERT_VERSION:
            raise ValueError(
                f"drift alert version {v} is not supported (this freshet reads v{ALERT_VERSION})"
            )
        try:
            return cls(
                kind=str(d["kind"]), subject=str(d["subject"]), detector=str(d["detector"]),
                statistic=str(d["statistic"]), value=float(d["value"]), threshold=float(d["threshold"]),
                event_ts=None if d.get("event_ts") is None else float(d["event_ts"]),
                offset=None if d.get("offset") is None else int(d["offset"]),
                level=str(d.get("level", "drift")), detected_ts=float(d.get("detected_ts") or 0.0),
                n=None if d.get("n") is None else int(d["n"]), v=v,
            )
        except KeyError as exc:
            raise ValueError(f"drift alert is missing the field {exc.args[0]!r}") from None

    def describe(self) -> str:
        """One human line: what drifted, which detector, statistic vs threshold, and where."""
        where = []
        if self.event_ts is not None:
            where.append(f"event {format_ts(self.event_ts)}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        at = f" at {', '.join(where)}" if where else ""
        level = "drift" if self.level == "drift" else "drift warning"
        return (
            f"{self.kind} {level} on {self.subject}: {self.detector} {self.statistic}="
            f"{self.value:.4g} (threshold {self.threshold:.4g}){at}"
        )


def format_ts(ts: float) -> str:
    """Epoch seconds as an ISO-8601 UTC string to the second.

    >>> format_ts(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
