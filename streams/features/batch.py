"""The pandas engine: the same feature definitions over a DataFrame of events.

* :func:`training_set` — for every row of an event log, the features as the stream computed them for
  that event (point-in-time correct: nothing from the row's future, by event time or by arrival).
* :func:`features_as_of` — per entity, the features as of one time (``engine.read`` after the log).
* :func:`backfill` — CSV or Parquet in, Parquet out, column names from the pipeline spec.

The log's row order is its arrival order (the order the stream read it: a file's rows, a topic dump's
Kafka order), so by default the features are what the stream served, out-of-order and late events
included, with the same grace and late flags (``order="arrival"``). ``order="time"`` processes the rows
in event-time order instead (parsed times, not the raw column: ISO strings in several offsets sort
wrongly as text), as if every event had arrived on time. Either way the output keeps the input's row
order. A row's features aggregate, per feature, the
earlier-or-same rows of its entity whose event time is at or before the row's, inside the window that
answers "as of" the row's time, and that were not late (behind that entity's running maximum event time
by more than the grace). See :mod:`streams.features.engine` for the full definition; a property test
holds the two engines equal.

The pair method is an independent implementation, not a replay of the stream: per window it
enumerates the (query, candidate event) pairs with ``numpy.searchsorted`` and aggregates them with
``bincount`` and ``groupby``. Memory is bounded by processing queries in chunks; time is proportional to
the number of pairs (rows times events per window and entity): about 100k rows/s when entities have
few events per window, far slower for busy entities in long windows. For those, ``training_set``
replays the log through the streaming engine instead (``method="auto"``), which is linear in the rows.
Custom aggregations are folded in Python per query. ``features_as_of`` always uses pairs (one query
per entity).

Event time: a numeric column (epoch seconds), a timezone-aware datetime column, or ISO-8601 strings with
an offset. Naive datetimes are refused. Rows whose time is missing or not finite are not applied
(the stream dead-letters them) and get ``_invalid = True``.

>>> import pandas as pd
>>> from streams.features.definitions import parse_features
>>> defs = parse_features([
...     {"name": "x_sum_10s", "agg": "sum", "field": "x", "window": {"kind": "sliding", "size_s": 10}},
...     {"name": "x_last_10s", "agg": "last", "field": "x", "window": {"kind": "tumbling", "size_s": 10}},
... ])
>>> log = pd.DataFrame({"entity": ["a", "a", "b", "a"], "ts": [100.0, 104.0, 104.5, 111.0],
...                     "x": [1.0, 2.0, 5.0, float("nan")]})
>>> training_set(defs, log)[["entity", "x_sum_10s", "x_last_10s", "_late"]]
  entity  x_sum_10s  x_last_10s  _late
0      a        1.0         1.0  False
1      a        3.0         2.0  False
2      b        5.0         5.0  False
3      a        2.0         NaN  False
>>> features_as_of(defs, log, 105.0).to_dict("index")
{'a': {'x_sum_10s': 3.0, 'x_last_10s': 2.0}, 'b': {'x_sum_10s': 5.0, 'x_last_10s': 5.0}}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams.event_time import parse_event_time
from streams.features.aggregations import (
    MAX_ABS,
    Aggregation,
    Count,
    DistinctCount,
    Last,
    Max,
    Mean,
    Min,
    Std,
    Sum,
    TimeSinceLast,
    Variance,
    attribute_value,
    distinct_of_hashes,
    normalize_value,
    value_hash,
)
from streams.features.definitions import FeatureDef, check_ratio_inputs
from streams.features.engine import FeatureEngine, FeatureState
from streams.features.windows import MAX_EVENT_TIME_S, US_PER_S, Window

# Queries are processed in chunks of at most this many (query, event) pairs, to bound memory.
MAX_PAIRS_PER_CHUNK = 2_000_000
# training_set(method="auto") replays through the streaming engine above this many pairs per row.
REPLAY_ABOVE_PAIRS_PER_ROW = 40
_INF_ARRIVAL = np.iinfo(np.int64).max


def training_set(
    defs: Sequence[FeatureDef] | FeatureEngine,
    events: pd.DataFrame,
    *,
    entity: str = "entity",
    time: str = "ts",
    attributes: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None = None,
    order: str = "arrival",
    max_pairs: int = MAX_PAIRS_PER_CHUNK,
    method: str = "auto",
) -> pd.DataFrame:
    """Every row of ``events`` with its features as of its own time (what the stream served for it).

    Returns the input columns plus one float column per feature (NaN = None), ``_late`` (the row was
    late for at least one feature) and ``_invalid`` (bad event time: not applied). ``attributes`` are
    the entities' static attributes: a DataFrame indexed by entity (or with an ``entity`` column), or a
    mapping entity -> {attribute: value}. ``max_pairs`` bounds the (query, event) pairs held at once.

    ``method``: ``"pairs"`` (the vectorized pandas engine), ``"replay"`` (the log through the streaming
    engine, entity by entity: the same numbers, linear in the rows, about 20-40k rows/s), or ``"auto"``:
    pairs unless there are more than ``REPLAY_ABOVE_PAIRS_PER_ROW`` (query, event) pairs per row, as with
    busy entities in long windows, where pairs cost rows x events per window.
    """
    if method not in ("auto", "pairs", "replay"):
        raise ValueError(f"method = {method!r}: use 'auto', 'pairs' or 'replay'")
    defs = _defs(defs)
    _check_columns(defs, events, entity, time)
    log, back = _in_order(events, time, order)
    prepared = _Prepared(log, entity, time, defs)
    ok = ~prepared.invalid
    queries = _Queries(
        ent=prepared.ent[ok],
        t_us=prepared.t_us[ok],
        arrival=prepared.arrival[ok],
        self_row=prepared.arrival[ok],
    )
    if method == "auto":
        per_row = _estimate_pairs(defs, prepared, queries) / max(1, len(queries.t_us))
        method = "replay" if per_row > REPLAY_ABOVE_PAIRS_PER_ROW else "pairs"
    if method == "replay":
        cols, late = _replay(defs, prepared, ok)
    else:
        cols, late = _compute(defs, prepared, queries, max_pairs=max_pairs)
    out = log.copy()
    n = len(log)
    ent_codes = prepared.ent
    attr = _attribute_values(defs, attributes, prepared.entity_values, ent_codes)
    result: dict[str, np.ndarray] = {}
    for d in defs:
        full = np.full(n, np.nan)
        if d.kind == "aggregation":
            full[ok] = cols[d.name]
        elif d.kind == "attribute":
            full = attr[d.name].copy()
        result[d.name] = full
    _finish(defs, result)
    for d in defs:
        if d.name in out.columns:
            raise ValueError(f"feature {d.name!r} has the name of an input column; rename one of them")
        out[d.name] = result[d.name]
    late_full = np.zeros(n, dtype=bool)
    late_full[ok] = late
    out["_late"] = late_full
    out["_invalid"] = prepared.invalid
    return out if back is None else out.iloc[back].reset_index(drop=True)


ORDERS = ("arrival", "time")


def _in_order(events: pd.DataFrame, time: str, order: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The log in the order it is processed, and the permutation that gives back the input's order."""
    if order not in ORDERS:
        raise ValueError(f"order = {order!r}: use one of {ORDERS}")
    log = events.reset_index(drop=True)
    if order == "arrival":
        return log, None
    us, _ = event_times_us(log[time])
    by_time = np.argsort(us, kind="stable")
    return log.iloc[by_time].reset_index(drop=True), np.argsort(by_time, kind="stable")


