"""``freshet demo``: the whole loop on this machine, on a drifting synthetic stream, then a summary.

1. start Kafka and Redis (unless they already run) and create the topics, with a fresh prefix;
2. start a worker and a learner as child processes and wait until both answer on /metrics;
3. publish a seeded Hyperplane stream whose concept changes halfway, labels shortly after each event,
   and a malformed message now and then;
4. read the output topics and print a summary: events, predictions, online accuracy before and after
   the drift, p50/p99 event-to-prediction latency, dead letters by reason, drift alerts;
5. write the report (PNG + HTML) and stop everything it started.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from producers.publish import publish
from producers.synthetic import SyntheticStream
from streams.ops.procs import learner_url, running, scrape
from streams.ops.readers import read_until, read_whole_topic
from streams.ops.routing_summary import routing_lines
from streams.ops.services import ensure_topics, services_down, services_up
from streams.ops.summary import latency_percentiles_ms, summarize_metrics
from streams.settings import Settings


def run_demo(base: Settings, *, duration_s: float, rate: float, report_dir: Path) -> int:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    settings = base.with_(topic_prefix=f"demo-{stamp}-", app_id=f"freshet-demo-{stamp}")
    settings = settings.with_(spec_path=settings.spec_file)  # the children load exactly this spec
    n_events = max(100, int(duration_s * rate))
    drift_at = n_events // 2
    logs = settings.cache_dir / "demo" / stamp
    click.echo(f"freshet demo: {n_events} events at {rate:.0f}/s, concept drift at event {drift_at}")
    started = services_up(settings)
    click.echo(f"  services: {', '.join(started) or 'already running'} (logs in {settings.cache_dir})")
    try:
        ensure_topics(settings)
        with running(settings, logs=logs):
            click.echo("  worker and learner are up; streaming...")
            return _stream_and_summarize(settings, n_events, drift_at, rate, report_dir)
    finally:
        if started:
            services_down(settings)
            click.echo(f"  stopped: {', '.join(started)}")


def _stream_and_summarize(settings: Settings, n_events: int, drift_at: int, rate: float, report_dir: Path) -> int:
    stream = SyntheticStream(
        kind="hyperplane",
        n_events=n_events,
        n_entities=200,
        seed=7,
        start_ts=time.time() - 1,
        step_s=1.0 / rate,
        drift_at=[drift_at],
    )
    stats = publish(settings, stream, rate_per_s=rate, label_delay_s=0.5, bad_every=1000, total=n_events, progress=True)
    click.echo(
        f"  published {stats.events} events ({stats.bad} malformed) and {stats.labels} labels "
        f"in {stats.elapsed_s:.1f} s"
    )
    click.echo(f"  waiting for {n_events} predictions...")
    predictions = read_until(settings, "predictions", done=lambda r: len(r) >= n_events, timeout_s=120)
    click.echo(f"  {len(predictions)} predictions read; waiting for the learner to learn every label...")
    _wait_learned(learner_url(settings), n_events, timeout_s=120)
    click.echo("  reading the metrics, drift and dead-letter topics...")
    metrics = read_whole_topic(settings, "metrics", timeout_s=30).values
    drift = read_whole_topic(settings, "drift", timeout_s=30).values
    dead = read_whole_topic(settings, "dead-letter", timeout_s=30).values
    summary = _summary(n_events, drift_at, predictions, metrics, drift, dead)
    click.echo(summary["text"])
    try:
        from streams.ops.report import build_report

        served = [v for _, v, _ in predictions if isinstance(v, dict)]
        paths = build_report(metrics, drift, report_dir, predictions=served)
        click.echo(f"  report: {', '.join(str(p) for p in paths.values())}")
    except Exception as exc:  # the report is a bonus: never fail the demo on it
        click.echo(f"  report not written: {exc}")
    return 0 if summary["ok"] else 1


def _wait_learned(url: str, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        learned = sum(v for k, v in scrape(url).items() if k.startswith("freshet_examples_learned_total"))
        if learned >= n:
            return
        time.sleep(0.5)


def _summary(
    n_events: int,
    drift_at: int,
    predictions: list[Any],
    metrics: list[Any],
    drift: list[Any],
    dead: list[Any],
) -> dict[str, Any]:
    preds = [v for _, v, _ in predictions if isinstance(v, dict)]
    p50, p99 = latency_percentiles_ms(preds)
    reasons = Counter(v.get("reason", "?") for v in dead if isinstance(v, dict))
    phases = summarize_metrics([v for v in metrics if isinstance(v, dict)], drift_at)
    alerts = [v for v in drift if isinstance(v, dict)]
    lines = [
        "",
        "freshet demo summary",
        f"  events published      {n_events}",
        f"  predictions           {len(preds)}",
        f"  latency p50 / p99     {p50:.1f} ms / {p99:.1f} ms (Kafka append → prediction published)",
        f"  dead letters          {sum(reasons.values())} ({', '.join(f'{k}: {v}' for k, v in reasons.items())})",
    ]
    for line in phases["lines"]:
        lines.append(f"  {line}")
    concept = [a for a in alerts if a.get("kind") == "concept" and a.get("level") == "drift"]
    for a in concept:
        # Examples of one slot sit in one partition, in order: the offset is the example's index.
        delay = int(a["offset"]) - drift_at if a.get("offset") is not None else None
        lines.append(
            f"  concept drift on {a['subject']} ({a['detector']}) at example {a.get('offset')}: "
            f"{delay} examples after the change"
        )
    for a in alerts:
        if a.get("kind") == "action":
            lines.append(f"  reaction: {a['action']} on {a['subject']} at example {a.get('offset')}")
        elif a.get("kind") == "promotion":
            lines.append(f"  promotion: {a['promoted']} replaced {a['demoted']} at example {a.get('offset')}")
    others = Counter(
        f"{a['kind']} on {a['subject']}" for a in alerts if a.get("kind") in ("feature", "prediction", "label")
    )
    if others:
        lines.append(f"  data drift alerts: {', '.join(f'{k} ({v})' for k, v in others.items())}")
    if not concept:
        lines.append("  concept drift: not detected")
    for line in routing_lines(preds, alerts, [v for v in metrics if isinstance(v, dict)]):
        lines.append(f"  {line}")
    ok = len(preds) >= n_events
    return {"text": "\n".join(lines), "ok": ok}
