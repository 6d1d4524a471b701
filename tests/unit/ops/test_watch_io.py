"""freshet watch's arithmetic on /metrics scrapes: histogram quantiles, throughput, an unreachable worker."""

from __future__ import annotations

import math
import random
import urllib.error

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.ops.scrape import parse_exposition
from streams.ops.watch import (
    Scrape,
    Throughput,
    WorkerMonitor,
    bucket_increase,
    frame_text,
    histogram_buckets,
    histogram_quantile,
    throughput,
)
from streams.ops.watch_view import WatchState
from streams.runtime.metrics import LATENCY_BUCKETS_S, Metrics

INF = math.inf


def exposition(metrics: Metrics) -> dict[str, float]:
    """The registry as the worker serves it, parsed as streams.ops.scrape parses /metrics."""
    return parse_exposition(generate_latest(metrics.registry).decode())


# --- histogram_quantile ---------------------------------------------------------------------------


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.4, 40.0), (INF, 40.0)]
    # rank 20 lies halfway through the (0.1, 0.2] bucket, which holds ranks 10..30.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    # rank 5 is in the first bucket, which starts at 0.
    assert histogram_quantile(0.125, buckets) == pytest.approx(0.05)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.4)
    assert histogram_quantile(0.0, buckets) == pytest.approx(0.0)


def test_quantile_of_uniform_observations_is_close_to_the_true_quantile() -> None:
    rng = random.Random(3)
    values = [rng.uniform(0.0, 1.0) for _ in range(20_000)]
    bounds = [i / 20 for i in range(1, 21)] + [INF]
    buckets = [(b, float(sum(v <= b for v in values))) for b in bounds]
    ordered = sorted(values)
    for q in (0.1, 0.5, 0.9, 0.99):
        estimate = histogram_quantile(q, buckets)
        assert estimate is not None
        assert estimate == pytest.approx(ordered[int(q * len(ordered)) - 1], abs=0.01)


def test_quantile_in_the_inf_bucket_answers_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(0.5, 1.0), (1.0, 2.0), (INF, 100.0)]) == 1.0
    assert histogram_quantile(0.5, [(INF, 7.0)]) is None


def test_quantile_of_an_empty_histogram_is_none_and_q_is_checked() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        histogram_quantile(1.5, [(INF, 1.0)])


def test_quantile_does_not_depend_on_bucket_order() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.4, 40.0), (INF, 40.0)]
    assert histogram_quantile(0.9, list(reversed(buckets))) == histogram_quantile(0.9, buckets)


def test_buckets_and_quantiles_read_from_the_workers_real_histogram() -> None:
    m = Metrics(CollectorRegistry())
    for _ in range(90):
        m.prediction_latency.observe(0.003)
    for _ in range(10):
        m.prediction_latency.observe(0.040)
    buckets = histogram_buckets(exposition(m), "freshet_event_to_prediction_seconds")
    assert [b for b, _ in buckets] == [*LATENCY_BUCKETS_S, INF]
    assert buckets[-1] == (INF, 100.0)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    assert p50 is not None and 0.0025 < p50 <= 0.005
    assert p99 is not None and 0.025 < p99 <= 0.05


def test_bucket_increase_after_a_restart_is_the_new_counts() -> None:
    before = [(0.1, 50.0), (INF, 60.0)]
    assert bucket_increase(before, [(0.1, 55.0), (INF, 70.0)]) == [(0.1, 5.0), (INF, 10.0)]
    assert bucket_increase(before, [(0.1, 2.0), (INF, 3.0)]) == [(0.1, 2.0), (INF, 3.0)]
    # A bucket first exposed in the second scrape grew from 0.
    assert bucket_increase([], [(0.1, 2.0), (INF, 3.0)]) == [(0.1, 2.0), (INF, 3.0)]


# --- throughput ------------------------------------------------------------------------------------


def test_throughput_is_the_rate_of_predict_events_and_latency_of_the_interval_only() -> None:
    m = Metrics(CollectorRegistry())
    m.events.labels(stage="validate").inc(10_000)  # other stages do not count
    m.events.labels(stage="predict").inc(1_000)
    for _ in range(1_000):
        m.prediction_latency.observe(0.8)  # slow, but before the interval
    first = Scrape(100.0, exposition(m))
    m.events.labels(stage="predict").inc(3_000)
    for _ in range(3_000):
        m.prediction_latency.observe(0.004)
    second = Scrape(102.0, exposition(m))

    result = throughput(first, second)
    assert result.events_per_s == pytest.approx(1_500.0)
    assert result.p50_ms is not None and 2.5 < result.p50_ms <= 5.0
    assert result.p99_ms is not None and result.p99_ms <= 5.0, "the slow observations were before the interval"


def test_throughput_of_an_idle_worker_is_zero_without_latency() -> None:
    page = {'freshet_events_total{stage="predict"}': 500.0,
            'freshet_event_to_prediction_seconds_bucket{le="+Inf"}': 500.0}
    assert throughput(Scrape(1.0, page), Scrape(2.0, page)) == Throughput(0.0, None, None)


def test_throughput_before_the_first_prediction_and_after_a_restart() -> None:
    assert throughput(Scrape(0.0, {}), Scrape(1.0, {})) == Throughput(0.0, None, None)
    before = Scrape(0.0, {'freshet_events_total{stage="predict"}': 9_000.0})
    after = Scrape(4.0, {'freshet_events_total{stage="predict"}': 200.0})
    assert throughput(before, after).events_per_s == pytest.approx(50.0)


def test_throughput_of_two_scrapes_at_the_same_instant_is_zero() -> None:
    page = {'freshet_events_total{stage="predict"}': 5.0}
    assert throughput(Scrape(3.0, {}), Scrape(3.0, page)).events_per_s == 0.0


# --- the worker monitor ---------------------------------------------------------------------------


def test_an_unreachable_worker_clears_the_rates_and_says_so() -> None:
    pages: list[dict[str, float] | Exception] = [
        {'freshet_events_total{stage="predict"}': 0.0},
        {'freshet_events_total{stage="predict"}': 100.0},
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        {'freshet_events_total{stage="predict"}': 20.0},
        {'freshet_events_total{stage="predict"}': 40.0},
    ]
    times = iter([0.0, 1.0, 2.0, 3.0, 4.0])

    def scrape(url: str) -> dict[str, float]:
        page = pages.pop(0)
        if isinstance(page, Exception):
            raise page
        return page

    state = WatchState()
    monitor = WorkerMonitor("http://127.0.0.1:9/metrics", scrape, lambda: next(times))
    monitor.update(state)
    monitor.update(state)
    assert state.events_per_s == 100.0

    monitor.update(state)
    assert state.events_per_s is None
    screen = frame_text(state, monitor.status, width=120)
    assert "worker unreachable at http://127.0.0.1:9/metrics" in screen
    assert "Connection refused" in screen

    monitor.update(state)  # back: the first scrape after the gap has nothing to compare with
    assert state.events_per_s is None and monitor.status.endswith(": up")
    monitor.update(state)
    assert state.events_per_s == 20.0
