"""The label join a batch at a time: the same outcomes as one record at a time, far fewer state writes."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.join import LabelJoin
from streams.core.join_batch import JoinStep
from streams.core.serve import InRecord
from streams.records import LabelRecord, Prediction, encode

TTL = 60.0


def pred(event_id: str, ts: float, y: bool = True) -> Prediction:
    return Prediction(
        id=event_id, entity="u1", prediction=y, probabilities={"true": 0.7 if y else 0.3, "false": 0.3 if y else 0.7},
        model="lr@1", features={"f": ts}, event_ts=ts, produced_ts=ts + 0.01,
    )


def stream(n: int, seed: int) -> list[InRecord]:
    """Predictions and labels interleaved: labels late, early, twice, missing, for unknown ids."""
    rng = random.Random(seed)
    items: list[tuple[float, InRecord]] = []
    for i in range(n):
        ts = 1000.0 + i
        p = pred(f"e{i}", ts, rng.random() < 0.5)
        items.append((ts + rng.uniform(0, 2), InRecord("predictions", 0, i, p.id.encode(), encode(p.to_dict()), ts)))
        r = rng.random()
        if r < 0.8:
            label = {"id": p.id, "label": rng.random() < 0.5, "ts": ts + rng.uniform(0, 30)}
            arrival = ts + rng.uniform(-3, 30)
            items.append((arrival, InRecord("labels", 0, i, p.id.encode(), orjson.dumps(label), arrival)))
            if r < 0.05:
                items.append((arrival + 1, InRecord("labels", 0, i, p.id.encode(), orjson.dumps(label), arrival)))
        elif r < 0.85:
            ghost = b'{"id": "ghost%d", "label": true, "ts": %d}' % (i, ts)
            items.append((ts, InRecord("labels", 0, i, b"nope", ghost, ts)))
    items.sort(key=lambda t: t[0])
    return [rec for _, rec in items]


def run(records: list[InRecord], batch_size: int) -> tuple[list[bytes], dict[str, int], dict[bytes, bytes], int]:
    store: dict[bytes, bytes] = {}
    step = JoinStep(TTL, store, 1, {"default": "classification"}, predictions_topic="predictions")
    examples: list[bytes] = []
    outcomes: dict[str, int] = {}
    writes = 0
    for i in range(0, len(records), batch_size):
        out = step.on_batch(records[i : i + batch_size])
        examples += [m.value for m in out.examples]
        for k, n in out.outcomes.items():
            outcomes[k] = outcomes.get(k, 0) + n
        for key, (_, value) in out.state_writes.items():
            writes += 1
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
    return examples, outcomes, store, writes


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([1, 3, 64, 10_000]), st.integers(min_value=0, max_value=1000))
def test_batches_give_the_outcomes_of_one_record_at_a_time(batch_size: int, seed: int) -> None:
    records = stream(200, seed)
    # The reference: LabelJoin over a plain dict, one record at a time.
    ref = LabelJoin(TTL)
    ref_examples = []
    for rec in records:
        if rec.topic == "predictions":
            outs = ref.on_prediction(Prediction.from_dict(orjson.loads(rec.value or b"")))
        else:
            raw = orjson.loads(rec.value or b"")
            outs = [ref.on_label(LabelRecord(raw["id"], raw["label"], float(raw["ts"])))]
        ref_examples += [encode(e.to_dict()) for o in outs for e in o.examples]
        ref.expire()
    examples, outcomes, store, _ = run(records, batch_size)
    assert examples == ref_examples
    assert {k: v for k, v in outcomes.items() if k != "pending"} == {
        k: v for k, v in ref.counts.items() if v and k != "pending"
    }
    assert {k.decode(): orjson.loads(v) for k, v in store.items()} == dict(ref.entries)


def test_a_key_logged_and_joined_in_one_batch_is_written_once() -> None:
    records = stream(500, 7)
    _, _, _, writes_one = run(records, 1)
    _, _, _, writes_batched = run(records, 500)
    assert writes_batched <= writes_one / 2, (writes_batched, writes_one)


def test_a_malformed_prediction_record_is_dead_lettered_not_raised() -> None:
    step = JoinStep(TTL, {}, 1, {"default": "classification"}, predictions_topic="predictions")
    bad = [
        InRecord("predictions", 0, 1, b"e1", b"\xff", 0.0),
        InRecord("predictions", 0, 2, b"e2", b'{"id": "e2"}', 0.0),
        InRecord("predictions", 0, 3, b"e3", b"[]", 0.0),
        InRecord("labels", 0, 4, b"e4", b'{"id": "e4"}', 0.0),
    ]
    out = step.on_batch(bad)
    assert [orjson.loads(m.value)["reason"] for m in out.dead_letters] == [
        "undecodable", "bad_prediction", "not_an_object", "missing_field",
    ]
    assert out.dead_letter_reasons[("predictions", "bad_prediction")] == 1 and out.examples == []


def test_labels_that_do_not_fit_the_slot_are_dead_lettered_as_bad_label() -> None:
    from streams.spec import LabelSchema

    step = JoinStep(TTL, {}, 1, {"default": "classification"}, predictions_topic="predictions",
                    label_schema=LabelSchema(classes=(True, False)))
    p = pred("e1", 100.0)
    labels = [b'{"id": "e1", "label": "maybe", "ts": 101}', b'{"id": "e1", "label": 2, "ts": 101}',
              b'{"id": "e1", "label": 0.5, "ts": 101}', b'{"id": "e1", "label": false, "ts": 101}']
    out = step.on_batch([InRecord("predictions", 0, 0, b"e1", encode(p.to_dict()), 100.0)]
                        + [InRecord("labels", 0, i, b"e1", v, 101.0) for i, v in enumerate(labels)])
    assert [orjson.loads(m.value)["reason"] for m in out.dead_letters] == ["bad_label"] * 3
    assert [orjson.loads(m.value)["label"] for m in out.examples] == [False]


def test_a_label_without_ts_is_dead_lettered_or_takes_its_append_time_never_the_wall_clock() -> None:
    """A replay of two-day-old events: their labels without ``ts`` used to get the wall clock as event time,
    so every one expired (TTL on event time) and nothing said why."""
    from streams.spec import LabelSchema

    old = 1_600_000_000.0  # years before the wall clock
    records = [InRecord("predictions", 0, 0, b"e1", encode(pred("e1", old).to_dict()), old),
               InRecord("labels", 0, 0, b"e1", b'{"id": "e1", "label": true}', old + 5)]
    strict = JoinStep(TTL, {}, 1, {"default": "classification"}, predictions_topic="predictions",
                      label_schema=LabelSchema())
    out = strict.on_batch(records)
    assert [orjson.loads(m.value)["reason"] for m in out.dead_letters] == ["missing_time"] and out.examples == []
    arrival = JoinStep(TTL, {}, 1, {"default": "classification"}, predictions_topic="predictions",
                       label_schema=LabelSchema(missing_time="arrival"))
    out = arrival.on_batch(records)
    [example] = [orjson.loads(m.value) for m in out.examples]
    assert example["label_ts"] == old + 5 and out.dead_letters == []
