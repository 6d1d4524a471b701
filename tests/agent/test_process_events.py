"""Tests of the worker's batch loop without a broker: the loop of a real app driven by test doubles.

The doubles (:mod:`streams.runtime.testing`) stand in for the grouped consumer (a list of batches), the
producer (a recorder) and the changelog topics (read back from what the recorder got).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.runtime.app import Runtime, create_app
from streams.runtime.batch_loop import BatchLoop
from streams.runtime.metrics import Metrics
from streams.runtime.testing import (
    FakeRecord,
    FakeTopicPartition,
    InMemoryOnlineStore,
    ListConsumer,
    MemoryChangelog,
    RecordingSender,
)
from streams.settings import Settings

pytestmark = pytest.mark.agent

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"
FIELDS = {"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "x5": 0.5}


def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(cache_dir=tmp_path, app_id="agent-test", spec_path=SPEC)
    return Runtime.build(settings, registry=CollectorRegistry(), store=InMemoryOnlineStore())


def loop_of(rt: Runtime, sender: RecordingSender) -> BatchLoop:
    app = create_app(rt, sender=sender)
    return app.freshet_loop  # type: ignore[attr-defined,no-any-return]


def sample(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def event(rt: Runtime, offset: int, entity: str, ts: float, partition: int = 0, **fields: float) -> FakeRecord:
    value = orjson.dumps({"id": f"{entity}-{offset}", "entity": entity, "ts": ts, **(fields or FIELDS)})
    return FakeRecord(rt.settings.topic("events"), partition, offset, entity.encode(), value, int(ts * 1000))


def run(loop: BatchLoop, batches: list[list[FakeRecord]], log: list[str] | None = None) -> ListConsumer:
    async def go() -> ListConsumer:
        stop = asyncio.Event()
        consumer = ListConsumer(batches, stop, log)
        consumer.assigned = {FakeTopicPartition(r.topic, r.partition) for batch in batches for r in batch}
        loop.restore = MemoryChangelog(loop.sender.inner)  # type: ignore[attr-defined]
        await loop.on_assigned(consumer.assigned)  # what the group does before the first fetch
        await loop.run(consumer, loop.restore, stop=stop)
        return consumer

    return asyncio.run(go())


def test_good_events_are_featurized_and_bad_ones_dead_lettered(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    sender = RecordingSender()
    loop = loop_of(rt, sender)
    batch = [
        event(rt, i, "u1", 1_700_000_000.0 + i, x1=x1, x2=0.5, x3=0.1, x4=0.3, x5=0.7)
        for i, x1 in enumerate([0.2, 0.4, 0.9])
    ]
    batch.append(FakeRecord(rt.settings.topic("events"), 0, 3, b"u1", b"\xff not json"))
    run(loop, [batch[:2], batch[2:]])
    preds = [orjson.loads(v or b"") for v in sender.values(rt.settings.topic("predictions"))]
    dead = [orjson.loads(v or b"") for v in sender.values(rt.settings.topic("dead-letter"))]
    assert [p["id"] for p in preds] == ["u1-0", "u1-1", "u1-2"]
    assert preds[-1]["features"]["events_10s"] == 3.0
    assert preds[-1]["features"]["x1_mean_10s"] == pytest.approx((0.2 + 0.4 + 0.9) / 3)
    assert preds[1]["features"]["seconds_since_last"] == 1.0
    assert [d["reason"] for d in dead] == ["undecodable"]
    assert sample(rt.metrics, "freshet_events_total", stage="predict") == 3
    assert len(rt.store_buffer) == 3  # flushed to the online store by a timer


def test_outputs_then_state_then_commit(tmp_path: Path) -> None:
    """The order a crash relies on: a batch's predictions, then its state writes, then its offsets."""
    rt = runtime(tmp_path)
    log: list[str] = []
    sender = RecordingSender(log)
    loop = loop_of(rt, sender)
    loop.commit_interval_s = 0.0  # commit after every batch
    consumer = run(loop, [[event(rt, 0, "u1", 1_700_000_000.0)], [event(rt, 1, "u1", 1_700_000_001.0)]], log)
    predictions, state = rt.settings.topic("predictions"), "send agent-test-feature-state-changelog"
    assert log == [f"send {predictions}", state, "commit", f"send {predictions}", state, "commit"]
    assert consumer.commits == [{(rt.settings.topic("events"), 0): 1}, {(rt.settings.topic("events"), 0): 2}]


