"""The Faust worker: two agents that drive the pure batch steps, plus timers and the version follower.

DESIGN.md decision 8 (batch at a time). Each agent takes a batch of records with
``stream.take_events(FRESHET_BATCH_MAX_EVENTS, within=FRESHET_BATCH_WITHIN_MS)`` and:

1. turns the events into :class:`~streams.core.serve.InRecord` (``[(topic, partition, offset, key, value, ts)]``);
2. calls the pure step (:class:`streams.core.serve.ServeStep` for ``events``, :class:`streams.core.join_batch.JoinStep`
   for ``predictions`` + ``labels``), which returns every message and state write of the batch;
3. sends the batch's messages through the producer and awaits them once (:class:`BatchSender`);
4. only then writes the state, once per key per batch, to the table's memory and its changelog topic
   (:class:`ChangelogWriter`), and awaits that too;
5. returns to ``take_events``, which acknowledges the batch; Faust commits acknowledged offsets.

So a crash never leaves a state (or committed offset) that holds an event whose output did not go out.
The app is built by :func:`create_app` from a :class:`Runtime`, with no module-level globals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from prometheus_client import CollectorRegistry

from models.drift.config import DriftConfig
from models.spec import ModelSlotDef, parse_models
from streams.core.join_batch import JoinOutput, JoinStep
from streams.core.predictor import Predictor
from streams.core.serve import InRecord, OutMessage, ServeOutput, ServeStep
from streams.features import FeatureEngine, parse_features
from streams.records import encode
from streams.runtime.connections import open_store
from streams.runtime.hot_swap import follow_versions
from streams.runtime.metrics import Metrics
from streams.runtime.outage import StoreHeld, holding_store
from streams.runtime.store import OnlineStore, latest_per_entity
from streams.runtime.topics import declare_topics
from streams.settings import Settings
from streams.spec import PipelineSpec

log = logging.getLogger("freshet.worker")

# (topic name, key, value, partition or None for the producer's partitioner)
Wire = tuple[str, bytes | None, bytes | None, int | None]


class Sender(Protocol):
    """Sends a batch of messages and returns once every one is acknowledged (raises if one failed)."""

    async def send_all(self, messages: list[Wire]) -> None: ...


class BatchSender:
    """The batch's sends through Faust's producer (aiokafka underneath), awaited once.

    ``Topic.send`` costs Faust's whole per-message path (~0.1 ms, logging included); the transport
    producer's ``send`` only queues the record in aiokafka's accumulator and returns its future.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send_all(self, messages: list[Wire]) -> None:
        if not messages:
            return
        send = self.app.producer.send
        futures = [await send(topic, key, value, partition, None, None) for topic, key, value, partition in messages]
        await asyncio.gather(*futures)


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
        metrics = Metrics(registry)
        return cls(
            settings=settings,
            spec=spec,
            metrics=metrics,
            engine=FeatureEngine(parse_features(raw_features)),
            slots=slots,
            predictor=Predictor(slots),
            drift=DriftConfig.from_spec(spec),
            store=store if store is not None else holding_store(open_store(settings), metrics),
        )


class ChangelogWriter:
    """Writes a Faust table's keys once per batch: into the table's memory and to its changelog topic.

    The records have exactly the layout Faust's own table writes give (raw key → raw value, ``None`` for
    a delete, the key's partition), so Faust's recovery rebuilds the table from them on restart; only the
    per-write path (~0.16 ms per key through Faust's changelog buffer) is left out.
    """

    def __init__(self, table: Any, sender: Sender) -> None:
        self.table = table
        self.sender = sender

    @property
    def data(self) -> Any:
        """The table's memory (bytes → bytes) as the pure steps read it."""
        return self.table.data

    async def apply(self, writes: Mapping[bytes, tuple[int, bytes | None]]) -> None:
        if not writes:
            return
        data = self.table.data
        topic = self.table.changelog_topic.get_topic_name()
        wire: list[Wire] = []
        for key, (partition, value) in writes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            wire.append((topic, key, value, partition))
        await self.sender.send_all(wire)


def records_of(events: Iterable[Any]) -> list[InRecord]:
    """Faust events → the steps' input records (``[InRecord]``), in consumption order."""
    out = []
    for event in events:
        msg = event.message
        out.append(InRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.timestamp))
    return out


