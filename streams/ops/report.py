"""``freshet report``: online metrics over time with the drift points marked, as PNG images and an HTML page.

Pure rendering: the caller reads the ``metrics`` and ``drift`` topics and passes their message values.
Matplotlib draws off-screen (the Agg canvas, no pyplot and no display).

Metrics snapshot (a ``metrics`` topic message, published by the learner per model every so often)::

    {"v": 1,
     "model": "default/lr",        # "slot/name": one line per model in the plots
     "slot": "default",
     "name": "lr",
     "role": "champion",            # or "challenger"
     "version": 3,                  # optional: the model version being trained
     "n": 5000,                     # examples the model has learned (the x axis "examples")
     "offset": 5123,                # optional: offset of the last example learned
     "event_ts": 1700000000.0,      # event time of the last example, epoch s (the x axis "time")
     "ts": 1700000003.2,            # wall time of the snapshot, epoch s
     "metrics": {"accuracy": 0.91, "accuracy_rolling": 0.88, "log_loss": 0.3, ...}}

Predictions (``predictions`` topic messages, optional) give the event→prediction latency over time
(``latency.png``: p50 and p99 of ``produced_ts - ingest_ts`` per time bucket) and the version the workers
serve. The page opens with a headline per model slot: the served model (the champion, whose versions the
workers swap in) against its shadow challengers, the versions trained and served, drifts and promotions.

A metric ``<m>_rolling`` is the rolling window's value of ``<m>``, drawn as a solid line; ``<m>`` alone is
cumulative, dashed. ``None`` values and the key ``champion`` are skipped. Drift alerts are
:class:`models.drift.DriftAlert` dicts; each becomes a vertical line at its event time (mapped to the
examples axis through the snapshots' ``event_ts``; a concept alert without event time falls back to its
``n``): red for concept drift, orange dotted for a warning, purple dashed for feature, prediction and label
drift.

>>> import tempfile
>>> snaps = [{"v": 1, "model": "default/lr", "role": "champion", "n": n, "event_ts": 1e9 + n,
...           "ts": 2e9, "metrics": {"accuracy_rolling": 0.9 if n < 500 else 0.6, "accuracy": 0.85}}
...          for n in range(0, 1000, 50)]
>>> alerts = [{"v": 1, "kind": "concept", "subject": "default/lr", "detector": "adwin",
...            "statistic": "error_mean", "value": 0.4, "threshold": 0.1, "event_ts": 1e9 + 530,
...            "offset": 530, "level": "drift", "detected_ts": 2e9, "n": 531}]
>>> with tempfile.TemporaryDirectory() as out:
...     paths = build_report(snaps, alerts, out)
...     sorted(paths), paths["png_examples"].stat().st_size > 10_000
(['html', 'png_examples', 'png_time'], True)
>>> preds = [{"slot": "default", "model": "lr@3", "produced_ts": 2e9 + i, "ingest_ts": 2e9 + i - 0.01}
...          for i in range(100)]
>>> with tempfile.TemporaryDirectory() as out:
...     sorted(build_report(snaps, alerts, out, predictions=preds))
['html', 'png_examples', 'png_latency', 'png_time']
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streams.ops.routing_summary import experiments_html

MAX_METRIC_PANELS = 6
_PREFERRED = ("accuracy", "roc_auc", "f1", "log_loss", "mae", "rmse", "r2")
_DRIFT_STYLE: dict[str, dict[str, Any]] = {
    "concept": {"color": "tab:red", "linestyle": "-", "linewidth": 1.4},
    "warning": {"color": "tab:orange", "linestyle": ":", "linewidth": 1.2},
    "data": {"color": "tab:purple", "linestyle": "--", "linewidth": 1.0},
}


# Bookkeeping keys of a snapshot, not metrics worth a panel.
_NOT_PLOTTED = {"champion", "n", "n_rolling"}

def build_report(
    metrics_snapshots: Iterable[Mapping[str, Any]],
    drift_alerts: Iterable[Mapping[str, Any]],
    out_dir: Path | str,
    *,
    title: str = "freshet report",
    predictions: Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``metrics_examples.png`` (metrics vs. examples learned), ``metrics_time.png`` (vs. event
    time; only when the snapshots carry ``event_ts``), ``latency.png`` (only with ``predictions`` that
    carry ``ingest_ts``) and ``report.html`` into ``out_dir``.

    Returns ``{"html": ..., "png_examples": ..., "png_time": ..., "png_latency": ...}`` (paths that were
    written). Malformed snapshots, alerts or predictions (not a dict, no model) are skipped, so a report
    of a noisy topic still renders.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snaps = [s for s in metrics_snapshots if isinstance(s, Mapping) and s.get("model") is not None]
    alerts = [a for a in drift_alerts if isinstance(a, Mapping) and a.get("kind") is not None]
    # Routed slots (issue 10): per-arm snapshots and bandit plans get a section of their own, not a curve.
    routed = [s for s in snaps if s.get("role") in ("arm", "routing")]
    snaps = [s for s in snaps if s.get("role") not in ("arm", "routing")]
    preds = [p for p in predictions or () if isinstance(p, Mapping) and p.get("model") is not None]
    series = _series(snaps)
    paths: dict[str, Path] = {}
    latency = latency_over_time(preds)

    paths["png_examples"] = out / "metrics_examples.png"
    _plot(series, alerts, "n", paths["png_examples"], title)
    if any(p.event_ts is not None for s in series.values() for p in s):
        paths["png_time"] = out / "metrics_time.png"
        _plot(series, alerts, "event_ts", paths["png_time"], title)

    if latency:
        paths["png_latency"] = out / "latency.png"
        _plot_latency(latency, paths["png_latency"], title)

    paths["html"] = out / "report.html"
    page = _html(title, series, snaps, alerts, paths, preds, latency)
    extra = experiments_html(routed, alerts)
    if extra:
        page = page.replace("<h2>Metrics</h2>", extra + "<h2>Metrics</h2>", 1)
    paths["html"].write_text(page, encoding="utf-8")
    return paths


def latency_over_time(
    predictions: Iterable[Mapping[str, Any]], buckets: int = 60
) -> list[tuple[float, float, float, int]]:
    """Event→prediction latency (``produced_ts - ingest_ts``) per time bucket of publication:
    ``(bucket start epoch s, p50 ms, p99 ms, predictions)``, at most ``buckets`` of them.

    >>> preds = [{"produced_ts": 100.0 + i, "ingest_ts": 100.0 + i - (0.5 if i == 9 else 0.01)} for i in range(10)]
    >>> [(t, p50, p99, n) for t, p50, p99, n in latency_over_time(preds, buckets=2)]
    [(100.0, 10.0, 10.0, 5), (104.5, 10.0, 500.0, 5)]
    """
    points = sorted(
        (t, (t - i) * 1000.0)
        for p in predictions
        if (t := _num(p.get("produced_ts"))) is not None and (i := _num(p.get("ingest_ts"))) is not None
    )
    if not points:
        return []
    lo, hi = points[0][0], points[-1][0]
    width = max((hi - lo) / buckets, 1e-9)
    grouped: dict[int, list[float]] = {}
    for t, ms in points:
        grouped.setdefault(min(buckets - 1, int((t - lo) / width)), []).append(ms)
    out = []
    for b in sorted(grouped):
        values = sorted(grouped[b])
        out.append((round(lo + b * width, 6), _rank(values, 0.5), _rank(values, 0.99), len(values)))
    return out


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values, rounded to 0.1 ms."""
    return round(ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))], 1)


