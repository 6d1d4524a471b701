"""Pure summaries of output topics, for the demo, the bench and reports.

>>> latency_percentiles_ms([{"produced_ts": 10.010, "ingest_ts": 10.0}, {"produced_ts": 10.5, "ingest_ts": 10.0}])
(10.0, 500.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values.

    >>> percentile([1, 2, 3, 4], 0.5), percentile([1, 2, 3, 4], 0.99)
    (2, 4)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


def latency_percentiles_ms(predictions: Iterable[dict[str, Any]]) -> tuple[float, float]:
    """(p50, p99) of produced_ts - ingest_ts over prediction records, in milliseconds."""
    lat = [
        (float(p["produced_ts"]) - float(p["ingest_ts"])) * 1000.0
        for p in predictions
        if p.get("ingest_ts") is not None
    ]
    return round(percentile(lat, 0.5), 3), round(percentile(lat, 0.99), 3)


def segment_accuracy(points: list[tuple[int, float]], lo: int, hi: int) -> float | None:
    """Accuracy over examples (lo, hi] from cumulative-accuracy snapshots ``(n, accuracy after n)``.

    Cumulative accuracy times n is the count of correct predictions, so two snapshots give the exact
    accuracy between them (at the resolution of the snapshots).

    >>> segment_accuracy([(100, 0.9), (200, 0.5), (300, 0.6)], 100, 200)
    0.1
    >>> segment_accuracy([(100, 0.9)], 200, 300) is None
    True
    """

    def at(n: int) -> tuple[int, float] | None:
        best = None
        for m, acc in points:
            if m <= n:
                best = (m, acc)
        return best

    a, b = at(lo), at(hi)
    if a is None and lo <= 0:
        a = (0, 0.0)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return round((b[1] * b[0] - a[1] * a[0]) / (b[0] - a[0]), 4)


def summarize_metrics(snapshots: list[dict[str, Any]], drift_at: int | None = None, span: int = 500) -> dict[str, Any]:
    """For each model that served as champion: accuracy just before the drift, just after it, and at the end.

    >>> snaps = [{"role": "champion", "model": "default/lr", "n": n, "metrics": {"accuracy": a}}
    ...          for n, a in [(500, 0.9), (1000, 0.9), (1500, 0.6), (2000, 0.7), (2500, 0.74)]]
    >>> summarize_metrics(snaps, drift_at=1000)["lines"][0]
    'default/lr: accuracy 0.900 in the 500 examples before the drift, 0.000 in the 500 after, 0.900 in the last 500'
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for snap in snapshots:
        if snap.get("role") == "champion" or snap.get("metrics", {}).get("champion") == 1.0:
            by_model.setdefault(str(snap.get("model")), []).append(snap)
    lines: list[str] = []
    values: dict[str, dict[str, float | None]] = {}
    for model, snaps in sorted(by_model.items()):
        metric = "accuracy" if "accuracy" in snaps[-1].get("metrics", {}) else None
        if metric is None:
            continue
        points = sorted(
            {int(s["n"]): float(s["metrics"][metric]) for s in snaps if s["metrics"].get(metric) is not None}.items()
        )
        if not points:
            continue
        last_n = points[-1][0]
        final = segment_accuracy(points, last_n - span, last_n)
        if drift_at is not None and points[0][0] < drift_at < last_n:
            before = segment_accuracy(points, drift_at - span, drift_at)
            after = segment_accuracy(points, drift_at, drift_at + span)
            values[model] = {"before": before, "after": after, "final": final}
            lines.append(
                f"{model}: accuracy {_f(before)} in the {span} examples before the drift, {_f(after)} in the "
                f"{span} after, {_f(final)} in the last {span}"
            )
        else:
            values[model] = {"final": final, "cumulative": points[-1][1]}
            lines.append(f"{model}: accuracy {_f(final)} in the last {span} examples, {points[-1][1]:.3f} overall")
    return {"lines": lines, "values": values}


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