def features_as_of(
    defs: Sequence[FeatureDef] | FeatureEngine,
    events: pd.DataFrame,
    as_of_s: float,
    *,
    entity: str = "entity",
    time: str = "ts",
    attributes: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None = None,
    order: str = "arrival",
    max_pairs: int = MAX_PAIRS_PER_CHUNK,
) -> pd.DataFrame:
    """Per entity of the log, every feature as of ``as_of_s`` (epoch seconds), from the whole log.

    Equals the stream's ``engine.read(state, as_of_s)`` after the log whenever ``as_of_s`` is at or
    after the entity's watermark minus the grace; for earlier times this is the exact point-in-time
    value (events after ``as_of_s`` never count). Index: entity; one float column per feature.
    """
    if not isinstance(as_of_s, int | float) or not math.isfinite(as_of_s):
        raise ValueError(f"as_of_s must be finite epoch seconds, got {as_of_s!r}")
    defs = _defs(defs)
    _check_columns(defs, events, entity, time)
    log, _ = _in_order(events, time, order)
    prepared = _Prepared(log, entity, time, defs)
    n_ent = len(prepared.entity_values)
    t_q = round(as_of_s * US_PER_S)
    queries = _Queries(
        ent=np.arange(n_ent, dtype=np.int64),
        t_us=np.full(n_ent, t_q, dtype=np.int64),
        arrival=np.full(n_ent, _INF_ARRIVAL, dtype=np.int64),
        self_row=np.full(n_ent, -1, dtype=np.int64),
    )
    cols, _ = _compute(defs, prepared, queries, as_of=True, max_pairs=max_pairs)
    attr = _attribute_values(defs, attributes, prepared.entity_values, np.arange(n_ent))
    result: dict[str, np.ndarray] = {}
    for d in defs:
        column = attr.get(d.name) if d.kind == "attribute" else cols.get(d.name)
        result[d.name] = np.full(n_ent, np.nan) if column is None else column
    _finish(defs, result)
    index = pd.Index(prepared.entity_values, name=entity)
    return pd.DataFrame({d.name: result[d.name] for d in defs}, index=index)


