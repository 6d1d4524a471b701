"""The learner process: one ordered consumer of ``examples`` that trains every model slot.

DESIGN.md decision 3: River learners are sequential, so each slot has exactly one learner. Examples are
keyed by slot, so all of a slot's examples sit in one partition, in order. The learner assigns those
partitions by hand (no consumer group: the snapshot's offset is the truth, not a committed offset),
seeks each to the offset after its slot's last snapshot, and works a batch at a time (DESIGN.md
decision 8): a pure step over the polled batch, then the batch's I/O::

    batch of examples (features logged at prediction time + label), in offset order per slot
      → per example: decode → models.learner.Learner.learn_one (score each model, then learn:
        test-then-train; the learner's drift supervision) → served scorer (what users got) → a snapshot due here?
        (pickled at the example: the last count boundary of the batch, a promotion, a drift action)
      → then, once per batch: snapshots → registry (signed, with the offset) and their champion records;
        a fresh champion record if one is due (models.publication) → registry; every message of the batch
        (``model-versions``, ``drift``, ``dead-letter``, ``metrics``) sent, one flush

Examples are learned in the order labels arrive (the join emits an example when its label comes), not in
event order. A crash loses nothing: the restarted learner resumes from the last snapshot and replays from
its offset; champion records are for serving only and never resumed from.
"""

from __future__ import annotations

import base64
import logging
import math
import pickle
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import start_http_server

from models.drift.config import DriftConfig
from models.evaluation import OnlineScorer, align_proba
from models.learner import Capture, Learner, LearnOutput
from models.publication import PublicationSchedule
from models.registry import ModelMeta, Registry, SnapshotError
from models.router import serving_model
from models.spec import ModelSlotDef
from streams.core.partitions import partition_for
from streams.core.validate import example_problem, label_problem
from streams.errors import ServiceMissing
from streams.records import Example, dead_letter_of, decode, encode
from streams.runtime import log_limit
from streams.runtime.announce import position_announcement, record_announcement
from streams.runtime.connections import open_registry
from streams.runtime.metrics import Metrics
from streams.runtime.outage import Backoff, store_gauge, unreachable
from streams.runtime.routing_io import announce_decisions, publish_arm_metrics, start_requested_canary
from streams.settings import Settings
from streams.spec import LabelSchema, PipelineSpec

log = logging.getLogger("freshet.learn")


def load_slots(settings: Settings, spec: PipelineSpec | None = None) -> tuple[PipelineSpec, list[ModelSlotDef]]:
    spec = spec or PipelineSpec.load(settings.spec_file)
    return spec, list(spec.models)



# The served scorer keeps the cheap metrics: it runs on every example, beside the models' own scorers.
SERVED_METRICS = {"classification": ("accuracy", "log_loss"), "regression": ("mae", "rmse")}
_KEEP_PUBLISHED = 4096  # versions remembered per slot to tell how stale a served prediction's model was


def _version_of(label: str | None) -> int | None:
    """The version in a ``name@version`` label, or None."""
    if not label or "@" not in label:
        return None
    try:
        return int(label.rsplit("@", 1)[1])
    except ValueError:
        return None


@dataclass
class SlotIO:
    """The learner process's bookkeeping for one slot: publication schedule, served metrics, bound gauges."""

    slot: str
    schedule: PublicationSchedule
    served: OnlineScorer
    learned_counter: Any  # freshet_examples_learned_total{model=slot}, bound once
    last_record: ModelMeta | None = None
    last_position_ts: float = -math.inf
    last_label_ts: float | None = None
    metrics_dirty: bool = False
    plan_dirty: bool = False  # the routing plan changed: publish a record now (models.router)
    published: dict[int, int] = field(default_factory=dict)  # version -> examples learned in it
    staleness_sum: float = 0.0
    staleness_n: int = 0
    staleness_max: int = 0
    by_version: dict[str, list[float]] = field(default_factory=dict)  # since the last metrics message

    def remember(self, meta: ModelMeta) -> None:
        self.last_record = meta
        self.published[meta.version] = meta.examples_learned
        while len(self.published) > _KEEP_PUBLISHED:
            del self.published[next(iter(self.published))]

    def score_served(self, kind: str, example: Example, learned_before: int) -> None:
        """What the user got for this example: the served prediction against the label, and its staleness."""
        y_pred: Any = example.served_prediction
        if y_pred is None:
            return
        y: Any = example.label
        if kind == "regression":
            y, y_pred = float(y), float(y_pred)
        proba = example.served_probabilities or None
        self.served.update(y, y_pred, align_proba(proba, y) if proba else None)
        label = example.served_model or "?"
        tally = self.by_version.get(label)
        if tally is None:
            tally = self.by_version[label] = [0.0, 0.0]
        tally[0] += 1
        tally[1] += abs(y - y_pred) if kind == "regression" else float(y == y_pred)
        version = _version_of(example.served_model)
        behind = None if version is None else self.published.get(version)
        if version == 0:
            behind = 0
        if behind is not None:
            lag = max(0, learned_before - behind)
            self.staleness_sum += lag
            self.staleness_n += 1
            self.staleness_max = max(self.staleness_max, lag)


