"""Deliberately bad models, for canary demos and tests (issue 10): a canary must roll these back.

- :func:`flipped_labels`: a classifier that learns every binary label flipped (so it gets worse the more
  it learns);
- :func:`slowed`: a classifier that takes ``delay_ms`` longer for each prediction (the latency guard).

Name them as factories in a spec, e.g. ``factory = "models.sabotage:flipped_labels"``.

>>> m = flipped_labels()
>>> for _ in range(50):
...     m.learn_one({"x": 1.0}, True)
>>> m.predict_one({"x": 1.0})
False
"""

from __future__ import annotations

import time
from typing import Any

from river import base

from models.spec import ModelDef, build_model

__all__ = ["FlippedLabels", "Slowed", "flipped_labels", "slowed"]


class FlippedLabels(base.Classifier):
    """Learns ``not y`` for boolean labels (``1 - y`` for 0/1); predicts what it learned."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def learn_one(self, x: Any, y: Any, **kwargs: Any) -> None:
        flipped = (not y) if isinstance(y, bool) else (1 - y if y in (0, 1) else y)
        self.model.learn_one(x, flipped)

    def predict_proba_one(self, x: Any, **kwargs: Any) -> dict[Any, float]:
        proba: dict[Any, float] = self.model.predict_proba_one(x)
        return proba


class Slowed(base.Classifier):
    """The inner model, ``delay_ms`` slower per prediction."""

    def __init__(self, model: Any, delay_ms: float) -> None:
        self.model = model
        self.delay_ms = delay_ms

    def learn_one(self, x: Any, y: Any, **kwargs: Any) -> None:
        self.model.learn_one(x, y)

    def predict_proba_one(self, x: Any, **kwargs: Any) -> dict[Any, float]:
        time.sleep(self.delay_ms / 1000.0)
        proba: dict[Any, float] = self.model.predict_proba_one(x)
        return proba


def _inner(factory: str, params: dict[str, Any] | None) -> base.Classifier:
    model = build_model(ModelDef("inner", factory, dict(params or {})), "classification")
    assert isinstance(model, base.Classifier)
    return model


def flipped_labels(factory: str = "logistic_regression", params: dict[str, Any] | None = None) -> base.Classifier:
    """``factory(**params)`` trained on flipped labels."""
    return FlippedLabels(_inner(factory, params))


def slowed(delay_ms: float = 5.0, factory: str = "logistic_regression",
           params: dict[str, Any] | None = None) -> base.Classifier:
    """``factory(**params)``, ``delay_ms`` slower per prediction."""
    return Slowed(_inner(factory, params), delay_ms)
