"""The thin loop through the real broker: events → predictions → labels → learning → /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from producers.publish import make_producer, publish
from producers.synthetic import SyntheticStream
from streams.ops.procs import scrape
from streams.ops.readers import read_until
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, wait_metric, with_ports, worker_url

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"


def test_every_event_gets_one_prediction_and_the_model_learns(settings: Settings, tmp_path: Path) -> None:
    s = with_ports(settings, spec=SPEC, snapshot_every=100)
    n = 1500
    stream = SyntheticStream(kind="hyperplane", n_events=n, n_entities=50, seed=5, start_ts=time.time() - n * 0.01,
                             step_s=0.01)
    items = list(stream)
    with running(s, logs=tmp_path):
        producer = make_producer(s)
        # A malformed message in the middle of the good ones.
        first, second = items[: n // 2], items[n // 2 :]
        publish(s, first, producer=producer)
        producer.send(s.topic("events"), key=b"u1", value=b'{"id": "broken", "entity": "u1", "ts": "soon"}')
        producer.send(s.topic("events"), key=b"u1", value=b"\xff\xfe")
        # The second half at a live rate: a batch worker predicts a preloaded burst before the learner has
        # published a version, so only events that arrive after the first versions are served trained models.
        publish(s, second, producer=producer, rate_per_s=300)
        producer.close()

        preds = read_until(s, "predictions", done=lambda r: len(r) >= n, timeout_s=180)
        ids = [v["id"] for _, v, _ in preds]
        assert sorted(ids) == sorted(e["id"] for e, _ in items), "exactly one prediction per good event"
        assert len(ids) == n
        assert {k for k, _, _ in preds} == set(ids), "predictions are keyed by event id"
        sample = preds[0][1]
        assert {"id", "entity", "prediction", "probabilities", "model", "features", "event_ts", "produced_ts",
                "v"} <= set(sample)

        dead = read_until(s, "dead-letter", done=lambda r: len(r) >= 2, timeout_s=30)
        reasons = sorted(v["reason"] for _, v, _ in dead)
        assert reasons == ["bad_timestamp", "undecodable"]
        assert all(v["source_topic"] == s.topic("events") for _, v, _ in dead)

        learned = wait_metric(learner_url(s), "freshet_examples_learned_total", n, 120)
        assert learned == n
        wait_metric(worker_url(s), "freshet_labels_total", n, 60)
        labels = [y for _, y in items]
        majority = max(sum(labels), n - sum(labels)) / n
        learner_metrics = scrape(learner_url(s))
        acc = [v for k, v in learner_metrics.items()
               if k.startswith("freshet_online_metric{") and 'metric="accuracy"' in k and 'scope="cumulative"' in k]
        assert acc, "the learner exposes its test-then-train accuracy"
        assert max(acc) > majority + 0.1, (acc, majority)
        worker_metrics = scrape(worker_url(s))
        assert worker_metrics['freshet_labels_total{outcome="joined"}'] == n
        bad_ts = [v for k, v in worker_metrics.items()
                  if k.startswith("freshet_dead_letters_total{") and 'reason="bad_timestamp"' in k]
        assert bad_ts == [1.0]
        served = [v for k, v in worker_metrics.items() if 'scope="served_cumulative"' in k and 'metric="accuracy"' in k]
        assert served and served[0] > majority, "served predictions beat the majority class once versions swap in"
