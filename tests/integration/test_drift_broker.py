"""Concept drift through the real broker: seeded streams with known drift points go to ``examples`` and
the real learner process (``freshet learn``) must raise a concept-drift alert on ``drift`` after each
change, with the delay stated; a stationary stream of 100k examples must raise none.

The examples are published straight to the ``examples`` topic (what the worker's join would emit), so the
test exercises the learner, its detectors and the broker without paying the worker's per-event cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from river.datasets import synth

from producers.publish import make_producer
from streams.ops.procs import spawn, stop, wait_http
from streams.ops.readers import read_whole_topic
from streams.ops.services import ensure_topics
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, wait_metric, with_ports

pytestmark = pytest.mark.integration

DRIFT_AT = 3000
N = 6000
# Detection must come after the change and within this many examples of it (ADWIN checks every 32).
MAX_DELAY = 400


def spec_file(tmp_path: Path, factory: str) -> Path:
    path = tmp_path / "drift.toml"
    path.write_text(f"""
[[models]]
slot = "default"
[models.champion]
name = "m"
factory = "{factory}"

[drift.concept]
detector = "adwin"
policy = "alert"
""")
    return path


def switch(first: Any, second: Any, at: int, n: int) -> Iterator[tuple[dict[Any, Any], Any]]:
    """An abrupt drift by hand: ``first`` until ``at``, then ``second`` (DESIGN.md: ConceptDriftStream overflows)."""
    yield from itertools.islice(iter(first), at)
    yield from itertools.islice(iter(second), n - at)


STREAMS = {
    "sea": ("logistic_regression", lambda: switch(synth.SEA(variant=0, seed=1), synth.SEA(variant=3, seed=2),
                                                  DRIFT_AT, N)),
    "agrawal": ("hoeffding_adaptive_tree", lambda: switch(synth.Agrawal(0, seed=1), synth.Agrawal(2, seed=2),
                                                          DRIFT_AT, N)),
    "hyperplane": ("logistic_regression", lambda: switch(synth.Hyperplane(seed=1, n_features=5),
                                                         synth.Hyperplane(seed=2, n_features=5), DRIFT_AT, N)),
    "concept_drift_stream": ("logistic_regression", lambda: itertools.islice(iter(synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, seed=1), drift_stream=synth.SEA(variant=3, seed=2), position=DRIFT_AT,
        width=50, seed=1)), N)),
}


def publish_examples(settings: Settings, items: Iterator[tuple[dict[Any, Any], Any]]) -> int:
    producer = make_producer(settings, linger_ms=20)
    n = 0
    for i, (x, y) in enumerate(items):
        example = {"v": 1, "id": f"e{i}", "entity": "u", "slot": "default",
                   "features": {str(k): float(v) for k, v in x.items()}, "label": bool(y),
                   "event_ts": 1_700_000_000.0 + i, "label_ts": 1_700_000_000.0 + i}
        producer.send(settings.topic("examples"), key=b"default", value=orjson.dumps(example))
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def concept_alerts(settings: Settings) -> list[dict[str, Any]]:
    contents = read_whole_topic(settings, "drift", timeout_s=30)
    assert contents.complete
    return [v for v in contents.values if v.get("kind") == "concept" and v.get("level") == "drift"]


def run_learner_on(settings: Settings, items: Iterator[tuple[dict[Any, Any], Any]], log: Path) -> int:
    ensure_topics(settings)
    n = publish_examples(settings, items)
    proc = spawn(settings, "learn", log_path=log)
    try:
        wait_http(learner_url(settings), 60, proc)
        learned = wait_metric(learner_url(settings), "freshet_examples_learned_total", n, 300)
        assert learned == n
    finally:
        stop(proc)
    return n


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_drift_is_detected_through_the_broker(name: str, settings: Settings, tmp_path: Path) -> None:
    factory, make = STREAMS[name]
    s = with_ports(settings, spec=spec_file(tmp_path, factory))
    run_learner_on(s, make(), tmp_path / "learner.log")
    alerts = concept_alerts(s)
    # Examples of one slot sit in one partition, from offset 0: the offset is the example's index.
    offsets = sorted(int(a["offset"]) for a in alerts)
    after = [o for o in offsets if o >= DRIFT_AT]
    assert after, f"{name}: no concept drift alert after the change at {DRIFT_AT} (alerts at {offsets})"
    delay = after[0] - DRIFT_AT
    print(f"{name}: drift at {DRIFT_AT} detected at example {after[0]} ({delay} examples later)")
    assert delay <= MAX_DELAY
    assert not [o for o in offsets if o < DRIFT_AT], f"{name}: false alarm before the change: {offsets}"


def test_no_alert_on_a_stationary_stream_of_100k_examples(settings: Settings, tmp_path: Path) -> None:
    s = with_ports(settings, spec=spec_file(tmp_path, "logistic_regression"))
    n = run_learner_on(s, itertools.islice(iter(synth.SEA(variant=0, seed=5)), 100_000), tmp_path / "learner.log")
    assert n == 100_000
    assert concept_alerts(s) == []
