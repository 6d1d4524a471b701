"""The serving side of each model slot: the champion's current version, swapped without a pause.

Predictors learn nothing (DESIGN.md decision 3). A swap replaces one reference, so an event being
scored finishes on the old model and the next one sees the new model: no lock, no pause.

>>> from models.spec import parse_models
>>> p = Predictor(parse_models([], "classification"))
>>> y, proba, served = p.predict("default", {"x": 1.0})
>>> served
'lr@0'
>>> p.swap("default", p.models["default"].model, "lr@7")
>>> p.predict("default", {"x": 1.0})[2]
'lr@7'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.spec import ModelSlotDef, build_model


@dataclass(frozen=True)
class Served:
    model: Any
    label: str  # "name@version"
    kind: str  # "classification" | "regression"


class Predictor:
    def __init__(self, slots: list[ModelSlotDef]) -> None:
        self.slots = {s.slot: s for s in slots}
        # Until the learner publishes a version, each slot serves its untrained champion as version 0.
        self.models: dict[str, Served] = {
            s.slot: Served(build_model(s.champion), f"{s.champion.name}@0", s.kind) for s in slots
        }

    def swap(self, slot: str, model: Any, label: str) -> None:
        self.models[slot] = Served(model, label, self.slots[slot].kind)

    def predict(self, slot: str, x: dict[str, float]) -> tuple[Any, dict[str, float], str]:
        """(prediction, probabilities keyed by class as text, "name@version")."""
        served = self.models[slot]
        if served.kind == "regression":
            return served.model.predict_one(x), {}, served.label
        proba = served.model.predict_proba_one(x)
        if not proba:
            return None, {}, served.label
        y = max(proba, key=proba.get)
        return y, {_class_key(k): float(v) for k, v in proba.items()}, served.label


def _class_key(c: Any) -> str:
    """JSON object keys are text; booleans keep their JSON spelling (``true``/``false``)."""
    if isinstance(c, bool):
        return "true" if c else "false"
    return str(c)
