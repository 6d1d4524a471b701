"""Agent tests with Faust's test_context: the worker's agents without a broker (no Kafka, no Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.runtime.app import Runtime, create_app
from streams.runtime.metrics import Metrics
from streams.runtime.store import InMemoryOnlineStore
from streams.runtime.testing import RecordingSender
from streams.settings import Settings

pytestmark = pytest.mark.agent

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"


def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(cache_dir=tmp_path, app_id="agent-test", spec_path=SPEC)
    return Runtime.build(settings, registry=CollectorRegistry(), store=InMemoryOnlineStore())


def sample(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_good_events_are_featurized_and_bad_ones_dead_lettered(tmp_path: Path) -> None:
    asyncio.run(_featurize_and_dead_letter(tmp_path))


async def _featurize_and_dead_letter(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    sender = RecordingSender()
    app = create_app(rt, sender=sender)
    agent = app.freshet_agents["process_events"]  # type: ignore[attr-defined]
    async with agent.test_context() as ctx:
        for i, x1 in enumerate([0.2, 0.4, 0.9]):
            event = {
                "id": f"e{i}",
                "entity": "u1",
                "ts": 1_700_000_000.0 + i,
                "x1": x1,
                "x2": 0.5,
                "x3": 0.1,
                "x4": 0.3,
                "x5": 0.7,
            }
            await ctx.put(key=b"u1", value=orjson.dumps(event))
        await ctx.put(key=b"u1", value=b"\xff not json")
    preds = [orjson.loads(v or b"") for v in sender.values("predictions")]
    dead = [orjson.loads(v or b"") for v in sender.values("dead-letter")]
    assert [p["id"] for p in preds] == ["e0", "e1", "e2"]
    assert preds[-1]["features"]["events_10s"] == 3.0
    assert preds[-1]["features"]["x1_mean_10s"] == pytest.approx((0.2 + 0.4 + 0.9) / 3)
    assert preds[1]["features"]["seconds_since_last"] == 1.0
    assert [d["reason"] for d in dead] == ["undecodable"]
    assert sample(rt.metrics, "freshet_events_total", stage="predict") == 3
    assert len(rt.store_buffer) == 3  # flushed to the online store by a timer


def test_idle_entities_state_expires_on_event_time(tmp_path: Path) -> None:
    asyncio.run(_expiry(tmp_path))


async def _expiry(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    app = create_app(rt, sender=RecordingSender())
    agent = app.freshet_agents["process_events"]  # type: ignore[attr-defined]
    fields = {"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "x5": 0.5}
    async with agent.test_context() as ctx:
        await ctx.put(key=b"idle", value=orjson.dumps({"id": "i0", "entity": "idle", "ts": 1_700_000_000.0, **fields}))
        # Two hours of event time later (beyond every window + grace of the demo spec: the longest is 3600 s).
        for i in range(150):
            event = {"id": f"b{i}", "entity": "busy", "ts": 1_700_007_200.0 + i, **fields}
            await ctx.put(key=b"busy", value=orjson.dumps(event))
    assert sample(rt.metrics, "freshet_feature_state_expired_total") == 1
