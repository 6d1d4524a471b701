"""The Faust worker: validate → features → predict → log-and-wait join, around the pure modules.

The app is built by :func:`create_app` from a :class:`Runtime` (settings, spec, metrics, engines), so
there are no module-level globals and tests build as many apps as they like. Agents are thin: they
decode, call pure code, and publish; every shape change is noted inline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry

from models.drift.alerts import DriftAlert
from models.drift.config import DriftConfig
from models.evaluation import OnlineScorer
from models.spec import ModelSlotDef, parse_models
from streams.connections import open_store
from streams.features import FeatureEngine, parse_features
from streams.hot_swap import follow_versions
from streams.inputs import model_input
from streams.join import JoinOutcome, LabelJoin
from streams.metrics import Metrics
from streams.partitions import partition_for
from streams.predictor import Predictor
from streams.records import Prediction, dead_letter, decode, encode
from streams.settings import Settings
from streams.spec import PipelineSpec
from streams.store import OnlineStore
from streams.topics import declare_topics
from streams.validate import Invalid, validate_event, validate_label

log = logging.getLogger("freshet.worker")


@dataclass
class Runtime:
    """Everything the agents need, built once per worker process."""

    settings: Settings
    spec: PipelineSpec
    metrics: Metrics
    engine: FeatureEngine
    slots: list[ModelSlotDef]
    predictor: Predictor
    drift: DriftConfig
    store: OnlineStore | None = None
    store_buffer: list[tuple[str, dict[str, float | None], float, float]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        spec: PipelineSpec | None = None,
        registry: CollectorRegistry | None = None,
        store: OnlineStore | None = None,
    ) -> Runtime:
        """``store`` defaults to the Redis online store of the settings (tests pass an in-memory one)."""
        spec = spec or PipelineSpec.load(settings.spec_file)
        raw_features = spec.raw.get("features", [])
        slots = parse_models(spec.raw.get("models", []), spec.label.kind)
        return cls(
            settings=settings,
            spec=spec,
            metrics=Metrics(registry),
            engine=FeatureEngine(parse_features(raw_features)),
            slots=slots,
            predictor=Predictor(slots),
            drift=DriftConfig.from_spec(spec),
            store=store if store is not None else open_store(settings),
        )


def create_app(rt: Runtime) -> faust.App:
    s = rt.settings
    datadir = s.cache_dir / "faust" / s.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",  # state is rebuilt from the changelog topics on start (DESIGN.md decision 1)
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        stream_recovery_delay=0.0,  # single-node broker: no need to wait for a rebalance storm
        broker_commit_interval=1.0,
        producer_linger_ms=2,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = declare_topics(app, s)
    m = rt.metrics
    # Data drift on the model inputs and prediction drift on the served scores, per worker process.
    feature_drift = rt.drift.feature_monitors()
    prediction_drift = {slot.slot: rt.drift.prediction_monitor(slot.slot) for slot in rt.slots}

    async def publish_alerts(alerts: list[DriftAlert]) -> None:
        for alert in alerts:
            d = alert.to_dict()
            m.record_alert(d)
            await topics.drift.send(key=str(d["subject"]).encode(), value=encode(d))

    attribute_cache = AttributeCache(rt.store, ttl_s=60.0)

    # Per-entity window state; value = 8-byte source offset + FeatureEngine.dumps(state).
    feature_state = app.Table("feature-state", key_type=bytes, value_type=bytes, partitions=s.partitions)
    # Event-time watermark per input partition: state expires on event time, never on the wall clock.
    partition_watermark: dict[int, float] = {}
    sweep = StateSweep(s.partitions)

    def expire_feature_state(partition: int, budget: int) -> None:
        """Delete the state of idle entities of ``partition`` whose windows all ended before its watermark.

        Runs inside the agent, on an event of that partition, so the changelog deletes land in the
        partition the keys live in (events are keyed by entity id).
        """
        wm = partition_watermark.get(partition)
        if wm is None:
            return
        for key in sweep.next_keys(feature_state, partition, budget):
            stored = feature_state.get(key)
            if stored is None:
                continue
            try:
                expired = rt.engine.expired(rt.engine.loads(stored[8:]), wm)
            except ValueError:
                expired = False  # a state written by another spec is replaced at the entity's next event
            if expired:
                del feature_state[key]
                m.feature_expired.inc()

    async def to_dead_letter(message: Any, reason: str, detail: str) -> None:
        key, value = dead_letter(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key if isinstance(message.key, bytes) else None,
            value=message.value if isinstance(message.value, bytes) else None,
            reason=reason,
            detail=detail,
        )
        m.dead_letters.labels(source=message.topic, reason=reason).inc()
        await topics.dead_letter.send(key=key, value=value)

    @app.agent(topics.events)
    async def process_events(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            m.events.labels(stage="validate").inc()
            # bytes → Event | Invalid
            checked = validate_event(event.value, rt.spec.event, now_s=time.time())
            if isinstance(checked, Invalid):
                await to_dead_letter(msg, checked.reason, checked.detail)
                continue
            if checked.ts > partition_watermark.get(msg.partition, float("-inf")):
                partition_watermark[msg.partition] = checked.ts
            if msg.offset % 100 == 0:
                expire_feature_state(msg.partition, budget=200)
            key = checked.entity.encode()
            attributes = await attribute_cache.get(checked.entity) if rt.engine.attribute_fields else None
            stored = feature_state.get(key)
            new_state: bytes | None = None  # written after the predictions are sent (see below)
            if stored is not None and int.from_bytes(stored[:8], "big", signed=True) >= msg.offset:
                # Redelivered after a crash: the state already holds this event (and its prediction was
                # sent before the state was written); do not apply it twice. The repeated prediction is
                # approximate and the join keeps the first one per event id.
                state = rt.engine.loads(stored[8:])
                values = rt.engine.read(state, checked.ts, attributes)
            else:
                state = rt.engine.loads(stored[8:]) if stored is not None else rt.engine.new_state()
                result = rt.engine.update(state, checked.ts, checked.fields, attributes)
                if result.late:
                    # Behind the watermark beyond grace: not applied to the late windows, no prediction;
                    # the features' late_policy says whether it is dropped or dead-lettered.
                    action = result.action or "drop"
                    m.late_events.labels(policy=action).inc()
                    if action == "dead-letter":
                        await to_dead_letter(
                            msg,
                            "late",
                            f"event time {checked.ts:.3f} is behind the watermark beyond grace "
                            f"for {', '.join(result.late_features)}",
                        )
                    feature_state[key] = msg.offset.to_bytes(8, "big", signed=True) + rt.engine.dumps(state)
                    continue
                values = result.values
                new_state = msg.offset.to_bytes(8, "big", signed=True) + rt.engine.dumps(state)
            m.events.labels(stage="features").inc()
            # (entity, {feature: value}) → model input (fields + features)
            x = model_input(checked.fields, values)
            if feature_drift is not None:
                await publish_alerts(feature_drift.update_one(x, checked.ts, msg.offset))
            rt.store_buffer.append((checked.entity, values, checked.ts, msg.timestamp))
            for slot in rt.slots:
                y, proba, served = rt.predictor.predict(slot.slot, x)
                now = time.time()
                pred = Prediction(
                    id=checked.id,
                    entity=checked.entity,
                    prediction=y,
                    probabilities=proba,
                    model=served,
                    features=dict(x),
                    event_ts=checked.ts,
                    produced_ts=now,
                    ingest_ts=msg.timestamp,
                    slot=slot.slot,
                )
                # Prediction → predictions (key: event id)
                await topics.predictions.send(key=checked.id.encode(), value=encode(pred.to_dict()))
                m.predictions.labels(model=slot.slot).inc()
                monitor = prediction_drift.get(slot.slot)
                if monitor is not None:
                    alert = monitor.update(served_score(y, proba), checked.ts, msg.offset)
                    if alert is not None:
                        await publish_alerts([alert])
                m.prediction_latency.observe(max(0.0, now - msg.timestamp))
            if new_state is not None:
                # After the predictions: a state that holds this event implies its prediction went out first.
                feature_state[key] = new_state
            m.events.labels(stage="predict").inc()

    # Log and wait: predictions wait here for their labels, keyed by event id. ``use_partitioner`` puts
    # each key's changelog in the partition its event id hashes to (the partition of both input
    # topics), so the expiry timer may delete keys outside stream iteration.
    pending = app.Table(
        "label-join",
        key_type=bytes,
        value_type=bytes,
        partitions=s.partitions,
        use_partitioner=True,
    )
    join = LabelJoin(s.label_ttl_s, entries=TableEntries(pending))
    served_scores: dict[str, OnlineScorer] = {
        slot.slot: OnlineScorer(slot.kind, rolling_window=s.rolling_window) for slot in rt.slots
    }
    index_ready = False

    async def emit_examples(outcome: JoinOutcome) -> None:
        for example in outcome.examples:
            # Example → examples (key: slot, so one learner reads each slot in order)
            await topics.examples.send(key=example.slot.encode(), value=encode(example.to_dict()))
            scorer = served_scores.get(example.slot)
            if scorer is not None and example.served_prediction is not None:
                scorer.update(example.label, example.served_prediction, example.served_probabilities or None)
                snap = scorer.snapshot()
                for name, value in snap.items():
                    if name in SERVED_METRICS and value is not None:
                        scope = "served_rolling" if name.endswith("_rolling") else "served_cumulative"
                        m.online_metric.labels(
                            model=example.slot, metric=name.removesuffix("_rolling"), scope=scope
                        ).set(value)

    def count(outcomes: list[JoinOutcome]) -> None:
        for o in outcomes:
            if o.counted:
                m.labels.labels(outcome=o.outcome).inc()
            if o.outcome == "joined" and o.delay_s is not None and o.counted:
                m.label_delay.observe(max(0.0, o.delay_s))
        m.pending_predictions.set(join.waiting_predictions)

    @app.agent(
        app.topic(
            s.topic("predictions"),
            s.topic("labels"),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
    )
    async def join_labels(stream: Any) -> None:
        nonlocal index_ready
        async for event in stream.events():
            if not index_ready:  # the table has been recovered by now
                join.rebuild_index()
                await known_to_producer(app, pending)
                index_ready = True
            msg = event.message
            if msg.topic == topics.predictions.get_topic_name():
                # bytes → Prediction → logged (and joined if its label came first)
                pred = Prediction.from_dict(decode(event.value))
                outcomes = join.on_prediction(pred)
            else:
                # bytes → LabelRecord | Invalid → joined with its logged prediction(s), or waits
                label = validate_label(event.value)
                if isinstance(label, Invalid):
                    await to_dead_letter(msg, label.reason, label.detail)
                    continue
                outcomes = [join.on_label(label)]
            for outcome in outcomes:
                await emit_examples(outcome)
            count(outcomes)
            count(join.expire())

    @app.timer(interval=0.05)
    async def flush_online_store() -> None:
        if not rt.store_buffer or rt.store is None:
            return
        rows, rt.store_buffer = rt.store_buffer, []
        await asyncio.get_running_loop().run_in_executor(
            None, rt.store.write_many, [(e, v, ts) for e, v, ts, _ in rows]
        )
        now = time.time()
        for *_, ingest_ts in rows:
            m.feature_freshness.observe(max(0.0, now - ingest_ts))

    @app.task
    async def follow_model_versions() -> None:
        await follow_versions(rt.settings, rt.slots, rt.predictor, rt.metrics)

    @app.timer(interval=5.0)
    async def count_entities() -> None:
        m.feature_entities.set(len(feature_state))

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        """Consumer lag of the worker's input partitions (highwater - next offset to read)."""
        consumer = app.consumer
        inputs = {topics.events.get_topic_name(), s.topic("labels"), s.topic("predictions")}
        tps = [tp for tp in consumer.assignment() if tp.topic in inputs]
        if not tps:
            return
        highwaters = await consumer.highwaters(*tps)
        for tp in tps:
            read = consumer._read_offset.get(tp)  # type: ignore[attr-defined]  # last offset given to agents
            end = highwaters.get(tp)
            if end is not None:
                lag = max(0, end - ((read + 1) if read is not None else 0))
                m.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    async def on_ready(sender: Any, **kwargs: Any) -> None:
        m.ready.set(1)

    app.on_rebalance_complete.connect(on_ready)  # type: ignore[arg-type]

    app.freshet_topics = topics  # type: ignore[attr-defined]
    app.freshet_agents = {  # type: ignore[attr-defined]
        "process_events": process_events,
        "join_labels": join_labels,
    }
    app.freshet_join = join  # type: ignore[attr-defined]
    return app


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


