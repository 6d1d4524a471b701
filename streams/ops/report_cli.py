"""``freshet report``: read the whole ``metrics`` and ``drift`` topics and write the report (PNG + HTML).

"Whole" means up to the end offsets the topics had when the command started: messages published while it
reads are left for the next report, so the command always ends. The drawing is
:func:`streams.ops.report.build_report`; this module only reads Kafka (no consumer group, like
:mod:`streams.ops.readers`) and talks to the user.
"""

from __future__ import annotations

from pathlib import Path

import click

from streams.ops.cli_common import Context, fail, progress
from streams.ops.readers import read_whole_topic


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
@click.option(
    "--predictions",
    "max_predictions",
    type=click.IntRange(min=0),
    default=50_000,
    show_default=True,
    help="Newest predictions read per partition, for the latency over time and the versions served (0: none).",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also open the page in headless Chromium, check it (images load, no console errors) and save a PNG.",
)
@click.pass_obj
def report(
    c: Context, out_dir: Path, timeout_s: float, title: str, max_predictions: int, screenshot: Path | None
) -> None:
    """Plot the models' online metrics over examples and event time, drift alerts marked, and the latency
    over time; print the paths."""
    from kafka.errors import KafkaError

    from streams.ops.report import build_report
    from streams.ops.watch import kafka_unreachable

    settings = c.settings
    if (problem := kafka_unreachable(settings)) is not None:
        fail(problem)

    def step(what: str) -> None:  # reading big topics takes a while
        progress(f"freshet report: {what}")

    try:
        step(f"reading {settings.topic('metrics')!r}...")
        metrics = read_whole_topic(settings, "metrics", timeout_s)
        step(f"reading {settings.topic('drift')!r}...")
        drift = read_whole_topic(settings, "drift", timeout_s)
        predictions = None
        if max_predictions:
            topic = settings.topic("predictions")
            step(f"reading the newest {max_predictions} predictions per partition of {topic!r}...")
            predictions = read_whole_topic(settings, "predictions", timeout_s, last_per_partition=max_predictions)
    except KafkaError as exc:
        fail(f"cannot read topics from Kafka at {settings.kafka_bootstrap}: {exc}")
        return
    snapshots = [v for v in metrics.values if isinstance(v, dict) and v.get("model") is not None]
    if not snapshots:
        fail(
            f"no metric snapshots in topic {settings.topic('metrics')!r} yet: the learner publishes them "
            "as it learns labelled examples; run `freshet worker`, `freshet learn` and a producer first"
        )
    read = [("metrics", metrics), ("drift", drift)] + ([("predictions", predictions)] if predictions else [])
    for name, contents in read:
        if not contents.complete:
            click.echo(
                f"freshet: read {len(contents.values)} of {contents.expected} messages of "
                f"{settings.topic(name)!r} within --timeout-s {timeout_s:g}; the report covers those",
                err=True,
            )
    step(f"drawing {len(snapshots)} snapshots into {out_dir}...")
    paths = build_report(
        snapshots, drift.values, out_dir, title=title, predictions=predictions.values if predictions else None
    )
    models = sorted({str(s["model"]) for s in snapshots})
    n_preds = len(predictions.values) if predictions else 0
    click.echo(
        f"{len(snapshots)} metric snapshots of {len(models)} models ({', '.join(models)}), "
        f"{len(drift.values)} drift alerts, {n_preds} predictions"
    )
    for path in paths.values():
        click.echo(str(path))
    if screenshot is not None:
        from streams.ops.browser import BrowserError, check_page
        from streams.ops.services import ServiceError

        step("opening the page in headless Chromium...")
        try:
            check = check_page(paths["html"], screenshot)
        except (BrowserError, ServiceError) as exc:
            fail(f"could not check the page in Chromium: {exc}")
            return
        click.echo(str(screenshot))
        if problems := check.problems(REPORT_PARTS):
            fail(f"the report page has problems in Chromium: {'; '.join(problems)}")


# Parts of report.html a reader looks for; --screenshot fails when one is missing.
REPORT_PARTS = ("headline", "models", "latency", "drift-alerts")