def backfill(
    spec: Any,
    input_path: str | Path,
    output_path: str | Path,
    *,
    as_of_s: float | None = None,
    attributes_path: str | Path | None = None,
    order: str = "arrival",
) -> int:
    """Compute the spec's features over a CSV or Parquet event log and write Parquet.

    ``spec``: a :class:`streams.spec.PipelineSpec` or a path to its TOML file. Without ``as_of_s`` the
    output is the training set (every input row plus its features, ``_late``, ``_invalid``); with it, one
    row per entity as of that time. ``attributes_path``: CSV/Parquet with the entity column and one
    column per attribute. ``order``: ``"arrival"`` (the file's row order, as the stream read it: the
    features the worker served) or ``"time"`` (see the module docstring). Returns the number of rows written.
    """
    from streams.spec import PipelineSpec

    if not isinstance(spec, PipelineSpec):
        spec = PipelineSpec.load(spec)
    defs = list(spec.features)
    events = read_table(input_path)
    attributes = None
    if attributes_path is not None:
        attributes = read_table(attributes_path)
    ent, tcol = spec.event.entity, spec.event.time
    if as_of_s is None:
        out = training_set(defs, events, entity=ent, time=tcol, attributes=attributes, order=order)
    else:
        out = features_as_of(
            defs, events, as_of_s, entity=ent, time=tcol, attributes=attributes, order=order
        ).reset_index()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(output_path, index=False)
    return len(out)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".gz", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{path}: unknown file type {suffix!r}; use .csv or .parquet")


# -- preparation ------------------------------------------------------------------------------------


def _defs(defs: Sequence[FeatureDef] | FeatureEngine) -> list[FeatureDef]:
    if isinstance(defs, FeatureEngine):
        return list(defs.defs)
    out = list(defs)
    check_ratio_inputs(out)
    return out


def _check_columns(defs: list[FeatureDef], log: pd.DataFrame, entity: str, time: str) -> None:
    for col in (entity, time):
        if col not in log.columns:
            raise ValueError(f"the events have no column {col!r} (columns: {', '.join(map(str, log.columns))})")


