"""Feature engine benchmark: events/s and state bytes per entity for 5 features x 3 windows.

The loop is what the Faust agent does per event: fetch the entity's state bytes from a table,
``loads``, ``update``, ``dumps``, store. Beside it, in the same run, a *ceiling* loop does the same table
round trip with an orjson encode/decode of the event and no feature work; the ratio of the two is the
figure to compare across machines (DESIGN.md, "Measuring").

    .venv/bin/python bench/bench_features.py            # prints JSON
    .venv/bin/python bench/bench_features.py 200000     # fewer events

Targets (issue): >= 20k events/s per core, <= 2 KiB of state per entity at 100k entities. Also
reported: the speed-up of the generated code over the plain reference code, and a busy-entity case
(100 entities, one event a second each, so every window holds many events).
"""

from __future__ import annotations

import gc
import random
import sys
import time
from typing import Any

import orjson

from streams.features import FeatureEngine, parse_features

WINDOWS = (
    ("60s", {"kind": "sliding", "size_s": 60}),  # 6 s resolution
    ("300s", {"kind": "hopping", "size_s": 300, "hop_s": 60}),
    ("3600s", {"kind": "tumbling", "size_s": 3600}),
)
AGGS = (
    ("events", "count", None),
    ("x1_mean", "mean", "x1"),
    ("x2_max", "max", "x2"),
    ("x3_std", "std", "x3"),
    ("category_distinct", "distinct_count", "category"),
)
START_S = 1_700_000_000.0


def bench_spec(grace_s: float = 5.0) -> list[dict[str, Any]]:
    """The 5 features x 3 windows of the benchmark, as ``[[features]]`` entries."""
    out = []
    for suffix, window in WINDOWS:
        for prefix, agg, field in AGGS:
            entry: dict[str, Any] = {"name": f"{prefix}_{suffix}", "agg": agg, "window": window}
            if field:
                entry["field"] = field
            entry["grace_s"] = grace_s
            out.append(entry)
    return out


def make_events(
    n_events: int, n_entities: int, events_per_s: float, seed: int = 7
) -> list[tuple[str, float, dict[str, Any]]]:
    """A seeded stream: uniform entities, event time advancing at ``events_per_s`` with up to 2 s of
    disorder, 1% NaN values, 20 categories."""
    rng = random.Random(seed)
    cats = [f"c{i}" for i in range(20)]
    names = [f"user-{i}" for i in range(n_entities)]
    events = []
    for i in range(n_events):
        t = START_S + i / events_per_s - rng.random() * 2.0
        x1 = rng.gauss(0, 1) if rng.random() > 0.01 else float("nan")
        fields = {"x1": x1, "x2": rng.random() * 100, "x3": rng.gauss(5, 2), "category": rng.choice(cats)}
        events.append((names[rng.randrange(n_entities)], t, fields))
    return events


def _deep_size(obj: Any) -> int:
    size = sys.getsizeof(obj)
    if isinstance(obj, list | tuple):
        size += sum(_deep_size(x) for x in obj)
    elif isinstance(obj, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in obj.items())
    return size


def _stream(engine: FeatureEngine, events: list[tuple[str, float, dict[str, Any]]]) -> tuple[float, dict[str, bytes]]:
    """The agent's loop over ``events``; returns (seconds, the table of state bytes)."""
    table: dict[str, bytes] = {}
    new_state, loads, dumps, update = engine.new_state, engine.loads, engine.dumps, engine.update
    gc.collect()
    start = time.perf_counter()
    for entity, t, fields in events:
        raw_state = table.get(entity)
        state = new_state() if raw_state is None else loads(raw_state)
        update(state, t, fields)
        table[entity] = dumps(state)
    return time.perf_counter() - start, table


def run(
    n_events: int = 500_000, n_entities: int = 100_000, events_per_s: float = 1000.0, seed: int = 7
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring)."""
    defs = parse_features(bench_spec())
    engine = FeatureEngine(defs)
    events = make_events(n_events, n_entities, events_per_s, seed)

    # Ceiling: the table round trip and event decoding alone.
    encoded = [(e, orjson.dumps(f)) for e, _, f in events]
    table0: dict[str, bytes] = {}
    gc.collect()
    start = time.perf_counter()
    for entity, raw in encoded:
        table0.get(entity)
        table0[entity] = orjson.dumps(orjson.loads(raw))
    ceiling_s = time.perf_counter() - start
    del table0, encoded

    elapsed, table = _stream(engine, events)
    sizes = [len(b) for b in table.values()]
    sample = list(table.values())[:1000]
    py_size = sum(_deep_size(engine.loads(b)) for b in sample) / max(1, len(sample))

    # The same loop without generated code (aggregation methods called one by one), on a slice.
    part = events[: max(1, n_events // 5)]
    reference_s, _ = _stream(FeatureEngine(defs, compiled=False), part)
    compiled_part_s, _ = _stream(engine, part)

    # Busy entities: 100 entities with an event a second each (windows full of events).
    busy = make_events(max(1, n_events // 5), 100, 100.0, seed)
    busy_s, busy_table = _stream(engine, busy)
    busy_sizes = [len(b) for b in busy_table.values()]

    return {
        "spec": "5 features x 3 windows (sliding 60s/6s, hopping 300s/60s, tumbling 3600s), grace 5s",
        "n_events": n_events,
        "n_entities": n_entities,
        "entities_seen": len(table),
        "event_time_rate_per_s": events_per_s,
        "features_events_per_s": round(n_events / elapsed),
        "us_per_event": round(elapsed / n_events * 1e6, 2),
        "ceiling_events_per_s": round(n_events / ceiling_s),
        "ratio_to_ceiling": round(ceiling_s / elapsed, 4),
        "speedup_vs_uncompiled": round(reference_s / compiled_part_s, 2),
        "feature_state_bytes_per_entity": round(sum(sizes) / len(sizes), 1),
        "feature_state_bytes_max": max(sizes),
        "feature_state_python_bytes_per_entity": round(py_size),
        "busy_entities_events_per_s": round(len(busy) / busy_s),
        "busy_entity_state_bytes": round(sum(busy_sizes) / len(busy_sizes)),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    print(orjson.dumps(run(n_events=n), option=orjson.OPT_INDENT_2).decode())
