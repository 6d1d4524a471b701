"""Champion and challengers: one slot's models, scored test-then-train on the same examples.

The champion serves predictions; challengers learn every example in shadow and are scored exactly like
it. Each example is first scored by every model (before any of them learns it), then learned by all
(DESIGN.md decision 3: one ordered learner per slot). A :class:`PromotionPolicy` swaps the champion for a
challenger that beats it over a recent window by a margin, once the challenger has been scored on a
minimum number of examples; the decision is logged and returned as a :class:`PromotionEvent`.

The whole group (models, scorers, windows, counts) snapshots as one picklable dict
(:meth:`ModelGroup.state`) for the registry.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from river import base

from models.evaluation import OnlineScorer, WindowedMetric, higher_is_better
from models.router import SlotRouter
from models.sequential import PairedSPRT
from models.spec import ModelDef, ModelSlotDef, PromotionConfig, build_model

__all__ = ["ModelGroup", "PromotionEvent", "PromotionPolicy", "clean_features"]

_log = logging.getLogger(__name__)

_STATE_FORMAT = 1


def clean_features(x: dict[str, Any]) -> dict[str, Any]:
    """Missing features (None or NaN) are left out, River's convention for "absent".

    >>> clean_features({"a": 1.0, "b": None, "c": float("nan"), "d": "x"})
    {'a': 1.0, 'd': 'x'}
    """
    return {k: v for k, v in x.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


@dataclass(frozen=True)
class PromotionEvent:
    """A challenger replaced the champion of a slot."""

    slot: str
    promoted: str
    demoted: str
    metric: str
    window: int
    margin: float
    challenger_value: float
    champion_value: float
    challenger_examples: int  # examples the promoted model was scored on
    examples_learned: int  # examples the group had learned at the decision
    offset: int | None = None  # filled in by the learner: offset of the last example learned
    reason: str = "challenger_better"
    # The decision's statistics (test "margin" or "sprt": statistic, threshold, confidence, sample sizes).
    test: str = "margin"
    statistics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PromotionPolicy:
    """Promote the best challenger if it beats the champion by ``margin`` over the last ``window`` examples.

    No challenger is considered before it has been scored on ``min_examples`` examples. ``margin`` is
    in the metric's units (accuracy 0.01 = one point); lower is better for log loss, MAE and RMSE.

    >>> policy = PromotionPolicy(metric="accuracy", margin=0.02, min_examples=100, window=50)
    >>> policy.choose("lr", {"lr": 0.80, "hat": 0.83, "arf": 0.81}, {"hat": 120, "arf": 120})
    ('hat', 0.83)
    >>> policy.choose("lr", {"lr": 0.80, "hat": 0.90}, {"hat": 99}) is None  # too few examples
    True
    """

    metric: str = "accuracy"
    margin: float = 0.01
    min_examples: int = 1000
    window: int = 1000

    def __post_init__(self) -> None:
        higher_is_better(self.metric)  # validates the name
        if self.margin < 0 or self.window < 1 or self.min_examples < 0:
            raise ValueError("promotion needs margin >= 0, window >= 1 and min_examples >= 0")

    @classmethod
    def from_config(cls, config: PromotionConfig) -> PromotionPolicy:
        return cls(
            metric=config.metric, margin=config.margin, min_examples=config.min_examples,
            window=config.window,
        )

    def choose(
        self, champion: str, values: dict[str, float], counts: dict[str, int]
    ) -> tuple[str, float] | None:
        """The challenger to promote and its value, or None. ``values`` holds every model's window value."""
        best: tuple[str, float] | None = None
        champ = values.get(champion, math.nan)
        if math.isnan(champ):
            return None
        sign = 1.0 if higher_is_better(self.metric) else -1.0
        for name, value in values.items():
            if name == champion or math.isnan(value) or counts.get(name, 0) < self.min_examples:
                continue
            gain = sign * (value - champ)
            if gain > 0 and gain >= self.margin and (best is None or sign * (value - best[1]) > 0):
                best = (name, value)
        return best


@dataclass
class _Member:
    defn: ModelDef
    model: base.Estimator
    scorer: OnlineScorer
    window: WindowedMetric
    examples_learned: int = 0