def create_app(rt: Runtime, sender: Sender | None = None) -> faust.App:
    """The worker's Faust app; ``sender`` defaults to :class:`BatchSender` (agent tests pass a recorder)."""
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
        # A dead worker's partitions move to the others after the session timeout (failover time).
        broker_session_timeout=s.group_session_timeout_s,
        broker_heartbeat_interval=max(0.5, s.group_session_timeout_s / 4),
        producer_linger_ms=2,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = declare_topics(app, s)
    out = sender or BatchSender(app)
    m = rt.metrics
    name_of = {name: s.topic(name) for name in ("predictions", "dead-letter", "drift", "examples")}

    def wire(messages: Iterable[OutMessage]) -> list[Wire]:
        return [(name_of[msg.topic], msg.key, msg.value, None) for msg in messages]

    # Per-entity window state; value = 8-byte source offset + FeatureEngine.dumps(state).
    feature_state = ChangelogWriter(
        app.Table("feature-state", key_type=bytes, value_type=bytes, partitions=s.partitions), out
    )
    # Log and wait: predictions wait here for their labels, keyed by event id (partition = the key's
    # partition in both input topics, which share the key).
    label_join = ChangelogWriter(
        app.Table("label-join", key_type=bytes, value_type=bytes, partitions=s.partitions, use_partitioner=True),
        out,
    )
    serve = ServeStep(
        rt.engine,
        rt.predictor,
        rt.spec.event,
        feature_state.data,
        s.partitions,
        feature_drift=rt.drift.feature_monitors(),
        prediction_drift={slot.slot: rt.drift.prediction_monitor(slot.slot) for slot in rt.slots},
    )
    join = JoinStep(
        s.label_ttl_s,
        label_join.data,
        s.partitions,
        {slot.slot: slot.kind for slot in rt.slots},
        predictions_topic=s.topic("predictions"),
        rolling_window=s.rolling_window,
        label_schema=rt.spec.label,
    )
    counters = BoundCounters(m, [slot.slot for slot in rt.slots])
    attribute_cache = AttributeCache(rt.store, ttl_s=60.0)
    batch_max, within_s = s.batch_max_events, s.batch_within_ms / 1000.0

    @app.agent(topics.events)
    async def process_events(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=within_s):
            records = records_of(events)
            attributes = await attribute_cache.get_many(records) if rt.engine.attribute_fields else None
            result = serve.on_batch(records, attributes)
            # Predictions, dead letters and alerts of the whole batch, awaited once; then the state.
            await out.send_all(
                wire(result.predictions)
                + wire(result.dead_letters)
                + [(name_of["drift"], str(a["subject"]).encode(), encode(a), None) for a in result.alerts]
            )
            await feature_state.apply(result.state_writes)
            rt.store_buffer.extend(result.store_rows)
            counters.served(result, time.time())

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
        index_ready = False
        async for events in stream.take_events(batch_max, within=within_s):
            if not index_ready:  # the table has been recovered by now
                join.rebuild_index()
                index_ready = True
            result = join.on_batch(records_of(events))
            await out.send_all(wire(result.examples) + wire(result.dead_letters))
            await label_join.apply(result.state_writes)
            counters.joined(result, join.waiting_predictions)

    @app.timer(interval=1.0)
    async def publish_served_metrics() -> None:
        counters.served_metrics(join.served_snapshot())

    @app.timer(interval=0.05)
    async def flush_online_store() -> None:
        held: int = getattr(rt.store, "pending", 0)  # rows held through an outage are retried
        if rt.store is None or not (rt.store_buffer or held):
            return
        rows, rt.store_buffer = rt.store_buffer, []
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, rt.store.write_many, latest_per_entity((e, v, ts) for e, v, ts, _ in rows)
            )
        except Exception as exc:  # the online store is auxiliary: an outage never stops serving
            if not isinstance(exc, StoreHeld):  # held: waiting to retry (streams/runtime/outage.py)
                m.store_errors.inc()
                log.warning("online store write of %d rows failed: %s", len(rows), exc)
            return
        now = time.time()
        for *_, ingest_ts in rows:
            m.feature_freshness.observe(max(0.0, now - ingest_ts))

    @app.task
    async def follow_model_versions() -> None:
        await follow_versions(rt.settings, rt.slots, rt.predictor, rt.metrics)

    @app.timer(interval=5.0)
    async def count_entities() -> None:
        m.feature_entities.set(len(feature_state.data))

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
    app.freshet_join = join.join  # type: ignore[attr-defined]
    return app


