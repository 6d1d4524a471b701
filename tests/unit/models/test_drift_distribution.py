"""Distribution drift: PSI and KS against scipy, window monitors, one alert naming the shifted feature."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import rel_entr

from models.drift import DriftConfig, FeatureDriftMonitors, WindowDriftMonitor, ks_statistic, psi, psi_categorical
from models.drift.distribution import bin_shares, quantile_edges


def scipy_psi(reference: list[float], current: list[float], bins: int, eps: float) -> float:
    """PSI as the symmetric KL divergence of the smoothed shares (PSI = KL(c||r) + KL(r||c))."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(edges)
    k = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=k) / len(reference)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=k) / len(current)
    r = (r + eps) / (1 + k * eps)
    c = (c + eps) / (1 + k * eps)
    return float(np.sum(rel_entr(c, r) + rel_entr(r, c)))


def test_psi_matches_scipy_on_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000).tolist()
    cur = rng.normal(0.5, 1, 5000).tolist()
    assert psi(ref, cur, bins=10) == pytest.approx(scipy_psi(ref, cur, 10, 1e-4), rel=1e-9)
    # A half-sigma mean shift is a "moderate" PSI, an identical sample is 0.
    assert 0.2 < psi(ref, cur) < 0.35
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_psi_known_value_by_hand() -> None:
    # Reference quartiles of 0..99 put 25 values in each bin; the current sample fills two bins only.
    ref = list(range(100))
    cur = [10.0] * 50 + [90.0] * 50
    eps = 1e-4
    r = (0.25 + eps) / (1 + 4 * eps)
    c_full, c_empty = (0.5 + eps) / (1 + 4 * eps), eps / (1 + 4 * eps)
    expected = 2 * (c_full - r) * math.log(c_full / r) + 2 * (c_empty - r) * math.log(c_empty / r)
    assert psi(ref, cur, bins=4, eps=eps) == pytest.approx(expected, rel=1e-12)


def test_psi_categorical_with_unseen_category() -> None:
    ref = ["a"] * 60 + ["b"] * 40
    cur = ["a"] * 30 + ["b"] * 40 + ["c"] * 30
    eps = 1e-4
    r = np.array([0.6, 0.4, 0.0])
    c = np.array([0.3, 0.4, 0.3])
    r, c = (r + eps) / (1 + 3 * eps), (c + eps) / (1 + 3 * eps)
    assert psi_categorical(ref, cur, eps) == pytest.approx(float(np.sum(rel_entr(c, r) + rel_entr(r, c))))
    assert psi(ref, cur) == psi_categorical(ref, cur)  # strings route to categories
    assert psi([True] * 50 + [False] * 50, [True] * 50 + [False] * 50) == pytest.approx(0.0)


@pytest.mark.filterwarnings("ignore:ks_2samp:RuntimeWarning")  # scipy's p-value, not the statistic
@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=80),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=80),
)
def test_ks_statistic_equals_scipy(a: list[float], b: list[float]) -> None:
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_with_ties_and_known_value() -> None:
    assert ks_statistic([1, 1, 2, 2], [2, 2, 3, 3]) == pytest.approx(0.5)
    assert ks_statistic([0.0, 1.0], [5.0, 6.0]) == 1.0
    assert ks_statistic([], [1.0]) == 0.0


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=60), st.integers(2, 12))
def test_shares_sum_to_one_and_psi_is_non_negative(values: list[float], bins: int) -> None:
    edges = quantile_edges(values, bins)
    assert edges == sorted(edges) and len(edges) <= bins - 1
    assert sum(bin_shares(values, edges)) == pytest.approx(1.0)
    assert psi(values, list(reversed(values)), bins) == pytest.approx(0.0, abs=1e-9)
    assert psi(values, [v * 2 + 1 for v in values], bins) >= 0.0


def test_window_monitor_stationary_is_silent_and_shift_alerts_once() -> None:
    rng = random.Random(3)
    m = WindowDriftMonitor("x", kind="feature", reference_size=1000, current_size=1000, check_every=100)
    quiet = [m.update(rng.gauss(0, 1), offset=i) for i in range(20_000)]
    assert [a for a in quiet if a] == []
    assert m.n_checks == 181  # first check once both windows are full (2000), then every 100
    shifted = [m.update(rng.gauss(1.0, 1), event_ts=float(i), offset=20_000 + i) for i in range(5000)]
    alerts = [a for a in shifted if a]
    assert [(a.subject, a.kind, a.offset) for a in alerts] == [("x", "feature", 20_399)]  # delay 400 values
    assert alerts[0].statistic in ("psi", "ks") and alerts[0].value > alerts[0].threshold


