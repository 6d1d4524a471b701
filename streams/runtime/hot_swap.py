"""Hot-swap: each worker follows ``model-versions`` and swaps in each slot's newest servable version.

What is served is a slot's latest *champion record* (models/registry.py: the champion alone, signed,
small), published by the learner every fraction of a second, as long as the record descends from the
registry's current snapshot (its ``parent`` is the current pointer). When an operator moves the pointer
(``freshet models promote|rollback``) and no record descends from it, the worker loads that snapshot in
full, as before. An announcement only says "look again"; the registry is the truth. Loading (read,
verify, unpickle) runs off the event loop and the swap replaces one reference: the stream never pauses.
A version that does not verify is refused, logged and counted once; serving goes on with the model it has.

Every announcement also tells the predictor how far the learner is (staleness, streams/core/predictor.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import time
from typing import Any

from models.champion import ModelGroup
from models.registry import Registry, SnapshotError
from models.router import serving_model
from models.spec import ModelSlotDef
from streams.core.predictor import Predictor
from streams.records import decode
from streams.runtime.connections import open_registry
from streams.runtime.metrics import Metrics
from streams.runtime.outage import unreachable
from streams.runtime.routing_io import export_routing
from streams.settings import Settings

log = logging.getLogger("freshet.worker")


class VersionFollower:
    """The swap decisions of one worker, without Kafka: :meth:`refresh` a slot when it is announced.

    >>> import pickle
    >>> from models.registry import InMemoryRegistryStore
    >>> from models.spec import parse_models
    >>> slots = parse_models(None, "classification")
    >>> reg, predictor = Registry(InMemoryRegistryStore(), "k", clock=lambda: 1.0), Predictor(slots)
    >>> follower = VersionFollower(reg, slots, predictor, Metrics())
    >>> snap = reg.save("default", ModelGroup(slots[0]).state(), offset=9, examples_learned=10)
    >>> follower.refresh("default"), predictor.models["default"].label  # no record: the snapshot in full
    (True, 'lr@1')
    >>> rec = reg.publish("default", pickle.dumps(predictor.models["default"].model), base=snap.version,
    ...                   examples_learned=25, offset=24, champion="lr")
    >>> follower.refresh("default"), predictor.models["default"].label, follower.refresh("default")
    (True, 'lr@2', False)
    """

    def __init__(self, registry: Registry, slot_defs: list[ModelSlotDef], predictor: Predictor, metrics: Metrics):
        self.registry = registry
        self.slots = {slot.slot: slot for slot in slot_defs}
        self.predictor = predictor
        self.metrics = metrics
        self._pointer: dict[str, int | None] = {}  # the current pointer last acted upon, per slot
        self._refused: dict[str, str] = {}  # slot -> the refusal last counted (each counted once)
        self._swaps = {s: metrics.model_swaps.labels(model=s) for s in self.slots}

    def served_version(self, slot: str) -> int:
        return int(self.predictor.models[slot].label.rsplit("@", 1)[1])

    def note(self, slot: str, announcement: Any) -> None:
        """What an announcement says about the learner's position (records and position messages)."""
        if slot in self.slots and isinstance(announcement, dict) and announcement.get("kind") in ("record", "position"):
            examples = announcement.get("examples_learned")
            if isinstance(examples, int):
                self.predictor.note_learner(slot, examples, float(announcement.get("created_ts") or time.time()))

    def offer(self, slot: str, announcement: Any) -> bool:
        """Swap in a champion record that came inline in its announcement (``blob_b64``), if it may be served.

        Returns whether the announcement was dealt with; ``False``: call :meth:`refresh` (no inline record, an
        older version, or one that does not descend from the current pointer). Redis is read once, for the
        current pointer; while it is down the pointer last seen stands, so new versions still reach serving.
        """
        if not isinstance(announcement, dict) or slot not in self.slots:
            return False  # unreadable (junk on model-versions): the registry is looked at instead
        encoded = announcement.get("blob_b64")
        if announcement.get("kind") != "record" or not isinstance(encoded, str):
            return False
        try:
            current = self.registry.current_version(slot)
        except Exception as exc:
            if not unreachable(exc):
                raise
            current = self._pointer.get(slot)
        version = announcement.get("version")
        if announcement.get("parent") != current or not isinstance(version, int):
            return False
        if version <= self.served_version(slot):
            return False
        started = time.perf_counter()
        meta_fields = {k: v for k, v in announcement.items() if k not in ("v", "kind", "snapshot", "blob_b64")}
        try:
            blob = base64.b64decode(encoded, validate=True)
            model, meta = self.registry.open_record(slot, meta_fields, blob)
        except (SnapshotError, binascii.Error, ValueError) as exc:
            self._refuse(slot, f"inline record refused: {exc}"[:300])
            return False  # the registry is the truth: look there
        except Exception as exc:  # verified but does not load
            self._refuse(slot, f"the version does not load: {exc!r}"[:300])
            return False
        self._swap(slot, model, meta.champion or "?", meta.version, meta.examples_learned, meta.created_ts,
                   time.perf_counter() - started, meta.size_bytes)
        self._pointer[slot] = current
        return True

    def refresh(self, slot: str) -> bool:
        """Swap in the slot's newest servable version if it is not served yet; returns whether it swapped."""
        try:
            current = self.registry.current_version(slot)
            record = self.registry.record_meta(slot)
            served = self.served_version(slot)
            if record is not None and record.parent == current:  # (None == None: no snapshot yet)
                if record.version == served and self._pointer.get(slot) == current:
                    return False
                if record.version < served and self._pointer.get(slot) == current:
                    return False  # an older record read late: keep the newer version
                started = time.perf_counter()
                model, meta = self.registry.load_record(slot)
                if meta.parent != current:
                    return False  # overwritten meanwhile by a record of another lineage: look again next time
                self._swap(slot, model, meta.champion or "?", meta.version, meta.examples_learned, meta.created_ts,
                           time.perf_counter() - started, meta.size_bytes)
                self._pointer[slot] = current
                return True
            if current is None or current == self._pointer.get(slot):
                return False
            # The pointer moved and no record descends from it (promote, rollback, an older learner).
            started = time.perf_counter()
            state, meta = self.registry.load(slot, current)
            group = ModelGroup.from_state(state, self.slots[slot])
            self._pointer[slot] = current
            if meta.version == served:
                return False
            self._swap(slot, serving_model(group), group.champion, meta.version, meta.examples_learned, meta.created_ts,
                       time.perf_counter() - started, meta.size_bytes)
            return True
        except SnapshotError as exc:
            self._refuse(slot, str(exc))
            return False
        except Exception as exc:
            if unreachable(exc):  # the registry (Redis) is down: keep serving what we have
                log.warning("slot %s: model registry unreachable (%s); still serving %s", slot, exc,
                            self.predictor.models[slot].label)
            else:  # verified but does not load (unpickling, a model of another shape): refused, counted
                self._refuse(slot, f"the version does not load: {exc!r}"[:300])
            return False

    def _refuse(self, slot: str, why: str) -> None:
        """Log and count a refused version once per distinct reason (serving goes on with what it has)."""
        if self._refused.get(slot) != why:
            self._refused[slot] = why
            log.error("slot %s: refusing the current model version: %s", slot, why)
            self.metrics.dead_letters.labels(source="model-versions", reason="bad_snapshot").inc()

    def _swap(self, slot: str, model: Any, name: str, version: int, examples: int, published_ts: float,
              load_s: float, size: int) -> None:
        self.predictor.swap(slot, model, f"{name}@{version}", examples_learned=examples, published_ts=published_ts)
        self._swaps[slot].inc()
        self.metrics.model_version.labels(model=slot, role="predict").set(version)
        self.metrics.swap_seconds.labels(model=slot).set(load_s)
        self.metrics.swap_bytes.labels(model=slot).set(size)
        log.info("slot %s: now serving %s@%d (%d bytes loaded in %.1f ms)", slot, name, version, size, load_s * 1e3)

    def export_staleness(self, now_s: float) -> None:
        """``freshet_served_model_staleness_examples`` / ``_seconds`` for every slot the learner was heard of."""
        for slot in self.slots:
            examples, seconds = self.predictor.staleness(slot, now_s)
            if examples is not None and seconds is not None:
                self.metrics.served_staleness_examples.labels(model=slot).set(examples)
                self.metrics.served_staleness_seconds.labels(model=slot).set(seconds)


