"""Distribution drift: a reference window against the current window (data, prediction and label drift).

Two statistics compare a sample of a variable now (``current``) with a sample from before (``reference``):

- **PSI** (population stability index) on bins: ``sum((c_i - r_i) * ln(c_i / r_i))`` over the bins' shares
  in the current and reference samples. Numeric values are cut at the reference's quantiles (``bins``
  bins of about equal reference mass); categorical values (``str``/``bool``) use one bin per category
  seen in either sample. Shares are smoothed with ``eps`` (``(share + eps) / (1 + k * eps)``) so an empty
  bin costs a large but finite amount. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift.
- **KS**: the two-sample Kolmogorov-Smirnov statistic, the largest gap between the two empirical CDFs
  (numeric values only; the same value as ``scipy.stats.ks_2samp(...).statistic``).

:class:`WindowDriftMonitor` watches one variable; :class:`FeatureDriftMonitors` one per feature.

>>> psi([1, 2, 3, 4] * 25, [1, 2, 3, 4] * 25, bins=4)
0.0
>>> round(ks_statistic([1.0, 2.0, 3.0], [2.5, 3.5, 4.5]), 4)
0.6667
>>> round(psi(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10), 3)
0.878
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from models.clock import Clock, system_clock
from models.drift.alerts import KINDS, DriftAlert

DEFAULT_EPS = 1e-4

Value = float | int | str | bool


def is_categorical(value: Any) -> bool:
    """``str`` and ``bool`` values are categories; numbers are numeric.

    >>> is_categorical("gold"), is_categorical(True), is_categorical(3.5)
    (True, True, False)
    """
    return isinstance(value, str | bool)


def quantile_edges(reference: Sequence[float], bins: int = 10) -> list[float]:
    """Inner cut points at the reference's quantiles (``bins - 1`` at most; duplicates merged).

    A value ``v`` falls in bin ``bisect_right(edges, v)``: bins are ``(-inf, e0)``, ``[e0, e1)``, ...,
    ``[e_last, inf)``, so values outside the reference's range land in the outer bins.

    >>> quantile_edges(list(range(100)), bins=4)
    [24.75, 49.5, 74.25]
    >>> quantile_edges([1.0] * 50 + [2.0] * 50, bins=10)
    [1.0, 1.5, 2.0]
    """
    if bins < 2:
        raise ValueError(f"bins={bins}: need at least 2 bins")
    if len(reference) == 0:
        return []
    qs = np.quantile(np.asarray(reference, dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(q) for q in qs})


def bin_shares(values: Sequence[float], edges: Sequence[float], eps: float = DEFAULT_EPS) -> list[float]:
    """Smoothed shares of ``values`` in the bins cut at ``edges`` (they sum to 1).

    >>> [round(s, 3) for s in bin_shares([0, 1, 1, 5], [1.0], eps=0.0)]
    [0.25, 0.75]
    """
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect.bisect_right(edges, v)] += 1
    return _smooth(counts, eps)


def _smooth(counts: Sequence[int], eps: float) -> list[float]:
    n = sum(counts)
    k = len(counts)
    if n == 0:
        return [1.0 / k] * k
    return [(c / n + eps) / (1.0 + k * eps) for c in counts]


def psi_from_shares(reference: Sequence[float], current: Sequence[float]) -> float:
    """PSI of two share vectors (same bins, smoothed: no zero shares).

    >>> round(psi_from_shares([0.5, 0.5], [0.9, 0.1]), 4)
    0.8789
    """
    return float(sum((c - r) * math.log(c / r) for r, c in zip(reference, current, strict=True)))


def psi(
    reference: Sequence[Value], current: Sequence[Value], bins: int = 10, eps: float = DEFAULT_EPS
) -> float:
    """PSI of ``current`` against ``reference``: quantile bins for numbers, categories otherwise."""
    if any(is_categorical(s[0]) for s in (reference, current) if len(s)):
        return psi_categorical(reference, current, eps)
    edges = quantile_edges(reference, bins)  # type: ignore[arg-type]
    return psi_from_shares(bin_shares(reference, edges, eps), bin_shares(current, edges, eps))  # type: ignore[arg-type]


def psi_categorical(reference: Iterable[Value], current: Iterable[Value], eps: float = DEFAULT_EPS) -> float:
    """PSI with one bin per category seen in either sample (values compared as strings).

    >>> round(psi_categorical(["a", "b"] * 50, ["a", "b", "c"] * 30), 3)
    2.838
    """
    ref = _category_counts(reference)
    cur = _category_counts(current)
    cats = sorted(set(ref) | set(cur))
    return psi_from_shares(
        _smooth([ref.get(c, 0) for c in cats], eps), _smooth([cur.get(c, 0) for c in cats], eps)
    )


def _category_counts(values: Iterable[Value]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        key = str(v)
        counts[key] = counts.get(key, 0) + 1
    return counts


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sample KS statistic ``sup |F_a(x) - F_b(x)|`` (``0.0`` when a sample is empty)."""
    x = np.sort(np.asarray(a, dtype=float))
    y = np.sort(np.asarray(b, dtype=float))
    if x.size == 0 or y.size == 0:
        return 0.0
    grid = np.concatenate([x, y])
    fa = np.searchsorted(x, grid, side="right") / x.size
    fb = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(fa - fb)))


