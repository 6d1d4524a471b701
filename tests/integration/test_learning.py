"""Acceptance tests of continual learning through the real broker: River parity, crashes, promotion, rollback.

Each test runs ``freshet worker`` (and ``freshet learn``) as child processes against the session's Kafka and
Redis (tests/conftest.py), drives them with kafka-python, and reads what they publish. Every wait is
bounded and every process started here is stopped here.

Ordering (what the parity tests rely on). The learner learns ``examples`` in offset order; the join emits
an example when the second of (prediction, label) reaches it, and predictions and labels are spread over
four partitions each, so labels sent in a burst become examples in an order Kafka does not fix. The parity
tests therefore send each label only after its prediction has come out on ``predictions`` *and* the
previous label's example has come out on ``examples``: the learner sees the dataset's order, as
``progressive_val_score`` does, and every label is still published right after its own prediction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaProducer
from river import evaluate, metrics

from models.champion import ModelGroup
from models.factories import logistic_regression
from models.learner import Learner
from models.registry import InMemoryRegistryStore, Registry, SnapshotError
from producers.publish import make_producer, publish
from producers.synthetic import FIELDS, SyntheticStream
from streams.ops.procs import scrape, spawn, stop, wait_http
from streams.ops.readers import TopicReader, end_offsets, read_until
from streams.records import Example
from streams.runtime.connections import open_registry
from streams.runtime.hot_swap import load_champion
from streams.runtime.learner_loop import load_slots, partition_for
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, wait_metric, with_ports, worker_url

pytestmark = pytest.mark.integration

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
PHISHING_SPEC = PIPELINES / "phishing.toml"
PROMOTION_SPEC = PIPELINES / "promotion.toml"
SLOT = "default"
STEP_S = 0.1  # event-time step between events (labels carry event time + their delay)

Item = tuple[dict[str, Any], Any]  # (event, label) as producers.synthetic yields them


# --- data and references -------------------------------------------------------------------------------


def stream_items(kind: str, n: int, seed: int = 42) -> list[Item]:
    """``n`` events of a producers.synthetic stream, all in the past (the spec refuses future events)."""
    start = time.time() - n * STEP_S - 60.0
    return list(SyntheticStream(kind=kind, n_events=n, n_entities=50, seed=seed, start_ts=start, step_s=STEP_S))


def features(event: dict[str, Any]) -> dict[str, float]:
    """The model input the worker builds for an event of a spec without windowed features."""
    kind = event["id"].split("-", 1)[0]
    return {name: float(event[name]) for name in FIELDS[kind]}


def progressive_accuracy(items: list[Item], delay: int | None) -> float:
    """River's reference: ``progressive_val_score`` of StandardScaler | LogisticRegression (River's defaults)."""
    metric = metrics.Accuracy()
    dataset = [(features(event), label) for event, label in items]
    evaluate.progressive_val_score(dataset, logistic_regression(), metric, delay=delay)
    return float(metric.get())


def with_ids(items: list[Item], tag: str) -> list[Item]:
    """The same events under new ids (a second batch of predictions must not collide with the first)."""
    return [({**event, "id": f"{event['id']}-{tag}"}, label) for event, label in items]


# --- driving the processes -----------------------------------------------------------------------------


def send_event(producer: KafkaProducer, s: Settings, event: dict[str, Any]) -> None:
    producer.send(s.topic("events"), key=event["entity"].encode(), value=orjson.dumps(event))


def send_label(producer: KafkaProducer, s: Settings, event: dict[str, Any], label: Any, delay_s: float) -> None:
    record = {"id": event["id"], "label": label, "ts": event["ts"] + delay_s}
    producer.send(s.topic("labels"), key=event["id"].encode(), value=orjson.dumps(record))


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.005) -> Any:
    """Poll ``condition`` until it is truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
    return value


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in scrape(url).items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


def served_version(s: Settings) -> int:
    """The version of the default slot the worker serves now (0: the untrained champion)."""
    return int(metric(worker_url(s), "freshet_model_version", model=SLOT, role="predict"))


