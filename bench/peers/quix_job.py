"""The peer job on Quix Streams 3.28 (runs in the peers' venv): ``python quix_job.py CONFIG_JSON``.

As in peers-2026-12-01.md: ``sliding_window(10 s, grace 2 s).agg(Mean x1, Count, Latest msg).current()``,
kept to the window ending at the event → ``set_timestamp(ts)`` → ``tumbling_window(30 s, grace 2 s)
.agg(Max x2, Latest msg).current()`` → predict → ``to_topic(key=id)``. RocksDB state with changelog
topics, at-least-once, commit every 5 s (Quix's defaults). Job B: a second StreamingDataFrame on the
labels in the same Application; the join is a dict in the process (Quix's own joins need both sides
keyed alike, which the job's topics are not).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import quixstreams.dataframe.windows.aggregations as agg
from quixstreams import Application

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job import LabelJoin, Status, load_model, model_input, predict, ts_ms


def main(config: dict[str, Any]) -> None:
    status = Status(config["status"], learn_target=config.get("learn_target", 0))
    model = load_model(config["model"])
    join = LabelJoin() if config.get("labels") else None
    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        state_dir=config["state_dir"],
        loglevel="WARNING",
    )
    events = app.topic(
        config["events"],
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, timestamp, kind: ts_ms(value["ts"]),
    )
    output = app.topic(config["output"], key_serializer="str", value_serializer="json")

    def seen(value: dict[str, Any]) -> None:
        status.consumed()

    def served(value: dict[str, Any]) -> dict[str, Any]:
        event = value["msg"]
        x = model_input(event, (event["x1_mean_10s"], event["events_10s"], value["x2_max_30s"]))
        if join is not None:
            pair = join.on_features(event["id"], x)
            if pair is not None:
                model.learn_one(*pair)
                status.learned_one()
        return {"id": event["id"], "p": predict(model, x), "features": x}

    sdf = app.dataframe(events)
    sdf = sdf.update(seen)
    # {id, entity, ts, x1..x5} → every 10 s window this event updated: {start, end, x1_mean, n, msg}
    sdf = sdf.sliding_window(duration_ms=10_000, grace_ms=2_000).agg(
        x1_mean=agg.Mean("x1"), n=agg.Count(), msg=agg.Latest()
    ).current()
    # → the one window ending at the event: [ts - 10 s, ts]
    sdf = sdf.filter(lambda w: w["end"] == ts_ms(w["msg"]["ts"]))
    sdf = sdf.apply(lambda w: {**w["msg"], "x1_mean_10s": w["x1_mean"], "events_10s": float(w["n"])})
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: ts_ms(value["ts"]))
    # → {start, end, x2_max_30s, msg}: the event's 30 s tumble
    sdf = sdf.tumbling_window(duration_ms=30_000, grace_ms=2_000).agg(
        x2_max_30s=agg.Max("x2"), msg=agg.Latest()
    ).current()
    # → {id, p, features}, keyed by event id
    sdf = sdf.apply(served)
    sdf.to_topic(output, key=lambda value: value["id"])

    if join is not None:
        labels = app.topic(config["labels"], key_deserializer="str", value_deserializer="json")

        def on_label(value: dict[str, Any]) -> None:
            pair = join.on_label(value["id"], value["label"])
            if pair is not None:
                model.learn_one(*pair)
                status.learned_one()

        app.dataframe(labels).update(on_label)

    status.write("ready")
    app.run()


if __name__ == "__main__":
    main(orjson.loads(sys.argv[1]))
