"""The learner process's pure parts: which examples partition it reads (Kafka's default partitioner).

The learner assigns itself the partition its slot's examples land in, so ``partition_for`` must pick what
the writers pick: the worker's Faust/aiokafka producer writes ``examples``, kafka-python writes in the
producers and tools, and Java clients may write too. Checked here against Java's published murmur2
values and both Python clients' own partitioners; tests/integration/test_learning.py checks where the
worker's examples really land on the broker.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner as AiokafkaPartitioner
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner as KafkaPythonPartitioner

from streams.core.partitions import partition_for
from streams.runtime import learner_loop as learn

# Apache Kafka's UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java):
# Utils.murmur2 of these bytes, as Java's signed ints. The Java producer's default partitioner picks
# toPositive(murmur2(key)) % partitions, toPositive being & 0x7fffffff.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
KEYS = ["default", "fraud", "churn-v2", "slot with spaces", "é-ünïcode", "x" * 300, *(k.decode() for k in JAVA_MURMUR2)]
COUNTS = [1, 2, 3, 4, 6, 8, 12, 50]


def _cluster(topic: str, n_partitions: int) -> ClusterMetadata:
    """kafka-python's own cluster metadata, filled from a metadata response as a broker would send it."""
    from kafka.protocol.metadata import MetadataResponse

    cluster = ClusterMetadata()
    if hasattr(MetadataResponse, "MetadataResponseTopic"):  # kafka-python 3.x
        t, b = MetadataResponse.MetadataResponseTopic, MetadataResponse.MetadataResponseBroker
        p = t.MetadataResponsePartition
        response: Any = MetadataResponse(
            version=1,
            brokers=[b(version=1, node_id=0, host="127.0.0.1", port=9092, rack=None)],
            controller_id=0,
            topics=[
                t(version=1, error_code=0, name=topic, is_internal=False, partitions=[
                    p(version=1, error_code=0, partition_index=i, leader_id=0, replica_nodes=[0], isr_nodes=[0])
                    for i in range(n_partitions)
                ])
            ],
        )
    else:  # kafka-python 2.x: tuples
        response = MetadataResponse[0](
            brokers=[(0, "127.0.0.1", 9092)],
            topics=[(0, topic, [(0, i, 0, [0], [0]) for i in range(n_partitions)])],
        )
    cluster.update_metadata(response)
    assert cluster.partitions_for_topic(topic) == set(range(n_partitions))
    return cluster


def test_the_learner_uses_the_shared_partitioner() -> None:
    assert learn.partition_for is partition_for


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items(), ids=[k.decode()[:12] for k in JAVA_MURMUR2])
def test_matches_the_java_client(key: bytes, java_hash: int) -> None:
    for n in COUNTS:
        assert partition_for(key, n) == (java_hash & 0x7FFFFFFF) % n


@pytest.mark.parametrize("n", COUNTS)
def test_matches_aiokafka_the_workers_producer(n: int) -> None:
    partitions = list(range(n))
    for key in KEYS:
        assert partition_for(key, n) == AiokafkaPartitioner()(key.encode(), partitions, partitions), key


@pytest.mark.parametrize("n", COUNTS)
def test_matches_kafka_python(n: int) -> None:
    cluster = _cluster("examples", n)
    partitioner = KafkaPythonPartitioner()
    for key in KEYS:
        raw = key.encode()
        assert partition_for(key, n) == partitioner.partition("examples", key, raw, None, None, cluster), key


def test_text_and_bytes_keys_agree_and_stay_in_range() -> None:
    for key in KEYS:
        for n in COUNTS:
            assert partition_for(key, n) == partition_for(key.encode(), n)
            assert 0 <= partition_for(key, n) < n
    assert partition_for("default", 4) == 3  # where the default slot's examples live with 4 partitions