class Follow:
    """A topic read from its beginning as the test goes on; values are indexed by their ``id``."""

    def __init__(self, s: Settings, name: str) -> None:
        self.reader = TopicReader(s, name)
        self.records: list[tuple[str | None, Any, dict[str, Any]]] = []
        self.by_id: dict[str, Any] = {}

    def poll(self) -> None:
        for record in self.reader.poll(0.05):
            self.records.append(record)
            value = record[1]
            if isinstance(value, dict) and "id" in value:
                self.by_id.setdefault(value["id"], value)

    def until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
            self.poll()

    def value_of(self, record_id: str, timeout_s: float) -> Any:
        """The first value with this ``id`` (waiting for it)."""
        self.until(lambda: record_id in self.by_id, timeout_s, f"{record_id} on {self.reader.topic}")
        return self.by_id[record_id]

    def wait_count(self, n: int, timeout_s: float) -> None:
        self.until(lambda: len(self.records) >= n, timeout_s, f"{n} records on {self.reader.topic}")

    def wait_version(self, version: int, timeout_s: float) -> None:
        """Until a ``model-versions`` record announces ``version`` or a later one."""
        self.until(
            lambda: max((v["version"] for _, v, _ in self.records), default=0) >= version,
            timeout_s,
            f"version {version} on {self.reader.topic}",
        )

    def close(self) -> None:
        self.reader.close()


@contextmanager
def following(s: Settings, *names: str) -> Iterator[list[Follow]]:
    readers = [Follow(s, name) for name in names]
    try:
        yield readers
    finally:
        for reader in readers:
            reader.close()


@contextmanager
def producing(s: Settings) -> Iterator[KafkaProducer]:
    producer = make_producer(s, linger_ms=0)  # lockstep tests send one message at a time
    try:
        yield producer
    finally:
        producer.close(timeout=10)


def freshet_cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m streams ARGS`` with the settings as environment (as streams.ops.procs.spawn runs it)."""
    env = {**os.environ, **s.to_env(), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, text=True, timeout=120
    )


def proba_of(prediction: dict[str, Any]) -> dict[bool, float]:
    """A prediction's probabilities keyed by class again (JSON made the booleans "true"/"false")."""
    return {key == "true": value for key, value in prediction["probabilities"].items()}


def slot_def(s: Settings) -> Any:
    _, slots = load_slots(s)
    return slots[0]


def group_at(registry: Registry, s: Settings, version: int | None = None) -> ModelGroup:
    """A slot's model group as saved in the registry (verified), at a version or the current one."""
    state, _ = registry.load(SLOT, version)
    return ModelGroup.from_state(state, slot_def(s))


def read_all(s: Settings, name: str) -> list[tuple[str | None, Any, dict[str, Any]]]:
    """Every record a topic holds now."""
    total = sum(end_offsets(s, name).values())
    records = read_until(s, name, done=lambda r: len(r) >= total, timeout_s=30)
    assert len(records) == total, f"read {len(records)} of the {total} records on {name}"
    return records


# --- 1. parity with River ------------------------------------------------------------------------------


