"""One labelled example: the features logged at prediction time joined with the true outcome.

The ``examples`` topic carries these (key: model slot); :mod:`streams.records` re-exports the type with the
other message formats, and the learner (this package) consumes it, so the type lives here, below both.

>>> e = Example(id="e1", entity="u1", slot="default", features={"x": 1.0}, label=True, event_ts=1.0, label_ts=2.0)
>>> Example.from_dict(e.to_dict()) == e
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1

Label = bool | int | float | str


@dataclass(frozen=True)
class Example:
    """``examples`` (key: model slot): features logged at prediction time joined with the label."""

    id: str
    entity: str
    slot: str
    features: dict[str, float | None]
    label: Label
    event_ts: float
    label_ts: float
    served_prediction: Label | None = None
    served_model: str | None = None
    served_probabilities: dict[str, float] = field(default_factory=dict)
    v: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs once per example.
        return {
            "id": self.id,
            "entity": self.entity,
            "slot": self.slot,
            "features": self.features,
            "label": self.label,
            "event_ts": self.event_ts,
            "label_ts": self.label_ts,
            "served_prediction": self.served_prediction,
            "served_model": self.served_model,
            "served_probabilities": self.served_probabilities,
            "v": self.v,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(
            id=str(d["id"]),
            entity=str(d["entity"]),
            slot=str(d["slot"]),
            features=dict(d["features"]),
            label=d["label"],
            event_ts=float(d["event_ts"]),
            label_ts=float(d["label_ts"]),
            served_prediction=d.get("served_prediction"),
            served_model=d.get("served_model"),
            served_probabilities=dict(d.get("served_probabilities") or {}),
            v=int(d.get("v", 1)),
        )
