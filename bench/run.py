"""``make bench``: the pipeline's throughput and latency beside a ceiling measured in the same run.

Throughput: N events are loaded into the input topic first, then the consumer starts; events/s is N over
the span between the first and the last output message. The pipeline (a freshet worker) and the ceiling
(a bare aiokafka consume→produce passthrough of the same messages on the same broker) are measured the
same way, one after the other, so their ratio is meaningful on a noisy machine.

Latency: events are then published at half the pipeline's measured rate with their labels, the learner
running and publishing versions; p50/p99 of (prediction published - event appended to Kafka), overall and
within one second after each model swap.

Feature stage: the pure feature engine alone (bench/bench_features.py).

Writes bench/results/latest.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from bench.harness import Config
from bench.measure import table
from bench.peer_runs import PARTS, run_peer_bench
from producers.publish import make_producer, publish
from producers.synthetic import SyntheticStream
from streams.ops.procs import running
from streams.ops.readers import TopicReader
from streams.ops.services import ensure_topics, free_port, kafka_dir, services_down, services_up
from streams.ops.summary import percentile
from streams.settings import Settings

DEMO_RATE = 100.0  # events/s of `make demo`
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def load_events(settings: Settings, topic: str, stream: SyntheticStream) -> int:
    producer = make_producer(settings, linger_ms=20)
    n = 0
    for event, _ in stream:
        producer.send(topic, key=event["entity"].encode(), value=orjson.dumps(event))
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def drain(settings: Settings, topic: str, n: int, timeout_s: float, raw_name: bool = False) -> list[Any]:
    """Read n messages of a topic; returns (kafka timestamp s, decoded value) pairs."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    with TopicReader(settings, topic, raw_name=raw_name) as reader:
        while len(out) < n and time.monotonic() < deadline:
            out.extend((meta["timestamp_s"], value) for _, value, meta in reader.poll(0.5))
    return out


def span_rate(timestamps: list[float]) -> float:
    if len(timestamps) < 2:
        return 0.0
    return (len(timestamps) - 1) / max(1e-9, max(timestamps) - min(timestamps))


async def passthrough(
    settings: Settings, src: str, dst: str, n: int, on_first: Callable[[], None] | None = None
) -> None:
    """Copy ``n`` messages from ``src`` to ``dst``: ``getmany(2000)``, ``await producer.send()`` each (the
    ceiling; ``on_first`` is called when the first batch arrives)."""
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2, acks=1)
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batches and on_first is not None:
                on_first()
                on_first = None
            for records in batches.values():
                for r in records:
                    await producer.send(dst, key=r.key, value=r.value)
                    seen += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


def measure_ceiling(settings: Settings, stream: SyntheticStream) -> float:
    src, dst = f"{settings.topic_prefix}ceiling-in", f"{settings.topic_prefix}ceiling-out"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(t, settings.partitions, 1) for t in (src, dst)])
    admin.close()
    n = load_events(settings, src, stream)
    asyncio.run(asyncio.wait_for(passthrough(settings, src, dst, n), timeout=300))
    out = drain(settings, dst, n, 120, raw_name=True)
    return span_rate([ts for ts, _ in out])


def measure_pipeline(settings: Settings, stream: SyntheticStream, logs: Path) -> float:
    """Preloaded throughput of the whole loop: events and their labels wait in Kafka, then the worker and
    the learner start; events/s is N over the span of the N predictions' publication times.

    The learner runs beside the worker on the same cores, as in ``make demo``, so "half the maximum rate"
    below is half of what this machine sustains with everything running.
    """
    n = publish(settings, stream, label_delay_s=0.0).events  # each event, then its label
    with running(settings, logs=logs / "throughput"):
        out = drain(settings, "predictions", n, 900)
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} of {n} predictions came out; see {logs}")
    return span_rate([float(v["produced_ts"]) for _, v in out])


def measure_latency(settings: Settings, rate: float, n: int, logs: Path) -> dict[str, float]:
    """Paced run with labels and a learner publishing versions; latency overall and around swaps."""
    with running(settings, logs=logs / "latency"):
        stream = SyntheticStream(
            kind="hyperplane", n_events=n, n_entities=1000, seed=11, start_ts=time.time() - 1, step_s=1.0 / rate
        )
        publish(settings, stream, rate_per_s=rate, label_delay_s=0.2)
        out = drain(settings, "predictions", n, 300)
    preds = sorted((v for _, v in out), key=lambda p: p["produced_ts"])
    lat = [(p["produced_ts"] - p["ingest_ts"]) * 1000.0 for p in preds]
    swaps = [preds[i]["produced_ts"] for i in range(1, len(preds)) if preds[i]["model"] != preds[i - 1]["model"]]
    near = [
        (p["produced_ts"] - p["ingest_ts"]) * 1000.0
        for p in preds
        if any(0 <= p["produced_ts"] - s <= 1.0 for s in swaps)
    ]
    return {
        "latency_p50_ms_half_rate": round(percentile(lat, 0.5), 3),
        "latency_p99_ms_half_rate": round(percentile(lat, 0.99), 3),
        "latency_p99_ms_during_swap": round(percentile(near, 0.99), 3) if near else float("nan"),
        "model_swaps_seen": len(swaps),
        "latency_events": len(lat),
    }


