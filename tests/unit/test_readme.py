"""The README's contracts are the code's: its topic table is :data:`streams.topics.TOPICS`, and every JSON
example of a message is read by the record type of its topic and written back unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from models.drift.alerts import DriftAlert
from models.registry import ModelMeta
from streams.core.validate import Event, validate_event, validate_label
from streams.records import DeadLetter, Example, LabelRecord, Prediction
from streams.spec import PipelineSpec
from streams.topics import TOPICS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEMO = PipelineSpec.load(ROOT / "pipelines" / "demo.toml")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def topic_rows() -> list[list[str]]:
    rows = []
    for line in section("Topics and message formats").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows.append(cells)
    return rows


def examples() -> dict[str, list[dict[str, Any]]]:
    """Each topic's JSON examples: the ```json blocks after its **topic** paragraph."""
    out: dict[str, list[dict[str, Any]]] = {}
    text = section("Topics and message formats")
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\*\*([a-z-]+)\*\*.*?```json\n(.*?)```", text, re.S):
        topic, block = match.group(1), match.group(2)
        pos = 0
        while (pos := _skip_space(block, pos)) < len(block):
            obj, pos = decoder.raw_decode(block, pos)
            out.setdefault(topic, []).append(obj)
    return out


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def test_the_topic_table_is_the_code_s_table() -> None:
    rows = topic_rows()
    assert [re.sub(r"`| \(compacted\)", "", r[0]) for r in rows] == [t.name for t in TOPICS]
    for row, topic in zip(rows, TOPICS, strict=True):
        assert row[1] == topic.key and row[3] == topic.written_by and row[4] == topic.read_by, row
        assert ("(compacted)" in row[0]) == (topic.config.get("cleanup.policy") == "compact")


def test_every_topic_with_a_record_type_has_an_example() -> None:
    assert set(examples()) == {t.name for t in TOPICS}


def _round_trip(topic: str, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    if topic == "events":
        event = validate_event(data, DEMO.event, now_s=obj["ts"])
        assert isinstance(event, Event) and (event.id, event.entity, event.ts) == (obj["id"], obj["entity"], obj["ts"])
        assert event.fields == {k: v for k, v in obj.items() if k in DEMO.event.fields}
    elif topic == "labels":
        assert validate_label(data, DEMO.label) == LabelRecord(obj["id"], obj["label"], obj["ts"])
    elif topic == "predictions":
        assert Prediction.from_dict(obj).to_dict() == obj
    elif topic == "examples":
        assert {k: v for k, v in Example.from_dict(obj).to_dict().items() if k in obj} == obj
    elif topic == "model-versions":
        body = {k: v for k, v in obj.items() if k not in ("v", "kind", "snapshot")}
        if obj["kind"] == "record":
            assert {k: v for k, v in ModelMeta.from_dict(body).to_dict().items() if k in body} == body
        else:
            assert obj["kind"] == "position" and {"slot", "version", "examples_learned", "offset"} <= set(obj)
    elif topic == "drift" and obj.get("kind") == "canary":  # a routing decision (models/canary.py)
        assert {"slot", "experiment", "decision", "reason", "candidate", "baseline", "share", "statistic",
                "confidence", "n_candidate", "n_baseline"} <= set(obj)
    elif topic == "drift":
        assert DriftAlert.from_dict(obj).to_dict() == obj
    elif topic == "dead-letter":
        assert DeadLetter(**obj).to_dict() == obj
    elif topic == "metrics":  # a snapshot has no record type of its own: the learner writes these keys
        assert {"v", "model", "slot", "name", "role", "version", "n", "offset", "event_ts", "ts", "metrics"} <= set(obj)
    else:
        pytest.fail(f"an example for unknown topic {topic!r}")


@pytest.mark.parametrize(
    ("topic", "i", "obj"), [(t, i, o) for t, objs in examples().items() for i, o in enumerate(objs)],
    ids=lambda v: v if isinstance(v, str) else str(v) if isinstance(v, int) else "",
)
def test_a_readme_example_round_trips_through_its_record_type(topic: str, i: int, obj: dict[str, Any]) -> None:
    _round_trip(topic, obj)
