"""Start and stop freshet's own processes (worker, learner) as children, for the demo, bench and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.ops.scrape import scrape as scrape  # re-exported: the process helpers' users read /metrics
from streams.settings import Settings


def spawn(settings: Settings, *args: str, log_path: Path) -> subprocess.Popen[bytes]:
    """Run ``freshet ARGS`` with the settings as environment; output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> int:
    """Signal a child and wait; SIGKILL when it does not exit in time. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200; raises RuntimeError on timeout or when ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def wait_worker_ready(url: str, timeout_s: float) -> None:
    """Wait until the worker at ``url`` (its /metrics) reports ``freshet_worker_ready 1``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if scrape(url).get("freshet_worker_ready") == 1.0:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the worker at {url} did not get its partitions within {timeout_s:.0f} s")


def worker_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.metrics_port}/metrics"


def learner_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.metrics_port + 1}/metrics"


@contextmanager
def running(
    settings: Settings, *, logs: Path, learner: bool = True, timeout_s: float = 120.0
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """A worker (and a learner) as child processes, ready to consume; stopped (SIGTERM) on exit.

    The topics must exist (``streams.ops.services.ensure_topics``). Logs go to ``logs/worker.log`` and
    ``logs/learner.log``.
    """
    procs = {"worker": spawn(settings, "worker", log_path=logs / "worker.log")}
    if learner:
        procs["learner"] = spawn(settings, "learn", log_path=logs / "learner.log")
    try:
        wait_http(worker_url(settings), timeout_s, procs["worker"])
        if learner:
            wait_http(learner_url(settings), timeout_s, procs["learner"])
        wait_worker_ready(worker_url(settings), timeout_s)
        yield procs
    finally:
        for proc in procs.values():
            stop(proc)
