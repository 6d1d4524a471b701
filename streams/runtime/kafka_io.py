"""The worker's Kafka clients for the batch loop: one grouped aiokafka consumer, one aiokafka producer.

DESIGN.md decision 8. The hot path does not go through Faust agents (Faust's per-message consumer path
costs ~0.1 ms a record even under ``take_events``); it reads with ``getmany`` and writes with the aiokafka
producer, a batch at a time. Faust stays the process runtime (timers, tasks, the version follower).

What the group settings cost and buy (README, "Failover"): a worker that dies loses its partitions after
``FRESHET_GROUP_SESSION_TIMEOUT_S`` (the broker's ``group.min.session.timeout.ms`` bounds it from below,
6 s by default); members heartbeat every session / 6 seconds. The range assignor gives one member the same
partition numbers of every input topic, so an event's entity state, its prediction and its label (keyed
alike) meet in one worker and its state is restored from the same changelog partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streams.settings import Settings

log = logging.getLogger("freshet.worker")

# (topic name, key, value, partition or None for the producer's partitioner)
Wire = tuple[str, bytes | None, bytes | None, int | None]

__all__ = ["ProducerSender", "Rebalance", "Sender", "Wire", "ensure_compacted", "grouped_consumer", "producer"]


class Sender(Protocol):
    """Sends a batch of messages and returns once every one is acknowledged (raises if one failed).

    Returns the acknowledgements (``RecordMetadata``, one per message, in order) when it has them.
    """

    async def send_all(self, messages: list[Wire]) -> Any: ...


class ProducerSender:
    """A batch of sends through the aiokafka producer, the acknowledgements awaited once.

    ``send`` only queues a record in the producer's accumulator and returns its future, so a batch costs
    one wait for all of its acknowledgements, not one per message.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send_all(self, messages: list[Wire]) -> list[Any]:
        if not messages:
            return []
        send = self.producer.send
        futures = [await send(topic, value, key=key, partition=partition) for topic, key, value, partition in messages]
        return list(await asyncio.gather(*futures))


class Rebalance(Protocol):
    """What the batch loop does when the group moves partitions (called by :class:`_Listener`)."""

    async def on_revoked(self, revoked: set[Any]) -> None: ...

    async def on_assigned(self, assigned: set[Any]) -> None: ...


class _Listener(ConsumerRebalanceListener):
    def __init__(self, target: Rebalance) -> None:
        self.target = target

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.target.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.target.on_assigned(set(assigned))


def grouped_consumer(settings: Settings, topics: list[str], target: Rebalance) -> AIOKafkaConsumer:
    """The worker group's consumer (not started): manual commits, range assignor, the failover settings."""
    session_ms = int(settings.group_session_timeout_s * 1000)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,
        client_id=f"{settings.app_id}-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=session_ms,
        # A survivor learns of a rebalance at its next heartbeat: a sixth of the session, at least 0.5 s.
        heartbeat_interval_ms=max(500, session_ms // 6),
        # How long the group waits for its members to rejoin (finishing their batch in flight) when it re-forms.
        rebalance_timeout_ms=session_ms,
        max_poll_interval_ms=300_000,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1 << 20,
    )
    consumer.subscribe(topics, listener=_Listener(target))
    return consumer


def producer(settings: Settings) -> AIOKafkaProducer:
    """The worker's producer (not started): acks from the leader, a short linger so batches fill."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-worker",
        linger_ms=2,
        acks=1,
        max_batch_size=1 << 18,
    )


async def ensure_compacted(settings: Settings, topics: list[str]) -> None:
    """Create the state changelog topics (compacted, ``settings.partitions`` each) when they are missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if missing:
            new = [
                NewTopic(t, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"}) for t in missing
            ]
            with contextlib.suppress(Exception):  # created meanwhile by another worker: fine
                await admin.create_topics(new)
            log.info("created changelog topics %s", missing)
    finally:
        await admin.close()