def _plot_latency(latency: list[tuple[float, float, float, int]], path: Path, title: str) -> None:
    fig = Figure(figsize=(11, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    times: Any = [datetime.fromtimestamp(t, tz=UTC) for t, *_ in latency]
    ax.plot(times, [p99 for _, _, p99, _ in latency], color="tab:red", linewidth=1.4, label="p99")
    ax.plot(times, [p50 for _, p50, _, _ in latency], color="tab:blue", linewidth=1.6, label="p50")
    ax.set_ylabel("latency (ms)")
    ax.set_xlabel("prediction published (UTC)")
    if max(p99 for _, _, p99, _ in latency) > 20 * max(0.1, min(p50 for _, p50, _, _ in latency)):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(f"{title}: event → prediction latency (Kafka append → prediction published)")
    fig.tight_layout()
    fig.savefig(path, format="png")


class _Point:
    __slots__ = ("event_ts", "metrics", "n", "role", "version")

    def __init__(self, snap: Mapping[str, Any]) -> None:
        self.n = _num(snap.get("n"))
        self.event_ts = _num(snap.get("event_ts"))
        self.role = str(snap.get("role") or "")
        self.version = snap.get("version")
        raw = snap.get("metrics") or {}
        self.metrics = {
            str(k): float(v) for k, v in raw.items()
            if k not in _NOT_PLOTTED and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _series(snaps: list[Mapping[str, Any]]) -> dict[str, list[_Point]]:
    by_model: dict[str, list[_Point]] = {}
    for snap in snaps:
        by_model.setdefault(str(snap["model"]), []).append(_Point(snap))
    for points in by_model.values():
        points.sort(key=lambda p: (p.n if p.n is not None else -1, p.event_ts or 0.0))
    return dict(sorted(by_model.items()))


def metric_names(series: Mapping[str, list[_Point]]) -> list[str]:
    """Base metric names (``_rolling`` stripped) in a stable order: the usual ones first."""
    names = {k.removesuffix("_rolling") for points in series.values() for p in points for k in p.metrics}
    return sorted(names, key=lambda m: (_PREFERRED.index(m) if m in _PREFERRED else len(_PREFERRED), m))


def _alert_x(alert: Mapping[str, Any], axis: str, series: Mapping[str, list[_Point]]) -> float | None:
    """Where an alert goes on the x axis (``None`` when it cannot be placed)."""
    event_ts = _num(alert.get("event_ts"))
    if axis == "event_ts":
        return event_ts
    if event_ts is None:
        return _num(alert.get("n")) if alert.get("kind") == "concept" else None
    subject = str(alert.get("subject", "")).split("@", 1)[0]
    candidates = [series[subject]] if subject in series else list(series.values())
    pairs = sorted(
        (p.event_ts, p.n) for points in candidates for p in points if p.event_ts is not None and p.n is not None
    )
    if not pairs:
        return None
    ts = np.array([t for t, _ in pairs])
    ns = np.array([n for _, n in pairs])
    return float(np.interp(event_ts, ts, ns))


def _style(alert: Mapping[str, Any]) -> dict[str, Any]:
    if alert.get("level") == "warning":
        return _DRIFT_STYLE["warning"]
    return _DRIFT_STYLE["concept" if alert.get("kind") == "concept" else "data"]


def _plot(
    series: Mapping[str, list[_Point]], alerts: list[Mapping[str, Any]], axis: str, path: Path, title: str
) -> None:
    names = metric_names(series)[:MAX_METRIC_PANELS]
    rows = max(1, len(names))
    fig = Figure(figsize=(11, 3.0 * rows + 0.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    colors = [f"C{i}" for i in range(10)]

    def x_of(p: _Point) -> Any:
        value = p.n if axis == "n" else p.event_ts
        if axis == "event_ts" and value is not None:
            return datetime.fromtimestamp(value, tz=UTC)
        return value

    for ax, name in zip(axes, names, strict=False):
        for i, (model, points) in enumerate(series.items()):
            color = colors[i % len(colors)]
            champion = any(p.role == "champion" for p in points[-1:])
            for key, linestyle, label in ((f"{name}_rolling", "-", "rolling"), (name, "--", "cumulative")):
                xy = [(x_of(p), p.metrics[key]) for p in points if key in p.metrics and x_of(p) is not None]
                if not xy:
                    continue
                ax.plot(
                    [x for x, _ in xy], [y for _, y in xy], linestyle=linestyle, color=color,
                    linewidth=1.8 if champion else 1.0, alpha=1.0 if champion else 0.7,
                    label=f"{model} {label}", marker="." if len(xy) < 3 else None,
                )
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    if not names:
        axes[0].text(0.5, 0.5, "no metric snapshots", ha="center", va="center", transform=axes[0].transAxes)

    placed = 0
    for alert in alerts:
        x = _alert_x(alert, axis, series)
        if x is None:
            continue
        xv: Any = datetime.fromtimestamp(x, tz=UTC) if axis == "event_ts" else x
        for ax in axes:
            ax.axvline(xv, **_style(alert))
        placed += 1

    handles, labels = axes[0].get_legend_handles_labels()
    if placed:
        from matplotlib.lines import Line2D

        for key, label in (("concept", "concept drift"), ("warning", "drift warning"), ("data", "data drift")):
            handles.append(Line2D([], [], **_DRIFT_STYLE[key]))
            labels.append(label)
    if handles:
        axes[0].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("examples learned" if axis == "n" else "event time (UTC)")
    fig.suptitle(f"{title}: online metrics vs. {'examples' if axis == 'n' else 'event time'}")
    fig.tight_layout()
    fig.savefig(path, format="png")


def _fmt_ts(value: Any) -> str:
    ts = _num(value)
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt(value: Any) -> str:
    f = _num(value)
    return "" if f is None else f"{f:.4g}"


def _served_section(snaps: list[Mapping[str, Any]]) -> str:
    """What users got beside what the learner scored: the last ``role: served`` snapshot of each slot.

    >>> snap = {"model": "default/served", "role": "served", "slot": "default", "version": 9, "n": 1250,
    ...         "metrics": {"accuracy": 0.88, "staleness_examples_mean": 3.5, "staleness_examples_max": 16.0}}
    >>> "3.5" in _served_section([snap]) and "Served" in _served_section([snap]), _served_section([])
    (True, '')
    """
    last: dict[str, Mapping[str, Any]] = {}
    for snap in snaps:
        if snap.get("role") == "served":
            last[str(snap.get("model"))] = snap
    if not last:
        return ""
    e = html.escape
    rows = []
    for model, snap in sorted(last.items()):
        m = snap.get("metrics") or {}
        main = "mae" if "mae" in m else "accuracy"
        rows.append(
            f"<tr><td>{e(model)}</td><td>{e(main)}</td><td>{_fmt(m.get(main))}</td>"
            f"<td>{_fmt(m.get(main + '_rolling'))}</td><td>{_fmt(m.get('staleness_examples_mean'))}</td>"
            f"<td>{_fmt(m.get('staleness_examples_max'))}</td><td>{_fmt(snap.get('n'))}</td></tr>"
        )
    return (
        "<h2>Served (what users got)</h2><p>The served predictions, scored on their joined labels, beside the "
        "learner's test-then-train figures above; <i>behind</i> is how many examples the serving version had "
        "not learned yet when it served.</p><table><tr><th>slot</th><th>metric</th><th>cumulative</th>"
        "<th>rolling</th><th>behind (mean)</th><th>behind (max)</th><th>examples</th></tr>"
        + "".join(rows) + "</table>"
    )


def headlines(
    series: Mapping[str, list[_Point]], alerts: list[Mapping[str, Any]], preds: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What a person looks for first, per model slot: the served model (the champion) against its shadow
    challengers on the main metric, the versions trained and served, drifts, promotions and latency.

    >>> pts = lambda role, v, acc: [_Point({"role": role, "version": v, "n": 10, "metrics": {"accuracy": acc}})]
    >>> h = headlines({"d/lr": pts("champion", 4, 0.9), "d/fast": pts("challenger", 4, 0.8)}, [],
    ...               [{"slot": "d", "model": "lr@3", "produced_ts": 1.0, "ingest_ts": 0.99}])
    >>> h[0]["served"], h[0]["shadow"], h[0]["trained_version"], h[0]["served_model"]
    ('d/lr', ['d/fast'], 4, 'lr@3')
    """
    slots: dict[str, list[str]] = {}
    for model in series:
        slots.setdefault(model.split("/", 1)[0], []).append(model)
    names = metric_names(series)
    out = []
    for slot, models in sorted(slots.items()):
        champions = [m for m in models if series[m][-1].role == "champion"]
        served = champions[0] if champions else models[0]
        metric = "accuracy" if "accuracy" in names else (names[0] if names else None)

        def score(model: str, metric: str | None = metric) -> tuple[float | None, float | None]:
            last = series[model][-1].metrics
            return (last.get(f"{metric}_rolling"), last.get(f"{metric}")) if metric else (None, None)

        slot_preds = [p for p in preds if str(p.get("slot", "default")) == slot]
        last_pred = max(slot_preds, key=lambda p: _num(p.get("produced_ts")) or 0.0) if slot_preds else None
        lat = [
            (t - i) * 1000.0
            for p in slot_preds
            if (t := _num(p.get("produced_ts"))) is not None and (i := _num(p.get("ingest_ts"))) is not None
        ]
        lat.sort()
        subjects = set(models)
        out.append({
            "slot": slot,
            "metric": metric,
            "served": served,
            "served_score": score(served),
            "shadow": [m for m in models if m != served],
            "shadow_scores": {m: score(m) for m in models if m != served},
            "examples": series[served][-1].n,
            "trained_version": series[served][-1].version,
            "served_model": str(last_pred["model"]) if last_pred is not None else None,
            "predictions": len(slot_preds),
            "latency_ms": (_rank(lat, 0.5), _rank(lat, 0.99)) if lat else None,
            "concept_drifts": sum(
                1 for a in alerts
                if a.get("kind") == "concept" and a.get("level", "drift") == "drift"
                and str(a.get("subject", "")).split("@", 1)[0] in subjects
            ),
            "drift_warnings": sum(
                1 for a in alerts
                if a.get("kind") == "concept" and a.get("level") == "warning"
                and str(a.get("subject", "")).split("@", 1)[0] in subjects
            ),
            "promotions": sum(1 for a in alerts if a.get("kind") == "promotion" and a.get("slot", slot) == slot),
            "actions": sum(1 for a in alerts if a.get("kind") == "action" and a.get("slot", slot) == slot),
        })  # fmt: skip
    return out


def _headline_html(heads: list[dict[str, Any]], data_drifts: int) -> str:
    e = html.escape
    if not heads:
        return '<section id="headline"><p>No metric snapshots.</p></section>'
    cards = []
    for h in heads:
        metric = h["metric"] or "metric"
        rolling, cumulative = h["served_score"]
        shadow = "".join(
            f"<tr><td>shadow</td><td>{e(m)}</td><td>{_fmt(r)}</td><td>{_fmt(c)}</td>"
            f"<td>{_delta(r, rolling)}</td></tr>"
            for m, (r, c) in h["shadow_scores"].items()
        )
        served_version = e(h["served_model"]) if h["served_model"] else "not seen in predictions"
        latency = (
            f"p50 {h['latency_ms'][0]:.1f} ms, p99 {h['latency_ms'][1]:.1f} ms over {h['predictions']} predictions"
            if h["latency_ms"] else "no predictions read"
        )
        cards.append(
            f'<div class="card" id="slot-{e(h["slot"])}"><h3>slot {e(h["slot"])}</h3>'
            f'<p class="big">served <b>{e(h["served"])}</b>: {e(metric)} {_fmt(rolling)} rolling, '
            f"{_fmt(cumulative)} cumulative</p>"
            f"<table><tr><th></th><th>model</th><th>{e(metric)} rolling</th><th>{e(metric)}</th>"
            f"<th>vs served</th></tr><tr><td>served</td><td>{e(h['served'])}</td><td>{_fmt(rolling)}</td>"
            f"<td>{_fmt(cumulative)}</td><td></td></tr>{shadow}</table>"
            f"<ul><li>versions: trained v{e(str(h['trained_version'] if h['trained_version'] is not None else '?'))}"
            f" after {_count(h['examples'])} examples; workers serve {served_version}</li>"
            f"<li>drifts: {h['concept_drifts']} concept drift(s), {h['drift_warnings']} warning(s), "
            f"{h['promotions']} promotion(s), {h['actions']} drift policy action(s)</li>"
            f"<li>latency (event → prediction): {e(latency)}</li></ul></div>"
        )
    note = f"<p>{data_drifts} data drift alert(s) (features, predictions, labels).</p>" if data_drifts else ""
    return f'<section id="headline">{"".join(cards)}{note}</section>'


def _count(value: float | None) -> str:
    """A count with thousands separators.

    >>> _count(19750.0), _count(None)
    ('19,750', '?')
    """
    return "?" if value is None else f"{int(value):,}"


def _delta(value: float | None, reference: float | None) -> str:
    if value is None or reference is None:
        return ""
    return f"{value - reference:+.3f}"


def _html(
    title: str,
    series: Mapping[str, list[_Point]],
    snaps: list[Mapping[str, Any]],
    alerts: list[Mapping[str, Any]],
    paths: Mapping[str, Path],
    preds: list[Mapping[str, Any]] | None = None,
    latency: list[tuple[float, float, float, int]] | None = None,
) -> str:
    e = html.escape
    names = metric_names(series)
    concept_counts: dict[str, int] = {}
    for a in alerts:
        if a.get("kind") == "concept" and a.get("level", "drift") == "drift":
            key = str(a.get("subject", "")).split("@", 1)[0]
            concept_counts[key] = concept_counts.get(key, 0) + 1

    head = "".join(f"<th>{e(m)} rolling</th><th>{e(m)}</th>" for m in names)
    rows = []
    for model, points in series.items():
        last = points[-1]
        cells = "".join(
            f"<td>{_fmt(last.metrics.get(m + '_rolling'))}</td><td>{_fmt(last.metrics.get(m))}</td>" for m in names
        )
        rows.append(
            f"<tr><td>{e(model)}</td><td>{e(last.role)}</td><td>{e(str(last.version or ''))}</td>"
            f"<td>{_fmt(last.n)}</td>{cells}<td>{concept_counts.get(model, 0)}</td></tr>"
        )
    models_table = (
        f'<table id="models"><tr><th>model</th><th>role</th><th>version</th><th>examples</th>{head}'
        f"<th>concept drifts</th></tr>{''.join(rows)}</table>"
        if rows else "<p>No metric snapshots.</p>"
    )

    alert_rows = []
    for a in sorted(alerts, key=lambda a: (_num(a.get("event_ts")) or 0.0, _num(a.get("offset")) or 0.0)):
        alert_rows.append(
            "<tr>" + "".join(
                f"<td>{e(str(v))}</td>" for v in (
                    _fmt_ts(a.get("event_ts")), a.get("offset", ""), a.get("kind", ""), a.get("level", "drift"),
                    a.get("subject", a.get("slot", "")), a.get("detector", a.get("action", a.get("promoted", ""))),
                    a.get("statistic", a.get("reason", "")), _fmt(a.get("value")),
                    _fmt(a.get("threshold")), _fmt_ts(a.get("detected_ts")),
                )
            ) + "</tr>"
        )
    alerts_table = (
        '<table id="drift-alerts"><tr><th>event time (UTC)</th><th>offset</th><th>kind</th><th>level</th>'
        "<th>subject</th><th>detector / action</th><th>statistic / reason</th><th>value</th><th>threshold</th>"
        "<th>detected (UTC)</th></tr>"
        + ("".join(alert_rows) or '<tr><td colspan="10">No drift alerts.</td></tr>') + "</table>"
    )
    data_drifts = sum(1 for a in alerts if a.get("kind") in ("feature", "prediction", "label"))
    headline = _headline_html(headlines(series, alerts, list(preds or [])), data_drifts)

    kinds: dict[str, int] = {}
    for a in alerts:
        kinds[str(a.get("kind"))] = kinds.get(str(a.get("kind")), 0) + 1
    event_times = [p.event_ts for pts in series.values() for p in pts if p.event_ts is not None]
    span = f"{_fmt_ts(min(event_times))} to {_fmt_ts(max(event_times))} UTC" if event_times else "unknown"
    summary = (
        f"<ul><li>{len(series)} model(s), {len(snaps)} metric snapshot(s); event time {e(span)}</li>"
        f"<li>{len(alerts)} drift alert(s)"
        + (": " + ", ".join(f"{e(k)} {v}" for k, v in sorted(kinds.items())) if kinds else "")
        + "</li></ul>"
    )
    def figure(key: str, caption: str) -> str:
        if key not in paths:
            return ""
        return (
            f'<figure><img src="{e(paths[key].name)}" alt="{e(caption)}" style="max-width:100%">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )

    images = figure("png_examples", "Online metrics vs. examples learned") + figure(
        "png_time", "Online metrics vs. event time"
    )
    latency_section = (
        f'<section id="latency">{figure("png_latency", "Event → prediction latency over time (p50, p99)")}</section>'
        if latency else '<section id="latency"><p>No predictions read: no latency over time.</p></section>'
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:90%}th{background:#f4f4f4}"
        ".card{border:1px solid #ccc;border-radius:6px;padding:0 1em;margin:1em 0;display:inline-block;"
        "vertical-align:top;margin-right:1em}.big{font-size:120%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
        f"<style>{style}</style></head><body><h1>{e(title)}</h1>{headline}<h2>Summary</h2>{summary}"
        f"<h2>Models (last snapshot)</h2>{models_table}{_served_section(snaps)}<h2>Metrics</h2>{images}"
        f"<h2>Latency</h2>{latency_section}<h2>Drift alerts</h2>{alerts_table}</body></html>\n"
    )
