"""The peer benchmark's job, in plain Python shared by every peer (runs in the project's venv and in the peers').

Events ``{id, entity, ts, x1..x5}`` keyed by entity; per entity, exact trailing windows on event time:
the 10 s rolling mean of x1 and the 10 s count (``[ts - 10 s, ts]``, both ends inclusive) and the 30 s
tumbling max of x2 (epoch aligned). The model input is x1..x5 and those three features; the output is
``{id, p, features}`` keyed by event id. Job B joins each label ``{id, label, ts}`` with the features logged
at prediction time and learns it. Only the standard library and orjson: Bytewax uses these windows as its
hand-written state, and tests hold them against freshet's FeatureEngine.

>>> w = EntityWindows()
>>> w.update(100.0, 1.0, 5.0), w.update(105.0, 3.0, 2.0), w.update(121.0, 5.0, 1.0)
((1.0, 1.0, 5.0), (2.0, 2.0, 5.0), (5.0, 1.0, 1.0))
>>> j = LabelJoin()
>>> j.on_label("e1", True), j.on_features("e1", {"x1": 1.0})
(None, ({'x1': 1.0}, True))
"""

from __future__ import annotations

import bisect
import math
import os
import pickle
import time
from pathlib import Path
from typing import Any

import orjson

FIELDS = ("x1", "x2", "x3", "x4", "x5")
FEATURES = ("x1_mean_10s", "events_10s", "x2_max_30s")
SLIDING_S = 10.0
TUMBLING_S = 30.0


def ts_ms(ts: float) -> int:
    """Event time in whole milliseconds, the same rounding everywhere (Quix windows use ms).

    >>> ts_ms(1.0006), ts_ms(2.25)
    (1001, 2250)
    """
    return round(ts * 1000.0)


class EntityWindows:
    """One entity's window state: the events of the last 10 s (time, x1) and the current 30 s tumble."""

    __slots__ = ("recent", "tumble_max", "tumble_start")

    def __init__(self) -> None:
        self.recent: list[tuple[float, float]] = []  # sorted by time
        self.tumble_start: float | None = None
        self.tumble_max: float = -math.inf

    def update(self, ts: float, x1: float, x2: float) -> tuple[float, float, float]:
        """Apply one event; returns ``(x1_mean_10s, events_10s, x2_max_30s)`` as of its time, itself included."""
        bisect.insort(self.recent, (ts, x1))
        t_ms = ts_ms(ts)
        low = t_ms - ts_ms(SLIDING_S)
        # Keep what a later event may still need (up to the grace of out-of-order ones), count the window.
        while self.recent and ts_ms(self.recent[0][0]) < low - 2_000:
            self.recent.pop(0)
        inside = [v for t, v in self.recent if low <= ts_ms(t) <= t_ms]
        start = math.floor(ts / TUMBLING_S) * TUMBLING_S
        if self.tumble_start is None or start > self.tumble_start:
            self.tumble_start, self.tumble_max = start, x2
        elif start == self.tumble_start:
            self.tumble_max = max(self.tumble_max, x2)
        return sum(inside) / len(inside), float(len(inside)), self.tumble_max


def model_input(event: dict[str, Any], features: tuple[float, float, float]) -> dict[str, float]:
    """x1..x5 then the three features, as freshet's ``streams.core.inputs.model_input`` orders them."""
    x = {f: float(event[f]) for f in FIELDS}
    x.update(zip(FEATURES, features, strict=True))
    return x


class LabelJoin:
    """Features logged by event id wait for their label (or a label for its features); each pair once."""

    def __init__(self) -> None:
        self.logged: dict[str, dict[str, float]] = {}
        self.labels: dict[str, Any] = {}

    def on_features(self, event_id: str, x: dict[str, float]) -> tuple[dict[str, float], Any] | None:
        if event_id in self.labels:
            return x, self.labels.pop(event_id)
        self.logged[event_id] = x
        return None

    def on_label(self, event_id: str, label: Any) -> tuple[dict[str, float], Any] | None:
        x = self.logged.pop(event_id, None)
        if x is None:
            self.labels[event_id] = label
            return None
        return x, label


def load_model(path: str | Path) -> Any:
    """The pre-trained ``StandardScaler | LogisticRegression`` every system starts from (a River pickle
    written by the bench itself, never one from outside)."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


def predict(model: Any, x: dict[str, float]) -> float:
    """P(label is True)."""
    return float(model.predict_proba_one(x).get(True, 0.0))


def encode_output(event_id: str, p: float, x: dict[str, float]) -> bytes:
    return orjson.dumps({"id": event_id, "p": p, "features": x})


class Status:
    """What a peer process tells the harness, one JSON line each (first consumption, learn progress)."""

    def __init__(self, path: str | Path, learn_target: int = 0) -> None:
        self.path = Path(path)
        self.learn_target = learn_target
        self.learned = 0
        self.first_s: float | None = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, **fields: Any) -> None:
        os.write(self._fd, orjson.dumps({"kind": kind, "t": time.time(), **fields}) + b"\n")

    def consumed(self) -> None:
        """Call on every consumed message; only the first one is written."""
        if self.first_s is None:
            self.first_s = time.time()
            self.write("first")

    def learned_one(self) -> None:
        self.learned += 1
        if self.learned == self.learn_target or self.learned % 5000 == 0:
            self.write("learned", n=self.learned)


def read_status(path: str | Path) -> list[dict[str, Any]]:
    """Every line a peer wrote so far (a torn last line is left for the next read)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return out
