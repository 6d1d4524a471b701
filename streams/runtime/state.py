"""Keyed state of the batch loop: a dict in memory, a compacted changelog topic on Kafka.

Each write of a batch goes to the dict and to the changelog topic's partition of its key (the input
partition the key was read from), **after** the batch's outputs were acknowledged. When the group assigns
partitions to this worker, their state is read back from the changelog (from its beginning to its end
offset at that moment, a tombstone deleting the key), unless the changelog still ends where this worker's own
last write or restore left it (then its memory is current and kept); partitions the group no longer gives
this worker are dropped.
The changelog layout is the one Faust tables used (``<app_id>-<table>-changelog``, raw key → raw value), so
a worker of the previous design's state is read as is.

>>> import asyncio
>>> from streams.runtime.testing import RecordingSender
>>> sender = RecordingSender()
>>> state = ChangelogState("app-feature-state-changelog", sender, n_partitions=4)
>>> asyncio.run(state.apply({b"u1": (3, b"s1"), b"u2": (0, None)}))
>>> state.data, sender.sent
({b'u1': b's1'}, [('app-feature-state-changelog', b'u1', b's1', 3), ('app-feature-state-changelog', b'u2', None, 0)])
>>> state.known_end  # the recorder returns no acknowledgements: nothing known, a restore reads again
{}
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


# partition → (its records oldest first, or None when the changelog ended where this worker knew it did;
# the changelog's end offset, when known)
Restored = Mapping[int, tuple[Iterable[tuple[bytes, bytes | None]] | None, int | None]]


class Restorer(Protocol):
    """Reads changelog ``partitions``; ``known_end`` (partition → end offset) may spare unchanged ones."""

    async def __call__(self, topic: str, partitions: set[int], known_end: Mapping[int, int]) -> Restored: ...


class ChangelogState:
    """One table: ``data`` (key → bytes) as the pure steps read it, and its partition of each key.

    ``known_end`` holds, per partition, the changelog's end offset as of this worker's last write or restore
    of it. When the group hands a partition back whose changelog still ends there, no other worker wrote
    its state meanwhile and the memory is current: it is kept instead of read again (failover time).
    """

    def __init__(self, topic: str, sender: Sender, n_partitions: int) -> None:
        self.topic = topic
        self.sender = sender
        self.n_partitions = n_partitions
        self.data: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {}
        self.known_end: dict[int, int] = {}

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
        acked = await self.sender.send_all(wire)
        self._note_ends(wire, acked)

    def _note_ends(self, wire: list[Wire], acked: Any) -> None:
        """The changelog's end offset per partition from the acknowledgements (unknown without them)."""
        known = self.known_end
        if isinstance(acked, list) and len(acked) == len(wire):
            for meta, (*_, partition) in zip(acked, wire, strict=True):
                offset = getattr(meta, "offset", None)
                if isinstance(offset, int) and offset >= 0 and partition is not None:
                    known[partition] = max(known.get(partition, 0), offset + 1)
                else:
                    known.pop(partition, None)  # type: ignore[arg-type]
        else:
            for *_, partition in wire:
                known.pop(partition, None)  # type: ignore[arg-type]

    def drop(self, partitions: set[int]) -> int:
        """Forget the keys of ``partitions`` (no longer this worker's); returns how many."""
        gone = [key for key, p in self.partition_of.items() if p in partitions]
        for key in gone:
            self.data.pop(key, None)
            del self.partition_of[key]
        for p in partitions:
            self.known_end.pop(p, None)
        return len(gone)

    async def restore(self, partitions: set[int], read: Restorer) -> int:
        """Make ``partitions`` current from the changelog; returns how many partitions were read again."""
        if not partitions:
            return 0
        started = time.monotonic()
        got = await read(self.topic, partitions, {p: e for p, e in self.known_end.items() if p in partitions})
        data, partition_of = self.data, self.partition_of
        read_again = 0
        for partition, (records, end) in got.items():
            if records is None:
                continue  # unchanged since this worker last wrote it: the memory is current
            read_again += 1
            self.drop({partition})
            for key, value in records:
                if value is None:
                    if data.pop(key, None) is not None:
                        del partition_of[key]
                else:
                    data[key] = value
                    partition_of[key] = partition
            if end is not None:
                self.known_end[partition] = end
        log.info(
            "%s: partitions %s current, %d of them read again, in %.3f s", self.topic, sorted(partitions),
            read_again, time.monotonic() - started,
        )
        return read_again


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
    consumer: Any, topic: str, partitions: set[int], known_end: Mapping[int, int] | None = None
) -> dict[int, tuple[list[tuple[bytes, bytes | None]] | None, int | None]]:
    """A changelog's ``partitions`` read with a group-less, started aiokafka ``consumer``, up to their end now.

    A partition whose end offset equals ``known_end[partition]`` is not read (``None``).
    """
    from aiokafka import TopicPartition

    known = known_end or {}
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    out: dict[int, tuple[list[tuple[bytes, bytes | None]] | None, int | None]] = {}
    todo = set()
    for tp in tps:
        if known.get(tp.partition) == ends[tp]:
            out[tp.partition] = (None, ends[tp])
        else:
            out[tp.partition] = ([], ends[tp])
            if ends[tp] > begins[tp]:
                todo.add(tp)
                consumer.seek(tp, begins[tp])  # explicit: seek_to_beginning races with the assignment's reset
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=200, max_records=10_000)
        for tp, records in batches.items():
            rows = out[tp.partition][0]
            if rows is not None and tp in todo:
                rows.extend((r.key, r.value) for r in records if r.key is not None and r.offset < ends[tp])
        for tp in list(todo):
            if await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
    consumer.assign([])
    return out
