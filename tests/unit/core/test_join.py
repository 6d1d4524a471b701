"""Log and wait: labels late, early, twice, unknown; event-time expiry; state that fits a Faust table."""

from __future__ import annotations

import random
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.join import LabelJoin, slot_of
from streams.records import Example, LabelRecord, Prediction

TTL = 60.0


def pred(event_id: str, ts: float, model: str = "default@1", features: dict | None = None) -> Prediction:
    return Prediction(
        id=event_id, entity="u1", prediction=True, probabilities={"True": 0.7, "False": 0.3}, model=model,
        features=features if features is not None else {"f": ts}, event_ts=ts, produced_ts=ts + 0.01,
        slot=slot_of(model),
    )


def label(event_id: str, ts: float, value: Any = False) -> LabelRecord:
    return LabelRecord(id=event_id, label=value, ts=ts)


def test_label_after_prediction_joins_with_the_logged_features() -> None:
    join = LabelJoin(TTL)
    assert join.on_prediction(pred("e1", 100.0, features={"amount_mean_300s": 12.5, "n": None})) == []
    assert join.waiting_predictions == 1
    out = join.on_label(label("e1", 145.0, value=True))
    assert out.outcome == "joined" and out.delay_s == 45.0 and out.counted
    [example] = out.examples
    assert example == Example(
        id="e1", entity="u1", slot="default", features={"amount_mean_300s": 12.5, "n": None}, label=True,
        event_ts=100.0, label_ts=145.0, served_prediction=True, served_model="default@1",
        served_probabilities={"True": 0.7, "False": 0.3},
    )
    assert join.waiting_predictions == 0 and join.counts["joined"] == 1


def test_label_before_prediction_waits_then_joins() -> None:
    join = LabelJoin(TTL)
    assert join.on_label(label("e1", 100.0)).outcome == "pending"
    assert join.pending_labels == 1
    [out] = join.on_prediction(pred("e1", 99.0))
    assert out.outcome == "joined" and out.delay_s == 1.0 and out.examples[0].label is False
    assert join.pending_labels == 0
    assert join.counts == {"joined": 1, "pending": 1, "duplicate": 0, "unknown": 0,
                           "expired_prediction": 0, "duplicate_prediction": 0}


def test_duplicates_are_counted_and_the_first_wins() -> None:
    join = LabelJoin(TTL)
    join.on_prediction(pred("e1", 0.0))
    assert join.on_prediction(pred("e1", 0.0))[0].outcome == "duplicate_prediction"
    assert join.on_label(label("e1", 1.0, value=True)).outcome == "joined"
    assert join.on_label(label("e1", 2.0, value=False)).outcome == "duplicate"
    assert join.on_prediction(pred("e1", 0.0))[0].outcome == "duplicate_prediction"
    # Duplicate labels while the first is still pending.
    assert join.on_label(label("e2", 5.0)).outcome == "pending"
    assert join.on_label(label("e2", 6.0)).outcome == "duplicate"
    assert (join.counts["duplicate"], join.counts["duplicate_prediction"]) == (2, 2)


def test_prediction_without_a_label_expires_on_event_time() -> None:
    join = LabelJoin(TTL)
    join.on_prediction(pred("e1", 100.0))
    assert join.expire(160.0) == []  # exactly at the TTL: still waiting
    [out] = join.expire(160.5)
    assert (out.outcome, out.id, out.slot) == ("expired_prediction", "e1", "default")
    assert len(join) == 0 and join.waiting_predictions == 0
    # Once forgotten, its label is unknown.
    assert join.on_label(label("e1", 161.0)).outcome == "pending"
    [unknown] = join.expire(1000.0)
    assert (unknown.outcome, unknown.id) == ("unknown", "e1")


def test_label_exactly_at_the_ttl_joins_and_one_after_it_does_not() -> None:
    join = LabelJoin(TTL)
    join.on_prediction(pred("on-time", 0.0))
    join.on_prediction(pred("late", 0.0))
    assert join.on_label(label("on-time", 60.0)).outcome == "joined"
    # No expire() call has forgotten the late label's prediction yet: it still must not join.
    assert join.on_label(label("late", 60.5)).outcome == "pending"
    outcomes = sorted((o.outcome, o.id) for o in join.expire(10_000.0))
    assert outcomes == [("expired_prediction", "late"), ("unknown", "late")]


def test_expiry_uses_event_time_not_the_wall_clock() -> None:
    # A replay of last year's events: nothing expires until event time moves past the TTL.
    join = LabelJoin(TTL)
    join.on_prediction(pred("e1", 1_600_000_000.0))
    join.on_prediction(pred("e2", 1_600_000_030.0))
    assert join.expire() == []
    assert join.on_label(label("e1", 1_600_000_050.0)).outcome == "joined"
    join.on_prediction(pred("e3", 1_600_000_095.0))  # moves the watermark past e2's wait (and e1's)
    assert [o.id for o in join.expire()] == ["e2"]
    assert len(join) == 1  # e1 is forgotten silently once its wait ends; e3 waits


