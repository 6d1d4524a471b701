"""The pure serving step: a batch of event records in, predictions, dead letters and state writes out."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.partitions import partition_for
from streams.core.predictor import Predictor
from streams.core.serve import OFFSET_BYTES, InRecord, ServeOutput, ServeStep
from streams.features import FeatureEngine
from streams.spec import PipelineSpec

SPEC_PATH = Path(__file__).resolve().parents[3] / "pipelines" / "demo.toml"
SPEC = PipelineSpec.load(SPEC_PATH)
T0 = 1_700_000_000.0


def make_step(stored: dict[bytes, bytes], spec: PipelineSpec = SPEC) -> ServeStep:
    engine = FeatureEngine(spec.features)
    predictor = Predictor(list(spec.models))
    return ServeStep(engine, predictor, spec.event, stored, n_partitions=4, clock=lambda: T0 + 10_000)


def events(n: int, n_entities: int, seed: int = 1) -> list[InRecord]:
    """A stream of n events over a few entities, each entity in its own partition order (offsets per partition)."""
    rng = random.Random(seed)
    offsets = [0, 0, 0, 0]
    out = []
    for i in range(n):
        entity = f"u{rng.randrange(n_entities)}"
        partition = partition_for(entity, 4)
        ts = T0 + i * 0.5 + rng.uniform(-1.0, 0.0)  # a little out of order, within grace
        value = {"id": f"e{i}", "entity": entity, "ts": ts, **{f"x{k}": rng.random() for k in range(1, 6)}}
        out.append(InRecord("events", partition, offsets[partition], entity.encode(), orjson.dumps(value), ts + 0.1))
        offsets[partition] += 1
    return out


def run(records: list[InRecord], batch_size: int) -> tuple[dict[str, Any], dict[bytes, bytes], list[ServeOutput]]:
    """Serve ``records`` in batches, applying each batch's writes as the runtime does; features by event id."""
    stored: dict[bytes, bytes] = {}
    step = make_step(stored)
    features: dict[str, Any] = {}
    outputs = []
    for i in range(0, len(records), batch_size):
        out = step.on_batch(records[i : i + batch_size])
        for msg in out.predictions:
            p = orjson.loads(msg.value)
            assert p["id"] not in features, "one prediction per event"
            features[p["id"]] = p["features"]
        for key, (_, value) in out.state_writes.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        outputs.append(out)
    return features, stored, outputs


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 7, 50, 1000]), st.integers(min_value=0, max_value=10_000))
def test_features_do_not_depend_on_how_the_stream_is_cut_into_batches(batch_size: int, seed: int) -> None:
    records = events(300, 12, seed)
    one_at_a_time, stored_1, _ = run(records, 1)
    batched, stored_b, _ = run(records, batch_size)
    assert batched == one_at_a_time
    assert stored_b == stored_1


def test_state_is_written_once_per_entity_per_batch_with_the_last_offset() -> None:
    records = events(200, 5)
    _, _, [out] = run(records, len(records))
    assert set(out.state_writes) == {r.key for r in records}
    for key, (partition, value) in out.state_writes.items():
        last = max(r.offset for r in records if r.key == key)
        assert value is not None and int.from_bytes(value[:OFFSET_BYTES], "big", signed=True) == last
        assert partition == next(r.partition for r in records if r.key == key)
    assert out.counts.predicted_events == 200 and out.counts.predictions["default"] == 200


def test_a_redelivered_batch_is_not_predicted_again() -> None:
    records = events(50, 3)
    stored: dict[bytes, bytes] = {}
    step = make_step(stored)
    first = step.on_batch(records)
    stored.update((k, v) for k, (_, v) in first.state_writes.items() if v is not None)
    # After a crash the same records come again (their offsets were not committed yet).
    again = make_step(stored).on_batch(records)
    assert again.predictions == [] and again.counts.redelivered == 50 and again.state_writes == {
        k: (p, stored[k]) for k, (p, _) in first.state_writes.items()
    }


