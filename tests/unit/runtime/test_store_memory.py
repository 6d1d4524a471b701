"""The online store's API, on the in-memory double (the Redis one runs in tests/integration)."""

from __future__ import annotations

import pytest

from streams.runtime.store import AS_OF, decode_value, encode_value
from streams.runtime.testing import FixedClock, InMemoryOnlineStore


def test_write_get_and_freshness() -> None:
    store = InMemoryOnlineStore(ttl_s=10, clock=FixedClock(0.0))
    assert store.write_many([("a", {"f": 1.5, "g": None}, 100.0), ("b", {"f": 2.0}, 50.0)]) == 2
    assert store.get("a") == {"f": 1.5, "g": None, AS_OF: 100.0}
    assert store.write_many([("a", {"f": 0.0}, 99.0)]) == 0  # older than what is stored
    assert store.write_many([("a", {"f": 3.0}, 100.0)]) == 1  # same time: later write wins, whole vector
    assert store.get_many(["a", "b", "c"]) == {"a": {"f": 3.0, AS_OF: 100.0}, "b": {"f": 2.0, AS_OF: 50.0}, "c": None}


def test_ttl_on_the_injected_clock() -> None:
    clock = FixedClock(1000.0)
    store = InMemoryOnlineStore(ttl_s=5, clock=clock)
    store.write_many([("a", {"f": 1.0}, 1.0)])
    clock.advance(4.9)
    assert store.get("a") is not None
    clock.advance(0.1)
    assert store.get("a") is None
    # An expired vector no longer blocks an older as-of time.
    assert store.write_many([("a", {"f": 2.0}, 0.5)]) == 1
    forever = InMemoryOnlineStore(ttl_s=None, clock=clock)
    forever.write_many([("a", {"f": 1.0}, 1.0)])
    clock.advance(1e9)
    assert forever.get("a") is not None


def test_values_are_stored_as_text_exactly() -> None:
    for v in (0.1, -0.0, 1e-300, 123456789.123456789, 2.0**60):
        assert decode_value(encode_value(v)) == v
    assert encode_value(float("inf")) == "" and decode_value("") is None and decode_value(b"2.5") == 2.5
    store = InMemoryOnlineStore(clock=FixedClock())
    store.write_many([("a", {"f": float("nan")}, 1.0)])
    assert store.get("a") == {"f": None, AS_OF: 1.0}


def test_attributes() -> None:
    store = InMemoryOnlineStore(clock=FixedClock())
    assert store.attributes("a") == {}
    store.set_attributes("a", {"age_days": 3, "country": "NL"})
    store.set_attributes("a", {"score": "0.5"})
    assert store.attributes("a") == {"age_days": 3.0, "country": "NL", "score": 0.5}


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "60", True])
def test_bad_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        InMemoryOnlineStore(ttl_s=ttl)  # type: ignore[arg-type]
