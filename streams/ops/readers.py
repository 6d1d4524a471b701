"""Read freshet's output topics with kafka-python: for the demo, the bench, reports and tests.

These readers use no consumer group (partitions are assigned by hand), so reading never moves anyone's
committed offsets and any number of readers can follow a topic at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition

from streams.records import decode
from streams.settings import Settings


class TopicReader:
    """Follow one topic from the beginning (or the end): ``poll()`` returns the new decoded records.

    Each record is ``(key: str | None, value: Any, meta: dict)`` where ``value`` is the decoded JSON
    (or the raw bytes when they are not JSON) and ``meta`` holds partition, offset and the Kafka timestamp
    in seconds.
    """

    def __init__(self, settings: Settings, name: str, *, from_end: bool = False, raw_name: bool = False) -> None:
        self.topic = name if raw_name else settings.topic(name)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=100,
            fetch_max_wait_ms=100,
        )
        self._assigned = False
        self._from_end = from_end

    def _assign(self) -> bool:
        parts = self.consumer.partitions_for_topic(self.topic)
        if not parts:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        if self._from_end:
            self.consumer.seek_to_end(*tps)
        else:
            self.consumer.seek_to_beginning(*tps)
        self._assigned = True
        return True

    def poll(self, timeout_s: float = 0.2) -> list[tuple[str | None, Any, dict[str, Any]]]:
        if not self._assigned and not self._assign():
            time.sleep(timeout_s)
            return []
        out: list[tuple[str | None, Any, dict[str, Any]]] = []
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=10_000)
        for records in batches.values():
            for r in records:
                try:
                    value = decode(r.value) if r.value is not None else None
                except ValueError:
                    value = r.value
                key = r.key.decode("utf-8", "replace") if r.key is not None else None
                out.append(
                    (
                        key,
                        value,
                        {"partition": r.partition, "offset": r.offset, "timestamp_s": r.timestamp / 1000.0},
                    )
                )
        return out

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_until(
    settings: Settings,
    name: str,
    *,
    done: Callable[[list[tuple[str | None, Any, dict[str, Any]]]], bool],
    timeout_s: float,
    raw_name: bool = False,
) -> list[tuple[str | None, Any, dict[str, Any]]]:
    """Read a topic from the beginning until ``done(records)`` or the timeout; returns what was read."""
    deadline = time.monotonic() + timeout_s
    seen: list[tuple[str | None, Any, dict[str, Any]]] = []
    with TopicReader(settings, name, raw_name=raw_name) as reader:
        while time.monotonic() < deadline:
            seen.extend(reader.poll())
            if done(seen):
                break
    return seen


def end_offsets(settings: Settings, name: str) -> dict[int, int]:
    """Partition → end offset of a topic (how many messages each partition holds, from 0)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        parts = consumer.partitions_for_topic(settings.topic(name)) or set()
        tps = [TopicPartition(settings.topic(name), p) for p in parts]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


class TopicContents(NamedTuple):
    """The decoded message values of a topic, and whether the read reached the topic's end."""

    values: list[Any]
    complete: bool
    expected: int


def read_whole_topic(
    settings: Settings, name: str, timeout_s: float, *, last_per_partition: int | None = None
) -> TopicContents:
    """Every message of one of freshet's topics, from each partition's start to its end offset at call
    time, or what arrived within ``timeout_s``. A topic that does not exist yet reads as empty.

    ``last_per_partition`` reads only the newest that many messages of each partition (a big topic)."""
    topic = settings.topic(name)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return TopicContents([], True, 0)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        start, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        if last_per_partition is not None:
            for tp in tps:
                if end[tp] - start[tp] > last_per_partition:
                    start[tp] = end[tp] - last_per_partition
                    consumer.seek(tp, start[tp])
        todo = {tp for tp in tps if end[tp] > start[tp]}
        expected = sum(end[tp] - start[tp] for tp in tps)
        values: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200, max_records=10_000).items():
                for r in records:
                    if r.offset >= end[tp] or r.value is None:
                        continue
                    try:
                        values.append(decode(r.value))
                    except ValueError:
                        continue  # not JSON: build_report would skip it anyway
            todo = {tp for tp in todo if consumer.position(tp) < end[tp]}
        return TopicContents(values, not todo, expected)
    finally:
        consumer.close()
