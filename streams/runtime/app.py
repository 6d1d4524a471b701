"""The Faust worker: the batch loop as an ``app.task``, plus timers and the version follower.

DESIGN.md decision 8 (batch at a time). Faust is the process runtime (signals, timers, tasks); the hot
path is :class:`streams.runtime.batch_loop.BatchLoop` with its own grouped aiokafka consumer on
``events``, ``predictions`` and ``labels`` and the aiokafka producer (:mod:`streams.runtime.kafka_io`):
per batch the pure steps (:class:`streams.core.serve.ServeStep`, :class:`streams.core.join_batch.JoinStep`)
return every message and state write; the messages are sent and awaited once, then the state is written
(:class:`streams.runtime.state.ChangelogState`, compacted changelog topics), then the offsets are done and
committed once a second. A rebalance finishes the batch in flight and commits it before partitions go;
the state of assigned partitions is restored from the changelogs before their records are processed.

So a crash never leaves a state (or committed offset) that holds an event whose output did not go out.
The app is built by :func:`create_app` from a :class:`Runtime`, with no module-level globals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.app.base import BootStrategy
from prometheus_client import CollectorRegistry

from models.drift.config import DriftConfig
from models.spec import ModelSlotDef
from streams.core.join_batch import JoinOutput, JoinStep
from streams.core.predictor import Predictor
from streams.core.serve import InRecord, ServeOutput, ServeStep
from streams.features import FeatureEngine
from streams.runtime.batch_loop import BatchLoop, LoopTopics, RetryingSender
from streams.runtime.connections import open_store
from streams.runtime.hot_swap import follow_versions
from streams.runtime.kafka_io import ProducerSender, Sender, Wire, ensure_compacted, grouped_consumer, producer
from streams.runtime.metrics import Metrics
from streams.runtime.outage import StoreHeld, holding_store
from streams.runtime.routing_io import count_routed
from streams.runtime.state import ChangelogState, restore_consumer, restore_from_kafka
from streams.runtime.store import OnlineStore, latest_per_entity
from streams.settings import Settings
from streams.spec import PipelineSpec

log = logging.getLogger("freshet.worker")

__all__ = ["AttributeCache", "BoundCounters", "Runtime", "Sender", "Wire", "changelog_topic", "create_app"]


@dataclass
class Runtime:
    """Everything the loop needs, built once per worker process."""

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
        slots = list(spec.models)
        metrics = Metrics(registry)
        return cls(
            settings=settings,
            spec=spec,
            metrics=metrics,
            engine=FeatureEngine(spec.features),
            slots=slots,
            predictor=Predictor(slots),
            drift=spec.drift,
            store=store if store is not None else holding_store(open_store(settings), metrics),
        )


def changelog_topic(settings: Settings, table: str) -> str:
    """A state table's changelog topic (Faust's naming, ``<app_id>-<table>-changelog``).

    >>> changelog_topic(Settings(app_id="fr"), "feature-state")
    'fr-feature-state-changelog'
    """
    return f"{settings.app_id}-{table}-changelog"


class _Deferred:
    """The producer's sender, set when the loop's task starts (aiokafka clients need a running loop)."""

    def __init__(self) -> None:
        self.target: Sender | None = None

    async def send_all(self, messages: list[Wire]) -> Any:
        if not messages:
            return []
        assert self.target is not None, "the worker's producer is not started"
        return await self.target.send_all(messages)


def build_loop(rt: Runtime, sender: Sender) -> BatchLoop:
    """The batch loop of a runtime over ``sender`` (agent tests pass a recorder and feed it batches)."""
    s = rt.settings
    outputs = {name: s.topic(name) for name in ("predictions", "dead-letter", "drift", "examples")}
    # Per-entity window state; value = 8-byte source offset + FeatureEngine.dumps(state).
    feature_state = ChangelogState(changelog_topic(s, "feature-state"), sender, s.partitions)
    # Log and wait: predictions wait here for their labels, keyed by event id (partition = the key's
    # partition in both input topics, which share the key).
    label_join = ChangelogState(changelog_topic(s, "label-join"), sender, s.partitions)
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
    attribute_cache = AttributeCache(rt.store, ttl_s=60.0)
    return BatchLoop(
        topics=LoopTopics(s.topic("events"), s.topic("predictions"), s.topic("labels"), outputs),
        serve=serve,
        join=join,
        sender=sender,
        feature_state=feature_state,
        label_join=label_join,
        counters=BoundCounters(rt.metrics, [slot.slot for slot in rt.slots]),
        attributes=attribute_cache.get_many if rt.engine.attribute_fields else None,
        store_rows=rt.store_buffer,
        on_ready=lambda: rt.metrics.ready.set(1),
        batch_max=s.batch_max_events,
        within_ms=s.batch_within_ms,
    )


def create_app(rt: Runtime, sender: Sender | None = None) -> faust.App:
    """The worker's Faust app; ``sender`` replaces the producer (agent tests pass a recorder).

    Faust is the process runtime here (start, stop, timers, signals); the hot path is one task running the
    batch loop (streams/runtime/batch_loop.py) with its own consumer and producer (streams/runtime/kafka_io.py).
    What each task and timer does is a function below, named after it.
    """
    s = rt.settings
    datadir = s.cache_dir / "faust" / s.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        topic_partitions=s.partitions,
        web_enabled=False,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
    )
    # Faust's own consumer and producer are not used: the hot path has its own (kafka_io).
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False, enable_kafka_producer=False)
    deferred = _Deferred()
    loop = build_loop(rt, RetryingSender(sender or deferred))
    versions_loaded = asyncio.Event()

    app.task(lambda: run_hot_path(rt, loop, deferred, versions_loaded))
    app.task(lambda: follow_versions(rt.settings, rt.slots, rt.predictor, rt.metrics, loaded=versions_loaded))
    app.timer(interval=1.0, name="publish_served_metrics")(lambda: publish_served_metrics(loop))
    app.timer(interval=0.05, name="flush_online_store")(lambda: flush_online_store(rt))
    app.timer(interval=5.0, name="count_entities")(lambda: count_entities(rt.metrics, loop))
    app.timer(interval=5.0, name="report_lag")(lambda: report_lag(rt.metrics, loop))
    app.freshet_loop = loop  # type: ignore[attr-defined]
    app.freshet_join = loop.join.join  # type: ignore[attr-defined]
    return app


async def run_hot_path(rt: Runtime, loop: BatchLoop, deferred: _Deferred, versions_loaded: asyncio.Event) -> None:
    """The batch loop with its consumer, its producer and a group-less consumer per state changelog for restores."""
    s = rt.settings
    await ensure_compacted(s, [loop.feature_state.topic, loop.label_join.topic])
    prod = producer(s)
    await prod.start()
    deferred.target = ProducerSender(prod)
    restorers = {loop.feature_state.topic: restore_consumer(s), loop.label_join.topic: restore_consumer(s)}
    for restorer in restorers.values():
        await restorer.start()
    # Serve with the champion, never the untrained model, when a version exists (bounded wait).
    try:
        await asyncio.wait_for(versions_loaded.wait(), timeout=30.0)
    except TimeoutError:
        log.warning("model versions not loaded after 30 s; serving what is loaded")
    # Before the consumer starts: its first assignment may come before the loop runs.
    loop.restore = lambda topic, parts, known: restore_from_kafka(restorers[topic], topic, parts, known)
    consumer = grouped_consumer(s, [s.topic("events"), s.topic("predictions"), s.topic("labels")], loop)
    await consumer.start()
    try:
        await loop.run(consumer, loop.restore)
    finally:
        await consumer.stop()  # leaves the group: the others take over at once
        for restorer in restorers.values():
            await restorer.stop()
        await prod.stop()


async def publish_served_metrics(loop: BatchLoop) -> None:
    loop.counters.served_metrics(loop.join.served_snapshot())


async def flush_online_store(rt: Runtime) -> None:
    """The feature rows the loop buffered, newest per entity, to the online store (off the event loop)."""
    held: int = getattr(rt.store, "pending", 0)  # rows held through an outage are retried
    if rt.store is None or not (rt.store_buffer or held):
        return
    rows = rt.store_buffer[:]
    rt.store_buffer.clear()  # the loop appends to this same list
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, rt.store.write_many, latest_per_entity((e, v, ts) for e, v, ts, _ in rows)
        )
    except Exception as exc:  # the online store is auxiliary: an outage never stops serving
        if not isinstance(exc, StoreHeld):  # held: waiting to retry (streams/runtime/outage.py)
            rt.metrics.store_errors.inc()
            log.warning("online store write of %d rows failed: %s", len(rows), exc)
        return
    now = time.time()
    for *_, ingest_ts in rows:
        rt.metrics.feature_freshness.observe(max(0.0, now - ingest_ts))


async def count_entities(m: Metrics, loop: BatchLoop) -> None:
    m.feature_entities.set(len(loop.feature_state.data))


async def report_lag(m: Metrics, loop: BatchLoop) -> None:
    """Consumer lag of the worker's input partitions (end offset - next offset to process)."""
    consumer = loop.consumer
    if consumer is None or not loop.assigned:
        return
    from aiokafka import TopicPartition

    tps = [TopicPartition(t, p) for t, p in sorted(loop.assigned)]
    try:
        ends = await consumer.end_offsets(tps)  # type: ignore[attr-defined]
    except Exception as exc:  # broker away: no figure this time
        log.debug("lag report skipped: %r", exc)
        return
    for tp in tps:
        end = ends.get(tp)
        read = loop.read_next.get((tp.topic, tp.partition))
        if end is not None and read is not None:  # nothing read yet: the committed position is not known here
            m.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, end - read))


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
        if c.routed:
            count_routed(self.m, c.routed)

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
    >>> from streams.runtime.testing import InMemoryOnlineStore
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
