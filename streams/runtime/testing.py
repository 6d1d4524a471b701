"""Test doubles shipped with freshet (for unit and agent tests only; never used in production).

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

from streams.runtime.kafka_io import Wire


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
