"""Serving a routed slot (issue 10): the plan's arm for each event, and the canary's latency guard.

The learner decides the plan (:mod:`models.router`) and publishes it with the arms' models as the slot's
champion record (an :class:`models.router.ArmsBundle`); the worker applies it: :meth:`RoutedSlot.choose`
hashes the event's entity (split, canary) or id (bandit) into the plan's shares
(:func:`models.routing.route`). Each arm's prediction time is measured (an exponential moving average);
during a canary with ``max_latency_ms`` or ``latency_ratio`` set, a candidate slower than that (over at
least ``LATENCY_MIN`` predictions) is rolled back *by this worker at once*: the baseline serves everything
until the experiment changes, and a ``kind: "canary"``, ``decision: "rollback"``, ``reason: "latency"``
message goes to ``drift``. (The learner does not hear of it: its canary goes on counting outcomes, of
which this worker sends no more for the candidate.)

>>> from models.routing import RoutingConfig, RoutingPlan
>>> plan = RoutingPlan("s", "exp", "canary", {"new": 0.5, "old": 0.5}, "entity", 3, "canary")
>>> r = RoutedSlot({"new": "M1", "old": "M0"}, plan, 7, RoutingConfig(kind="canary", max_latency_ms=1.0), "old")
>>> arm = r.choose("u1", "e1"); arm in ("new", "old"), r.label(arm)[-2:]
(True, '@7')
>>> for _ in range(LATENCY_MIN - 1):
...     _ = r.observe_latency("new", 0.005)  # 5 ms a prediction
>>> r.observe_latency("new", 0.005)["reason"], r.choose("u1", "e1"), r.plan.route
('latency', 'old', 'rollback')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from models.routing import RoutingConfig, RoutingPlan, route

__all__ = ["LATENCY_MIN", "RoutedSlot"]

LATENCY_MIN = 50  # predictions of an arm before its latency guard can fire
_EWMA = 0.05


@dataclass
class RoutedSlot:
    models: dict[str, Any]
    plan: RoutingPlan
    version: int
    cfg: RoutingConfig
    champion: str
    latency_s: dict[str, float] = field(default_factory=dict)  # EWMA of one prediction's time per arm
    predictions: dict[str, int] = field(default_factory=dict)
    rolled_back: str | None = None  # experiment this worker rolled back for latency

    def choose(self, entity: str, event_id: str) -> str:
        arm = route(self.plan, entity, event_id)
        return arm if arm in self.models else self.champion

    def label(self, arm: str) -> str:
        return f"{arm}@{self.version}"

    def adopt(self, models: dict[str, Any], plan: RoutingPlan, version: int, champion: str) -> RoutedSlot:
        """A new record: its models and plan, keeping this worker's latency measurements and rollback."""
        out = RoutedSlot(models, plan, version, self.cfg, champion, self.latency_s, self.predictions, self.rolled_back)
        if self.rolled_back is not None and plan.experiment == self.rolled_back:
            out.plan = self._without_candidate(plan)
        return out

    def observe_latency(self, arm: str, seconds: float) -> dict[str, Any] | None:
        """One prediction's time; a rollback decision when the canary's candidate breaches the guard."""
        n = self.predictions.get(arm, 0) + 1
        self.predictions[arm] = n
        prev = self.latency_s.get(arm)
        self.latency_s[arm] = seconds if prev is None else prev + _EWMA * (seconds - prev)
        plan, cfg = self.plan, self.cfg
        if plan.kind != "canary" or plan.route != "canary" or n < LATENCY_MIN or self.rolled_back == plan.experiment:
            return None
        candidate = plan.arms[0]
        if arm != candidate:
            return None
        mean = self.latency_s[arm]
        base = self.latency_s.get(self.champion)
        too_slow = cfg.max_latency_ms > 0 and mean * 1e3 > cfg.max_latency_ms
        if cfg.latency_ratio > 0 and base is not None and self.predictions.get(self.champion, 0) >= LATENCY_MIN:
            too_slow = too_slow or mean > cfg.latency_ratio * base
        if not too_slow:
            return None
        self.rolled_back = plan.experiment
        self.plan = self._without_candidate(plan)
        limits = [cfg.max_latency_ms] if cfg.max_latency_ms > 0 else []
        if cfg.latency_ratio > 0 and base is not None:
            limits.append(cfg.latency_ratio * base * 1e3)
        # The drift alert layout (detector, level, statistic, value, threshold), so the worker's alert path
        # counts and sends it (freshet_drift_alerts_total{kind="canary",detector="latency_guard"}).
        return {
            "v": 1, "kind": "canary", "decision": "rollback", "reason": "latency", "slot": plan.slot,
            "subject": plan.slot, "detector": "latency_guard", "level": "rollback",
            "statistic": "predict_ms_mean", "value": mean * 1e3, "threshold": min(limits),
            "confidence": None, "experiment": plan.experiment, "plan_version": plan.version,
            "candidate": candidate, "baseline": self.champion, "share": 0.0,
            "baseline_ms": None if base is None else base * 1e3,
            "n_candidate": n, "n_baseline": self.predictions.get(self.champion, 0), "by": "worker",
        }

    def _without_candidate(self, plan: RoutingPlan) -> RoutingPlan:
        return replace(plan, shares={self.champion: 1.0}, route="rollback")
