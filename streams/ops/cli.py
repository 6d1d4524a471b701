"""The ``freshet`` command: run the worker and learner, produce streams, manage services and models.

Every command reads :class:`~streams.settings.Settings` from the environment (``FRESHET_*``); flags
override the few settings they name. Heavy imports happen inside commands so ``--help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.ops.cli_common import Context, FreshetGroup, pass_ctx, progress
from streams.ops.cli_common import fail as _fail
from streams.settings import Settings


@click.group(cls=FreshetGroup)
@click.version_option(package_name="freshet", prog_name="freshet")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline spec (TOML); default FRESHET_SPEC_PATH or pipelines/demo.toml.",
)
@click.pass_context
def main(ctx: click.Context, spec_path: Path | None) -> None:
    """freshet: streaming features, continual learning and drift detection on Kafka."""
    settings = Settings.from_env()
    if spec_path is not None:
        settings = settings.with_(spec_path=spec_path)
    ctx.obj = Context(settings)


# --- services ---------------------------------------------------------------------------------------


@main.group()
def services() -> None:
    """Local Kafka (KRaft) and Redis on 127.0.0.1, without Docker."""


@services.command("up")
@click.option(
    "--with-monitoring",
    is_flag=True,
    help="Also start Prometheus (installed from Debian when missing) with freshet's rules, scraping the worker "
    "and learner, and Alertmanager when it is installed.",
)
@pass_ctx
def services_up_cmd(c: Context, with_monitoring: bool) -> None:
    """Start Kafka and Redis where nothing listens yet, and create freshet's topics."""
    from streams.ops.services import ensure_topics, services_up

    s = c.settings
    progress(f"starting Kafka on {s.kafka_bootstrap} and Redis on {s.redis_host}:{s.redis_port}...")
    started = services_up(s)
    progress("creating topics...")
    ensure_topics(s)
    if with_monitoring:
        from streams.ops.monitoring import monitoring_up

        progress(f"starting Prometheus on 127.0.0.1:{s.prometheus_port}...")
        started += monitoring_up(s)
    click.echo(f"started: {', '.join(started) or 'nothing (already running)'}")
    if with_monitoring:
        click.echo(
            f"Prometheus UI: http://127.0.0.1:{s.prometheus_port} (Debian's build: /classic/alerts, /classic/targets); "
            f"it scrapes the worker on :{s.metrics_port} and the learner on :{s.metrics_port + 1}"
        )
        from shutil import which

        if which("prometheus-alertmanager"):
            click.echo(f"Alertmanager UI: http://127.0.0.1:{s.alertmanager_port}")
        else:
            click.echo("Alertmanager not installed (apt-get install prometheus-alertmanager): see alerts in Prometheus")


@services.command("down")
@pass_ctx
def services_down_cmd(c: Context) -> None:
    """Stop the servers freshet started (Prometheus and Alertmanager too)."""
    from streams.ops.monitoring import monitoring_down
    from streams.ops.services import services_down

    stopped = monitoring_down(c.settings) + services_down(c.settings)
    click.echo(f"stopped: {', '.join(stopped) or 'nothing'}")


@services.command("status")
@pass_ctx
def services_status_cmd(c: Context) -> None:
    """Show whether Kafka, Redis, Prometheus and Alertmanager answer, and which freshet started."""
    from streams.ops.services import services_status

    for name, st in services_status(c.settings, monitoring=True).items():
        state = "running" if st["running"] else "stopped"
        owner = f" (pid {st['pid']}, started by freshet)" if st["started_by_freshet"] else ""
        click.echo(f"{name:12} {st['host']}:{st['port']} {state}{owner}")


# --- monitoring -------------------------------------------------------------------------------------------


@main.group()
def monitoring() -> None:
    """Check freshet's Prometheus config, alert rules and Grafana dashboard."""


