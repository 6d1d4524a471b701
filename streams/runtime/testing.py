"""Test doubles shipped with freshet, all in this one module (for tests only; never used in production).

* :class:`FixedClock` — a :data:`models.clock.Clock` that moves only when told to;
* :class:`InMemoryOnlineStore` — the online store's API over a dict, TTLs on an injected clock;
* :class:`InMemoryRegistryStore` — the model registry's storage over a dict (defined in ``models.registry``,
  which imports nothing from ``streams``; re-exported here);
* :class:`RecordingSender`, :class:`ListConsumer`, :class:`MemoryChangelog`, :class:`FakeRecord` — the worker's
  Kafka I/O: a recording topic, a consumer over lists, changelogs in memory.

>>> store = InMemoryOnlineStore(ttl_s=60, clock=FixedClock(1000.0))
>>> store.write_many([("user-1", {"x1_mean_60s": 0.5, "n_60s": None}, 1700000000.25)])
1
>>> store.get("user-1")
{'x1_mean_60s': 0.5, 'n_60s': None, '_as_of_s': 1700000000.25}
>>> store.write_many([("user-1", {"x1_mean_60s": 9.0, "n_60s": 1.0}, 1699999999.0)])   # older: ignored
0
>>> store.clock.advance(61); store.get("user-1") is None
True

>>> import asyncio
>>> sender = RecordingSender()
>>> asyncio.run(sender.send_all([("t-predictions", b"e1", b"{}", None)]))
>>> sender.values("t-predictions")
[b'{}']
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.clock import Clock, system_clock
from models.registry import InMemoryRegistryStore as InMemoryRegistryStore  # re-exported: the one place
from streams.runtime.kafka_io import Wire
from streams.runtime.store import AS_OF, FeatureRow, check_ttl, decode_attribute, decode_value, encode_value


class FixedClock:
    """A clock (``clock()`` gives epoch seconds) that only moves when told to.

    >>> c = FixedClock(10.0); c.advance(2.5); c()
    12.5
    """

    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = float(t_s)

    def __call__(self) -> float:
        return self.t_s

    def advance(self, seconds: float) -> None:
        self.t_s += seconds


class InMemoryOnlineStore:
    """The online store's API over a dict, with TTLs on an injected clock. For unit tests only."""

    def __init__(self, ttl_s: float | None = 86400.0, clock: Clock = system_clock) -> None:
        self.ttl_s = check_ttl(ttl_s)
        self.clock = clock
        self._vectors: dict[str, tuple[dict[str, float | None], float, float | None]] = {}
        self._attributes: dict[str, dict[str, float | str]] = {}

    def write_many(self, rows: Iterable[FeatureRow]) -> int:
        written = 0
        now = self.clock()
        for entity, values, as_of_s in rows:
            current = self._live(entity, now)
            if current is not None and current[1] > as_of_s:
                continue
            expires = None if self.ttl_s is None else now + self.ttl_s
            # Round-trip through the stored text, as Redis does.
            stored = {k: decode_value(encode_value(v)) for k, v in values.items()}
            self._vectors[entity] = (stored, float(as_of_s), expires)
            written += 1
        return written

    def _live(self, entity: str, now: float) -> tuple[dict[str, float | None], float, float | None] | None:
        item = self._vectors.get(entity)
        if item is not None and item[2] is not None and now >= item[2]:
            del self._vectors[entity]
            return None
        return item

    def get(self, entity: str) -> dict[str, float | None] | None:
        item = self._live(entity, self.clock())
        if item is None:
            return None
        return {**item[0], AS_OF: item[1]}

    def get_many(self, entities: Iterable[str]) -> dict[str, dict[str, float | None] | None]:
        return {e: self.get(e) for e in entities}

    def attributes(self, entity: str) -> dict[str, float | str]:
        return {k: decode_attribute(str(v)) for k, v in self._attributes.get(entity, {}).items()}

    def set_attributes(self, entity: str, attributes: Mapping[str, float | str]) -> None:
        self._attributes.setdefault(entity, {}).update(attributes)




class RecordingSender:
    """A :class:`streams.runtime.kafka_io.Sender` that keeps every message instead of sending it.

    ``log`` (shared with a :class:`ListConsumer`) records the order of sends and commits.
    """

    def __init__(self, log: list[str] | None = None) -> None:
        self.sent: list[Wire] = []
        self.log = log if log is not None else []

    async def send_all(self, messages: list[Wire]) -> None:
        self.sent.extend(messages)
        self.log.extend(f"send {topic}" for topic, *_ in messages)

    def values(self, topic: str) -> list[bytes | None]:
        """The values sent to ``topic`` (its full name), in order."""
        return [value for name, _, value, _ in self.sent if name == topic]


@dataclass(frozen=True)
class FakeRecord:
    """What aiokafka's ``ConsumerRecord`` carries for the loop (timestamp in ms)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


@dataclass(frozen=True)
class FakeTopicPartition:
    topic: str
    partition: int


class ListConsumer:
    """Stands in for the grouped aiokafka consumer: hands out the given batches, then stops the loop.

    Each batch is a list of :class:`FakeRecord`; commits are kept in ``commits`` and written to ``log``,
    seeks in ``seeks``. Its ``assigned`` partitions are what :meth:`run` gives the loop first.
    """

    def __init__(self, batches: Iterable[list[FakeRecord]], stop: asyncio.Event, log: list[str] | None = None):
        self.batches = list(batches)
        self.stop = stop
        self.commits: list[dict[tuple[str, int], int]] = []
        self.log = log if log is not None else []
        self.assigned: set[FakeTopicPartition] = set()
        self.seeks: list[tuple[str, int, int]] = []

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if not self.batches:
            self.stop.set()
            return {}
        out: dict[FakeTopicPartition, list[FakeRecord]] = {}
        for r in self.batches.pop(0):
            out.setdefault(FakeTopicPartition(r.topic, r.partition), []).append(r)
        return out

    def assignment(self) -> set[FakeTopicPartition]:
        return set(self.assigned)

    def seek(self, partition: FakeTopicPartition, offset: int) -> None:
        self.seeks.append((partition.topic, partition.partition, offset))

    async def commit(self, offsets: Mapping[Any, int] | None = None) -> None:
        done = {(tp.topic, tp.partition): o for tp, o in (offsets or {}).items()}
        self.commits.append(done)
        self.log.append("commit")


class MemoryChangelog:
    """Stands in for the changelog topics: what a sender wrote, read back by partition (a restore)."""

    def __init__(self, sender: RecordingSender) -> None:
        self.sender = sender

    async def __call__(
        self, topic: str, partitions: set[int], known_end: Mapping[int, int]
    ) -> dict[int, tuple[list[tuple[bytes, bytes | None]] | None, int | None]]:
        out: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
        for name, key, value, partition in self.sender.sent:
            if name == topic and partition in partitions and key is not None:
                out[partition].append((key, value))
        return {p: (rows, None) for p, rows in out.items()}
