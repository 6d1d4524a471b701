"""Concept drift: exact detection points on seeded streams, and silence on stationary ones.

Each stream has known drift points; the monitor must flag every one, and the test pins the index where
it does (``tests`` fail if a River upgrade or a code change moves it) and the delay in events. Measured
with river 0.26.1 (``.venv/bin/pytest tests/unit/test_drift_concept.py -q -rA`` prints the delays):

============================================================  =============  ==========  ===========
stream (change at 5000 unless said)                           model          detector    delay
============================================================  =============  ==========  ===========
Bernoulli errors 0.2 -> 0.5                                   —              each        BERNOULLI_EXPECTED
SEA variant 0 -> 3 (hand switch)                              LogReg         adwin       87
Agrawal function 0 -> 2 (hand switch)                         HoeffdingTree  adwin       23
Hyperplane seed 1 -> 2, 10 features (hand switch)             LogReg         adwin       55
ConceptDriftStream Agrawal 0 -> 2, width 50                   HoeffdingTree  adwin       23
Hyperplane 1 -> 2 -> 3, drifts at 5000 and 10000              LogReg         adwin       55, 111
|abs N(0,1)| -> |abs N(0,2)| at 1500 (real-valued errors)       —              kswin       61
============================================================  =============  ==========  ===========

River's ConceptDriftStream overflows ``math.exp`` when ``position / width`` exceeds about 170, so abrupt
drifts are built by switching generators by hand; the one ConceptDriftStream case keeps the ratio at 100.
"""

from __future__ import annotations

import itertools
import pickle
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from river import linear_model, preprocessing, tree
from river.datasets import synth

from models.drift import ConceptDriftMonitor, DriftAlert
from models.drift.concept import DETECTORS, build_detector

CHANGE = 5000


def bernoulli(n: int, p: float, seed: int, change: int | None = None, p_after: float = 0.0) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < (p_after if change is not None and i >= change else p) for i in range(n)]


def switch(*parts: tuple[Iterable[tuple[dict[str, Any], Any]], int]) -> Iterator[tuple[dict[str, Any], Any]]:
    """Concatenate ``(generator, how_many)`` segments: an abrupt drift at each boundary."""
    return itertools.chain.from_iterable(itertools.islice(gen, n) for gen, n in parts)


def error_stream(stream: Iterable[tuple[dict[str, Any], Any]], model: Any) -> list[bool]:
    """Test-then-train: the model's 0/1 error on each example before it learns it."""
    errors = []
    for x, y in stream:
        errors.append(model.predict_one(x) != y)
        model.learn_one(x, y)
    return errors


def run(monitor: ConceptDriftMonitor, errors: Iterable[float | bool]) -> list[DriftAlert]:
    alerts = []
    for i, e in enumerate(errors):
        alert = monitor.update(e, event_ts=1_700_000_000.0 + i, offset=i)
        if alert is not None:
            alerts.append(alert)
    return alerts


def drift_offsets(alerts: list[DriftAlert]) -> list[int | None]:
    return [a.offset for a in alerts if a.level == "drift"]


def logreg() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def hoeffding() -> Any:
    return tree.HoeffdingTreeClassifier(grace_period=100)


# --- synthetic error streams: every detector, exact points ------------------------------------------

# detector -> (index of the drift alert, index of the first warning alert or None) on
# bernoulli(10_000, 0.2, seed=3, change=5000, p_after=0.5)
BERNOULLI_EXPECTED: dict[str, tuple[int, int | None]] = {
    "adwin": (5087, None),  # delay 87
    "page_hinkley": (5077, None),  # delay 77
    "ddm": (5669, 5216),  # delay 669 (warning after 216): DDM's error rate is cumulative since its reset
    "eddm": (5859, 5082),  # delay 859 (warning after 82)
    "hddm_a": (5075, 5067),  # delay 75 (warning after 67)
    "hddm_w": (5069, 5060),  # delay 69 (warning after 60)
    "fhddm": (5117, None),  # delay 117 (River's FHDDM never raises its warning flag)
}

# Warning alerts (not drifts) on the stationary 100k stream: the warning zone is meant to be entered by
# chance now and then; min_spacing rate-limits the alerts. Detectors without warnings raise nothing.
STATIONARY_WARNINGS = {"ddm": 9, "eddm": 1, "hddm_a": 1, "hddm_w": 1}


