"""Probe: TrumpApproval served MAE and the staleness of each prediction (run with pytest -s)."""
import statistics
import pytest
from tests.integration import test_freshness as tf
from tests.integration.loop_helpers import with_ports, running

pytestmark = pytest.mark.integration

def test_probe(settings, tmp_path):
    items = tf.trump_items()
    s = with_ports(settings, spec=tf.TRUMP_SPEC)
    with running(s, logs=tmp_path):
        preds = tf.serve(s, items)
    errors = [abs(float(p["prediction"]) - y) for p, (_, y) in zip(preds, items) if p["prediction"] is not None]
    st = [p.get("staleness_examples") for p in preds if p.get("staleness_examples") is not None]
    lat = [p["produced_ts"] - p["event_ts"] for p in preds]
    print(f"\nMAE {sum(errors)/len(errors):.3f} n={len(errors)} staleness median {statistics.median(st)} "
          f"p90 {sorted(st)[int(len(st)*.9)]} max {max(st)}; versions {len({p['model'] for p in preds})}")
    print("first 30 staleness", [p.get("staleness_examples") for p in preds[:30]])
    print("models first 30", [p["model"] for p in preds[:30]])
