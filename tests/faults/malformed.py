"""The malformed inputs of the fault suite: events, labels and records on freshet's other input topics.

Each is ``(kind, key, value, expected reason)`` against ``tests/faults/faults.toml`` (the demo pipeline's
fields x1..x5, unknown fields refused, events at most a year old, 256-character ids, 64 KiB messages).
``expected`` is the dead-letter reason, or ``None`` for an input that is accepted by design (documented in
the README: e.g. a label for an event freshet never saw waits for its prediction until the TTL).

The values are built around ``now_s`` (the wall clock), so timestamps are live.

>>> kinds = [k for k, *_ in malformed_events(1_800_000_000.0)]
>>> len(kinds) >= 25, len(set(kinds)) == len(kinds)
(True, True)
>>> len(malformed_labels(1_800_000_000.0)) >= 8
True
"""

from __future__ import annotations

from typing import Any

import orjson

BIG = 900_000  # a ~1 MB string (below the broker's 1 MiB message limit, far above the spec's 64 KiB)
Input = tuple[str, bytes | None, bytes | None, str | None]


def _event(now_s: float, i: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"bad-{i}", "entity": "u-bad", "ts": now_s, "x1": 0.1, "x2": 0.2, "x3": 0.3,
                             "x4": 0.4, "x5": 0.5}
    for name, value in changes.items():
        if value is _DROP:
            event.pop(name, None)
        else:
            event[name] = value
    return event


_DROP = object()


def malformed_events(now_s: float) -> list[Input]:
    """At least 25 kinds of bad event, each with the reason the worker must dead-letter it under."""

    def js(i: int, **changes: Any) -> bytes:
        return orjson.dumps(_event(now_s, i, **changes))

    nested = b'{"id": "bad-n", "entity": "u-bad", "ts": 1, "x1": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    out: list[Input] = [
        ("not_utf8", b"u-bad", b"\xff\xfe not json", "undecodable"),
        ("not_json", b"u-bad", b"{not json", "undecodable"),
        ("empty_value", b"u-bad", b"", "undecodable"),
        ("tombstone", b"u-bad", None, "undecodable"),
        ("truncated_json", b"u-bad", js(3)[:-5], "undecodable"),
        ("nan_literal", b"u-bad", js(4).replace(b'"x1":0.1', b'"x1":NaN'), "undecodable"),
        ("deeply_nested", b"u-bad", nested, "undecodable"),
        ("json_array", b"u-bad", b"[1, 2, 3]", "not_an_object"),
        ("json_string", b"u-bad", b'"an event"', "not_an_object"),
        ("json_number", b"u-bad", b"42", "not_an_object"),
        ("json_null", b"u-bad", b"null", "not_an_object"),
        ("missing_id", b"u-bad", js(11, id=_DROP), "missing_field"),
        ("missing_entity", b"u-bad", js(12, entity=_DROP), "missing_field"),
        ("missing_ts", b"u-bad", js(13, ts=_DROP), "missing_field"),
        ("null_ts", b"u-bad", js(14, ts=None), "missing_field"),
        ("id_bool", b"u-bad", js(15, id=True), "wrong_type"),
        ("entity_object", b"u-bad", js(16, entity={"a": 1}), "wrong_type"),
        ("entity_empty", b"u-bad", js(17, entity=""), "wrong_type"),
        ("float_as_text", b"u-bad", js(18, x1="abc"), "wrong_type"),
        ("float_as_bool", b"u-bad", js(19, x2=True), "wrong_type"),
        ("float_as_list", b"u-bad", js(20, x3=[1.0]), "wrong_type"),
        # 1e999 is an infinity: orjson refuses it while decoding (non_finite cannot come from JSON)
        ("float_overflow", b"u-bad", js(21).replace(b'"x4":0.4', b'"x4":1e999'), "undecodable"),
        ("ts_text", b"u-bad", js(22, ts="soon"), "bad_timestamp"),
        ("ts_no_timezone", b"u-bad", js(23, ts="2026-01-01T00:00:00"), "bad_timestamp"),
        ("ts_negative", b"u-bad", js(24, ts=-5), "bad_timestamp"),
        ("ts_bool", b"u-bad", js(25, ts=True), "bad_timestamp"),
        ("ts_far_future", b"u-bad", js(26, ts=now_s + 86_400), "future_timestamp"),
        ("ts_too_old", b"u-bad", js(27, ts=now_s - 3 * 365 * 86_400), "too_old"),
        ("unknown_field", b"u-bad", js(28, x9=1.0), "unknown_field"),
        ("id_300_chars", b"u-bad", js(29, id="i" * 300), "too_large"),
        ("id_1mb", b"u-bad", js(30, id="i" * BIG), "too_large"),
        ("entity_1mb", b"u-bad", js(31, entity="e" * BIG), "too_large"),
        ("float_field_1mb_text", b"u-bad", js(32, x5="9" * BIG), "too_large"),
        ("message_1mb_padding", b"u-bad", js(33) + b" " * BIG, "too_large"),
        ("key_1mb", b"k" * BIG, js(34), None),  # the key is not the event's entity: routing only, accepted
    ]
    return out


