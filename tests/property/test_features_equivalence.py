"""One definition, two engines: the stream and pandas give the same features (DESIGN.md decision 5).

Hypothesis draws event streams with many entities, equal timestamps, events out of order within the
grace and late beyond it, NaN/inf/missing/wrong-type values, and window sizes (sub-second included);
every aggregation runs over every window kind. Each event's ``update`` result must equal its row of the
pandas training set, the late flags must agree, and ``read`` after the stream must equal
``features_as_of`` — up to floating-point rounding only. The engine's generated code must also match
its reference code (aggregation methods called one by one) exactly, values and state bytes.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.features import AggregationBase, FeatureEngine, parse_features
from streams.features.aggregations import DEFAULT_REGISTRY
from streams.features.batch import features_as_of, training_set

pytestmark = pytest.mark.property

START = 1_700_000_000.0


class SumOfSquares(AggregationBase):
    """A custom aggregation (no state sharing, generic code paths in both engines)."""

    name = "sum_sq"

    def initialize(self) -> float:
        return 0.0

    def add(self, state: float, value: float, t_s: float) -> float:
        return state + value * value

    def merge(self, a: float, b: float) -> float:
        return a + b

    def result(self, state: float) -> float:
        return state


REGISTRY = DEFAULT_REGISTRY.copy()
REGISTRY.register("sum_sq", SumOfSquares)

AGGS: list[dict[str, Any]] = [
    {"agg": "count"},
    {"agg": "count", "field": "x"},
    {"agg": "sum", "field": "x"},
    {"agg": "mean", "field": "x"},
    {"agg": "min", "field": "x"},
    {"agg": "max", "field": "x"},
    {"agg": "std", "field": "x"},
    {"agg": "variance", "field": "x", "params": {"ddof": 0}},
    {"agg": "last", "field": "x"},
    {"agg": "distinct_count", "field": "cat"},
    {"agg": "distinct_count", "field": "x", "params": {"exact_up_to": 2, "precision": 4}},
    {"agg": "time_since_last"},
    {"agg": "sum_sq", "field": "x"},
]

windows = st.sampled_from(
    [
        {"kind": "tumbling", "size_s": 1.0},
        {"kind": "tumbling", "size_s": 0.5},
        {"kind": "tumbling", "size_s": 3.0},
        {"kind": "hopping", "size_s": 2.0, "hop_s": 0.5},
        {"kind": "hopping", "size_s": 3.0, "hop_s": 1.0},
        {"kind": "sliding", "size_s": 3.0, "resolution_s": 0.5},
        {"kind": "sliding", "size_s": 1.5},
        {"kind": "sliding", "size_s": 0.25, "resolution_s": 0.125},
    ]
)
graces = st.sampled_from([0.0, 0.5, 1.0, 2.5])


@st.composite
def specs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Every aggregation over one window of each kind, each group with its own grace."""
    tumbling = draw(windows.filter(lambda w: w["kind"] == "tumbling"))
    hopping = draw(windows.filter(lambda w: w["kind"] == "hopping"))
    sliding = draw(windows.filter(lambda w: w["kind"] == "sliding"))
    entries: list[dict[str, Any]] = []
    for wi, window in enumerate((tumbling, hopping, sliding)):
        grace = draw(graces)
        for ai, agg in enumerate(AGGS):
            entries.append({"name": f"f{wi}_{ai}", "window": window, "grace_s": grace, **agg})
    entries.append({"name": "mean_default", "agg": "mean", "field": "x", "window": sliding, "default": -1.0})
    entries.append({"name": "ratio", "agg": "ratio", "numerator": "f0_2", "denominator": "f0_0"})
    entries.append({"name": "ratio2", "agg": "ratio", "numerator": "ratio", "denominator": "f2_3", "default": 0.0})
    entries.append({"name": "age", "agg": "attribute", "field": "age_days"})
    return entries


x_values = st.one_of(
    st.floats(min_value=-1000, max_value=1000, allow_nan=False).map(lambda v: round(v, 3)),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), None, "oops", 1e200, True, 0.0, -0.0]),
)
cat_values = st.sampled_from(["a", "b", "c", "d", "e", None, 3.0, "a"])


@st.composite
def streams_(draw: st.DrawFn) -> list[tuple[str, float, dict[str, Any]]]:
    n_entities = draw(st.integers(1, 6))
    n = draw(st.integers(1, 60))
    clock = START
    watermark: dict[str, float] = {}
    out = []
    for _ in range(n):
        clock += draw(st.sampled_from([0.0, 0.0, 0.125, 0.25, 0.5, 1.0, 2.5, 0.1]))
        entity = f"e{draw(st.integers(0, n_entities - 1))}"
        # Mostly on time; often behind the entity's own watermark by exactly a grace (the boundary),
        # a little (within the grace) or a lot (late).
        behind = draw(st.sampled_from([None, None, None, 0.0, 0.25, 0.5, 1.0, 2.5, 4.0]))
        t = clock if behind is None else min(clock, watermark.get(entity, clock) - behind)
        watermark[entity] = max(watermark.get(entity, t), t)
        fields: dict[str, Any] = {}
        if draw(st.integers(0, 5)):
            fields["x"] = draw(x_values)
        if draw(st.integers(0, 4)):
            fields["cat"] = draw(cat_values)
        out.append((entity, t, fields))
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


ATTRS = {"e0": {"age_days": 3.5}, "e1": {"age_days": "12"}, "e2": {"age_days": "n/a"}}


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs(), stream=streams_())
def test_stream_and_pandas_agree(spec: list[dict[str, Any]], stream: list[tuple[str, float, dict]]) -> None:
    defs = parse_features(spec, registry=REGISTRY)
    engine = FeatureEngine(defs)
    reference = FeatureEngine(defs, compiled=False)  # no generated code: methods called one by one
    states: dict[str, list[Any]] = {}
    ref_states: dict[str, list[Any]] = {}
    streamed = []
    for entity, t, fields in stream:
        state = engine.loads(engine.dumps(states.setdefault(entity, engine.new_state())))
        res = engine.update(state, t, fields, attributes=ATTRS.get(entity))
        states[entity] = state
        streamed.append(res)
        ref_state = ref_states.setdefault(entity, reference.new_state())
        assert reference.update(ref_state, t, fields, attributes=ATTRS.get(entity)) == res
        assert reference.dumps(ref_state) == engine.dumps(state)

    log = pd.DataFrame(
        [{"entity": e, "ts": t, **fields} for e, t, fields in stream], columns=["entity", "ts", "x", "cat"]
    )
    # The independent pandas implementation (auto could pick the replay through the stream).
    batch = training_set(defs, log, attributes=ATTRS, method="pairs")
    for i, res in enumerate(streamed):
        row = batch.iloc[i]
        assert bool(row["_late"]) == res.late, f"event {i}: late flag"
        for name in engine.feature_names:
            assert _same(res.values[name], float(row[name])), (
                f"event {i} {stream[i]}: {name} ({spec_of(spec, name)}) "
                f"stream={res.values[name]} pandas={row[name]}"
            )

    as_of = max(t for _, t, _ in stream) + 0.3
    table = features_as_of(defs, log, as_of, attributes=ATTRS)
    for entity, state in states.items():
        values = engine.read(state, as_of, attributes=ATTRS.get(entity))
        for name in engine.feature_names:
            assert _same(values[name], float(table.loc[entity, name])), (
                f"as of {as_of}, {entity}: {name} stream={values[name]} pandas={table.loc[entity, name]}"
            )


def spec_of(spec: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in spec if e["name"] == name)
