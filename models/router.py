"""The routing decisions of one slot, made by its learner from the served outcomes (issue 10). Pure: no I/O.

A :class:`SlotRouter` lives in the slot's :class:`models.champion.ModelGroup` (so it is snapshotted with
it and a restarted learner resumes its experiments). For each joined example it reads which arm served
the prediction (the name in ``served_model``, ``"arm@version"``) and whether it was right, and:

- scores it per arm (``accuracy``, ``log_loss``: the served metrics per arm of the experiment);
- ``bandit``: updates the arm's posterior; every ``update_every`` outcomes, new shares (a new plan);
- ``canary``: feeds the :class:`models.canary.Canary` guard; a step, a rollback or a promotion changes the
  plan;
- returns the decisions (with statistic, confidence and sample sizes) for the learner to announce.

What the worker needs to serve a routed slot is an :class:`ArmsBundle` (the arms' models and the plan),
published as the slot's champion record; :func:`serving_model` gives it for a group.

>>> from models.routing import parse_routing
>>> cfg = parse_routing({"kind": "bandit", "arms": ["a", "b"], "update_every": 10}, "s", ["a", "b"])
>>> r = SlotRouter(cfg, "s", "classification", "a")
>>> from models.example import Example
>>> def ex(arm, label, pred): return Example(id="e", entity="u", slot="s", features={}, label=label,
...     event_ts=0.0, label_ts=0.0, served_prediction=pred, served_model=f"{arm}@3")
>>> out = [r.observe(ex("a", True, True), True, "a") for _ in range(10)]
>>> out[-1].decisions[0]["kind"], r.plan.version, r.plan.shares["a"] > 0.5
('bandit', 2, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.bandit import BetaBandit
from models.canary import Canary
from models.evaluation import OnlineScorer, align_proba
from models.example import Example
from models.routing import RoutingConfig, RoutingPlan, initial_plan

__all__ = ["ArmsBundle", "RouterStep", "SlotRouter", "arm_of", "serving_model"]

ARM_METRICS = ("accuracy", "log_loss")


def arm_of(served_model: str | None) -> str | None:
    """The model name in ``"name@version"``.

    >>> arm_of("lr@12"), arm_of(None)
    ('lr', None)
    """
    if not served_model or "@" not in served_model:
        return None
    return served_model.rsplit("@", 1)[0]


@dataclass
class ArmsBundle:
    """What a worker serves for a routed slot: every arm's model and the plan (one pickle, one record)."""

    models: dict[str, Any]
    plan: RoutingPlan
    champion: str


@dataclass
class RouterStep:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    promote: str | None = None  # a canary passed: promote this model (reason canary_passed)
    plan_changed: bool = False