@pytest.mark.parametrize("detector", sorted(BERNOULLI_EXPECTED))
def test_abrupt_error_rate_change_detected_at_exact_point(detector: str) -> None:
    errors = bernoulli(10_000, 0.2, seed=3, change=CHANGE, p_after=0.5)
    alerts = run(ConceptDriftMonitor(detector, subject="m", seed=1), errors)
    drift_at, warning_at = BERNOULLI_EXPECTED[detector]
    assert drift_offsets(alerts) == [drift_at], f"{detector}: delay {drift_at - CHANGE} events"
    warnings = [a.offset for a in alerts if a.level == "warning" and a.offset is not None and a.offset >= CHANGE]
    assert (warnings[0] if warnings else None) == warning_at
    alert = next(a for a in alerts if a.level == "drift")
    assert alert.kind == "concept" and alert.subject == "m" and alert.detector == detector
    assert alert.n == drift_at + 1 and alert.event_ts == 1_700_000_000.0 + drift_at


def test_kswin_on_real_valued_errors() -> None:
    # KSWIN tests the distribution of the errors: fit for regression's absolute errors.
    rng = random.Random(5)
    errors = [abs(rng.gauss(0.0, 1.0 if i < 1500 else 2.0)) for i in range(3000)]
    alerts = run(ConceptDriftMonitor("kswin", subject="reg", seed=1), errors)
    assert drift_offsets(alerts) == [1561]  # delay 61
    assert alerts[0].statistic == "p_value" and alerts[0].value < alerts[0].threshold


# --- River's synthetic datasets through a real model ------------------------------------------------

