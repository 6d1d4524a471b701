"""Acceptance of issue 13 through the real broker: what users are *served*, with the default settings.

A user publishes events at 100/s and each label as soon as the event's prediction appears on
``predictions`` (or, with a label delay of k events, when the prediction of the event k later appears).
The served predictions are scored here, against the labels, exactly as the user would score them, and
compared with River's ``progressive_val_score`` on the same rows (with ``delay=k`` for delayed labels):
within 0.03 of it for Phishing, MAE at most 2x River's for TrumpApproval. Predictions the worker could
not make (an untrained classifier has no probabilities) are left out, as River leaves them out.

The learner's ``metrics`` topic must say the same: its last ``role: served`` snapshot (published when
the stream went idle) has scored every example and agrees with what the test scored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from river import datasets, evaluate, metrics

from models.spec import build_model
from producers.synthetic import SyntheticStream
from streams.ops import freshness
from streams.ops.readers import read_until
from streams.runtime.learner_loop import load_slots
from streams.settings import Settings
from tests.integration.loop_helpers import running, with_ports, worker_url
from tests.integration.test_learning import (
    PHISHING_SPEC,
    SLOT,
    Item,
    features,
    metric,
    progressive_accuracy,
    stream_items,
)

pytestmark = pytest.mark.integration

RATE = 100.0  # events/s, as the issue measures
TRUMP_SPEC = Path(__file__).resolve().parent / "trump_approval.toml"


def trump_items() -> list[Item]:
    """River's TrumpApproval (1001 rows, regression) as freshet events, all in the past."""
    rows = list(datasets.TrumpApproval())
    start = time.time() - len(rows) * 0.1 - 60.0
    return [
        ({"id": f"trump-{i}", "entity": f"u{i % 50}", "ts": start + i * 0.1, **{k: float(v) for k, v in x.items()}},
         float(y))
        for i, (x, y) in enumerate(rows)
    ]


def serve(s: Settings, items: list[Item], delay: int = 0) -> list[dict[str, Any]]:
    """Events at RATE; label i as soon as the prediction of event i + delay is seen (streams.ops.freshness)."""
    return freshness.serve(s, items, RATE, delay=delay)


def served_accuracy(items: list[Item], predictions: list[dict[str, Any]]) -> float:
    scored = [(p["prediction"], label) for p, (_, label) in zip(predictions, items, strict=True)
              if p["prediction"] is not None]
    return sum(y_pred == y for y_pred, y in scored) / len(scored)


def last_served_snapshot(s: Settings, n: int) -> dict[str, Any]:
    """The learner's ``served`` metrics once it has scored ``n`` examples (published when the stream idles)."""
    records = read_until(
        s, "metrics",
        done=lambda r: any(v.get("role") == "served" and v.get("n") == n for _, v, _ in r),
        timeout_s=60,
    )
    return [v for _, v, _ in records if v.get("role") == "served" and v.get("n") == n][-1]


@pytest.mark.parametrize(("delay", "tolerance"), [(0, 0.03), (50, 0.03)], ids=["no-delay", "labels-50-late"])
def test_served_accuracy_on_phishing_is_near_river_with_default_settings(
    settings: Settings, tmp_path: Path, delay: int, tolerance: float
) -> None:
    items = stream_items("phishing", 1250)
    reference = progressive_accuracy(items, delay=delay or None)
    s = with_ports(settings, spec=PHISHING_SPEC)  # the defaults: snapshot_every 500, publish_every_s 0.25
    assert (s.snapshot_every, s.publish_every_s) == (Settings().snapshot_every, Settings().publish_every_s)
    with running(s, logs=tmp_path):
        predictions = serve(s, items, delay=delay)
        snapshot = last_served_snapshot(s, len(items))
        staleness = metric(worker_url(s), "freshet_served_model_staleness_examples", model=SLOT)
    accuracy = served_accuracy(items, predictions)
    versions = {p["model"] for p in predictions}
    print(f"\nphishing, labels {delay} events late, default settings: served {accuracy:.4f} vs River "
          f"{reference:.4f}; {len(versions)} versions served; learner's served metrics {snapshot['metrics']}")
    assert accuracy == pytest.approx(reference, abs=tolerance)
    assert len(versions) > 10  # published by time and early, not only every 500 examples
    # The learner scored the same served predictions (in label-arrival order: the same set).
    assert snapshot["metrics"]["accuracy"] == pytest.approx(accuracy, abs=0.002)
    assert snapshot["metrics"]["n"] == sum(p["prediction"] is not None for p in predictions)
    # Examples the learner had learned, when each label came, that the serving version had not: the
    # publication lag plus whatever backlog the worker's join had (so no fixed bound here).
    assert 0 <= snapshot["metrics"]["staleness_examples_mean"] <= snapshot["metrics"]["staleness_examples_max"]
    assert staleness >= 0  # the worker's follower exports it


