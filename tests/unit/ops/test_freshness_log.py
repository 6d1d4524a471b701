"""``freshet experiment freshness``: reading a recorded stream (CSV, JSON lines) into (event, label) pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streams.ops.freshness import DEFAULT_VARIANTS, read_log

ROWS = [{"id": "e0", "entity": "u1", "ts": 1.0, "x": 0.5, "label": True},
        {"id": "e1", "entity": "u2", "ts": 2.0, "x": 1.5, "label": False}]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_log_becomes_events_and_labels_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"log{suffix}"
    frame = pd.DataFrame(ROWS)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    items = read_log(path)
    assert items == [({"id": "e0", "entity": "u1", "ts": 1.0, "x": 0.5}, True),
                     ({"id": "e1", "entity": "u2", "ts": 2.0, "x": 1.5}, False)]
    assert all(type(label) is bool for _, label in items)  # JSON-ready, not numpy


def test_a_log_without_the_label_column_says_which_option_to_use(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame(ROWS).rename(columns={"label": "y"}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="--label-column"):
        read_log(path)
    assert read_log(path, "y")[1][1] is False


def test_the_settings_compared_include_never_and_the_defaults() -> None:
    names = [v.name for v in DEFAULT_VARIANTS]
    assert "never" in names and "freshet defaults" in names and "every example" in names
