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

# The spec used when FRESHET_SPEC_PATH is not set: the demo pipeline shipped in the repository.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent / "pipelines" / "demo.toml"

TOPIC_NAMES = (
    "events",
    "labels",
    "predictions",
    "examples",
    "model-versions",
    "drift",
    "metrics",
    "dead-letter",
)


class SettingsError(ValueError):
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
    # The learner snapshots and publishes a model version every this many examples.
    snapshot_every: int = 500
    # Model versions kept in the registry per slot (older ones are pruned; the current one never is).
    keep_versions: int = 20
    # HMAC key for model snapshots; the default is for local runs only.
    signing_key: str = "freshet-dev-key-change-me"
    # Rolling window (examples) for rolling online metrics.
    rolling_window: int = 1000
    log_level: str = "warning"

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
