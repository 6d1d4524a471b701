"""The streaming feature engine: semantics, bad input, state bytes, expiry and replays."""

from __future__ import annotations

import math
import random
from typing import Any

import pandas as pd
import pytest

from streams.features import FeatureEngine, FeatureInputError, StateLayoutError, parse_features
from streams.features.batch import training_set

T0 = 1_699_999_200.0  # a whole hour: windows below start at T0
DAY = 86_400.0


def engine_of(*entries: dict[str, Any]) -> FeatureEngine:
    return FeatureEngine(parse_features(list(entries)))


def feature(name: str, agg: str, window: dict[str, Any], field: str | None = None, **kw: Any) -> dict[str, Any]:
    entry = {"name": name, "agg": agg, "window": window, **kw}
    if field:
        entry["field"] = field
    return entry


def run(engine: FeatureEngine, events: list[tuple[float, dict[str, Any]]]) -> list[dict[str, float | None]]:
    state = engine.new_state()
    return [engine.update(state, t, f).values for t, f in events]


def test_tumbling_windows_follow_event_time_not_arrival() -> None:
    engine = engine_of(feature("n", "count", {"kind": "tumbling", "size_s": 10}, grace_s=30))
    out = run(engine, [(T0 + 1, {}), (T0 + 12, {}), (T0 + 5, {}), (T0 + 13, {})])
    # T0 is a multiple of 10: windows [T0, T0+10) and [T0+10, T0+20).
    assert [v["n"] for v in out] == [1.0, 1.0, 2.0, 2.0]


def test_hopping_is_a_trailing_total_at_hop_resolution() -> None:
    engine = engine_of(feature("s", "sum", {"kind": "hopping", "size_s": 30, "hop_s": 10}, field="x"))
    out = run(engine, [(T0 + 1, {"x": 1.0}), (T0 + 11, {"x": 2.0}), (T0 + 21, {"x": 4.0}), (T0 + 31, {"x": 8.0})])
    # As of T0+31 the earliest-started window containing it is [T0+10, T0+40).
    assert [v["s"] for v in out] == [1.0, 3.0, 7.0, 14.0]


def test_sliding_is_the_last_size_seconds_as_of_each_event() -> None:
    engine = engine_of(feature("m", "max", {"kind": "sliding", "size_s": 0.5, "resolution_s": 0.1}, field="x"))
    out = run(engine, [(T0 + 0.05, {"x": 9.0}), (T0 + 0.42, {"x": 1.0}), (T0 + 0.61, {"x": 2.0})])
    # At 0.61 the window starts at the tile that began 0.4 s before 0.6: [0.2, 0.61]; 9.0 is gone.
    assert [v["m"] for v in out] == [9.0, 9.0, 2.0]


def test_out_of_order_within_grace_sees_nothing_from_its_future() -> None:
    engine = engine_of(
        feature("s", "sum", {"kind": "sliding", "size_s": 60}, field="x", grace_s=10),
        feature("last", "last", {"kind": "sliding", "size_s": 60}, field="x", grace_s=10),
    )
    state = engine.new_state()
    engine.update(state, T0 + 20, {"x": 100.0})
    res = engine.update(state, T0 + 15, {"x": 1.0})  # arrives later, happened earlier
    assert res.values == {"s": 1.0, "last": 1.0} and not res.late
    assert engine.read(state, T0 + 20) == {"s": 101.0, "last": 100.0}


def test_late_events_are_flagged_not_applied_and_carry_the_policy() -> None:
    engine = engine_of(
        feature("strict", "count", {"kind": "tumbling", "size_s": 60}, late_policy="drop"),
        feature("lenient", "count", {"kind": "tumbling", "size_s": 60}, grace_s=5),
        feature("dl", "count", {"kind": "tumbling", "size_s": 60}, grace_s=1, default=-1.0),
    )
    state = engine.new_state()
    engine.update(state, T0 + 30, {})
    res = engine.update(state, T0 + 27, {})
    assert res.late and res.late_features == ("strict", "dl") and res.late_action == "dead-letter"
    assert res.values == {"strict": None, "lenient": 1.0, "dl": -1.0}  # T0+30 is in its future
    res = engine.update(state, T0 + 29.5, {})
    assert res.late_features == ("strict",) and res.late_action == "drop"
    assert engine.read(state, T0 + 30) == {"strict": 1.0, "lenient": 3.0, "dl": 2.0}


