"""Which partition a key lands in: Kafka's default partitioner, as every client here uses it."""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(key: str | bytes, n_partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in Java, aiokafka and kafka-python) picks.

    >>> partition_for("default", 4), partition_for(b"default", 4)
    (3, 3)
    """
    raw = key.encode() if isinstance(key, str) else key
    return int((murmur2(raw) & 0x7FFFFFFF) % n_partitions)
