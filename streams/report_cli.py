"""``freshet report``: read the whole ``metrics`` and ``drift`` topics and write the report (PNG + HTML).

"Whole" means up to the end offsets the topics had when the command started: messages published while it
reads are left for the next report, so the command always ends. The drawing is
:func:`streams.report.build_report`; this module only reads Kafka (no consumer group, like
:mod:`streams.readers`) and talks to the user.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

if TYPE_CHECKING:
    from streams.cli import Context
    from streams.settings import Settings


class TopicContents(NamedTuple):
    """The decoded message values of a topic, and whether the read reached the topic's end."""

    values: list[Any]
    complete: bool
    expected: int


def read_whole_topic(settings: Settings, name: str, timeout_s: float) -> TopicContents:
    """Every message of one of freshet's topics, from each partition's start to its end offset at call
    time, or what arrived within ``timeout_s``. A topic that does not exist yet reads as empty."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.records import decode

    topic = settings.topic(name)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return TopicContents([], True, 0)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        start, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        todo = {tp for tp in tps if end[tp] > start[tp]}
        expected = sum(end[tp] - start[tp] for tp in tps)
        values: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200, max_records=10_000).items():
                for r in records:
                    if r.offset >= end[tp] or r.value is None:
                        continue
                    try:
                        values.append(decode(r.value))
                    except ValueError:
                        continue  # not JSON: build_report would skip it anyway
            todo = {tp for tp in todo if consumer.position(tp) < end[tp]}
        return TopicContents(values, not todo, expected)
    finally:
        consumer.close()


@click.command("report")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/latest"),
    show_default=True, help="Folder for metrics_examples.png, metrics_time.png and report.html.",
)
@click.option("--timeout-s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Longest time spent reading each topic.")
@click.option("--title", default="freshet report", show_default=True, help="Title of the plots and the page.")
@click.pass_obj
def report(c: Context, out_dir: Path, timeout_s: float, title: str) -> None:
    """Plot the models' online metrics over examples and event time, drift alerts marked; print the paths."""
    from kafka.errors import KafkaError

    from streams.cli import _fail  # loaded by now: it is what runs this command
    from streams.report import build_report
    from streams.watch import kafka_unreachable

    settings = c.settings
    if (problem := kafka_unreachable(settings)) is not None:
        _fail(problem)
    try:
        metrics = read_whole_topic(settings, "metrics", timeout_s)
        drift = read_whole_topic(settings, "drift", timeout_s)
    except KafkaError as exc:
        _fail(f"cannot read topics from Kafka at {settings.kafka_bootstrap}: {exc}")
        return
    snapshots = [v for v in metrics.values if isinstance(v, dict) and v.get("model") is not None]
    if not snapshots:
        _fail(
            f"no metric snapshots in topic {settings.topic('metrics')!r} yet: the learner publishes them "
            "as it learns labelled examples; run `freshet worker`, `freshet learn` and a producer first"
        )
    for name, contents in (("metrics", metrics), ("drift", drift)):
        if not contents.complete:
            click.echo(
                f"freshet: read {len(contents.values)} of {contents.expected} messages of "
                f"{settings.topic(name)!r} within --timeout-s {timeout_s:g}; the report covers those",
                err=True,
            )
    paths = build_report(snapshots, drift.values, out_dir, title=title)
    models = sorted({str(s["model"]) for s in snapshots})
    click.echo(f"{len(snapshots)} metric snapshots of {len(models)} models ({', '.join(models)}), "
               f"{len(drift.values)} drift alerts")
    for path in paths.values():
        click.echo(str(path))