def test_learner_accuracy_on_phishing_equals_progressive_val_score(settings: Settings, tmp_path: Path) -> None:
    """Labels right after each prediction: the learner's test-then-train accuracy is River's figure.

    The learner scores each example with the model that has learned every earlier example, so its
    cumulative accuracy is ``progressive_val_score`` without delay (0.8928, DESIGN.md "Measuring") once
    it learns the examples in the dataset's order (see the module docstring). ``snapshot_every`` divides
    1250 so that the learner's last metric snapshot is taken after the last example. (The worker's
    served accuracy is not comparable here: every event is predicted before the first label comes, by
    the untrained version 0; the next test is about served predictions.)
    """
    items = stream_items("phishing", 1250)
    n = len(items)
    reference = progressive_accuracy(items, delay=None)
    s = with_ports(settings, spec=PHISHING_SPEC, snapshot_every=250)
    with running(s, logs=tmp_path), producing(s) as producer, following(s, "predictions", "examples") as (
        predictions,
        examples,
    ):
        for event, _ in items:  # the events go out at once; the worker predicts at its own pace
            send_event(producer, s, event)
        producer.flush()
        for i, (event, label) in enumerate(items):
            predictions.value_of(event["id"], 60)
            send_label(producer, s, event, label, delay_s=0.0)
            producer.flush()
            examples.wait_count(i + 1, 30)  # before the next label: the examples keep the dataset's order

        assert wait_metric(learner_url(s), "freshet_examples_learned_total", n, 60) == n
        snapshots = read_until(
            s,
            "metrics",
            done=lambda r: any(v["model"] == f"{SLOT}/lr" and v["n"] == n for _, v, _ in r),
            timeout_s=60,
        )
        learner_accuracy = metric(
            learner_url(s), "freshet_online_metric", metric="accuracy", model=f"{SLOT}/lr", scope="cumulative"
        )
        served_accuracy = metric(
            worker_url(s), "freshet_online_metric", metric="accuracy", model=SLOT, scope="served_cumulative"
        )

    # The learner saw the dataset's order, from the one partition its slot's examples go to.
    assert [v["id"] for _, v, _ in examples.records] == [e["id"] for e, _ in items]
    assert {meta["partition"] for _, _, meta in examples.records} == {partition_for(SLOT, s.partitions)}
    assert {key for key, _, _ in examples.records} == {SLOT}
    last = max((v for _, v, _ in snapshots if v["model"] == f"{SLOT}/lr"), key=lambda v: v["n"])
    print(
        f"\nphishing: progressive_val_score {reference:.4f}, learner /metrics {learner_accuracy:.4f}, "
        f"metrics topic {last['metrics']['accuracy']:.4f}, served (lagging versions) {served_accuracy:.4f}"
    )
    assert reference == pytest.approx(0.8928, abs=1e-9)  # River 0.26.1's figure, DESIGN.md "Measuring"
    assert learner_accuracy == pytest.approx(reference, abs=0.005)
    assert last["metrics"]["accuracy"] == pytest.approx(reference, abs=0.005)
    assert last["metrics"]["n"] == n


DELAY = 25  # label delay, in events
N_DELAYED = 400  # one swap per example makes this test slow: the first 400 rows say as much as 1250


def test_served_accuracy_with_label_delay_equals_progressive_val_score(settings: Settings, tmp_path: Path) -> None:
    """With a label delay of k events, the *served* predictions are River's ``delay=k`` predictions.

    What is compared. ``progressive_val_score(delay=k)`` predicts x_t with the model that has learned
    x_0 .. x_{t-k} (``river.stream.simulate_qa`` reveals label i before question i + k), and scores that
    prediction when its label comes. In freshet that prediction is the one the worker *serves*, scored by
    the worker on the joined label (``scope="served_cumulative"``); the learner's own accuracy is
    test-then-train at learning time and is the no-delay figure whatever the delay.

    A served model lags its labels by the delay *plus* the time until the learner publishes a version
    and the worker swaps it in. With ``snapshot_every=1`` and the next event sent only once the worker
    serves the version that has learned label t-k, that extra lag is zero and the served model at event
    t is version t-k+1 (asserted per prediction). The served predictions are then River's, bit for bit,
    and the tolerance could be 0; it is 0.005 as for the learner's figure. With ``snapshot_every=S`` the
    served model lags a further 0 .. S-1 examples, which no fixed ``delay`` reproduces.
    """
    items = stream_items("phishing", N_DELAYED)
    n, k = len(items), DELAY
    s = with_ports(settings, spec=PHISHING_SPEC, snapshot_every=1)
    # River's predictions under simulate_qa with delay k, one per event.
    river_model, expected = logistic_regression(), []
    for t, (event, _) in enumerate(items):
        if t - k >= 0:
            river_model.learn_one(features(items[t - k][0]), items[t - k][1])
        expected.append(river_model.predict_proba_one(features(event)))
    served_reference = progressive_accuracy(items, delay=k)
    learner_reference = progressive_accuracy(items, delay=None)

    with running(s, logs=tmp_path), producing(s) as producer, following(s, "predictions", "model-versions") as (
        predictions,
        versions,
    ):
        for t in range(n + k):
            if t - k >= 0:  # first reveal the label that is due, as simulate_qa does
                event, label = items[t - k]
                send_label(producer, s, event, label, delay_s=k * STEP_S)
                producer.flush()
                version = t - k + 1  # the learner's version once it has learned this label
                versions.wait_version(version, 30)
                # Then the worker's swap; /metrics shares the worker's interpreter, so scrape only now.
                wait_until(lambda v=version: served_version(s) >= v, 30, f"the worker to serve v{version}", 0.01)
            if t < n:
                event = items[t][0]
                send_event(producer, s, event)
                producer.flush()
                predictions.value_of(event["id"], 30)
        served_accuracy = metric(
            worker_url(s), "freshet_online_metric", metric="accuracy", model=SLOT, scope="served_cumulative"
        )
        assert wait_metric(learner_url(s), "freshet_examples_learned_total", n, 30) == n
        learner_accuracy = metric(
            learner_url(s), "freshet_online_metric", metric="accuracy", model=f"{SLOT}/lr", scope="cumulative"
        )

    served = [predictions.by_id[event["id"]] for event, _ in items]
    assert [p["model"] for p in served] == [f"lr@{max(0, t - k + 1)}" for t in range(n)]
    assert [proba_of(p) for p in served] == expected  # River's numbers exactly
    print(
        f"\nphishing[:{n}], label delay {k} events: served {served_accuracy:.4f} vs progressive_val_score("
        f"delay={k}) {served_reference:.4f}; learner {learner_accuracy:.4f} vs no delay {learner_reference:.4f}"
    )
    assert served_reference < learner_reference  # the delay is visible in the reference
    assert served_accuracy == pytest.approx(served_reference, abs=0.005)
    assert learner_accuracy == pytest.approx(learner_reference, abs=0.005)


