"""The peer benchmark's I/O: topics, preloads, paced publishing, and each system as a child process.

freshet is driven only through its public surface (``freshet worker`` / ``freshet learn`` started by
``streams.ops.procs``, ``FRESHET_*`` settings, its topics and ``/metrics``), so the harness keeps working when
the worker's insides change. The peers (Quix Streams, Bytewax) run ``bench/peers/*_job.py`` in their own
venv; the ceiling runs ``bench.peers.ceiling_job`` in the project's venv.

Method (../shared/research/peers-2026-12-01.md): throughput = N preloaded events (for job B each followed
by its label) over the span from the system's first consumption to the broker append time of its last
output; latency = output append time - input append time on fresh ``LogAppendTime`` topics, after 20
warm-up events, at fixed rates. Every wait is bounded: a system that stalls gets a figure of what it did
and a note.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from bench import measure
from bench.peers.job import EntityWindows, load_model, model_input, read_status
from producers.synthetic import SyntheticStream
from streams.ops import procs
from streams.ops.services import ensure_topics, free_port
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PEER_SPEC = Path(__file__).resolve().parent / "peer_spec.toml"
DEMO_SPEC = ROOT / "pipelines" / "demo.toml"
N_ENTITIES = 1000
WARMUP_EVENTS = 20
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}

Item = tuple[dict[str, Any], bool]  # (event, label)


@dataclass(frozen=True)
class Config:
    """How big and how long each run is (``--quick`` shrinks it)."""

    n_events: int = 20_000
    latency_s: float = 15.0
    latency_cap: int = 40_000
    start_timeout_s: float = 120.0
    run_timeout_s: float = 200.0  # one throughput run, from the system's readiness
    drain_timeout_s: float = 45.0  # outputs of a latency phase, after its last event was sent
    partitions: int = 4

    @classmethod
    def quick(cls) -> Config:
        return cls(n_events=4_000, latency_s=5.0, latency_cap=10_000, run_timeout_s=90.0, drain_timeout_s=30.0)


# --- data ------------------------------------------------------------------------------------------


def stream_items(n: int, seed: int = 3, start_ts: float | None = None, step_s: float = 0.01) -> list[Item]:
    """The job's events: a seeded Hyperplane (x1..x5, boolean label), 1000 entities, in event-time order."""
    start = time.time() - n * step_s if start_ts is None else start_ts
    stream = SyntheticStream(
        kind="hyperplane", n_events=n, n_entities=N_ENTITIES, seed=seed, start_ts=start, step_s=step_s
    )
    return list(stream)


def train_model(path: Path, n: int = 1000) -> Path:
    """``StandardScaler | LogisticRegression`` (River's defaults, freshet's ``logistic_regression``)
    trained on 1000 examples with the job's features, pickled once for every system."""
    from models.factories import logistic_regression

    model = logistic_regression()
    windows: dict[str, EntityWindows] = {}
    for event, label in stream_items(n, seed=3, start_ts=1_700_000_000.0):
        w = windows.setdefault(event["entity"], EntityWindows())
        x = model_input(event, w.update(event["ts"], event["x1"], event["x2"]))
        model.learn_one(dict(x), label)  # type: ignore[arg-type]  # River types x as dict[Hashable, Any]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(model))
    return path


# --- Kafka -----------------------------------------------------------------------------------------


def create_topics(bootstrap: str, names: list[str], partitions: int, configs: dict[str, str] | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="freshet-bench")
    try:
        admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}) for t in names]
        )
    finally:
        admin.close()


def _producer(bootstrap: str, linger_ms: int) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=linger_ms, batch_size=256 * 1024)


def label_record(event: dict[str, Any], label: bool, delay_s: float) -> bytes:
    return orjson.dumps({"id": event["id"], "label": label, "ts": event["ts"] + delay_s})


def preload(bootstrap: str, events_topic: str, labels_topic: str | None, items: list[Item]) -> None:
    """Every event (and, for job B, its label right after it) into Kafka before the system starts."""
    prod = _producer(bootstrap, linger_ms=20)
    for event, label in items:
        prod.send(events_topic, key=event["entity"].encode(), value=orjson.dumps(event))
        if labels_topic is not None:
            prod.send(labels_topic, key=event["id"].encode(), value=label_record(event, label, 0.0))
    prod.flush(timeout=120)
    prod.close()