Stream = Callable[[], Iterable[tuple[dict[str, Any], Any]]]
STREAMS: dict[str, tuple[Stream, Callable[[], Any], list[int], list[int]]] = {
    # name: (stream, model, true drift points, expected ADWIN detection points)
    "sea": (
        lambda: switch((synth.SEA(variant=0, seed=1), CHANGE), (synth.SEA(variant=3, seed=2), CHANGE)),
        logreg, [CHANGE], [5087],  # delay 87
    ),
    "agrawal": (
        lambda: switch(
            (synth.Agrawal(classification_function=0, seed=1), CHANGE),
            (synth.Agrawal(classification_function=2, seed=2), CHANGE),
        ),
        hoeffding, [CHANGE], [5023],  # delay 23
    ),
    "hyperplane": (
        lambda: switch(
            (synth.Hyperplane(seed=1, n_features=10), CHANGE), (synth.Hyperplane(seed=2, n_features=10), CHANGE)
        ),
        logreg, [CHANGE], [5055],  # delay 55
    ),
    "concept_drift_stream": (
        lambda: itertools.islice(
            synth.ConceptDriftStream(
                stream=synth.Agrawal(classification_function=0, seed=1),
                drift_stream=synth.Agrawal(classification_function=2, seed=2),
                position=CHANGE, width=50, seed=3,
            ),
            2 * CHANGE,
        ),
        hoeffding, [CHANGE], [5023],  # delay 23 from the centre of the 50-event transition
    ),
    "hyperplane_two_drifts": (
        lambda: switch(
            (synth.Hyperplane(seed=1, n_features=10), CHANGE),
            (synth.Hyperplane(seed=2, n_features=10), CHANGE),
            (synth.Hyperplane(seed=3, n_features=10), CHANGE),
        ),
        logreg, [CHANGE, 2 * CHANGE], [5055, 10111],  # delays 55 and 111
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_drift_detected_on_seeded_streams(name: str) -> None:
    make_stream, make_model, truth, expected = STREAMS[name]
    errors = error_stream(make_stream(), make_model())
    detected = drift_offsets(run(ConceptDriftMonitor(subject=name), errors))
    assert detected == expected
    delays = [d - t for d, t in zip(detected, truth, strict=True)]  # type: ignore[operator]
    print(f"{name}: drifts at {truth}, detected at {detected}, delay {delays} events")


# --- no alert on stationary streams -----------------------------------------------------------------

@pytest.mark.parametrize("detector", sorted(set(DETECTORS) - {"kswin"}))
def test_no_drift_alert_on_100k_stationary_errors(detector: str) -> None:
    monitor = ConceptDriftMonitor(detector, subject="m", seed=1)
    alerts = run(monitor, bernoulli(100_000, 0.2, seed=1))
    assert drift_offsets(alerts) == []
    assert len(alerts) == STATIONARY_WARNINGS.get(detector, 0)


def test_default_monitor_silent_on_100k_stationary_model_stream() -> None:
    errors = error_stream(itertools.islice(synth.SEA(variant=0, seed=7), 100_000), logreg())
    monitor = ConceptDriftMonitor(subject="sea")
    assert run(monitor, errors) == []
    assert monitor.n == 100_000


def test_kswin_silent_on_stationary_real_valued_errors() -> None:
    # 10k values only: KSWIN runs a KS test on every update (~0.4 ms each).
    rng = random.Random(11)
    assert run(ConceptDriftMonitor("kswin", seed=1), [abs(rng.gauss(0, 1)) for _ in range(10_000)]) == []


# --- behaviour --------------------------------------------------------------------------------------

def test_min_spacing_gives_one_alert_per_drift() -> None:
    # A gradual drift: the error rate ramps from 0.05 to 0.6 over 3000 events, and the detector fires
    # each time it resets and sees the rate still climbing.
    rng = random.Random(2)
    errors = [rng.random() < min(0.6, 0.05 + 0.55 * max(0, i - CHANGE) / 3000) for i in range(12_000)]
    loud = ConceptDriftMonitor("page_hinkley", min_spacing=0)
    assert drift_offsets(run(loud, errors)) == [5731, 6741, 7474]
    quiet = ConceptDriftMonitor("page_hinkley", min_spacing=3000)
    assert drift_offsets(run(quiet, errors)) == [5731]
    assert quiet.n_suppressed == 2


def test_error_decrease_is_not_an_alert_by_default() -> None:
    errors = bernoulli(10_000, 0.5, seed=4, change=CHANGE, p_after=0.1)
    improving = ConceptDriftMonitor("adwin")
    assert run(improving, errors) == []
    assert improving.n_improvements >= 1
    assert drift_offsets(run(ConceptDriftMonitor("adwin", alert_on="any"), errors)) != []


def test_runs_repeat_exactly_with_a_seed() -> None:
    rng = random.Random(5)
    errors = [abs(rng.gauss(0.0, 1.0 if i < 700 else 3.0)) for i in range(1400)]
    first = [a.offset for a in run(ConceptDriftMonitor("kswin", seed=3), errors)]
    second = [a.offset for a in run(ConceptDriftMonitor("kswin", seed=3), errors)]
    assert first == second != []


def test_binary_detectors_refuse_real_valued_errors() -> None:
    with pytest.raises(ValueError, match="takes 0/1 errors"):
        ConceptDriftMonitor("hddm_w").update(0.3)
    assert ConceptDriftMonitor("hddm_w").update(float("nan")) is None  # undefined error: skipped


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_monitor_pickles_mid_stream_and_resumes_identically(detector: str) -> None:
    errors = bernoulli(3000, 0.1, seed=8, change=1500, p_after=0.6)
    monitor = ConceptDriftMonitor(detector, seed=1)
    run(monitor, errors[:1400])
    copy = pickle.loads(pickle.dumps(monitor))
    tail = list(enumerate(errors[1400:], start=1400))
    original = [a.offset for i, e in tail if (a := monitor.update(e, offset=i)) and a.level == "drift"]
    restored = [a.offset for i, e in tail if (a := copy.update(e, offset=i)) and a.level == "drift"]
    assert original == restored != []


def test_unknown_detector_and_parameter_are_named() -> None:
    with pytest.raises(ValueError, match="unknown drift detector 'adwn'"):
        ConceptDriftMonitor("adwn")
    with pytest.raises(ValueError, match="has no parameter 'treshold'"):
        build_detector("page_hinkley", {"treshold": 3})


def test_reset_starts_a_fresh_detector() -> None:
    monitor = ConceptDriftMonitor("ddm")
    run(monitor, bernoulli(3000, 0.2, seed=1))
    monitor.reset()
    assert monitor.detector._p.n == 0 and monitor.n == 3000
