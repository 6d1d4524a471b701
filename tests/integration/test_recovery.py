"""A worker killed with SIGKILL mid-stream and restarted emits the same features as an uninterrupted run."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from producers.publish import publish
from producers.synthetic import SyntheticStream
from streams.ops.procs import spawn, stop, wait_http
from streams.ops.readers import TopicReader, read_until
from streams.ops.services import ensure_topics
from streams.settings import Settings
from tests.integration.loop_helpers import wait_ready, with_ports, worker_url

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"
N = 1600


def first_features(records: list[tuple[str | None, Any, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Event id → features of its first prediction (the one the join keeps; redeliveries repeat later)."""
    out: dict[str, dict[str, Any]] = {}
    for _, value, _meta in sorted(records, key=lambda r: (r[2]["partition"], r[2]["offset"])):
        out.setdefault(value["id"], value["features"])
    return out


def start_worker(settings: Settings, log: Path) -> Any:
    proc = spawn(settings, "worker", log_path=log)
    wait_http(worker_url(settings), 120, proc)
    wait_ready(settings, 120)
    return proc


def test_sigkill_and_restart_gives_the_features_of_an_uninterrupted_run(settings: Settings, tmp_path: Path) -> None:
    # Event times from a fixed past start, so both runs see identical events (replayed, not live).
    stream = list(SyntheticStream(kind="hyperplane", n_events=N, n_entities=40, seed=21, start_ts=1_700_000_000.0,
                                  step_s=0.05))
    base = with_ports(settings, spec=SPEC)
    reference = base.with_(app_id=f"{base.app_id}-ref", topic_prefix=f"{base.topic_prefix}ref-")
    crashed = base.with_(app_id=f"{base.app_id}-crash", topic_prefix=f"{base.topic_prefix}crash-")
    for s in (reference, crashed):
        ensure_topics(s)

    proc = start_worker(reference, tmp_path / "reference.log")
    try:
        publish(reference, stream, send_labels=False)
        ref = read_until(reference, "predictions", done=lambda r: len(r) >= N, timeout_s=180)
    finally:
        stop(proc)
    assert len(ref) == N

    # The crashed run: kill -9 while events are still flowing, then restart on the same app id.
    proc = start_worker(crashed, tmp_path / "crashed-1.log")
    try:
        publish(crashed, stream[: N // 2], send_labels=False)
        with TopicReader(crashed, "predictions") as reader:
            seen = 0
            deadline = time.monotonic() + 60
            while seen < N // 4 and time.monotonic() < deadline:
                seen += len(reader.poll(0.2))
        assert stop(proc, sig=signal.SIGKILL) == -signal.SIGKILL, "the worker died of the SIGKILL, mid-stream"
        publish(crashed, stream[N // 2 :], send_labels=False)
        proc = start_worker(crashed, tmp_path / "crashed-2.log")
        got = read_until(
            crashed, "predictions", done=lambda r: len({v["id"] for _, v, _ in r}) >= N, timeout_s=240
        )
    finally:
        stop(proc)

    expected, actual = first_features(ref), first_features(got)
    missing = sorted(set(expected) - set(actual), key=lambda i: int(i.rsplit("-", 1)[1]))
    mismatched = [i for i in actual if expected[i] != actual[i]]
    assert not mismatched, f"{len(mismatched)} events differ, e.g. {mismatched[:3]}"
    assert set(actual) <= set(expected)
    # Every event predicted across the kill: the batch loop writes an entity's state (and marks offsets
    # done) only after the batch's predictions are acknowledged, so what the crash lost is read again.
    assert not missing, f"{len(missing)} of {N} events got no prediction across the SIGKILL: {missing[:10]}"
