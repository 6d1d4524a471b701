"""The online store: the latest feature vector per entity, in Redis, for other services to read.

Layout (``prefix`` defaults to ``"freshet:"``; a ``:`` is added when the prefix lacks one):

* ``{prefix}f:{entity}`` — a hash: one field per feature (the float as text, ``""`` for None) plus
  ``_as_of_s``, the event time the vector is fresh as of. Written whole (stale fields of an older spec
  are removed) and only if it is not older than what is there, so an out-of-order event never
  overwrites a fresher vector. Expires ``ttl_s`` after its last write (Redis's clock: the TTL is about
  serving, not event time).
* ``{prefix}a:{entity}`` — a hash of the entity's static attributes (``agg = "attribute"`` features),
  filled by the user (:meth:`RedisOnlineStore.set_attributes` or any Redis client); never expires.

Writes are pipelined (one round trip per ``batch_size`` rows) and each row is applied atomically by a
small Lua script. Reads: :meth:`~RedisOnlineStore.get`, :meth:`~RedisOnlineStore.get_many`.

:class:`streams.runtime.testing.InMemoryOnlineStore` has the same API over a dict, for unit tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from streams.errors import FreshetError

AS_OF = "_as_of_s"
FeatureRow = tuple[str, Mapping[str, float | None], float]

# KEYS[1] = feature hash; ARGV[1] = ttl in ms (0: none), ARGV[2] = as_of, ARGV[3..] = field, value, ...
# Returns 1 if written, 0 if the stored vector is fresher.
_WRITE_LUA = """
local cur = redis.call('HGET', KEYS[1], '_as_of_s')
if cur and tonumber(cur) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_as_of_s', ARGV[2], unpack(ARGV, 3))
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


class OnlineStore(Protocol):
    """What the worker writes to and services read from."""

    def write_many(self, rows: Iterable[FeatureRow]) -> int:
        """Write ``(entity, {feature: value}, as_of_s)`` rows; returns how many were newer and written."""
        ...

    def get(self, entity: str) -> dict[str, float | None] | None:
        """The entity's latest vector with ``_as_of_s``, or None (never written, or expired)."""
        ...

    def get_many(self, entities: Iterable[str]) -> dict[str, dict[str, float | None] | None]: ...

    def attributes(self, entity: str) -> dict[str, float | str]: ...

    def set_attributes(self, entity: str, attributes: Mapping[str, float | str]) -> None: ...


def latest_per_entity(rows: Iterable[tuple[str, dict[str, float | None], float]]) -> list[FeatureRow]:
    """Only each entity's newest row (by event time): the store keeps one vector per entity, so older rows of
    the same flush would be refused by it anyway; this saves their round trips.

    >>> latest_per_entity([("u1", {"f": 1.0}, 10.0), ("u2", {"f": 5.0}, 3.0), ("u1", {"f": 2.0}, 12.0)])
    [('u1', {'f': 2.0}, 12.0), ('u2', {'f': 5.0}, 3.0)]
    """
    latest: dict[str, FeatureRow] = {}
    for row in rows:
        kept = latest.get(row[0])
        if kept is None or row[2] >= kept[2]:
            latest[row[0]] = row
    return list(latest.values())


class StoreError(FreshetError, RuntimeError):
    """The online store cannot be used; the message says what to check."""


def encode_value(value: float | None) -> str:
    """A feature value as stored in the hash: ``repr`` of the float (exact), ``""`` for None/NaN/inf.

    >>> encode_value(0.1), encode_value(None), encode_value(float("nan"))
    ('0.1', '', '')
    """
    if value is None:
        return ""
    f = float(value)
    return repr(f) if math.isfinite(f) else ""


