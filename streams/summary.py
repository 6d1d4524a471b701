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


def summarize_metrics(snapshots: list[dict[str, Any]], drift_at: int | None = None) -> dict[str, Any]:
    """Champion accuracy before the drift, its lowest after, and at the end (rolling and cumulative).

    >>> snaps = [{"role": "champion", "model": "default/lr", "n": n, "metrics": {"accuracy_rolling": a,
    ...          "accuracy": 0.8}} for n, a in [(100, 0.9), (200, 0.5), (300, 0.88)]]
    >>> summarize_metrics(snaps, drift_at=150)["lines"][0]
    'default/lr: rolling accuracy 0.900 before the drift, 0.500 at its lowest after, 0.880 at the end'
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for snap in snapshots:
        if snap.get("role") == "champion" or snap.get("metrics", {}).get("champion") == 1.0:
            by_model.setdefault(str(snap.get("model")), []).append(snap)
    lines: list[str] = []
    values: dict[str, dict[str, float]] = {}
    for model, snaps in sorted(by_model.items()):
        snaps.sort(key=lambda s: int(s.get("n", 0)))
        metric = "accuracy_rolling" if "accuracy_rolling" in snaps[-1]["metrics"] else "r2_rolling"
        series = [
            (int(s["n"]), s["metrics"].get(metric)) for s in snaps if s["metrics"].get(metric) is not None
        ]
        if not series:
            continue
        final = series[-1][1]
        cumulative = snaps[-1]["metrics"].get(metric.removesuffix("_rolling"))
        name = metric.removesuffix("_rolling")
        if drift_at is not None:
            before = [v for n, v in series if n <= drift_at]
            after = [v for n, v in series if n > drift_at]
            if before and after:
                values[model] = {"before": before[-1], "lowest_after": min(after), "final": final}
                lines.append(
                    f"{model}: rolling {name} {before[-1]:.3f} before the drift, {min(after):.3f} at its lowest "
                    f"after, {final:.3f} at the end"
                )
                continue
        values[model] = {"final": final}
        tail = f", cumulative {cumulative:.3f}" if cumulative is not None else ""
        lines.append(f"{model}: rolling {name} {final:.3f}{tail}")
    return {"lines": lines, "values": values}
