"""Keyed state of the batch loop: a dict in memory, a compacted changelog topic on Kafka.

Each write of a batch goes to the dict and to the changelog topic's partition of its key (the input
partition the key was read from), **after** the batch's outputs were acknowledged. When the group assigns
partitions to this worker, their state is read back from the changelog (from its beginning to its end
offset at that moment, a tombstone deleting the key); when partitions are revoked, their keys are dropped.
The changelog layout is the one Faust tables used (``<app_id>-<table>-changelog``, raw key → raw value), so
a worker of the previous design's state is read as is.

>>> import asyncio
>>> from streams.runtime.testing import RecordingSender
>>> sender = RecordingSender()
>>> state = ChangelogState("app-feature-state-changelog", sender, n_partitions=4)
>>> asyncio.run(state.apply({b"u1": (3, b"s1"), b"u2": (0, None)}))
>>> state.data, sender.sent
({b'u1': b's1'}, [('app-feature-state-changelog', b'u1', b's1', 3), ('app-feature-state-changelog', b'u2', None, 0)])
>>> state.drop({3})
1
>>> state.data
{}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from streams.runtime.kafka_io import Sender, Wire

log = logging.getLogger("freshet.worker")

__all__ = ["ChangelogState", "Restorer", "restore_consumer", "restore_from_kafka"]


class Restorer(Protocol):
    """Reads ``{partition: [(key, value | None)]}`` of a changelog topic, oldest first."""

    async def __call__(
        self, topic: str, partitions: set[int]
    ) -> Mapping[int, Iterable[tuple[bytes, bytes | None]]]: ...


class ChangelogState:
    """One table: ``data`` (key → bytes) as the pure steps read it, and its partition of each key."""

    def __init__(self, topic: str, sender: Sender, n_partitions: int) -> None:
        self.topic = topic
        self.sender = sender
        self.n_partitions = n_partitions
        self.data: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {}

    async def apply(self, writes: Mapping[bytes, tuple[int, bytes | None]]) -> None:
        """Write a batch's state (``key → (partition, bytes or None to delete)``), to memory and Kafka."""
        if not writes:
            return
        data, partition_of, topic = self.data, self.partition_of, self.topic
        wire: list[Wire] = []
        for key, (partition, value) in writes.items():
            if value is None:
                data.pop(key, None)
                partition_of.pop(key, None)
            else:
                data[key] = value
                partition_of[key] = partition
            wire.append((topic, key, value, partition))
        await self.sender.send_all(wire)

    def drop(self, partitions: set[int]) -> int:
        """Forget the keys of revoked ``partitions``; returns how many."""
        gone = [key for key, p in self.partition_of.items() if p in partitions]
        for key in gone:
            self.data.pop(key, None)
            del self.partition_of[key]
        return len(gone)

    async def restore(self, partitions: set[int], read: Restorer) -> int:
        """Load ``partitions`` from the changelog (their keys held before are replaced); returns keys loaded."""
        if not partitions:
            return 0
        self.drop(partitions)
        started = time.monotonic()
        for partition, records in (await read(self.topic, partitions)).items():
            for key, value in records:
                if value is None:
                    if self.data.pop(key, None) is not None:
                        del self.partition_of[key]
                else:
                    self.data[key] = value
                    self.partition_of[key] = partition
        loaded = sum(1 for p in self.partition_of.values() if p in partitions)
        log.info(
            "restored %d keys of %s partitions %s in %.3f s", loaded, self.topic, sorted(partitions),
            time.monotonic() - started,
        )
        return loaded


def restore_consumer(settings: Any) -> Any:
    """The group-less consumer :func:`restore_from_kafka` reads changelogs with (not started)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-restore",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 << 20,
    )


async def restore_from_kafka(
    consumer: Any, topic: str, partitions: set[int]
) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """A changelog's ``partitions`` read with a group-less, started aiokafka ``consumer``, up to their end now."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    todo = {tp for tp in tps if ends.get(tp, 0) > begins.get(tp, 0)}
    out: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
    for tp in todo:  # an explicit position (seek_to_beginning races with the assignment's own reset)
        consumer.seek(tp, begins[tp])
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=200, max_records=10_000)
        for tp, records in batches.items():
            rows = out[tp.partition]
            rows.extend((r.key, r.value) for r in records if r.key is not None and r.offset < ends[tp])
        for tp in list(todo):
            if await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
    consumer.assign([])
    return out
