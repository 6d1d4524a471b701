"""``freshet experiment freshness LOG``: the value of data freshness (DMLS ch. 9) on your own recorded stream.

The log (CSV, Parquet or JSON lines: the spec's event fields and a label column) is replayed through the
real worker and learner, once per publication setting (every N examples, every T seconds, the defaults,
never), each time on fresh topics: events at a fixed rate, each label as soon as its prediction appears on
``predictions`` (as a user who learns outcomes at once would). The served predictions are scored against
the labels and set beside how stale the serving versions were (from the learner's ``served`` metrics), so
you can choose the interval from your own data. Results go to ``freshness.json`` and ``freshness.png``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings

Item = tuple[dict[str, Any], Any]  # (event, label)


@dataclass(frozen=True)
class Variant:
    """One publication setting: what the learner publishes, and how often."""

    name: str
    snapshot_every: int
    publish_every_s: float
    publish_early: bool = False
    publish_when_caught_up: bool = False


NEVER = 10**9  # examples: a snapshot interval no log reaches

DEFAULT_VARIANTS = (
    Variant("every example", 1, 0.0),
    Variant("every 10 examples", 10, 0.0),
    Variant("every 100 examples", 100, 0.0),
    Variant("every 500 examples", 500, 0.0),
    Variant("every 1 s", NEVER, 1.0),
    Variant("every 5 s", NEVER, 5.0),
    Variant("never", NEVER, 0.0),
    Variant("freshet defaults", Settings().snapshot_every, Settings().publish_every_s, True, True),
)


def read_log(path: Path, label_column: str = "label") -> list[Item]:
    """``(event, label)`` pairs from a CSV, Parquet or JSON-lines file (rows in stream order)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        frame = pd.read_json(path, lines=True)
    else:
        frame = pd.read_csv(path)
    if label_column not in frame.columns:
        raise ValueError(f"{path} has no column {label_column!r} (the label); say which with --label-column")
    items: list[Item] = []
    for row in frame.to_dict(orient="records"):
        label = row.pop(label_column)
        items.append(({str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
                      label.item() if hasattr(label, "item") else label))
    return items


def serve(
    s: Settings, items: Sequence[Item], rate: float, delay: int = 0, timeout_s: float = 120.0,
    id_field: str = "id", entity_field: str = "entity", time_field: str = "ts",
) -> list[dict[str, Any]]:
    """Publish events at ``rate``; label i as soon as the prediction of event i + ``delay`` is seen.

    Returns the predictions in event order. Labels carry the event's time (``ts`` of the label = event time).
    """
    from producers.publish import make_producer
    from streams.ops.readers import TopicReader

    index = {event[id_field]: i for i, (event, _) in enumerate(items)}
    seen: dict[int, dict[str, Any]] = {}
    labelled = sent = 0
    labels_sent = False
    reader = TopicReader(s, "predictions")
    producer = make_producer(s, linger_ms=0)
    try:
        start = time.monotonic()
        deadline = start + len(items) / rate + timeout_s
        while labelled < len(items):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(seen)} of {len(items)} predictions seen, {labelled} labels sent")
            now = time.monotonic()
            due = sent
            while sent < len(items) and now >= start + sent / rate:
                event = items[sent][0]
                producer.send(s.topic("events"), key=str(event[entity_field]).encode(), value=orjson.dumps(event))
                sent += 1
            if sent > due:
                producer.flush()
            # Block until predictions come or the next event is due (a busy loop would take a core from the
            # worker and the learner on a small machine, and make the labels later, not sooner).
            wait_s = 0.05 if sent >= len(items) else start + sent / rate - time.monotonic()
            for _, value, _ in reader.poll(min(max(wait_s, 0.0005), 0.05)):
                if isinstance(value, dict) and value.get("id") in index:
                    seen.setdefault(index[value["id"]], value)
            while labelled < len(items) and (
                labelled + delay in seen or (len(seen) == len(items) and labelled in seen)
            ):
                event, label = items[labelled]
                record = {"id": event[id_field], "label": label, "ts": event[time_field]}
                producer.send(s.topic("labels"), key=str(event[id_field]).encode(), value=orjson.dumps(record))
                labelled += 1
                labels_sent = True
            if labels_sent:
                producer.flush()
                labels_sent = False
    finally:
        producer.close(timeout=10)
        reader.close()
    return [seen[i] for i in range(len(items))]


def served_score(kind: str, items: Sequence[Item], predictions: Sequence[dict[str, Any]]) -> float:
    """Accuracy (classification) or MAE (regression) of what was served; unserved predictions left out.

    >>> served_score("classification", [({}, True), ({}, False)], [{"prediction": True}, {"prediction": True}])
    0.5
    """
    pairs = [(p["prediction"], y) for p, (_, y) in zip(predictions, items, strict=True) if p["prediction"] is not None]
    if not pairs:
        return float("nan")
    if kind == "regression":
        return sum(abs(float(p) - float(y)) for p, y in pairs) / len(pairs)
    return sum(p == y for p, y in pairs) / len(pairs)


