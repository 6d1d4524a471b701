"""Riding out an outage of an auxiliary server: a backoff, and an online store that holds rows for later.

Redis is auxiliary to serving and learning (the online store, the registry): when it is down the worker
keeps predicting and the learner keeps learning. This module holds the two pieces both use:

* :class:`Backoff` — when to try a server again after a failure (doubling from ``first_s`` to ``max_s``),
  and whether it is up (``freshet_store_up{store=...}``);
* :class:`HoldingStore` — the online store's writes through a backoff: rows that could not be written are
  held (each entity's newest only, at most ``max_entities``; beyond that the oldest are dropped and
  counted) and written when the store answers again, so the store catches up after an outage.

>>> now = [0.0]
>>> b = Backoff(first_s=1.0, max_s=4.0, clock=lambda: now[0])
>>> b.ready(), b.failed(), b.ready(), b.up
(True, 1.0, False, False)
>>> now[0] = 1.0; b.ready(), b.failed(), b.failed()   # doubling, capped
(True, 2.0, 4.0)
>>> b.succeeded(); b.up, b.ready()
(True, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.runtime.store import FeatureRow, OnlineStore, StoreError


def unreachable(exc: BaseException) -> bool:
    """A connection problem (socket errors, redis-py's and Kafka's ConnectionError/TimeoutError), not bad data.

    >>> unreachable(ConnectionRefusedError()), unreachable(ValueError("bad pickle"))
    (True, False)
    """
    names = ("ConnectionError", "TimeoutError", "BusyLoadingError", "NoBrokersAvailable")
    return isinstance(exc, OSError | ConnectionError | TimeoutError) or type(exc).__name__.endswith(names)


class Backoff:
    """Exponential backoff between tries of one server; ``on_change(up)`` is called when up/down flips."""

    def __init__(
        self,
        first_s: float = 0.5,
        max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.first_s, self.max_s, self.clock = first_s, max_s, clock
        self.on_change = on_change
        self.up = True
        self.delay_s = 0.0
        self.next_try = -float("inf")
        self.failures = 0
        self.down_since: float | None = None

    def ready(self) -> bool:
        """Whether it is time to try (always while up)."""
        return self.clock() >= self.next_try

    def failed(self) -> float:
        """A try failed: the next one waits longer (returned, seconds)."""
        self.failures += 1
        self.delay_s = self.first_s if self.delay_s == 0 else min(self.max_s, self.delay_s * 2)
        self.next_try = self.clock() + self.delay_s
        if self.up:
            self.up = False
            self.down_since = self.clock()
            if self.on_change is not None:
                self.on_change(False)
        return self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0
        self.next_try = -float("inf")
        if not self.up:
            self.up = True
            self.down_since = None
            if self.on_change is not None:
                self.on_change(True)


class StoreHeld(StoreError):
    """The online store is in backoff after a failure: the rows are held for the next try (not an error)."""


class HoldingStore:
    """An :class:`~streams.runtime.store.OnlineStore` whose writes survive an outage (see the module).

    ``write_many`` raises :class:`StoreError` when the store failed now (rows held), :class:`StoreHeld`
    while it waits to try again (rows held), and returns what was written once it answers. Reads pass
    through (the worker's attribute cache serves what it has when they fail).

    >>> from streams.runtime.testing import InMemoryOnlineStore
    >>> class Flaky(InMemoryOnlineStore):
    ...     down = True
    ...     def write_many(self, rows):
    ...         if self.down: raise ConnectionRefusedError("redis down")
    ...         return super().write_many(rows)
    >>> now = [0.0]
    >>> inner = Flaky()
    >>> store = HoldingStore(inner, max_entities=2, backoff=Backoff(clock=lambda: now[0]))
    >>> store.write_many([("u1", {"f": 1.0}, 1.0)])
    Traceback (most recent call last):
    ...
    streams.runtime.store.StoreError: online store write failed (1 entities held for retry): redis down
    >>> store.write_many([("u1", {"f": 2.0}, 2.0), ("u2", {"f": 1.0}, 2.0), ("u3", {"f": 1.0}, 3.0)])
    Traceback (most recent call last):
    ...
    streams.runtime.outage.StoreHeld: online store down: 2 entities held for retry in 0.5 s
    >>> store.dropped, store.pending   # u1 was the oldest beyond max_entities
    (1, 2)
    >>> inner.down = False; now[0] = 1.0
    >>> store.write_many([]), store.pending, inner.get("u3")["f"]
    (2, 0, 1.0)
    """

    def __init__(
        self,
        inner: OnlineStore,
        max_entities: int = 100_000,
        backoff: Backoff | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.max_entities = max(1, int(max_entities))
        self.backoff = backoff or Backoff()
        self.on_dropped = on_dropped
        self._held: dict[str, FeatureRow] = {}  # insertion order = age
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._held)

    def write_many(self, rows: Iterable[FeatureRow]) -> int:
        held = self._held
        for row in rows:
            kept = held.get(row[0])
            if kept is None or row[2] >= kept[2]:
                held.pop(row[0], None)
                held[row[0]] = row
        over = len(held) - self.max_entities
        if over > 0:
            for entity in list(held)[:over]:
                del held[entity]
            self.dropped += over
            if self.on_dropped is not None:
                self.on_dropped(over)
        if not held:
            return 0
        if not self.backoff.ready():
            raise StoreHeld(
                f"online store down: {len(held)} entities held for retry in {self.backoff.delay_s:g} s"
            )
        batch = list(held.values())
        try:
            written = self.inner.write_many(batch)
        except Exception as exc:
            self.backoff.failed()
            cause = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ is not None else exc
            raise StoreError(f"online store write failed ({len(held)} entities held for retry): {cause}") from exc
        for entity, _values, as_of in batch:
            if (now := held.get(entity)) is not None and now[2] == as_of:
                del held[entity]
        self.backoff.succeeded()
        return written

    def get(self, entity: str) -> dict[str, float | None] | None:
        return self.inner.get(entity)

    def get_many(self, entities: Iterable[str]) -> dict[str, dict[str, float | None] | None]:
        return self.inner.get_many(entities)

    def attributes(self, entity: str) -> dict[str, float | str]:
        return self.inner.attributes(entity)

    def set_attributes(self, entity: str, attributes: Mapping[str, float | str]) -> None:
        self.inner.set_attributes(entity, attributes)


def store_gauge(metrics: Any, store: str) -> Callable[[bool], None]:
    """``freshet_store_up{store=...}`` set to 1 now, and a setter for :class:`Backoff`'s ``on_change``."""
    child = metrics.store_up.labels(store=store)
    child.set(1)

    def set_up(up: bool) -> None:
        child.set(1 if up else 0)

    return set_up


def holding_store(inner: OnlineStore, metrics: Any, max_entities: int = 100_000) -> HoldingStore:
    """The worker's online store: ``inner`` behind a :class:`HoldingStore` that reports on ``metrics``
    (``freshet_store_up{store="online"}``, ``freshet_online_store_dropped_rows_total``)."""
    return HoldingStore(
        inner,
        max_entities=max_entities,
        backoff=Backoff(on_change=store_gauge(metrics, "online")),
        on_dropped=metrics.store_dropped.inc,
    )