def decode_value(raw: str | bytes) -> float | None:
    """The inverse of :func:`encode_value` (unparseable text gives None)."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def decode_attribute(raw: str | bytes) -> float | str:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        f = float(text)
    except ValueError:
        return text
    return f if math.isfinite(f) else text


def check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0 or math.isinf(ttl_s):
        raise ValueError(f"ttl_s = {ttl_s!r} must be a positive number of seconds (or None: no expiry)")
    return float(ttl_s)


class RedisOnlineStore:
    """The online store in Redis (see the module docstring for the layout).

    ``redis_client`` is a ``redis.Redis``; responses may be decoded or not. ``ttl_s``: seconds a vector
    lives after its last write (None: forever).
    """

    def __init__(
        self, redis_client: Any, ttl_s: float | None = 86400.0, prefix: str = "freshet:", batch_size: int = 500
    ) -> None:
        self.redis = redis_client
        self.ttl_s = check_ttl(ttl_s)
        # "app:features" and "app:features:" both give keys "app:features:f:<entity>".
        self.prefix = prefix if not prefix or prefix.endswith(":") else prefix + ":"
        self.batch_size = max(1, int(batch_size))
        self._write = redis_client.register_script(_WRITE_LUA)

    @classmethod
    def from_settings(cls, settings: Any, ttl_s: float | None = 86400.0, prefix: str = "freshet:") -> RedisOnlineStore:
        """Connect with a :class:`streams.settings.Settings` (host, port, db)."""
        import redis

        client = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
        return cls(client, ttl_s=ttl_s, prefix=prefix)

    def feature_key(self, entity: str) -> str:
        return f"{self.prefix}f:{entity}"

    def attribute_key(self, entity: str) -> str:
        return f"{self.prefix}a:{entity}"

    def write_many(self, rows: Iterable[FeatureRow]) -> int:
        ttl_ms = 0 if self.ttl_s is None else max(1, round(self.ttl_s * 1000))
        written = 0
        pipe = self.redis.pipeline(transaction=False)
        pending = 0
        for entity, values, as_of_s in rows:
            args: list[Any] = [ttl_ms, repr(float(as_of_s))]
            for name, value in values.items():
                args.append(name)
                args.append(encode_value(value))
            self._write(keys=[self.feature_key(entity)], args=args, client=pipe)
            pending += 1
            if pending >= self.batch_size:
                written += self._execute(pipe)
                pending = 0
        if pending:
            written += self._execute(pipe)
        return written

    def _execute(self, pipe: Any) -> int:
        try:
            results = pipe.execute()
        except Exception as exc:  # redis.ConnectionError and friends; keep redis an optional import here
            raise StoreError(f"writing features to Redis failed: {exc}; is Redis running and reachable?") from exc
        return sum(int(r) for r in results)

    def get(self, entity: str) -> dict[str, float | None] | None:
        return self._decode(self.redis.hgetall(self.feature_key(entity)))

    def get_many(self, entities: Iterable[str]) -> dict[str, dict[str, float | None] | None]:
        names = list(entities)
        pipe = self.redis.pipeline(transaction=False)
        for entity in names:
            pipe.hgetall(self.feature_key(entity))
        return {e: self._decode(raw) for e, raw in zip(names, pipe.execute(), strict=True)}

    @staticmethod
    def _decode(raw: Mapping[Any, Any]) -> dict[str, float | None] | None:
        if not raw:
            return None
        out: dict[str, float | None] = {}
        as_of: float | None = None
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else k
            if name == AS_OF:
                as_of = decode_value(v)
            else:
                out[name] = decode_value(v)
        out[AS_OF] = as_of
        return out

    def attributes(self, entity: str) -> dict[str, float | str]:
        raw = self.redis.hgetall(self.attribute_key(entity))
        return {(k.decode() if isinstance(k, bytes) else k): decode_attribute(v) for k, v in raw.items()}

    def set_attributes(self, entity: str, attributes: Mapping[str, float | str]) -> None:
        if attributes:
            self.redis.hset(self.attribute_key(entity), mapping={k: str(v) for k, v in attributes.items()})