class Publisher:
    """Paced events (and labels) through ``bench/peers/publish_job.py`` in the peers' venv (confluent-kafka:
    a pure-Python producer cannot offer the fastest systems half their maximum on these cores)."""

    def __init__(
        self, python: Path, bootstrap: str, events_topic: str, labels_topic: str | None, items: Path
    ) -> None:
        self.python, self.items = python, items
        self.config = {"bootstrap": bootstrap, "events": events_topic, "labels": labels_topic, "items": str(items)}

    def send(self, phase: str, n: int, rate_per_s: float) -> tuple[list[str], float]:
        """Send ``n`` events of ``phase`` (ids ``phase-i``); returns their ids and the rate achieved."""
        config = {**self.config, "phase": phase, "n": n, "rate": rate_per_s}
        timeout_s = 60.0 + n / rate_per_s * 3
        done = subprocess.run(
            [str(self.python), str(PEERS_DIR / "publish_job.py"), orjson.dumps(config).decode()],
            check=True, capture_output=True, timeout=timeout_s,
        )
        report = orjson.loads(done.stdout.splitlines()[-1])
        return [f"{phase}-{i}" for i in range(n)], float(report["rate"])


def write_items(path: Path, n: int, seed: int = 11) -> Path:
    """The latency runs' events and labels (ids and times are stamped when sent), one JSON pair a line."""
    with path.open("wb") as out:
        for event, label in stream_items(n, seed=seed, start_ts=0.0):
            out.write(orjson.dumps([event, label]) + b"\n")
    return path


