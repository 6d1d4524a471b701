"""Turn an event's raw bytes into a checked :class:`Event`, or say exactly why not.

Pure: no Kafka. The agent sends every :class:`Invalid` to ``dead-letter`` with its ``reason``
(a short machine-readable code) and ``detail`` (one human line), then goes on with the next event.

Reasons: ``undecodable`` (not UTF-8 JSON), ``not_an_object``, ``missing_field``, ``wrong_type``,
``non_finite`` (NaN or ±inf in a numeric field), ``bad_timestamp`` (unparseable, naive, negative),
``future_timestamp``, ``too_old``, ``unknown_field`` (only with ``extra_fields = "reject"``), ``too_large``
(the message, the id or entity, or a text field beyond the spec's limits).
Missing *feature* fields are allowed (the feature engine skips them); the id, entity and time are required.

>>> from streams.spec import EventSchema, LabelSchema
>>> schema = EventSchema(fields={"amount": "float"})
>>> ev = validate_event(b'{"id": "e1", "entity": "u1", "ts": 1700000000.5, "amount": 3}', schema, now_s=1.8e9)
>>> ev.id, ev.entity, ev.ts, ev.fields
('e1', 'u1', 1700000000.5, {'amount': 3.0})
>>> validate_event(b'{"id": "e2", "entity": "u1", "ts": "yesterday"}', schema, now_s=1.8e9).reason
'bad_timestamp'
>>> validate_event(b'\\xff\\x00', schema, now_s=1.8e9).reason
'undecodable'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from streams.event_time import parse_event_time
from streams.records import LabelRecord
from streams.spec import EventSchema, LabelSchema

FieldValue = float | int | str | bool | None


@dataclass(frozen=True)
class Event:
    """A valid event: ``fields`` holds only the spec's fields, converted to their declared types."""

    id: str
    entity: str
    ts: float  # event time, epoch seconds
    fields: dict[str, FieldValue]


@dataclass(frozen=True)
class Invalid:
    reason: str
    detail: str