def test_several_slots_each_get_an_example() -> None:
    join = LabelJoin(TTL)
    join.on_prediction(pred("e1", 0.0, model="fraud@3"))
    join.on_prediction(pred("e1", 0.0, model="fraud_v2@1"))
    out = join.on_label(label("e1", 5.0))
    assert out.outcome == "joined" and sorted(e.slot for e in out.examples) == ["fraud", "fraud_v2"]
    # A slot predicting after the label was joined still gets its example, without counting the label twice.
    [late_slot] = join.on_prediction(pred("e1", 1.0, model="third@1"))
    assert late_slot.outcome == "joined" and not late_slot.counted and late_slot.examples[0].slot == "third"
    assert join.counts["joined"] == 1


def test_slot_of() -> None:
    assert slot_of("a@b@3") == "a@b" and slot_of("x") == "x"
    join = LabelJoin(TTL, slot_for=lambda p: "fixed")
    join.on_prediction(pred("e1", 0.0, model="lr@4"))
    assert join.on_label(label("e1", 1.0)).examples[0].slot == "fixed"


def test_dumps_and_loads_continue_identically() -> None:
    join = LabelJoin(TTL)
    join.on_prediction(pred("e1", 0.0))
    join.on_label(label("e2", 10.0))
    join.on_prediction(pred("e3", 20.0))
    join.on_label(label("e3", 21.0))
    again = LabelJoin.loads(join.dumps())
    assert again.entries == join.entries and again.counts == join.counts
    assert again.watermark == join.watermark == 21.0
    for j in (join, again):
        j.on_prediction(pred("e2", 9.0))
    assert again.expire(200.0) == join.expire(200.0)
    assert again.counts == join.counts and len(again) == len(join) == 0
    assert LabelJoin.loads(LabelJoin(5).dumps()).watermark == float("-inf")


class TableLike(MutableMapping[str, dict]):
    """Stands in for a Faust table: values are JSON-serialized on assignment (as its changelog would be)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.writes = 0

    def __getitem__(self, key: str) -> dict:
        return orjson.loads(self.data[key])

    def __setitem__(self, key: str, value: dict) -> None:
        self.writes += 1
        self.data[key] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_state_lives_in_a_table_keyed_by_event_id_and_recovers() -> None:
    table = TableLike()
    join = LabelJoin(TTL, table)
    join.on_prediction(pred("e1", 0.0))
    join.on_label(label("e2", 1.0))
    join.on_prediction(pred("e3", 2.0))
    assert sorted(table) == ["e1", "e2", "e3"] and table.writes == 3
    assert all(len(table.data[k]) < 400 for k in table)  # one small value per event id
    # The worker restarts: the table is recovered from its changelog, the index rebuilt from it.
    recovered = LabelJoin(TTL, table)
    assert (recovered.waiting_predictions, recovered.pending_labels) == (2, 1)
    assert recovered.on_label(label("e1", 3.0)).outcome == "joined"
    assert sorted(o.outcome for o in recovered.expire(1000.0)) == ["expired_prediction", "unknown"]
    assert len(table) == 0


def test_bad_ttl() -> None:
    with pytest.raises(ValueError, match="positive"):
        LabelJoin(0)


# -- properties ------------------------------------------------------------------------------------

_event = st.tuples(
    st.sampled_from(["p", "l"]),
    st.integers(0, 12),  # event id: few, so duplicates and unknowns are common
    st.floats(0.0, 300.0, allow_nan=False),
    st.sampled_from(["a@1", "b@1"]),
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(_event, max_size=60), expire_every=st.integers(1, 10), ttl=st.floats(1.0, 120.0))
def test_every_label_and_prediction_is_accounted_for_once(
    events: list[tuple[str, int, float, str]], expire_every: int, ttl: float
) -> None:
    join = LabelJoin(ttl)
    labels = predictions = joined_examples = 0
    for i, (kind, n, ts, model) in enumerate(events):
        if kind == "p":
            predictions += 1
            outs = join.on_prediction(pred(f"e{n}", ts, model=model))
        else:
            labels += 1
            outs = [join.on_label(label(f"e{n}", ts))]
        joined_examples += sum(len(o.examples) for o in outs)
        if i % expire_every == 0:
            outs = join.expire()
            assert all(not o.examples for o in outs)
    join.expire(float("inf"))
    c = join.counts
    assert len(join) == 0 and join.waiting_predictions == 0 and join.pending_labels == 0
    assert c["joined"] + c["unknown"] + c["duplicate"] == labels
    assert joined_examples + c["expired_prediction"] + c["duplicate_prediction"] == predictions
    assert c["pending"] <= c["joined"] + c["unknown"]


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(_event, max_size=60),
    seed=st.integers(0, 1000),
)
def test_outcomes_do_not_depend_on_how_often_expiry_runs(
    events: list[tuple[str, int, float, str]], seed: int
) -> None:
    rng = random.Random(seed)

    def run(expire_prob: float) -> tuple[list, dict]:
        join = LabelJoin(30.0)
        joined = []
        for kind, n, ts, model in events:
            if kind == "p":
                outs = join.on_prediction(pred(f"e{n}", ts, model=model))
            else:
                outs = [join.on_label(label(f"e{n}", ts))]
            joined += [(e.id, e.slot, e.event_ts) for o in outs for e in o.examples]
            if rng.random() < expire_prob:
                join.expire()
        join.expire(float("inf"))
        return sorted(joined), join.counts

    assert run(1.0) == run(0.0) == run(0.3)
