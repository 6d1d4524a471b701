"""The learner a batch at a time, champion records and the worker's follower, without servers.

- ``LearnerLoop.learn_batch`` (the pure half of the learner's step) gives the models, the scores and the
  snapshots of one-at-a-time learning however the stream is cut into batches, pickling a count snapshot
  only at the last boundary of a batch;
- champion records are signed and verified like snapshots;
- ``VersionFollower`` serves the newest record of the current lineage, falls back to the snapshot when an
  operator moves the pointer, and refuses (once) what does not verify.
"""

from __future__ import annotations

import itertools
import pickle
from collections import namedtuple
from typing import Any

import pytest
from river.datasets import synth

from models.champion import ModelGroup
from models.drift.config import DriftConfig
from models.learner import Learner
from models.registry import InMemoryRegistryStore, Registry, SnapshotError
from models.spec import parse_models
from streams.core.predictor import Predictor
from streams.records import Example, decode, encode
from streams.runtime.hot_swap import VersionFollower
from streams.runtime.learner_loop import LearnerLoop
from streams.runtime.metrics import Metrics
from streams.settings import Settings

SLOTS = parse_models(
    [{
        "slot": "default",
        "champion": {"name": "lr", "factory": "logistic_regression"},
        "challengers": [{"name": "hat", "factory": "hoeffding_adaptive_tree", "params": {"seed": 42}}],
        "promotion": {"metric": "accuracy", "margin": 0.02, "window": 200, "min_examples": 300},
    }]
)
Record = namedtuple("Record", "topic partition offset key value")
EVERY = 100


def records(n: int) -> list[Record]:
    stream = itertools.islice(synth.Agrawal(classification_function=0, seed=42), n)
    return [
        Record("examples", 0, i, b"default", encode(Example(
            id=f"e{i}", entity="u", slot="default", features=x, label=y, event_ts=float(i), label_ts=float(i),
            served_prediction=True, served_model="lr@0", served_probabilities={"true": 0.6, "false": 0.4},
        ).to_dict()))
        for i, (x, y) in enumerate(stream)
    ]


def loop(registry: Registry) -> LearnerLoop:
    """The learner process's loop without Kafka (learn_batch never touches producer or consumer)."""
    learners = {s.slot: Learner.restore(registry, s, snapshot_every=EVERY) for s in SLOTS}
    settings = Settings(snapshot_every=EVERY)
    return LearnerLoop(settings, Metrics(), learners, None, None, registry, DriftConfig.from_dict(None))  # type: ignore[arg-type]


def fingerprint(group: ModelGroup, probes: list[dict[str, Any]]) -> tuple[Any, ...]:
    return (group.champion, group.examples_learned, group.metrics(), group.promotions,
            {name: [group.predict(x, name) for x in probes] for name in group.names})


@pytest.mark.parametrize("batch_size", [1, 7, 100, 250, 1000])
def test_any_batching_learns_and_snapshots_as_one_at_a_time(batch_size: int) -> None:
    data = records(700)
    probes = [x for x, _ in itertools.islice(synth.Agrawal(classification_function=0, seed=7), 30)]
    # The reference: Learner.process one example at a time, a snapshot every EVERY (and at the promotion).
    reference_registry = Registry(InMemoryRegistryStore(), "k")
    reference = Learner.restore(reference_registry, SLOTS[0], snapshot_every=EVERY)
    for r in data:
        reference.process(Example.from_dict(decode(r.value)), r.offset)
    snapshots = {m.examples_learned: m for m in reference_registry.versions("default")}

    batched = loop(Registry(InMemoryRegistryStore(), "k"))
    captured: list[int] = []
    for start in range(0, len(data), batch_size):
        batch = batched.learn_batch(data[start:start + batch_size])
        boundaries = [c.examples_learned for _, c, _ in batch.captures if c.examples_learned % EVERY == 0]
        assert len(boundaries) <= 1, "a count snapshot at most once per batch"
        for _, capture, champion in batch.captures:
            captured.append(capture.examples_learned)
            group = ModelGroup.from_state(pickle.loads(capture.blob), SLOTS[0])
            expected = ModelGroup.from_state(reference_registry.load("default", snapshots[capture.examples_learned]
                                                                     .version)[0], SLOTS[0])
            assert fingerprint(group, probes) == fingerprint(expected, probes)
            assert pickle.loads(champion).predict_proba_one(probes[0]) == group.model().predict_proba_one(probes[0])
    group = batched.learners["default"].group
    assert fingerprint(group, probes) == fingerprint(reference.group, probes)
    assert set(captured) <= set(snapshots)  # snapshots fall where one-at-a-time learning takes them
    assert max(captured) == max(k for k in snapshots if k <= len(data))  # and the last one is taken
    assert batched.learners["default"].offset == len(data) - 1


