"""Warm start from a historic log through the CLI, then the models serve and the learner goes on from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from models.champion import ModelGroup
from producers.synthetic import SyntheticStream
from streams.core.inputs import model_input
from streams.runtime.connections import open_registry
from streams.runtime.learner_loop import load_slots
from streams.settings import Settings

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"


def test_warm_start_learns_the_history_and_is_current(settings: Settings, tmp_path: Path) -> None:
    s = settings.with_(spec_path=SPEC)
    items = list(SyntheticStream(kind="hyperplane", n_events=2500, n_entities=30, seed=9, start_ts=1_700_000_000.0,
                                 step_s=0.1))
    history, probe = items[:2000], items[2000:]
    pd.DataFrame([e for e, _ in history]).to_parquet(tmp_path / "events.parquet")
    pd.DataFrame([{"id": e["id"], "label": y} for e, y in history]).to_csv(tmp_path / "labels.csv", index=False)

    done = subprocess.run(
        [sys.executable, "-m", "streams", "warm-start", str(tmp_path / "events.parquet"), str(tmp_path / "labels.csv")],
        env={**os.environ, **s.to_env()}, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "learned 2000 historic examples" in done.stdout

    registry = open_registry(s)
    meta = registry.current("default")
    assert meta is not None and meta.examples_learned == 2000
    assert meta.offset == -1, "nothing in the examples topic yet: the learner starts from its beginning"
    state, _ = registry.load("default")
    _, [slot] = load_slots(s)
    group = ModelGroup.from_state(state, slot)
    # The probe continues the same concept: a warm model is right far more often than a coin.
    correct = sum(group.predict(model_input({k: v for k, v in e.items() if k.startswith("x")}, {}))[0] == y
                  for e, y in probe)
    assert correct / len(probe) > 0.8
