"""Parsing the features section: both TOML shapes, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.features import FeatureEngine, parse_features
from streams.features.aggregations import DEFAULT_REGISTRY
from streams.spec import PipelineSpec, SpecError

REPO = Path(__file__).resolve().parents[3]
SLIDING = {"kind": "sliding", "size_s": 60}


def test_array_shape() -> None:
    spec = PipelineSpec.from_toml(
        """
[[features]]
name = "x1_mean_60s"
agg = "mean"
field = "x1"
window = { kind = "sliding", size_s = 60, resolution_s = 5 }
grace_s = 2.0

[[features]]
name = "n_1s"
agg = "count"
window = { kind = "tumbling", size_s = 1 }
late_policy = "drop"
"""
    )
    defs = parse_features(spec.raw["features"])
    assert [(d.name, d.grace_s, d.late_policy) for d in defs] == [
        ("x1_mean_60s", 2.0, "dead-letter"),
        ("n_1s", 0.0, "drop"),
    ]
    assert defs[0].window is not None and defs[0].window.tile_us == 5_000_000


def test_table_shape_with_defaults_that_entries_override() -> None:
    raw = {
        "defaults": {"grace_s": 5.0, "late_policy": "drop"},
        "list": [
            {"name": "a", "agg": "count", "window": SLIDING},
            {"name": "b", "agg": "count", "window": SLIDING, "grace_s": 1.0},
        ],
    }
    defs = parse_features(raw)
    assert [(d.grace_s, d.late_policy) for d in defs] == [(5.0, "drop"), (1.0, "drop")]


def test_the_demo_spec_parses_and_runs() -> None:
    spec = PipelineSpec.load(REPO / "pipelines" / "demo.toml")
    defs = parse_features(spec.raw.get("features", []), event_fields=spec.event.fields)
    engine = FeatureEngine(defs)
    fields = {name: (1.0 if type_ == "float" else "a") for name, type_ in spec.event.fields.items()}
    res = engine.update(engine.new_state(), 1_700_000_000.0, fields)
    assert set(res.values) == set(engine.feature_names) and not res.late


def _err(entry: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(SpecError) as info:
        parse_features([entry], **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"agg": "count", "window": SLIDING}, "name is required"),
        ({"name": "a", "window": SLIDING}, "agg is required"),
        ({"name": "a b", "agg": "count", "window": SLIDING}, "name must start with"),
        ({"name": "_a", "agg": "count", "window": SLIDING}, "name must start with"),
        ({"name": "a", "agg": "count"}, "needs a window"),
        ({"name": "a", "agg": "median", "field": "x", "window": SLIDING}, "unknown aggregation 'median'"),
        ({"name": "a", "agg": "mean", "window": SLIDING}, "needs a field"),
        ({"name": "a", "agg": "time_since_last", "field": "x", "window": SLIDING}, "takes no field"),
        ({"name": "a", "agg": "count", "window": SLIDING, "size": 3}, "unknown keys ['size']"),
        ({"name": "a", "agg": "count", "window": {"kind": "rolling", "size_s": 1}}, "window.kind = 'rolling'"),
        ({"name": "a", "agg": "count", "window": {"kind": "hopping", "size_s": 60}}, "needs hop_s"),
        ({"name": "a", "agg": "count", "window": {"kind": "tumbling", "size_s": 6, "hop_s": 1}}, "not ['hop_s']"),
        ({"name": "a", "agg": "count", "window": {"kind": "tumbling"}}, "size_s is required"),
        ({"name": "a", "agg": "count", "window": {"kind": "hopping", "size_s": 60, "hop_s": 7}}, "whole hops"),
        ({"name": "a", "agg": "count", "window": "60s"}, "window must be a table"),
        ({"name": "a", "agg": "count", "window": SLIDING, "grace_s": -1}, "grace_s = -1"),
        ({"name": "a", "agg": "count", "window": SLIDING, "late_policy": "keep"}, "late_policy = 'keep'"),
        ({"name": "a", "agg": "count", "window": SLIDING, "default": "zero"}, "default = 'zero'"),
        ({"name": "a", "agg": "std", "field": "x", "window": SLIDING, "params": {"ddof": 3}}, "ddof = 3"),
        ({"name": "a", "agg": "count", "window": SLIDING, "params": 3}, "params must be a table"),
        ({"name": "a", "agg": "ratio", "numerator": "b"}, "needs numerator and denominator"),
        ({"name": "a", "agg": "ratio", "numerator": "b", "denominator": "c"}, "ratio input 'b' is not a feature"),
        ({"name": "a", "agg": "attribute"}, "needs field"),
        ({"name": "a", "agg": "attribute", "field": "k", "window": SLIDING}, "takes no window"),
        ({"name": "a", "agg": "attribute", "field": "k", "params": {"x": 1}}, "takes no params"),
    ],
)
def test_mistakes_are_one_clear_line(entry: dict[str, Any], expected: str) -> None:
    message = _err(entry)
    assert expected in message, message
    assert message.startswith("[[features]] #1")


def test_field_checks_against_the_event_schema() -> None:
    fields = {"x1": "float", "category": "str"}
    assert "not in [event.fields]" in _err(
        {"name": "a", "agg": "mean", "field": "x9", "window": SLIDING}, event_fields=fields
    )
    assert "needs numbers but field 'category' is a str" in _err(
        {"name": "a", "agg": "mean", "field": "category", "window": SLIDING}, event_fields=fields
    )
    ok = parse_features(
        [{"name": "a", "agg": "distinct_count", "field": "category", "window": SLIDING}], event_fields=fields
    )
    assert ok[0].aggregation is not None and ok[0].aggregation.accepts == "any"


def test_duplicate_names_and_ratio_cycles() -> None:
    entry = {"name": "a", "agg": "count", "window": SLIDING}
    with pytest.raises(SpecError, match="used twice"):
        parse_features([entry, entry])
    with pytest.raises(SpecError, match="cycle"):
        parse_features(
            [
                {"name": "r1", "agg": "ratio", "numerator": "r2", "denominator": "n"},
                {"name": "r2", "agg": "ratio", "numerator": "r1", "denominator": "n"},
                {"name": "n", "agg": "count", "window": SLIDING},
            ]
        )


def test_table_shape_mistakes() -> None:
    with pytest.raises(SpecError, match=r"\[features.defaults\] has unknown keys \['window'\]"):
        parse_features({"defaults": {"window": SLIDING}, "list": []})
    with pytest.raises(SpecError, match="unknown keys \\['features'\\]"):
        parse_features({"features": []})
    with pytest.raises(SpecError, match="must be a table"):
        parse_features(["count"])


def test_custom_registry() -> None:
    from streams.features.aggregations import _RangeForDocs

    registry = DEFAULT_REGISTRY.copy()
    registry.register("range", _RangeForDocs)
    defs = parse_features([{"name": "r", "agg": "range", "field": "x", "window": SLIDING}], registry=registry)
    assert defs[0].aggregation is not None and defs[0].aggregation.name == "range"
    with pytest.raises(SpecError, match="unknown aggregation 'range'"):
        parse_features([{"name": "r", "agg": "range", "field": "x", "window": SLIDING}])