class ModelGroup:
    """The champion and challengers of one slot.

    >>> from models.spec import parse_models
    >>> slot = parse_models([{
    ...     "champion": {"name": "lr", "factory": "logistic_regression"},
    ...     "challengers": [{"name": "hat", "factory": "hoeffding_adaptive_tree"}],
    ... }])[0]
    >>> group = ModelGroup(slot)
    >>> group.score_and_learn({"x": 1.0}, True)  # predictions made before learning
    {'lr': False, 'hat': None}
    >>> group.predict({"x": 1.0})[0]
    True
    >>> group.metrics()["lr"]["accuracy"]
    0.0
    >>> restored = ModelGroup.from_state(group.state())
    >>> restored.predict({"x": 2.0}) == group.predict({"x": 2.0})
    True
    """

    def __init__(self, slot_def: ModelSlotDef, rolling_window: int = 1000) -> None:
        self.slot_def = slot_def
        self.slot = slot_def.slot
        self.kind = slot_def.kind
        self.rolling_window = rolling_window
        self.policy = PromotionPolicy.from_config(slot_def.promotion)
        self.champion = slot_def.champion.name
        self.examples_learned = 0
        self.promotions: list[PromotionEvent] = []
        self._members: dict[str, _Member] = {}
        for defn in slot_def.models:
            self._members[defn.name] = self._new_member(defn)
        self.sprt: dict[str, PairedSPRT] = {}  # challenger -> its sequential test against the champion
        self.router = self._new_router()

    def _new_router(self) -> SlotRouter | None:
        routing = getattr(self.slot_def, "routing", None)
        if routing is None or routing.kind == "champion":
            return None
        return SlotRouter(routing, self.slot, self.kind, self.champion, self.rolling_window, self.slot_def.positive)

    def _sprt(self, name: str) -> PairedSPRT:
        test = self.sprt.get(name)
        if test is None:
            p = self.slot_def.promotion
            test = self.sprt[name] = PairedSPRT(alpha=p.alpha, beta=p.beta, effect=p.effect,
                                                min_examples=p.min_examples)
        return test

    def _new_member(self, defn: ModelDef) -> _Member:
        positive = self.slot_def.positive
        return _Member(
            defn=defn,
            model=build_model(defn, self.kind),
            scorer=OnlineScorer(self.kind, self.rolling_window, positive),
            window=WindowedMetric(self.policy.metric, self.kind, self.policy.window, positive),
        )

    # -- views -----------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Champion first, then challengers in the order they were declared."""
        return [self.champion] + [n for n in self._members if n != self.champion]

    @property
    def challengers(self) -> list[str]:
        return [n for n in self._members if n != self.champion]

    def model(self, name: str | None = None) -> base.Estimator:
        """A model by name (default: the champion)."""
        return self._members[name or self.champion].model

    def scorer(self, name: str | None = None) -> OnlineScorer:
        return self._members[name or self.champion].scorer

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{model name: OnlineScorer.snapshot()}`` for every model, with its role and window value."""
        out: dict[str, dict[str, float]] = {}
        for name in self.names:
            member = self._members[name]
            snap = member.scorer.snapshot()
            snap[f"promotion_{self.policy.metric}_window"] = member.window.get()
            snap["champion"] = 1.0 if name == self.champion else 0.0
            out[name] = snap
        return out

    # -- predict, score, learn -----------------------------------------------------------------

    def _predict(self, model: base.Estimator, x: dict[str, Any]) -> tuple[Any, dict[Any, float] | None]:
        if self.kind == "classification":
            proba = model.predict_proba_one(x)  # type: ignore[attr-defined]
            # Same rule as River's Classifier.predict_one (first class wins a tie), computed once.
            y_pred = max(proba, key=proba.get) if proba else None
            return y_pred, proba
        return model.predict_one(x), None  # type: ignore[attr-defined]

    def predict(self, x: dict[str, Any], name: str | None = None) -> tuple[Any, dict[Any, float] | None]:
        """The champion's (or the named model's) prediction and class probabilities (None for regression)."""
        return self._predict(self._members[name or self.champion].model, clean_features(x))

    def score_and_learn(self, x: dict[str, Any], y: Any) -> dict[str, Any]:
        """Test-then-train: every model predicts ``x``, is scored against ``y``, then learns ``(x, y)``.

        Returns each model's prediction (made before it learned the example).
        """
        x = clean_features(x)
        if self.kind == "regression":
            y = float(y)
        predictions: dict[str, Any] = {}
        for name in self.names:
            member = self._members[name]
            y_pred, proba = self._predict(member.model, x)
            member.scorer.update(y, y_pred, proba)
            member.window.update(y, y_pred, proba)
            # A copy each: one model's learn_one must not see another's changes to x.
            member.model.learn_one(dict(x), y)  # type: ignore[attr-defined]
            member.examples_learned += 1
            predictions[name] = y_pred
        self.examples_learned += 1
        if self.slot_def.promotion.test == "sprt" and len(predictions) > 1:
            self._sprt_due = self._update_sprt(predictions, y)
        return predictions

    def _update_sprt(self, predictions: dict[str, Any], y: Any) -> list[str]:
        """Feed each challenger's paired loss against the champion; the challengers the test would promote."""
        def loss(p: Any) -> float:
            if p is None:
                return math.inf
            return abs(float(p) - y) if self.kind == "regression" else float(p != y)

        champ = loss(predictions[self.champion])
        return [
            name for name, p in predictions.items()
            if name != self.champion and self._sprt(name).update(champ, loss(p)) == "promote"
        ]

    # -- promotion -------------------------------------------------------------------------------

    def maybe_promote(self) -> PromotionEvent | None:
        """Apply the promotion policy; on promotion the old champion becomes a challenger."""
        if len(self._members) < 2:
            return None
        values = {n: m.window.get() for n, m in self._members.items()}
        counts = {n: m.window.n for n, m in self._members.items()}
        statistics: dict[str, Any] | None = None
        if self.slot_def.promotion.test == "sprt":
            due = self.__dict__.pop("_sprt_due", None)
            if not due:
                return None
            promoted = max(due, key=lambda n: self.sprt[n].llr)
            value, statistics = values.get(promoted, math.nan), self.sprt[promoted].summary()
        else:
            choice = self.policy.choose(self.champion, values, counts)
            if choice is None:
                return None
            promoted, value = choice
        event = PromotionEvent(
            slot=self.slot, promoted=promoted, demoted=self.champion, metric=self.policy.metric,
            window=self.policy.window, margin=self.policy.margin, challenger_value=value,
            champion_value=values[self.champion], challenger_examples=counts[promoted],
            examples_learned=self.examples_learned, test=self.slot_def.promotion.test, statistics=statistics,
        )
        if self.router is not None and self.router.gates_promotion:
            # A canary first: the router serves it a share and promotes it if its served guards hold.
            self._proposal = self.router.propose(promoted, self.champion)
            if statistics is not None:
                self.sprt.pop(promoted, None)  # a new test if it comes back
            return None
        self._apply(event)
        return event

    def take_proposal(self) -> Any:
        """The router's step from the last promotion the test proposed (a canary start), if any."""
        return self.__dict__.pop("_proposal", None)

    def promote(self, name: str, reason: str = "manual") -> PromotionEvent:
        """Make ``name`` the champion now (an operator's decision), logged and returned like the policy's."""
        if name not in self._members:
            raise KeyError(f"slot {self.slot!r} has no model {name!r}; models: {self.names}")
        values = {n: m.window.get() for n, m in self._members.items()}
        event = PromotionEvent(
            slot=self.slot, promoted=name, demoted=self.champion, metric=self.policy.metric,
            window=self.policy.window, margin=self.policy.margin, challenger_value=values[name],
            champion_value=values[self.champion], challenger_examples=self._members[name].window.n,
            examples_learned=self.examples_learned, reason=reason,
        )
        self._apply(event)
        return event

    def reset_model(self, name: str, model: base.Estimator) -> None:
        """Replace one model (e.g. retrained after a drift); its scores and promotion window go on."""
        if name not in self._members:
            raise KeyError(f"slot {self.slot!r} has no model {name!r}; models: {self.names}")
        self._members[name].model = model
        if name == self.champion:
            self.sprt = {}
        else:
            self.sprt.pop(name, None)  # a new model: a new sequential test

    def add_member(self, name: str, model: base.Estimator, defn: ModelDef) -> None:
        """A model from elsewhere (an operator's promoted version) joins the slot as a challenger: it learns
        every example from now on and is scored like the others (issue 10: canaried before it serves all)."""
        if name in self._members:
            raise KeyError(f"slot {self.slot!r} has a model {name!r} already")
        member = self._new_member(defn)
        member.model = model
        self._members[name] = member

    def defn(self, name: str) -> ModelDef:
        return self._members[name].defn

    def drop_member(self, name: str) -> None:
        """Remove a challenger (a rolled-back canary that came from elsewhere); never the champion."""
        if name != self.champion:
            self._members.pop(name, None)
            self.sprt.pop(name, None)

    def fresh_model(self, name: str) -> base.Estimator:
        """A new, untrained model built by ``name``'s factory."""
        return build_model(self._members[name].defn, self.kind)

    def _apply(self, event: PromotionEvent) -> None:
        self.champion = event.promoted
        self.promotions.append(event)
        self.sprt = {}  # every test was against the old champion
        _log.info(
            "slot %s: promoted %s over %s (%s over the last %d examples: %.4f vs %.4f, margin %.4f; "
            "%d examples scored; reason %s)",
            event.slot, event.promoted, event.demoted, event.metric, event.window, event.challenger_value,
            event.champion_value, event.margin, event.challenger_examples, event.reason,
        )

    # -- snapshots -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume: models, scorers, promotion windows, counts (picklable)."""
        return {
            "format": _STATE_FORMAT,
            "slot_def": self.slot_def,
            "rolling_window": self.rolling_window,
            "champion": self.champion,
            "examples_learned": self.examples_learned,
            "promotions": list(self.promotions),
            "sprt": dict(self.sprt),
            "router": self.router,
            "members": {
                name: {
                    "defn": m.defn, "model": m.model, "scorer": m.scorer, "window": m.window,
                    "examples_learned": m.examples_learned,
                }
                for name, m in self._members.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], slot_def: ModelSlotDef | None = None) -> ModelGroup:
        """Rebuild a group from :meth:`state`.

        With ``slot_def`` (the spec as it is now), models the spec added start fresh, models it dropped
        are dropped (unless one is the champion) and the promotion policy is the spec's.
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError("not a ModelGroup state (format 1); was the snapshot saved by this freshet?")
        saved_def: ModelSlotDef = state["slot_def"]
        group = cls.__new__(cls)
        group.slot_def = slot_def or saved_def
        group.slot = group.slot_def.slot
        group.kind = saved_def.kind
        group.rolling_window = state["rolling_window"]
        group.policy = PromotionPolicy.from_config(group.slot_def.promotion)
        group.champion = state["champion"]
        group.examples_learned = state["examples_learned"]
        group.promotions = list(state["promotions"])
        group._members = {  # noqa: SLF001  (building the instance in its own classmethod)
            name: _Member(
                defn=m["defn"], model=m["model"], scorer=m["scorer"], window=m["window"],
                examples_learned=m["examples_learned"],
            )
            for name, m in state["members"].items()
        }
        group.sprt = dict(state.get("sprt") or {})
        group.router = state.get("router")
        if slot_def is not None:
            group._reconcile(slot_def)  # noqa: SLF001  (its own class)
        if group.router is None or group.router.cfg != getattr(group.slot_def, "routing", None):
            group.router = group._new_router()  # noqa: SLF001  no routing saved, or the spec's routing changed
        return group

    def _reconcile(self, slot_def: ModelSlotDef) -> None:
        if slot_def.kind != self.kind:
            raise ValueError(
                f"slot {self.slot!r} was saved as {self.kind} and the spec now says {slot_def.kind}; "
                "use a new slot name"
            )
        wanted = {d.name: d for d in slot_def.models}
        for name, defn in wanted.items():
            member = self._members.get(name)
            if member is None:
                _log.warning("slot %s: model %s is new in the spec; it starts learning now", self.slot, name)
                self._members[name] = self._new_member(defn)
            elif (member.defn.factory, member.defn.params) != (defn.factory, defn.params):
                _log.warning(
                    "slot %s: model %s was built by %s(%s) and the spec now says %s(%s); keeping the "
                    "learned model (rename it in the spec to start a new one)",
                    self.slot, name, member.defn.factory, member.defn.params, defn.factory, defn.params,
                )
        for name in list(self._members):
            if name not in wanted and name != self.champion and "~v" not in name:  # ~v: models/canary_request.py
                _log.warning("slot %s: model %s is no longer in the spec; dropping it", self.slot, name)
                del self._members[name]
        for member in self._members.values():
            if member.window.metric != self.policy.metric or member.window.window != self.policy.window:
                # The promotion metric or window changed: start the window over.
                member.window = WindowedMetric(
                    self.policy.metric, self.kind, self.policy.window, slot_def.positive
                )