def event_times_us(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Event times as integer microseconds, and a mask of rows whose time is unusable.

    The rules are :func:`streams.event_time.parse_event_time`'s (the stream's): numbers are epoch seconds,
    datetimes timezone-aware, strings ISO-8601 with an offset; a value it refuses makes its row invalid.
    A column of naive datetimes is refused as a whole (localize it).
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        ns = series.dt.tz_convert("UTC").dt.as_unit("ns")
        invalid = ns.isna().to_numpy().copy()
        us = np.where(invalid, 0, ns.to_numpy(dtype="datetime64[ns]").astype(np.int64) // 1000)
        # As the stream sees it: seconds as a float (datetime.timestamp(): exact microseconds / 10**6, one
        # rounding), then back to microseconds. numpy's int64 → float64 rounds first beyond 2**53 µs (2255).
        seconds = us / US_PER_S
        big = np.abs(us) > 2**53
        if big.any():
            seconds[big] = [int(u) / 1_000_000 for u in us[big]]
        invalid |= (seconds < 0) | (seconds > MAX_EVENT_TIME_S)  # as parse_event_time refuses them
        return np.rint(seconds * US_PER_S).astype(np.int64), invalid
    if pd.api.types.is_datetime64_dtype(series.dtype):
        raise ValueError(
            f"event time column {series.name!r} holds naive datetimes; localize it "
            "(Series.dt.tz_localize) or use epoch seconds"
        )
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        seconds = series.to_numpy(dtype=float, na_value=np.nan)
    else:
        seconds = np.array([_parse_time(v) for v in series], dtype=float)
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(seconds) | (seconds < 0) | (seconds > MAX_EVENT_TIME_S)
    seconds = np.where(invalid, 0.0, seconds)
    return np.rint(seconds * US_PER_S).astype(np.int64), invalid


def _parse_time(value: Any) -> float:
    """One value of an object column through the stream's parser (NaN where the stream dead-letters it)."""
    try:
        return parse_event_time(value)
    except ValueError:
        return math.nan


@dataclass
class _Column:
    """One event field, normalized the way the stream normalizes it."""

    number: np.ndarray  # float64, NaN where the value is not a valid number
    is_number: np.ndarray  # bool
    present: np.ndarray  # bool: a valid value of any type (number or string)
    objects: np.ndarray  # object: the normalized values (float | str | None)
    _hashes: np.ndarray | None = None

    @property
    def hashes(self) -> np.ndarray:
        if self._hashes is None:
            self._hashes = np.array(
                [value_hash(v) if v is not None else -1 for v in self.objects], dtype=np.int64
            )
        return self._hashes


def _column(series: pd.Series | None, n: int) -> _Column:
    if series is None:
        empty = np.zeros(n, dtype=bool)
        return _Column(np.full(n, np.nan), empty, empty, np.full(n, None, dtype=object))
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
        number = series.to_numpy(dtype=float)
        valid = np.ones(n, dtype=bool)
        return _Column(number, valid, valid, number.astype(object))
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        number = series.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(number) & (np.abs(number) <= MAX_ABS)
        number = np.where(valid, number, np.nan)
        objects = number.astype(object)
        objects[~valid] = None
        return _Column(number, valid, valid.copy(), objects)
    objects = np.array([normalize_value(v) for v in series.to_numpy(dtype=object)], dtype=object)
    is_number = np.array([type(v) is float for v in objects], dtype=bool)
    number = np.array([v if type(v) is float else np.nan for v in objects], dtype=float)
    present = np.array([v is not None for v in objects], dtype=bool)
    return _Column(number, is_number, present, objects)


class _Prepared:
    """The log as arrays: entity codes, times, arrival order, normalized fields, watermarks."""

    def __init__(self, log: pd.DataFrame, entity: str, time: str, defs: list[FeatureDef]) -> None:
        n = len(log)
        codes, uniques = pd.factorize(log[entity], use_na_sentinel=True)
        self.entity_values = list(uniques)
        self.ent = codes.astype(np.int64)
        self.t_us, invalid = event_times_us(log[time])
        self.invalid = invalid | (self.ent < 0)
        self.arrival = np.arange(n, dtype=np.int64)
        self.columns: dict[str, _Column] = {}
        for d in defs:
            if d.kind == "aggregation" and d.field and d.field not in self.columns:
                self.columns[d.field] = _column(log[d.field] if d.field in log.columns else None, n)
        # Watermark before each row: the largest valid time among the earlier rows of its entity.
        ok = ~self.invalid
        prev = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        if ok.any():
            frame = pd.DataFrame({"e": self.ent[ok], "t": self.t_us[ok]})
            cummax = frame.groupby("e")["t"].cummax()
            shifted = cummax.groupby(frame["e"]).shift(1)
            has_prev = shifted.notna().to_numpy()
            values = np.where(has_prev, shifted.fillna(0).to_numpy(), 0).astype(np.int64)
            prev_ok = np.full(int(ok.sum()), np.iinfo(np.int64).min, dtype=np.int64)
            prev_ok[has_prev] = values[has_prev]
            prev[ok] = prev_ok
        self.watermark_before = prev

    def late(self, grace_us: int) -> np.ndarray:
        """Rows that were late for a feature with this grace (computed for valid rows)."""
        has = self.watermark_before != np.iinfo(np.int64).min
        late: np.ndarray = has & (self.t_us < self.watermark_before - grace_us)
        return late


@dataclass
class _Queries:
    ent: np.ndarray
    t_us: np.ndarray
    arrival: np.ndarray  # candidates must have arrived at or before this
    self_row: np.ndarray  # the query's own row (left out by relative-time aggregations), or -1


# -- computation ------------------------------------------------------------------------------------


def _compute(
    defs: list[FeatureDef],
    prepared: _Prepared,
    queries: _Queries,
    as_of: bool = False,
    max_pairs: int = MAX_PAIRS_PER_CHUNK,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per aggregation feature, its value for each query (NaN = None); and per query, whether it was late."""
    groups = _groups(defs)
    n_q = len(queries.t_us)
    cols: dict[str, np.ndarray] = {}
    any_late = np.zeros(n_q, dtype=bool)
    valid_rows = ~prepared.invalid
    for (window, grace_us), members in groups.items():
        late_rows = prepared.late(grace_us)
        usable = valid_rows & ~late_rows
        query_late = np.zeros(n_q, dtype=bool) if as_of else late_rows[queries.self_row]
        any_late |= query_late
        values = {d.name: np.full(n_q, np.nan) for d in members}
        for chunk, pairs in _pairs(prepared, queries, window, usable, max_pairs):
            for d in members:
                values[d.name][chunk] = _aggregate(d, prepared, queries, chunk, pairs)
        for d in members:
            values[d.name][query_late] = np.nan
            cols[d.name] = values[d.name]
    return cols, any_late


@dataclass
class _Pairs:
    q: np.ndarray  # query position within the chunk
    j: np.ndarray  # event row


def _pairs(
    prepared: _Prepared, queries: _Queries, window: Window, usable: np.ndarray, max_pairs: int
) -> Iterator[tuple[np.ndarray, _Pairs]]:
    """Yield (query indices, pairs) chunks: the usable events each query's window can see."""
    rows = np.flatnonzero(usable)
    tile = window.tile_us
    k_rows = prepared.t_us[rows] // tile
    e_rows = prepared.ent[rows]
    order = np.lexsort((prepared.arrival[rows], k_rows, e_rows))
    rows, k_rows, e_rows = rows[order], k_rows[order], e_rows[order]
    k_hi = queries.t_us // tile
    k_lo = k_hi - window.n_tiles + 1
    lo, hi = _ranges(e_rows, k_rows, queries.ent, k_lo, k_hi)
    counts = hi - lo
    n_q = len(counts)
    start = 0
    cum = np.cumsum(counts)
    while start < n_q:
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + max_pairs, side="right"))
        stop = max(stop, start + 1)
        chunk = np.arange(start, min(stop, n_q))
        c = counts[chunk]
        total = int(c.sum())
        q_local = np.repeat(np.arange(len(chunk)), c)
        offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
        pos = np.repeat(lo[chunk], c) + offsets
        j = rows[pos]
        qg = chunk[q_local]
        keep = (prepared.arrival[j] <= queries.arrival[qg]) & (prepared.t_us[j] <= queries.t_us[qg])
        yield chunk, _Pairs(q_local[keep], j[keep])
        start = int(chunk[-1]) + 1


