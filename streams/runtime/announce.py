"""The one path of ``model-versions`` messages ("look again" for a slot, key: the slot).

Three kinds, each built here and nowhere else:

* ``record`` — the learner published a champion record (``snapshot``: a snapshot of that version too);
* ``position`` — how far the learner is while a big model's records are held back;
* ``pointer`` — an operator moved the current pointer (``freshet models promote|rollback``): the
  registry is pruned as after a learner's snapshot (never the current version), then the move is announced.

Workers (:mod:`streams.runtime.hot_swap`) reload from the registry on any of them.

>>> from models.registry import ModelMeta
>>> meta = ModelMeta(name="default", version=7, parent=6, slot="default", metrics={"lr": {}}, role="champion")
>>> msg = record_announcement(meta, snapshot=False)
>>> msg["kind"], msg["version"], "metrics" in msg
('record', 7, False)
>>> pointer_announcement(meta, "rollback")["kind"]
'pointer'
"""

from __future__ import annotations

from typing import Any

from models.registry import ModelMeta, Registry
from streams.records import encode
from streams.settings import Settings

__all__ = ["announce_pointer", "pointer_announcement", "position_announcement", "record_announcement"]


def _body(meta: ModelMeta) -> dict[str, Any]:
    body = meta.to_dict()
    body.pop("metrics", None)  # in the registry; the topic stays small
    return body


def record_announcement(meta: ModelMeta, *, snapshot: bool, blob_b64: str | None = None) -> dict[str, Any]:
    """A champion record was published (by the learner); ``blob_b64``: its signed bytes, when small enough
    to travel inline (workers then swap it in without reading Redis)."""
    body = {"v": 1, "kind": "record", "snapshot": snapshot, **_body(meta)}
    if blob_b64 is not None:
        body["blob_b64"] = blob_b64
    return body


def position_announcement(
    slot: str, *, version: int, examples_learned: int, offset: int, created_ts: float
) -> dict[str, Any]:
    """How far the learner is (records held back): workers tell their staleness from it."""
    return {
        "v": 1, "kind": "position", "name": slot, "slot": slot, "version": version,
        "examples_learned": examples_learned, "offset": offset, "created_ts": created_ts,
    }


def pointer_announcement(meta: ModelMeta, action: str) -> dict[str, Any]:
    """An operator made ``meta`` current (``action``: ``promote``, ``rollback`` or ``warm_start``)."""
    return {"v": 1, "kind": "pointer", "action": action, **_body(meta)}


def announce_pointer(settings: Settings, registry: Registry, slot: str, meta: ModelMeta, action: str) -> None:
    """After a pointer move: prune the slot's versions as the learner does, then announce it (one flush)."""
    from kafka import KafkaProducer

    registry.prune(slot, keep=settings.keep_versions)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        value = encode(pointer_announcement(meta, action))
        producer.send(settings.topic("model-versions"), key=slot.encode(), value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()
