"""The batch loop's state restore against the real broker: a changelog read back up to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from streams.runtime.kafka_io import ensure_compacted
from streams.runtime.state import ChangelogState, restore_consumer, restore_from_kafka
from streams.runtime.testing import RecordingSender
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_two_changelogs_restored_one_after_the_other_with_one_consumer(settings: Settings) -> None:
    asyncio.run(_restore(settings))


async def _restore(settings: Settings) -> None:
    topics = [f"{settings.app_id}-a-changelog", f"{settings.app_id}-b-changelog"]
    await ensure_compacted(settings, topics)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for t, topic in enumerate(topics):
            for i in range(200):
                await producer.send(topic, b"v%d" % i, key=b"k%d-%d" % (t, i), partition=i % settings.partitions)
            await producer.send_and_wait(topic, None, key=b"k%d-0" % t, partition=0)  # a tombstone
    finally:
        await producer.stop()
    restorer = restore_consumer(settings)
    await restorer.start()
    try:
        for _ in range(2):  # and again: a second assignment reads them from the beginning again
            for t, topic in enumerate(topics):
                state = ChangelogState(topic, RecordingSender(), settings.partitions)
                def read(tp: str, parts: set[int], known: Mapping[int, int]) -> Any:
                    return restore_from_kafka(restorer, tp, parts, known)

                assert await state.restore(set(range(settings.partitions)), read) == settings.partitions
                assert len(state.data) == 199, (topic, len(state.data))
                # Handed back with the changelog where this worker left it: nothing read again.
                assert await state.restore(set(range(settings.partitions)), read) == 0
                assert len(state.data) == 199
                assert state.data[b"k%d-5" % t] == b"v5" and b"k%d-0" % t not in state.data
                assert state.partition_of[b"k%d-5" % t] == 5 % settings.partitions
    finally:
        await restorer.stop()
