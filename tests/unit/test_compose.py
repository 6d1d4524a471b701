"""docker-compose.yml agrees with itself, the Settings and the Prometheus/Grafana files.

No Docker engine runs where the tests run, so this checks the file's coherence instead of running it.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FRESHET_SERVICES = ("worker", "learner", "producer")


def _load(path: Path) -> Any:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(_load(REPO / "docker-compose.yml")["services"])


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return dict(_load(REPO / "deploy" / "prometheus" / "prometheus.yml"))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "- KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):  # named volumes have no host path
            out.append((source, target))
    return out


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in service.get("expose") or []}
    ports |= {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports") or []}
    return ports


def _scrape_targets(prometheus: dict[str, Any]) -> list[str]:
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "freshet"]
    return [t for group in job["static_configs"] for t in group["targets"]]


def test_all_services_are_declared(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "worker", "learner", "producer", "prometheus", "grafana"} <= set(compose)
    assert compose["kafka"]["image"] == "apache/kafka:3.9.1"
    assert compose["redis"]["image"].startswith("redis:7")


def test_freshet_services_share_one_image_built_here(compose: dict[str, Any]) -> None:
    assert (REPO / "Dockerfile").is_file()
    images = {compose[name]["image"] for name in FRESHET_SERVICES}
    assert len(images) == 1
    for name in FRESHET_SERVICES:
        assert compose[name]["build"] == "."
        assert compose[name]["command"][0] == "freshet"
        assert compose[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert compose["worker"]["command"] == ["freshet", "worker"]
    assert compose["producer"]["command"][:2] == ["freshet", "produce"]


def test_every_freshet_variable_is_a_setting_that_parses(compose: dict[str, Any]) -> None:
    known = {f"FRESHET_{f.name.upper()}" for f in fields(Settings)}
    sources = {f"{name}.environment": _env(svc) for name, svc in compose.items()}
    sources["Dockerfile ENV"] = _dockerfile_env()
    seen = 0
    for where, env in sources.items():
        for key, value in env.items():
            if not key.startswith("FRESHET_"):
                continue
            seen += 1
            assert key in known, f"{where}: {key} is not a Settings field"
            settings = Settings.from_env({key: value})  # raises SettingsError when it does not parse
            assert str(getattr(settings, key.removeprefix("FRESHET_").lower())) != "", (where, key)
    assert seen > 0


def test_containers_never_start_their_own_servers(compose: dict[str, Any]) -> None:
    for name in FRESHET_SERVICES:
        assert Settings.from_env(_env(compose[name])).start_services is False, name


def test_worker_metrics_port_is_exposed_and_scraped(
    compose: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    settings = Settings.from_env(_env(compose["worker"]))
    assert settings.metrics_host == "0.0.0.0"  # Prometheus scrapes from another container
    assert settings.metrics_port in _container_ports(compose["worker"])
    assert f"worker:{settings.metrics_port}" in _scrape_targets(prometheus)


def test_learner_metrics_port_is_exposed_and_scraped(
    compose: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    command = compose["learner"]["command"]
    port = int(command[command.index("--metrics-port") + 1])
    assert Settings.from_env(_env(compose["learner"])).metrics_host == "0.0.0.0"
    assert port in _container_ports(compose["learner"])
    assert f"learner:{port}" in _scrape_targets(prometheus)


def test_kafka_advertises_what_the_clients_use(compose: dict[str, Any]) -> None:
    kafka = _env(compose["kafka"])
    advertised = dict(item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://", 1) for item in kafka["KAFKA_LISTENERS"].split(","))
    host, port = advertised["PLAINTEXT"].rsplit(":", 1)
    assert host in compose  # a service name other containers resolve
    assert listeners["PLAINTEXT"].rsplit(":", 1)[1] == port
    for name in FRESHET_SERVICES:
        settings = Settings.from_env(_env(compose[name]))
        assert (settings.kafka_host, settings.kafka_port) == (host, int(port)), name
    # KRaft combined mode on one node: it votes for itself on its own controller listener.
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    voter_id, voter = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert voter_id == kafka["KAFKA_NODE_ID"]
    assert voter == f"{host}:{listeners['CONTROLLER'].rsplit(':', 1)[1]}"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert kafka[key] == "1", key
    assert kafka["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_redis_is_where_the_clients_look(compose: dict[str, Any]) -> None:
    for name in FRESHET_SERVICES:
        settings = Settings.from_env(_env(compose[name]))
        assert settings.redis_host in compose and settings.redis_host == "redis", name
        assert settings.redis_port == 6379, name


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    mounts = [(name, source) for name, svc in compose.items() for source, _ in _mounts(svc)]
    assert mounts
    for name, source in mounts:
        assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_prometheus_loads_its_rules_from_the_mounted_files(
    compose: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    mounted = dict((target, source) for source, target in _mounts(compose["prometheus"]))
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        # Relative rule paths are resolved against the directory of prometheus.yml.
        assert f"/etc/prometheus/{rule_file}" in mounted, rule_file
        assert "groups" in (_load(REPO / mounted[f"/etc/prometheus/{rule_file}"]) or {}), rule_file


def test_grafana_reads_prometheus_and_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    mounted = dict((target, source) for source, target in _mounts(compose["grafana"]))
    assert mounted["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"

    (datasource,) = _load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    url = urlsplit(datasource["url"])
    assert datasource["type"] == "prometheus"
    assert url.hostname == "prometheus" and url.hostname in compose
    assert url.port in _container_ports(compose["prometheus"])

    (provider,) = _load(provisioning / "dashboards" / "freshet.yml")["providers"]
    path = provider["options"]["path"]
    assert path in mounted
    dashboards = list((REPO / mounted[path]).glob("*.json"))
    assert dashboards, f"no dashboard JSON in {mounted[path]}"
    for dashboard in dashboards:
        assert json.loads(dashboard.read_text())["title"], dashboard.name


def test_dockerfile_copies_only_what_exists() -> None:
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    assert "pyproject.toml" in sources and "streams" in sources
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"the Dockerfile copies {missing}, which are not in the repo"


def test_the_registry_survives_a_redis_restart_and_metrics_stay_inside(compose: dict[str, Any]) -> None:
    """Redis keeps an append-only file on a volume (the registry's versions and pointer survive a restart);
    the worker's and learner's /metrics are reachable by Prometheus on the compose network, not published."""
    redis_cmd = compose["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in compose["redis"].get("volumes") or [])
    for name in ("worker", "learner"):
        assert not compose[name].get("ports"), f"{name} publishes its /metrics on the host"
