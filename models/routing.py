"""Routing per slot: which model serves each event (issue 10, "test in production"). Pure: no I/O.

The ``[models.routing]`` table of a ``[[models]]`` slot says how traffic is shared among the slot's models
(its champion and challengers, by name). Four kinds:

- ``champion`` (the default): the champion serves everything, challengers learn in the shadow.
- ``split``: fixed shares among named models, by a stable hash of the entity, so one entity always sees
  the same model (an A/B test).
- ``canary``: a candidate (named here, or a challenger the promotion test picked) gets a small share that
  grows in ``steps`` while its guards hold; a breach rolls it back (:mod:`models.canary`).
- ``bandit``: Thompson sampling over the arms' served reward (probability matching: each event goes to an
  arm with the posterior probability that it is the best one), with a ``floor`` share per arm
  (:mod:`models.bandit`).

Every kind is served from a :class:`RoutingPlan` (shares, hash key, experiment id, plan version) that the
learner decides and publishes with the slot's champion record; the worker only applies it (:func:`route`).

The TOML format (every key has a default but the ones a kind needs: ``shares``, ``arms``)::

    [models.routing]
    kind = "split"                     # champion | split | canary | bandit
    experiment = "ab-2026-12"          # id carried by every routed prediction; default "<slot>-<kind>"
    shares = { lr = 0.5, hat = 0.5 }   # split: model name -> share (sum 1)
    arms = ["lr", "hat"]               # bandit: the models it chooses among
    floor = 0.05                       # bandit: minimum share of every arm (exploration)
    update_every = 50                  # bandit: served outcomes between two plans
    candidate = "lr_new"               # canary: roll this model out now (else: what promotion picks)
    steps = [0.05, 0.25, 0.5]          # canary: its shares; after the last one it is promoted
    step_examples = 500                # canary: served outcomes of the candidate at each step
    confidence = 0.99                  # canary guard: breach when worse than the baseline with this confidence
    min_examples = 100                 # canary guard: outcomes of each arm before a breach can be called
    max_error_rate = 0.02              # canary guard: share of the candidate's predictions that failed
    max_latency_ms = 0.0               # canary guard (worker): mean predict time of the candidate; 0: off
    latency_ratio = 0.0                # canary guard (worker): ... or this many times the baseline's; 0: off

>>> cfg = parse_routing({"kind": "split", "shares": {"lr": 0.7, "hat": 0.3}}, "default", ["lr", "hat"])
>>> plan = initial_plan(cfg, "default", "lr")
>>> plan.shares, plan.key, plan.experiment
({'lr': 0.7, 'hat': 0.3}, 'entity', 'default-split')
>>> route(plan, "u17", "e1") == route(plan, "u17", "e2")  # sticky: the entity decides
True
>>> parse_routing(None, "default", ["lr"]).kind
'champion'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "KINDS",
    "RoutingConfig",
    "RoutingError",
    "RoutingPlan",
    "bucket",
    "initial_plan",
    "parse_routing",
    "route",
]

KINDS = ("champion", "split", "canary", "bandit")


class RoutingError(ValueError):
    """The ``[models.routing]`` table is wrong; the message names the key and what to do."""


@dataclass(frozen=True)
class RoutingConfig:
    """A slot's ``[models.routing]`` (see the module docstring for each key)."""

    kind: str = "champion"
    experiment: str = ""
    shares: dict[str, float] = field(default_factory=dict)
    arms: tuple[str, ...] = ()
    floor: float = 0.05
    update_every: int = 50
    algorithm: str = "thompson"
    candidate: str | None = None
    steps: tuple[float, ...] = (0.05, 0.25, 0.5)
    step_examples: int = 500
    confidence: float = 0.99
    min_examples: int = 100
    max_error_rate: float = 0.02
    max_latency_ms: float = 0.0
    latency_ratio: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class RoutingPlan:
    """What the worker applies: arm shares in order, the hash key, the experiment and the plan's version.

    ``key`` is ``"entity"`` (sticky: split, canary) or ``"event"`` (bandit: every event is a fresh draw).
    ``route`` says why the plan is what it is (``split``, ``canary``, ``bandit``, ``champion``,
    ``rollback``, ``promoted``).
    """

    slot: str
    experiment: str
    kind: str
    shares: dict[str, float]
    key: str = "entity"
    version: int = 1
    route: str = ""

    @property
    def arms(self) -> list[str]:
        return list(self.shares)

    def share(self, arm: str) -> float:
        return self.shares.get(arm, 0.0)

    def next(self, shares: Mapping[str, float], route: str) -> RoutingPlan:
        """The same experiment with new shares (a new plan version)."""
        return replace(self, shares=dict(shares), version=self.version + 1, route=route)

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "experiment": self.experiment, "kind": self.kind, "shares": dict(self.shares),
                "key": self.key, "version": self.version, "route": self.route}