def late_event(now_s: float, entity: str) -> Input:
    """An event far behind its entity's watermark (beyond the 2 s grace): ``late`` with the dead-letter policy."""
    value = orjson.dumps({"id": "bad-late", "entity": entity, "ts": now_s - 600, "x1": 0.1, "x2": 0.2,
                          "x3": 0.3, "x4": 0.4, "x5": 0.5})
    return ("late_event", entity.encode(), value, "late")


def malformed_labels(now_s: float, known_id: str = "good-0") -> list[Input]:
    """At least 8 kinds of bad label (``known_id``: an event that was predicted, for labels that need one)."""

    def js(**fields: Any) -> bytes:
        return orjson.dumps(fields)

    k = known_id.encode()
    return [
        ("label_not_json", k, b"\xff{ nope", "undecodable"),
        ("label_tombstone", k, None, "undecodable"),
        ("label_array", k, b'["good-0", true]', "not_an_object"),
        ("label_missing_id", k, js(label=True, ts=now_s), "missing_field"),
        ("label_missing_label", k, js(id=known_id, ts=now_s), "missing_field"),
        ("label_null", k, js(id=known_id, label=None, ts=now_s), "missing_field"),
        ("label_object", k, js(id=known_id, label={"y": 1}, ts=now_s), "wrong_type"),
        ("label_maybe", k, js(id=known_id, label="maybe", ts=now_s), "bad_label"),
        ("label_int_2_for_bool", k, js(id=known_id, label=2, ts=now_s), "bad_label"),
        ("label_float", k, js(id=known_id, label=0.5, ts=now_s), "bad_label"),
        ("label_ts_text", k, js(id=known_id, label=True, ts="soon"), "bad_timestamp"),
        ("label_unknown_event", b"never-seen", js(id="never-seen", label=True, ts=now_s), None),  # waits (TTL)
    ]


def junk_predictions() -> list[Input]:
    """Records on ``predictions`` that are not freshet's (the join re-reads that topic)."""
    return [
        ("prediction_not_json", b"x", b"\x00\x01", "undecodable"),
        ("prediction_array", b"x", b"[1]", "not_an_object"),
        ("prediction_missing_fields", b"x", b'{"v": 1, "id": "p1"}', "bad_prediction"),
    ]


def junk_examples(now_s: float) -> list[Input]:
    """Records on ``examples`` that the learner must dead-letter instead of raising (poison pills)."""
    base = {"v": 1, "id": "ex-bad", "entity": "u-bad", "slot": "default", "features": {"x1": 0.1},
            "label": True, "event_ts": now_s, "label_ts": now_s}
    return [
        ("example_not_json", b"default", b"\xff\xfe", "bad_example"),
        ("example_array", b"default", b"[]", "bad_example"),
        ("example_missing_features", b"default", orjson.dumps({**base, "features": None}), "bad_example"),
        ("example_label_maybe", b"default", orjson.dumps({**base, "id": "ex-maybe", "label": "maybe"}), "bad_label"),
        ("example_feature_list", b"default", orjson.dumps({**base, "id": "ex-list", "features": {"x1": [1]}}),
         "bad_example"),
        ("example_label_object", b"default", orjson.dumps({**base, "id": "ex-obj", "label": {"a": 1}}), "bad_label"),
    ]