@monitoring.command("check")
@click.option(
    "--prometheus-url",
    default=None,
    help="Also run every dashboard panel's query against this Prometheus (e.g. http://127.0.0.1:9090) "
    "over the last --range-s and fail on panels without data.",
)
@click.option("--range-s", type=float, default=900.0, show_default=True, help="Time range of the panel check.")
def monitoring_check(prometheus_url: str | None, range_s: float) -> None:
    """promtool check config, check rules and test rules over deploy/prometheus; optionally the dashboard."""
    import time

    from streams.ops import monitoring as mon

    failed = False
    for result in mon.check_deploy_files():
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.what}")
        if not result.ok:
            failed = True
            click.echo("     " + result.output.replace("\n", "\n     "))
    if prometheus_url:
        api = mon.PrometheusAPI(prometheus_url)
        now = time.time()
        for panel in mon.check_dashboard(api, mon.load_dashboard(), start=now - range_s, end=now):
            click.echo(f"{'ok  ' if panel.ok else 'FAIL'} panel {panel.describe()}")
            failed = failed or not panel.ok
    if failed:
        sys.exit(1)


# --- worker, learner, producer -------------------------------------------------------------------------


def _prepare(settings: Settings) -> None:
    from streams.ops.services import ensure_topics, require_services

    settings.check_signing_key()
    require_services(settings)
    ensure_topics(settings)


@main.command()
@click.option("--metrics-port", type=int, default=None, help="Port of /metrics (default FRESHET_METRICS_PORT).")
@pass_ctx
def worker(c: Context, metrics_port: int | None) -> None:
    """Run the Faust worker: validate, features, predict, join labels."""
    from streams.runtime.worker import run_worker

    settings = c.settings if metrics_port is None else c.settings.with_(metrics_port=metrics_port)
    _prepare(settings)
    run_worker(settings)


@main.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Port of the learner's /metrics (default FRESHET_METRICS_PORT + 1).",
)
@click.option("--max-idle-s", type=float, default=0.0, help="Exit after this long without examples (0: never).")
@pass_ctx
def learn(c: Context, metrics_port: int | None, max_idle_s: float) -> None:
    """Run the ordered learner: test-then-train every model slot, snapshot, publish versions."""
    from streams.runtime.learner_loop import run_learner

    _prepare(c.settings)
    run_learner(c.settings, metrics_port=metrics_port, max_idle_s=max_idle_s)


@main.command()
@click.option(
    "--kind",
    type=click.Choice(["sea", "agrawal", "hyperplane", "phishing"]),
    default="sea",
    show_default=True,
    help="Synthetic stream (River generators) or the Phishing replay.",
)
@click.option("--events", "n_events", type=int, default=10_000, show_default=True)
@click.option("--entities", "n_entities", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--rate", type=float, default=0.0, help="Target events/s (0: as fast as possible).")
@click.option(
    "--label-delay-s",
    type=float,
    default=0.0,
    show_default=True,
    help="Wall seconds between an event and its label.",
)
@click.option("--drift-at", type=str, default="", help="Comma-separated event indices where the concept changes.")
@click.option("--bad-every", type=int, default=0, help="Also send a malformed event every N events.")
@click.option("--no-labels", is_flag=True, help="Send events only.")
@click.option("--start-ts", type=float, default=None, help="Event time of the first event (default: now).")
@click.option("--step-s", type=float, default=0.1, show_default=True, help="Event-time step between events.")
@pass_ctx
def produce(
    c: Context,
    kind: str,
    n_events: int,
    n_entities: int,
    seed: int,
    rate: float,
    label_delay_s: float,
    drift_at: str,
    bad_every: int,
    no_labels: bool,
    start_ts: float | None,
    step_s: float,
) -> None:
    """Publish a seeded synthetic stream to `events` (and labels to `labels`) with kafka-python."""
    import time

    from producers.publish import publish
    from producers.synthetic import SyntheticStream

    _prepare(c.settings)
    drifts = [int(d) for d in drift_at.split(",") if d.strip()]
    stream = SyntheticStream(
        kind=kind,
        n_events=n_events,
        n_entities=n_entities,
        seed=seed,
        start_ts=start_ts if start_ts is not None else time.time() - n_events * step_s,
        step_s=step_s,
        drift_at=drifts,
    )
    stats = publish(
        c.settings,
        stream,
        rate_per_s=rate,
        label_delay_s=label_delay_s,
        send_labels=not no_labels,
        bad_every=bad_every,
        total=stream.n_events,
        progress=sys.stderr.isatty(),
    )
    click.echo(
        f"published {stats.events} events, {stats.labels} labels, {stats.bad} malformed "
        f"in {stats.elapsed_s:.1f} s ({stats.events_per_s:.0f} events/s)"
    )


@main.command()
@click.option("--duration-s", type=float, default=60.0, show_default=True, help="How long the stream runs.")
@click.option("--rate", type=float, default=100.0, show_default=True, help="Events per second.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/demo"),
    show_default=True,
)
@pass_ctx
def demo(c: Context, duration_s: float, rate: float, report_dir: Path) -> None:
    """Start everything, stream a drifting synthetic stream for about a minute, print a summary, stop."""
    from streams.ops.demo import run_demo

    sys.exit(run_demo(c.settings, duration_s=duration_s, rate=rate, report_dir=report_dir))


