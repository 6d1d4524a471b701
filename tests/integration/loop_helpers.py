"""Running freshet's own processes against the test servers (shared by the integration tests)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.ops.procs import learner_url as learner_url  # re-exported for the tests
from streams.ops.procs import running as procs_running
from streams.ops.procs import scrape, wait_worker_ready, worker_url
from streams.ops.procs import worker_url as worker_url  # noqa: F811
from streams.ops.services import ensure_topics, free_port
from streams.settings import Settings


def with_ports(settings: Settings, spec: Path | None = None, **changes: object) -> Settings:
    """Free ports for the worker's and learner's /metrics (learner = worker + 1 is not guaranteed free)."""
    port = free_port()
    while not _bindable(port + 1):
        port = free_port()
    out = settings.with_(metrics_port=port, **changes)
    return out.with_(spec_path=spec) if spec is not None else out


@contextmanager
def running(settings: Settings, *, learner: bool = True, logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Worker (and learner) as child processes on the test servers, topics created first."""
    ensure_topics(settings)
    with procs_running(settings, logs=logs, learner=learner) as procs:
        yield procs


def wait_ready(settings: Settings, timeout_s: float) -> None:
    wait_worker_ready(worker_url(settings), timeout_s)


def wait_metric(url: str, name: str, at_least: float, timeout_s: float) -> float:
    """Wait until the sum of a metric's samples reaches ``at_least``; returns the last value."""
    deadline = time.monotonic() + timeout_s
    value = 0.0
    while time.monotonic() < deadline:
        value = sum(v for k, v in scrape(url).items() if k == name or k.startswith(name + "{"))
        if value >= at_least:
            return value
        time.sleep(0.3)
    return value


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