def test_equal_timestamps_count_in_arrival_order() -> None:
    engine = engine_of(
        feature("n", "count", {"kind": "sliding", "size_s": 10}),
        feature("last", "last", {"kind": "sliding", "size_s": 10}, field="x"),
        feature("gap", "time_since_last", {"kind": "sliding", "size_s": 10}),
    )
    out = run(engine, [(T0, {"x": 1.0}), (T0, {"x": 2.0}), (T0, {"x": 3.0})])
    assert out == [
        {"n": 1.0, "last": 1.0, "gap": None},
        {"n": 2.0, "last": 2.0, "gap": 0.0},
        {"n": 3.0, "last": 3.0, "gap": 0.0},
    ]


def test_time_since_last_is_the_gap_to_the_previous_event_within_the_window() -> None:
    engine = engine_of(feature("gap", "time_since_last", {"kind": "sliding", "size_s": 60}))
    state = engine.new_state()
    values = [engine.update(state, t, {}).values["gap"] for t in (T0, T0 + 2.5, T0 + 2.75, T0 + 200)]
    assert values == [None, 2.5, 0.25, None]
    assert engine.read(state, T0 + 230) == {"gap": 30.0}


def test_empty_window_values() -> None:
    window = {"kind": "tumbling", "size_s": 1}
    engine = engine_of(
        *[feature(a, a, window, field="x") for a in ("count", "sum", "mean", "min", "max", "std", "variance", "last")],
        feature("distinct_count", "distinct_count", window, field="x"),
        feature("time_since_last", "time_since_last", window),
    )
    state = engine.new_state()
    engine.update(state, T0, {"x": 1.0})
    values = engine.read(state, T0 + 5)
    assert values == {
        "count": 0.0,
        "sum": 0.0,
        "mean": None,
        "min": None,
        "max": None,
        "std": None,
        "variance": None,
        "last": None,
        "distinct_count": 0.0,
        "time_since_last": None,
    }


BAD_VALUES = [float("nan"), float("inf"), -float("inf"), None, "text", [1, 2], {"a": 1}, 1e300, object()]


def test_bad_values_are_skipped_and_never_poison_state() -> None:
    window = {"kind": "sliding", "size_s": 60}
    engine = engine_of(
        *[feature(a, a, window, field="x") for a in ("sum", "mean", "min", "max", "std", "last")],
        feature("n_x", "count", window, field="x"),
        feature("n", "count", window),
        feature("distinct", "distinct_count", window, field="x"),
    )
    state = engine.new_state()
    engine.update(state, T0, {"x": 2.0})
    for i, bad in enumerate(BAD_VALUES):
        res = engine.update(state, T0 + 1 + i, {"x": bad})
        assert res.values["mean"] == 2.0 and res.values["n"] == i + 2
    engine.update(state, T0 + 20, {})  # missing field
    res = engine.update(state, T0 + 21, {"x": 4.0})
    assert res.values["sum"] == 6.0 and res.values["mean"] == 3.0 and res.values["std"] == pytest.approx(math.sqrt(2))
    assert res.values["n_x"] == 3.0  # 2.0, "text" (a valid value of some type), 4.0
    assert res.values["distinct"] == 3.0
    assert engine.loads(engine.dumps(state)) == state


@pytest.mark.parametrize("bad_time", [float("nan"), float("inf"), None, "2024-01-01", True, 1e300, -1e12])
def test_a_bad_event_time_is_an_error_and_changes_nothing(bad_time: Any) -> None:
    engine = engine_of(feature("n", "count", {"kind": "sliding", "size_s": 60}))
    state = engine.new_state()
    engine.update(state, T0, {})
    before = engine.dumps(state)
    with pytest.raises(FeatureInputError, match="event time"):
        engine.update(state, bad_time, {})
    with pytest.raises(FeatureInputError, match="fields must be a mapping"):
        engine.update(state, T0, ["x"])  # type: ignore[arg-type]
    assert engine.dumps(state) == before