def messages_written(bootstrap: str, prefix: str, inputs: list[str]) -> dict[str, int]:
    """Messages in every topic whose name holds ``prefix`` (inputs left out): outputs and changelogs
    (Quix names them ``changelog__<group>--<topic>--<store>``, Faust ``<app_id>-<table>-changelog``)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        out: dict[str, int] = {}
        for topic in sorted(t for t in consumer.topics() if prefix in t and t not in inputs):
            parts = consumer.partitions_for_topic(topic) or set()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            out[topic.replace(prefix, "").strip("-_") or topic] = sum(ends.values())
        return out
    finally:
        consumer.close()


class TopicTail:
    """Follows a topic from its start with no consumer group: counts what is there, reads what is new."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        self.topic = topic
        self.tps: list[TopicPartition] = []
        self.first_ts: dict[str, float] = {}  # event id → first append time (s)
        self.records = 0

    def _assign(self) -> bool:
        if not self.tps:
            parts = self.consumer.partitions_for_topic(self.topic)
            if not parts:
                return False
            self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            self.consumer.assign(self.tps)
            self.consumer.seek_to_beginning(*self.tps)
        return True

    def end_total(self) -> int:
        """Messages in the topic now (cheap: no data is read)."""
        if not self._assign():
            return 0
        return sum(self.consumer.end_offsets(self.tps).values())

    def read_new(self, timeout_s: float = 30.0) -> int:
        """Read up to the end offsets as of now; returns how many records came."""
        if not self._assign():
            return 0
        end = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout_s
        n = 0
        while any(self.consumer.position(tp) < end[tp] for tp in self.tps) and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=200, max_records=20_000).values():
                for r in records:
                    n += 1
                    try:
                        key = str(orjson.loads(r.value)["id"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
                    self.first_ts.setdefault(key, r.timestamp / 1000.0)
        self.records += n
        return n

    def close(self) -> None:
        self.consumer.close()


# --- the systems -----------------------------------------------------------------------------------


@dataclass
class Topics:
    events: str
    labels: str | None
    output: str


class System:
    """One system running one job in one phase; subclasses start and stop the processes."""

    name: str
    job: str
    topics: Topics
    notes: list[str]

    @property
    def prefix(self) -> str:
        """Every topic this run writes (outputs, changelogs) starts with this."""
        return self.topics.events.removesuffix("events")

    def create_topics(self, bootstrap: str, partitions: int) -> None:
        names = [self.topics.events, self.topics.output] + ([self.topics.labels] if self.topics.labels else [])
        create_topics(bootstrap, names, partitions, LOG_APPEND)

    def start(self, timeout_s: float) -> None: ...

    def first_consumption_s(self) -> float | None:
        return None

    def learned(self) -> tuple[int, float | None]:
        """Examples learned so far, and when the N-th one was learned (None until then)."""
        return 0, None

    def alive(self) -> bool:
        return False

    def stop(self) -> None: ...


def _stop(proc: subprocess.Popen[bytes]) -> None:
    procs.stop(proc, timeout_s=15.0)


@dataclass
class PeerSystem(System):
    """quix / bytewax in the peers' venv, or the ceiling in the project's venv."""

    name: str
    job: str
    topics: Topics
    run_dir: Path
    bootstrap: str
    python: Path
    model: Path
    learn_target: int = 0
    notes: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def status_path(self) -> Path:
        return self.run_dir / "status.jsonl"

    def start(self, timeout_s: float) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "bootstrap": self.bootstrap,
            "events": self.topics.events,
            "labels": self.topics.labels,
            "output": self.topics.output,
            "model": str(self.model),
            "status": str(self.status_path),
            "learn_target": self.learn_target,
            "group": f"{self.prefix}group",  # Quix names its changelog topics after it
            "state_dir": str(self.run_dir / "state"),
        }
        if self.name == "ceiling":
            cmd = [sys.executable, "-m", "bench.peers.ceiling_job", orjson.dumps(config).decode()]
        else:
            cmd = [str(self.python), str(PEERS_DIR / f"{self.name}_job.py"), orjson.dumps(config).decode()]
        log = (self.run_dir / "process.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout_s
        while not any(s["kind"] == "ready" for s in read_status(self.status_path)):
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.run_dir}/process.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout_s:.0f} s")
            time.sleep(0.1)

    def first_consumption_s(self) -> float | None:
        return next((s["t"] for s in read_status(self.status_path) if s["kind"] == "first"), None)

    def learned(self) -> tuple[int, float | None]:
        lines = [s for s in read_status(self.status_path) if s["kind"] == "learned"]
        n = max((s["n"] for s in lines), default=0)
        done = next((s["t"] for s in lines if s["n"] >= self.learn_target), None) if self.learn_target else None
        return n, done

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@dataclass
class FreshetSystem(System):
    """``freshet worker`` (and ``freshet learn`` for job B) with a spec; readiness from its /metrics."""

    name: str
    job: str
    settings: Settings
    run_dir: Path
    model: Path
    learn_target: int = 0
    notes: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ready_s: float | None = None
    done_s: float | None = None

    @property
    def topics(self) -> Topics:  # type: ignore[override]
        s = self.settings
        return Topics(s.topic("events"), s.topic("labels") if self.job == "b" else None, s.topic("predictions"))

    @property
    def prefix(self) -> str:
        return self.settings.app_id  # its topics and Faust's changelogs (``<app_id>-<table>-changelog``)

    def create_topics(self, bootstrap: str, partitions: int) -> None:
        s = self.settings
        # Input and output on broker time; the rest of freshet's topics as freshet makes them.
        create_topics(bootstrap, [s.topic("events"), s.topic("labels"), s.topic("predictions")], partitions, LOG_APPEND)
        ensure_topics(s)

    def start(self, timeout_s: float) -> None:
        save_version_one(self.settings, self.model)
        logs = self.run_dir
        self.procs["worker"] = procs.spawn(self.settings, "worker", log_path=logs / "worker.log")
        if self.job == "b":
            self.procs["learner"] = procs.spawn(self.settings, "learn", log_path=logs / "learner.log")
        deadline = time.monotonic() + timeout_s
        url = procs.worker_url(self.settings)
        while self.ready_s is None:
            if not self.alive():
                raise RuntimeError(f"freshet exited; see {logs}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the freshet worker was not ready within {timeout_s:.0f} s; see {logs}")
            try:
                if procs.scrape(url).get("freshet_worker_ready") == 1.0:
                    self.ready_s = time.time()
            except OSError:
                pass
            time.sleep(0.05)
        if self.job == "b":
            procs.wait_http(procs.learner_url(self.settings), timeout_s, self.procs["learner"])

    def first_consumption_s(self) -> float | None:
        # The worker's readiness (partitions assigned, polled at 20 Hz) stands for its first consumption:
        # freshet does not report the latter, so its figure includes the time to its first fetch.
        return self.ready_s

    def learned(self) -> tuple[int, float | None]:
        try:
            metrics = procs.scrape(procs.learner_url(self.settings))
        except OSError:
            return 0, self.done_s
        n = int(sum(v for k, v in metrics.items() if k.startswith("freshet_examples_learned_total")))
        if self.learn_target and n >= self.learn_target and self.done_s is None:
            self.done_s = time.time()
        return n, self.done_s

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            _stop(proc)


