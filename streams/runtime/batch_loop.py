"""The worker's hot path: one consumer, a batch at a time, outputs before state before commits.

DESIGN.md decision 8. :class:`BatchLoop` runs in a Faust ``app.task`` (Faust stays the process runtime:
timers, the version follower, signals) with its own grouped aiokafka consumer on ``events``,
``predictions`` and ``labels``. Per batch (``getmany``: what the fetcher holds, up to
``FRESHET_BATCH_MAX_EVENTS`` records; an empty poll waits at most ``FRESHET_BATCH_WITHIN_MS``):

1. the records become :class:`~streams.core.serve.InRecord`; ``events`` go to the pure
   :class:`~streams.core.serve.ServeStep`, ``predictions`` + ``labels`` to the pure
   :class:`~streams.core.join_batch.JoinStep`;
2. every message of the batch (predictions, examples, dead letters, alerts) is sent and awaited once;
3. only then the state writes (one per key per batch) go to memory and the changelog topics, awaited;
4. only then are the batch's offsets marked done; they are committed every ``commit_interval_s`` and when
   the group revokes partitions.

So a stored state holds an event only if its prediction went out, a committed offset passes a label only if
its example went out, and what a crash re-reads since the last commit is recognised by the state (an
event at or below its entity's stored offset is skipped, a label of a joined id is a duplicate). When the
group moves partitions, the batch in flight finishes and is committed before they are let go
(:meth:`BatchLoop.on_revoked`), and the new ones' state is read back from the changelogs before any of
their records is processed (:meth:`BatchLoop.on_assigned`); a batch fetched across a rebalance is dropped
(the consumer seeks back to its first records, so they are fetched again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.core.join_batch import JoinOutput, JoinStep
from streams.core.serve import InRecord, OutMessage, ServeOutput, ServeStep
from streams.records import encode
from streams.runtime.kafka_io import Sender, Wire
from streams.runtime.offsets import Offsets
from streams.runtime.state import ChangelogState, Restorer

log = logging.getLogger("freshet.worker")

__all__ = ["BatchLoop", "Consumer", "LoopTopics", "RetryingSender"]


class Consumer(Protocol):
    """The part of aiokafka's consumer the loop uses (``streams.runtime.testing.ListConsumer`` in tests)."""

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any: ...

    async def commit(self, offsets: Any = None) -> None: ...

    def assignment(self) -> Any: ...

    def seek(self, partition: Any, offset: int) -> None: ...


@dataclass(frozen=True)
class LoopTopics:
    """Full topic names: the inputs, and freshet's output name → full name."""

    events: str
    predictions: str
    labels: str
    outputs: Mapping[str, str]  # "predictions", "dead-letter", "drift", "examples" → full names


class Counters(Protocol):
    def served(self, out: ServeOutput, now_s: float) -> None: ...

    def joined(self, out: JoinOutput, waiting_predictions: int) -> None: ...

    def served_metrics(self, served: Mapping[str, Mapping[str, float]]) -> None: ...


