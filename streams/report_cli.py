"""``freshet report``: read the whole ``metrics`` and ``drift`` topics and write the report (PNG + HTML).

"Whole" means up to the end offsets the topics had when the command started: messages published while it
reads are left for the next report, so the command always ends. The drawing is
:func:`streams.report.build_report`; this module only reads Kafka (no consumer group, like
:mod:`streams.readers`) and talks to the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.readers import read_whole_topic

if TYPE_CHECKING:
    from streams.cli import Context


@click.command("report")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/latest"),
    show_default=True,
    help="Folder for metrics_examples.png, metrics_time.png and report.html.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Longest time spent reading each topic.",
)
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
    click.echo(
        f"{len(snapshots)} metric snapshots of {len(models)} models ({', '.join(models)}), "
        f"{len(drift.values)} drift alerts"
    )
    for path in paths.values():
        click.echo(str(path))
