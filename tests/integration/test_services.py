"""The local Kafka and Redis servers really work: messages round-trip, topics get their configs."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.ops import services as svc
from streams.settings import Settings
from streams.topics import TOPIC_NAMES

pytestmark = pytest.mark.integration

REUSED = bool(os.environ.get("FRESHET_TEST_KAFKA_PORT") or os.environ.get("FRESHET_TEST_REDIS_PORT"))


def test_kafka_round_trips_a_message_on_a_fresh_topic(settings: Settings) -> None:
    topic = settings.topic("events")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        # The topic does not exist yet: the broker creates it on first use (auto.create.topics.enable).
        producer.send(topic, key=b"k1", value=b"hello").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-reader",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    received: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    try:
        while not received and time.monotonic() < deadline:
            received.extend((m.key, m.value) for m in consumer)
    finally:
        consumer.close()
    assert received == [(b"k1", b"hello")]


def test_redis_answers_ping_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    redis_client.set("freshet:test", "v1")
    assert redis_client.get("freshet:test") == b"v1"


def test_redis_client_starts_from_an_empty_db(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0


def test_ensure_topics_creates_all_topics_with_compacted_model_versions(settings: Settings) -> None:
    svc.ensure_topics(settings, partitions=2)
    svc.ensure_topics(settings, partitions=2)  # a second call finds them and changes nothing
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        wanted = [settings.topic(name) for name in TOPIC_NAMES]
        assert set(wanted) <= set(admin.list_topics())
        described = {t["name"]: t for t in admin.describe_topics(wanted)}
        assert {name: len(t["partitions"]) for name, t in described.items()} == dict.fromkeys(wanted, 2)
        versions, events = settings.topic("model-versions"), settings.topic("events")
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, versions, ["cleanup.policy"]),
                ConfigResource(ConfigResourceType.TOPIC, events, ["cleanup.policy"]),
            ],
            config_filter="all",
        )["topic"]
    finally:
        admin.close()
    assert configs[versions]["cleanup.policy"]["value"] == "compact"
    assert configs[events]["cleanup.policy"]["value"] == "delete"


def test_start_returns_false_when_servers_already_listen(services: Settings) -> None:
    assert svc.start_kafka(services) is False
    assert svc.start_redis(services) is False
    status = svc.services_status(services)
    assert status["kafka"]["running"] and status["redis"]["running"]
    assert status["kafka"]["port"] == services.kafka_port
    if not REUSED:
        assert status["kafka"]["started_by_freshet"] and status["kafka"]["pid"]
        assert status["redis"]["started_by_freshet"] and status["redis"]["pid"]


def test_redis_stops_by_pid_file(services: Settings) -> None:
    own = services.with_(redis_port=svc.free_port())
    assert svc.services_status(own)["redis"]["running"] is False
    assert svc.start_redis(own) is True
    try:
        status = svc.services_status(own)["redis"]
        assert status["running"] and status["started_by_freshet"]
    finally:
        assert svc.stop_redis(own) is True
    assert not svc.port_open(own.redis_host, own.redis_port)
    assert svc.services_status(own)["redis"] == {**status, "running": False, "pid": None,
                                                 "started_by_freshet": False}  # fmt: skip
    assert svc.stop_redis(own) is False  # harmless the second time


def test_kafka_stops_and_restarts_on_its_formatted_storage(services: Settings) -> None:
    own = services.with_(
        kafka_port=svc.free_port(), kafka_controller_port=svc.free_port(), topic_prefix=uuid.uuid4().hex[:8]
    )
    started = time.monotonic()
    assert svc.start_kafka(own) is True
    try:
        first_start_s = time.monotonic() - started
        svc.ensure_topics(own, partitions=1)
        assert svc.stop_kafka(own) is True
        assert not svc.port_open(own.kafka_host, own.kafka_port)
        assert svc.start_kafka(own) is True  # the data dir is formatted already: no second format
        admin = KafkaAdminClient(bootstrap_servers=own.kafka_bootstrap)
        try:
            assert own.topic("model-versions") in admin.list_topics()  # the data survived the restart
        finally:
            admin.close()
    finally:
        svc.stop_kafka(own)
    assert svc.services_status(own)["kafka"]["pid"] is None
    assert first_start_s < svc.KAFKA_START_TIMEOUT_S
