"""Warm start: build a slot's models from a historic log of events and labels, then go online from there.

The batch engine computes each historic event's features as they were at that event's time (point in time,
the same definitions as the stream), the model input is built as on the stream (numeric fields + features),
rows are joined with their labels by event id and learned in event-time order (test-then-train, so the
snapshot carries honest metrics). The result is saved as a signed version and made current; its offset is
the end of the slot's ``examples`` partition, so the learner goes on from examples that come after it and
nothing in the historic log is learned twice.

    events log (CSV/Parquet: id, entity, ts, fields)   labels log (id, label[, ts])
        → training_set (point-in-time features)  → join on id  → warm_start (ModelGroup)  → registry
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.registry import ModelMeta, Registry
from models.spec import ModelSlotDef
from models.warm_start import warm_start
from streams.core.inputs import model_input
from streams.event_time import parse_event_time
from streams.features.batch import read_table, training_set
from streams.spec import PipelineSpec


def training_frame(spec: PipelineSpec, events: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per labelled event: the model input columns, ``label`` and the event time ``_ts``.

    >>> spec = PipelineSpec.from_toml('''
    ... [event.fields]
    ... x = "float"
    ... [[features]]
    ... name = "n_10s"
    ... agg = "count"
    ... window = { kind = "sliding", size_s = 10 }
    ... ''')
    >>> events = pd.DataFrame({"id": ["a", "b", "c"], "entity": ["u", "u", "v"], "ts": [1.0, 2.0, 3.0],
    ...                        "x": [0.5, 1.5, 2.5]})
    >>> labels = pd.DataFrame({"id": ["a", "c"], "label": [True, False]})
    >>> frame, columns = training_frame(spec, events, labels)
    >>> frame[["x", "n_10s", "label"]].values.tolist(), columns
    ([[0.5, 1.0, True], [2.5, 1.0, False]], ['x', 'n_10s'])
    """
    ev = spec.event
    defs = list(spec.features)
    # The features as the stream served them: the log in its arrival order (streams.features.batch).
    with_features = training_set(defs, events, entity=ev.entity, time=ev.time)
    usable = with_features[~with_features["_invalid"]]
    names = [d.name for d in defs]
    field_names = [f for f, t in ev.fields.items() if t != "str"]
    rows = []
    for record in usable.to_dict("records"):
        fields = {f: record.get(f) for f in field_names}
        feats = {n: (None if pd.isna(record[n]) else float(record[n])) for n in names}
        x = model_input({k: v for k, v in fields.items() if v is not None and not pd.isna(v)}, feats)
        rows.append({"_id": str(record[ev.id]), "_ts": parse_event_time(record[ev.time]), **x})
    frame = pd.DataFrame(rows)
    columns = [c for c in frame.columns if c not in ("_id", "_ts")]
    lab = labels.rename(columns={"id": "_id"})[["_id", "label"]].copy()
    lab["_id"] = lab["_id"].astype(str)
    joined = frame.merge(lab.drop_duplicates("_id"), on="_id", how="inner")
    return joined.sort_values("_ts", kind="stable").reset_index(drop=True), columns


def warm_start_slot(
    spec: PipelineSpec,
    slot_def: ModelSlotDef,
    events_path: Path,
    labels_path: Path,
    registry: Registry,
    *,
    examples_end_offset: int,
    rolling_window: int = 1000,
) -> ModelMeta:
    """Learn the historic log and save the models as the slot's current version."""
    frame, columns = training_frame(spec, read_table(events_path), read_table(labels_path))
    if frame.empty:
        raise ValueError(f"no labelled events: no id in {labels_path} matches an event in {events_path}")
    group = warm_start(slot_def, frame, "label", columns, time_col="_ts", rolling_window=rolling_window)
    current = registry.current(slot_def.slot)
    return registry.save(
        slot_def.slot,
        group.state(),
        parent=current.version if current is not None else None,
        slot=slot_def.slot,
        examples_learned=group.examples_learned,
        offset=examples_end_offset - 1,
        metrics=group.metrics(),
        role="group",
        champion=group.champion,
    )
