"""The model registry on a real Redis server: layout, verification, rollback, and a learner's crash."""

from __future__ import annotations

import itertools

import pytest
import redis
from river import datasets

from models.champion import ModelGroup
from models.learner import Learner
from models.registry import RedisRegistryStore, Registry, SnapshotError
from models.spec import parse_models
from streams.records import Example

pytestmark = pytest.mark.integration

KEY = "integration-signing-key"
SLOT = parse_models(None, "classification")[0]
EXAMPLES = [
    Example(id=f"e{i}", entity="u", slot="default", features=x, label=y, event_ts=float(i), label_ts=float(i))
    for i, (x, y) in enumerate(itertools.islice(datasets.Phishing(), 400))
]
PROBES = [x for x, _ in itertools.islice(datasets.Phishing(), 1000, 1100)]


@pytest.fixture
def registry(redis_client: redis.Redis) -> Registry:
    return Registry(RedisRegistryStore(redis_client, prefix="t"), KEY)


def test_layout_in_redis(registry: Registry, redis_client: redis.Redis) -> None:
    meta = registry.save("fraud", {"w": 1}, offset=9, examples_learned=10, metrics={"lr": {"n": 10.0}})
    registry.save("fraud", {"w": 2}, offset=19, examples_learned=20)
    assert redis_client.get("t:model:fraud:seq") == b"2"
    assert redis_client.zrange("t:model:fraud:versions", 0, -1) == [b"1", b"2"]
    assert redis_client.get("t:model:fraud:current") == b"2"
    assert redis_client.smembers("t:models") == {b"fraud"}
    assert len(redis_client.get("t:model:fraud:v1:blob") or b"") == meta.size_bytes
    fields = redis_client.hgetall("t:model:fraud:v1:meta")
    assert fields[b"offset"] == b"9" and fields[b"sha256"] == f'"{meta.sha256}"'.encode()
    assert registry.load("fraud", 1) == ({"w": 1}, meta)
    assert [m.version for m in registry.versions("fraud")] == [1, 2]


def test_tampering_in_redis_is_refused(registry: Registry, redis_client: redis.Redis) -> None:
    registry.save("m", [1, 2, 3], offset=5)
    registry.save("m", [4, 5, 6], offset=6)
    # The blob replaced by hand.
    redis_client.set("t:model:m:v1:blob", b"\x80\x04K\x01.")
    with pytest.raises(SnapshotError, match="m@1 is tampered"):
        registry.load("m", 1)
    # A metadata field edited by hand.
    redis_client.hset("t:model:m:v2:meta", "offset", "2")
    with pytest.raises(SnapshotError, match="bad signature"):
        registry.load("m")
    # The signature removed.
    redis_client.hdel("t:model:m:v2:meta", "signature")
    with pytest.raises(SnapshotError, match="unsigned"):
        registry.load("m")


def test_rollback_and_prune(registry: Registry, redis_client: redis.Redis) -> None:
    [slot] = parse_models(None, "classification")
    group = ModelGroup(slot)
    for e in EXAMPLES[:200]:
        group.score_and_learn(e.features, e.label)
    registry.save("default", group.state(), offset=199)
    before = [group.predict(x) for x in PROBES]
    for e in EXAMPLES[200:]:
        group.score_and_learn(e.features, e.label)
    registry.save("default", group.state(), offset=399)
    assert registry.rollback("default").version == 1
    assert redis_client.get("t:model:default:current") == b"1"
    restored = ModelGroup.from_state(registry.load("default")[0])
    assert [restored.predict(x) for x in PROBES] == before
    registry.save("default", "v3")  # parent: the current version, 1
    assert registry.latest("default").parent == 1  # type: ignore[union-attr]
    assert registry.prune("default", keep=1) == [1, 2]
    assert not redis_client.exists("t:model:default:v1:blob", "t:model:default:v2:meta")
    assert redis_client.zrange("t:model:default:versions", 0, -1) == [b"3"]
    assert registry.load("default")[0] == "v3"


def test_learner_resumes_exactly_once_from_redis(redis_client: redis.Redis) -> None:
    uninterrupted = Learner.restore(Registry(RedisRegistryStore(redis_client, prefix="a"), KEY), SLOT,
                                    snapshot_every=50)
    for offset, e in enumerate(EXAMPLES):
        uninterrupted.process(e, offset)

    registry = Registry(RedisRegistryStore(redis_client, prefix="b"), KEY)
    learner = Learner.restore(registry, SLOT, snapshot_every=50)
    for offset, e in enumerate(EXAMPLES[:273]):
        learner.process(e, offset)
    # Crash: a new process, a new client, the same Redis.
    client = redis.Redis(
        host=redis_client.connection_pool.connection_kwargs["host"],
        port=redis_client.connection_pool.connection_kwargs["port"],
    )
    try:
        store = RedisRegistryStore(client, prefix="b")
        resumed = Learner.restore(Registry(store, KEY), SLOT, snapshot_every=50)
        assert resumed.next_offset == 250
        for offset in range(resumed.next_offset, len(EXAMPLES)):
            resumed.process(EXAMPLES[offset], offset)
    finally:
        client.close()
    assert [resumed.group.predict(x) for x in PROBES] == [uninterrupted.group.predict(x) for x in PROBES]
    assert resumed.group.metrics() == uninterrupted.group.metrics()
