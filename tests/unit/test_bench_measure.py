"""The peer benchmark's arithmetic (bench/measure.py): rates, latencies, percentiles, ratios, the table."""

from __future__ import annotations

import math

from bench import measure
from streams.ops.summary import percentile as streams_percentile


def test_rate_is_n_over_first_consumption_to_last_output() -> None:
    assert measure.rate(20_000, 10.0, 30.0) == 1000.0
    assert measure.rate(0, 10.0, 30.0) is None
    assert measure.rate(5, 30.0, 10.0) is None


def test_percentile_is_nearest_rank_like_the_demo_summary() -> None:
    values = [float(v) for v in range(1, 201)]
    for q in (0.01, 0.5, 0.9, 0.99, 1.0):
        assert measure.percentile(values, q) == streams_percentile(values, q)
    assert measure.percentile([5.0], 0.99) == 5.0
    assert math.isnan(measure.percentile([], 0.5))


def test_latencies_pair_by_event_id_and_missing_outputs_are_counted() -> None:
    inputs = {"a": 1.0, "b": 2.0, "c": 3.0}
    outputs = {"a": 1.010, "c": 3.5, "z": 9.0}
    lat = measure.latencies_ms(inputs, outputs)
    assert lat == [10.0, 500.0]
    summary = measure.summarize_latency(lat, expected=len(inputs))
    assert (summary["p50_ms"], summary["p99_ms"], summary["missing"]) == (10.0, 500.0, 1)


def test_ratios_are_against_the_ceiling_of_the_same_run() -> None:
    systems = {
        "ceiling": {"a": {"events_per_s": 20_000.0}},
        "quix": {"a": {"events_per_s": 4_000.0}, "b": {"events_per_s": 2_000.0, "loop_events_per_s": 1_000.0}},
        "freshet": {"a": {"events_per_s": 1_000.0}, "b": {"events_per_s": None, "loop_events_per_s": None}},
    }
    cross = measure.add_ratios(systems)
    assert systems["quix"]["a"]["ratio_to_ceiling"] == 0.2
    assert systems["quix"]["b"]["loop_ratio_to_ceiling"] == 0.05
    assert systems["freshet"]["b"]["ratio_to_ceiling"] is None
    assert cross == {"freshet_vs_quix_a": 0.25}


def test_table_has_a_row_per_system_and_job() -> None:
    systems = {"ceiling": {"a": {"events_per_s": 100.0}}, "freshet": {"a": {}, "b": {"notes": ["stalled"]}}}
    rows = measure.table(systems).splitlines()
    assert len(rows) == 2 + 3
    assert rows[-1].startswith("| freshet | B |") and rows[-1].endswith("| stalled |")