def test_the_served_scorer_scores_what_users_got() -> None:
    batched = loop(Registry(InMemoryRegistryStore(), "k"))
    data = records(300)
    batched.learn_batch(data)
    labels = [decode(r.value)["label"] for r in data]
    served = batched._io["default"].served.snapshot()
    assert served["n"] == 300
    assert served["accuracy"] == pytest.approx(sum(bool(y) for y in labels) / 300)  # always served True
    assert batched._io["default"].staleness_n == 300  # version 0 learned nothing: behind by all learned


def test_a_tampered_or_foreign_champion_record_is_refused() -> None:
    store = InMemoryRegistryStore()
    registry = Registry(store, "key")
    registry.publish("default", pickle.dumps("model"), base=None, examples_learned=1, offset=0, champion="lr")
    assert registry.load_record("default")[0] == "model"
    blob, meta = store._records["default"]
    store._records["default"] = (blob[:-1] + bytes([blob[-1] ^ 1]), meta)
    with pytest.raises(SnapshotError, match="tampered"):
        registry.load_record("default")
    store._records["default"] = (blob, meta)
    with pytest.raises(SnapshotError, match="bad signature"):
        Registry(store, "another key").record_meta("default")


def test_the_follower_serves_the_current_lineage_and_falls_back_to_snapshots() -> None:
    registry = Registry(InMemoryRegistryStore(), "k")
    predictor, metrics = Predictor(SLOTS), Metrics()
    follower = VersionFollower(registry, SLOTS, predictor, metrics)
    group = ModelGroup(SLOTS[0])
    v1 = registry.save("default", group.state(), offset=9, examples_learned=10, champion="lr")
    registry.publish("default", pickle.dumps(group.model()), version=v1.version, base=v1.version,
                     examples_learned=10, offset=9, champion="lr")
    assert follower.refresh("default") and predictor.models["default"].label == "lr@1"
    rec = registry.publish("default", pickle.dumps(group.model()), base=v1.version, examples_learned=30, offset=29,
                           champion="lr")
    follower.note("default", {"kind": "record", "examples_learned": 40, "created_ts": 100.0})
    assert follower.refresh("default") and predictor.models["default"].label == f"lr@{rec.version}"
    assert predictor.staleness("default", 101.5) == (10, 1.5)
    # The next snapshot and its record, as the learner writes them: the record first, then the pointer.
    v3 = registry.save("default", group.state(), offset=49, examples_learned=50, champion="lr", make_current=False)
    registry.publish("default", pickle.dumps(group.model()), version=v3.version, base=v3.version,
                     examples_learned=50, offset=49, champion="lr")
    assert not follower.refresh("default")  # the record's parent is not current yet: not served
    registry.store.set_current("default", v3.version)
    assert follower.refresh("default") and predictor.models["default"].label == "lr@3"
    # An operator rolls back to v1: the record (v3's lineage) is stale; v1 is loaded in full.
    registry.set_current("default", v1.version)
    assert follower.refresh("default") and predictor.models["default"].label == "lr@1"
    assert not follower.refresh("default")  # nothing new
    # Promoted back to v3: its record is served again (signed on its own, no need for the snapshot).
    registry.set_current("default", v3.version)
    assert follower.refresh("default") and predictor.models["default"].label == "lr@3"
    # A pointer at a snapshot that does not verify (and no record of its lineage): refused and counted once.
    registry.store.put("default", v1.version, b"not the blob", registry.store.get_meta("default", v1.version) or {})
    registry.store.set_current("default", v1.version)
    assert not follower.refresh("default") and not follower.refresh("default")
    assert predictor.models["default"].label == "lr@3"
    assert metrics.registry.get_sample_value(
        "freshet_dead_letters_total", {"source": "model-versions", "reason": "bad_snapshot"}) == 1.0