def save_version_one(settings: Settings, model_path: Path) -> None:
    """Make the pickled model version 1 of every slot (its champion; challengers start fresh), as a
    warm start does, so the worker serves it from its first event and the learner goes on from it."""
    from models.champion import ModelGroup
    from models.learner import Learner
    from streams.runtime.connections import open_registry
    from streams.runtime.learner_loop import load_slots

    _, slots = load_slots(settings)
    registry = open_registry(settings)
    for slot_def in slots:
        group = ModelGroup(slot_def, rolling_window=settings.rolling_window)
        group.reset_model(group.champion, load_model(model_path))
        meta = Learner(group, registry, name=slot_def.slot).snapshot()
        if meta.version != 1:
            raise RuntimeError(f"slot {slot_def.slot} already had versions (got {meta.ref}); use a fresh app id")


# --- runs ------------------------------------------------------------------------------------------


def _wait(cond: Callable[[], bool], system: System, deadline: float, every_s: float = 0.25) -> bool:
    while not cond():
        if time.monotonic() > deadline or not system.alive():
            return False
        time.sleep(every_s)
    return True


def run_throughput(system: System, bootstrap: str, cfg: Config) -> dict[str, Any]:
    """N preloaded events (job B: each followed by its label); the system starts; events/s from its
    first consumption to the broker append time of its last output (B: also until the N-th learn)."""
    n = cfg.n_events
    system.create_topics(bootstrap, cfg.partitions)
    preload(bootstrap, system.topics.events, system.topics.labels, stream_items(n))
    tail = TopicTail(bootstrap, system.topics.output)
    out: dict[str, Any] = {}
    try:
        system.start(cfg.start_timeout_s)
        deadline = time.monotonic() + cfg.run_timeout_s
        if not _wait(lambda: tail.end_total() >= n, system, deadline):
            system.notes.append(f"throughput: {tail.end_total()} of {n} outputs within {cfg.run_timeout_s:.0f} s")
        if system.job == "b":
            done = _wait(lambda: system.learned()[1] is not None, system, deadline, every_s=0.1)
            learned, done_s = system.learned()
            out["learned"] = learned
            if done:
                out["loop_events_per_s"] = _round(measure.rate(n, system.first_consumption_s(), done_s))
            else:
                # Stalled or slow: the rate of what it learned until the deadline, and a note saying so.
                out["loop_events_per_s"] = _round(measure.rate(learned, system.first_consumption_s(), time.time()))
                system.notes.append(
                    f"loop: {learned} of {n} learned within {cfg.run_timeout_s:.0f} s (rate of those)"
                )
    finally:
        system.stop()
    tail.read_new(timeout_s=60)
    tail.close()
    first = system.first_consumption_s()
    outputs = len(tail.first_ts)
    last = max(tail.first_ts.values(), default=None)
    out["events_per_s"] = _round(measure.rate(outputs, first, last))
    out["outputs"] = outputs
    inputs = [system.topics.events, system.topics.labels or ""]
    written = messages_written(bootstrap, system.prefix, inputs)
    out["msgs_written_per_event"] = round(sum(written.values()) / n, 3)
    out["msgs_written"] = written
    if first is not None and tail.first_ts:
        out["first_output_after_s"] = round(min(tail.first_ts.values()) - first, 3)
    return out


