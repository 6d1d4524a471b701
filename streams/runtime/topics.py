"""freshet's topics, declared in one place in the order the data flows (DESIGN.md, "The flow").

All topics carry raw bytes: freshet encodes and decodes JSON itself (orjson, :mod:`streams.records`) so a
malformed message reaches our validation and the dead-letter topic instead of failing inside Faust's codec.
Faust's pickle codec is never used on a topic (DESIGN.md decision 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    events: Any  # key: entity id; value: the user's event JSON
    labels: Any  # key: event id; value: {"id", "label", "ts"}
    predictions: Any  # key: event id; value: records.Prediction
    examples: Any  # key: model slot; value: records.Example
    model_versions: Any  # key: model slot; value: registry meta (compacted)
    drift: Any  # key: model or feature; value: models.drift DriftAlert
    metrics: Any  # key: model; value: metric snapshot
    dead_letter: Any  # key: the input's key; value: records.DeadLetter


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str, **kwargs: Any) -> Any:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            **kwargs,
        )

    return Topics(
        events=raw("events"),
        labels=raw("labels"),
        predictions=raw("predictions"),
        examples=raw("examples"),
        model_versions=raw("model-versions", compacting=True),
        drift=raw("drift"),
        metrics=raw("metrics"),
        dead_letter=raw("dead-letter"),
    )