SERVED_METRICS = {
    "accuracy",
    "accuracy_rolling",
    "log_loss",
    "log_loss_rolling",
    "mae",
    "mae_rolling",
    "rmse",
    "rmse_rolling",
}


async def known_to_producer(app: faust.App, table: Any) -> None:
    """Make the producer fetch the metadata of a table's changelog topic.

    A table with ``use_partitioner`` hashes keys with the producer's metadata, which may predate the
    changelog topic; without this every write to the table fails (the agent crashes on each message).
    """
    try:
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    except faust.exceptions.NotReady:
        return  # no broker (agent tests run in test_context)
    await producer.partitions_for(table.changelog_topic.get_topic_name())


class StateSweep:
    """Walks a table's keys of one partition a chunk at a time, so expiry never blocks the loop for long.

    >>> sweep = StateSweep(4)
    >>> table = {b"u1": b"", b"u2": b"", b"u3": b""}
    >>> sorted(sweep.next_keys(table, partition_for(b"u1", 4), 10))
    [b'u1']
    """

    def __init__(self, n_partitions: int) -> None:
        self.n_partitions = n_partitions
        self._pending: dict[int, list[bytes]] = {}

    def next_keys(self, table: Any, partition: int, n: int) -> list[bytes]:
        if not self._pending.get(partition):
            self._pending = {}
            for key in list(table.keys()):
                self._pending.setdefault(partition_for(key, self.n_partitions), []).append(key)
        keys = self._pending.get(partition, [])
        chunk, self._pending[partition] = keys[:n], keys[n:]
        return chunk


