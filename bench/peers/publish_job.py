"""The load generator of the latency runs (peers' venv, confluent-kafka): ``python publish_job.py CONFIG``.

Events at a fixed rate, event time = wall time at sending, ids ``PHASE-i``; for job B each label
``LABEL_DELAY_S`` after its event. librdkafka sends a message in a few microseconds where a pure-Python
client needs tens, so the offered rate holds up to the fastest system's half maximum. Keys are placed with
murmur2, as Java, aiokafka and kafka-python place them (freshet's join needs labels in the partition of
the predictions of the same id). Prints ``{"sent": n, "rate": achieved}`` when done.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

LABEL_DELAY_S = 0.2


def main(config: dict[str, Any]) -> None:
    items = [orjson.loads(line) for line in Path(config["items"]).read_bytes().splitlines()]
    n, rate, phase = int(config["n"]), float(config["rate"]), str(config["phase"])
    events_topic, labels_topic = config["events"], config.get("labels")
    prod = Producer(
        {"bootstrap.servers": config["bootstrap"], "linger.ms": 2, "acks": 1, "partitioner": "murmur2_random"}
    )
    labels: deque[tuple[float, bytes, bytes]] = deque()
    start = last = time.monotonic()
    i = 0
    while True:
        now = time.monotonic()
        due = min(n, int((now - start) * rate) + 1)
        while i < due:
            event, label = items[i % len(items)]
            event = {**event, "id": f"{phase}-{i}", "ts": round(time.time(), 6)}
            prod.produce(events_topic, key=event["entity"].encode(), value=orjson.dumps(event))
            if labels_topic:
                record = {"id": event["id"], "label": label, "ts": event["ts"] + LABEL_DELAY_S}
                labels.append((now + LABEL_DELAY_S, event["id"].encode(), orjson.dumps(record)))
            i += 1
            last = now
        while labels and labels[0][0] <= now:
            _, key, value = labels.popleft()
            prod.produce(labels_topic, key=key, value=value)
        prod.poll(0)
        if i >= n and not labels:
            break
        next_event = start + i / rate if i < n else float("inf")
        next_label = labels[0][0] if labels else float("inf")
        time.sleep(max(0.0005, min(next_event, next_label) - time.monotonic()))
    prod.flush(60)
    # The rate achieved: n events over the span up to the last one (the first goes out at 0).
    achieved = (n - 1) / (last - start) if n > 1 and last > start else rate
    print(orjson.dumps({"sent": n, "rate": achieved}).decode(), flush=True)


if __name__ == "__main__":
    main(orjson.loads(sys.argv[1]))