def _ranges(
    e_rows: np.ndarray, k_rows: np.ndarray, q_ent: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the slice of the (entity, tile)-sorted rows with its entity and a tile in range."""
    if len(e_rows) == 0:
        zeros = np.zeros(len(q_ent), dtype=np.int64)
        return zeros, zeros
    k_min, k_max = int(k_rows.min()), int(k_rows.max())
    span = k_max - k_min + 3  # room for one clipped value below and above
    n_ent = int(max(e_rows.max(), q_ent.max() if len(q_ent) else 0)) + 1
    if n_ent * span < 2**62:
        # One sorted integer key: entity * span + tile offset (clipped to the entity's band).
        key = e_rows * span + (k_rows - k_min + 1)
        lo_key = q_ent * span + np.clip(k_lo - k_min + 1, 0, span - 1)
        hi_key = q_ent * span + np.clip(k_hi - k_min + 1, 0, span - 1)
        return np.searchsorted(key, lo_key, "left"), np.searchsorted(key, hi_key, "right")
    # Very long spans of tiny tiles: search within each entity's slice.
    lo = np.zeros(len(q_ent), dtype=np.int64)
    hi = np.zeros(len(q_ent), dtype=np.int64)
    starts = np.searchsorted(e_rows, q_ent, "left")
    ends = np.searchsorted(e_rows, q_ent, "right")
    for i in range(len(q_ent)):
        s, e = starts[i], ends[i]
        lo[i] = s + np.searchsorted(k_rows[s:e], k_lo[i], "left")
        hi[i] = s + np.searchsorted(k_rows[s:e], k_hi[i], "right")
    return lo, hi


def _aggregate(
    d: FeatureDef, prepared: _Prepared, queries: _Queries, chunk: np.ndarray, pairs: _Pairs
) -> np.ndarray:
    agg = d.aggregation
    assert agg is not None
    n = len(chunk)
    q, j = pairs.q, pairs.j
    kind: type = type(agg)  # compared with the shipped classes below (a Protocol type would never match)
    if d.field is None:
        if agg.relative_time:
            keep = j != queries.self_row[chunk][q]
            q, j = q[keep], j[keep]
    else:
        column = prepared.columns[d.field]
        valid = column.is_number[j] if agg.accepts == "number" else column.present[j]
        q, j = q[valid], j[valid]

    if kind is Count:
        return np.bincount(q, minlength=n).astype(float)
    if kind is TimeSinceLast:
        latest = _group_reduce(q, prepared.t_us[j] / US_PER_S, n, "max")
        since: np.ndarray = queries.t_us[chunk] / US_PER_S - latest
        return since
    if d.field is None:
        return _generic(agg, d, prepared, queries, chunk, q, j)
    x = prepared.columns[d.field].number[j]
    if kind is Sum:
        return np.bincount(q, weights=x, minlength=n)
    if kind in (Mean, Variance, Std):
        count = np.bincount(q, minlength=n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: np.ndarray = np.bincount(q, weights=x, minlength=n) / count
            if kind is Mean:
                return mean
            dev = x - mean[q]
            m2 = np.bincount(q, weights=dev * dev, minlength=n)
            ddof = agg.ddof  # type: ignore[attr-defined]
            var = np.where(count > ddof, np.maximum(m2 / (count - ddof), 0.0), np.nan)
        return np.sqrt(var) if kind is Std else var
    if kind in (Min, Max):
        return _group_reduce(q, x, n, "min" if kind is Min else "max")
    if kind is Last:
        out = np.full(n, np.nan)
        if len(q):
            order = np.lexsort((prepared.arrival[j], prepared.t_us[j], q))
            qs = q[order]
            last = np.r_[qs[1:] != qs[:-1], True]
            out[qs[last]] = x[order][last]
        return out
    if kind is DistinctCount:
        return _distinct(agg, prepared.columns[d.field].hashes[j], q, n)
    return _generic(agg, d, prepared, queries, chunk, q, j)


def _group_reduce(q: np.ndarray, x: np.ndarray, n: int, how: str) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(q):
        reduced = pd.Series(x).groupby(q).agg(how)
        out[reduced.index.to_numpy()] = reduced.to_numpy()
    return out


def _distinct(agg: Any, hashes: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    if not len(q):
        return out
    pairs = np.unique(np.stack([q, hashes], axis=1), axis=0)
    counts = np.bincount(pairs[:, 0], minlength=n).astype(float)
    out[:] = counts
    big = np.flatnonzero(counts > agg.exact_up_to)
    if len(big):
        starts = np.searchsorted(pairs[:, 0], big, "left")
        ends = np.searchsorted(pairs[:, 0], big, "right")
        for i, s, e in zip(big, starts, ends, strict=True):
            out[i] = distinct_of_hashes(set(pairs[s:e, 1].tolist()), agg.exact_up_to, agg.precision)
    return out


def _generic(
    agg: Aggregation,
    d: FeatureDef,
    prepared: _Prepared,
    queries: _Queries,
    chunk: np.ndarray,
    q: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """Any aggregation: fold each query's events with ``add`` in (event time, arrival) order."""
    n = len(chunk)
    out = np.full(n, np.nan)
    order = np.lexsort((prepared.arrival[j], prepared.t_us[j], q))
    q, j = q[order], j[order]
    objects = prepared.columns[d.field].objects if d.field else None
    times = prepared.t_us / US_PER_S
    bounds = np.searchsorted(q, np.arange(n + 1), "left")
    for i in range(n):
        state = agg.initialize()
        for row in j[bounds[i] : bounds[i + 1]].tolist():
            value = None if objects is None else objects[row]
            state = agg.add(state, value, float(times[row]))
        r = agg.result(state)
        if r is not None:
            r = float(r)
            if agg.relative_time:
                r = float(queries.t_us[chunk[i]] / US_PER_S) - r
            out[i] = r if math.isfinite(r) else np.nan
    return out


def _groups(defs: list[FeatureDef]) -> dict[tuple[Window, int], list[FeatureDef]]:
    groups: dict[tuple[Window, int], list[FeatureDef]] = {}
    for d in defs:
        if d.kind == "aggregation":
            assert d.window is not None
            groups.setdefault((d.window, d.grace_us), []).append(d)
    return groups


def _estimate_pairs(defs: list[FeatureDef], prepared: _Prepared, queries: _Queries) -> int:
    """How many (query, event) candidates the pair method would enumerate, over all windows."""
    total = 0
    valid = ~prepared.invalid
    for window, _ in _groups(defs):
        rows = np.flatnonzero(valid)
        k_rows = prepared.t_us[rows] // window.tile_us
        e_rows = prepared.ent[rows]
        order = np.lexsort((k_rows, e_rows))
        k_hi = queries.t_us // window.tile_us
        lo, hi = _ranges(e_rows[order], k_rows[order], queries.ent, k_hi - window.n_tiles + 1, k_hi)
        total += int((hi - lo).sum())
    return total


def _replay(defs: list[FeatureDef], prepared: _Prepared, ok: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The valid rows, in log order, through the streaming engine: aggregation features and late flags."""
    # Defaults, ratios and attributes are applied afterwards, as for the pair method.
    aggs = [replace(d, default=None) for d in defs if d.kind == "aggregation"]
    engine = FeatureEngine(aggs)
    rows = np.flatnonzero(ok)
    names = engine.feature_names
    fields = engine.fields
    columns = [prepared.columns[f].objects[rows].tolist() for f in fields]
    times = (prepared.t_us[rows] / US_PER_S).tolist()
    entities = prepared.ent[rows].tolist()
    out: list[list[float | None]] = []
    late: list[bool] = []
    states: dict[int, FeatureState] = {}
    new_state, update = engine.new_state, engine.update
    for i, (e, t) in enumerate(zip(entities, times, strict=True)):
        state = states.get(e)
        if state is None:
            state = states[e] = new_state()
        res = update(state, t, {f: col[i] for f, col in zip(fields, columns, strict=True)})
        out.append(list(res.values.values()))
        late.append(res.late)
    matrix = np.array(out, dtype=float).reshape(len(rows), len(names))  # None -> nan
    return {name: matrix[:, c] for c, name in enumerate(names)}, np.array(late, dtype=bool)


# -- after aggregation: attributes, defaults, ratios -------------------------------------------------


def _attribute_values(
    defs: list[FeatureDef],
    attributes: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None,
    entity_values: list[Any],
    ent_codes: np.ndarray,
) -> dict[str, np.ndarray]:
    wanted = [d for d in defs if d.kind == "attribute"]
    if not wanted:
        return {}
    table: dict[Any, Mapping[str, Any]] = {}
    if isinstance(attributes, pd.DataFrame):
        frame = attributes
        if "entity" in frame.columns:
            frame = frame.set_index("entity")
        table = {k: row for k, row in frame.to_dict(orient="index").items()}
    elif attributes is not None:
        table = dict(attributes)
    out: dict[str, np.ndarray] = {}
    for d in wanted:
        per_entity = np.array(
            [
                attribute_value(table.get(e, {}).get(d.field)) if d.field else None
                for e in entity_values
            ],
            dtype=float,
        )
        col = np.full(len(ent_codes), np.nan)
        known = ent_codes >= 0
        col[known] = per_entity[ent_codes[known]] if len(per_entity) else np.nan
        out[d.name] = col
    return out


def _finish(defs: list[FeatureDef], result: dict[str, np.ndarray]) -> None:
    for d in defs:
        if d.default is not None and d.kind != "ratio":
            col = result[d.name]
            result[d.name] = np.where(np.isnan(col), float(d.default), col)
    for d in check_ratio_inputs(defs):
        if d.kind != "ratio":
            continue
        num = result[d.numerator]  # type: ignore[index]
        den = result[d.denominator]  # type: ignore[index]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            q = num / den
        q = np.where(np.isfinite(q) & (den != 0), q, np.nan)
        if d.default is not None:
            q = np.where(np.isnan(q), float(d.default), q)
        result[d.name] = q
