"""The learner process: one ordered consumer of ``examples`` that trains every model slot.

DESIGN.md decision 3: River learners are sequential, so each slot has exactly one learner. Examples are
keyed by slot, so all of a slot's examples sit in one partition, in order. The learner assigns those
partitions by hand (no consumer group: the snapshot's offset is the truth, not a committed offset),
seeks each to the offset after its slot's last snapshot, and for every example:

    example (features logged at prediction time + label)
      → models.learner.Learner.process  (score each model, then learn: test-then-train)
      → new version?  → registry (Redis, signed)  + ``model-versions`` (key: slot)
      → promotion?    → ``model-versions`` + log + metric
      → metrics?      → ``metrics`` topic (key: model) + /metrics gauges
      → drift?        → ``drift`` topic + /metrics

So a crash loses nothing: the restarted learner resumes from the last snapshot and replays from there.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import start_http_server

from models.drift.config import DriftConfig
from models.drift.supervisor import SlotDriftSupervisor
from models.learner import Learner, check_label
from models.registry import ModelMeta, Registry, SnapshotError
from models.spec import ModelSlotDef, parse_models
from streams.connections import open_registry
from streams.metrics import Metrics
from streams.partitions import partition_for
from streams.records import Example, dead_letter, decode, encode
from streams.settings import Settings
from streams.spec import PipelineSpec

log = logging.getLogger("freshet.learn")


def load_slots(settings: Settings, spec: PipelineSpec | None = None) -> tuple[PipelineSpec, list[ModelSlotDef]]:
    spec = spec or PipelineSpec.load(settings.spec_file)
    return spec, parse_models(spec.raw.get("models", []), spec.label.kind)


@dataclass
class LearnerLoop:
    """The I/O around :class:`models.learner.Learner` for every slot of the spec."""

    settings: Settings
    metrics: Metrics
    learners: dict[str, Learner]
    producer: KafkaProducer
    consumer: KafkaConsumer
    registry: Registry
    drift_config: DriftConfig = field(default_factory=lambda: DriftConfig.from_dict(None))
    supervisors: dict[str, SlotDriftSupervisor] = field(default_factory=dict)
    stopping: bool = False
    processed: int = 0
    _last_follow: float = 0.0
    _refused: dict[str, str] = field(default_factory=dict)  # slot -> why its current version was refused
    _last_lag: float = 0.0
    last_example_wall: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None, spec: PipelineSpec | None = None) -> LearnerLoop:
        spec, slots = load_slots(settings, spec)
        registry = open_registry(settings)
        learners = {
            s.slot: Learner.restore(
                registry,
                s,
                rolling_window=settings.rolling_window,
                snapshot_every=settings.snapshot_every,
            )
            for s in slots
        }
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_poll_records=2000,
            fetch_max_wait_ms=100,
        )
        drift = DriftConfig.from_spec(spec)
        loop = cls(settings, metrics or Metrics(), learners, producer, consumer, registry, drift)
        loop._assign()
        return loop

    def _assign(self) -> None:
        topic = self.settings.topic("examples")
        deadline = time.monotonic() + 30
        while not (parts := self.consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist; run `freshet services up` first")
            time.sleep(0.2)
        n = len(parts)
        starts: dict[int, int] = {}
        for slot, learner in self.learners.items():
            p = partition_for(slot, n)
            starts[p] = min(starts.get(p, learner.next_offset), learner.next_offset)
            self.metrics.model_version.labels(model=slot, role="learn").set(learner.version or 0)
        tps = [TopicPartition(topic, p) for p in sorted(starts)]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, starts[tp.partition])
            log.info("examples partition %d: resuming at offset %d", tp.partition, starts[tp.partition])

    def follow_registry(self) -> None:
        """Adopt a version someone else made current (``freshet models promote|rollback``).

        The learner reloads that version's models and goes on from the examples it has reached (the ones
        in between are not learned again: they made the version that was rolled back). It snapshots at
        once, so a crash after this resumes from the adopted models at the right offset. A version that
        does not verify is refused, logged and counted (``bad_snapshot``), as the worker refuses it.
        """
        for slot, learner in list(self.learners.items()):
            offset = learner.offset
            try:
                current = self.registry.current(slot)
                if current is None or current.version == learner.version:
                    continue
                adopted = Learner.restore(
                    self.registry,
                    learner.group.slot_def,
                    rolling_window=self.settings.rolling_window,
                    snapshot_every=self.settings.snapshot_every,
                )
            except SnapshotError as exc:
                # A tampered or unsigned version made current: refuse it as the predictors do and keep
                # learning from our own models (their next snapshot becomes current). Once per version.
                if self._refused.get(slot) != str(exc):
                    self._refused[slot] = str(exc)
                    log.error("slot %s: refusing to adopt the registry's current version: %s", slot, exc)
                    self.metrics.dead_letters.labels(source="model-versions", reason="bad_snapshot").inc()
                continue
            adopted.offset = max(offset, adopted.offset)
            self.learners[slot] = adopted
            self.supervisors.pop(slot, None)
            meta = adopted.snapshot()
            log.warning("slot %s: adopted %s (made current outside the learner) as %s", slot, current.ref, meta.ref)
            # Announced like every version, or predictors keep serving (and naming) the one it copies.
            self._announce(slot, meta)

    def step(self, timeout_s: float = 0.5) -> int:
        """Poll once and process what came; returns how many examples were processed."""
        if time.monotonic() - self._last_follow > 1.0:
            self._last_follow = time.monotonic()
            self.follow_registry()
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        n = 0
        for records in batches.values():
            for record in records:
                self._one(record)
                n += 1
        if n:
            self.last_example_wall = time.monotonic()
            self.producer.flush(timeout=30)
        if time.monotonic() - self._last_lag > 5.0:
            self._last_lag = time.monotonic()
            self._report_lag()
        return n

    def _report_lag(self) -> None:
        tps = list(self.consumer.assignment())
        for tp, end in self.consumer.end_offsets(tps).items():
            lag = max(0, end - self.consumer.position(tp))
            self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def _one(self, record: Any) -> None:
        try:
            example = Example.from_dict(decode(record.value))
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(record, "bad_example", f"not a freshet example: {exc}")
            return
        learner = self.learners.get(example.slot)
        if learner is None:
            return  # a slot this learner does not own (another spec shares the topic)
        out = learner.process(example, record.offset)
        if out.error:
            self._dead_letter(record, "bad_label", out.error)
        if out.skipped:
            return
        self.processed += 1
        m = self.metrics
        m.examples_learned.labels(model=example.slot).inc()
        if out.promotion is not None:
            event = out.promotion.to_dict()
            m.promotions.labels(slot=example.slot, reason=out.promotion.reason).inc()
            log.warning("slot %s: promoted %s over %s", example.slot, out.promotion.promoted, out.promotion.demoted)
            self._send_drift(example.slot, {"v": 1, "kind": "promotion", **event})
        if out.snapshot is not None:
            self._announce(example.slot, out.snapshot)
        self._watch_drift(example, learner, out.predictions, record.offset)
        if out.metrics is not None:
            self._publish_metrics(example, learner, out.metrics)

    def _watch_drift(self, example: Example, learner: Learner, predictions: dict[str, Any], offset: int) -> None:
        """Concept drift per model and label shift; the champion's policy may promote or retrain."""
        slot = example.slot
        sup = self.supervisors.get(slot)
        if sup is None or sup.group is not learner.group:
            sup = self.supervisors[slot] = SlotDriftSupervisor(learner.group, self.drift_config)
        y = check_label(learner.group.kind, example.label)
        result = sup.on_example(example.features, y, predictions, event_ts=example.event_ts, offset=offset)
        for alert in result.alerts:
            d = alert.to_dict()
            self.metrics.record_alert(d)
            self._send_drift(str(d["subject"]), d)
        for action in result.actions:
            self.metrics.drift_actions.labels(slot=slot, action=action.kind).inc()
            log.warning("slot %s: drift policy: %s %s (%s)", slot, action.kind, action.target or "", action.reason)
            self._send_drift(
                slot,
                {
                    "v": 1,
                    "kind": "action",
                    "slot": slot,
                    "action": action.kind,
                    "subject": action.subject,
                    "target": action.target,
                    "n_examples": action.n_examples,
                    "reason": action.reason,
                    "offset": offset,
                    "event_ts": example.event_ts,
                },
            )
        if result.changed_group:
            self._announce(slot, learner.snapshot())

    def _announce(self, slot: str, meta: ModelMeta) -> None:
        """A new version of ``slot`` (already saved and current) → gauges, pruning, ``model-versions``."""
        self.registry.prune(slot, keep=self.settings.keep_versions)
        self.metrics.model_version.labels(model=slot, role="learn").set(meta.version)
        self.metrics.snapshot_bytes.labels(model=slot).set(meta.size_bytes)
        self.producer.send(
            self.settings.topic("model-versions"), key=slot.encode(), value=encode({"v": 1, **meta.to_dict()})
        )

    def _send_drift(self, key: str, value: dict[str, Any]) -> None:
        self.producer.send(self.settings.topic("drift"), key=key.encode(), value=encode(value))

    def _publish_metrics(self, example: Example, learner: Learner, metrics: dict[str, dict[str, float]]) -> None:
        group = learner.group
        for name, values in metrics.items():
            role = "champion" if name == group.champion else "challenger"
            model = f"{example.slot}/{name}"
            for metric, value in values.items():
                if metric in ("champion",) or value is None:
                    continue
                scope = "rolling" if metric.endswith("_rolling") else "cumulative"
                base = metric.removesuffix("_rolling")
                self.metrics.online_metric.labels(model=model, metric=base, scope=scope).set(value)
            snapshot = {
                "v": 1,
                "model": model,
                "slot": example.slot,
                "name": name,
                "role": role,
                "version": learner.version,
                "n": group.examples_learned,
                "offset": learner.offset,
                "event_ts": example.label_ts,
                "ts": time.time(),
                "metrics": values,
            }
            self.producer.send(self.settings.topic("metrics"), key=model.encode(), value=encode(snapshot))

    def _dead_letter(self, record: Any, reason: str, detail: str) -> None:
        key, value = dead_letter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=reason,
            detail=detail,
        )
        self.metrics.dead_letters.labels(source=record.topic, reason=reason).inc()
        self.producer.send(self.settings.topic("dead-letter"), key=key, value=value)

    def close(self) -> None:
        self.producer.flush(timeout=30)
        self.producer.close(timeout=10)
        self.consumer.close()


def run_learner(settings: Settings, metrics_port: int | None = None, max_idle_s: float = 0.0) -> None:
    """Run until SIGTERM/SIGINT (or ``max_idle_s`` without examples); /metrics on the given port."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = Metrics()
    port = metrics_port if metrics_port is not None else settings.metrics_port + 1
    start_http_server(port, addr=settings.metrics_host, registry=metrics.registry)
    loop = LearnerLoop.build(settings, metrics)

    def stop(*_: Any) -> None:
        loop.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not loop.stopping:
            loop.step()
            if max_idle_s and time.monotonic() - loop.last_example_wall > max_idle_s:
                break
    finally:
        loop.close()