class AttributeCache:
    """Static entity attributes from the online store, cached for ``ttl_s`` (they change rarely).

    >>> import asyncio
    >>> from streams.store import InMemoryOnlineStore
    >>> store = InMemoryOnlineStore()
    >>> store.set_attributes("u1", {"age": 41})
    >>> asyncio.run(AttributeCache(store).get("u1"))
    {'age': 41.0}
    """

    def __init__(self, store: OnlineStore | None, ttl_s: float = 60.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def get(self, entity: str) -> dict[str, Any]:
        if self.store is None:
            return {}
        now = time.monotonic()
        hit = self._cache.get(entity)
        if hit is not None and hit[0] > now:
            return hit[1]
        attrs = await asyncio.get_running_loop().run_in_executor(None, self.store.attributes, entity)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[entity] = (now + self.ttl_s, dict(attrs))
        return dict(attrs)


class TableEntries(MutableMapping[str, dict[str, Any]]):
    """A Faust table of bytes → bytes seen as event id → join entry (JSON), for :class:`LabelJoin`."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> dict[str, Any]:
        value = self.table[key.encode()]
        if value is None:
            raise KeyError(key)
        return orjson.loads(value)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.table.get(key.encode())
        return default if value is None else orjson.loads(value)

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.table[key.encode()] = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        for key in list(self.table.keys()):
            yield key.decode() if isinstance(key, bytes) else str(key)

    def __len__(self) -> int:
        return len(self.table)
