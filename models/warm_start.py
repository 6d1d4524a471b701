"""Warm start: learn a slot's models from a historic table of features and labels, then go online.

The table is what the batch feature engine produces for past events (one row per labelled event, the
features as they were at the event's time), so the warm-started models have seen the same features the
stream will give them. Rows are learned in time order, test-then-train like the stream, so the models'
metrics after a warm start are honest prequential scores on the history.

To go online, snapshot the group before the learner starts (its offset stays -1: no example from the
``examples`` topic has been learned yet)::

    group = warm_start(slot, frame, label_col="label", time_col="ts")
    Learner(group, registry).snapshot()      # version 1; Learner.restore() resumes from it

>>> import pandas as pd
>>> from models.spec import parse_models
>>> [slot] = parse_models(None, "regression")
>>> frame = pd.DataFrame({"ts": [3.0, 1.0, 2.0], "x": [3.0, 1.0, None], "y": [6.0, 2.0, 4.0]})
>>> group = warm_start(slot, frame, label_col="y", feature_cols=["x"], time_col="ts")
>>> group.examples_learned, group.metrics()["linear"]["n"]
(3, 3.0)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from models.champion import ModelGroup
from models.learner import BadExample, check_label
from models.spec import ModelSlotDef

__all__ = ["warm_start"]

_log = logging.getLogger(__name__)


def warm_start(
    slot_def: ModelSlotDef,
    frame: pd.DataFrame,
    label_col: str,
    feature_cols: Sequence[str] | None = None,
    *,
    time_col: str | None = None,
    rolling_window: int = 1000,
    promote: bool = False,
    group: ModelGroup | None = None,
) -> ModelGroup:
    """Build ``slot_def``'s models (or continue ``group``) from ``frame``, one row at a time in time order.

    ``feature_cols`` defaults to every column but the label and time columns; missing values (NaN/None)
    are left out of ``x``, as on the stream. Rows whose label is missing or unfit are skipped and counted
    in the log. With ``promote``, the promotion policy runs after each row as it would online.
    """
    missing = [c for c in (label_col, time_col) if c is not None and c not in frame.columns]
    if feature_cols is None:
        feature_cols = [c for c in frame.columns if c not in (label_col, time_col)]
    missing += [c for c in feature_cols if c not in frame.columns]
    if missing:
        raise ValueError(
            f"warm start: the table has no column(s) {missing}; columns are {list(frame.columns)}"
        )
    if time_col is not None:
        frame = frame.sort_values(time_col, kind="stable")
    group = group if group is not None else ModelGroup(slot_def, rolling_window=rolling_window)
    names = [str(c) for c in feature_cols]
    labels = frame[label_col].tolist()  # Python scalars, not numpy ones
    columns = [frame[c].tolist() for c in feature_cols]
    bad = 0
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, float) and label != label):
            bad += 1
            continue
        try:
            y = check_label(group.kind, label)
        except BadExample:
            bad += 1
            continue
        group.score_and_learn({name: col[i] for name, col in zip(names, columns, strict=True)}, y)
        if promote:
            group.maybe_promote()
    if bad:
        _log.warning("warm start of slot %s: skipped %d rows with a missing or unfit label", group.slot, bad)
    return group
