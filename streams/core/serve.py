"""The serving step, a batch at a time: events → validate → features → predict, with no I/O.

DESIGN.md decision 8. The worker's events agent takes a batch of Kafka records, hands it to
:meth:`ServeStep.on_batch`, and gets back everything the batch produces: the prediction messages, the dead
letters, the drift alerts, the feature-state writes (one per entity per batch) and the rows for the online
store. The agent then sends the messages, awaits them once, and only then writes the state, so "a stored
state that holds an event implies its prediction went out" holds after a crash. Nothing here imports Faust,
Kafka or Redis; the step is driven the same way by the agent, the tests and the doctest below.

Shapes::

    [InRecord(topic, partition, offset, key, value, timestamp_s)]          # one batch, in consumption order
      → per record: bytes → Event | Invalid → (entity state, features) → model input → one Prediction per slot
      → ServeOutput(predictions=[OutMessage], dead_letters=[OutMessage], alerts=[dict],
                    state_writes={entity key: (partition, bytes | None)}, store_rows=[...], counts)

Events of one entity stay in order (they share a partition, and a batch keeps each partition's order).
The stored state of an entity is ``offset (8 bytes, big endian) + FeatureEngine.dumps(state)``; a record at
or below that offset was applied before a crash and its prediction was sent then, so it is skipped
(counted ``redelivered``) rather than predicted a second time with different features.

>>> from models.spec import parse_models
>>> from streams.features import FeatureEngine, parse_features
>>> from streams.core.predictor import Predictor
>>> from streams.records import decode
>>> from streams.spec import EventSchema
>>> engine = FeatureEngine(parse_features(
...     [{"name": "n_10s", "agg": "count", "window": {"kind": "sliding", "size_s": 10}}]))
>>> slots = parse_models([], "classification")
>>> stored = {}  # the worker's feature-state table
>>> step = ServeStep(engine, Predictor(slots), EventSchema(fields={"x": "float"}), stored=stored,
...                  n_partitions=1, clock=lambda: 1_700_000_100.0)
>>> def event(i): return b'{"id": "e%d", "entity": "u1", "ts": %d, "x": 1}' % (i, 1_700_000_000 + i)
>>> batch = [InRecord("events", 0, i, b"u1", event(i), 1_700_000_000.0 + i) for i in range(3)]
>>> batch.append(InRecord("events", 0, 3, b"u1", b"not json", 1_700_000_003.0))
>>> out = step.on_batch(batch)
>>> [decode(m.value)["features"]["n_10s"] for m in out.predictions]
[1.0, 2.0, 3.0]
>>> [decode(m.value)["reason"] for m in out.dead_letters], list(out.state_writes)
(['undecodable'], [b'u1'])
>>> stored.update((key, value) for key, (_, value) in out.state_writes.items())  # after the sends
>>> again = step.on_batch(batch[:3])  # redelivered after a crash: the state holds them, not predicted twice
>>> again.counts.redelivered, again.predictions
(3, [])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from models.clock import Clock, system_clock
from models.drift.alerts import DriftAlert
from models.drift.distribution import FeatureDriftMonitors, WindowDriftMonitor
from streams.core.inputs import model_input
from streams.core.partitions import partition_for
from streams.core.predictor import Predictor
from streams.core.validate import Invalid, validate_event
from streams.features import FeatureEngine
from streams.features.engine import StateLayoutError
from streams.records import Prediction, dead_letter_of, encode
from streams.spec import EventSchema

__all__ = [
    "InRecord",
    "OutMessage",
    "ServeCounts",
    "ServeOutput",
    "ServeStep",
    "StateSweep",
    "dead_letter_message",
    "served_score",
]

OFFSET_BYTES = 8


@dataclass(frozen=True, slots=True)
class InRecord:
    """One Kafka record as the runtime hands it over (``timestamp_s``: its append time, epoch seconds)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_s: float


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A message to send: ``topic`` is freshet's topic name (``"predictions"``, ``"dead-letter"``, ``"drift"``)."""

    topic: str
    key: bytes | None
    value: bytes
    ingest_ts: float | None = None  # for predictions: the input's append time (latency accounting)
    slot: str | None = None  # for predictions: the model slot


