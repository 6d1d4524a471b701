"""Acceptance tests of continual learning through the real broker (scratch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from producers.publish import make_producer
from producers.synthetic import SyntheticStream
from streams.procs import scrape
from streams.readers import TopicReader
from streams.settings import Settings
from tests.integration.loop_helpers import learner_url, running, with_ports, worker_url

pytestmark = pytest.mark.integration

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


class Follow:
    def __init__(self, settings: Settings, name: str) -> None:
        self.reader = TopicReader(settings, name)
        self.records: list[tuple[str | None, Any, dict[str, Any]]] = []

    def until(self, cond: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
            self.records.extend(self.reader.poll(0.05))

    def close(self) -> None:
        self.reader.close()


def test_scratch_latency(settings: Settings, tmp_path: Path) -> None:
    s = with_ports(settings, spec=PIPELINES / "phishing.toml", snapshot_every=1)
    n, k = 200, 1
    items = list(SyntheticStream(kind="phishing", n_events=n, n_entities=50, start_ts=time.time() - 3600,
                                 step_s=1.0))
    with running(s, logs=tmp_path):
        producer = make_producer(s, linger_ms=0)
        preds, examples = Follow(s, "predictions"), Follow(s, "examples")
        served = []
        t0 = time.monotonic()
        tl = te = tw = 0.0
        for t in range(n + k):
            j = t - k
            if j >= 0:
                a = time.monotonic()
                ev, y = items[j]
                producer.send(s.topic("labels"), key=ev["id"].encode(),
                              value=orjson.dumps({"id": ev["id"], "label": y, "ts": ev["ts"] + k}))
                producer.flush()
                examples.until(lambda r, j=j: len(r) > j, 30, f"example {j}")
                b = time.monotonic()
                deadline = time.monotonic() + 30
                while scrape(worker_url(s)).get('freshet_model_version{model="default",role="predict"}', 0) < j + 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.002)
                c = time.monotonic()
                tl += b - a
                tw += c - b
            if t < n:
                a = time.monotonic()
                ev, _ = items[t]
                producer.send(s.topic("events"), key=ev["entity"].encode(), value=orjson.dumps(ev))
                producer.flush()
                preds.until(lambda r: len(r) > t, 30, f"prediction {t}")
                served.append(preds.records[t][1]["model"])
                te += time.monotonic() - a
        print("total", time.monotonic() - t0, "label->example", tl, "swap", tw, "event->pred", te)
        print(served[:10], served[-10:])
        print({k: v for k, v in scrape(learner_url(s)).items() if "online_metric" in k and "accuracy" in k})