class WindowDriftMonitor:
    """Reference window vs. current window on one variable (a feature, a model's scores or the labels).

    The first ``reference_size`` values fill the reference. Then the current window fills: ``"sliding"``
    keeps the last ``current_size`` values and is compared with the reference every ``check_every`` values
    once full; ``"tumbling"`` compares each full batch of ``current_size`` values and starts a new one.
    A check alerts when PSI > ``psi_threshold`` or KS > ``ks_threshold`` (a threshold of ``None`` turns
    that statistic off; KS applies to numeric values only). The alert names ``subject`` and reports the
    statistic that exceeded its threshold by the larger ratio.

    **After an alert the reference is reset** to the new normal and the current window starts empty.
    ``rebase="refill"`` (the default) clears the reference so the next ``reference_size`` values refill it;
    ``rebase="current"`` makes the current window at the time of the alert the new reference, at once. A
    sliding window usually alerts while it is only partly shifted, so with ``"current"`` the new reference
    is a mix of before and after and the same abrupt shift tends to alert a second time once the window
    holds only new values; ``"refill"`` gives one alert per abrupt shift (and goes on alerting, one
    reference later, while a gradual shift continues). ``None`` values (a missing feature) are counted in
    :attr:`n_missing` and skipped; a value of the other type (a string in a numeric variable, or the
    reverse, judged by the first value seen) in :attr:`n_invalid`. Monitors pickle, so their state can be
    snapshotted with the rest of the learner's.

    >>> m = WindowDriftMonitor("amount", kind="feature", reference_size=200, current_size=200,
    ...                        check_every=50)
    >>> alerts = [m.update(float(i % 20), offset=i) for i in range(600)]
    >>> [a for a in alerts if a]
    []
    >>> shifted = [m.update(50.0 + i % 20, offset=600 + i) for i in range(200)]
    >>> [(a.subject, a.statistic, a.offset, round(a.value, 2)) for a in shifted if a]
    [('amount', 'psi', 649, 0.35)]
    >>> m.n_alerts, len(m.reference), len(m.current)
    (1, 150, 0)
    """

    def __init__(
        self,
        subject: str,
        kind: str = "feature",
        reference_size: int = 1000,
        current_size: int = 1000,
        psi_threshold: float | None = 0.2,
        ks_threshold: float | None = 0.15,
        *,
        check_every: int = 100,
        bins: int = 10,
        window: str = "sliding",
        rebase: str = "refill",
        eps: float = DEFAULT_EPS,
        clock: Clock = system_clock,
    ) -> None:
        if kind not in KINDS or kind == "concept":
            raise ValueError(f"window drift kind {kind!r}: use feature, prediction or label")
        if window not in ("sliding", "tumbling"):
            raise ValueError(f"window={window!r}: use 'sliding' or 'tumbling'")
        if rebase not in ("refill", "current"):
            raise ValueError(f"rebase={rebase!r}: use 'refill' or 'current'")
        if reference_size < 2 or current_size < 2 or check_every < 1:
            raise ValueError("reference_size and current_size must be >= 2, check_every >= 1")
        if psi_threshold is None and ks_threshold is None:
            raise ValueError(f"drift monitor {subject!r}: set psi_threshold, ks_threshold or both")
        self.subject = subject
        self.kind = kind
        self.reference_size = reference_size
        self.current_size = current_size
        self.psi_threshold = psi_threshold
        self.ks_threshold = ks_threshold
        self.check_every = check_every
        self.bins = bins
        self.window = window
        self.rebase = rebase
        self.eps = eps
        self.clock = clock
        self.reference: list[Value] = []
        self.current: deque[Value] = deque(maxlen=current_size)
        self.n = 0
        self.n_missing = 0
        self.n_invalid = 0
        self.n_checks = 0
        self.n_alerts = 0
        self.last: dict[str, float] = {}
        self._since_check = 0
        self._categorical: bool | None = None
        self._ref_cache: tuple[list[float], list[float], np.ndarray] | None = None

    @property
    def reference_ready(self) -> bool:
        return len(self.reference) >= self.reference_size

    def update(
        self, value: Value | None, event_ts: float | None = None, offset: int | None = None
    ) -> DriftAlert | None:
        """Add one value; an alert if this value completes a check that finds drift."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.n_missing += 1
            return None
        if self._categorical is None:
            self._categorical = is_categorical(value)
        elif is_categorical(value) != self._categorical:
            # A string among numbers (or the reverse) cannot be compared: count it, never fail the stream.
            self.n_invalid += 1
            return None
        self.n += 1
        if not self.reference_ready:
            self.reference.append(value)
            return None
        self.current.append(value)
        self._since_check += 1
        full = len(self.current) == self.current_size
        if not full or (self.window == "sliding" and self._since_check < self.check_every):
            return None
        self._since_check = 0
        alert = self.check(event_ts, offset)
        if alert is not None:
            self.reference = list(self.current) if self.rebase == "current" else []
            self._ref_cache = None
            self.current.clear()
        elif self.window == "tumbling":
            self.current.clear()
        return alert

    def statistics(self) -> dict[str, float]:
        """PSI (and KS for numbers) of the current window against the reference."""
        if self._categorical:
            out = {"psi": psi_categorical(self.reference, self.current, self.eps)}
            self.last = out
            return out
        if self._ref_cache is None:
            ref = [float(v) for v in self.reference]
            edges = quantile_edges(ref, self.bins)
            self._ref_cache = (edges, bin_shares(ref, edges, self.eps), np.sort(np.asarray(ref)))
        edges, ref_shares, ref_sorted = self._ref_cache
        cur = [float(v) for v in self.current]
        out = {"psi": psi_from_shares(ref_shares, bin_shares(cur, edges, self.eps))}
        if self.ks_threshold is not None:
            out["ks"] = ks_statistic(ref_sorted, cur)
        self.last = out
        return out

    def check(self, event_ts: float | None = None, offset: int | None = None) -> DriftAlert | None:
        """Compare now (normally called by :meth:`update`); an alert if a statistic exceeds its threshold."""
        self.n_checks += 1
        stats = self.statistics()
        best: tuple[float, str, float, float] | None = None
        for name, threshold in (("psi", self.psi_threshold), ("ks", self.ks_threshold)):
            if threshold is None or name not in stats or stats[name] <= threshold:
                continue
            ratio = stats[name] / threshold if threshold > 0 else math.inf
            if best is None or ratio > best[0]:
                best = (ratio, name, stats[name], threshold)
        if best is None:
            return None
        self.n_alerts += 1
        _, name, value, threshold = best
        return DriftAlert(
            kind=self.kind, subject=self.subject, detector="window", statistic=name, value=value,
            threshold=threshold, event_ts=event_ts, offset=offset, level="drift",
            detected_ts=self.clock(), n=self.n,
        )


class FeatureDriftMonitors:
    """One :class:`WindowDriftMonitor` per feature of a feature dict, created on first sight.

    ``features`` limits the watched names (default: every feature seen, minus ``exclude``);
    ``overrides`` maps a feature name to keyword arguments that replace the shared ``settings`` for it.

    >>> import random
    >>> rng = random.Random(1)
    >>> fm = FeatureDriftMonitors(settings={"reference_size": 300, "current_size": 300})
    >>> alerts = []
    >>> for i in range(1500):
    ...     x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1) + (3 if i >= 900 else 0), "tier": "gold"}
    ...     alerts += fm.update_one(x, event_ts=float(i), offset=i)
    >>> sorted({a.subject for a in alerts}), sorted(fm.monitors)
    (['b'], ['a', 'b', 'tier'])
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        features: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        kind: str = "feature",
        clock: Clock = system_clock,
    ) -> None:
        self.settings = dict(settings or {})
        self.features = None if features is None else set(features)
        self.exclude = set(exclude)
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        self.kind = kind
        self.clock = clock
        self.monitors: dict[str, WindowDriftMonitor] = {}

    def watches(self, name: str) -> bool:
        return name not in self.exclude and (self.features is None or name in self.features)

    def monitor(self, name: str) -> WindowDriftMonitor:
        """The monitor of feature ``name`` (created with its settings on first use)."""
        m = self.monitors.get(name)
        if m is None:
            kwargs = {**self.settings, **self.overrides.get(name, {})}
            m = self.monitors[name] = WindowDriftMonitor(name, kind=self.kind, clock=self.clock, **kwargs)
        return m

    def update_one(
        self, x: Mapping[str, Value | None], event_ts: float | None = None, offset: int | None = None
    ) -> list[DriftAlert]:
        """Feed one feature dict; the alerts it raised (usually none), in feature-name order."""
        alerts = []
        for name in sorted(x):
            if not self.watches(name):
                continue
            alert = self.monitor(name).update(x[name], event_ts, offset)
            if alert is not None:
                alerts.append(alert)
        return alerts