class _DownStore(InMemoryRegistryStore):
    """A registry store whose Redis went away: every read raises a connection error."""

    def get_current(self, name: str) -> int | None:
        raise ConnectionError("Redis is down")


def _inline(meta: Any, blob: bytes) -> dict[str, Any]:
    import base64

    return {"v": 1, "kind": "record", "snapshot": False, **meta.to_dict(), "blob_b64": base64.b64encode(blob).decode()}


def test_the_follower_swaps_an_inline_record_without_reading_the_blob_from_redis() -> None:
    registry = Registry(InMemoryRegistryStore(), "k")
    predictor, metrics = Predictor(SLOTS), Metrics()
    follower = VersionFollower(registry, SLOTS, predictor, metrics)
    group = ModelGroup(SLOTS[0])
    blob = pickle.dumps(group.model())
    rec = registry.publish("default", blob, base=None, examples_learned=3, offset=2, champion="lr")
    reads: list[str] = []
    original = registry.store.get_record
    registry.store.get_record = lambda *a, **k: reads.append("read") or original(*a, **k)  # type: ignore[method-assign]
    assert follower.offer("default", _inline(rec, blob))
    assert predictor.models["default"].label == f"lr@{rec.version}" and reads == []
    # Nothing newer: left to refresh (which finds nothing to do either).
    assert not follower.offer("default", _inline(rec, blob)) and not follower.refresh("default")
    # No inline blob (a big model): refresh reads the registry.
    rec2 = registry.publish("default", blob, base=None, examples_learned=9, offset=8, champion="lr")
    no_blob = {k: v for k, v in _inline(rec2, blob).items() if k != "blob_b64"}
    assert not follower.offer("default", no_blob) and follower.refresh("default") and reads
    # A forged inline blob is refused and counted; serving goes on with what it has.
    rec3 = registry.publish("default", blob, base=None, examples_learned=12, offset=11, champion="lr")
    assert not follower.offer("default", _inline(rec3, pickle.dumps("forged")))
    assert predictor.models["default"].label == f"lr@{rec2.version}"
    assert metrics.registry.get_sample_value(
        "freshet_dead_letters_total", {"source": "model-versions", "reason": "bad_snapshot"}) == 1.0


def test_while_redis_is_down_inline_records_still_reach_serving() -> None:
    store = _DownStore()
    registry = Registry(store, "k")
    predictor = Predictor(SLOTS)
    follower = VersionFollower(registry, SLOTS, predictor, Metrics())
    blob = pickle.dumps(ModelGroup(SLOTS[0]).model())
    rec = Registry(InMemoryRegistryStore(), "k").publish("default", blob, base=None, examples_learned=5, offset=4,
                                                         champion="lr")
    assert follower.offer("default", _inline(rec, blob))
    assert predictor.models["default"].label == f"lr@{rec.version}"


class BusyLoadingError(Exception):
    """Named as redis-py's: Redis answers but is still loading its append-only file after a restart."""


class _LoadingStore(InMemoryRegistryStore):
    def get_current(self, name: str) -> int | None:
        raise BusyLoadingError("Redis is loading the dataset in memory")


def test_a_registry_still_loading_after_a_restart_is_an_outage_not_a_bad_version() -> None:
    predictor, metrics = Predictor(SLOTS), Metrics()
    follower = VersionFollower(Registry(_LoadingStore(), "k"), SLOTS, predictor, metrics)
    assert not follower.refresh("default")
    assert predictor.models["default"].label == "lr@0"
    assert metrics.registry.get_sample_value(
        "freshet_dead_letters_total", {"source": "model-versions", "reason": "bad_snapshot"}) in (None, 0.0)