# --- 2. crashes ----------------------------------------------------------------------------------------

N_CRASH = 4000  # events, each labelled right after it
CRASH_RATE = 250.0  # events/s: the run lasts 16 s, time for the learner to die and come back four times
CRASH_SNAPSHOT_EVERY = 200
KILLS = 4


def test_learner_killed_repeatedly_ends_with_the_model_of_an_uninterrupted_run(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL the learner mid-interval four times; its last snapshot equals an uninterrupted run's.

    (The last learner is stopped with SIGTERM at the end and snapshots on shutdown, as does the reference.)

    The kills are spread over the run (past 1/5, 2/5, ... of the examples), each when the learner has
    learned at least 20 examples past its last snapshot, so the lives lose work that the next one must
    learn again from the snapshot's offset (asserted). The group (LR champion, HAT challenger) is
    promoted on the way, so the promotion too must survive the crashes. The uninterrupted run is
    models.learner.Learner in this process, fed the ``examples`` topic in offset order with the same
    snapshot interval. Both final snapshots must hold the
    same champion, offsets, metrics and promotions, and every model must give the same probabilities on
    a probe set.
    """
    s = with_ports(settings, spec=PROMOTION_SPEC, snapshot_every=CRASH_SNAPSHOT_EVERY)
    items = stream_items("agrawal", N_CRASH, seed=7)
    probes = [features(e) for e, _ in stream_items("agrawal", 300, seed=99)]
    registry = open_registry(s)

    def learned_in_registry() -> int:
        meta = registry.current(SLOT)
        return meta.examples_learned if meta is not None else 0

    kills: list[dict[str, int]] = []
    with running(s, learner=False, logs=tmp_path):
        publisher = threading.Thread(target=publish, args=(s, items), kwargs={"rate_per_s": CRASH_RATE}, daemon=True)
        publisher.start()
        learner = spawn(s, "learn", log_path=tmp_path / "learner-0.log")
        try:
            resumed_at = 0  # the snapshot each life restores: the last one its predecessor saved
            for life in range(KILLS):
                wait_http(learner_url(s), 60, learner)

                threshold = N_CRASH * (life + 1) // (KILLS + 1)  # kills spread over the run

                def between_snapshots(resumed_at: int = resumed_at, threshold: int = threshold) -> int | None:
                    """How far this life got, once past the threshold and 20 examples past its last snapshot."""
                    reached = resumed_at + int(metric(learner_url(s), "freshet_examples_learned_total"))
                    return reached if reached >= threshold and reached - learned_in_registry() >= 20 else None

                reached = wait_until(between_snapshots, 60, f"life {life} to pass {threshold} between snapshots", 0.02)
                os.kill(learner.pid, signal.SIGKILL)
                learner.wait(timeout=10)
                kills.append({"resumed_at": resumed_at, "reached": reached, "saved": learned_in_registry()})
                resumed_at = kills[-1]["saved"]
                learner = spawn(s, "learn", log_path=tmp_path / f"learner-{life + 1}.log")
            publisher.join(timeout=60)
            assert not publisher.is_alive(), "the publisher did not finish"
            wait_http(learner_url(s), 60, learner)
            wait_until(
                lambda: resumed_at + metric(learner_url(s), "freshet_examples_learned_total") >= N_CRASH,
                120,
                f"the last learner to reach {N_CRASH} examples",
                0.1,
            )
        finally:
            stop(learner)
        crashed_meta = registry.current(SLOT)
        assert crashed_meta is not None
        crashed = group_at(registry, s, crashed_meta.version)
        examples = read_until(s, "examples", done=lambda r: len(r) >= N_CRASH, timeout_s=60)

    # The uninterrupted run, on the same examples in the same (offset) order.
    reference_registry = Registry(InMemoryRegistryStore(), "reference")
    reference = Learner(ModelGroup(slot_def(s), rolling_window=s.rolling_window), reference_registry,
                        snapshot_every=CRASH_SNAPSHOT_EVERY)
    for _, value, meta in sorted(examples, key=lambda r: r[2]["offset"]):
        reference.process(Example.from_dict(value), meta["offset"])
    reference.snapshot()  # as the learner does when it is stopped (SIGTERM) at the end
    reference_meta = reference_registry.current(SLOT)
    assert reference_meta is not None
    uninterrupted = ModelGroup.from_state(reference_registry.load(SLOT)[0], slot_def(s))

    print(f"\nkills (examples learned: resumed at, reached, saved when killed): {kills}")
    print(f"final snapshot {crashed_meta.ref}: {crashed_meta.examples_learned} examples, offset {crashed_meta.offset}, "
          f"champion {crashed_meta.champion}; uninterrupted {reference_meta.ref}")
    assert len(kills) == KILLS >= 3
    # Each kill comes between snapshots; a snapshot can still slip in between the scrape and the kill.
    assert sum(k["reached"] > k["saved"] for k in kills) >= KILLS - 1, "lives lost work the next had to relearn"
    assert len(examples) == N_CRASH
    assert (crashed_meta.examples_learned, crashed_meta.offset, crashed_meta.champion) == (
        reference_meta.examples_learned, reference_meta.offset, reference_meta.champion)
    assert crashed_meta.examples_learned > N_CRASH - CRASH_SNAPSHOT_EVERY  # the last snapshot, not an early one
    assert crashed.champion == uninterrupted.champion
    assert crashed.examples_learned == uninterrupted.examples_learned
    assert crashed.promotions == uninterrupted.promotions
    assert crashed.metrics() == uninterrupted.metrics()
    for name in uninterrupted.names:
        assert [crashed.model(name).predict_proba_one(x) for x in probes] == [
            uninterrupted.model(name).predict_proba_one(x) for x in probes
        ], f"model {name} differs from the uninterrupted run's"


# --- 3. promotion --------------------------------------------------------------------------------------

MIN_EXAMPLES = 1000  # pipelines/promotion.toml
MARGIN = 0.05
WINDOW = 500
# Stated bound: the tree leads the regression by about 28 accuracy points over the window when the
# challenger becomes eligible (in-process run of this stream), so the first eligible example promotes it;
# 100 examples of slack cover the reordering of examples by the four-partition join.
PROMOTED_BY = MIN_EXAMPLES + 100


def test_challenger_is_promoted_after_min_examples_and_served(settings: Settings, tmp_path: Path) -> None:
    """HAT overtakes LR on Agrawal function 0: one promotion, announced, versioned, then served."""
    s = with_ports(settings, spec=PROMOTION_SPEC)  # snapshot_every 500: a promotion snapshots at once
    n_learn, n_after = 1500, 200
    items = stream_items("agrawal", n_learn + n_after)
    learn, after = items[:n_learn], with_ids(items[n_learn:], "after")
    with running(s, logs=tmp_path):
        publish(s, learn)  # each label right after its event
        assert wait_metric(learner_url(s), "freshet_examples_learned_total", n_learn, 120) == n_learn
        drift, announced = (read_all(s, name) for name in ("drift", "model-versions"))
        # Versions (champion records, snapshots); "position" messages only say how far the learner is.
        versions = [r for r in announced if r[1].get("kind") != "position"]
        promoted = next(v for _, v, _ in versions if v.get("champion") == "hat")
        wait_until(lambda: served_version(s) >= promoted["version"], 30, f"the worker to serve v{promoted['version']}")
        publish(s, after, send_labels=False)
        after_ids = {event["id"] for event, _ in after}
        predictions = read_until(s, "predictions", done=lambda r: after_ids <= {v["id"] for _, v, _ in r},
                                 timeout_s=60)
        promotions_counted = metric(learner_url(s), "freshet_promotions_total", slot=SLOT)

    promotions = [v for _, v, _ in drift if v.get("kind") == "promotion"]
    print(f"\npromotion: {promotions}\nfirst version with champion hat: version {promoted['version']}, "
          f"{promoted['examples_learned']} examples learned")
    assert len(promotions) == 1 and promotions_counted == 1
    event = promotions[0]
    assert (event["slot"], event["promoted"], event["demoted"]) == (SLOT, "hat", "lr")
    assert (event["metric"], event["window"], event["margin"]) == ("accuracy", WINDOW, MARGIN)
    assert event["challenger_value"] - event["champion_value"] >= MARGIN
    assert event["challenger_examples"] >= MIN_EXAMPLES  # not before the minimum
    assert MIN_EXAMPLES < event["examples_learned"] <= PROMOTED_BY
    # The version announced with the new champion is the group at the promotion, snapshotted at once.
    assert (promoted["examples_learned"], promoted["offset"]) == (event["examples_learned"], event["offset"])
    before = [v for _, v, _ in versions if v["version"] < promoted["version"]]
    assert before and all(v["champion"] == "lr" and v["examples_learned"] < event["examples_learned"] for v in before)
    served = [v["model"] for _, v, _ in predictions if v["id"] in after_ids]
    assert len(served) == n_after
    assert all(m.startswith("hat@") and int(m.split("@")[1]) >= promoted["version"] for m in served), set(served)
    first = next(v for _, v, _ in predictions if v["id"] == learn[0][0]["id"])
    assert first["model"] == "lr@0"


# --- 4. tampered snapshot, rollback --------------------------------------------------------------------


def flip_a_byte(client: redis.Redis, s: Settings, version: int) -> None:
    """Corrupt a stored snapshot in place (layout: models.registry, under ``<app_id>:registry``)."""
    key = f"{s.app_id}:registry:model:{SLOT}:v{version}:blob"
    blob = bytearray(client.get(key) or b"")
    assert blob, f"no blob at {key}"
    blob[len(blob) // 2] ^= 0xFF
    client.set(key, bytes(blob))


def probe(s: Settings, items: list[Item], tag: str) -> list[dict[str, Any]]:
    """Send events without labels; return their predictions in the order sent."""
    events = [event for event, _ in with_ids(items, tag)]
    publish(s, [(event, None) for event in events], send_labels=False)
    ids = {event["id"] for event in events}
    seen = read_until(s, "predictions", done=lambda r: ids <= {v["id"] for _, v, _ in r}, timeout_s=60)
    by_id = {v["id"]: v for _, v, _ in seen}
    return [by_id[event["id"]] for event in events]


def test_tampered_snapshot_is_refused_and_rollback_serves_the_parent_exactly(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """A version whose blob was flipped is refused by worker and learner; a rollback serves v1 exactly.

    The learner saves v1, v2, v3 (200 examples each; the worker serves each in turn). A byte of v2's
    blob is flipped in Redis, then ``freshet models promote default 2`` points the registry at it (the
    promote command checks the signed metadata, not the blob). The worker refuses it, counts
    ``bad_snapshot`` and keeps serving v3; the learner refuses to adopt it and keeps running.
    ``freshet models rollback default`` then points at v2's parent, v1: the worker serves it again (the
    learner adopts it and saves it as a new version with v1's models), and the served probabilities on
    a probe set equal those of v1 loaded from the registry, exactly.
    """
    # Snapshots only (no champion records by time or early ones): versions 1, 2, 3 are the three snapshots.
    s = with_ports(settings, spec=PHISHING_SPEC, snapshot_every=200, publish_every_s=0.0, publish_early=False)
    items = stream_items("phishing", 1250)
    chunks, probes = [items[0:200], items[200:400], items[400:600]], items[1000:1100]
    registry = open_registry(s)
    bad_snapshots = {"source": "model-versions", "reason": "bad_snapshot"}
    with running(s, logs=tmp_path) as procs:
        for version, chunk in enumerate(chunks, start=1):
            publish(s, chunk)
            wait_until(lambda v=version: served_version(s) == v, 60, f"the worker to serve lr@{version}", 0.05)
        slot = slot_def(s)
        models = {v: load_champion(registry, slot, v)[0] for v in (1, 2, 3)}
        xs = [features(event) for event, _ in probes]
        expected = {v: [model.predict_proba_one(x) for x in xs] for v, model in models.items()}
        assert expected[1] != expected[2] != expected[3] != expected[1], "the versions must be told apart"

        flip_a_byte(redis_client, s, 2)
        with pytest.raises(SnapshotError, match="tampered"):
            registry.load(SLOT, 2)
        promoted = freshet_cli(s, "models", "promote", SLOT, "2")
        assert promoted.returncode == 0, promoted.stderr  # the signed metadata is intact
        wait_until(lambda: metric(worker_url(s), "freshet_dead_letters_total", **bad_snapshots) >= 1, 30,
                   "the worker to refuse v2")
        wait_until(lambda: metric(learner_url(s), "freshet_dead_letters_total", **bad_snapshots) >= 1, 30,
                   "the learner to refuse v2")
        kept = probe(s, probes, "kept")
        assert procs["learner"].poll() is None, "the learner died on the tampered version"
        assert served_version(s) == 3

        rolled = freshet_cli(s, "models", "rollback", SLOT)
        assert rolled.returncode == 0, rolled.stderr
        assert f"{SLOT}@1" in rolled.stdout
        # The learner adopts v1 and saves it as a new version (parent 1); the worker follows to it.
        adopted = wait_until(lambda: (m := registry.current(SLOT)) is not None and m.parent == 1 and m, 30,
                             "the learner to adopt v1")
        wait_until(lambda: served_version(s) == adopted.version, 30, f"the worker to serve {adopted.ref}")
        back = probe(s, probes, "back")
        worker_bad = metric(worker_url(s), "freshet_dead_letters_total", **bad_snapshots)
        learner_bad = metric(learner_url(s), "freshet_dead_letters_total", **bad_snapshots)

    assert [p["model"] for p in kept] == ["lr@3"] * len(probes)
    assert [proba_of(p) for p in kept] == expected[3]
    assert (worker_bad, learner_bad) == (1, 1)  # refused once each, though the learner looks every second
    v1 = registry.meta(SLOT, 1)
    assert (adopted.examples_learned, adopted.offset) == (v1.examples_learned, 599)
    assert [p["model"] for p in back] == [f"lr@{adopted.version}"] * len(probes)
    assert [p["features"] for p in back] == xs
    assert [proba_of(p) for p in back] == expected[1]
    assert [group_at(registry, s, adopted.version).model().predict_proba_one(x) for x in xs] == expected[1]
