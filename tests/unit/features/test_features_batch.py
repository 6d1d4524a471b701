"""The pandas engine: training sets, as-of tables, backfill files, event-time columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from streams.features import FeatureEngine, parse_features
from streams.features.batch import _ranges, backfill, features_as_of, read_table, training_set
from streams.spec import PipelineSpec

T0 = 1_699_999_200.0  # a whole hour
SLIDING = {"kind": "sliding", "size_s": 60}


def defs_() -> list[Any]:
    return parse_features(
        [
            {"name": "n_60s", "agg": "count", "window": SLIDING, "grace_s": 5},
            {"name": "x_sum_60s", "agg": "sum", "field": "x", "window": SLIDING, "grace_s": 5},
            {"name": "x_max_10s", "agg": "max", "field": "x", "window": {"kind": "tumbling", "size_s": 10}},
            {"name": "cats_60s", "agg": "distinct_count", "field": "cat", "window": SLIDING},
            {"name": "gap_60s", "agg": "time_since_last", "window": SLIDING},
        ]
    )


def log_() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": ["a", "a", "b", "a", "a", "b"],
            "ts": [T0 + 1, T0 + 12, T0 + 13, T0 + 9, T0 + 2, T0 + 80],
            "x": [1.0, 2.0, 4.0, 8.0, 16.0, np.nan],
            "cat": ["p", "q", "p", None, "p", "r"],
        }
    )


def stream(defs: list[Any], log: pd.DataFrame, time: str = "ts") -> list[dict[str, float | None]]:
    engine = FeatureEngine(defs)
    states: dict[str, list[Any]] = {}
    out = []
    for row in log.to_dict("records"):
        state = states.setdefault(row["entity"], engine.new_state())
        fields = {k: v for k, v in row.items() if k not in ("entity", time)}
        out.append(engine.update(state, row[time], fields).values)
    return out


def test_training_set_is_what_the_stream_served() -> None:
    defs, log = defs_(), log_()
    batch = training_set(defs, log)
    assert list(batch.columns) == [*log.columns, *[d.name for d in defs], "_late", "_invalid"]
    # Row 3 (T0+9 after T0+12) is late for the features without grace; row 4 (T0+2) for all.
    assert batch["_late"].tolist() == [False, False, False, True, True, False]
    for i, values in enumerate(stream(defs, log)):
        for name, v in values.items():
            got = batch.loc[i, name]
            assert (v is None and math.isnan(got)) or v == pytest.approx(got), (i, name)
    # Row 3 (a at T0+9, arrived after T0+12) sees T0+1 and itself, not T0+12.
    assert batch.loc[3, "x_sum_60s"] == 9.0 and batch.loc[3, "n_60s"] == 2.0
    assert math.isnan(batch.loc[3, "x_max_10s"])  # late there


def test_features_as_of_match_read_after_the_log() -> None:
    defs, log = defs_(), log_()
    engine = FeatureEngine(defs)
    states: dict[str, list[Any]] = {}
    for row in log.to_dict("records"):
        engine.update(states.setdefault(row["entity"], engine.new_state()), row["ts"], row)
    table = features_as_of(defs, log, T0 + 85)
    assert list(table.index) == ["a", "b"]
    for entity, state in states.items():
        for name, v in engine.read(state, T0 + 85).items():
            got = table.loc[entity, name]
            assert (v is None and math.isnan(got)) or v == pytest.approx(got)
    # Before the log: empty windows.
    early = features_as_of(defs, log, T0)
    assert early["n_60s"].tolist() == [0.0, 0.0] and early["x_max_10s"].isna().all()


def test_replay_gives_the_same_training_set_as_pairs() -> None:
    defs = parse_features(
        [
            {"name": "n", "agg": "count", "window": {"kind": "tumbling", "size_s": 3600}, "default": -1.0},
            {"name": "x_std", "agg": "std", "field": "x", "window": {"kind": "tumbling", "size_s": 3600}},
            {"name": "ratio", "agg": "ratio", "numerator": "x_std", "denominator": "n"},
        ]
    )
    rng = np.random.default_rng(0)
    n = 3000
    busy = pd.DataFrame(
        {
            "entity": rng.choice(["a", "b"], n),
            "ts": T0 + np.arange(n) - rng.choice([0, 0, 3], n),
            "x": rng.normal(size=n),
        }
    )
    pairs = training_set(defs, busy, method="pairs")
    replay = training_set(defs, busy, method="replay")
    pd.testing.assert_frame_equal(pairs, replay, rtol=1e-9)
    # Two busy entities in an hour-long window: auto picks the replay.
    pd.testing.assert_frame_equal(training_set(defs, busy), replay)
    with pytest.raises(ValueError, match="method = 'fast'"):
        training_set(defs, busy, method="fast")


def test_small_chunks_give_the_same_result() -> None:
    defs, log = defs_(), log_()
    pd.testing.assert_frame_equal(training_set(defs, log), training_set(defs, log, max_pairs=2))


def test_time_order_processes_by_event_time_and_keeps_the_input_order() -> None:
    defs, log = defs_(), log_()
    by_time = training_set(defs, log, order="time")
    pd.testing.assert_frame_equal(by_time[list(log.columns)], log)  # rows in input order
    sorted_log = log.sort_values("ts", kind="stable")
    expected = training_set(defs, sorted_log).set_index(sorted_log.index).sort_index()
    pd.testing.assert_frame_equal(by_time, expected.reset_index(drop=True))
    assert not by_time["_late"].any() and training_set(defs, log)["_late"].any()


def test_time_order_sorts_parsed_times_not_the_text_of_iso_strings() -> None:
    """ISO strings in two offsets: as text, 10:00+02:00 (08:00 UTC) sorts after 09:00+00:00."""
    defs = parse_features([{"name": "n", "agg": "count", "window": {"kind": "sliding", "size_s": 7200}}])
    log = pd.DataFrame({"entity": ["a", "a"], "ts": ["2026-01-01T10:00:00+02:00", "2026-01-01T09:00:00+00:00"]})
    out = training_set(defs, log, order="time")
    assert out["ts"].tolist() == log["ts"].tolist() and out["n"].tolist() == [1.0, 2.0]


def test_timezone_aware_and_iso_times_equal_epoch_seconds() -> None:
    defs, log = defs_(), log_()
    expected = training_set(defs, log)[[d.name for d in defs]]
    aware = log.assign(ts=pd.to_datetime(log["ts"], unit="s", utc=True).dt.tz_convert("Europe/Amsterdam"))
    pd.testing.assert_frame_equal(training_set(defs, aware)[[d.name for d in defs]], expected)
    iso = log.assign(ts=[datetime.fromtimestamp(t, UTC).isoformat() for t in log["ts"]])
    pd.testing.assert_frame_equal(training_set(defs, iso)[[d.name for d in defs]], expected)


def test_naive_times_are_refused() -> None:
    defs, log = defs_(), log_()
    naive = log.assign(ts=pd.to_datetime(log["ts"], unit="s"))
    with pytest.raises(ValueError, match="naive datetimes; localize it"):
        training_set(defs, naive)
    # A naive ISO string is one bad value, as the stream dead-letters that event: its row is invalid.
    assert training_set(defs, log.assign(ts=["2024-01-01T00:00:00"] * len(log)))["_invalid"].all()


def test_rows_with_bad_times_are_not_applied() -> None:
    defs = defs_()
    log = pd.DataFrame(
        {"entity": ["a", "a", "a", "a"], "ts": [T0, np.nan, np.inf, T0 + 1], "x": [1.0, 100.0, 100.0, 2.0]}
    )
    batch = training_set(defs, log)
    assert batch["_invalid"].tolist() == [False, True, True, False]
    assert batch["x_sum_60s"].tolist()[3] == 3.0 and math.isnan(batch["x_sum_60s"].tolist()[1])
    garbage = log.assign(ts=[T0, "yesterday", None, T0 + 1])
    assert training_set(defs, garbage)["x_sum_60s"].tolist()[3] == 3.0


def test_missing_columns_and_bad_values_are_skipped() -> None:
    defs = defs_()
    log = pd.DataFrame({"entity": ["a"] * 4, "ts": [T0, T0 + 1, T0 + 2, T0 + 3], "x": [1.0, "two", None, True]})
    batch = training_set(defs, log)  # no "cat" column at all
    assert batch["x_sum_60s"].tolist() == [1.0, 1.0, 1.0, 2.0]
    assert batch["cats_60s"].tolist() == [0.0] * 4
    assert batch["n_60s"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_name_clashes_and_missing_key_columns() -> None:
    defs = defs_()
    with pytest.raises(ValueError, match="no column 'entity'"):
        training_set(defs, log_().rename(columns={"entity": "user"}))
    with pytest.raises(ValueError, match="name of an input column"):
        training_set(defs, log_().assign(n_60s=1))


def test_attributes_and_ratios() -> None:
    defs = parse_features(
        [
            {"name": "n", "agg": "count", "window": SLIDING},
            {"name": "age", "agg": "attribute", "field": "age_days", "default": 0.0},
            {"name": "n_per_age", "agg": "ratio", "numerator": "n", "denominator": "age"},
        ]
    )
    log = log_()
    attrs = pd.DataFrame({"entity": ["a"], "age_days": ["4"]})
    batch = training_set(defs, log, attributes=attrs)
    assert batch["age"].tolist() == [4.0, 4.0, 0.0, 4.0, 4.0, 0.0]
    assert batch["n_per_age"].tolist()[:2] == [0.25, 0.5] and math.isnan(batch["n_per_age"].tolist()[2])
    as_mapping = training_set(defs, log, attributes={"a": {"age_days": 4}})
    pd.testing.assert_series_equal(as_mapping["n_per_age"], batch["n_per_age"])


SPEC = """
[event]
entity = "entity"
time = "ts"
[event.fields]
x1 = "float"
x2 = "float"
x3 = "float"
category = "str"