class BoundCounters:
    """The worker's Prometheus children, looked up once (``.labels()`` is a dict lookup under a lock)."""

    def __init__(self, m: Metrics, slots: list[str]) -> None:
        self.m = m
        self.validate = m.events.labels(stage="validate")
        self.features = m.events.labels(stage="features")
        self.predict = m.events.labels(stage="predict")
        self.predictions = {slot: m.predictions.labels(model=slot) for slot in slots}
        self.observe_latency = m.prediction_latency.observe
        self._dead: dict[tuple[str, str], Any] = {}
        self._late: dict[str, Any] = {}
        self._labels: dict[str, Any] = {}
        self._served: dict[tuple[str, str, str], Any] = {}

    def dead_letters(self, reasons: Mapping[tuple[str, str], int]) -> None:
        for (source, reason), n in reasons.items():
            child = self._dead.get((source, reason))
            if child is None:
                child = self._dead[(source, reason)] = self.m.dead_letters.labels(source=source, reason=reason)
            child.inc(n)

    def served(self, out: ServeOutput, now_s: float) -> None:
        """Counts of one sent batch of the events agent (``now_s``: when its sends were acknowledged)."""
        c = out.counts
        self.validate.inc(c.validated)
        self.features.inc(c.featurized)
        self.predict.inc(c.predicted_events)
        for slot, n in c.predictions.items():
            self.predictions[slot].inc(n)
        for msg in out.predictions:
            if msg.ingest_ts is not None:
                self.observe_latency(max(0.0, now_s - msg.ingest_ts))
        self.dead_letters(c.dead_letters)
        for policy, n in c.late.items():
            child = self._late.get(policy)
            if child is None:
                child = self._late[policy] = self.m.late_events.labels(policy=policy)
            child.inc(n)
        if c.expired_states:
            self.m.feature_expired.inc(c.expired_states)
        if c.redelivered:
            self.m.redelivered.inc(c.redelivered)
        if c.reset_states:
            self.m.feature_resets.inc(c.reset_states)
        for alert in out.alerts:
            self.m.record_alert(alert)

    def joined(self, out: JoinOutput, waiting_predictions: int) -> None:
        """Counts and served metrics of one sent batch of the join agent."""
        for outcome, n in out.outcomes.items():
            child = self._labels.get(outcome)
            if child is None:
                child = self._labels[outcome] = self.m.labels.labels(outcome=outcome)
            child.inc(n)
        for delay in out.delays_s:
            self.m.label_delay.observe(max(0.0, delay))
        self.m.pending_predictions.set(waiting_predictions)
        self.dead_letters(out.dead_letter_reasons)

    def served_metrics(self, served: Mapping[str, Mapping[str, float]]) -> None:
        """The join's served metric snapshot (``{slot: {metric: value}}``) on the gauges."""
        for slot, snap in served.items():
            for name, value in snap.items():
                scope = "served_rolling" if name.endswith("_rolling") else "served_cumulative"
                key = (slot, name.removesuffix("_rolling"), scope)
                child = self._served.get(key)
                if child is None:
                    child = self._served[key] = self.m.online_metric.labels(model=slot, metric=key[1], scope=scope)
                child.set(value)


class AttributeCache:
    """Static entity attributes from the online store, cached for ``ttl_s`` (they change rarely).

    Fetched once per batch for the batch's entities that are not cached, in one executor call, so the
    event loop never waits on Redis per event. A store error serves what the cache has (or nothing).

    >>> import asyncio
    >>> from streams.runtime.store import InMemoryOnlineStore
    >>> store = InMemoryOnlineStore()
    >>> store.set_attributes("u1", {"age": 41})
    >>> rec = InRecord("events", 0, 0, b"u1", b'{"entity": "u1"}', 0.0)
    >>> asyncio.run(AttributeCache(store).get_many([rec]))
    {'u1': {'age': 41.0}}
    """

    def __init__(
        self, store: OnlineStore | None, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def get_many(self, records: list[InRecord]) -> dict[str, dict[str, Any]]:
        """Attributes of the entities of ``records`` (their key is the entity id, DESIGN.md)."""
        if self.store is None:
            return {}
        now = self.clock()
        entities = {r.key.decode("utf-8", "replace") for r in records if r.key is not None}
        missing = [e for e in entities if (hit := self._cache.get(e)) is None or hit[0] <= now]
        if missing:
            store = self.store
            try:
                fetched = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: {e: dict(store.attributes(e)) for e in missing}
                )
            except Exception as exc:  # auxiliary store down: serve from the cache, retry next batch
                log.warning("entity attributes unavailable (%s); serving cached ones", exc)
                fetched = {}
            if len(self._cache) > 100_000:
                self._cache.clear()
            for e, attrs in fetched.items():
                self._cache[e] = (now + self.ttl_s, attrs)
        return {e: hit[1] for e in entities if (hit := self._cache.get(e)) is not None}
