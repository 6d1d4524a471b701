"""Stream and batch read event times by one rule: any value the stream dead-letters (``bad_timestamp``,
or ``missing_field`` for null) is an invalid row for the batch engine, and any value both accept is the
same instant to the microsecond. Before, ``"1700000000.5"`` was dead-lettered by the stream and
accepted by batch, and a naive ISO string failed a whole backfill while the stream dead-lettered one event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.validate import Invalid, validate_event
from streams.event_time import MAX_EVENT_TIME_S
from streams.features.batch import event_times_us
from streams.spec import EventSchema

pytestmark = pytest.mark.property

# No clock limits: the wall-clock checks (max_future_s, max_age_s) are the stream's alone.
SCHEMA = EventSchema(max_future_s=0.0, max_age_s=0.0)
NOW_S = MAX_EVENT_TIME_S

offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# Naive bounds are what st.datetimes takes; each value gets a zone below (or none, to be refused).
moments = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2300, 1, 1))  # noqa: DTZ001
iso_strings = st.one_of(
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), moments, offsets),  # with an offset
    st.builds(lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"), moments),
    moments.map(lambda d: d.isoformat()),  # naive: refused
    moments.map(lambda d: d.date().isoformat()),  # a date: naive, refused
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=4e9),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=4_000_000_000),
)
values = st.one_of(
    numbers,
    iso_strings,
    numbers.map(str),  # "1700000000.5": digits in a string
    st.text(max_size=24),
    st.booleans(),
    st.none(),
)


def stream_us(value: Any) -> int | None:
    data = orjson.dumps({"id": "e1", "entity": "u1", "ts": value})
    event = validate_event(data, SCHEMA, now_s=NOW_S)
    if isinstance(event, Invalid):
        assert event.reason in ("bad_timestamp", "missing_field"), event
        return None
    return round(event.ts * 1_000_000)


def batch_us(series: pd.Series) -> int | None:
    us, invalid = event_times_us(series)
    return None if invalid[0] else int(us[0])


@settings(max_examples=400, deadline=None)
@given(value=values)
def test_stream_and_batch_accept_and_reject_the_same_event_times(value: Any) -> None:
    expected = stream_us(value)
    assert batch_us(pd.Series([value], dtype=object, name="ts")) == expected
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert batch_us(pd.Series([value], name="ts")) == expected  # a numeric column, vectorized


@settings(max_examples=100, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2261, 12, 1)), tz=offsets)  # noqa: DTZ001
def test_a_timezone_aware_column_is_the_instant_the_stream_reads_from_its_iso_string(
    moment: datetime, tz: timezone
) -> None:
    aware = moment.replace(tzinfo=tz)  # (a pandas datetime column ends in 2262: nanoseconds in 64 bits)
    column = pd.Series(pd.to_datetime([aware.isoformat()], utc=True), name="ts")
    assert batch_us(column) == stream_us(aware.isoformat())


def test_the_skew_cases() -> None:
    assert stream_us("1700000000.5") is None and batch_us(pd.Series(["1700000000.5"], dtype=object)) is None
    assert stream_us("2023-11-14T22:13:20") is None
    assert batch_us(pd.Series(["2023-11-14T22:13:20"], dtype=object)) is None  # was: the whole backfill failed
    assert stream_us(-1.0) is None and batch_us(pd.Series([-1.0])) is None  # batch accepted negative times
