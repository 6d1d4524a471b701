"""Hot-swap: each worker follows ``model-versions`` and swaps in a slot's current version.

The registry's current pointer is the truth (promote, rollback); an announcement only says "look again".
A version that does not verify is refused, logged and counted; serving goes on with the model it has.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from models.champion import ModelGroup
from models.registry import Registry, SnapshotError
from models.spec import ModelSlotDef
from streams.connections import open_registry
from streams.metrics import Metrics
from streams.predictor import Predictor
from streams.settings import Settings

log = logging.getLogger("freshet.worker")


async def follow_versions(
    settings: Settings, slot_defs: list[ModelSlotDef], predictor: Predictor, metrics: Metrics
) -> None:
    """Hot-swap each slot's champion: load the current version at start, then follow ``model-versions``."""
    from aiokafka import AIOKafkaConsumer

    registry = open_registry(settings)
    loop = asyncio.get_running_loop()
    slots = {slot.slot: slot for slot in slot_defs}

    async def load(slot: str) -> None:
        """Swap in the slot's current version (the registry's pointer is the truth: promote, rollback)."""
        try:
            model, label = await loop.run_in_executor(None, load_champion, registry, slots[slot], None)
        except SnapshotError as exc:
            log.error("slot %s: refusing the current model version: %s", slot, exc)
            metrics.dead_letters.labels(source="model-versions", reason="bad_snapshot").inc()
            return
        if model is None or label == predictor.models[slot].label:
            return
        predictor.swap(slot, model, label)
        metrics.model_swaps.labels(model=slot).inc()
        metrics.model_version.labels(model=slot, role="predict").set(int(label.rsplit("@", 1)[1]))
        log.info("slot %s: now serving %s", slot, label)

    topic = settings.topic("model-versions")
    # No consumer group: every worker follows every slot's versions.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        for slot in slots:  # after subscribing, so no version announced meanwhile is missed
            await load(slot)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            announced = {
                (r.key or b"").decode() for records in batches.values() for r in records if r.value is not None
            }
            for slot in announced & slots.keys():
                await load(slot)
    finally:
        await consumer.stop()


def load_champion(registry: Registry, slot_def: ModelSlotDef, version: int | None) -> tuple[Any, str]:
    """(champion model, "name@version") of a slot's current (or given) snapshot; (None, "") if none."""
    if version is None:
        current = registry.current(slot_def.slot)
        if current is None:
            return None, ""
        version = current.version
    state, meta = registry.load(slot_def.slot, version)
    group = ModelGroup.from_state(state, slot_def)
    return group.model(), f"{group.champion}@{meta.version}"