# Measured on a quiet machine (2026-12-03): served MAE 1.87-2.37 against River's 1.31 in three runs. It needs the
# whole loop (label -> join -> examples -> learner -> inline record -> worker swap) within ~50 ms at 100
# events/s (River offline: MAE 2.4 at a lag of 5 examples, 2.9 at 8); on a machine loaded 5-10x over its
# cores the loop takes 300+ ms and the figure is 5-8.
def test_served_mae_on_trump_approval_is_at_most_twice_river_with_default_settings(
    settings: Settings, tmp_path: Path
) -> None:
    items = trump_items()
    s = with_ports(settings, spec=TRUMP_SPEC)
    _, [slot] = load_slots(s)
    reference = metrics.MAE()
    evaluate.progressive_val_score([(features_of(e), y) for e, y in items], build_model(slot.champion, "regression"),
                                   reference)
    with running(s, logs=tmp_path):
        predictions = serve(s, items)
        snapshot = last_served_snapshot(s, len(items))
    errors = [abs(float(p["prediction"]) - y) for p, (_, y) in zip(predictions, items, strict=True)
              if p["prediction"] is not None]
    mae = sum(errors) / len(errors)
    print(f"\ntrump approval, default settings: served MAE {mae:.4f} vs River {reference.get():.4f}; "
          f"learner's served metrics {snapshot['metrics']}")
    assert mae <= 2 * reference.get()
    assert snapshot["metrics"]["mae"] == pytest.approx(mae, rel=0.01)


def features_of(event: dict[str, Any]) -> dict[str, float]:
    """TrumpApproval's model input: every field of the event but id, entity and time."""
    if event["id"].startswith("trump-"):
        return {k: v for k, v in event.items() if k not in ("id", "entity", "ts")}
    return features(event)


SEA_EVENTS = int(os.environ.get("FRESHET_TEST_SEA_EVENTS", "90000"))


@pytest.mark.long  # 15 minutes at 100 events/s (90,000 events): `make long`, not `make test`
@pytest.mark.timeout(1800)  # beyond the suite's 300 s per test: the stream alone takes 900 s
def test_served_accuracy_on_sea_with_two_drifts_is_within_0_002_of_the_learner(
    settings: Settings, tmp_path: Path
) -> None:
    """SEA, two abrupt drifts (at 1/3 and 2/3): what users got is within 0.002 of the learner's own score."""
    spec = tmp_path / "sea.toml"
    spec.write_text(
        '[event]\nid = "id"\nentity = "entity"\ntime = "ts"\nmax_age_s = 0\n'
        '[event.fields]\nx1 = "float"\nx2 = "float"\nx3 = "float"\n[label]\nkind = "classification"\n'
    )
    n = SEA_EVENTS
    start = time.time() - n * 0.01 - 60.0
    items = list(SyntheticStream(kind="sea", n_events=n, n_entities=200, seed=42, start_ts=start, step_s=0.01,
                                 drift_at=[n // 3, 2 * n // 3]))
    s = with_ports(settings, spec=spec)
    with running(s, logs=tmp_path):
        predictions = serve(s, items)
        records = read_until(
            s, "metrics", timeout_s=60,
            done=lambda r: any(v.get("role") == "champion" and v.get("n") == n for _, v, _ in r),
        )
    learner = [v for _, v, _ in records if v.get("role") == "champion" and v.get("n") == n][-1]["metrics"]["accuracy"]
    accuracy = served_accuracy(items, predictions)
    print(f"\nsea, {n} events, drifts at {n // 3} and {2 * n // 3}, default settings: served {accuracy:.4f} "
          f"vs learner {learner:.4f}")
    assert accuracy == pytest.approx(learner, abs=0.002)