def test_ratio_and_attribute_features() -> None:
    window = {"kind": "sliding", "size_s": 60}
    engine = engine_of(
        feature("s", "sum", window, field="x"),
        feature("n", "count", window),
        {"name": "per_event", "agg": "ratio", "numerator": "s", "denominator": "n"},
        {"name": "per_age", "agg": "ratio", "numerator": "s", "denominator": "age", "default": 0.0},
        {"name": "age", "agg": "attribute", "field": "age_days"},
    )
    state = engine.new_state()
    assert engine.attribute_fields == ["age_days"]
    res = engine.update(state, T0, {"x": 3.0}, attributes={"age_days": "2"})
    assert res.values == {"s": 3.0, "n": 1.0, "per_event": 3.0, "per_age": 1.5, "age": 2.0}
    res = engine.update(state, T0 + 1, {"x": 1.0}, attributes={"age_days": 0})
    assert res.values["per_age"] == 0.0 and res.values["per_event"] == 2.0
    assert engine.read(state, T0 + 1)["age"] is None  # no attributes given


def test_dumps_round_trips_exactly_and_is_compact() -> None:
    engine = FeatureEngine(parse_features([f for f in _bench_spec() if not f["name"].startswith("gap_")]))
    rng = random.Random(1)
    state = engine.new_state()
    for i in range(50):
        fields = {"x1": rng.gauss(0, 1), "x2": rng.random(), "x3": rng.random(), "category": f"c{i % 5}"}
        engine.update(state, T0 + i * 7.3, fields)
    data = engine.dumps(state)
    assert engine.loads(data) == state and engine.dumps(engine.loads(data)) == data
    assert len(data) < 2048


def test_state_from_another_spec_is_refused_or_reset() -> None:
    a = engine_of(feature("n", "count", {"kind": "sliding", "size_s": 60}))
    b = engine_of(feature("n", "count", {"kind": "sliding", "size_s": 30}))
    data = a.dumps(a.new_state())
    with pytest.raises(StateLayoutError, match="different feature spec"):
        b.loads(data)
    with pytest.raises(StateLayoutError):
        b.loads(b"not json")
    assert b.loads(data, on_mismatch="reset") == b.new_state()


def test_state_is_bounded_by_the_windows() -> None:
    engine = engine_of(feature("n", "count", {"kind": "sliding", "size_s": 10}, grace_s=2))
    state = engine.new_state()
    sizes = []
    for i in range(2000):
        engine.update(state, T0 + i * 0.5, {})
        sizes.append(len(engine.dumps(state)))
    assert max(sizes[1000:]) <= max(sizes[:100]) + 40


def test_expired_follows_windows_and_grace() -> None:
    engine = engine_of(
        feature("n", "count", {"kind": "tumbling", "size_s": 60}, grace_s=5),
        feature("s", "sum", {"kind": "sliding", "size_s": 10}, field="x"),
    )
    state = engine.new_state()
    assert engine.expired(state, T0)
    engine.update(state, T0 + 10, {"x": 1.0})
    assert not engine.expired(state, T0 + 64)  # T0+60-5 < ... the tumbling window could still be seen
    assert engine.expired(state, T0 + 65.0)
    assert engine.retention_s == 65.0
    assert engine.watermark(state) == T0 + 10


def _bench_spec() -> list[dict[str, Any]]:
    out = []
    for suffix, window in (
        ("60s", {"kind": "sliding", "size_s": 60}),
        ("300s", {"kind": "hopping", "size_s": 300, "hop_s": 60}),
        ("3600s", {"kind": "tumbling", "size_s": 3600}),
    ):
        out += [
            feature(f"n_{suffix}", "count", window, grace_s=5),
            feature(f"x1_mean_{suffix}", "mean", window, field="x1", grace_s=5),
            feature(f"x2_max_{suffix}", "max", window, field="x2", grace_s=5),
            feature(f"x3_std_{suffix}", "std", window, field="x3", grace_s=5),
            feature(f"cat_{suffix}", "distinct_count", window, field="category", grace_s=5),
            feature(f"gap_{suffix}", "time_since_last", window, grace_s=5),
        ]
    return out


