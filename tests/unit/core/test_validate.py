"""Every kind of bad event gets its own reason; good events come out typed."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.validate import Event, Invalid, validate_event
from streams.event_time import parse_event_time
from streams.spec import EventSchema

NOW = 1_800_000_000.0
SCHEMA = EventSchema(
    fields={"amount": "float", "n": "int", "country": "str", "flag": "bool"}, max_age_s=86400
)


def check(payload: object | bytes, schema: EventSchema = SCHEMA) -> Event | Invalid:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return validate_event(data, schema, now_s=NOW)


def good(**over: object) -> dict[str, object]:
    return {
        "id": "e1",
        "entity": "u1",
        "ts": NOW - 10,
        "amount": 1.5,
        "n": 2,
        "country": "fr",
        "flag": True,
        **over,
    }


def test_good_event_is_typed() -> None:
    ev = check(good(amount=3))
    assert ev == Event("e1", "u1", NOW - 10, {"amount": 3.0, "n": 2, "country": "fr", "flag": True})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "undecodable"),
        (b'{"id": "e1", ', "undecodable"),
        (b'{"id": "e1", "entity": "u", "ts": 1, "amount": NaN}', "undecodable"),
        (None, "undecodable"),
        ([1, 2], "not_an_object"),
        ({"entity": "u1", "ts": NOW}, "missing_field"),
        ({"id": "e1", "ts": NOW}, "missing_field"),
        ({"id": "e1", "entity": "u1"}, "missing_field"),
        ({"id": "e1", "entity": ["u"], "ts": NOW}, "wrong_type"),
        (good(ts="not a time"), "bad_timestamp"),
        (good(ts="2026-01-01T00:00:00"), "bad_timestamp"),
        (good(ts=-5), "bad_timestamp"),
        (good(ts=True), "bad_timestamp"),
        (good(ts=NOW + 10_000), "future_timestamp"),
        (good(ts=NOW - 10 * 86400), "too_old"),
        (good(amount="12"), "wrong_type"),
        (good(n=1.5), "wrong_type"),
        (good(flag="yes"), "wrong_type"),
        (good(country=3.5), "wrong_type"),
        (b'{"id": "e1", "entity": "u", "ts": 1, "amount": 1e999}', "undecodable"),
    ],
)
def test_bad_events_have_a_reason(payload: object, reason: str) -> None:
    result = validate_event(None, SCHEMA, now_s=NOW) if payload is None else check(payload)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    assert result.detail and "\n" not in result.detail


def test_unknown_fields_ignored_or_rejected() -> None:
    assert isinstance(check(good(extra=1)), Event)
    strict = EventSchema(fields=SCHEMA.fields, extra_fields="reject")
    result = check(good(extra=1), strict)
    assert isinstance(result, Invalid) and result.reason == "unknown_field" and "extra" in result.detail


def test_missing_feature_field_is_none() -> None:
    payload = good()
    del payload["amount"]
    ev = check(payload)
    assert isinstance(ev, Event) and ev.fields["amount"] is None


def test_iso_timestamps_with_zone() -> None:
    assert parse_event_time("2026-01-01T00:00:00Z") == parse_event_time("2026-01-01T01:00:00+01:00")


# The machine is shared: generation speed is not what these tests are about.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@RELAXED
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = validate_event(data, SCHEMA, now_s=NOW)
    assert isinstance(result, Event | Invalid)


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(["id", "entity", "ts", "amount", "n", "country", "flag", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False),
            st.text(max_size=5),
        ),
        max_size=8,
    )
)
def test_arbitrary_objects_never_raise_and_good_ones_are_finite(payload: dict[str, object]) -> None:
    result = check(payload)
    if isinstance(result, Event):
        assert math.isfinite(result.ts)
        for value in result.fields.values():
            if isinstance(value, float):
                assert math.isfinite(value)
