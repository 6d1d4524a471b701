"""The peer benchmark's hand-written job (bench/peers/job.py) against freshet's own feature engine.

freshet's sliding windows count in 1 s buckets, the peers' windows are exact ``[ts - 10 s, ts]``: the two
may differ when an event left the exact window but not yet its bucket (the note's "917 of 20,000"); the
30 s tumbling max is the same definition in both and must be equal everywhere.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from bench.peers.job import FEATURES, EntityWindows, LabelJoin, Status, model_input, read_status
from streams.features import FeatureEngine, parse_features
from streams.spec import PipelineSpec

PEER_SPEC = Path(__file__).resolve().parents[2] / "bench" / "peer_spec.toml"


def _stream(n: int, n_entities: int, step_s: float, seed: int = 5) -> list[dict[str, float | str]]:
    rng = random.Random(seed)
    start = 1_700_000_000.0
    return [
        {
            "id": f"e{i}",
            "entity": f"u{rng.randrange(n_entities)}",
            "ts": round(start + i * step_s, 3),
            **{f"x{k}": rng.gauss(0, 1) for k in range(1, 6)},
        }
        for i in range(n)
    ]


def test_windows_match_freshet_feature_engine_up_to_its_buckets() -> None:
    """Ours are the exact window, freshet's are its 10 one-second buckets ending with the event's
    (events with ``floor(t) >= floor(ts) - 9``); both checked against brute force over the history."""
    spec = PipelineSpec.load(PEER_SPEC)
    engine = FeatureEngine(parse_features(spec.raw["features"]))
    assert [d.name for d in parse_features(spec.raw["features"])] == list(FEATURES)
    ours: dict[str, EntityWindows] = {}
    theirs: dict[str, Any] = {}
    history: dict[str, list[tuple[float, float]]] = {}
    differ = 0
    events = _stream(3000, n_entities=40, step_s=0.137)
    for e in events:
        entity, ts, x1 = str(e["entity"]), float(e["ts"]), float(e["x1"])
        mean, count, tmax = ours.setdefault(entity, EntityWindows()).update(ts, x1, float(e["x2"]))
        state = theirs.setdefault(entity, engine.new_state())
        values = engine.update(state, ts, {f"x{k}": e[f"x{k}"] for k in range(1, 6)}).values
        seen = history.setdefault(entity, [])
        seen.append((ts, x1))
        exact = [v for t, v in seen if ts - 10.0 <= t <= ts]
        bucketed = [v for t, v in seen if math.floor(t) >= math.floor(ts) - 9]
        assert (count, mean) == pytest.approx((len(exact), sum(exact) / len(exact)))
        assert (values["events_10s"], values["x1_mean_10s"]) == pytest.approx(
            (len(bucketed), sum(bucketed) / len(bucketed))
        )
        assert values["x2_max_30s"] == pytest.approx(tmax)  # the same definition: equal everywhere
        differ += values["events_10s"] != count
    # The known 1 s-bucket difference (the research note: 4.6% of its stream), here on busier entities.
    assert 0 < differ < 0.25 * len(events)


def test_windows_are_inclusive_at_both_ends_and_tumble_on_the_epoch() -> None:
    w = EntityWindows()
    assert w.update(100.0, 1.0, 7.0) == (1.0, 1.0, 7.0)
    assert w.update(110.0, 3.0, 1.0) == (2.0, 2.0, 7.0)  # 100 is still in [100, 110]
    assert w.update(110.001, 5.0, 2.0) == (4.0, 2.0, 7.0)  # 100 has left
    assert w.update(120.0, 0.0, 0.5) == (8 / 3, 3.0, 0.5)  # a new 30 s window starts at 120


def test_model_input_orders_fields_then_features() -> None:
    event = {"x1": 1.0, "x2": 2.0, "x3": 3.0, "x4": 4.0, "x5": 5.0, "id": "e", "entity": "u", "ts": 0.0}
    assert list(model_input(event, (0.5, 1.0, 2.0))) == ["x1", "x2", "x3", "x4", "x5", *FEATURES]


def test_label_join_pairs_each_id_once_whichever_side_comes_first() -> None:
    join = LabelJoin()
    assert join.on_features("a", {"x1": 1.0}) is None
    assert join.on_label("a", True) == ({"x1": 1.0}, True)
    assert join.on_label("a", False) is None  # nothing logged any more: it waits
    assert join.on_label("b", False) is None
    assert join.on_features("b", {"x1": 2.0}) == ({"x1": 2.0}, False)
    assert not join.logged and join.labels == {"a": False}


def test_status_lines_round_trip(tmp_path: Path) -> None:
    status = Status(tmp_path / "s.jsonl", learn_target=2)
    status.consumed()
    status.consumed()
    status.learned_one()
    status.learned_one()
    kinds = [(s["kind"], s.get("n")) for s in read_status(tmp_path / "s.jsonl")]
    assert kinds == [("first", None), ("learned", 2)]