# --- features ---------------------------------------------------------------------------------------


@main.group()
def features() -> None:
    """Read the online store."""


@features.command("get")
@click.argument("entity")
@pass_ctx
def features_get(c: Context, entity: str) -> None:
    """Print the latest feature vector of ENTITY (JSON), with the event time it is fresh as of."""
    import orjson

    from streams.runtime.connections import open_store

    row = open_store(c.settings).get(entity)
    if row is None:
        _fail(f"no features for entity {entity!r} in the online store at {c.settings.redis_url}")
    click.echo(orjson.dumps(row, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


@main.command()
@click.argument("input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--as-of",
    "as_of",
    type=str,
    default=None,
    help="One row per entity as of this time (epoch seconds or ISO-8601 with a zone); "
    "without it, every event with its point-in-time features.",
)
@click.option(
    "--attributes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV/Parquet of static entity attributes.",
)
@click.option(
    "--order",
    type=click.Choice(["arrival", "time"]),
    default="arrival",
    show_default=True,
    help="arrival: the file's row order, as the stream read it (the features it served, late events "
    "included); time: by parsed event time, as if every event had come on time. Rows come out in input order.",
)
@pass_ctx
def backfill(
    c: Context, input_path: Path, output_path: Path, as_of: str | None, attributes: Path | None, order: str
) -> None:
    """Compute the spec's features over a CSV/Parquet event log with pandas; write Parquet."""
    from streams.event_time import parse_event_time
    from streams.features.batch import backfill as run_backfill

    as_of_s = None
    if as_of is not None:
        try:
            as_of_s = parse_event_time(float(as_of) if as_of.replace(".", "", 1).isdigit() else as_of)
        except ValueError as exc:
            _fail(f"--as-of: {exc}")
    progress(f"computing {c.settings.spec_file.name}'s features over {input_path} with pandas...")
    n = run_backfill(
        c.settings.spec_file,
        input_path,
        output_path,
        as_of_s=as_of_s,
        attributes_path=attributes,
        order=order,
    )
    click.echo(f"wrote {n} rows to {output_path}")


# --- models ----------------------------------------------------------------------------------------


@main.command("warm-start")
@click.argument("events_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--slot", default=None, help="Model slot (default: every slot of the spec).")
@pass_ctx
def warm_start_cmd(c: Context, events_path: Path, labels_path: Path, slot: str | None) -> None:
    """Train a slot's models on a historic log (CSV/Parquet events + labels) and make them current."""
    from streams.core.partitions import partition_for
    from streams.ops.readers import end_offsets
    from streams.ops.warmstart import warm_start_slot
    from streams.runtime.announce import announce_pointer
    from streams.runtime.connections import open_registry
    from streams.runtime.learner_loop import load_slots

    _prepare(c.settings)
    spec, slots = load_slots(c.settings)
    registry = open_registry(c.settings)
    ends = end_offsets(c.settings, "examples")
    for slot_def in slots:
        if slot is not None and slot_def.slot != slot:
            continue
        end = ends.get(partition_for(slot_def.slot, len(ends)), 0) if ends else 0
        progress(f"training slot {slot_def.slot} on {events_path} and {labels_path}...")
        meta = warm_start_slot(
            spec,
            slot_def,
            events_path,
            labels_path,
            registry,
            examples_end_offset=end,
            rolling_window=c.settings.rolling_window,
        )
        announce_pointer(c.settings, registry, slot_def.slot, meta, "warm_start")
        click.echo(
            f"{meta.ref}: learned {meta.examples_learned} historic examples; the learner goes on from "
            f"examples offset {meta.offset + 1}"
        )


@main.group()
def models() -> None:
    """List, promote and roll back model versions in the registry."""


@models.command("list")
@click.argument("slot", required=False)
@pass_ctx
def models_list(c: Context, slot: str | None) -> None:
    """Versions of every slot (or one): version, parent, examples learned, offset, champion, metrics."""
    from streams.runtime.connections import open_registry

    registry = open_registry(c.settings)
    names = [slot] if slot else registry.names()
    if not names:
        click.echo("no model versions yet")
    for name in names:
        current = registry.current(name)
        for meta in registry.versions(name):
            mark = "*" if current is not None and meta.version == current.version else " "
            champ = meta.metrics.get(meta.champion or "", {}) if isinstance(meta.metrics, dict) else {}
            acc = champ.get("accuracy") if isinstance(champ, dict) else None
            score = f" accuracy={acc:.4f}" if isinstance(acc, float) else ""
            click.echo(
                f"{mark} {meta.ref:24} parent={meta.parent} champion={meta.champion} "
                f"examples={meta.examples_learned} offset={meta.offset} bytes={meta.size_bytes}{score}"
            )


@models.command("promote")
@click.argument("slot")
@click.argument("version", type=int)
@pass_ctx
def models_promote(c: Context, slot: str, version: int) -> None:
    """Serve VERSION of SLOT (predictors hot-swap; the learner continues from it).

    On a slot routed by canary, VERSION's champion is canaried first: the learner adds it to the slot and
    it serves a growing share while its guards hold, or is rolled back.
    """
    from streams.runtime.announce import announce_pointer
    from streams.runtime.connections import open_registry

    registry = open_registry(c.settings)
    if _canary_routed(c, slot):  # issue 10: a canary first, not all traffic at once
        import time

        from models.canary_request import request

        meta = registry.meta(slot, version)  # it must exist
        request(registry, slot, version, time.time())
        click.echo(f"{slot}: {meta.ref} goes to canary (the learner starts it within a second; watch `drift`)")
        return
    meta = registry.set_current(slot, version)
    announce_pointer(c.settings, registry, slot, meta, "promote")
    click.echo(f"{slot} now serves {meta.ref}")


def _canary_routed(c: Context, slot: str) -> bool:
    """Whether the spec routes ``slot`` by canary (``[models.routing] kind = "canary"``)."""
    from models.spec import parse_models
    from streams.spec import PipelineSpec

    spec = PipelineSpec.load(c.settings.spec_file)
    return any(s.slot == slot and s.routing.kind == "canary"
               for s in parse_models(spec.raw.get("models", []), spec.label.kind))


@models.command("rollback")
@click.argument("slot")
@pass_ctx
def models_rollback(c: Context, slot: str) -> None:
    """Serve the current version's parent again (predictors hot-swap; the learner continues from it)."""
    from streams.runtime.announce import announce_pointer
    from streams.runtime.connections import open_registry

    registry = open_registry(c.settings)
    meta = registry.rollback(slot)
    announce_pointer(c.settings, registry, slot, meta, "rollback")
    click.echo(f"{slot} rolled back to {meta.ref}")


# Commands kept in their own modules (they import Kafka, rich and matplotlib only when they run).
from streams.ops.freshness import experiment  # noqa: E402
from streams.ops.report_cli import report  # noqa: E402
from streams.ops.watch import watch  # noqa: E402

main.add_command(watch)
main.add_command(report)
main.add_command(experiment)
