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
) -> dict[str, Path]:
    """Write ``metrics_examples.png`` (metrics vs. examples learned), ``metrics_time.png`` (vs. event
    time; only when the snapshots carry ``event_ts``) and ``report.html`` into ``out_dir``.

    Returns ``{"html": ..., "png_examples": ..., "png_time": ...}`` (paths that were written). Malformed
    snapshots or alerts (not a dict, no model) are skipped, so a report of a noisy topic still renders.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snaps = [s for s in metrics_snapshots if isinstance(s, Mapping) and s.get("model") is not None]
    alerts = [a for a in drift_alerts if isinstance(a, Mapping) and a.get("kind") is not None]
    series = _series(snaps)
    paths: dict[str, Path] = {}

    paths["png_examples"] = out / "metrics_examples.png"
    _plot(series, alerts, "n", paths["png_examples"], title)
    if any(p.event_ts is not None for s in series.values() for p in s):
        paths["png_time"] = out / "metrics_time.png"
        _plot(series, alerts, "event_ts", paths["png_time"], title)

    paths["html"] = out / "report.html"
    paths["html"].write_text(_html(title, series, snaps, alerts, paths), encoding="utf-8")
    return paths


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


def _html(
    title: str,
    series: Mapping[str, list[_Point]],
    snaps: list[Mapping[str, Any]],
    alerts: list[Mapping[str, Any]],
    paths: Mapping[str, Path],
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
        f"<table><tr><th>model</th><th>role</th><th>version</th><th>examples</th>{head}"
        f"<th>concept drifts</th></tr>{''.join(rows)}</table>"
        if rows else "<p>No metric snapshots.</p>"
    )

    alert_rows = []
    for a in sorted(alerts, key=lambda a: (_num(a.get("event_ts")) or 0.0, _num(a.get("offset")) or 0.0)):
        alert_rows.append(
            "<tr>" + "".join(
                f"<td>{e(str(v))}</td>" for v in (
                    _fmt_ts(a.get("event_ts")), a.get("offset", ""), a.get("kind", ""), a.get("level", "drift"),
                    a.get("subject", ""), a.get("detector", ""), a.get("statistic", ""), _fmt(a.get("value")),
                    _fmt(a.get("threshold")), _fmt_ts(a.get("detected_ts")),
                )
            ) + "</tr>"
        )
    alerts_table = (
        "<table><tr><th>event time (UTC)</th><th>offset</th><th>kind</th><th>level</th><th>subject</th>"
        "<th>detector</th><th>statistic</th><th>value</th><th>threshold</th><th>detected (UTC)</th></tr>"
        + "".join(alert_rows) + "</table>"
        if alert_rows else "<p>No drift alerts.</p>"
    )

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
    images = "".join(
        f'<figure><img src="{e(paths[key].name)}" alt="{e(caption)}" style="max-width:100%">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for key, caption in (
            ("png_examples", "Online metrics vs. examples learned"),
            ("png_time", "Online metrics vs. event time"),
        )
        if key in paths
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:90%}th{background:#f4f4f4}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
        f"<style>{style}</style></head><body><h1>{e(title)}</h1><h2>Summary</h2>{summary}"
        f"<h2>Models (last snapshot)</h2>{models_table}{_served_section(snaps)}<h2>Metrics</h2>{images}"
        f"<h2>Drift alerts</h2>{alerts_table}</body></html>\n"
    )
