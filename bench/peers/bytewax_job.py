"""The peer job on Bytewax 0.21 (runs in the peers' venv): ``python bytewax_job.py CONFIG_JSON``.

As in peers-2026-12-01.md: one worker; ``key_on(entity)`` → ``stateful_map`` (hand-written exact windows,
``job.EntityWindows``: Bytewax's windowing operators emit when a window closes, not per event) → predict
→ KafkaSink. Job B: ``join(emit_mode="complete")`` of the logged inputs and the labels by event id →
``inspect(learn_one)``. In-memory state, no recovery configured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.run import cli_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job import EntityWindows, Status, load_model, model_input, predict


def build(config: dict[str, Any], status: Status) -> Dataflow:
    model = load_model(config["model"])
    brokers = [config["bootstrap"]]
    flow = Dataflow("peer_job")

    def decode(msg: KafkaSourceMessage[Any, Any]) -> dict[str, Any]:
        status.consumed()
        return orjson.loads(msg.value)

    events = op.map("decode", op.input("events", flow, KafkaSource(brokers, [config["events"]])), decode)
    keyed = op.key_on("by_entity", events, lambda e: e["entity"])

    def windows(state: EntityWindows | None, event: dict[str, Any]) -> tuple[EntityWindows, dict[str, Any]]:
        state = state if state is not None else EntityWindows()
        feats = state.update(event["ts"], event["x1"], event["x2"])
        return state, {"id": event["id"], "x": model_input(event, feats)}

    # (entity, event) → (entity, {id, x})
    served = op.key_rm("unkey", op.stateful_map("windows", keyed, windows))

    def to_sink(row: dict[str, Any]) -> KafkaSinkMessage[bytes, bytes]:
        value = orjson.dumps({"id": row["id"], "p": predict(model, row["x"]), "features": row["x"]})
        return KafkaSinkMessage(row["id"].encode(), value)

    op.output("predictions", op.map("predict", served, to_sink), KafkaSink(brokers, config["output"]))

    if config.get("labels"):
        logged = op.key_on("by_id", served, lambda row: row["id"])
        labels = op.map(
            "decode_labels",
            op.input("labels", flow, KafkaSource(brokers, [config["labels"]])),
            lambda msg: orjson.loads(msg.value),
        )
        keyed_labels = op.key_on("labels_by_id", labels, lambda lab: lab["id"])
        # (id, ({id, x}, {id, label, ts})) once both sides are in
        joined = op.join("join", logged, keyed_labels, emit_mode="complete")

        def learn(step: str, item: tuple[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
            row, label = item[1]
            model.learn_one(row["x"], label["label"])
            status.learned_one()

        op.inspect("learn", joined, learn)
    return flow


def main(config: dict[str, Any]) -> None:
    status = Status(config["status"], learn_target=config.get("learn_target", 0))
    flow = build(config, status)
    status.write("ready")
    cli_main(flow, workers_per_process=1)


if __name__ == "__main__":
    main(orjson.loads(sys.argv[1]))
