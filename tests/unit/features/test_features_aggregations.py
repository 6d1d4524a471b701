"""The aggregation contract, run against every shipped aggregation (like River's ``checks/``)."""

from __future__ import annotations

import copy
import math
import os
import pickle
import random
import subprocess
import sys
from typing import Any

import orjson
import pytest

from streams.features.aggregations import (
    DEFAULT_REGISTRY,
    MAX_ABS,
    SHIPPED,
    AggregationBase,
    AggregationRegistry,
    DistinctCount,
    check_aggregation,
    distinct_of_hashes,
    hll_estimate,
    hll_registers,
    normalize_value,
    register_aggregation,
    value_hash,
)

# Every shipped aggregation, with its parameter variants.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    *[(name, {}) for name in sorted(SHIPPED)],
    ("std", {"ddof": 0}),
    ("variance", {"ddof": 0}),
    ("distinct_count", {"exact_up_to": 0, "precision": 4}),
    ("distinct_count", {"exact_up_to": 5, "precision": 6}),
]
IDS = [f"{n}{p or ''}" for n, p in VARIANTS]


def test_every_shipped_aggregation_is_covered() -> None:
    assert {n for n, _ in VARIANTS} == set(SHIPPED)


def _values(agg: Any, rng: random.Random, n: int) -> list[Any]:
    if agg.accepts == "event":
        return [None] * n
    out: list[Any] = [round(rng.uniform(-1e4, 1e4), rng.randint(0, 6)) for _ in range(n)]
    if agg.accepts == "any":
        out = [v if rng.random() < 0.5 else f"s{rng.randint(0, 40)}" for v in out]
    return out


def _times(rng: random.Random, n: int) -> list[float]:
    # Non-decreasing, with ties, as the engine feeds a tile.
    t, out = 1_700_000_000.0, []
    for _ in range(n):
        t += rng.choice([0.0, 0.25, 1.0])
        out.append(t)
    return out


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 60])
def test_contract(name: str, params: dict[str, Any], seed: int, n: int) -> None:
    agg = DEFAULT_REGISTRY.create(name, params)
    rng = random.Random(seed)
    check_aggregation(agg, _values(agg, rng, n), _times(rng, n))


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_add_and_merge_leave_their_inputs_unchanged(name: str, params: dict[str, Any]) -> None:
    agg = DEFAULT_REGISTRY.create(name, params)
    rng = random.Random(5)
    values, times = _values(agg, rng, 40), _times(rng, 40)
    a = agg.initialize()
    for v, t in zip(values[:20], times[:20], strict=True):
        a = agg.add(a, v, t)
    b = agg.initialize()
    for v, t in zip(values[20:], times[20:], strict=True):
        b = agg.add(b, v, t)
    value_copies = copy.deepcopy(values)
    a_copy, b_copy = copy.deepcopy(a), copy.deepcopy(b)
    agg.merge(a, b)
    agg.add(a, values[0], times[-1])
    agg.result(a)
    assert a == a_copy and b == b_copy and values == value_copies


EMPTY = {
    "count": 0.0,
    "sum": 0.0,
    "distinct_count": 0.0,
    "mean": None,
    "min": None,
    "max": None,
    "std": None,
    "variance": None,
    "last": None,
    "time_since_last": None,
}


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_result_of_the_empty_state(name: str, params: dict[str, Any]) -> None:
    agg = DEFAULT_REGISTRY.create(name, params)
    assert agg.result(agg.initialize()) == EMPTY[name]


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_state_and_aggregation_survive_pickle_and_orjson(name: str, params: dict[str, Any]) -> None:
    agg = DEFAULT_REGISTRY.create(name, params)
    rng = random.Random(11)
    state = agg.initialize()
    for v, t in zip(_values(agg, rng, 50), _times(rng, 50), strict=True):
        state = agg.add(state, v, t)
    assert orjson.loads(orjson.dumps(state)) == state
    assert orjson.dumps(orjson.loads(orjson.dumps(state))) == orjson.dumps(state)
    clone = pickle.loads(pickle.dumps(agg))
    assert clone.result(pickle.loads(pickle.dumps(state))) == agg.result(state)


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_seeded_runs_repeat_exactly(name: str, params: dict[str, Any]) -> None:
    def run() -> bytes:
        agg = DEFAULT_REGISTRY.create(name, params)
        rng = random.Random(42)
        state = agg.initialize()
        for v, t in zip(_values(agg, rng, 80), _times(rng, 80), strict=True):
            state = agg.add(state, v, t)
        return orjson.dumps([state, agg.result(state)])

    assert run() == run()


def test_moments_are_numerically_stable() -> None:
    var = DEFAULT_REGISTRY.create("variance")
    values = [1e9 + x for x in (4.0, 7.0, 13.0, 16.0)]
    halves = [var.initialize(), var.initialize()]
    for i, v in enumerate(values):
        halves[i % 2] = var.add(halves[i % 2], v, 0.0)
    assert var.result(var.merge(*halves)) == pytest.approx(30.0, rel=1e-12)


