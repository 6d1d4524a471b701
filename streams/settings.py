"""One typed settings object, read from the environment (``FRESHET_*``).

Every process (worker, producer, CLI, tests) builds its settings with :func:`Settings.from_env`;
nothing reads the environment anywhere else, so a test passes a ``Settings`` instead of patching.

>>> s = Settings.from_env({"FRESHET_KAFKA_PORT": "19092", "FRESHET_TOPIC_PREFIX": "t1-"})
>>> s.kafka_bootstrap
'127.0.0.1:19092'
>>> s.topic("events")
't1-events'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from streams.errors import FreshetError
from streams.topics import TOPIC_NAMES

# The spec used when FRESHET_SPEC_PATH is not set: the demo pipeline shipped in the repository.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent / "pipelines" / "demo.toml"



DEV_SIGNING_KEY = "freshet-dev-key-change-me"
LOOPBACK_HOSTS = ("localhost", "::1")


class SettingsError(FreshetError, ValueError):
    """A setting has a value freshet cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    """Where the servers are, how topics are named, and how the worker behaves.

    Environment variable for a field ``x`` is ``FRESHET_X`` (upper case).
    """

    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    # Local Prometheus and Alertmanager (`freshet services up --with-monitoring`, the monitoring tests).
    prometheus_port: int = 9090
    alertmanager_port: int = 9094
    # Start local Kafka/Redis when the settings point at servers that are not running.
    start_services: bool = True
    cache_dir: Path = Path(".cache")
    app_id: str = "freshet"
    topic_prefix: str = ""
    partitions: int = 4
    spec_path: Path | None = None
    # /metrics binds to loopback unless told otherwise (docker-compose sets 0.0.0.0 for Prometheus).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    # How long a logged prediction waits for its label before it expires (event-time seconds).
    label_ttl_s: float = 3600.0
    # Feature vectors in the online store expire this long after their last write (seconds).
    store_ttl_s: float = 86400.0
    # The learner saves a durable snapshot (the whole slot, with the offset: what recovery resumes from)
    # every this many examples, and publishes a champion record with it.
    snapshot_every: int = 500
    # ... and publishes a servable champion record (the champion alone, signed) at least this often while it
    # learns (seconds; 0: only with snapshots and early ones), and when the stream goes idle.
    publish_every_s: float = 0.25
    # Early in a slot's life, also after examples 1, 2, 4, 8, ... up to snapshot_every.
    publish_early: bool = True
    # Also publish whenever the learner has caught up with its input (a live stream: after every example or
    # few); off, records go out by time, count and early ones only (``freshet experiment freshness``).
    publish_when_caught_up: bool = True
    # A big model is republished at most every publish_cost_factor x (what publishing it cost), so a
    # worker is never asked to load versions faster than it can.
    publish_cost_factor: float = 20.0
    # A champion record up to this size also travels inside its model-versions announcement, so a worker
    # swaps it in without reading Redis (faster, and it still swaps while Redis is down); bigger ones are
    # read from the registry. 0: never inline.
    inline_record_max_bytes: int = 256 * 1024
    # The learner publishes online metrics (metrics topic, /metrics) at most this often (seconds), when the
    # stream goes idle, and on shutdown.
    metrics_every_s: float = 1.0
    # Model versions kept in the registry per slot (older ones are pruned; the current one never is).
    keep_versions: int = 20
    # HMAC key for model snapshots; the default is for local runs only (refused off loopback).
    signing_key: str = DEV_SIGNING_KEY
    # Rolling window (examples) for rolling online metrics.
    rolling_window: int = 1000
    log_level: str = "warning"
    # Failover: a worker that stops heartbeating loses its partitions after this long (Kafka's smallest
    # allowed session timeout is 6 s, group.min.session.timeout.ms); Faust's default is 60 s.
    group_session_timeout_s: float = 6.0
    # Batch at a time: the worker's loop takes at most this many records per batch (one getmany)...
    batch_max_events: int = 2000
    # ...and its poll waits at most this long when nothing is fetched yet (a batch is never held back to fill).
    batch_within_ms: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``FRESHET_*`` variables; unknown ones are ignored, malformed ones raise."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"FRESHET_{f.name.upper()}"
            if key not in env:
                continue
            raw = env[key]
            values[f.name] = _parse(f.name, str(f.type), raw)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings are immutable)."""
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes :meth:`from_env` rebuild these settings (for child processes)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            out[f"FRESHET_{f.name.upper()}"] = str(value)
        return out

    def check_signing_key(self) -> None:
        """Refuse the public development key unless every server freshet talks to is on loopback.

        A snapshot is a pickle: whoever knows the key can make freshet run their code, and the development
        key is in this repository.

        >>> Settings().check_signing_key()  # all on 127.0.0.1: the development key is fine
        >>> Settings(redis_host="redis").check_signing_key()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streams.settings.SettingsError: FRESHET_SIGNING_KEY is the public development key but redis is not on ...
        """
        if self.signing_key != DEV_SIGNING_KEY:
            return
        for what, host in (("kafka", self.kafka_host), ("redis", self.redis_host)):
            if not (host.startswith("127.") or host in LOOPBACK_HOSTS):
                raise SettingsError(
                    f"FRESHET_SIGNING_KEY is the public development key but {what} is not on loopback ({host}); "
                    "set FRESHET_SIGNING_KEY to a secret of your own"
                )

    @property
    def spec_file(self) -> Path:
        """The pipeline spec to load: ``spec_path``, else the demo pipeline."""
        return self.spec_path or DEFAULT_SPEC_PATH

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def topic(self, name: str) -> str:
        """The configured name of one of freshet's topics (see ``TOPIC_NAMES``)."""
        if name not in TOPIC_NAMES:
            raise SettingsError(f"unknown topic {name!r}; freshet's topics are {', '.join(TOPIC_NAMES)}")
        return f"{self.topic_prefix}{name}"


def _parse(name: str, type_name: str, raw: str) -> Any:
    try:
        if "bool" in type_name:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if "int" in type_name:
            return int(raw)
        if "float" in type_name:
            return float(raw)
        if "Path" in type_name:
            return Path(raw) if raw else None
        return raw
    except ValueError:
        raise SettingsError(
            f"FRESHET_{name.upper()}={raw!r} is not a valid {type_name}; fix or unset it"
        ) from None
