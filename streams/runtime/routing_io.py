"""The learner's glue for routed slots (issue 10): announce routing decisions, export per-arm metrics.

The decisions themselves are made in :mod:`models.router` (pure); this module only turns them into
messages and Prometheus samples:

- canary decisions (start, step, rollback, promote) go to ``drift`` (key: slot, ``kind: "canary"``), bandit
  shares to ``metrics`` (key ``<slot>/routing``, ``role: "routing"``), each with its statistic, confidence
  and sample sizes; ``freshet_routing_decisions_total`` and ``freshet_canary_rollbacks_total`` count them;
- per-arm served metrics go to ``metrics`` (key ``<slot>/arm/<arm>``, ``role: "arm"``, with the
  experiment) and ``freshet_arm_metric``; the plan's shares to ``freshet_arm_share``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from models.canary_request import candidate_name, take_request
from models.champion import ModelGroup
from models.registry import Registry
from models.router import SlotRouter
from streams.runtime.metrics import Metrics

log = logging.getLogger("freshet.learn")

Send = Callable[[str, str, dict[str, Any]], None]  # (topic, key, value)


def announce_decisions(metrics: Metrics, send: Send, slot: str, decisions: list[dict[str, Any]]) -> None:
    """Each decision to its topic, counted; rollbacks logged as warnings."""
    for d in decisions:
        kind, decision = str(d.get("kind")), str(d.get("decision"))
        metrics.routing_decisions.labels(slot=slot, kind=kind, decision=decision).inc()
        if kind == "bandit":
            send("metrics", f"{slot}/routing", {**d, "model": f"{slot}/routing", "name": "routing", "role": "routing"})
            continue
        if decision == "rollback":
            metrics.canary_rollbacks.labels(slot=slot, reason=str(d.get("reason"))).inc()
            log.warning("slot %s: canary %s rolled back (%s; statistic %s, %s vs %s outcomes)", slot,
                        d.get("candidate"), d.get("reason"), d.get("statistic"), d.get("n_candidate"),
                        d.get("n_baseline"))
        else:
            log.warning("slot %s: canary %s: %s at share %s", slot, d.get("candidate"), decision, d.get("share"))
        send("drift", slot, d)


def publish_arm_metrics(metrics: Metrics, send: Send, router: SlotRouter, base: dict[str, Any]) -> None:
    """Per-arm served metrics (``metrics`` topic, ``freshet_arm_metric``) and the plan's shares."""
    slot = router.slot
    plan = router.plan
    for arm in set(router.cfg.arms) | set(router.cfg.shares) | set(plan.shares):
        metrics.arm_share.labels(slot=slot, arm=arm, experiment=plan.experiment).set(plan.share(arm))
    for experiment, arm, snap in router.arm_metrics():
        for metric, value in snap.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            scope = "served_rolling" if metric.endswith("_rolling") else "served_cumulative"
            metrics.arm_metric.labels(slot=slot, experiment=experiment, arm=arm, metric=metric.removesuffix("_rolling"),
                                      scope=scope).set(value)
        model = f"{slot}/arm/{arm}"
        send("metrics", model, {**base, "model": model, "name": arm, "role": "arm", "experiment": experiment,
                                "share": plan.share(arm) if experiment == plan.experiment else 0.0,
                                "plan_version": plan.version, "metrics": snap})


def count_routed(metrics: Metrics, routed: Mapping[tuple[str, str, str], int]) -> None:
    """The worker's routed predictions of one batch, by (slot, arm, route)."""
    for (slot, arm, why), n in routed.items():
        metrics.routed_predictions.labels(slot=slot, arm=arm, route=why).inc(n)


def export_routing(metrics: Metrics, predictor: Any) -> None:
    """The worker's view of each routed slot: the plan's shares and each arm's mean prediction time."""
    for slot, routed in predictor.routed.items():
        for arm, seconds in routed.latency_s.items():
            metrics.arm_predict_seconds.labels(slot=slot, arm=arm).set(seconds)


def start_requested_canary(
    registry: Registry, group: ModelGroup, seen_ts: float
) -> tuple[float, list[dict[str, Any]]] | None:
    """``freshet models promote`` on a canary slot (models/canary_request.py): the requested version's
    champion joins the group and is canaried. Returns (the request's ts, the decisions) or None."""
    router = group.router
    if router is None or not router.gates_promotion:
        return None
    got = take_request(registry, group.slot, seen_ts)
    if got is None:
        return None
    version, ts = got
    state, _ = registry.load(group.slot, version)  # verified: a tampered version raises SnapshotError
    other = ModelGroup.from_state(state)
    name = candidate_name(other.champion, version)
    if name in router.rolled_back:  # taken again after a restart: rolled back once, not again
        return ts, []
    if name not in group.names:
        group.add_member(name, other.model(), other.defn(other.champion))
    step = router.propose(name, group.champion, why="operator_promote")
    log.warning("slot %s: version %d (%s) goes to canary as %s", group.slot, version, other.champion, name)
    return ts, step.decisions
