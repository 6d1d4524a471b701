"""``freshet models promote SLOT VERSION`` on a canary-routed slot (issue 10): the version goes to canary.

Moving the registry's pointer would make every worker serve the version at once. On a slot whose
``[models.routing] kind = "canary"``, the command instead leaves a *canary request* (the version, and when)
that the slot's learner takes within a second (:func:`take_request`): it loads that version (verified like
any snapshot), adds its champion to the slot as a challenger named ``<champion>~v<VERSION>``, which learns
every example from then on, and canaries it against the champion. Passed, it becomes the champion
(``canary_passed``); rolled back, it is dropped from the slot. Pure but for the registry calls.

>>> from models.registry import InMemoryRegistryStore, Registry
>>> registry = Registry(InMemoryRegistryStore(), "k")
>>> request(registry, "default", 7, now_s=100.0)
>>> take_request(registry, "default", seen_ts=0.0)
(7, 100.0)
>>> take_request(registry, "default", seen_ts=100.0) is None  # taken already
True
"""

from __future__ import annotations

from typing import Any

from models.registry import Registry

__all__ = ["FROM_ELSEWHERE", "candidate_name", "request", "take_request"]

FROM_ELSEWHERE = "~v"  # in a model name: a version an operator promoted, canaried in the slot


def _name(slot: str) -> str:
    return f"{slot}~canary-request"


def request(registry: Registry, slot: str, version: int, now_s: float) -> None:
    """Ask the slot's learner to canary ``version`` (it must exist: checked by the caller's ``meta``)."""
    registry.store.put_record(_name(slot), b"", {"version": str(version), "ts": repr(now_s)})


def take_request(registry: Registry, slot: str, seen_ts: float) -> tuple[int, float] | None:
    """(version, ts) of a request newer than ``seen_ts``, or None."""
    got: Any = registry.store.get_record(_name(slot), with_blob=False)
    if got is None:
        return None
    meta = got[1]
    try:
        version, ts = int(meta["version"]), float(meta["ts"])
    except (KeyError, ValueError):
        return None
    return (version, ts) if ts > seen_ts else None


def candidate_name(champion: str, version: int) -> str:
    """The name the promoted version's champion gets in the slot.

    >>> candidate_name("lr", 12)
    'lr~v12'
    """
    return f"{champion}~v{version}"
