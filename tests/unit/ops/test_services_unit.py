"""streams/ops/services.py without starting anything: errors a user can meet, generated config, PID files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.ops import services as svc
from streams.settings import Settings


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    """Settings on free ports (nothing listens there) with a cache folder of this test's own."""
    return Settings(
        kafka_port=svc.free_port(),
        kafka_controller_port=svc.free_port(),
        redis_port=svc.free_port(),
        cache_dir=tmp_path / "cache",
        partitions=3,
    )


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 where something listens (a bare socket, not a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _without(monkeypatch: pytest.MonkeyPatch, *programs: str) -> None:
    real = shutil.which

    def which(cmd: str, *args: object, **kwargs: object) -> str | None:
        return None if cmd in programs else real(cmd)

    monkeypatch.setattr(svc.shutil, "which", which)


def _one_line(error: pytest.ExceptionInfo[svc.ServiceError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_java_is_one_clear_line(local: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "java")
    with pytest.raises(svc.ServiceError) as error:
        svc.start_kafka(local)
    assert _one_line(error) == (
        "java not found on PATH: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
    )
    assert not (Path(local.cache_dir) / "run").exists()  # failed before touching anything


def test_missing_java_on_an_empty_path(
    local: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(svc.ServiceError, match=r"^java not found on PATH: install a JDK 17"):
        svc.start_kafka(local)


def test_missing_maven_is_one_clear_line(local: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "mvn")
    with pytest.raises(svc.ServiceError) as error:
        svc.kafka_classpath(local)
    assert _one_line(error) == "mvn not found on PATH: install Maven (apt-get install maven)"


def test_missing_redis_without_root_says_how_to_install(
    local: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without(monkeypatch, "redis-server")
    monkeypatch.setattr(svc.os, "geteuid", lambda: 1000)
    with pytest.raises(svc.ServiceError) as error:
        svc.start_redis(local)
    assert _one_line(error) == (
        "redis-server not found on PATH: install it (sudo apt-get install redis-server)"
    )


def test_missing_redis_as_root_tries_apt_get_then_update(
    local: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svc.shutil, "which", {"apt-get": "/usr/bin/apt-get"}.get)
    monkeypatch.setattr(svc.os, "geteuid", lambda: 0)
    calls: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd[1:])
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package redis-server\n")

    monkeypatch.setattr(svc.subprocess, "run", run)
    with pytest.raises(svc.ServiceError) as error:
        svc.start_redis(local)
    assert _one_line(error).startswith(
        "redis-server not found and apt-get failed: E: Unable to locate package redis-server"
    )
    assert [c[0] for c in calls] == ["install", "update", "install"]


def test_server_properties_are_a_single_kraft_node(local: Settings) -> None:
    config, log4j = svc._write_kafka_config(local)
    lines = [ln for ln in config.read_text().splitlines() if ln and not ln.startswith("#")]
    props = dict(ln.split("=", 1) for ln in lines)
    port, cport = local.kafka_port, local.kafka_controller_port
    home = Path(local.cache_dir).resolve() / "kafka" / str(port)
    assert config == home / "server.properties"
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{cport}"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(home / "data")
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1", key
    assert len(props) == len(lines)  # no key written twice
    assert f"log4j.appender.file.File={home / 'server.log'}" in log4j.read_text().splitlines()


def test_relative_cache_dir_becomes_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    props = svc.kafka_server_properties(Settings(kafka_port=19092, cache_dir=Path(".cache")))
    assert props["log.dirs"] == str(tmp_path.resolve() / ".cache" / "kafka" / "19092" / "data")


def test_nothing_starts_when_a_port_is_taken(local: Settings, listener: int) -> None:
    taken = local.with_(kafka_port=listener, redis_port=listener)
    assert svc.start_kafka(taken) is False
    assert svc.start_redis(taken) is False
    assert svc.services_up(taken) == []
    status = svc.services_status(taken)
    assert status["kafka"]["running"] and not status["kafka"]["started_by_freshet"]
    assert not (Path(local.cache_dir) / "kafka").exists()


def test_taken_controller_port_is_reported(
    local: Settings, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svc, "kafka_classpath", lambda s: pytest.fail("must not resolve jars"))
    with pytest.raises(svc.ServiceError, match=rf"controller port {listener} is taken.*CONTROLLER_PORT"):
        svc.start_kafka(local.with_(kafka_controller_port=listener))


def test_remote_hosts_are_not_started(local: Settings) -> None:
    remote = local.with_(kafka_host="kafka.invalid", redis_host="redis.invalid")
    with pytest.raises(svc.ServiceError, match=r"^Kafka is not reachable at kafka.invalid:\d+ and freshet"):
        svc.start_kafka(remote)
    with pytest.raises(svc.ServiceError, match=r"^Redis is not reachable at redis.invalid:\d+ and freshet"):
        svc.start_redis(remote)


def test_stop_is_harmless_when_nothing_runs(local: Settings) -> None:
    assert svc.stop_kafka(local) is False
    assert svc.stop_redis(local) is False
    assert svc.services_down(local) == []


def test_stale_pid_file_of_another_program_is_removed_not_signalled(local: Settings) -> None:
    run = Path(local.cache_dir) / "run"
    run.mkdir(parents=True)
    pid_file = run / f"kafka-{local.kafka_port}.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this pytest process: alive, but not a broker
    assert svc.services_status(local)["kafka"]["pid"] is None
    assert svc.stop_kafka(local) is False
    assert not pid_file.exists()


def test_ensure_topics_without_a_broker_fails_fast(local: Settings) -> None:
    with pytest.raises(svc.ServiceError, match=r"^Kafka is not reachable at 127.0.0.1:\d+: start it"):
        svc.ensure_topics(local)


def test_require_services_without_start_services_checks_the_ports(local: Settings) -> None:
    with pytest.raises(svc.ServiceError, match=r"FRESHET_START_SERVICES=0"):
        svc.require_services(local.with_(start_services=False))
