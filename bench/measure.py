"""Pure arithmetic of the peer benchmark: rates, latencies, percentiles, ratios and the printed table.

No Kafka here, so ``tests/unit/test_bench_measure.py`` checks it without servers.

>>> rate(20_000, first_s=100.0, last_s=110.0)
2000.0
>>> latencies_ms({"a": 1.000, "b": 2.000}, {"a": 1.004, "b": 2.010, "c": 9.0})
[4.0, 10.0]
>>> ratio(1300.0, 26000.0)
0.05
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

SYSTEMS = ("ceiling", "quix", "bytewax", "freshet", "freshet_demo_spec")


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank, as ``streams.ops.summary.percentile``; NaN for no values.

    >>> percentile([4, 1, 3, 2], 0.5), percentile([1, 2, 3, 4], 0.99), percentile([], 0.5)
    (2, 4, nan)
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def rate(n: int, first_s: float | None, last_s: float | None) -> float | None:
    """Events per second: ``n`` over the span from the system's first consumption to its last output.

    >>> rate(10, 5.0, 5.0) is None, rate(10, None, 6.0) is None
    (True, True)
    """
    if first_s is None or last_s is None or last_s <= first_s or n <= 0:
        return None
    return n / (last_s - first_s)


def latencies_ms(inputs: Mapping[str, float], outputs: Mapping[str, float]) -> list[float]:
    """Output append time - input append time (ms) for every event id found on both sides, input order."""
    return [round((outputs[k] - t) * 1000.0, 3) for k, t in inputs.items() if k in outputs]


def summarize_latency(lat: list[float], expected: int) -> dict[str, Any]:
    """p50/p99/max of a latency sample and how many of the expected outputs it holds.

    >>> summarize_latency([1.0, 2.0, 30.0], 4)["missing"]
    1
    """
    return {
        "p50_ms": round(percentile(lat, 0.5), 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "max_ms": round(max(lat), 1) if lat else None,
        "outputs": len(lat),
        "missing": max(0, expected - len(lat)),
    }


def ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    """``a / b`` rounded, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, digits)


def add_ratios(systems: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Fill ``ratio_to_ceiling`` (and ``loop_ratio_to_ceiling``) in every job of every system, against
    the ceiling's job "a" of the same run; returns the cross-system ratios (freshet vs the peers)."""
    ceiling = _job(systems, "ceiling", "a").get("events_per_s")
    for jobs in systems.values():
        for job in jobs.values():
            job["ratio_to_ceiling"] = ratio(job.get("events_per_s"), ceiling)
            if "loop_events_per_s" in job:
                job["loop_ratio_to_ceiling"] = ratio(job.get("loop_events_per_s"), ceiling)
    out: dict[str, Any] = {}
    for mine in ("freshet", "freshet_demo_spec"):
        for peer in ("quix", "bytewax"):
            for name in ("a", "b"):
                a = _job(systems, mine, name).get("events_per_s")
                b = _job(systems, peer, name).get("events_per_s")
                if a is not None and b is not None:
                    out[f"{mine}_vs_{peer}_{name}"] = ratio(a, b)
    return out


def _job(systems: Mapping[str, Mapping[str, Mapping[str, Any]]], name: str, job: str) -> Mapping[str, Any]:
    return systems.get(name, {}).get(job, {})


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    if isinstance(value, int | float):
        return f"{value:,.0f}"
    return str(value)


def table(systems: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The note's table: one row per system and job.

    >>> print(table({"ceiling": {"a": {"events_per_s": 20000.0, "ratio_to_ceiling": 1.0}}}))  # doctest: +ELLIPSIS
    | system | job | max events/s | ratio to ceiling | ...
    |---|...
    | ceiling | A | 20,000 | 1.000 | - | - / - | - / - (-) | - |  |
    """
    head = (
        "| system | job | max events/s | ratio to ceiling | whole loop events/s (ratio) "
        "| p50/p99 ms @ 200/s | p50/p99 ms @ half own max (rate) | Kafka msgs written per event | notes |"
    )
    rows = [head, "|" + "---|" * 9]
    for name in [s for s in SYSTEMS if s in systems] + [s for s in systems if s not in SYSTEMS]:
        for job in ("a", "b"):
            r = systems[name].get(job)
            if r is None:
                continue
            loop = "-"
            if r.get("loop_events_per_s") is not None:
                loop = f"{_fmt(r['loop_events_per_s'])} ({_fmt(r.get('loop_ratio_to_ceiling'), 3)})"
            rows.append(
                f"| {name} | {job.upper()} | {_fmt(r.get('events_per_s'))} | {_fmt(r.get('ratio_to_ceiling'), 3)} "
                f"| {loop} | {_fmt(r.get('p50_ms_at_200'))} / {_fmt(r.get('p99_ms_at_200'))} "
                f"| {_fmt(r.get('p50_ms_at_half'))} / {_fmt(r.get('p99_ms_at_half'))} ({_fmt(r.get('half_rate'))}) "
                f"| {_fmt((r.get('throughput') or {}).get('msgs_written_per_event'), 2)} "
                f"| {'; '.join(r.get('notes', []))} |"
            )
    return "\n".join(rows)