def _log(now: float, n: int = 3000, seed: int = 3) -> list[tuple[str, float, dict[str, Any]]]:
    """A log spanning about 6 hours: 30 entities, bursts and silences, disorder within and beyond grace."""
    rng = random.Random(seed)
    t = now - 6 * 3600
    out = []
    for _ in range(n):
        t += rng.expovariate(1 / 7.0)
        jitter = rng.choice([0.0, 0.0, 0.0, 1.5, 4.0, 9.0])
        fields = {"x1": rng.gauss(0, 1), "x2": rng.random(), "x3": rng.random(), "category": rng.choice("abcdefg")}
        out.append((f"u{int(rng.paretovariate(1.2)) % 30}", round(t - jitter, 3), fields))
    return out


def _stream_with_expiry(
    engine: FeatureEngine, log: list[tuple[str, float, dict[str, Any]]]
) -> tuple[list[dict[str, float | None]], int]:
    """What the agent does: state bytes in a table, expired entities deleted on the event-time watermark."""
    table: dict[str, bytes] = {}
    watermark = -math.inf
    deleted = 0
    out = []
    for i, (entity, t, fields) in enumerate(log):
        raw = table.get(entity)
        state = engine.new_state() if raw is None else engine.loads(raw)
        out.append(engine.update(state, t, fields).values)
        table[entity] = engine.dumps(state)
        watermark = max(watermark, t)
        if i % 50 == 0:  # periodic cleanup, as a timer would do
            for key in [k for k, v in table.items() if engine.expired(engine.loads(v), watermark)]:
                del table[key]
                deleted += 1
    return out, deleted


def test_replaying_months_old_log_gives_the_same_features_as_living_through_it() -> None:
    engine = FeatureEngine(parse_features(_bench_spec()))
    # A whole number of days: epoch-aligned windows line up after the shift.
    now = math.floor(T0 / DAY) * DAY + 13 * 3600
    live = _log(now)
    shift = 120 * DAY
    replay = [(e, t - shift, f) for e, t, f in live]

    live_values, live_deleted = _stream_with_expiry(engine, live)
    replay_values, replay_deleted = _stream_with_expiry(engine, replay)

    assert live_deleted == replay_deleted > 0  # state did expire, on event time, the same way
    for i, (a, b) in enumerate(zip(live_values, replay_values, strict=True)):
        for name in engine.feature_names:
            if name.startswith("gap_") and a[name] is not None:
                assert b[name] == pytest.approx(a[name], abs=1e-5), (i, name)
            else:
                assert a[name] == b[name], (i, name, a[name], b[name])
    # Nothing was evicted early: the replay's features are the ones pandas computes from the log.
    frame = pd.DataFrame([{"entity": e, "ts": t, **f} for e, t, f in replay])
    batch = training_set(engine, frame)
    for name in engine.feature_names:
        expected = batch[name].to_numpy()
        got = [v[name] for v in replay_values]
        for i, (x, y) in enumerate(zip(got, expected, strict=True)):
            assert (x is None and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-9), (i, name, x, y)


def test_a_ratio_over_a_mean_that_cancels_to_zero_gives_its_default() -> None:
    """The equivalence test's event 38: a running mean merged across tiles left ~1e-17 where the values
    cancel exactly, so a ratio over it was ~1e16 instead of its default; the mean is sum / n now."""
    engine = FeatureEngine(parse_features([
        {"name": "m", "agg": "mean", "field": "x", "window": {"kind": "sliding", "size_s": 3.0, "resolution_s": 0.5}},
        {"name": "n", "agg": "count", "window": {"kind": "tumbling", "size_s": 1.0}},
        {"name": "r", "agg": "ratio", "numerator": "n", "denominator": "m", "default": 0.0},
    ]))
    state = engine.new_state()
    for t, x in [(100.5, 0.0), (100.5, 3.0), (100.5, 0.0), (101.0, -1.0), (101.0, 0.0), (102.0, -2.0)]:
        res = engine.update(state, t, {"x": x})
    assert res.values["m"] == 0.0 and res.values["r"] == 0.0
