"""Drift watch over one model slot, on the learner's stream: concept drift per model, label shift, and the
policy's reaction on the champion. Pure: the learner process publishes what this returns.

Per example (after the group scored it, before or after it learned it: the errors are the
test-then-train ones)::

    (x, y, {model: prediction made before learning}, event time, offset)
      → each model's error → its ConceptDriftMonitor → DriftAlert?
      → y → the slot's label-shift WindowDriftMonitor → DriftAlert?
      → a drift alert on the champion → models.drift.policy.decide → promote / reset_and_retrain / alert

>>> from models.spec import parse_models
>>> from models.champion import ModelGroup
>>> from models.drift.config import DriftConfig
>>> group = ModelGroup(parse_models(None)[0])
>>> sup = SlotDriftSupervisor(group, DriftConfig.from_dict({"concept": {"policy": "reset_and_retrain"}}))
>>> out = sup.on_example({"x": 1.0}, True, {"lr": True}, event_ts=1.0, offset=0)
>>> out.alerts, out.actions
([], [])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from models.champion import ModelGroup, PromotionEvent
from models.drift.alerts import DriftAlert
from models.drift.concept import ConceptDriftMonitor
from models.drift.config import DriftConfig
from models.drift.distribution import WindowDriftMonitor
from models.drift.policy import Action, ExampleBuffer, decide, retrain


@dataclass
class SupervisorOutput:
    alerts: list[DriftAlert] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    promotion: PromotionEvent | None = None  # a "promote" action's promotion (reason "drift")

    @property
    def changed_group(self) -> bool:
        """Whether an action replaced or promoted a model (snapshot and announce a version)."""
        return any(a.kind in ("promote", "reset_and_retrain") for a in self.actions)


def error_of(kind: str, y_true: Any, y_pred: Any) -> float | None:
    """The test-then-train error of one prediction: 0/1 for classes, |y - ŷ| for numbers.

    >>> error_of("classification", True, False), error_of("classification", True, None)
    (1.0, 1.0)
    >>> error_of("regression", 3.0, 2.5), error_of("regression", 3.0, None)
    (0.5, None)
    """
    if kind == "regression":
        if y_pred is None:
            return None
        err = abs(float(y_true) - float(y_pred))
        return err if math.isfinite(err) else None
    return 0.0 if y_pred == y_true else 1.0


class SlotDriftSupervisor:
    """Concept-drift monitors for every model of a group, label shift for the slot, and the policy."""

    def __init__(self, group: ModelGroup, config: DriftConfig) -> None:
        self.group = group
        self.config = config
        self.monitors: dict[str, ConceptDriftMonitor | None] = {}
        self.label_monitor: WindowDriftMonitor | None = config.label_monitor(subject=group.slot)
        sizes = [config.policy_for(self._model(n)).retrain_buffer for n in group.names]
        self.buffer = ExampleBuffer(max(sizes) if sizes else 200)

    def _model(self, name: str) -> str:
        return f"{self.group.slot}/{name}"

    def _monitor(self, name: str) -> ConceptDriftMonitor | None:
        if name not in self.monitors:
            self.monitors[name] = self.config.concept_monitor(self._model(name))
        return self.monitors[name]

    def on_example(
        self, x: dict[str, Any], y: Any, predictions: dict[str, Any], *, event_ts: float | None, offset: int | None
    ) -> SupervisorOutput:
        out = SupervisorOutput()
        self.buffer.append(x, y)
        for name, y_pred in predictions.items():
            monitor = self._monitor(name)
            err = error_of(self.group.kind, y, y_pred)
            if monitor is None or err is None:
                continue
            alert = monitor.update(err, event_ts, offset)
            if alert is None:
                continue
            out.alerts.append(alert)
            if alert.level == "drift" and name == self.group.champion:
                action, promotion = self._react(alert, name)
                out.actions.append(action)
                out.promotion = promotion or out.promotion
        if self.label_monitor is not None:
            value = float(y) if isinstance(y, bool | int | float) else str(y)
            alert = self.label_monitor.update(value, event_ts, offset)
            if alert is not None:
                out.alerts.append(alert)
        return out

    def _react(self, alert: DriftAlert, name: str) -> tuple[Action, PromotionEvent | None]:
        group = self.group
        policy = self.config.policy_for(self._model(name))
        metrics = group.metrics()
        window_key = f"promotion_{group.policy.metric}_window"
        scores = {n: metrics[n].get(window_key) for n in group.challengers}
        action = decide(
            alert,
            policy,
            champion_score=metrics[name].get(window_key),
            challenger_scores={n: v for n, v in scores.items() if v is not None and not math.isnan(v)},
            challenger_examples={n: int(metrics[n].get("n", 0)) for n in group.challengers},
            buffered=len(self.buffer),
        )
        promotion = None
        if action.kind == "promote" and action.target is not None:
            promotion = group.promote(action.target, reason="drift")
            for monitored in (name, action.target):
                monitor = self.monitors.get(monitored)
                if monitor is not None:
                    monitor.reset()
        elif action.kind == "reset_and_retrain":
            model = retrain(lambda: group.fresh_model(name), self.buffer, n=action.n_examples or None)
            group.reset_model(name, model)
            monitor = self.monitors.get(name)
            if monitor is not None:
                monitor.reset()
        return action, promotion
