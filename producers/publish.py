"""Publish a stream of ``(event, label)`` pairs to Kafka with kafka-python: events now, labels later.

Labels go to ``labels`` ``label_delay_s`` of wall time after their event (0 = right after it), carrying
an event time of ``event ts + label_delay_s``. A target rate paces the events; a rich progress bar shows
how far along it is. ``bad_every`` injects a malformed message every N events (for demos and tests of
the dead-letter path); those have no label.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams.errors import FreshetError
from streams.settings import Settings

BAD_EVENTS = (
    b"\xff\xfe not json",
    b'{"id": "bad-missing-entity", "ts": 1}',
    b'{"id": "bad-ts", "entity": "u0", "ts": "not a time"}',
    b"[1, 2, 3]",
)


class PublishError(FreshetError, RuntimeError):
    """The broker could not be reached or refused the messages."""


@dataclass
class PublishStats:
    events: int = 0
    labels: int = 0
    bad: int = 0
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer for freshet's topics (keys and values are bytes)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": 1,
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "client_id": f"{settings.app_id}-producer",
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError:
        raise PublishError(
            f"no Kafka broker at {settings.kafka_bootstrap}: "
            "run `freshet services up` or set FRESHET_KAFKA_PORT"
        ) from None


def publish(
    settings: Settings,
    items: Iterable[tuple[dict[str, Any], Any]],
    *,
    rate_per_s: float = 0.0,
    label_delay_s: float = 0.0,
    send_labels: bool = True,
    bad_every: int = 0,
    total: int | None = None,
    progress: bool = False,
    producer: KafkaProducer | None = None,
) -> PublishStats:
    """Send events (and later their labels); returns counts. ``rate_per_s=0`` means as fast as possible."""
    own = producer is None
    prod = make_producer(settings) if producer is None else producer
    events_topic, labels_topic = settings.topic("events"), settings.topic("labels")
    pending: list[tuple[float, int, bytes, bytes]] = []  # (due wall time, seq, key, value)
    stats = PublishStats()
    start = time.monotonic()
    bar = _progress(total) if progress else None

    def flush_due(now: float) -> None:
        while pending and pending[0][0] <= now:
            _, _, key, value = heapq.heappop(pending)
            prod.send(labels_topic, key=key, value=value)
            stats.labels += 1

    try:
        for i, (event, label) in enumerate(items):
            if rate_per_s > 0:
                due = start + i / rate_per_s
                # Sleep until the event is due, waking to send labels that fall due meanwhile.
                while (wait := due - time.monotonic()) > 0:
                    next_label = pending[0][0] - time.monotonic() if pending else wait
                    time.sleep(max(0.0, min(wait, next_label)))
                    flush_due(time.monotonic())
            if bad_every and i and i % bad_every == 0:
                bad = BAD_EVENTS[(i // bad_every) % len(BAD_EVENTS)]
                prod.send(events_topic, key=b"bad", value=bad)
                stats.bad += 1
            prod.send(events_topic, key=str(event["entity"]).encode(), value=orjson.dumps(event))
            stats.events += 1
            if send_labels:
                record = {"id": event["id"], "label": label, "ts": event["ts"] + label_delay_s}
                heapq.heappush(
                    pending,
                    (time.monotonic() + label_delay_s, i, str(event["id"]).encode(), orjson.dumps(record)),
                )
            flush_due(time.monotonic())
            if bar is not None:
                bar[0].update(bar[1], advance=1)
        while pending:
            time.sleep(max(0.0, min(0.05, pending[0][0] - time.monotonic())))
            flush_due(time.monotonic())
        prod.flush(timeout=60)
    finally:
        stats.elapsed_s = time.monotonic() - start
        if bar is not None:
            bar[0].stop()
        if own:
            prod.close(timeout=10)
    return stats


def rate_text(speed: float | None) -> str:
    """The progress bar's rate: one decimal, a dash before there is one.

    >>> rate_text(100.02502657203654), rate_text(None)
    ('100.0/s', '-/s')
    """
    return "-/s" if speed is None else f"{speed:.1f}/s"


def _progress(total: int | None) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(rate_text(task.speed))

    prog = Progress(
        TextColumn("events"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )
    prog.start()
    return prog, prog.add_task("events", total=total)
