"""Shared fixtures: real Kafka and Redis servers for tests marked ``integration``.

One broker and one Redis server per test session, on free ports, with logs and data in a fresh folder
under ``.cache/``; they are stopped (and the folder removed) when the session ends. Each test gets its
own topic prefix and app id, so tests never read each other's messages.

For fast local iteration, point the tests at servers that already run::

    FRESHET_TEST_KAFKA_PORT=9092 FRESHET_TEST_REDIS_PORT=6379 pytest -m integration

Set ``FRESHET_TEST_KEEP_CACHE=1`` to keep the session's folder (broker logs) after the run.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.ops import services as svc
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def _require_integration(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is None:
        pytest.fail(
            f"{request.node.nodeid} uses the real Kafka/Redis fixtures: mark it @pytest.mark.integration",
            pytrace=False,
        )


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise pytest.UsageError(f"{name}={raw!r} is not a port number; fix or unset it")
    return int(raw)


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    """Settings pointing at a running Kafka and Redis (started here unless FRESHET_TEST_*_PORT is set).

    ``start_services`` is off: this fixture owns the servers, and processes the tests spawn must not
    start their own.
    """
    session = uuid.uuid4().hex[:8]
    cache_dir = REPO / ".cache" / f"test-{session}"
    kafka_port = _env_port("FRESHET_TEST_KAFKA_PORT")
    redis_port = _env_port("FRESHET_TEST_REDIS_PORT")
    base = Settings(
        kafka_port=kafka_port or svc.free_port(),
        kafka_controller_port=svc.free_port(),
        redis_port=redis_port or svc.free_port(),
        cache_dir=cache_dir,
        start_services=False,
        topic_prefix=f"t{session}-",
        app_id=f"freshet-test-{session}",
    )
    for name, port, host in (
        ("KAFKA", kafka_port, base.kafka_host),
        ("REDIS", redis_port, base.redis_host),
    ):
        if port is not None and not svc.port_open(host, port):
            raise pytest.UsageError(f"FRESHET_TEST_{name}_PORT={port} but nothing listens on {host}:{port}")

    started: list[str] = []
    try:
        if kafka_port is None and svc.start_kafka(base):
            started.append("kafka")
        if redis_port is None and svc.start_redis(base):
            started.append("redis")
    except BaseException:
        # Stop what did start; keep the folder, its logs say why the rest did not.
        _stop(base, started)
        raise
    try:
        yield base
    finally:
        _stop(base, started)
        if os.environ.get("FRESHET_TEST_KEEP_CACHE", "") not in ("1", "true", "yes"):
            shutil.rmtree(cache_dir, ignore_errors=True)


def _stop(settings: Settings, started: list[str]) -> None:
    if "redis" in started:
        svc.stop_redis(settings)
    if "kafka" in started:
        svc.stop_kafka(settings)


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    """The session's settings with a topic prefix and app id of this test's own."""
    _require_integration(request)
    # Looked up only now, so a test missing the marker fails before any server starts.
    services: Settings = request.getfixturevalue("services")
    tag = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:40]
    tag = f"{tag}-{uuid.uuid4().hex[:6]}"
    return services.with_(
        topic_prefix=f"{services.topic_prefix}{tag}-",
        app_id=f"{services.app_id}-{tag}",
    )


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` client (bytes responses) on the test Redis; its db is flushed first."""
    _require_integration(request)
    settings: Settings = request.getfixturevalue("settings")
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