class SlotRouter:
    def __init__(self, cfg: RoutingConfig, slot: str, kind: str, champion: str, rolling_window: int = 1000,
                 positive: Any = None) -> None:
        self.cfg = cfg
        self.slot = slot
        self.kind = kind
        self.rolling_window = rolling_window
        self.positive = positive
        self.plan = initial_plan(cfg, slot, champion)
        self.arm_scorers: dict[tuple[str, str], OnlineScorer] = {}
        self.bandit = (
            BetaBandit(cfg.arms, floor=cfg.floor, algorithm=cfg.algorithm, seed=cfg.seed)
            if cfg.kind == "bandit" else None
        )
        self.since_update = 0
        self.canary: Canary | None = None
        self.canaries = 0  # canaries started (experiment ids "<slot>-canary-<n>")
        self.rolled_back: set[str] = set()
        self.pending_start = cfg.kind == "canary" and cfg.candidate is not None
        self.plan_dirty = True  # the first record carries the plan

    # -- what the worker serves ---------------------------------------------------------------

    @property
    def gates_promotion(self) -> bool:
        """Promotions go through a canary first."""
        return self.cfg.kind == "canary"

    def arms(self, champion: str) -> list[str]:
        """The models the worker needs: those with a share, and the champion (its fallback)."""
        names = [a for a, s in self.plan.shares.items() if s > 0]
        return names if champion in names else [*names, champion]

    # -- decisions ------------------------------------------------------------------------------

    def propose(self, candidate: str, baseline: str, why: str = "promotion_test") -> RouterStep:
        """The promotion test (or an operator, ``why="operator_promote"``) picked ``candidate``: canary it
        (unless one runs, or it was rolled back)."""
        step = RouterStep()
        if self.canary is not None and self.canary.state == "running":
            return step
        if candidate in self.rolled_back or candidate == baseline:
            return step
        self._start(candidate, baseline, step, why)
        return step

    def _start(self, candidate: str, baseline: str, step: RouterStep, why: str) -> None:
        cfg = self.cfg
        self.canaries += 1
        self.canary = Canary(
            candidate, baseline, steps=cfg.steps, step_examples=cfg.step_examples, confidence=cfg.confidence,
            min_examples=cfg.min_examples, max_error_rate=cfg.max_error_rate,
        )
        experiment = f"{cfg.experiment or self.slot + '-canary'}-{self.canaries}"
        share = self.canary.share
        self.plan = RoutingPlan(self.slot, experiment, "canary", {candidate: share, baseline: 1.0 - share},
                                "entity", self.plan.version + 1, "canary")
        step.plan_changed = self.plan_dirty = True
        step.decisions.append(self._message("canary", {**self.canary.decision("start", why, 0.0)}))

    def observe(self, example: Example, y: Any, champion: str) -> RouterStep:
        """One joined example (label ``y`` checked by the learner); ``champion`` is the slot's champion now."""
        step = RouterStep()
        if self.pending_start and self.cfg.candidate is not None:
            self.pending_start = False
            self._start(self.cfg.candidate, champion, step, "declared")
        arm = arm_of(example.served_model)
        if arm is None:
            return step
        correct: bool | None = None if example.served_prediction is None else bool(example.served_prediction == y)
        self._score(arm, example, y)
        if self.bandit is not None and correct is not None:
            self.bandit.update(arm, correct)
            self.since_update += 1
            if self.since_update >= self.cfg.update_every:
                self.since_update = 0
                self.plan = self.plan.next(self.bandit.shares(), "bandit")
                step.plan_changed = self.plan_dirty = True
                step.decisions.append(self._message("bandit", {
                    "decision": "shares", "shares": dict(self.plan.shares), "posteriors": self.bandit.summary(),
                    "algorithm": self.bandit.algorithm, "floor": self.bandit.floor,
                }))
        canary = self.canary
        if canary is not None and canary.state == "running":
            decision = canary.observe(arm, correct)
            if decision is not None:
                self._apply_canary(decision, step)
        return step

    def breach(self, reason: str, statistic: float) -> RouterStep:
        """A guard the worker checks (latency) was breached: roll the running canary back."""
        step = RouterStep()
        if self.canary is not None:
            decision = self.canary.breach(reason, statistic)
            if decision is not None:
                self._apply_canary(decision, step)
        return step

    def _apply_canary(self, decision: dict[str, Any], step: RouterStep) -> None:
        canary = self.canary
        assert canary is not None
        what = decision["decision"]
        if what == "step":
            share = canary.share
            self.plan = self.plan.next({canary.candidate: share, canary.baseline: 1.0 - share}, "canary")
        elif what == "rollback":
            self.rolled_back.add(canary.candidate)
            self.plan = self.plan.next({canary.baseline: 1.0}, "rollback")
        elif what == "promote":
            self.plan = self.plan.next({canary.candidate: 1.0}, "promoted")
            step.promote = canary.candidate
        step.plan_changed = self.plan_dirty = True
        decision["share"] = canary.share
        step.decisions.append(self._message("canary", decision))

    def _message(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"v": 1, "kind": kind, "slot": self.slot, "subject": self.slot, "experiment": self.plan.experiment,
                "plan_version": self.plan.version, **body}

    def _score(self, arm: str, example: Example, y: Any) -> None:
        key = (self.plan.experiment, arm)
        scorer = self.arm_scorers.get(key)
        if scorer is None:
            scorer = self.arm_scorers[key] = OnlineScorer(self.kind, self.rolling_window, self.positive,
                                                          only=ARM_METRICS)
        proba = example.served_probabilities or None
        scorer.update(y, example.served_prediction, align_proba(proba, y) if proba else None)

    def arm_metrics(self) -> list[tuple[str, str, dict[str, float]]]:
        """``[(experiment, arm, snapshot)]`` of every arm scored (served metrics per arm per experiment)."""
        return [(exp, arm, s.snapshot()) for (exp, arm), s in self.arm_scorers.items()]


def serving_model(group: Any) -> Any:
    """What the worker serves for a group: the champion, or for a routed slot an :class:`ArmsBundle`."""
    router: SlotRouter | None = getattr(group, "router", None)
    if router is None:
        return group.model()
    arms = router.arms(group.champion)
    return ArmsBundle({a: group.model(a) for a in arms if a in group.names}, router.plan, group.champion)
