"""The Faust worker: validate → features → predict → log-and-wait join, around the pure modules.

The app is built by :func:`create_app` from a :class:`Runtime` (settings, spec, metrics, engines), so
there are no module-level globals and tests build as many apps as they like. Agents are thin: they
decode, call pure code, and publish; every shape change is noted inline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from models.spec import ModelSlotDef, parse_models
from streams.features import FeatureEngine, parse_features
from streams.inputs import model_input
from streams.metrics import Metrics
from streams.predictor import Predictor
from streams.records import DeadLetter, Prediction, decode, encode
from streams.settings import Settings
from streams.spec import PipelineSpec
from streams.topics import Topics, declare_topics
from streams.validate import Invalid, validate_event

log = logging.getLogger("freshet.worker")

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "pipelines" / "demo.toml"


@dataclass
class Runtime:
    """Everything the agents need, built once per worker process."""

    settings: Settings
    spec: PipelineSpec
    metrics: Metrics
    engine: FeatureEngine
    slots: list[ModelSlotDef]
    predictor: Predictor
    late_policy: str = "dead-letter"
    store_buffer: list[tuple[str, dict[str, float | None], float, float]] = field(default_factory=list)

    @classmethod
    def build(
        cls, settings: Settings, spec: PipelineSpec | None = None, registry: CollectorRegistry | None = None
    ) -> Runtime:
        spec = spec or PipelineSpec.load(settings.spec_path or DEFAULT_SPEC)
        raw_features = spec.raw.get("features", [])
        defaults = raw_features.get("defaults", {}) if isinstance(raw_features, dict) else {}
        slots = parse_models(spec.raw.get("models", []), spec.label.kind)
        return cls(
            settings=settings,
            spec=spec,
            metrics=Metrics(registry),
            engine=FeatureEngine(parse_features(raw_features)),
            slots=slots,
            predictor=Predictor(slots),
            late_policy=str(defaults.get("late_policy", "dead-letter")),
        )


def dead_letter_record(message: Any, reason: str, detail: str) -> tuple[bytes | None, bytes]:
    """(key, value) of the dead-letter message for a consumed Faust message."""
    value: bytes = message.value if isinstance(message.value, bytes) else b""
    try:
        text, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(value).decode("ascii"), "base64"
    key = message.key if isinstance(message.key, bytes) else None
    record = DeadLetter(
        reason=reason, detail=detail, source_topic=message.topic, source_partition=message.partition,
        source_offset=message.offset, value=text, value_encoding=encoding,
        key=key.decode("utf-8", "replace") if key is not None else None, ts=time.time(),
    )
    return key, encode(record.to_dict())


def create_app(rt: Runtime) -> faust.App:
    s = rt.settings
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",  # state is rebuilt from the changelog topics on start (DESIGN.md decision 1)
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        stream_recovery_delay=0.0,  # single-node broker: no need to wait for a rebalance storm
        broker_commit_interval=1.0,
        producer_linger_ms=2,
        datadir=str(s.cache_dir / "faust" / s.app_id),
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = declare_topics(app, s)
    m = rt.metrics
    # Per-entity window state; value = 8-byte source offset + FeatureEngine.dumps(state).
    feature_state = app.Table(
        "feature-state", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
        partitions=s.partitions,
    )

    async def to_dead_letter(message: Any, reason: str, detail: str) -> None:
        key, value = dead_letter_record(message, reason, detail)
        m.dead_letters.labels(source=message.topic, reason=reason).inc()
        await topics.dead_letter.send(key=key, value=value)

    @app.agent(topics.events)
    async def process_events(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            m.events.labels(stage="validate").inc()
            # bytes → Event | Invalid
            checked = validate_event(event.value, rt.spec.event, now_s=time.time())
            if isinstance(checked, Invalid):
                await to_dead_letter(msg, checked.reason, checked.detail)
                continue
            key = checked.entity.encode()
            stored = feature_state.get(key)
            if stored is not None and int.from_bytes(stored[:8], "big", signed=True) >= msg.offset:
                # Redelivered after a crash: the state already holds this event; do not count it twice.
                state = rt.engine.loads(stored[8:])
                values = rt.engine.read(state, checked.ts)
            else:
                state = rt.engine.loads(stored[8:]) if stored is not None else rt.engine.new_state()
                result = rt.engine.update(state, checked.ts, checked.fields)
                if result.late:
                    m.late_events.labels(policy=rt.late_policy).inc()
                    if rt.late_policy == "dead-letter":
                        await to_dead_letter(
                            msg, "late", f"event time {checked.ts:.3f} is behind the watermark beyond grace "
                            f"for {', '.join(result.late_features)}",
                        )
                    feature_state[key] = msg.offset.to_bytes(8, "big", signed=True) + rt.engine.dumps(state)
                    continue
                values = result.values
                feature_state[key] = msg.offset.to_bytes(8, "big", signed=True) + rt.engine.dumps(state)
            m.events.labels(stage="features").inc()
            # (entity, {feature: value}) → model input (fields + features)
            x = model_input(checked.fields, values)
            rt.store_buffer.append((checked.entity, values, checked.ts, msg.timestamp))
            for slot in rt.slots:
                y, proba, served = rt.predictor.predict(slot.slot, x)
                now = time.time()
                pred = Prediction(
                    id=checked.id, entity=checked.entity, prediction=y, probabilities=proba, model=served,
                    features=dict(x), event_ts=checked.ts, produced_ts=now, ingest_ts=msg.timestamp,
                    slot=slot.slot,
                )
                # Prediction → predictions (key: event id)
                await topics.predictions.send(key=checked.id.encode(), value=encode(pred.to_dict()))
                m.predictions.labels(model=slot.slot).inc()
                m.prediction_latency.observe(max(0.0, now - msg.timestamp))
            m.events.labels(stage="predict").inc()

    app.freshet_topics = topics  # type: ignore[attr-defined]
    app.freshet_agents = {"process_events": process_events}  # type: ignore[attr-defined]
    _ = asyncio, decode
    return app
