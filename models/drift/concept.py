"""Concept drift on one model's test-then-train error stream.

:class:`ConceptDriftMonitor` wraps one River drift detector. Feed it the model's error on each example, in
the order the learner sees them (``1``/``True`` for a misclassification, or an absolute error for
regression); it returns a :class:`~models.drift.alerts.DriftAlert` when the detector signals a drift (or
enters its warning zone) and ``None`` otherwise.

Detectors (``detector=``), with freshet's default parameters. River's own defaults are kept where they
raise no alarm on a stationary Bernoulli(0.2) error stream of 100k events; where they do, freshet's
defaults below were tuned so they don't (KSWIN: on 10k stationary real-valued errors; River's
``alpha=0.005`` is a test at 0.5% on every update, a false alarm every few hundred values). See
``tests/unit/models/test_drift_concept.py``:

============  ==========================  =========  =============================================
name          River class                 warnings   freshet defaults (override with ``params``)
============  ==========================  =========  =============================================
adwin         ``drift.ADWIN``             no         River's (``delta=0.002``)
page_hinkley  ``drift.PageHinkley``       no         ``delta=0.03, threshold=30, alpha=1.0, mode="up"``
kswin         ``drift.KSWIN``             no         ``alpha=1e-5, window_size=200, stat_size=50``; seeded
ddm           ``drift.binary.DDM``        yes        ``warm_start=100``
eddm          ``drift.binary.EDDM``       yes        ``warm_start=300, alpha=0.9, beta=0.8``
hddm_a        ``drift.binary.HDDMA``      yes        River's
hddm_w        ``drift.binary.HDDMW``      yes        ``drift_confidence=1e-5, warning_confidence=1e-4,
                                                     lambda_val=0.01``
fhddm         ``drift.binary.FHDDM``      no [#]_    ``sliding_window_size=500, confidence_level=1e-7``
============  ==========================  =========  =============================================

.. [#] River 0.26.1's FHDDM has a warning flag but never sets it.

The ``drift.binary`` detectors take 0/1 errors only (classification). KSWIN runs a KS test over its
window on every update (about 0.4 ms each) and suits continuous errors (regression) rather than 0/1.
River's FHDDM signals a *drop* in the mean of its input, so it is fed correctness (``1 - error``).

What an alert reports (``statistic`` / ``value`` / ``threshold``):

- adwin: ``error_mean`` — the mean error of ADWIN's window after the cut vs. the mean before it;
- page_hinkley: ``ph`` — the Page-Hinkley statistic vs. its ``threshold``;
- kswin: ``p_value`` — the KS test's p-value vs. ``alpha`` (a drift is a p-value *below* it);
- ddm: ``p_plus_s`` — the error rate plus its standard deviation vs. ``p_min + k * s_min``;
- the others: ``error_rate`` — the mean of the last ``stat_window`` errors vs. the mean error before them
  since the last drift.

One drift, one alert: detectors may fire several times while they settle on a new concept, so drift
alerts closer than ``min_spacing`` values to the previous one are suppressed (the detector still adapts).
A warning alert is raised on entering the warning zone, at most once per ``min_spacing`` values and not
within ``min_spacing`` values after a drift alert (:attr:`n_warnings` counts every entry).

By default (``alert_on="increase"``) a change detected by a two-sided detector (ADWIN, KSWIN,
Page-Hinkley in mode ``both``) that *lowers* the error is counted in ``n_improvements`` but not alerted:
a model that gets better needs no action, and this keeps a freshly reset model's falling error from
raising a second alert.

>>> import random
>>> rng = random.Random(7)
>>> monitor = ConceptDriftMonitor("adwin", subject="default/lr")
>>> alerts = []
>>> for i in range(4000):
...     error = rng.random() < (0.1 if i < 2000 else 0.5)
...     alert = monitor.update(error, event_ts=1700000000.0 + i, offset=i)
...     if alert is not None:
...         alerts.append(alert)
>>> [(a.offset, a.level, a.statistic) for a in alerts]
[(2047, 'drift', 'error_mean')]
>>> monitor.n, monitor.n_drifts
(4000, 1)
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from river import drift
from river.drift import binary

from models.clock import Clock, system_clock
from models.drift.alerts import DriftAlert


@dataclass(frozen=True)
class DetectorInfo:
    """How freshet builds and reads one River detector."""

    factory: Callable[..., Any]
    binary: bool
    warnings: bool
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Two-sided detectors also fire when the error falls; see ``alert_on``.
    two_sided: bool = False
    # Fed ``1 - error`` (River's FHDDM detects a drop in its input's mean).
    invert: bool = False


DETECTORS: dict[str, DetectorInfo] = {
    "adwin": DetectorInfo(drift.ADWIN, binary=False, warnings=False, two_sided=True),
    "page_hinkley": DetectorInfo(
        drift.PageHinkley, binary=False, warnings=False,
        defaults={"delta": 0.03, "threshold": 30.0, "alpha": 1.0, "mode": "up"},
    ),
    "kswin": DetectorInfo(
        drift.KSWIN, binary=False, warnings=False, two_sided=True,
        defaults={"alpha": 1e-5, "window_size": 200, "stat_size": 50},
    ),
    "ddm": DetectorInfo(binary.DDM, binary=True, warnings=True, defaults={"warm_start": 100}),
    "eddm": DetectorInfo(
        binary.EDDM, binary=True, warnings=True, defaults={"warm_start": 300, "alpha": 0.9, "beta": 0.8}
    ),
    "hddm_a": DetectorInfo(binary.HDDMA, binary=True, warnings=True),
    "hddm_w": DetectorInfo(
        binary.HDDMW, binary=True, warnings=True,
        defaults={"drift_confidence": 1e-5, "warning_confidence": 1e-4, "lambda_val": 0.01},
    ),
    # River's FHDDM has the warning API but never sets the flag.
    "fhddm": DetectorInfo(
        binary.FHDDM, binary=True, warnings=False, invert=True,
        defaults={"sliding_window_size": 500, "confidence_level": 1e-7},
    ),
}

_ALIASES = {"ph": "page_hinkley", "pagehinkley": "page_hinkley", "hddma": "hddm_a", "hddmw": "hddm_w"}


def detector_name(name: str) -> str:
    """The canonical detector name for ``name`` (case, ``-`` and River's spellings accepted).

    >>> detector_name("HDDM-A"), detector_name("PageHinkley"), detector_name("adwin")
    ('hddm_a', 'page_hinkley', 'adwin')
    """
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key.replace("_", ""), key)
    if key not in DETECTORS:
        raise ValueError(f"unknown drift detector {name!r}; use one of {', '.join(DETECTORS)}")
    return key


def build_detector(name: str, params: Mapping[str, Any] | None = None, seed: int | None = None) -> Any:
    """A River detector: freshet's defaults for ``name`` updated with ``params``; ``seed`` if it takes one.

    >>> build_detector("page_hinkley", {"threshold": 50}).threshold
    50
    >>> build_detector("adwin", {"deltta": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: drift detector adwin has no parameter 'deltta'; its parameters are clock, delta, grace_period, max_buckets, min_window_length
    """  # noqa: E501
    info = DETECTORS[detector_name(name)]
    accepted = set(inspect.signature(info.factory).parameters) - {"self"}
    kwargs = {**info.defaults, **dict(params or {})}
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"drift detector {detector_name(name)} has no parameter {key!r}; "
                f"its parameters are {', '.join(sorted(accepted))}"
            )
    if seed is not None and "seed" in accepted and "seed" not in kwargs:
        kwargs["seed"] = seed
    return info.factory(**kwargs)


class ConceptDriftMonitor:
    """Watch one model's error stream with one River detector (see the module docstring).

    ``subject`` names the model in alerts. ``min_spacing`` is the cool-down in values between two drift
    alerts; ``stat_window`` the number of recent errors behind the ``error_rate`` statistic; ``clock``
    gives ``detected_ts`` (epoch seconds). ``emit_warnings=False`` keeps warning alerts quiet while
    :attr:`in_warning` still tracks the state.

    >>> m = ConceptDriftMonitor("ddm", subject="fraud")
    >>> m.update(True) is None and m.update(0) is None
    True
    >>> m.has_warnings, m.in_warning, m.n
    (True, False, 2)
    >>> m.update(0.5)
    Traceback (most recent call last):
    ...
    ValueError: drift detector ddm takes 0/1 errors (classification), got 0.5; use adwin, page_hinkley or kswin for real-valued errors
    """  # noqa: E501

    def __init__(
        self,
        detector: str = "adwin",
        params: Mapping[str, Any] | None = None,
        *,
        subject: str = "model",
        seed: int | None = None,
        min_spacing: int = 500,
        stat_window: int = 100,
        alert_on: str = "increase",
        emit_warnings: bool = True,
        clock: Clock = system_clock,
    ) -> None:
        if alert_on not in ("increase", "any"):
            raise ValueError(f"alert_on={alert_on!r}: use 'increase' or 'any'")
        if min_spacing < 0 or stat_window < 1:
            raise ValueError("min_spacing must be >= 0 and stat_window >= 1")
        self.detector_name = detector_name(detector)
        self.params = dict(params or {})
        self.subject = subject
        self.seed = seed
        self.min_spacing = min_spacing
        self.stat_window = stat_window
        self.alert_on = alert_on
        self.emit_warnings = emit_warnings
        self.clock = clock
        self._info = DETECTORS[self.detector_name]
        self._detector = build_detector(self.detector_name, self.params, seed)
        two_sided_ph = self.detector_name == "page_hinkley" and self._detector.mode == "both"
        self._two_sided = self._info.two_sided or two_sided_ph
        self.n = 0
        self.n_drifts = 0
        self.n_warnings = 0
        self.n_improvements = 0
        self.n_suppressed = 0
        self.last_drift_n: int | None = None
        self.last_warning_alert_n: int | None = None
        self.in_warning = False
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._recent: deque[float] = deque(maxlen=self.stat_window)
        self._recent_sum = 0.0
        self._since_sum = 0.0
        self._since_n = 0

    @property
    def has_warnings(self) -> bool:
        """Whether this detector has a warning zone."""
        return self._info.warnings

    @property
    def detector(self) -> Any:
        """The River detector (read-only use: for inspection)."""
        return self._detector

    def reset(self) -> None:
        """Start over with a fresh detector (e.g. after the model was replaced); counters are kept."""
        self._detector = build_detector(self.detector_name, self.params, self.seed)
        self.in_warning = False
        self._reset_stats()

    def update(
        self, error: float | bool, event_ts: float | None = None, offset: int | None = None
    ) -> DriftAlert | None:
        """Feed one error; an alert when a drift (or a warning) starts at this value, else ``None``."""
        x = float(error)
        if math.isnan(x):
            return None  # nothing to learn from (e.g. a metric undefined on this example)
        if self._info.binary and x not in (0.0, 1.0):
            raise ValueError(
                f"drift detector {self.detector_name} takes 0/1 errors (classification), got {error!r}; "
                "use adwin, page_hinkley or kswin for real-valued errors"
            )
        self.n += 1
        before = self._detector.estimation if self.detector_name == "adwin" else None
        self._push(x)
        self._detector.update(1.0 - x if self._info.invert else x)

        if self._detector.drift_detected:
            self.in_warning = False
            alert = self._on_drift(before, event_ts, offset)
            self._since_sum, self._since_n = self._recent_sum, len(self._recent)
            return alert
        warning = bool(self._info.warnings and self._detector.warning_detected)
        started = warning and not self.in_warning
        self.in_warning = warning
        if started:
            self.n_warnings += 1
            last = self.last_warning_alert_n
            spaced = last is None or self.n - last >= self.min_spacing
            if self.emit_warnings and spaced and not self._cooling_down():
                self.last_warning_alert_n = self.n
                recent, baseline = self._rates()
                return self._alert("warning", "error_rate", recent, baseline, event_ts, offset)
        return None

    def _push(self, x: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_sum -= self._recent[0]
        self._recent.append(x)
        self._recent_sum += x
        self._since_sum += x
        self._since_n += 1

    def _rates(self) -> tuple[float, float]:
        """(mean of the recent errors, mean error before them since the last drift)."""
        recent = self._recent_sum / len(self._recent)
        older_n = self._since_n - len(self._recent)
        baseline = (self._since_sum - self._recent_sum) / older_n if older_n > 0 else recent
        return recent, baseline

    def _cooling_down(self) -> bool:
        return self.last_drift_n is not None and self.n - self.last_drift_n < self.min_spacing

    def _on_drift(
        self, before: float | None, event_ts: float | None, offset: int | None
    ) -> DriftAlert | None:
        statistic, value, threshold = self._statistic(before)
        recent, baseline = self._rates()
        if self.detector_name == "adwin" and before is not None:
            recent, baseline = value, threshold
        if self._two_sided and self.alert_on == "increase" and recent <= baseline:
            self.n_improvements += 1
            return None
        if self._cooling_down():
            self.n_suppressed += 1
            return None
        self.n_drifts += 1
        self.last_drift_n = self.n
        return self._alert("drift", statistic, value, threshold, event_ts, offset)

    def _statistic(self, before: float | None) -> tuple[str, float, float]:
        d = self._detector
        name = self.detector_name
        # The detectors' internals are read defensively: a River release may rename them. River exposes no
        # public statistic for Page-Hinkley or DDM, hence the private reads (SLF001) below.
        try:
            if name == "adwin":
                return "error_mean", float(d.estimation), float(before if before is not None else 0.0)
            if name == "page_hinkley":
                up = d._sum_increase - d._min_increase  # noqa: SLF001  (River: no public statistic)
                down = d._max_decrease - d._sum_decrease  # noqa: SLF001
                ph = {"up": up, "down": down}.get(d.mode, max(up, down))
                return "ph", float(ph), float(d.threshold)
            if name == "kswin":
                return "p_value", float(d.p_value), float(d.alpha)
            if name == "ddm":
                p = d._p.get()  # noqa: SLF001
                s = math.sqrt(p * (1 - p) / d._p.n)  # noqa: SLF001
                return "p_plus_s", p + s, float(d._p_min + d.drift_threshold * d._s_min)  # noqa: SLF001
        except (AttributeError, TypeError, ZeroDivisionError):
            pass
        recent, baseline = self._rates()
        return "error_rate", recent, baseline

    def _alert(
        self, level: str, statistic: str, value: float, threshold: float,
        event_ts: float | None, offset: int | None,
    ) -> DriftAlert:
        return DriftAlert(
            kind="concept", subject=self.subject, detector=self.detector_name, statistic=statistic,
            value=value, threshold=threshold, event_ts=event_ts, offset=offset, level=level,
            detected_ts=self.clock(), n=self.n,
        )
