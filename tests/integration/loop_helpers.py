"""Running freshet's own processes against the test servers (shared by the integration tests)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.procs import scrape, spawn, stop, wait_http, wait_worker_ready
from streams.services import ensure_topics, free_port
from streams.settings import Settings


def with_ports(settings: Settings, spec: Path | None = None, **changes: object) -> Settings:
    """Free ports for the worker's and learner's /metrics (learner = worker + 1 is not guaranteed free)."""
    port = free_port()
    while True:
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port()
    out = settings.with_(metrics_port=port, **changes)
    return out.with_(spec_path=spec) if spec is not None else out


@contextmanager
def running(settings: Settings, *, learner: bool = True, logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Worker (and learner) as child processes, ready to consume; stopped (SIGTERM) on exit."""
    ensure_topics(settings)
    procs = {"worker": spawn(settings, "worker", log_path=logs / "worker.log")}
    if learner:
        procs["learner"] = spawn(settings, "learn", log_path=logs / "learner.log")
    try:
        wait_http(worker_url(settings), 120, procs["worker"])
        if learner:
            wait_http(learner_url(settings), 120, procs["learner"])
        wait_ready(settings, 120)
        yield procs
    finally:
        for proc in procs.values():
            stop(proc)


def worker_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.metrics_port}/metrics"


def learner_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.metrics_port + 1}/metrics"


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