async def follow_versions(
    settings: Settings,
    slot_defs: list[ModelSlotDef],
    predictor: Predictor,
    metrics: Metrics,
    loaded: asyncio.Event | None = None,
) -> None:
    """Hot-swap each slot's champion: load the newest at start (then set ``loaded``), then follow ``model-versions``."""
    from aiokafka import AIOKafkaConsumer

    follower = VersionFollower(open_registry(settings), slot_defs, predictor, metrics)
    loop = asyncio.get_running_loop()
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
        for slot in follower.slots:  # after subscribing, so no version announced meanwhile is missed
            await loop.run_in_executor(None, follower.refresh, slot)
        if loaded is not None:
            loaded.set()
        next_look = time.monotonic() + 1.0
        while True:
            batches = await consumer.getmany(timeout_ms=250)
            announced: dict[str, Any] = {}  # slot -> its latest announcement in this batch (None: unreadable)
            for records in batches.values():
                for r in records:
                    if r.value is None:
                        continue
                    slot = (r.key or b"").decode("utf-8", "replace")  # junk keys name no slot: ignored
                    announced[slot] = None
                    with contextlib.suppress(ValueError, TypeError):  # not ours: still a reason to look again
                        announced[slot] = decode(r.value)
                        follower.note(slot, announced[slot])
            for slot in announced.keys() & follower.slots.keys():
                swap = functools.partial(follower.offer, slot, announced[slot])
                try:
                    if not await loop.run_in_executor(None, swap):
                        await loop.run_in_executor(None, follower.refresh, slot)
                except Exception as exc:  # an announcement that breaks the follower: never a worker crash
                    follower._refuse(slot, f"announcement not handled: {exc!r}"[:300])  # noqa: SLF001  (its driver)
            if time.monotonic() >= next_look:  # routed slots: a plan change must not wait on a missed announcement
                next_look = time.monotonic() + 1.0
                for slot in predictor.routed.keys() - announced.keys():
                    try:
                        await loop.run_in_executor(None, follower.refresh, slot)
                    except Exception as exc:  # never a worker crash
                        follower._refuse(slot, f"registry look failed: {exc!r}"[:300])  # noqa: SLF001
            follower.export_staleness(time.time())
            export_routing(metrics, predictor)
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
