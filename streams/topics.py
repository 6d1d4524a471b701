"""freshet's topics in one table, in the order the data flows: name, key, record, Kafka config.

The runtime (``Settings.topic``), topic creation (``freshet services up``: :func:`streams.ops.services.ensure_topics`)
and the README's topic table (checked by ``tests/unit/test_readme.py``) all read :data:`TOPICS`. Every topic
carries raw bytes: freshet encodes and decodes JSON itself (orjson, :mod:`streams.records`), so a malformed
message reaches validation and the ``dead-letter`` topic instead of failing inside a codec. The worker's
state changelogs (``<app id>-feature-state-changelog``, ``<app id>-label-join-changelog``, compacted) are
the runtime's own and not in this table.

>>> [t.name for t in TOPICS if t.config]
['model-versions']
>>> TOPIC_BY_NAME["examples"].key, TOPIC_BY_NAME["examples"].record
('model slot', 'streams.records.Example')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["TOPICS", "TOPIC_BY_NAME", "TOPIC_NAMES", "TopicDef"]


@dataclass(frozen=True)
class TopicDef:
    """One of freshet's topics. ``record``: the value's type (a :mod:`streams.records` class, or what the user
    sends); ``config``: the Kafka topic configs it is created with."""

    name: str
    key: str
    record: str
    written_by: str
    read_by: str
    config: Mapping[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicDef, ...] = (
    TopicDef("events", "entity id", "your event JSON (the spec's [event])", "you", "worker"),
    TopicDef("labels", "event id", "streams.records.LabelRecord", "you", "worker (join)"),
    TopicDef("predictions", "event id", "streams.records.Prediction", "worker", "you, worker (join)"),
    TopicDef("examples", "model slot", "streams.records.Example", "worker (join)", "learner"),
    TopicDef(
        "model-versions", "model slot", "models.registry.ModelMeta (a champion record) or the learner's position",
        "learner, `freshet models`", "workers", {"cleanup.policy": "compact"},
    ),
    TopicDef("drift", "model or feature", "models.drift.alerts.DriftAlert, drift actions, promotions",
             "learner, worker", "you, `freshet watch`, `freshet report`"),
    TopicDef("metrics", "model", "metric snapshot", "learner", "`freshet watch`, `freshet report`"),
    TopicDef("dead-letter", "as input", "streams.records.DeadLetter", "worker, learner", "you"),
)
TOPIC_BY_NAME: dict[str, TopicDef] = {t.name: t for t in TOPICS}
TOPIC_NAMES: tuple[str, ...] = tuple(TOPIC_BY_NAME)
