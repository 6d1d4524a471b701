"""The pipeline spec: one TOML file that declares the events, the features, the models and drift checks.

The stream and the batch engine both execute this declaration (DESIGN.md decision 5). The spec is parsed
**once**, here, into typed sections (each by the module that owns its rules): the worker, the learner,
backfill and warm start all read :attr:`PipelineSpec.features`, :attr:`~PipelineSpec.models` and
:attr:`~PipelineSpec.drift` instead of parsing ``raw`` again, so they cannot disagree. When ``[event.fields]``
is declared, a feature on a field that is not declared there is a :class:`SpecError` for all of them.

Shape of the file (every section but ``[event]`` is optional)::

    [event]                        # how to read the user's event JSON
    id = "id"                      # field holding the event id (str)
    entity = "entity"              # field holding the entity id (str)
    time = "ts"                    # event time: epoch seconds or an ISO-8601 string with a timezone
    max_future_s = 300             # events further ahead of the wall clock are rejected
    max_age_s = 31536000           # events older than this (vs. the wall clock) are rejected; 0 = no limit
    extra_fields = "ignore"        # unknown fields: "ignore" (dropped) or "reject" (dead-letter)
    [event.fields]                 # field name -> "float" | "int" | "str" | "bool"
    x1 = "float"

    [label]
    kind = "classification"        # or "regression"
    missing_time = "dead-letter"   # a label without "ts": "dead-letter" (reason missing_time) or "arrival"
                                   # (its Kafka append time is its event time)

    [[features]] ...               # streams.features.definitions.parse_features
    [[models]] ...                 # models.spec.parse_models
    [drift] ...                    # models.drift config

>>> spec = PipelineSpec.from_toml('''
... [event]
... [event.fields]
... amount = "float"
... ''')
>>> spec.event.fields
{'amount': 'float'}
>>> spec.event.time
'ts'
>>> [slot.slot for slot in spec.models], spec.features
(['default'], ())
>>> PipelineSpec.from_toml('''
... [event.fields]
... amount = "float"
... [[features]]
... name = "n"
... agg = "sum"
... field = "amt"
... window = { kind = "sliding", size_s = 10 }
... ''')
Traceback (most recent call last):
...
streams.errors.SpecError: [[features]] #1 'n': field 'amt' is not in [event.fields] (amount)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.drift.config import DriftConfig
from models.spec import ModelSlotDef, parse_models
from streams.errors import SpecError
from streams.features.definitions import FeatureDef, parse_features

FIELD_TYPES = ("float", "int", "str", "bool")
LABEL_MISSING_TIME = ("dead-letter", "arrival")


@dataclass(frozen=True)
class EventSchema:
    """Where the id, entity and event time are in an event, and which fields it carries."""

    id: str = "id"
    entity: str = "entity"
    time: str = "ts"
    fields: dict[str, str] = field(default_factory=dict)
    max_future_s: float = 300.0
    max_age_s: float = 0.0
    extra_fields: str = "ignore"
    # Bounded messages, checked before any work: the whole message, the id and entity, any text field.
    max_message_bytes: int = 65_536
    max_key_chars: int = 256
    max_text_chars: int = 1_024

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EventSchema:
        known = {
            "id",
            "entity",
            "time",
            "fields",
            "max_future_s",
            "max_age_s",
            "extra_fields",
            "max_message_bytes",
            "max_key_chars",
            "max_text_chars",
        }
        unknown = set(raw) - known
        if unknown:
            raise SpecError(f"[event] has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        fields_ = dict(raw.get("fields", {}))
        for name, type_ in fields_.items():
            if type_ not in FIELD_TYPES:
                raise SpecError(f"[event.fields] {name} = {type_!r}: type must be one of {FIELD_TYPES}")
        extra = raw.get("extra_fields", "ignore")
        if extra not in ("ignore", "reject"):
            raise SpecError(f"[event] extra_fields = {extra!r}: use 'ignore' or 'reject'")
        return cls(
            id=str(raw.get("id", "id")),
            entity=str(raw.get("entity", "entity")),
            time=str(raw.get("time", "ts")),
            fields=fields_,
            max_future_s=float(raw.get("max_future_s", 300.0)),
            max_age_s=float(raw.get("max_age_s", 0.0)),
            max_message_bytes=_positive_int(raw, "max_message_bytes", 65_536),
            max_key_chars=_positive_int(raw, "max_key_chars", 256),
            max_text_chars=_positive_int(raw, "max_text_chars", 1_024),
            extra_fields=extra,
        )


@dataclass(frozen=True)
class LabelSchema:
    """What a label may be: a class (``classification``; ``classes`` lists the known ones, optional) or a
    number (``regression``). A label that is not is dead-lettered ``bad_label`` by the worker's join, so it
    never reaches the learner.

    >>> LabelSchema.from_dict({"kind": "classification", "classes": [True, False]}).classes
    (True, False)
    """

    kind: str = "classification"
    classes: tuple[bool | int | str, ...] | None = None
    # A label without "ts": "dead-letter" (reason missing_time) or "arrival" (its append time is its time).
    missing_time: str = "dead-letter"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LabelSchema:
        unknown = set(raw) - {"kind", "classes", "missing_time"}
        if unknown:
            raise SpecError(
                f"[label] has unknown keys {sorted(unknown)}; allowed: ['classes', 'kind', 'missing_time']"
            )
        missing_time = raw.get("missing_time", "dead-letter")
        if missing_time not in LABEL_MISSING_TIME:
            raise SpecError(f"[label] missing_time = {missing_time!r}: use one of {LABEL_MISSING_TIME}")
        kind = raw.get("kind", "classification")
        if kind not in ("classification", "regression"):
            raise SpecError(f"[label] kind = {kind!r}: use 'classification' or 'regression'")
        classes = raw.get("classes")
        if classes is not None:
            if kind != "classification" or not isinstance(classes, list) or not classes:
                raise SpecError("[label] classes: a non-empty list, for kind = 'classification' only")
            if not all(isinstance(c, bool | int | str) for c in classes):
                raise SpecError(f"[label] classes = {classes!r}: each class is a bool, an integer or a string")
            classes = tuple(classes)
        return cls(kind=kind, classes=classes, missing_time=missing_time)


@dataclass(frozen=True)
class PipelineSpec:
    """The parsed spec, every section typed; ``raw`` keeps the TOML document (for tools that show it)."""

    event: EventSchema
    label: LabelSchema
    features: tuple[FeatureDef, ...]
    models: tuple[ModelSlotDef, ...]
    drift: DriftConfig
    raw: dict[str, Any]

    @classmethod
    def from_toml(cls, text: str) -> PipelineSpec:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"pipeline spec is not valid TOML: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PipelineSpec:
        event = EventSchema.from_dict(raw.get("event", {}))
        label = LabelSchema.from_dict(raw.get("label", {}))
        return cls(
            event=event,
            label=label,
            # One rule for every consumer of the spec: fields are checked against [event.fields] when declared.
            features=tuple(parse_features(raw.get("features", []), event_fields=event.fields or None)),
            models=tuple(parse_models(raw.get("models", []), label.kind)),
            drift=DriftConfig.from_dict(raw.get("drift")),
            raw=raw,
        )

    @classmethod
    def load(cls, path: Path | str) -> PipelineSpec:
        path = Path(path)
        if not path.exists():
            raise SpecError(f"pipeline spec {path} does not exist; pass --spec or set FRESHET_SPEC_PATH")
        return cls.from_toml(path.read_text())


def _positive_int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"[event] {key} = {value!r}: must be a positive whole number")
    return value