@dataclass
class Batch:
    """What one poll produced, for the I/O half of the step."""

    n: int = 0
    sends: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)  # (topic, key, value)
    captures: list[tuple[str, Capture, bytes]] = field(default_factory=list)  # (slot, group, champion pickle)
    learned: Counter[str] = field(default_factory=Counter)
    dead_letters: list[tuple[bytes | None, bytes, str, str]] = field(default_factory=list)  # key, value, source, reason


@dataclass
class LearnerLoop:
    """The I/O around :class:`models.learner.Learner` for every slot of the spec, a batch at a time."""

    settings: Settings
    metrics: Metrics
    learners: dict[str, Learner]
    producer: KafkaProducer
    consumer: KafkaConsumer
    registry: Registry
    drift_config: DriftConfig = field(default_factory=lambda: DriftConfig.from_dict(None))
    stopping: bool = False
    processed: int = 0
    _last_follow: float = 0.0
    _refused: dict[str, str] = field(default_factory=dict)  # slot -> why its current version was refused
    _requests: dict[str, float] = field(default_factory=dict)  # slot -> ts of the last canary request taken
    _last_lag: float = 0.0
    _last_metrics: float = field(default_factory=time.monotonic)
    _io: dict[str, SlotIO] = field(default_factory=dict)
    last_example_wall: float = field(default_factory=time.monotonic)
    # Registry (Redis) outages: snapshots not yet written, newest per slot, retried with backoff.
    registry_backoff: Backoff = field(default_factory=Backoff)
    label_schema: LabelSchema | None = None  # the spec's [label]: examples' labels are checked against it
    _held: dict[str, tuple[Capture, bytes]] = field(default_factory=dict)
    _unsent: list[tuple[str, bytes | None, bytes, Any]] = field(default_factory=list)  # broker outage

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
                drift=spec.drift,
            )
            for s in slots
        }
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024,
            max_block_ms=5000,  # a broker outage: messages are held and sent at a later step (_send_all)
        )
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_poll_records=2000,
            fetch_max_wait_ms=100,
            # Bigger fetches than the default 1 MiB per partition: a preloaded topic is read in fewer rounds.
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        loop = cls(settings, metrics or Metrics(), learners, producer, consumer, registry, spec.drift,
                   label_schema=spec.label)
        loop._assign()
        return loop

    def __post_init__(self) -> None:
        self.registry_backoff.on_change = store_gauge(self.metrics, "registry")
        for slot, learner in self.learners.items():
            self._io[slot] = self._slot_io(slot, learner)

    def _slot_io(self, slot: str, learner: Learner) -> SlotIO:
        s = self.settings
        group = learner.group
        io = SlotIO(
            slot=slot,
            schedule=PublicationSchedule(
                every_s=s.publish_every_s,
                snapshot_every=s.snapshot_every,
                early=s.publish_early,
                cost_factor=s.publish_cost_factor,
            ),
            served=OnlineScorer(group.kind, s.rolling_window, group.slot_def.positive, only=SERVED_METRICS[group.kind]),
            learned_counter=self.metrics.examples_learned.labels(model=slot),
        )
        # A resumed slot is served from its record (or snapshot) already: nothing new to publish yet.
        io.schedule.last_examples = group.examples_learned
        io.schedule.published(group.examples_learned, time.monotonic(), 0.0)
        return io

    def _assign(self) -> None:
        topic = self.settings.topic("examples")
        deadline = time.monotonic() + 30
        while not (parts := self.consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise ServiceMissing(f"topic {topic} does not exist; run `freshet services up` first")
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
                self._canary_request(slot, learner)
                current = self.registry.current(slot)
                if current is None or current.version == learner.version:
                    continue
                adopted = Learner.restore(
                    self.registry,
                    learner.group.slot_def,
                    rolling_window=self.settings.rolling_window,
                    snapshot_every=self.settings.snapshot_every,
                    drift=self.drift_config,
                )
            except Exception as exc:
                if unreachable(exc):
                    raise  # Redis down: the step's backoff deals with it
                # A tampered or unsigned version made current (SnapshotError), or one that verifies but does not
                # load: refuse it as the predictors do and keep learning from our own models (their next snapshot
                # becomes current). Logged and counted once per reason.
                why = str(exc) if isinstance(exc, SnapshotError) else f"the version does not load: {exc!r}"[:300]
                if self._refused.get(slot) != why:
                    self._refused[slot] = why
                    log.error("slot %s: refusing to adopt the registry's current version: %s", slot, why)
                    self.metrics.dead_letters.labels(source="model-versions", reason="bad_snapshot").inc()
                continue
            adopted.offset = max(offset, adopted.offset)
            self.learners[slot] = adopted
            batch = Batch()
            batch.captures.append((slot, adopted.capture(), self._champion_blob(adopted)))
            meta = self._write(batch)[0]
            log.warning("slot %s: adopted %s (made current outside the learner) as %s", slot, current.ref, meta.ref)

    def _canary_request(self, slot: str, learner: Learner) -> None:
        """A version ``freshet models promote`` sent to canary (routing_io): start it and snapshot now."""
        taken = start_requested_canary(self.registry, learner.group, self._requests.get(slot, 0.0))
        if taken is None:
            return
        self._requests[slot], decisions = taken
        batch = Batch()
        announce_decisions(self.metrics, lambda t, k, v: self._send(batch, t, k, v), slot, decisions)
        batch.captures.append((slot, learner.capture(), self._champion_blob(learner)))
        self._write(batch)

    # -- the step: poll, learn the batch (pure), then the batch's I/O ---------------------------------

    def step(self, timeout_s: float = 0.5) -> int:
        """Poll once, learn what came, publish what is due; returns how many examples were processed."""
        now = time.monotonic()
        if now - self._last_follow > 1.0 and self.registry_backoff.ready():
            self._last_follow = now
            try:
                self.follow_registry()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._registry_failed(exc)
        # Wait no longer than until a slot with unpublished examples is due a record by time.
        pending = [
            io.schedule.next_due_in(now)
            for slot, io in self._io.items()
            if self.learners[slot].group.examples_learned != io.schedule.last_examples
        ]
        wait_s = min([timeout_s, *pending])
        batches = self.consumer.poll(timeout_ms=int(wait_s * 1000))
        records = [record for part in batches.values() for record in part]
        batch = self.learn_batch(records)
        if batch.n:
            self.last_example_wall = time.monotonic()
        # Caught up (nothing more to read): publish what was learned now, as the cost allows. In a live
        # stream that is after every example or few; in a backlog, records go out by time.
        self._write(batch, idle=not records or self._caught_up())
        if time.monotonic() - self._last_lag > 5.0:
            self._last_lag = time.monotonic()
            self._report_lag()
        return batch.n

    def learn_batch(self, records: list[Any]) -> Batch:
        """The pure half of the step: decode, check, test-then-train, served score, drift; no I/O.

        Snapshots are pickled here, where they fall: at a count boundary only when no later boundary of
        the same slot can fall in this batch (the later one supersedes it), at every promotion and drift
        action (those are announced at once).
        """
        batch = Batch()
        remaining = Counter(record.key for record in records)
        for record in records:
            remaining[record.key] -= 1
            try:
                example = Example.from_dict(decode(record.value))
            except (ValueError, KeyError, TypeError) as exc:
                self._dead_letter(batch, record, "bad_example", f"not a freshet example: {exc}")
                continue
            slot = example.slot
            learner = self.learners.get(slot)
            if learner is None:
                continue  # a slot this learner does not own (another spec shares the topic)
            if record.offset > learner.offset and example.slot == learner.group.slot:
                # Anyone may write to ``examples``: the join's checks again, so a bad one is no poison pill.
                if bad := example_problem(example.features):
                    learner.offset = record.offset
                    self._dead_letter(batch, record, "bad_example", bad)
                    continue
                if self.label_schema is not None and (bad := label_problem(example.label, self.label_schema)):
                    learner.offset = record.offset
                    self._dead_letter(batch, record, "bad_label", bad)
                    continue
            learned_before = learner.group.examples_learned
            try:
                out = learner.learn_one(example, record.offset)
            except Exception as exc:  # a model that cannot take these features: refused, never retried
                learner.offset = max(learner.offset, record.offset)
                log.error("slot %s: example at offset %d not learned: %r", slot, record.offset, exc)
                self._dead_letter(batch, record, "bad_example", f"the models could not learn it: {exc!r}"[:500])
                continue
            if out.error:
                self._dead_letter(batch, record, "bad_label", out.error)
            if out.skipped:
                continue
            batch.n += 1
            batch.learned[slot] += 1
            io = self._io[slot]
            io.score_served(learner.group.kind, example, learned_before)
            io.last_label_ts = example.label_ts
            io.metrics_dirty = True
            self._publish_learned(batch, slot, example, out)
            if out.decisions:
                announce_decisions(self.metrics, lambda t, k, v: self._send(batch, t, k, v), slot, out.decisions)
            io.plan_dirty = io.plan_dirty or out.plan_changed
            if out.group_changed or (out.snapshot_due and remaining[record.key] < learner.snapshot_every):
                batch.captures.append((slot, learner.capture(), self._champion_blob(learner)))
        self.processed += batch.n
        return batch

    @staticmethod
    def _champion_blob(learner: Learner) -> bytes:
        # The champion alone, or for a routed slot the arms it serves and the plan (models.router.ArmsBundle).
        return pickle.dumps(serving_model(learner.group), protocol=pickle.HIGHEST_PROTOCOL)

    def _write(self, batch: Batch, idle: bool = False, final: bool = False) -> list[ModelMeta]:
        """The I/O half: snapshots and champion records to the registry, then every message, one flush."""
        now, wall = time.monotonic(), time.time()
        written: list[ModelMeta] = []
        captures = [(slot, *held) for slot, held in self._held.items()] + batch.captures
        self._held = {}
        if captures and not self.registry_backoff.ready():
            self._hold(captures)
            captures = []
        for i, (slot, capture, champion_blob) in enumerate(captures):
            try:
                written.append(self._commit(batch, slot, capture, champion_blob, now, wall))
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._registry_failed(exc)
                self._hold(captures[i:])
                break
        for slot, n in batch.learned.items():
            self._io[slot].learned_counter.inc(n)
        if self.registry_backoff.up:
            try:
                self._publish_records(batch, now, wall, idle, final)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._registry_failed(exc)
        if final or (idle and any(io.metrics_dirty for io in self._io.values())) or (
            now - self._last_metrics >= self.settings.metrics_every_s
        ):
            self._last_metrics = now
            for io in self._io.values():
                if io.metrics_dirty:
                    self._publish_metrics(batch, io)
        self._send_all(batch)
        return written

    def _commit(self, batch: Batch, slot: str, capture: Capture, champion_blob: bytes, now: float,
                wall: float) -> ModelMeta:
        """One snapshot to the registry with its champion record, made current, announced."""
        learner, io = self.learners[slot], self._io[slot]
        # The cost a big model's schedule is paced by: this thread's CPU time (pickling, signing, encoding),
        # not wall time, which waits on Redis and on every other process of a busy machine.
        started = time.thread_time()
        snap = learner.commit(capture, make_current=False)
        # The record first, then the pointer: a worker that sees the new pointer finds its record.
        record = self.registry.publish(
            slot, champion_blob, version=snap.version, base=snap.version,
            examples_learned=snap.examples_learned, offset=snap.offset, champion=capture.champion,
            created_ts=wall,
        )
        self.registry.store.set_current(slot, snap.version)
        self.registry.prune(slot, keep=self.settings.keep_versions)
        self.metrics.model_version.labels(model=slot, role="learn").set(snap.version)
        self.metrics.snapshot_bytes.labels(model=slot).set(snap.size_bytes)
        io.schedule.published(capture.examples_learned, now, time.thread_time() - started)
        io.plan_dirty = False
        self._announce(batch, slot, record, snapshot=True, blob=champion_blob)
        self.registry_backoff.succeeded()
        return snap

    def _publish_records(self, batch: Batch, now: float, wall: float, idle: bool, final: bool) -> None:
        """Champion records that are due (by time, when caught up, or early), or the learner's position."""
        for slot, io in self._io.items():
            learner = self.learners[slot]
            group = learner.group
            caught_up = (idle and self.settings.publish_when_caught_up) or final
            if io.plan_dirty or io.schedule.due(group.examples_learned, now, idle=caught_up):
                io.plan_dirty = False
                started = time.thread_time()
                blob = self._champion_blob(learner)
                record = self.registry.publish(
                    slot, blob, base=learner.version,
                    examples_learned=group.examples_learned, offset=learner.offset, champion=group.champion,
                    created_ts=wall,
                )
                io.schedule.published(group.examples_learned, now, time.thread_time() - started)
                self._announce(batch, slot, record, snapshot=False, blob=blob)
            elif (
                group.examples_learned != io.schedule.last_examples
                and io.schedule.every_s > 0
                and now - max(io.last_position_ts, io.schedule.last_ts) >= io.schedule.every_s
            ):
                # Held back (a big model): say how far the learner is, so workers can tell their staleness.
                io.last_position_ts = now
                self._send(batch, "model-versions", slot, position_announcement(
                    slot, version=io.last_record.version if io.last_record else learner.version or 0,
                    examples_learned=group.examples_learned, offset=learner.offset, created_ts=wall,
                ))

    def _hold(self, captures: list[tuple[str, Capture, bytes]]) -> None:
        """Keep the newest unwritten snapshot of each slot for the next try (it supersedes older ones)."""
        for slot, capture, blob in captures:
            self._held[slot] = (capture, blob)

    def _registry_failed(self, exc: BaseException) -> None:
        delay = self.registry_backoff.failed()
        log.warning("model registry unreachable (%s): learning goes on, %d snapshot(s) held, retry in %g s",
                    exc, len(self._held), delay)

    def _send_all(self, batch: Batch) -> None:
        """Every message of the batch, and those a broker outage held back; dead letters are counted when
        the broker acknowledges them. A broker outage is ridden out: the producer retries (for
        ``delivery_timeout_ms``), and what it cannot take now is sent at the next step."""
        out: list[tuple[str, bytes | None, bytes, Any]] = self._unsent
        self._unsent = []
        out += [(topic, key, value, None) for topic, key, value in batch.sends]
        for key, value, source, reason in batch.dead_letters:
            out.append(("dead-letter", key, value, self.metrics.dead_letters.labels(source=source, reason=reason)))
        for i, (topic, key, value, counter) in enumerate(out):
            try:
                future = self.producer.send(self.settings.topic(topic), key=key, value=value)
            except Exception as exc:  # no metadata within max_block_ms (broker down): try again next step
                log.warning("broker unreachable, %d messages held for the next try: %s", len(out) - i, exc)
                self._unsent = out[i:][-100_000:]
                break
            if counter is not None:
                future.add_callback(lambda _meta, c=counter: c.inc())
        if out:
            try:
                self.producer.flush(timeout=30)
            except Exception as exc:  # KafkaTimeoutError: still queued in the producer, which keeps retrying
                log.warning("broker slow or unreachable, messages still queued in the producer: %s", exc)

    def _snapshot_examples(self, slot: str) -> int:
        """Examples learned in the slot's last snapshot (-1: none)."""
        version = self.learners[slot].version
        if version is None:
            return -1 if self.learners[slot].group.examples_learned else 0
        return self.registry.meta(slot, version).examples_learned

    def _caught_up(self) -> bool:
        """Whether every assigned partition has been read to its high watermark (known from the last fetch)."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None or self.consumer.position(tp) < highwater:
                return False
        return True

    def _report_lag(self) -> None:
        tps = list(self.consumer.assignment())
        try:
            ends = self.consumer.end_offsets(tps, timeout_ms=2000)
        except Exception as exc:  # broker unreachable: no lag figure this time, never an exit
            log.warning("consumer lag unknown (broker unreachable?): %s", exc)
            return
        for tp, end in ends.items():
            lag = max(0, end - self.consumer.position(tp))
            self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def _publish_learned(self, batch: Batch, slot: str, example: Example, out: LearnOutput) -> None:
        """What the learner decided at this example, on ``drift``: its promotion, alerts and drift actions."""
        if out.promotion is not None:
            self.metrics.promotions.labels(slot=slot, reason=out.promotion.reason).inc()
            log.warning("slot %s: promoted %s over %s", slot, out.promotion.promoted, out.promotion.demoted)
            self._send(batch, "drift", slot, {"v": 1, "kind": "promotion", **out.promotion.to_dict()})
        for alert in out.alerts:
            d = alert.to_dict()
            self.metrics.record_alert(d)
            self._send(batch, "drift", str(d["subject"]), d)
        for action in out.actions:
            self.metrics.drift_actions.labels(slot=slot, action=action.kind).inc()
            log.warning("slot %s: drift policy: %s %s (%s)", slot, action.kind, action.target or "", action.reason)
            self._send(batch, "drift", slot, {
                "v": 1, "kind": "action", "slot": slot, "action": action.kind, "subject": action.subject,
                "target": action.target, "n_examples": action.n_examples, "reason": action.reason,
                "offset": out.offset, "event_ts": example.event_ts,
            })

    def _announce(self, batch: Batch, slot: str, record: ModelMeta, snapshot: bool, blob: bytes) -> None:
        """A champion record was published → remembered, ``model-versions`` (key: slot).

        A record up to ``inline_record_max_bytes`` travels in the announcement (``blob_b64``): workers swap it
        in from there, without reading Redis.
        """
        self._io[slot].remember(record)
        inline = base64.b64encode(blob).decode("ascii") if len(blob) <= self.settings.inline_record_max_bytes else None
        self._send(batch, "model-versions", slot, record_announcement(record, snapshot=snapshot, blob_b64=inline))

    def _send(self, batch: Batch, topic: str, key: str, value: dict[str, Any]) -> None:
        batch.sends.append((topic, key.encode(), encode(value)))

    def _publish_metrics(self, batch: Batch, io: SlotIO) -> None:
        """The test-then-train metrics of every model of the slot, and the served ones, now."""
        io.metrics_dirty = False
        learner = self.learners[io.slot]
        group = learner.group
        version = io.last_record.version if io.last_record else learner.version
        base = {
            "v": 1, "slot": io.slot, "version": version, "n": group.examples_learned, "offset": learner.offset,
            "event_ts": io.last_label_ts, "ts": time.time(),
        }
        for name, values in group.metrics().items():
            role = "champion" if name == group.champion else "challenger"
            model = f"{io.slot}/{name}"
            for metric, value in values.items():
                if metric in ("champion",) or value is None:
                    continue
                scope = "rolling" if metric.endswith("_rolling") else "cumulative"
                self.metrics.online_metric.labels(model=model, metric=metric.removesuffix("_rolling"),
                                                  scope=scope).set(value)
            self._send(batch, "metrics", model, {**base, "model": model, "name": name, "role": role,
                                                  "metrics": values})
        # What users got: the served predictions (from the joined labels) scored against the labels.
        served = io.served.snapshot()
        if io.staleness_n:
            served["staleness_examples_mean"] = io.staleness_sum / io.staleness_n
            served["staleness_examples_max"] = float(io.staleness_max)
        model = f"{io.slot}/served"
        for metric, value in served.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if metric.startswith("staleness_"):
                continue  # not a score: on the metrics topic here, on /metrics as freshet_served_model_staleness_*
            scope = "served_rolling" if metric.endswith("_rolling") else "served_cumulative"
            self.metrics.online_metric.labels(model=model, metric=metric.removesuffix("_rolling"),
                                              scope=scope).set(value)
        key = "mae" if group.kind == "regression" else "accuracy"
        by_version = {label: {"n": t[0], key: t[1] / t[0]} for label, t in io.by_version.items() if t[0]}
        io.by_version = {}
        self._send(batch, "metrics", model, {**base, "model": model, "name": "served", "role": "served",
                                              "metrics": served, "by_version": by_version})
        if group.router is not None:
            publish_arm_metrics(self.metrics, lambda t, k, v: self._send(batch, t, k, v), group.router, base)

    def _dead_letter(self, batch: Batch, record: Any, reason: str, detail: str) -> None:
        key, value = dead_letter_of(record, reason, detail, time.time())
        batch.dead_letters.append((key, value, record.topic, reason))  # counted when acknowledged

    def close(self) -> None:
        """Snapshot what was learned since the last snapshot, publish the last record and metrics, close.

        (A SIGKILL skips this: the next learner resumes from the last snapshot and learns the rest again.)
        """
        try:
            batch = Batch()
            for slot, learner in self.learners.items():
                try:
                    snapshotted = self._snapshot_examples(slot)
                except Exception as exc:
                    if not unreachable(exc):
                        raise
                    snapshotted = -2  # registry down: try to snapshot anyway
                if learner.group.examples_learned != snapshotted:
                    batch.captures.append((slot, learner.capture(), self._champion_blob(learner)))
            self._write(batch, final=True)
        finally:
            self.producer.flush(timeout=30)
            self.producer.close(timeout=10)
            self.consumer.close()


def run_learner(settings: Settings, metrics_port: int | None = None, max_idle_s: float = 0.0) -> None:
    """Run until SIGTERM/SIGINT (or ``max_idle_s`` without examples); /metrics on the given port."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = Metrics()
    log_limit.install(on_suppressed=metrics.log_suppressed.inc)
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