@dataclass(slots=True)
class ServeCounts:
    """What one batch did, for the metrics (the runtime adds them to bound Prometheus children)."""

    validated: int = 0
    featurized: int = 0
    predicted_events: int = 0
    redelivered: int = 0
    expired_states: int = 0
    reset_states: int = 0
    late: Counter[str] = field(default_factory=Counter)  # by late policy (drop, dead-letter)
    predictions: Counter[str] = field(default_factory=Counter)  # by slot
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (source topic, reason)
    routed: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # routed slots: by (slot, arm, route)


@dataclass(slots=True)
class ServeOutput:
    predictions: list[OutMessage] = field(default_factory=list)
    dead_letters: list[OutMessage] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # entity key → (partition, stored bytes, or None to delete): written after the sends are acknowledged.
    state_writes: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)
    # (entity, features, event time, ingest time) for the online store.
    store_rows: list[tuple[str, dict[str, float | None], float, float]] = field(default_factory=list)
    counts: ServeCounts = field(default_factory=ServeCounts)


class ServeStep:
    """Validate, featurize and predict a batch of event records; the state it reads is ``stored``.

    ``stored`` maps entity key → stored state bytes (the worker's feature-state table); the step only reads
    it and returns the writes. ``attributes`` given to :meth:`on_batch` are the static attributes of the
    batch's entities (fetched by the runtime, once per batch). ``clock`` gives the wall time used for the
    "too far in the future" check and a prediction's ``produced_ts``.
    """

    def __init__(
        self,
        engine: FeatureEngine,
        predictor: Predictor,
        schema: EventSchema,
        stored: Mapping[bytes, bytes],
        n_partitions: int,
        *,
        feature_drift: FeatureDriftMonitors | None = None,
        prediction_drift: Mapping[str, WindowDriftMonitor | None] | None = None,
        clock: Clock = system_clock,
        sweep_every: int = 100,
        sweep_budget: int = 200,
    ) -> None:
        self.engine = engine
        self.predictor = predictor
        self.schema = schema
        self.stored = stored
        self.slots = list(predictor.slots)
        self.feature_drift = feature_drift
        self.prediction_drift = {k: v for k, v in (prediction_drift or {}).items() if v is not None}
        self.clock = clock
        self.sweep = StateSweep(n_partitions)
        self.sweep_every = sweep_every
        self.sweep_budget = sweep_budget
        # Event-time watermark per input partition: state expires on event time, never on the wall clock.
        self.partition_watermark: dict[int, float] = {}

    def on_batch(
        self, records: list[InRecord], attributes: Mapping[str, Mapping[str, Any]] | None = None
    ) -> ServeOutput:
        out = ServeOutput()
        # Entity key → [partition, offset, decoded state]: each entity's state is decoded once per batch
        # and encoded once at the end.
        work: dict[bytes, list[Any]] = {}
        now_s = self.clock()
        for rec in records:
            self._one(rec, now_s, attributes, work, out)
        engine = self.engine
        for key, (partition, offset, state) in work.items():
            if state is None:
                out.state_writes[key] = (partition, None)
            else:
                out.state_writes[key] = (
                    partition,
                    offset.to_bytes(OFFSET_BYTES, "big", signed=True) + engine.dumps(state),
                )
        return out

    # -- one record ------------------------------------------------------------------------------------

    def _one(
        self,
        rec: InRecord,
        now_s: float,
        attributes: Mapping[str, Mapping[str, Any]] | None,
        work: dict[bytes, list[Any]],
        out: ServeOutput,
    ) -> None:
        counts = out.counts
        counts.validated += 1
        checked = validate_event(rec.value, self.schema, now_s=now_s)
        if isinstance(checked, Invalid):
            self._dead_letter(rec, checked.reason, checked.detail, out)
            return
        if checked.ts > self.partition_watermark.get(rec.partition, float("-inf")):
            self.partition_watermark[rec.partition] = checked.ts
        if rec.offset % self.sweep_every == 0:
            self._expire(rec.partition, work, out)
        key = checked.entity.encode()
        slot = work.get(key)
        if slot is None:
            slot = work[key] = self._load(key, rec.partition, counts)
        elif slot[2] is None:  # expired earlier in this batch: the entity starts afresh
            slot[1], slot[2] = -1, self.engine.new_state()
        if slot[1] >= rec.offset:
            counts.redelivered += 1  # applied before a crash; its prediction went out then
            return
        attrs = (attributes or {}).get(checked.entity) if self.engine.attribute_fields else None
        result = self.engine.update(slot[2], checked.ts, checked.fields, attrs)
        slot[1] = rec.offset
        values = result.values
        # (entity, {feature: value}) → model input (fields + features)
        x = model_input(checked.fields, values)
        if result.late and not self._late(rec, checked.ts, result.late_action, result.late_features, out):
            return
        counts.featurized += 1
        if not result.late:  # a late event is behind its entity's latest vector and drift windows
            if self.feature_drift is not None:
                self._alerts(self.feature_drift.update_one(x, checked.ts, rec.offset), out)
            out.store_rows.append((checked.entity, values, checked.ts, rec.timestamp_s))
        id_key = checked.id.encode()
        for slot_name in self.slots:
            y, proba, served, routed, arm = self.predictor.predict_routed(slot_name, x, checked.entity, checked.id)
            produced_ts = self.clock()
            stale_examples, stale_s = self.predictor.staleness(slot_name, produced_ts)
            pred = Prediction(
                id=checked.id,
                entity=checked.entity,
                prediction=y,
                probabilities=proba,
                model=served,
                features=x,  # type: ignore[arg-type]  # dict[str, float] is what the model saw
                event_ts=checked.ts,
                produced_ts=produced_ts,
                ingest_ts=rec.timestamp_s,
                slot=slot_name,
                staleness_examples=stale_examples,
                staleness_s=stale_s,
            )
            if routed is not None and arm is not None:
                plan = routed.plan
                pred = replace(pred, arm=arm, share=plan.share(arm), route=plan.route, experiment=plan.experiment,
                               plan_version=plan.version)
                counts.routed[(slot_name, arm, plan.route)] += 1
                if self.predictor.breaches:  # the canary's latency guard fired: announced on drift
                    out.alerts.extend(self.predictor.breaches)
                    self.predictor.breaches.clear()
            # Prediction → predictions (key: event id)
            out.predictions.append(
                OutMessage("predictions", id_key, encode(pred.to_dict()), rec.timestamp_s, slot_name)
            )
            counts.predictions[slot_name] += 1
            monitor = self.prediction_drift.get(slot_name)
            if monitor is not None:
                alert = monitor.update(served_score(y, proba), checked.ts, rec.offset)
                if alert is not None:
                    self._alerts([alert], out)
        counts.predicted_events += 1

    def _late(
        self, rec: InRecord, ts: float, action: str | None, late_features: tuple[str, ...], out: ServeOutput
    ) -> bool:
        """An event behind its entity's watermark beyond grace (not applied to the late features, whose value
        is None or their default): whether it is still predicted. The late features' ``late_policy``
        decides: ``"drop"`` drops the event (no prediction); ``"dead-letter"`` predicts it with those
        features missing and copies it to ``dead-letter`` (reason ``late``), so nothing is lost silently.
        """
        action = action or "drop"
        out.counts.late[action] += 1
        if action == "drop":
            return False
        detail = f"event time {ts:.3f} is behind the watermark beyond grace for {', '.join(late_features)}"
        self._dead_letter(rec, "late", detail + " (predicted without them)", out)
        return True

    def _load(self, key: bytes, partition: int, counts: ServeCounts) -> list[Any]:
        stored = self.stored.get(key)
        if stored is None:
            return [partition, -1, self.engine.new_state()]
        offset = int.from_bytes(stored[:OFFSET_BYTES], "big", signed=True)
        try:
            state = self.engine.loads(stored[OFFSET_BYTES:])
        except StateLayoutError:
            # Written by another feature spec (or corrupt): the entity starts afresh, counted.
            counts.reset_states += 1
            return [partition, -1, self.engine.new_state()]
        return [partition, offset, state]

    def _expire(self, partition: int, work: dict[bytes, list[Any]], out: ServeOutput) -> None:
        """Delete the state of idle entities of ``partition`` whose windows all ended before its watermark."""
        wm = self.partition_watermark.get(partition)
        if wm is None:
            return
        stored = self.stored

        def keys() -> list[bytes]:  # stored entities and the ones new in this batch
            return [*stored.keys(), *(k for k in work if k not in stored)]

        for key in self.sweep.next_keys(keys, partition, self.sweep_budget):
            slot = work.get(key)
            if slot is not None and slot[2] is None:
                continue  # deleted already in this batch
            if slot is None:
                raw = stored.get(key)
                if raw is None:
                    continue
                state = self.engine.loads(raw[OFFSET_BYTES:], on_mismatch="reset")  # a reset state is empty
            else:
                state = slot[2]
            if self.engine.expired(state, wm):
                work[key] = [partition, -1, None]
                out.counts.expired_states += 1

    def _dead_letter(self, rec: InRecord, reason: str, detail: str, out: ServeOutput) -> None:
        out.dead_letters.append(dead_letter_message(rec, reason, detail, self.clock()))
        out.counts.dead_letters[(rec.topic, reason)] += 1

    @staticmethod
    def _alerts(alerts: list[DriftAlert], out: ServeOutput) -> None:
        out.alerts.extend(a.to_dict() for a in alerts)