def test_bad_events_are_dead_lettered_and_the_rest_predicted() -> None:
    good = events(3, 1)
    bad = [
        InRecord("events", 0, 100, b"u0", b"\xff", T0),
        InRecord("events", 0, 101, b"u0", b"[1, 2]", T0),
        InRecord("events", 0, 102, b"u0", b'{"id": "x", "entity": "u0", "ts": "soon"}', T0),
        InRecord("events", 0, 103, None, None, T0),
    ]
    out = make_step({}).on_batch([good[0], *bad, good[1], good[2]])
    reasons = [orjson.loads(m.value)["reason"] for m in out.dead_letters]
    assert reasons == ["undecodable", "not_an_object", "bad_timestamp", "undecodable"]
    assert [orjson.loads(m.value)["source_offset"] for m in out.dead_letters] == [100, 101, 102, 103]
    assert out.counts.predicted_events == 3 and out.counts.validated == 7


def test_a_state_of_another_spec_is_reset_and_counted_never_raised() -> None:
    stored = {b"u0": (5).to_bytes(OFFSET_BYTES, "big", signed=True) + b"[12345, null, [], []]"}
    record = events(1, 1)[0]
    out = make_step(stored).on_batch([InRecord("events", record.partition, 9, b"u0", record.value, T0)])
    assert out.counts.reset_states == 1 and out.counts.predicted_events == 1
    assert orjson.loads(out.predictions[0].value)["features"]["events_10s"] == 1.0


def test_late_events_follow_the_late_policy() -> None:
    on_time = {"id": "a", "entity": "u0", "ts": T0 + 100, "x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "x5": 0.5}
    late = {**on_time, "id": "b", "ts": T0}  # 100 s behind the entity's watermark, grace is 2 s
    recs = [InRecord("events", 0, i, b"u0", orjson.dumps(v), T0 + 100) for i, v in enumerate([on_time, late])]
    out = make_step({}).on_batch(recs)
    # demo spec: dead-letter, so the late event is predicted (its late features missing) and copied to dead-letter
    predicted = [orjson.loads(m.value) for m in out.predictions]
    assert [p["id"] for p in predicted] == ["a", "b"]
    assert "x1_mean_10s" not in predicted[1]["features"] and predicted[0]["features"]["x1_mean_10s"] == 0.1
    assert [orjson.loads(m.value)["reason"] for m in out.dead_letters] == ["late"]
    assert out.counts.late["dead-letter"] == 1 and out.counts.predicted_events == 2
    assert [row[0] for row in out.store_rows] == ["u0"]  # the late one is not the entity's latest vector


def test_a_late_event_is_dropped_only_when_its_late_policy_says_drop() -> None:
    spec = PipelineSpec.from_toml(SPEC_PATH.read_text().replace('late_policy = "dead-letter"', 'late_policy = "drop"'))
    on_time = {"id": "a", "entity": "u0", "ts": T0 + 100, "x1": 0.1}
    late = {**on_time, "id": "b", "ts": T0}
    recs = [InRecord("events", 0, i, b"u0", orjson.dumps(v), T0 + 100) for i, v in enumerate([on_time, late])]
    out = make_step({}, spec).on_batch(recs)
    assert [orjson.loads(m.value)["id"] for m in out.predictions] == ["a"]
    assert out.dead_letters == [] and out.counts.late["drop"] == 1


def test_idle_state_expires_on_event_time_as_a_delete() -> None:
    fields = {"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "x5": 0.5}
    # Two entities of one partition (state expires per partition watermark, on event time).
    idle_key = b"idle"
    p = partition_for(idle_key, 4)
    busy_key = next(k for k in (f"busy{i}".encode() for i in range(100)) if partition_for(k, 4) == p)
    stored: dict[bytes, bytes] = {}
    step = make_step(stored)

    def rec(offset: int, key: bytes, ts: float) -> InRecord:
        value = {"id": f"e{offset}", "entity": key.decode(), "ts": ts, **fields}
        return InRecord("events", p, offset, key, orjson.dumps(value), T0)

    idle = step.on_batch([rec(1, idle_key, T0)])
    stored.update((k, v) for k, (_, v) in idle.state_writes.items() if v is not None)
    # Two hours of event time later: beyond every window + grace of the demo spec (the longest is 3600 s).
    busy = [rec(2 + i, busy_key, T0 + 7200 + i) for i in range(120)]
    out = step.on_batch(busy)
    assert out.state_writes[idle_key][1] is None and out.counts.expired_states == 1
    assert out.state_writes[busy_key][1] is not None
