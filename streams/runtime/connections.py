"""Clients for the online store and the model registry, namespaced by the app id (one place for both)."""

from __future__ import annotations

from typing import Any

import redis

from models.registry import RedisRegistryStore, Registry
from streams.runtime.store import RedisOnlineStore
from streams.settings import Settings


def redis_client(settings: Settings) -> redis.Redis:
    """A client that fails fast when Redis is down (callers ride the outage out, streams/runtime/outage.py)
    instead of hanging on a dead socket."""
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=10.0)


def open_registry(settings: Settings, client: Any | None = None) -> Registry:
    """The model registry in Redis (signed snapshots), under ``<app_id>:registry``.

    Refuses the development signing key off loopback (:meth:`Settings.check_signing_key`).
    """
    settings.check_signing_key()
    client = client if client is not None else redis_client(settings)
    return Registry(RedisRegistryStore(client, prefix=f"{settings.app_id}:registry"), settings.signing_key)


def open_store(settings: Settings, client: Any | None = None) -> RedisOnlineStore:
    """The online feature store in Redis, under ``<app_id>:features``."""
    client = client if client is not None else redis_client(settings)
    return RedisOnlineStore(client, ttl_s=settings.store_ttl_s, prefix=f"{settings.app_id}:features")