def bucket(experiment: str, key: str) -> float:
    """A stable point in [0, 1) for ``key`` in ``experiment`` (blake2b; the same in every process).

    >>> bucket("x", "u1") == bucket("x", "u1"), 0 <= bucket("x", "u1") < 1, bucket("x", "u1") != bucket("y", "u1")
    (True, True, True)
    """
    digest = hashlib.blake2b(f"{experiment}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def route(plan: RoutingPlan, entity: str, event_id: str) -> str:
    """The arm serving this event: the arm whose cumulative share interval holds the key's bucket.

    Arms are taken in the plan's order, so growing the first arm's share (a canary's candidate comes first)
    keeps every entity it already had.

    >>> plan = RoutingPlan("s", "exp", "canary", {"new": 0.1, "old": 0.9})
    >>> grown = plan.next({"new": 0.5, "old": 0.5}, "canary")
    >>> had = [u for u in map(str, range(1000)) if route(plan, u, "") == "new"]
    >>> all(route(grown, u, "") == "new" for u in had), 60 < len(had) < 140
    (True, True)
    """
    u = bucket(plan.experiment, entity if plan.key == "entity" else event_id)
    last = ""
    acc = 0.0
    for arm, share in plan.shares.items():
        if share <= 0:
            continue
        acc += share
        last = arm
        if u < acc:
            return arm
    return last


def initial_plan(cfg: RoutingConfig, slot: str, champion: str) -> RoutingPlan:
    """The plan before any outcome is known: the split's shares, a bandit's even shares, the champion alone
    (a canary starts when its first outcome arrives, :mod:`models.canary`)."""
    experiment = cfg.experiment or f"{slot}-{cfg.kind}"
    if cfg.kind == "split":
        return RoutingPlan(slot, experiment, "split", dict(cfg.shares), "entity", 1, "split")
    if cfg.kind == "bandit":
        even = 1.0 / len(cfg.arms)
        return RoutingPlan(slot, experiment, "bandit", {a: even for a in cfg.arms}, "event", 1, "bandit")
    return RoutingPlan(slot, experiment, cfg.kind, {champion: 1.0}, "entity", 1, "champion")


def _number(raw: Mapping[str, Any], key: str, default: float, where: str, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RoutingError(f"{where}.{key} = {value!r}: give a number in [{lo}, {hi}]")
    if not lo <= float(value) <= hi:
        raise RoutingError(f"{where}.{key} = {value!r}: give a number in [{lo}, {hi}]")
    return float(value)


def _integer(raw: Mapping[str, Any], key: str, default: int, where: str, lo: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise RoutingError(f"{where}.{key} = {value!r}: give an integer >= {lo}")
    return value


_KNOWN = {
    "kind", "experiment", "shares", "arms", "floor", "update_every", "algorithm", "candidate", "steps",
    "step_examples", "confidence", "min_examples", "max_error_rate", "max_latency_ms", "latency_ratio", "seed",
}


def parse_routing(  # noqa: C901  (one check per key of [models.routing], each with its own message)
    raw: Any, slot: str, models: Sequence[str], kind: str = "classification"
) -> RoutingConfig:
    """Parse a slot's ``[models.routing]`` (None: the champion serves everything).

    ``models`` are the slot's model names (champion first): every arm must be one of them.

    >>> parse_routing({"kind": "split", "shares": {"lr": 0.5, "x": 0.5}}, "s", ["lr", "hat"])
    Traceback (most recent call last):
    ...
    models.routing.RoutingError: [models.routing] of slot 's': shares names 'x', not a model of the slot (['lr', 'hat'])
    >>> parse_routing({"kind": "bandit", "arms": ["lr", "hat"]}, "s", ["lr", "hat"]).floor
    0.05
    """
    where = f"[models.routing] of slot {slot!r}"
    if raw is None:
        return RoutingConfig()
    if not isinstance(raw, Mapping):
        raise RoutingError(f"{where} must be a table with kind = one of {KINDS}")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise RoutingError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_KNOWN)}")
    rkind = raw.get("kind", "champion")
    if rkind not in KINDS:
        raise RoutingError(f"{where}: kind = {rkind!r}; use one of {KINDS}")
    if rkind != "champion" and kind != "classification":
        raise RoutingError(f"{where}: {rkind} routing scores served accuracy; it needs a classification slot")
    experiment = raw.get("experiment", "")
    if not isinstance(experiment, str):
        raise RoutingError(f"{where}.experiment must be text")

    def check_arm(name: Any, key: str) -> str:
        if not isinstance(name, str) or name not in models:
            raise RoutingError(f"{where}: {key} names {name!r}, not a model of the slot ({list(models)})")
        return name

    shares: dict[str, float] = {}
    if rkind == "split":
        got = raw.get("shares")
        if not isinstance(got, Mapping) or len(got) < 2:
            raise RoutingError(f"{where}: a split needs shares = {{model = share, ...}} over two models or more")
        for name in got:
            check_arm(name, "shares")
            shares[name] = _number(got, name, 0.0, f"{where}.shares", 0.0, 1.0)
        if abs(sum(shares.values()) - 1.0) > 1e-6:
            raise RoutingError(f"{where}: shares sum to {sum(shares.values()):.4f}; they must sum to 1")
    arms: tuple[str, ...] = ()
    if rkind == "bandit":
        got_arms = raw.get("arms", list(models))
        if not isinstance(got_arms, list) or len(set(got_arms)) < 2:
            raise RoutingError(f"{where}: a bandit needs arms = [two model names or more]")
        arms = tuple(check_arm(a, "arms") for a in got_arms)
    floor = _number(raw, "floor", 0.05, where, 0.0, 1.0)
    if arms and floor * len(arms) > 1.0:
        raise RoutingError(f"{where}: floor {floor} x {len(arms)} arms is more than all the traffic")
    algorithm = raw.get("algorithm", "thompson")
    if algorithm not in ("thompson", "ucb"):
        raise RoutingError(f"{where}.algorithm = {algorithm!r}: use thompson or ucb")
    candidate = raw.get("candidate")
    if candidate is not None:
        check_arm(candidate, "candidate")
        if candidate == models[0]:
            raise RoutingError(f"{where}: candidate {candidate!r} is the champion already")
    steps_raw = raw.get("steps", [0.05, 0.25, 0.5])
    if (not isinstance(steps_raw, list) or not steps_raw
            or any(isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1 for s in steps_raw)
            or sorted(steps_raw) != steps_raw):
        raise RoutingError(f"{where}.steps = {steps_raw!r}: give increasing shares in (0, 1], e.g. [0.05, 0.25, 0.5]")
    return RoutingConfig(
        kind=rkind,
        experiment=experiment,
        shares=shares,
        arms=arms,
        floor=floor,
        update_every=_integer(raw, "update_every", 50, where, 1),
        algorithm=algorithm,
        candidate=candidate,
        steps=tuple(float(s) for s in steps_raw),
        step_examples=_integer(raw, "step_examples", 500, where, 1),
        confidence=_number(raw, "confidence", 0.99, where, 0.5, 0.999999),
        min_examples=_integer(raw, "min_examples", 100, where, 1),
        max_error_rate=_number(raw, "max_error_rate", 0.02, where, 0.0, 1.0),
        max_latency_ms=_number(raw, "max_latency_ms", 0.0, where, 0.0, 1e6),
        latency_ratio=_number(raw, "latency_ratio", 0.0, where, 0.0, 1e6),
        seed=_integer(raw, "seed", 0, where, 0),
    )