def run_latency(
    system: System, bootstrap: str, cfg: Config, rates: dict[str, float], python: Path, items: Path
) -> dict[str, Any]:
    """Fresh topics; 20 warm-up events awaited; then each rate for ``cfg.latency_s`` (capped), one after
    the other, each phase's outputs awaited (bounded) before the next (the bench gives each rate its own
    system and topics)."""
    system.create_topics(bootstrap, cfg.partitions)
    out: dict[str, Any] = {}
    publisher = Publisher(python, bootstrap, system.topics.events, system.topics.labels, items)
    ins, outs = TopicTail(bootstrap, system.topics.events), TopicTail(bootstrap, system.topics.output)
    try:
        system.start(cfg.start_timeout_s)

        def await_ids(ids: list[str], timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while True:
                outs.read_new()
                if all(i in outs.first_ts for i in ids):
                    return True
                if time.monotonic() > deadline or not system.alive():
                    return False
                time.sleep(0.25)

        ids, _ = publisher.send("warmup", WARMUP_EVENTS, 50.0)
        if not await_ids(ids, cfg.start_timeout_s):
            system.notes.append("latency: warm-up outputs did not all come")
        for phase, rate_per_s in rates.items():
            n = max(1, min(cfg.latency_cap, int(rate_per_s * cfg.latency_s)))
            ids, achieved = publisher.send(phase, n, rate_per_s)
            complete = await_ids(ids, cfg.drain_timeout_s)
            ins.read_new()
            lat = measure.latencies_ms({i: ins.first_ts[i] for i in ids if i in ins.first_ts}, outs.first_ts)
            summary = measure.summarize_latency(lat, n)
            summary.update(rate_offered=round(rate_per_s, 1), rate_sent=round(achieved, 1), events=n)
            out[phase] = summary
            if not complete:
                system.notes.append(
                    f"{phase}: {summary['missing']} of {n} outputs missing "
                    f"{cfg.drain_timeout_s:.0f} s after the last event"
                )
            if achieved < 0.9 * rate_per_s:
                system.notes.append(f"{phase}: the publisher reached {achieved:,.0f} of {rate_per_s:,.0f} events/s")
    finally:
        system.stop()
        ins.close()
        outs.close()
    return out


def run_learner_alone(base: Settings, run_dir: Path, model: Path, cfg: Config) -> dict[str, Any]:
    """``freshet learn`` alone with the demo spec (two models, drift on) over N preloaded examples in
    freshet's format; examples/s from its first learned example to its N-th (its /metrics at 20 Hz)."""
    from streams.core.inputs import model_input as freshet_input
    from streams.core.partitions import partition_for
    from streams.features import FeatureEngine
    from streams.records import Example, encode
    from streams.spec import PipelineSpec

    settings = with_run(base, "learner", spec=DEMO_SPEC)
    ensure_topics(settings)
    spec = PipelineSpec.load(DEMO_SPEC)
    engine = FeatureEngine(spec.features)
    states: dict[str, Any] = {}
    n = cfg.n_events
    prod = _producer(settings.kafka_bootstrap, linger_ms=20)
    part = partition_for("default", settings.partitions)
    for event, label in stream_items(n):
        state = states.setdefault(event["entity"], engine.new_state())
        fields = {f: event[f] for f in ("x1", "x2", "x3", "x4", "x5")}
        values = engine.update(state, event["ts"], fields).values
        ex = Example(
            id=event["id"], entity=event["entity"], slot="default", features=dict(freshet_input(fields, values)),
            label=label, event_ts=event["ts"], label_ts=event["ts"],
        )
        prod.send(settings.topic("examples"), key=b"default", value=encode(ex.to_dict()), partition=part)
    prod.flush(timeout=120)
    prod.close()
    save_version_one(settings, model)
    proc = procs.spawn(settings, "learn", log_path=run_dir / "learner" / "learner.log")
    url = procs.learner_url(settings)
    first: tuple[float, int] | None = None
    done_s: float | None = None
    deadline = time.monotonic() + cfg.run_timeout_s
    try:
        while done_s is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                metrics = procs.scrape(url)
            except OSError:
                time.sleep(0.05)
                continue
            now = time.time()
            count = int(sum(v for k, v in metrics.items() if k.startswith("freshet_examples_learned_total")))
            if count and first is None:
                first = (now, count)
            if count >= n:
                done_s = now
            time.sleep(0.05)
    finally:
        procs.stop(proc)
    result: dict[str, Any] = {"n_examples": n}
    if first is not None and done_s is not None and done_s > first[0]:
        result["learner_examples_per_s"] = round((n - first[1]) / (done_s - first[0]), 1)
    else:
        result["learner_examples_per_s"] = None
        result["learner_note"] = f"the learner did not learn {n} examples within {cfg.run_timeout_s:.0f} s"
    return result


def with_run(base: Settings, run: str, spec: Path) -> Settings:
    """Fresh names for one freshet run: app id (registry, changelogs), topic prefix, metrics ports."""
    while True:
        port = free_port()
        if port < 65535 and not _port_busy(port + 1):
            break
    tag = f"{base.app_id}-{run}"
    return base.with_(app_id=tag, topic_prefix=f"{tag}-", spec_path=spec, metrics_port=port)


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None

