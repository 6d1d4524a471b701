"""How fast the learner process learns a preloaded ``examples`` topic (issue 8): a script, not a test.

Preloads N examples shaped like the demo spec's (``pipelines/demo.toml``: five features, two models,
drift detection on) to fresh topics, then runs :class:`streams.runtime.learner_loop.LearnerLoop` in this process until
it has learned all of them and prints examples/s (first poll to the N-th example learned). Needs a
running Kafka and Redis (``freshet services up``; the ``FRESHET_*`` variables say where)::

    python -m tests.perf.learner_speed --n 20000 [--profile out.txt]

Speed is measured here and by ``make bench`` (``learner_examples_per_s``), never by a timed test.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

from kafka import KafkaProducer

from streams.ops.services import ensure_topics
from streams.records import Example, encode
from streams.runtime.learner_loop import LearnerLoop
from streams.runtime.metrics import Metrics
from streams.settings import DEFAULT_SPEC_PATH, Settings


def examples(n: int, seed: int = 1) -> list[bytes]:
    """``n`` encoded examples of the demo spec's features with a linear concept that flips halfway."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {
            "x1_mean_10s": rng.random(),
            "events_10s": float(rng.randint(1, 20)),
            "x2_max_30s": rng.random(),
            "x3_std_60s": rng.random() * 0.3,
            "seconds_since_last": rng.random() * 5,
        }
        y = (x["x1_mean_10s"] + x["x2_max_30s"] > 1.0) != (i > n // 2)
        ex = Example(id=f"e{i}", entity=f"u{i % 100}", slot="default", features=x, label=y,
                     event_ts=1.7e9 + i * 0.01, label_ts=1.7e9 + i * 0.01, served_prediction=not y,
                     served_model="lr@1", served_probabilities={"true": 0.4, "false": 0.6})
        out.append(encode(ex.to_dict()))
    return out


def measure(settings: Settings, n: int) -> tuple[float, float]:
    """(examples/s of wall time, examples/s of this process's CPU time: less sensitive to a busy machine)."""
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, batch_size=256 * 1024)
    for value in examples(n):
        producer.send(settings.topic("examples"), key=b"default", value=value)
    producer.flush()
    producer.close()
    loop = LearnerLoop.build(settings, Metrics())
    try:
        done = 0
        start = None
        while done < n:
            got = loop.step(timeout_s=0.5)
            if got and start is None:
                start, cpu = time.perf_counter(), time.process_time()
            done += got
        assert start is not None
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        loop.close()
    return n / elapsed, n / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    base = Settings.from_env()
    for _ in range(args.repeat):
        tag = uuid.uuid4().hex[:8]
        s = base.with_(topic_prefix=f"speed-{tag}-", app_id=f"freshet-speed-{tag}", spec_path=DEFAULT_SPEC_PATH)
        rate, cpu_rate = measure(s, args.n)
        print(f"learner: {args.n} examples, demo spec (2 models, drift on), snapshot_every {s.snapshot_every}, "
              f"publish_every_s {s.publish_every_s}: {rate:,.0f} examples/s ({cpu_rate:,.0f} per CPU second)")


if __name__ == "__main__":
    main()