def measure_legacy(settings: Settings, args: argparse.Namespace, result: dict[str, Any], logs: Path) -> None:
    """The pipeline's own figures beside the aiokafka ceiling (the keys ``make bench`` has always written)."""
    ensure_topics(settings)
    stream = SyntheticStream(
        kind="hyperplane",
        n_events=args.events,
        n_entities=1000,
        seed=3,
        start_ts=time.time() - args.events * 0.01,
        step_s=0.01,
    )
    ceiling = measure_ceiling(settings, stream)
    pipeline = measure_pipeline(settings, stream, logs)
    result.update(
        pipeline_events_per_s=round(pipeline, 1),
        ceiling_events_per_s=round(ceiling, 1),
        ratio_to_ceiling=round(pipeline / ceiling, 4) if ceiling else None,
    )
    lat_settings = settings.with_(app_id=f"{settings.app_id}-lat", topic_prefix=f"{settings.topic_prefix}lat-")
    ensure_topics(lat_settings)
    lat = measure_latency(lat_settings, max(50.0, pipeline / 2), args.latency_events, logs)
    result.update(lat)
    result["latency_p50_ms"] = lat["latency_p50_ms_half_rate"]
    result["latency_p99_ms"] = lat["latency_p99_ms_half_rate"]
    result["half_rate_events_per_s"] = round(max(50.0, pipeline / 2), 1)
    # The demo's rate, for a figure that does not depend on the measured maximum.
    demo = settings.with_(app_id=f"{settings.app_id}-demo", topic_prefix=f"{settings.topic_prefix}demo-")
    ensure_topics(demo)
    at_demo = measure_latency(demo, DEMO_RATE, args.latency_events // 2, logs / "demo-rate")
    result[f"latency_p50_ms_at_{DEMO_RATE:.0f}_per_s"] = at_demo["latency_p50_ms_half_rate"]
    result[f"latency_p99_ms_at_{DEMO_RATE:.0f}_per_s"] = at_demo["latency_p99_ms_half_rate"]
    if not args.skip_features:
        from bench.bench_features import run as run_features

        feats = run_features()
        # The feature stage's own figures; its other keys get a prefix so they never shadow the pipeline's.
        keep = {"features_events_per_s", "feature_state_bytes_per_entity"}
        result.update(
            {
                k if k in keep or k.startswith("feature") else f"features_{k}": v
                for k, v in feats.items()
                if isinstance(v, int | float | str)
            }
        )


def bench_settings(stamp: str) -> Settings:
    """The environment's settings; unless FRESHET_KAFKA_PORT / FRESHET_REDIS_PORT say where servers run,
    the bench starts its own Kafka and Redis on free ports (other runs on this machine keep theirs)."""
    base = Settings.from_env()
    ports: dict[str, Any] = {}
    if "FRESHET_KAFKA_PORT" not in os.environ:
        ports.update(kafka_port=free_port(), kafka_controller_port=free_port())
    if "FRESHET_REDIS_PORT" not in os.environ:
        ports["redis_port"] = free_port()
    return base.with_(topic_prefix=f"bench-{stamp}-", app_id=f"freshet-bench-{stamp}", snapshot_every=500, **ports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="N: events per throughput run")
    parser.add_argument("--latency-events", type=int, default=6_000, help="the pipeline's own latency runs")
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated parts to run (default all): {', '.join(PARTS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small N and short latency runs, for development")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.quick:
        args.events, args.latency_events, args.skip_features = 4_000, 1_000, True
    full = not args.only and not args.quick

    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    settings = bench_settings(stamp)
    logs = settings.cache_dir / "bench" / stamp
    started_at = time.monotonic()
    started = services_up(settings)
    result: dict[str, Any] = {
        "n_events": args.events,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    try:
        if "legacy" in parts:
            measure_legacy(settings, args, result, logs)
        peer_parts = [p for p in parts if p != "legacy"]
        if peer_parts:
            cfg = Config.quick() if args.quick else Config(n_events=args.events)
            result.update(run_peer_bench(settings, cfg, peer_parts, logs / "peers"))
    finally:
        if started:
            services_down(settings)
            if "FRESHET_KAFKA_PORT" not in os.environ:
                # A broker of its own on a free port: nothing will use its data again (~150 MB a run).
                shutil.rmtree(kafka_dir(settings), ignore_errors=True)
    result["bench_seconds"] = round(time.monotonic() - started_at, 1)
    out = RESULTS if full else logs / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    if "systems" in result:
        print()
        print(table(result["systems"]))
        if result.get("learner_examples_per_s") is not None:
            print(f"\nlearner alone (demo spec, drift on): {result['learner_examples_per_s']:,.0f} examples/s")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