[features.defaults]
grace_s = 5.0

[[features.list]]
name = "x1_mean_60s"
agg = "mean"
field = "x1"
window = { kind = "sliding", size_s = 60 }

[[features.list]]
name = "events_60s"
agg = "count"
window = { kind = "sliding", size_s = 60 }

[[features.list]]
name = "x1_per_event_60s"
agg = "ratio"
numerator = "x1_mean_60s"
denominator = "events_60s"

[[features.list]]
name = "x2_max_300s"
agg = "max"
field = "x2"
window = { kind = "hopping", size_s = 300, hop_s = 60 }

[[features.list]]
name = "x3_std_600s"
agg = "std"
field = "x3"
window = { kind = "sliding", size_s = 600, resolution_s = 30 }

[[features.list]]
name = "x1_variance_0.5s"
agg = "variance"
field = "x1"
window = { kind = "tumbling", size_s = 0.5 }
params = { ddof = 0 }
grace_s = 0.5

[[features.list]]
name = "categories_3600s"
agg = "distinct_count"
field = "category"
window = { kind = "tumbling", size_s = 3600 }

[[features.list]]
name = "seconds_since_last_event"
agg = "time_since_last"
window = { kind = "sliding", size_s = 3600, resolution_s = 60 }
"""


def test_backfill_csv_and_parquet(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    spec = PipelineSpec.load(spec_path)
    rng = np.random.default_rng(4)
    n = 400
    log = pd.DataFrame(
        {
            "id": [f"ev{i}" for i in range(n)],
            "entity": rng.choice(["u1", "u2", "u3"], n),
            "ts": T0 + np.sort(rng.uniform(0, 900, n)).round(3),
            "x1": rng.normal(size=n),
            "x2": rng.uniform(size=n),
            "x3": rng.normal(size=n),
            "category": rng.choice(["a", "b", "c"], n),
            "label": rng.integers(0, 2, n),
        }
    )
    csv = tmp_path / "events.csv"
    log.to_csv(csv, index=False)
    out = tmp_path / "out" / "train.parquet"
    assert backfill(spec, csv, out) == n
    written = pd.read_parquet(out)
    assert {"label", "x1_mean_60s", "categories_3600s", "_late"} <= set(written.columns)
    expected = stream(parse_features(spec.raw["features"]), log.drop(columns=["id", "label"]))
    for i in (0, 10, 199, 399):
        for name, v in expected[i].items():
            got = written.loc[i, name]
            assert (v is None and math.isnan(got)) or v == pytest.approx(got, abs=1e-9), (i, name)

    parquet = tmp_path / "events.parquet"
    log.to_parquet(parquet)
    as_of = tmp_path / "as_of.parquet"
    assert backfill(spec_path, parquet, as_of, as_of_s=T0 + 900) == 3
    table = pd.read_parquet(as_of)
    assert sorted(table["entity"]) == ["u1", "u2", "u3"]
    (tmp_path / "events.json").write_text("[]")
    with pytest.raises(ValueError, match="unknown file type"):
        read_table(tmp_path / "events.json")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "nope.csv")


def test_ranges_fallback_for_very_long_spans() -> None:
    e_rows = np.array([0, 0, 0, 1], dtype=np.int64)
    k_rows = np.array([0, 5, 2**61, 7], dtype=np.int64)
    q_ent = np.array([0, 0, 1], dtype=np.int64)
    k_lo = np.array([0, 6, 0], dtype=np.int64)
    k_hi = np.array([5, 2**61, 7], dtype=np.int64)
    lo, hi = _ranges(e_rows, k_rows, q_ent, k_lo, k_hi)
    assert lo.tolist() == [0, 2, 3] and hi.tolist() == [2, 3, 4]
