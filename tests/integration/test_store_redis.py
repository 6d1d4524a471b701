"""The Redis online store against a real Redis server (tests/conftest.py starts it)."""

from __future__ import annotations

import pytest
import redis

from streams.features import FeatureEngine, parse_features
from streams.runtime.store import AS_OF, RedisOnlineStore

pytestmark = pytest.mark.integration


def test_write_and_read_back_exact_values(redis_client: redis.Redis) -> None:
    store = RedisOnlineStore(redis_client, ttl_s=60, prefix="t:")
    written = store.write_many(
        [
            ("u1", {"a": 0.1, "b": None, "c": -1e-300, "d": float("nan")}, 1_700_000_000.25),
            ("u2", {"a": 2.0, "b": 3.0}, 1_700_000_001.0),
        ]
    )
    assert written == 2
    assert store.get("u1") == {"a": 0.1, "b": None, "c": -1e-300, "d": None, AS_OF: 1_700_000_000.25}
    assert store.get_many(["u2", "nobody"]) == {"u2": {"a": 2.0, "b": 3.0, AS_OF: 1_700_000_001.0}, "nobody": None}
    assert 0 < redis_client.pttl("t:f:u1") <= 60_000


def test_an_older_vector_never_overwrites_a_fresher_one(redis_client: redis.Redis) -> None:
    store = RedisOnlineStore(redis_client, ttl_s=60, prefix="t:")
    assert store.write_many([("u", {"a": 1.0, "old_feature": 5.0}, 100.0)]) == 1
    assert store.write_many([("u", {"a": 0.0}, 99.5)]) == 0
    assert store.get("u") == {"a": 1.0, "old_feature": 5.0, AS_OF: 100.0}
    # Same time: the later write wins; the whole hash is replaced (no stale fields).
    assert store.write_many([("u", {"a": 2.0}, 100.0)]) == 1
    assert store.get("u") == {"a": 2.0, AS_OF: 100.0}


def test_many_rows_are_pipelined_in_batches(redis_client: redis.Redis) -> None:
    store = RedisOnlineStore(redis_client, ttl_s=None, prefix="t:", batch_size=100)
    rows = [(f"u{i}", {"x": float(i)}, 1000.0 + i) for i in range(1234)]
    assert store.write_many(rows) == 1234
    got = store.get_many([f"u{i}" for i in range(0, 1234, 97)])
    assert all(v is not None and v["x"] == float(i) for i, v in zip(range(0, 1234, 97), got.values(), strict=True))
    assert redis_client.pttl("t:f:u5") == -1  # no TTL


def test_attributes_feed_attribute_features(redis_client: redis.Redis) -> None:
    store = RedisOnlineStore(redis_client, prefix="t:")
    store.set_attributes("u", {"age_days": 12.5, "country": "NL"})
    redis_client.hset("t:a:u", "score", "0.75")  # filled by some other tool
    attrs = store.attributes("u")
    assert attrs == {"age_days": 12.5, "country": "NL", "score": 0.75}
    assert store.attributes("nobody") == {}
    engine = FeatureEngine(
        parse_features(
            [
                {"name": "age_days", "agg": "attribute", "field": "age_days"},
                {"name": "country", "agg": "attribute", "field": "country", "default": -1.0},
                {"name": "n_60s", "agg": "count", "window": {"kind": "sliding", "size_s": 60}},
            ]
        )
    )
    res = engine.update(engine.new_state(), 1_700_000_000.0, {}, attributes=attrs)
    assert res.values == {"age_days": 12.5, "country": -1.0, "n_60s": 1.0}
    store.write_many([("u", res.values, 1_700_000_000.0)])
    assert store.get("u") == {**res.values, AS_OF: 1_700_000_000.0}


def test_decoded_responses_work_too(redis_client: redis.Redis) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0), decode_responses=True)
    try:
        store = RedisOnlineStore(client, ttl_s=5, prefix="t:")
        store.write_many([("u", {"a": 1.5}, 10.0)])
        store.set_attributes("u", {"k": "v"})
        assert store.get("u") == {"a": 1.5, AS_OF: 10.0}
        assert store.attributes("u") == {"k": "v"}
    finally:
        client.close()