def test_rebase_current_uses_the_window_at_the_alert() -> None:
    m = WindowDriftMonitor("x", reference_size=100, current_size=100, check_every=10, rebase="current")
    for i in range(100):
        m.update(float(i % 10))
    alert = None
    i = 0
    while alert is None:
        alert = m.update(100.0 + i % 10)
        i += 1
    assert len(m.reference) == 100 and len(m.current) == 0
    assert sum(1 for v in m.reference if isinstance(v, float) and v >= 100) == i


def test_tumbling_window_checks_each_full_batch() -> None:
    m = WindowDriftMonitor("x", reference_size=50, current_size=50, window="tumbling")
    for i in range(50 + 50 * 4):
        m.update(float(i % 7))
    assert m.n_checks == 4 and m.n_alerts == 0


def test_missing_values_are_counted_not_compared() -> None:
    m = WindowDriftMonitor("x", reference_size=10, current_size=10)
    for v in [None, float("nan"), 1.0]:
        m.update(v)
    assert m.n_missing == 2 and m.n == 1


def test_wrong_type_values_are_counted_not_fatal() -> None:
    m = WindowDriftMonitor("x", reference_size=10, current_size=10, check_every=1)
    for i in range(30):
        m.update(float(i % 5))
        m.update("oops")
    assert m.n_invalid == 30 and m.n == 30 and m.n_checks == 11


def test_monitors_pickle_with_their_state() -> None:
    rng = random.Random(4)
    fm = FeatureDriftMonitors({"reference_size": 100, "current_size": 100, "check_every": 10})
    for i in range(400):
        fm.update_one({"a": rng.gauss(0, 1), "c": rng.choice("xy")}, offset=i)
    copy = pickle.loads(pickle.dumps(fm))
    rest = [{"a": rng.gauss(2, 1), "c": "x"} for _ in range(300)]
    original = [(a.subject, a.offset) for i, x in enumerate(rest) for a in fm.update_one(x, offset=400 + i)]
    restored = [(a.subject, a.offset) for i, x in enumerate(rest) for a in copy.update_one(x, offset=400 + i)]
    assert original == restored != []


def test_categorical_label_shift() -> None:
    rng = random.Random(9)
    m = WindowDriftMonitor("labels", kind="label", reference_size=500, current_size=500, check_every=50)
    alerts = []
    for i in range(3000):
        p = 0.1 if i < 1500 else 0.4
        a = m.update("fraud" if rng.random() < p else "ok", offset=i)
        if a:
            alerts.append(a)
    # PSI on two categories is a blunt instrument: 0.1 -> 0.4 shows once ~70% of the window has moved.
    assert [(a.kind, a.subject, a.statistic, a.offset) for a in alerts] == [("label", "labels", "psi", 1899)]
    assert "ks" not in m.last


def test_feature_drift_names_only_the_shifted_feature() -> None:
    rng = random.Random(42)
    monitors = FeatureDriftMonitors({"reference_size": 1000, "current_size": 1000, "check_every": 100})
    alerts = []
    shift_at = 10_000
    for i in range(20_000):
        x: dict[str, Any] = {
            "amount_mean_300s": rng.lognormvariate(3, 1),
            "count_60s": float(rng.randint(0, 20)),
            # The one feature whose distribution moves mid-stream: its mean rises by 0.8 sd.
            "latency_p50": rng.gauss(100, 10) + (8 if i >= shift_at else 0),
            "country": rng.choice(["fr", "de", "es"]),
            "missing_sometimes": None if i % 3 == 0 else rng.random(),
        }
        alerts += monitors.update_one(x, event_ts=1_700_000_000.0 + i, offset=i)
    assert [(a.subject, a.offset) for a in alerts] == [("latency_p50", 10_399)]  # delay 399 values
    alert = alerts[0]
    assert alert.kind == "feature" and alert.detector == "window"
    print(f"feature drift at {shift_at} detected at offset {alert.offset} ({alert.statistic}={alert.value:.3f})")
    assert set(monitors.monitors) == {"amount_mean_300s", "count_60s", "latency_p50", "country", "missing_sometimes"}


def test_feature_monitors_from_config_with_overrides() -> None:
    cfg = DriftConfig.from_dict(
        {"features": {"reference_size": 200, "exclude": ["id_hash"], "overrides": {"b": {"psi_threshold": 5.0}}}}
    )
    fm = cfg.feature_monitors()
    assert fm is not None
    fm.update_one({"a": 1.0, "b": 2.0, "id_hash": 3.0})
    assert sorted(fm.monitors) == ["a", "b"]
    assert fm.monitors["b"].psi_threshold == 5.0 and fm.monitors["a"].psi_threshold == 0.2
    assert fm.monitors["a"].reference_size == 200


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="kind 'concept'"):
        WindowDriftMonitor("x", kind="concept")
    with pytest.raises(ValueError, match="set psi_threshold, ks_threshold or both"):
        WindowDriftMonitor("x", psi_threshold=None, ks_threshold=None)
