"""The registry: signed versioned snapshots, refusal of unsigned or tampered ones, promote and rollback."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from typing import Any

import orjson
import pytest
from river import datasets

from models.champion import ModelGroup
from models.registry import (
    InMemoryRegistryStore,
    ModelMeta,
    RedisRegistryStore,
    Registry,
    SnapshotError,
    sign_snapshot,
    verify_snapshot,
)
from models.spec import parse_models

KEY = "test-signing-key"


@pytest.fixture
def store() -> InMemoryRegistryStore:
    return InMemoryRegistryStore()


@pytest.fixture
def registry(store: InMemoryRegistryStore) -> Registry:
    return Registry(store, KEY, clock=lambda: 1_700_000_000.0)


def _one_line(err: pytest.ExceptionInfo[SnapshotError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_save_and_load_round_trip_with_metadata(registry: Registry) -> None:
    meta = registry.save(
        "fraud", {"weights": [1.0, 2.0]}, slot="fraud", examples_learned=500, offset=499,
        metrics={"lr": {"accuracy": 0.9, "roc_auc": float("nan")}}, champion="lr",
    )
    assert (meta.name, meta.version, meta.parent) == ("fraud", 1, None)
    assert (meta.offset, meta.examples_learned) == (499, 500)
    assert meta.created_ts == 1_700_000_000.0 and meta.role == "group" and meta.champion == "lr"
    assert meta.size_bytes == len(pickle.dumps({"weights": [1.0, 2.0]}, protocol=pickle.HIGHEST_PROTOCOL))
    assert len(meta.sha256) == 64 and len(meta.signature) == 64
    assert meta.metrics == {"lr": {"accuracy": 0.9, "roc_auc": None}}  # NaN is stored as null
    obj, loaded = registry.load("fraud")
    assert obj == {"weights": [1.0, 2.0]}
    assert loaded == meta
    assert meta.ref == "fraud@1"


def test_versions_parent_latest_and_current(registry: Registry) -> None:
    for i in range(3):
        registry.save("m", i, offset=i)
    assert [m.version for m in registry.versions("m")] == [1, 2, 3]
    assert [m.parent for m in registry.versions("m")] == [None, 1, 2]
    assert registry.latest("m").version == registry.current("m").version == 3  # type: ignore[union-attr]
    # Not made current: a candidate; its parent is still the current version.
    candidate = registry.save("m", "candidate", make_current=False)
    assert candidate.parent == 3 and registry.current("m").version == 3  # type: ignore[union-attr]
    assert registry.latest("m").version == 4  # type: ignore[union-attr]
    assert registry.set_current("m", 4).version == 4
    assert registry.load("m")[0] == "candidate"
    assert registry.load("m", 2)[0] == 1
    assert registry.names() == ["m"]
    assert registry.latest("other") is None and registry.current("other") is None


def test_tampered_blob_is_refused_before_unpickling(
    registry: Registry, store: InMemoryRegistryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.save("m", [1, 2, 3])

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("unpickled the attacker's blob",))

    store.put("m", 1, pickle.dumps(Evil()), store.get_meta("m", 1) or {})
    with pytest.raises(SnapshotError) as err:
        registry.load("m")
    assert "m@1 is tampered" in _one_line(err)
    assert capsys.readouterr().out == ""


def test_tampered_metadata_is_refused(registry: Registry, store: InMemoryRegistryStore) -> None:
    registry.save("m", [1, 2, 3], offset=10)
    meta = store.get_meta("m", 1) or {}
    meta["offset"] = "5"  # would make the learner learn examples 6..10 twice
    store.put("m", 1, store.get_blob("m", 1) or b"", meta)
    with pytest.raises(SnapshotError) as err:
        registry.load("m")
    assert "bad signature" in _one_line(err)
    with pytest.raises(SnapshotError):
        registry.versions("m")


def test_metadata_moved_to_another_version_is_refused(
    registry: Registry, store: InMemoryRegistryStore
) -> None:
    registry.save("m", "one")
    registry.save("m", "two")
    store.put("m", 2, store.get_blob("m", 1) or b"", store.get_meta("m", 1) or {})
    with pytest.raises(SnapshotError, match="its metadata says m@1"):
        registry.load("m", 2)


def test_unsigned_snapshot_is_refused(registry: Registry, store: InMemoryRegistryStore) -> None:
    blob = pickle.dumps("not from freshet")
    meta = ModelMeta(name="m", version=1)
    store.put("m", 1, blob, {k: orjson.dumps(v).decode() for k, v in meta.to_dict().items()})
    with pytest.raises(SnapshotError) as err:
        registry.load("m")
    assert "m@1 is unsigned" in _one_line(err)


def test_snapshot_signed_with_another_key_is_refused(store: InMemoryRegistryStore) -> None:
    Registry(store, "another key").save("m", 1)
    with pytest.raises(SnapshotError) as err:
        Registry(store, KEY).load("m")
    assert "FRESHET_SIGNING_KEY" in _one_line(err)


def test_unknown_versions_and_names(registry: Registry) -> None:
    with pytest.raises(SnapshotError) as err:
        registry.load("m")
    assert "no snapshots of model 'm'" in _one_line(err)
    registry.save("m", 1)
    with pytest.raises(SnapshotError) as err:
        registry.load("m", 7)
    assert _one_line(err) == "no snapshot m@7; known versions of 'm': [1]"
    with pytest.raises(SnapshotError):
        registry.set_current("m", 7)
    with pytest.raises(SnapshotError):
        registry.save("bad@name", 1)


def test_empty_signing_key_is_refused(store: InMemoryRegistryStore) -> None:
    with pytest.raises(SnapshotError, match="FRESHET_SIGNING_KEY"):
        Registry(store, "")


def test_sign_and_verify_cover_every_metadata_field() -> None:
    meta = sign_snapshot(b"blob", ModelMeta(name="m", version=3, offset=41, metrics={"a": 1.0}), KEY)
    verify_snapshot(b"blob", meta, KEY)
    changes: list[dict[str, Any]] = [
        {"offset": 40}, {"parent": 2}, {"examples_learned": 1}, {"champion": "x"}, {"metrics": {"a": 2.0}},
        {"created_ts": 1.0}, {"role": "champion"}, {"name": "n"}, {"version": 4}, {"size_bytes": 5},
    ]
    for change in changes:
        with pytest.raises(SnapshotError, match="bad signature"):
            verify_snapshot(b"blob", dataclasses.replace(meta, **change), KEY)
    with pytest.raises(SnapshotError, match="tampered"):
        verify_snapshot(b"blob!", meta, KEY)


def _group_after(n: int, group: ModelGroup | None = None, start: int = 0) -> ModelGroup:
    [slot] = parse_models(
        [{"champion": {"name": "lr", "factory": "logistic_regression"},
          "challengers": [{"name": "hat", "factory": "hoeffding_adaptive_tree"}]}]
    )
    group = group or ModelGroup(slot)
    for x, y in itertools.islice(datasets.Phishing(), start, start + n):
        group.score_and_learn(x, y)
    return group


PROBES = [x for x, _ in itertools.islice(datasets.Phishing(), 1000, 1250)]


def _answers(group: ModelGroup) -> list:
    return [(group.predict(x), group.predict(x, "hat")) for x in PROBES]


def test_rollback_restores_the_previous_versions_predictions_exactly(registry: Registry) -> None:
    group = _group_after(300)
    v1 = registry.save("default", group.state(), offset=299, examples_learned=300)
    v1_answers = _answers(group)
    _group_after(300, group, start=300)
    v2 = registry.save("default", group.state(), offset=599, examples_learned=600)
    v2_answers = _answers(group)
    assert v2.parent == v1.version and v1_answers != v2_answers

    rolled = registry.rollback("default")
    assert rolled == v1
    assert registry.current("default") == v1
    state, meta = registry.load("default")
    assert meta == v1
    assert _answers(ModelGroup.from_state(state)) == v1_answers
    # Promote it back.
    registry.set_current("default", v2.version)
    assert _answers(ModelGroup.from_state(registry.load("default")[0])) == v2_answers


def test_rollback_follows_the_lineage_and_stops_at_the_first_version(registry: Registry) -> None:
    registry.save("m", "a")
    registry.save("m", "b")
    registry.save("m", "c", parent=1)  # c was built on a, not b
    assert registry.rollback("m").version == 1
    with pytest.raises(SnapshotError) as err:
        registry.rollback("m")
    assert "m@1 has no parent" in _one_line(err)
    with pytest.raises(SnapshotError, match="nothing to roll back"):
        registry.rollback("other")


def test_rollback_without_parent_goes_to_the_previous_version(registry: Registry) -> None:
    registry.save("m", "a")
    registry.save("m", "b", parent=None)
    assert registry.rollback("m").version == 1


def test_prune_keeps_the_newest_and_the_current(registry: Registry) -> None:
    for i in range(5):
        registry.save("m", i)
    registry.set_current("m", 2)
    assert registry.prune("m", keep=2) == [1, 3]
    assert [m.version for m in registry.versions("m")] == [2, 4, 5]
    assert registry.load("m")[0] == 1


def test_redis_store_needs_a_bytes_client() -> None:
    import redis

    client = redis.Redis(port=1, decode_responses=True)  # never connects
    with pytest.raises(SnapshotError, match="decode_responses=False"):
        RedisRegistryStore(client)