def dead_letter_message(rec: InRecord, reason: str, detail: str, now_s: float) -> OutMessage:
    """The ``dead-letter`` message for an input record that cannot be processed (bounded, with coordinates)."""
    key, value = dead_letter_of(rec, reason, detail, now_s)
    return OutMessage("dead-letter", key, value)


class StateSweep:
    """Walks a table's keys of one partition a chunk at a time, so expiry never blocks the loop for long.

    >>> sweep = StateSweep(4)
    >>> keys = [b"u1", b"u2", b"u3"]
    >>> sorted(sweep.next_keys(lambda: keys, partition_for(b"u1", 4), 10))
    [b'u1']
    """

    def __init__(self, n_partitions: int) -> None:
        self.n_partitions = n_partitions
        self._pending: dict[int, list[bytes]] = {}

    def next_keys(self, keys: Callable[[], Iterable[bytes]], partition: int, n: int) -> list[bytes]:
        """Up to ``n`` keys of ``partition``; ``keys`` lists all keys (called when a pass is over)."""
        if not self._pending.get(partition):
            self._pending = {}
            for key in keys():
                self._pending.setdefault(partition_for(key, self.n_partitions), []).append(key)
        todo = self._pending.get(partition, [])
        chunk, self._pending[partition] = todo[:n], todo[n:]
        return chunk


def served_score(y: Any, proba: dict[str, float]) -> float | None:
    """The scalar watched for prediction drift: P(true) / P(1) for binary classes, else the prediction.

    >>> served_score(True, {"true": 0.8, "false": 0.2}), served_score(2.5, {}), served_score("a", {"a": 0.6})
    (0.8, 2.5, 0.6)
    """
    for positive in ("true", "1"):
        if positive in proba:
            return proba[positive]
    if proba and y is not None:
        return proba.get(str(y))
    if isinstance(y, bool | int | float):
        return float(y)
    return None