def test_state_moves_with_its_partition_and_a_redelivery_is_not_predicted_twice(tmp_path: Path) -> None:
    """A partition given away drops its state; one given back restores it from the changelog first."""
    rt = runtime(tmp_path)
    sender = RecordingSender()
    loop = loop_of(rt, sender)
    events_topic = rt.settings.topic("events")
    first = [event(rt, i, "u1", 1_700_000_000.0 + i) for i in range(3)]
    run(loop, [first])
    key = b"u1"
    assert key in loop.feature_state.data

    async def move() -> None:
        loop.restore = MemoryChangelog(sender)
        await loop.on_revoked({FakeTopicPartition(events_topic, 0)})
        assert key in loop.feature_state.data, "kept until the new assignment says where it goes"
        await loop.on_assigned(set())  # to another worker
        assert key not in loop.feature_state.data
        await loop.on_revoked(set())
        await loop.on_assigned({FakeTopicPartition(events_topic, 0)})  # and back

    asyncio.run(move())
    assert key in loop.feature_state.data
    # The last two events again (not committed before the move), then a new one.
    run(loop, [[*first[1:], event(rt, 3, "u1", 1_700_000_003.0)]])
    preds = [orjson.loads(v or b"") for v in sender.values(rt.settings.topic("predictions"))]
    assert [p["id"] for p in preds] == ["u1-0", "u1-1", "u1-2", "u1-3"]
    assert preds[-1]["features"]["events_10s"] == 4.0
    assert sample(rt.metrics, "freshet_redelivered_events_total") == 2


def test_a_batch_fetched_across_a_rebalance_is_dropped(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    sender = RecordingSender()
    loop = loop_of(rt, sender)

    class Rebalancing(ListConsumer):
        async def getmany(self, *partitions: object, timeout_ms: int = 0, max_records: int | None = None) -> object:
            out = await super().getmany(timeout_ms=timeout_ms, max_records=max_records)
            if out:
                loop.generation += 1  # what on_revoked/on_assigned do while getmany waits
            return out

    async def go() -> Rebalancing:
        stop = asyncio.Event()
        consumer = Rebalancing([[event(rt, 5, "u1", 1_700_000_000.0)]], stop)
        consumer.assigned = {FakeTopicPartition(rt.settings.topic("events"), 0)}
        loop.restore = MemoryChangelog(sender)
        await loop.on_assigned(consumer.assigned)
        await loop.run(consumer, loop.restore, stop=stop)
        return consumer

    consumer = asyncio.run(go())
    assert sender.sent == [] and loop.dropped_batches == 1
    assert consumer.seeks == [(rt.settings.topic("events"), 0, 5)], "fetched again from its first record"


def test_a_broker_outage_pauses_the_loop_and_resends_the_batch(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    sender = RecordingSender()

    class Flaky(RecordingSender):
        failures = 2

        async def send_all(self, messages: list[tuple[str, bytes | None, bytes | None, int | None]]) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker away")
            await sender.send_all(messages)

    loop = loop_of(rt, Flaky())
    loop.sender.max_backoff_s = 0.01  # type: ignore[attr-defined]
    run(loop, [[event(rt, 0, "u1", 1_700_000_000.0)]])
    assert len(sender.values(rt.settings.topic("predictions"))) == 1
    assert loop.sender.retries == 2  # type: ignore[attr-defined]


def test_idle_entities_state_expires_on_event_time(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    loop = loop_of(rt, RecordingSender())
    idle = [event(rt, 0, "idle", 1_700_000_000.0)]
    # Two hours of event time later (beyond every window + grace of the demo spec: the longest is 3600 s).
    busy = [event(rt, i, "busy", 1_700_007_200.0 + i) for i in range(1, 151)]
    run(loop, [idle, busy[:75], busy[75:]])
    assert sample(rt.metrics, "freshet_feature_state_expired_total") == 1
