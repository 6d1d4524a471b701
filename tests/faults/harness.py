"""The fault suite's machinery: the servers it owns, freshet's processes, a paced feeder, and the counts.

Everything runs for real: a Kafka broker and a Redis server on free loopback ports (stopped and started
again by PID, through ``streams.ops.services``), freshet's worker(s) and learner as child processes (killed
by PID), events and labels sent by a producer thread at a steady rate while faults are injected.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from producers.synthetic import SyntheticStream
from streams.ops import services as svc
from streams.ops.procs import learner_url, scrape, spawn, wait_http, wait_worker_ready, worker_url
from streams.ops.readers import read_whole_topic
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).resolve().parent / "faults.toml"


# --- the servers ------------------------------------------------------------------------------------


@dataclass
class Servers:
    """A broker and a Redis server this suite may stop and start (``owns``: which ones it started)."""

    settings: Settings
    owns: set[str] = field(default_factory=set)

    @classmethod
    @contextlib.contextmanager
    def start(cls, base: Settings | None = None, *, own_kafka: bool = True) -> Iterator[Servers]:
        """Fresh servers on free ports (with ``own_kafka=False``, ``base``'s broker and a Redis of our own)."""
        tag = uuid.uuid4().hex[:8]
        cache = REPO / ".cache" / f"faults-{tag}"
        settings = (base or Settings()).with_(
            redis_port=svc.free_port(),
            cache_dir=cache,
            start_services=False,
            signing_key="faults-" + secrets.token_hex(16),
            spec_path=SPEC,
            topic_prefix=f"f{tag}-",
            app_id=f"freshet-faults-{tag}",
            partitions=4,
        )
        if own_kafka:
            settings = settings.with_(kafka_port=svc.free_port(), kafka_controller_port=svc.free_port())
        servers = cls(settings)
        try:
            if own_kafka and svc.start_kafka(settings):
                servers.owns.add("kafka")
            if svc.start_redis(settings):
                servers.owns.add("redis")
            yield servers
        finally:
            if "redis" in servers.owns:
                svc.stop_redis(settings)
            if "kafka" in servers.owns:
                svc.stop_kafka(settings)
            if os.environ.get("FRESHET_FAULTS_KEEP", "") != "1":
                shutil.rmtree(cache, ignore_errors=True)

    def pid(self, name: str) -> int | None:
        return svc._read_pid(self.settings, name)

    def stop(self, name: str) -> float:
        """Stop ``kafka`` or ``redis`` by its PID (SIGTERM); returns when it is gone (monotonic time)."""
        if name not in self.owns:
            raise RuntimeError(f"the suite did not start {name}: it will not stop it")
        (svc.stop_kafka if name == "kafka" else svc.stop_redis)(self.settings)
        return time.monotonic()

    def restart(self, name: str) -> float:
        (svc.start_kafka if name == "kafka" else svc.start_redis)(self.settings)
        return time.monotonic()


# --- freshet's processes -----------------------------------------------------------------------------


@dataclass
class Procs:
    """Worker(s) and a learner as children; ``exits`` records any that died by themselves (needed a restart)."""

    settings: Settings
    logs: Path
    workers: list[Settings] = field(default_factory=list)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    exits: dict[str, int] = field(default_factory=dict)
    lives: Counter[str] = field(default_factory=Counter)

    def start(self, name: str, wait: bool = True) -> subprocess.Popen[bytes]:
        s = self.settings_of(name)
        self.lives[name] += 1
        proc = spawn(s, "learn" if name == "learner" else "worker", log_path=self.logs / f"{name}.log")
        self.running[name] = proc
        self.killed.discard(name)
        if wait:
            url = learner_url(s) if name == "learner" else worker_url(s)
            wait_http(url, 180, proc)
            if name != "learner":
                wait_worker_ready(url, 180)
        return proc

    def settings_of(self, name: str) -> Settings:
        if name == "learner":
            return self.workers[0]
        return self.workers[int(name.removeprefix("worker")) - 1]

    def url(self, name: str) -> str:
        return learner_url(self.workers[0]) if name == "learner" else worker_url(self.settings_of(name))

    def metric(self, name: str, metric: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels`` (0 when unreachable)."""
        for attempt in range(3):  # a loaded machine can miss the scrape's 5 s timeout
            try:
                samples = scrape(self.url(name))
                break
            except OSError:
                if attempt == 2:
                    return float("nan")
                time.sleep(1.0)
        want = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(v for k, v in samples.items()
                   if (k == metric or k.startswith(metric + "{")) and all(w in k for w in want))

    def kill(self, name: str) -> None:
        proc = self.running[name]
        self.killed.add(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def check(self) -> None:
        """Note every process that exited without being killed by the suite."""
        for name, proc in self.running.items():
            if name not in self.killed and proc.poll() is not None and name not in self.exits:
                self.exits[name] = proc.returncode

    def rss_mb(self, name: str) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.running[name].pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop_all(self) -> None:
        self.check()
        for _name, proc in self.running.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.contextmanager
def freshet(settings: Settings, logs: Path, n_workers: int = 1, learner: bool = True) -> Iterator[Procs]:
    """Topics created, ``n_workers`` workers and a learner running (each /metrics on a port of its own)."""
    svc.ensure_topics(settings)
    shutil.rmtree(logs, ignore_errors=True)  # the logs of this run only (spawn appends)
    workers = []
    for _ in range(n_workers):
        port = svc.free_port()
        while _busy(port + 1):
            port = svc.free_port()
        workers.append(settings.with_(metrics_port=port))
    procs = Procs(settings, logs, workers)
    try:
        if learner:
            procs.start("learner")
        for i in range(n_workers):
            procs.start(f"worker{i + 1}")
        yield procs
    finally:
        procs.stop_all()


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --- the feeder --------------------------------------------------------------------------------------


def producer(settings: Settings) -> KafkaProducer:
    """A producer that rides out a broker outage (retries for 5 minutes, blocks up to 2 minutes)."""
    return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=5,
                         delivery_timeout_ms=300_000, max_block_ms=120_000, max_request_size=2 * 1024 * 1024)


class Feeder(threading.Thread):
    """Good events at ``rate_per_s`` (live event times) and each one's label ``label_delay_s`` later."""

    def __init__(self, settings: Settings, n: int, rate_per_s: float, label_delay_s: float = 1.0,
                 prefix: str = "good", seed: int = 7) -> None:
        super().__init__(daemon=True)
        self.settings, self.n, self.rate, self.delay, self.prefix, self.seed = (
            settings, n, rate_per_s, label_delay_s, prefix, seed)
        self.sent_at: dict[str, float] = {}
        self.entity_of: dict[str, str] = {}  # event id -> entity, for faults aimed at an entity already seen
        self.labels_sent: list[str] = []
        self.error: BaseException | None = None
        self.stopping = False

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the scenario
            self.error = exc

    def _run(self) -> None:
        prod = producer(self.settings)
        events, labels = self.settings.topic("events"), self.settings.topic("labels")
        pending: list[tuple[float, str, bool]] = []
        start = time.monotonic()
        stream = SyntheticStream(kind="hyperplane", n_events=self.n, n_entities=50, seed=self.seed)
        for i, (event, y) in enumerate(stream):
            if self.stopping:
                break
            while (wait := start + i / self.rate - time.monotonic()) > 0:
                time.sleep(min(wait, 0.02))
                self._labels(prod, labels, pending)
            event["id"] = f"{self.prefix}-{i}"
            event["ts"] = time.time()
            prod.send(events, key=event["entity"].encode(), value=orjson.dumps(event))
            self.sent_at[event["id"]] = time.time()
            self.entity_of[event["id"]] = event["entity"]
            pending.append((time.monotonic() + self.delay, event["id"], bool(y)))
            self._labels(prod, labels, pending)
        while pending and not self.stopping:
            time.sleep(0.02)
            self._labels(prod, labels, pending)
        prod.flush(timeout=300)
        prod.close(timeout=30)

    def _labels(self, prod: KafkaProducer, topic: str, pending: list[tuple[float, str, bool]]) -> None:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, event_id, y = pending.pop(0)
            prod.send(topic, key=event_id.encode(), value=orjson.dumps({"id": event_id, "label": y,
                                                                         "ts": time.time()}))
            self.labels_sent.append(event_id)


def send_all(settings: Settings, topic: str, items: list[tuple[str, bytes | None, bytes | None, str | None]]
             ) -> dict[tuple[int, int], tuple[str, str | None]]:
    """Send each ``(kind, key, value, expected)`` and wait for it; (partition, offset) → (kind, expected)."""
    prod = producer(settings)
    try:
        out = {}
        for kind, key, value, expected in items:
            meta = prod.send(settings.topic(topic), key=key, value=value).get(timeout=60)
            out[(meta.partition, meta.offset)] = (kind, expected)
        return out
    finally:
        prod.close(timeout=30)


# --- counting ----------------------------------------------------------------------------------------


def read(settings: Settings, topic: str) -> list[Any]:
    contents = read_whole_topic(settings, topic, timeout_s=120)
    return [v for v in contents.values if isinstance(v, dict)]


def wait_until(done: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(every_s)
    return done()


_SAME = ("prediction", "probabilities", "model", "features")


@dataclass
class Counts:
    """The counts every scenario prints (issue 11)."""

    events_sent: int = 0
    predicted: int = 0
    predicted_twice: int = 0
    duplicates_differ: int = 0
    labels_sent: int = 0
    labels_without_example: int = 0
    examples_duplicated: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    max_gap_s: float = 0.0  # longest stretch without any (first) prediction, from the first to the last
    max_wait_s: float = 0.0  # longest event → first prediction
    restarts_needed: int = 0  # processes that exited by themselves (the suite never restarts those)
    exited: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        dead = ", ".join(f"{r}: {n}" for r, n in sorted(self.dead_letters.items())) or "none"
        return (f"events sent {self.events_sent}, predicted {self.predicted}, predicted twice "
                f"{self.predicted_twice} ({self.duplicates_differ} differ), labels sent {self.labels_sent}, "
                f"labels without example {self.labels_without_example}, examples duplicated "
                f"{self.examples_duplicated}, dead-lettered {sum(self.dead_letters.values())} ({dead}), "
                f"longest prediction gap {self.max_gap_s:.1f} s, longest event→prediction {self.max_wait_s:.1f} s, "
                f"processes that needed a restart {self.restarts_needed}")


def count(settings: Settings, feeder: Feeder, procs: Procs) -> tuple[Counts, dict[str, list[Any]]]:
    """Read ``predictions``, ``examples`` and ``dead-letter`` and count what the feeder's events became."""
    topics = {name: read(settings, name) for name in ("predictions", "examples", "dead-letter")}
    sent = feeder.sent_at
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in topics["predictions"]:
        if p.get("id") in sent:
            by_id[p["id"]].append(p)
    twice = [ps for ps in by_id.values() if len(ps) > 1]
    differ = [ps for ps in twice if any(tuple(p.get(k) for k in _SAME) != tuple(ps[0].get(k) for k in _SAME)
                                        for p in ps[1:])]
    examples = Counter(e.get("id") for e in topics["examples"])
    first = sorted(min(float(p["produced_ts"]) for p in ps) for ps in by_id.values())
    gaps = [b - a for a, b in itertools.pairwise(first)]  # every event is sent before the last one is predicted
    waits = [min(float(p["produced_ts"]) for p in ps) - sent[i] for i, ps in by_id.items()]
    procs.check()
    c = Counts(
        events_sent=len(sent),
        predicted=len(by_id),
        predicted_twice=len(twice),
        duplicates_differ=len(differ),
        labels_sent=len(feeder.labels_sent),
        labels_without_example=sum(1 for i in feeder.labels_sent if i in by_id and not examples.get(i)),
        examples_duplicated=sum(1 for i, n in examples.items() if n > 1 and i in sent),
        dead_letters=dict(Counter(str(d.get("reason")) for d in topics["dead-letter"])),
        max_gap_s=max(gaps, default=0.0),
        max_wait_s=max(waits, default=0.0),
        restarts_needed=len(procs.exits),
        exited=dict(procs.exits),
    )
    return c, topics