def run_variant(base: Settings, items: Sequence[Item], variant: Variant, rate: float, logs: Path) -> dict[str, Any]:
    """One replay with one publication setting on fresh topics; returns what users got and how stale."""
    from streams.ops.procs import running
    from streams.ops.readers import read_until
    from streams.ops.services import ensure_topics
    from streams.runtime.learner_loop import load_slots
    from streams.spec import PipelineSpec

    tag = uuid.uuid4().hex[:8]
    s = base.with_(
        topic_prefix=f"{base.topic_prefix}fresh-{tag}-", app_id=f"{base.app_id}-fresh-{tag}",
        snapshot_every=variant.snapshot_every, publish_every_s=variant.publish_every_s,
        publish_early=variant.publish_early, publish_when_caught_up=variant.publish_when_caught_up,
    )
    spec = PipelineSpec.load(s.spec_file)
    _, slots = load_slots(s, spec)
    ensure_topics(s)
    logs.mkdir(parents=True, exist_ok=True)
    with running(s, logs=logs):
        predictions = serve(
            s, items, rate, id_field=spec.event.id, entity_field=spec.event.entity, time_field=spec.event.time
        )
        records = read_until(
            s, "metrics", timeout_s=60,
            done=lambda r: any(v.get("role") == "served" and v.get("n") == len(items) for _, v, _ in r),
        )
    served = [v for _, v, _ in records if v.get("role") == "served"]
    learner = [v for _, v, _ in records if v.get("role") == "champion"]
    last_served = served[-1]["metrics"] if served else {}
    kind = slots[0].kind
    key = "mae" if kind == "regression" else "accuracy"
    return {
        **asdict(variant),
        "metric": key,
        "served": served_score(kind, items, predictions),
        "learner": learner[-1]["metrics"].get(key) if learner else None,
        "staleness_examples_mean": last_served.get("staleness_examples_mean"),
        "versions_served": len({p["model"] for p in predictions}),
        "events": len(items),
        "rate": rate,
    }


def plot(results: Sequence[dict[str, Any]], out: Path, title: str) -> None:
    """Served metric against mean staleness, one point per setting, the learner's figure as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    points = [r for r in results if r.get("staleness_examples_mean") is not None]
    ax.scatter([r["staleness_examples_mean"] for r in points], [r["served"] for r in points], color="tab:blue")
    for r in points:
        ax.annotate(r["name"], (r["staleness_examples_mean"], r["served"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    learner = [r["learner"] for r in results if r.get("learner") is not None]
    if learner:
        ax.axhline(learner[-1], color="tab:green", linestyle="--", linewidth=1,
                   label=f"learner's test-then-train {results[0]['metric']}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlim(left=0)
    ax.set_xlabel("mean staleness of the serving version (examples behind the learner)")
    ax.set_ylabel(f"served {results[0]['metric'] if results else ''}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)


def run_experiment(
    settings: Settings, log: Path, out_dir: Path, *, rate: float = 100.0, label_column: str = "label",
    variants: Sequence[Variant] = DEFAULT_VARIANTS, echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every variant in turn; writes ``freshness.json`` and ``freshness.png`` into ``out_dir``."""
    items = read_log(log, label_column)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for variant in variants:
        result = run_variant(settings, items, variant, rate, out_dir / "logs" / variant.name.replace(" ", "-"))
        echo(f"{variant.name:>20}: served {result['metric']} {result['served']:.4f}, "
             f"{result['staleness_examples_mean'] or 0:.1f} examples behind on average, "
             f"{result['versions_served']} versions served")
        results.append(result)
        (out_dir / "freshness.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot(results, out_dir / "freshness.png", f"{log.name}: {len(items)} events at {rate:g}/s, labels at once")
    return results


def _experiment_group() -> Any:
    import click

    @click.group()
    def experiment() -> None:
        """Experiments on your own data."""

    @experiment.command("freshness")
    @click.argument("log", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("reports/freshness"), show_default=True)
    @click.option("--rate", type=float, default=100.0, show_default=True, help="Events per second.")
    @click.option("--label-column", default="label", show_default=True)
    @click.pass_context
    def freshness(ctx: click.Context, log: Path, out_dir: Path, rate: float, label_column: str) -> None:
        """Replay LOG through the worker and learner with several publication intervals (and never); plot
        served accuracy (or MAE) against staleness into OUT/freshness.png."""
        from streams.ops.services import ServiceError, require_services

        # The ``freshet`` group put its settings (environment + --spec) on the context.
        settings: Settings = getattr(ctx.obj, "settings", None) or Settings.from_env()
        try:
            require_services(settings)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        run_experiment(settings, log, out_dir, rate=rate, label_column=label_column, echo=click.echo)
        click.echo(f"results: {out_dir / 'freshness.json'}, plot: {out_dir / 'freshness.png'}")

    return experiment


experiment = _experiment_group()