def _convert(name: str, type_: str, value: Any) -> FieldValue | Invalid:
    if value is None:
        return None
    if type_ in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Invalid("wrong_type", f"field {name!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            return Invalid("non_finite", f"field {name!r} is {value!r}")
        if type_ == "int":
            if float(value) != int(value):
                return Invalid("wrong_type", f"field {name!r} must be an integer, got {value!r}")
            return int(value)
        return float(value)
    if type_ == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # ids sent as numbers are common; keep them as text
        return Invalid("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        return Invalid("wrong_type", f"field {name!r} must be true or false, got {value!r}")
    return Invalid("wrong_type", f"field {name!r} has unknown declared type {type_!r}")


def _key(name: str, value: Any) -> str | Invalid:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return Invalid("missing_field", f"required field {name!r} is missing or null")
    return Invalid("wrong_type", f"field {name!r} must be a non-empty string, got {value!r}")


def _decode_object(data: bytes | None, what: str) -> dict[str, Any] | Invalid:
    """The JSON object in ``data``, or why it is not one."""
    if data is None:
        return Invalid("undecodable", f"{what} message has no value (tombstone)")
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity literals, invalid UTF-8 and malformed JSON alike.
        return Invalid("undecodable", f"{what} is not UTF-8 JSON: {exc}")
    if not isinstance(raw, dict):
        return Invalid("not_an_object", f"{what} must be a JSON object, got {type(raw).__name__}")
    return raw


def validate_event(data: bytes | None, schema: EventSchema, now_s: float) -> Event | Invalid:
    """Check one raw event against the schema; ``now_s`` is the wall clock (injected for tests).

    Sizes are checked first (``too_large``): the message against ``max_message_bytes`` before it is
    decoded, the id and entity against ``max_key_chars``, text fields against ``max_text_chars``.

    >>> schema = EventSchema(fields={"note": "str"}, max_key_chars=8, max_text_chars=4)
    >>> validate_event(b'{"id": "e-123456789", "entity": "u1", "ts": 1}', schema, now_s=10).reason
    'too_large'
    >>> validate_event(b'{"id": "e1", "entity": "u1", "ts": 1, "note": "hello"}', schema, now_s=10).detail
    "field 'note' has 5 characters (max_text_chars=4)"
    """
    if data is not None and len(data) > schema.max_message_bytes:
        return Invalid("too_large", f"event is {len(data)} bytes (max_message_bytes={schema.max_message_bytes})")
    raw = _decode_object(data, "event")
    if isinstance(raw, Invalid):
        return raw

    ids: list[str] = []
    for name in (schema.id, schema.entity):
        key = _key(name, raw.get(name))
        if isinstance(key, Invalid):
            return key
        if len(key) > schema.max_key_chars:
            return Invalid(
                "too_large", f"field {name!r} has {len(key)} characters (max_key_chars={schema.max_key_chars})"
            )
        ids.append(key)
    if schema.time not in raw or raw[schema.time] is None:
        return Invalid("missing_field", f"required field {schema.time!r} (event time) is missing or null")
    try:
        ts = parse_event_time(raw[schema.time])
    except ValueError as exc:
        return Invalid("bad_timestamp", str(exc))
    if ts > now_s + schema.max_future_s:
        return Invalid(
            "future_timestamp",
            f"event time {ts:.3f} is {ts - now_s:.0f} s ahead of the clock (max_future_s={schema.max_future_s:g})",
        )
    if schema.max_age_s > 0 and ts < now_s - schema.max_age_s:
        return Invalid("too_old", f"event time {ts:.3f} is older than max_age_s={schema.max_age_s:g} s")

    if schema.extra_fields == "reject":
        known = {schema.id, schema.entity, schema.time, *schema.fields}
        extra = sorted(set(raw) - known)
        if extra:
            return Invalid("unknown_field", f"fields {extra} are not in the spec's [event.fields]")

    fields: dict[str, FieldValue] = {}
    for name, type_ in schema.fields.items():
        converted = _convert(name, type_, raw.get(name))
        if isinstance(converted, Invalid):
            return converted
        if isinstance(converted, str) and len(converted) > schema.max_text_chars:
            return Invalid(
                "too_large", f"field {name!r} has {len(converted)} characters (max_text_chars={schema.max_text_chars})"
            )
        fields[name] = converted
    return Event(id=ids[0], entity=ids[1], ts=ts, fields=fields)


def validate_label(
    data: bytes | None, schema: LabelSchema | None = None, *, arrival_s: float | None = None
) -> LabelRecord | Invalid:
    """A user's label message ``{"id", "label", "ts"}`` checked, or why not.

    The label's event time is its ``ts``. Without one it is dead-lettered (``missing_time``) unless the
    spec says ``[label] missing_time = "arrival"``: then ``arrival_s`` (the record's Kafka append time) is
    its time. Never the wall clock: a replay of old labels would expire every one of them.

    With a ``schema`` the label must fit the slot's kind (a number for regression; a bool, an integer or
    a string for classification, one of ``classes`` when the spec lists them): else ``bad_label``.

    >>> validate_label(b'{"id": "e1", "label": true, "ts": 12.5}')
    LabelRecord(id='e1', label=True, ts=12.5)
    >>> validate_label(b'{"id": "e1", "ts": 12.5}').reason
    'missing_field'
    >>> validate_label(b'{"id": "e1", "label": 1}', arrival_s=99.0).reason
    'missing_time'
    >>> validate_label(b'{"id": "e1", "label": 1}', LabelSchema(missing_time="arrival"), arrival_s=99.0).ts
    99.0
    >>> validate_label(b'{"id": "e1", "label": "maybe", "ts": 1}', LabelSchema(classes=(True, False))).reason
    'bad_label'
    """
    raw = _decode_object(data, "label")
    if isinstance(raw, Invalid):
        return raw
    event_id = raw.get("id")
    if not isinstance(event_id, str | int) or isinstance(event_id, bool) or event_id == "":
        return Invalid("missing_field", "label needs the event id in 'id'")
    if "label" not in raw or raw["label"] is None:
        return Invalid("missing_field", "label needs the outcome in 'label'")
    value = raw["label"]
    if not isinstance(value, bool | int | float | str):
        return Invalid("wrong_type", f"label must be a class or a number, got {type(value).__name__}")
    if schema is not None:
        bad = _bad_label(value, schema)
        if bad:
            return Invalid("bad_label", bad)
    raw_ts = raw.get("ts")
    if raw_ts is None:
        if schema is None or schema.missing_time != "arrival" or arrival_s is None:
            return Invalid("missing_time", "label has no event time in 'ts' (or set [label] missing_time)")
        raw_ts = arrival_s
    try:
        ts = parse_event_time(raw_ts)
    except ValueError as exc:
        return Invalid("bad_timestamp", str(exc))
    return LabelRecord(id=str(event_id), label=value, ts=ts)


def label_problem(value: Any, schema: LabelSchema) -> str:
    """Why ``value`` cannot be a label of ``schema`` ('' when it can): the check of the worker's join, for
    the learner to repeat on what it reads from ``examples`` (anyone may write there).

    >>> label_problem(2, LabelSchema(classes=(True, False)))
    "label 2 is not one of the spec's classes [True, False]"
    >>> label_problem({"y": 1}, LabelSchema()), label_problem(True, LabelSchema(classes=(True, False)))
    ('a label must be a class or a number, got dict', '')
    """
    if isinstance(value, bool | int | float | str):
        return _bad_label(value, schema)
    return f"a label must be a class or a number, got {type(value).__name__}"


def example_problem(features: Any) -> str:
    """Why logged features cannot be learned ('' when they can): a mapping of names to scalars or None.

    >>> example_problem({"x1": 0.5, "seg": "a", "n": None}), example_problem({"x1": [1]})
    ('', "feature 'x1' is a list, not a number, a string or null")
    """
    if not isinstance(features, dict):
        return f"features must be an object, got {type(features).__name__}"
    for name, value in features.items():
        if value is not None and not isinstance(value, int | float | str):
            return f"feature {name!r} is a {type(value).__name__}, not a number, a string or null"
    return ""


def _bad_label(value: bool | int | float | str, schema: LabelSchema) -> str:
    """Why ``value`` cannot be a label of ``schema`` ('' when it can)."""
    if schema.kind == "regression":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"a regression label must be a finite number, got {value!r}"
        return ""
    if isinstance(value, float):
        return f"a class must be a bool, an integer or a string, got {value!r}"
    if schema.classes is not None and not any(type(value) is type(c) and value == c for c in schema.classes):
        return f"label {value!r} is not one of the spec's classes {list(schema.classes)}"
    return ""