class RetryingSender:
    """Sends a batch until every message is acknowledged: a broker outage pauses the loop, never ends it.

    A retriable error (timeout, connection, leader moving) retries the whole batch with a backoff up to
    ``max_backoff_s`` (messages acknowledged before are sent again, byte for byte, so a duplicate never
    differs). A message the broker refuses for good (too large, ...) is logged, counted in ``refused`` and
    left out; the rest of the batch goes out. Warnings are rate-limited to one per ``log_every_s``.
    """

    def __init__(self, inner: Sender, max_backoff_s: float = 5.0, log_every_s: float = 30.0) -> None:
        self.inner = inner
        self.max_backoff_s = max_backoff_s
        self.log_every_s = log_every_s
        self.retries = 0
        self.refused = 0
        self._logged = 0.0

    async def send_all(self, messages: list[Wire]) -> Any:
        backoff = 0.1
        while True:
            try:
                return await self.inner.send_all(messages)
            except Exception as exc:
                if not _retriable(exc):
                    await self._one_by_one(messages)
                    return None
                self.retries += 1
                self._warn("send of %d messages failed (%r); retrying in %.1f s", len(messages), exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    async def _one_by_one(self, messages: list[Wire]) -> None:
        for message in messages:
            backoff = 0.1
            while True:
                try:
                    await self.inner.send_all([message])
                    break
                except Exception as exc:
                    if _retriable(exc):
                        await asyncio.sleep(backoff)
                        backoff = min(self.max_backoff_s, backoff * 2)
                        continue
                    self.refused += 1
                    log.error("message to %s refused by the broker, left out: %r", message[0], exc)
                    break

    def _warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._logged >= self.log_every_s:
            self._logged = now
            log.warning(msg + " (%d retries so far)", *args, self.retries)


def _retriable(exc: BaseException) -> bool:
    if getattr(exc, "retriable", False):
        return True
    name = type(exc).__name__
    return isinstance(exc, OSError | asyncio.TimeoutError) or name in {
        "KafkaTimeoutError",
        "KafkaConnectionError",
        "NodeNotReadyError",
        "RequestTimedOutError",
        "NotLeaderForPartitionError",
        "LeaderNotAvailableError",
    }


class BatchLoop:
    """Drives the pure steps over batches of a grouped consumer (see the module's docstring)."""

    def __init__(
        self,
        *,
        topics: LoopTopics,
        serve: ServeStep,
        join: JoinStep,
        sender: Sender,
        feature_state: ChangelogState,
        label_join: ChangelogState,
        counters: Counters,
        attributes: Callable[[list[InRecord]], Awaitable[Mapping[str, Mapping[str, Any]]]] | None = None,
        store_rows: list[Any] | None = None,
        on_ready: Callable[[], None] = lambda: None,
        batch_max: int = 2000,
        within_ms: float = 5.0,
        commit_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.serve = serve
        self.join = join
        self.sender = sender
        self.feature_state = feature_state
        self.label_join = label_join
        self.counters = counters
        self.attributes = attributes
        self.store_rows = store_rows if store_rows is not None else []
        self.on_ready = on_ready
        self.batch_max = batch_max
        self.within_ms = within_ms
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.offsets = Offsets()
        self.lock = asyncio.Lock()
        self.generation = 0  # changes at every revoke and assignment: a batch fetched before is dropped
        self.assigned: set[tuple[str, int]] = set()  # partitions whose records the loop processes
        self.held: set[tuple[str, int]] = set()  # partitions whose state the memory holds
        self.read_next: dict[tuple[str, int], int] = {}  # next offset handed to the steps (consumer lag)
        self.consumer: Consumer | None = None
        self.restore: Restorer | None = None  # set before the consumer starts (its first assignment)
        self.batches = 0
        self.dropped_batches = 0
        self._name_of = dict(topics.outputs)

    # -- one batch -------------------------------------------------------------------------------------

    async def on_batch(self, records: list[InRecord]) -> None:
        """The steps over one batch, its messages sent and acknowledged, then its state, then offsets done."""
        events_topic = self.topics.events
        events = [r for r in records if r.topic == events_topic]
        joinable = [r for r in records if r.topic != events_topic]
        messages: list[Wire] = []
        served: ServeOutput | None = None
        joined: JoinOutput | None = None
        if events:
            attrs = await self.attributes(events) if self.attributes is not None else None
            served = self.serve.on_batch(events, attrs)
            messages += self._wire(served.predictions)
            messages += self._wire(served.dead_letters)
            drift = self._name_of["drift"]
            messages += [(drift, str(a["subject"]).encode(), encode(a), None) for a in served.alerts]
        if joinable:
            joined = self.join.on_batch(joinable)
            messages += self._wire(joined.examples)
            messages += self._wire(joined.dead_letters)
        await self.sender.send_all(messages)
        # Only after every output is acknowledged: the state that holds them.
        await asyncio.gather(
            self.feature_state.apply(served.state_writes if served is not None else {}),
            self.label_join.apply(joined.state_writes if joined is not None else {}),
        )
        self.offsets.done((r.topic, r.partition, r.offset) for r in records)
        now = time.time()
        if served is not None:
            self.store_rows.extend(served.store_rows)
            self.counters.served(served, now)
        if joined is not None:
            self.counters.joined(joined, self.join.waiting_predictions)
        self.batches += 1

    def _wire(self, messages: Iterable[OutMessage]) -> list[Wire]:
        name_of = self._name_of
        return [(name_of[m.topic], m.key, m.value, None) for m in messages]

    # -- the loop --------------------------------------------------------------------------------------

    async def run(self, consumer: Consumer, restore: Restorer, *, stop: asyncio.Event | None = None) -> None:
        """Poll, process, commit, until cancelled (or ``stop`` is set); commits what is done on the way out."""
        self.consumer, self.restore = consumer, restore
        last_commit = self.clock()
        within_ms = max(1, int(self.within_ms))
        try:
            while stop is None or not stop.is_set():
                generation = self.generation
                batches = await consumer.getmany(timeout_ms=within_ms, max_records=self.batch_max)
                async with self.lock:
                    if batches:
                        if generation != self.generation or any(
                            (tp.topic, tp.partition) not in self.assigned for tp in batches
                        ):
                            self._fetch_again(consumer, batches)
                        else:
                            await self.on_batch(self._records(batches))
                    if self.clock() - last_commit >= self.commit_interval_s:
                        await self.commit()
                        last_commit = self.clock()
        finally:
            async with self.lock:
                await self.commit()

    def _fetch_again(self, consumer: Consumer, batches: Mapping[Any, list[Any]]) -> None:
        """A batch fetched across a rebalance (or before its partitions' state was restored) is not
        processed: the consumer's position goes back to its first record, so it is fetched again."""
        self.dropped_batches += 1
        current = set(consumer.assignment())
        for tp, records in batches.items():
            if records and tp in current:
                consumer.seek(tp, records[0].offset)

    def _records(self, batches: Mapping[Any, list[Any]]) -> list[InRecord]:
        out = []
        read_next = self.read_next
        for tp, records in batches.items():
            for r in records:
                out.append(InRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0))
            if records:
                read_next[(tp.topic, tp.partition)] = records[-1].offset + 1
        return out

    async def commit(self) -> None:
        """Commit the offsets of done batches (a failure is logged; the state recognises what is re-read)."""
        offsets = self.offsets.take()
        if not offsets or self.consumer is None:
            return
        from aiokafka import TopicPartition

        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except Exception as exc:
            log.warning("commit of %d partitions failed: %r", len(offsets), exc)
            keep = [(t, p, o - 1) for (t, p), o in offsets.items() if (t, p) in self.assigned]
            self.offsets.done(keep)  # tried again with the next commit while still ours

    # -- rebalance -------------------------------------------------------------------------------------

    async def on_revoked(self, revoked: set[Any]) -> None:
        """The batch in flight finishes and is committed; the partitions are not processed until assigned."""
        async with self.lock:
            self.generation += 1
            await self.commit()
            tps = {(tp.topic, tp.partition) for tp in revoked}
            self.offsets.forget(tps)
            self.assigned -= tps
            for tp in tps:
                self.read_next.pop(tp, None)
            # Their state stays in memory until the new assignment says whether they come back.
            log.info("partitions revoked: %s", sorted(tps))

    async def on_assigned(self, assigned: set[Any]) -> None:
        """Restore the state of the assigned partitions from the changelogs before any record of them."""
        async with self.lock:
            self.generation += 1
            tps = {(tp.topic, tp.partition) for tp in assigned}
            events = self.topics.events
            lost = self.held - tps
            self.feature_state.drop({p for t, p in lost if t == events})
            self.label_join.drop({p for t, p in lost if t != events} - {p for t, p in tps if t != events})
            self.held = set()
            if self.restore is None:
                raise RuntimeError("partitions assigned before the loop has a restorer: state would be empty")
            if self.restore is not None:
                await asyncio.gather(
                    self.feature_state.restore({p for t, p in tps if t == events}, self.restore),
                    self.label_join.restore({p for t, p in tps if t != events}, self.restore),
                )
                self.held = set(tps)
            self.assigned = tps
            self.join.rebuild_index()
            log.info("partitions assigned: %s (state restored)", sorted(tps))
            self.on_ready()
