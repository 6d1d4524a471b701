"""freshet's message formats: what each topic carries, encoded as JSON with orjson.

Every message freshet writes has ``"v": 1`` so formats can evolve; readers accept the versions they know.
Keys are UTF-8 strings (entity id, event id or model name, see DESIGN.md). The user's own ``events``
and ``labels`` carry no ``v`` (they are validated against the spec instead).

>>> p = Prediction(id="e1", entity="u1", prediction=True, probabilities={"True": 0.8, "False": 0.2},
...                model="default@3", features={"x1_mean_60s": 1.5}, event_ts=1.0, produced_ts=2.0)
>>> decode(encode(p.to_dict()))["model"]
'default@3'
>>> Prediction.from_dict(decode(encode(p.to_dict()))) == p
True
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from models.example import FORMAT_VERSION, Label
from models.example import Example as Example  # re-exported: the examples topic's format, with the others


def encode(value: dict[str, Any]) -> bytes:
    """JSON bytes; non-string dict keys become strings, NaN becomes null (orjson's rule)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode(data: bytes) -> Any:
    return orjson.loads(data)


@dataclass(frozen=True)
class Prediction:
    """``predictions`` (key: event id). Probabilities are keyed by the class as a string."""

    id: str
    entity: str
    prediction: Label | None
    probabilities: dict[str, float]
    model: str  # "name@version" of the champion that served it
    features: dict[str, float | None]
    event_ts: float
    produced_ts: float
    # Wall time (epoch s) the event was appended to Kafka; kept for latency accounting.
    ingest_ts: float | None = None
    slot: str = "default"  # the model slot (champion + challengers) that served it
    # How far the serving version was behind the learner when it served this, as far as the worker knew
    # (streams.core.predictor.Predictor.staleness): examples the learner had learned that it had not, and seconds
    # since the worker heard the learner was ahead. None: not known (no word from the learner yet).
    staleness_examples: int | None = None
    staleness_s: float | None = None
    v: int = FORMAT_VERSION
    # Routed slots only (issue 10, models/routing.py): which arm served it, its share in the plan, why
    # (split, canary, bandit, champion, rollback, promoted), the experiment id and the plan's version.
    arm: str | None = None
    share: float | None = None
    route: str | None = None
    experiment: str | None = None
    plan_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs once per prediction (asdict deep-copies).
        if self.arm is not None:
            return {**self._base_dict(), "arm": self.arm, "share": self.share, "route": self.route,
                    "experiment": self.experiment, "plan_version": self.plan_version}
        return self._base_dict()

    def _base_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity": self.entity,
            "prediction": self.prediction,
            "probabilities": self.probabilities,
            "model": self.model,
            "features": self.features,
            "event_ts": self.event_ts,
            "produced_ts": self.produced_ts,
            "ingest_ts": self.ingest_ts,
            "slot": self.slot,
            "staleness_examples": self.staleness_examples,
            "staleness_s": self.staleness_s,
            "v": self.v,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        return cls(
            id=str(d["id"]),
            entity=str(d["entity"]),
            prediction=d.get("prediction"),
            probabilities=dict(d.get("probabilities") or {}),
            model=str(d["model"]),
            features=dict(d.get("features") or {}),
            event_ts=float(d["event_ts"]),
            produced_ts=float(d["produced_ts"]),
            ingest_ts=d.get("ingest_ts"),
            slot=str(d.get("slot", "default")),
            staleness_examples=d.get("staleness_examples"),
            staleness_s=d.get("staleness_s"),
            v=int(d.get("v", 1)),
            arm=d.get("arm"),
            share=d.get("share"),
            route=d.get("route"),
            experiment=d.get("experiment"),
            plan_version=d.get("plan_version"),
        )


@dataclass(frozen=True)
class LabelRecord:
    """``labels`` (key: event id): ``{"id": ..., "label": ..., "ts": ...}`` written by the user."""

    id: str
    label: Label
    ts: float


@dataclass(frozen=True)
class DeadLetter:
    """``dead-letter`` (key: the input's key): the original bytes (as text if UTF-8, else base64).

    Bounded so that it always fits the producer's request size, whatever came in: at most
    ``DEAD_LETTER_VALUE_BYTES`` of the original value travel (``value_truncated`` says when fewer than
    ``value_bytes``), with the sha256 of the whole value to match it against the source record, which
    ``source_topic``/``source_partition``/``source_offset`` locate.
    """

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    value: str
    value_encoding: str  # "utf-8" or "base64"
    key: str | None
    ts: float
    value_bytes: int = 0
    value_sha256: str = ""
    value_truncated: bool = False
    v: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SourceRecord(Protocol):
    """Where a record came from (a Kafka consumer record, or :class:`streams.core.serve.InRecord`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def dead_letter_of(record: SourceRecord, reason: str, detail: str, now_s: float) -> tuple[bytes | None, bytes]:
    """:func:`dead_letter` for a consumed record: its coordinates, key and value travel along."""
    return dead_letter(
        now_s=now_s,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        reason=reason,
        detail=detail,
    )


DEAD_LETTER_VALUE_BYTES = 4096
DEAD_LETTER_TEXT_CHARS = 512  # the key and the detail


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    now_s: float,
) -> tuple[bytes | None, bytes]:
    """(key, value) of the ``dead-letter`` message for an input message that could not be processed.

    ``now_s`` (the caller's clock) is when it was dead-lettered.

    The original bytes travel as text when they are UTF-8, else as base64, so nothing is lost; beyond
    ``DEAD_LETTER_VALUE_BYTES`` only a prefix travels, with the size and hash of the whole.

    >>> key, value = dead_letter(topic="events", partition=0, offset=7, key=b"u1", value=b"\\xff",
    ...                          reason="undecodable", detail="not UTF-8 JSON", now_s=1.0)
    >>> record = decode(value)
    >>> record["reason"], record["value_encoding"], base64.b64decode(record["value"])
    ('undecodable', 'base64', b'\\xff')
    >>> key, value = dead_letter(topic="events", partition=0, offset=8, key=b"k" * 10**6, value=b"x" * 10**6,
    ...                          reason="too_large", detail="big", now_s=1.0)
    >>> record = decode(value)
    >>> len(value) < 10_000, len(record["value"]), record["value_bytes"], record["value_truncated"], len(key)
    (True, 4096, 1000000, True, 512)
    """
    raw = value or b""
    head = raw[:DEAD_LETTER_VALUE_BYTES]
    try:
        text, encoding = head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(head).decode("ascii"), "base64"
    short_key = key[:DEAD_LETTER_TEXT_CHARS] if key is not None else None
    record = DeadLetter(
        reason=reason,
        detail=detail[:DEAD_LETTER_TEXT_CHARS],
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        value=text,
        value_encoding=encoding,
        key=short_key.decode("utf-8", "replace") if short_key is not None else None,
        ts=now_s,
        value_bytes=len(raw),
        value_sha256=hashlib.sha256(raw).hexdigest(),
        value_truncated=len(raw) > len(head),
    )
    return short_key, encode(record.to_dict())