def test_last_prefers_the_later_arrival_at_equal_times() -> None:
    last = DEFAULT_REGISTRY.create("last")
    s = last.add(last.add(last.initialize(), 1.0, 5.0), 2.0, 5.0)
    assert last.result(s) == 2.0
    assert last.commutative is False


def test_distinct_count_is_exact_then_bounded() -> None:
    d = DistinctCount(exact_up_to=32, precision=8)
    state = d.initialize()
    for i in range(32):
        state = d.add(state, f"v{i}", 0.0)
    assert d.result(state) == 32.0 and isinstance(state, list)
    for i in range(32, 20_000):
        state = d.add(state, f"v{i}", 0.0)
    assert isinstance(state, str) and len(state) == 256  # fixed size from here on
    assert abs(d.result(state) - 20_000) / 20_000 < 0.15
    assert len(orjson.dumps(state)) == 258


def test_distinct_count_depends_only_on_the_set() -> None:
    d = DistinctCount(exact_up_to=3, precision=5)
    values = [f"k{i % 9}" for i in range(30)]
    forward, backward = d.initialize(), d.initialize()
    for v in values:
        forward = d.add(forward, v, 0.0)
    for v in reversed(values):
        backward = d.add(backward, v, 0.0)
    assert forward == backward
    hashes = {value_hash(v) for v in values}
    assert d.result(forward) == distinct_of_hashes(hashes, 3, 5) == hll_estimate(hll_registers(hashes, 5))


def test_normalize_value_keeps_bad_input_out() -> None:
    assert normalize_value(3) == 3.0 and normalize_value(False) == 0.0 and normalize_value("x") == "x"
    for bad in (float("nan"), float("inf"), -float("inf"), None, [1.0], {"a": 1}, MAX_ABS * 10, 10**400):
        assert normalize_value(bad) is None
    assert normalize_value(-MAX_ABS) == -MAX_ABS


def test_value_hash_is_stable_across_processes() -> None:
    # Python's hash() is seeded per process; value_hash must not be (states are shared via Kafka).
    code = "from streams.features.aggregations import value_hash; print(value_hash('a'), value_hash(2.5))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{value_hash('a')} {value_hash(2.5)}\n"}
    assert value_hash(1.0) == value_hash(normalize_value(1)) == value_hash(normalize_value(True))
    assert value_hash("1.0") != value_hash(1.0)


class Range(AggregationBase):
    name = "range"

    def initialize(self) -> list[float] | None:
        return None

    def add(self, state: list[float] | None, value: float, t_s: float) -> list[float]:
        return [value, value] if state is None else [min(state[0], value), max(state[1], value)]

    def merge(self, a: list[float] | None, b: list[float] | None) -> list[float] | None:
        if a is None or b is None:
            return b if a is None else a
        return [min(a[0], b[0]), max(a[1], b[1])]

    def result(self, state: list[float] | None) -> float | None:
        return None if state is None else state[1] - state[0]


def test_custom_aggregations_by_name_and_import_path() -> None:
    registry = AggregationRegistry()
    register_aggregation("range", Range, registry=registry)
    assert registry.create("range").name == "range"
    by_path = DEFAULT_REGISTRY.create(f"{__name__}:Range")
    check_aggregation(by_path, [1.0, 5.0, -2.0])
    assert "range" not in DEFAULT_REGISTRY.names()


class Broken:
    def initialize(self) -> int:
        return 0


class NotCommutative(Range):
    def merge(self, a: list[float] | None, b: list[float] | None) -> list[float] | None:
        return a if b is None else b  # drops a: wrong


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("median", {}, "unknown aggregation 'median'"),
        ("std", {"ddof": 2}, "ddof = 2"),
        ("mean", {"window": 3}, "does not take params"),
        ("no.such.module:X", {}, "cannot import aggregation module"),
        (f"{__name__}:Nope", {}, "has no callable 'Nope'"),
        (f"{__name__}:Broken", {}, "has no method add()"),
    ],
)
def test_bad_aggregations_are_refused_with_a_reason(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DEFAULT_REGISTRY.create(name, params)


def test_the_contract_check_catches_a_wrong_merge() -> None:
    with pytest.raises(AssertionError):
        check_aggregation(NotCommutative(), [1.0, 5.0, -2.0, 3.0])


def test_reserved_names_cannot_be_registered() -> None:
    with pytest.raises(ValueError):
        AggregationRegistry().register("ratio", Range)


def test_result_never_non_finite_for_valid_input() -> None:
    rng = random.Random(3)
    for name, params in VARIANTS:
        agg = DEFAULT_REGISTRY.create(name, params)
        state = agg.initialize()
        for v, t in zip(_values(agg, rng, 30), _times(rng, 30), strict=True):
            state = agg.add(state, MAX_ABS if v == 0 else v, t)
        r = agg.result(state)
        assert r is None or math.isfinite(r)
