from __future__ import annotations

from pathlib import Path

import pytest

from producers.synthetic import FIELDS, SyntheticStream
from streams.settings import Settings, SettingsError
from streams.spec import PipelineSpec, SpecError
from streams.topics import TOPIC_NAMES


def test_settings_round_trip_through_env() -> None:
    s = Settings(kafka_port=1234, start_services=False, spec_path=Path("x.toml"), label_ttl_s=12.5)
    assert Settings.from_env(s.to_env()) == s


def test_bad_setting_says_which() -> None:
    with pytest.raises(SettingsError, match="FRESHET_KAFKA_PORT"):
        Settings.from_env({"FRESHET_KAFKA_PORT": "ninety"})


def test_topic_names_are_prefixed_and_checked() -> None:
    s = Settings(topic_prefix="p-")
    assert [s.topic(n) for n in TOPIC_NAMES[:2]] == ["p-events", "p-labels"]
    with pytest.raises(SettingsError):
        s.topic("nope")


@pytest.mark.parametrize(
    "text",
    ["[event]\nbogus = 1", "[event.fields]\nx = 'complex'", "[label]\nkind = 'ranking'", "not toml ["],
)
def test_spec_errors_are_one_line(text: str) -> None:
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_toml(text)
    assert "\n" not in str(info.value)


def test_spec_missing_file() -> None:
    with pytest.raises(SpecError, match="does not exist"):
        PipelineSpec.load("/nonexistent/spec.toml")


@pytest.mark.parametrize("kind", ["sea", "agrawal", "hyperplane", "phishing"])
def test_synthetic_streams_are_seeded_and_shaped(kind: str) -> None:
    a = list(SyntheticStream(kind=kind, n_events=50, seed=3))
    b = list(SyntheticStream(kind=kind, n_events=50, seed=3))
    assert a == b
    assert set(a[0][0]) == {"id", "entity", "ts", *FIELDS[kind]}
    assert all(isinstance(y, bool) for _, y in a)
    assert len({e["id"] for e, _ in a}) == 50


def test_synthetic_drift_changes_the_concept() -> None:
    # SEA variant 0 vs 1 differ in threshold: the same x gets a different label after the drift.
    stream = SyntheticStream(kind="sea", n_events=4000, seed=1, drift_at=[2000])
    items = list(stream)

    def rate(part: list[tuple[dict[str, float], bool]]) -> float:
        return sum(y for _, y in part) / len(part)

    assert abs(rate(items[:2000]) - rate(items[2000:])) > 0.02


def test_a_feature_on_an_undeclared_field_is_one_error_for_worker_learner_backfill_and_warm_start(
    tmp_path: Path,
) -> None:
    """The worker used to accept it (the feature was always None) while backfill and warm start refused it."""
    from streams.runtime.app import Runtime

    text = """
[event.fields]
amount = "float"
[[features]]
name = "amt_sum_10s"
agg = "sum"
field = "amt"
window = { kind = "sliding", size_s = 10 }
"""
    from streams.features.batch import backfill
    from streams.runtime.learner_loop import load_slots
    from streams.runtime.testing import InMemoryOnlineStore

    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    settings = Settings(spec_path=spec)
    events = tmp_path / "events.csv"
    events.write_text("id,entity,ts,amount\ne1,u1,1700000000,1.0\n")
    for reader in (
        lambda: Runtime.build(settings, store=InMemoryOnlineStore()),  # the worker
        lambda: load_slots(settings),  # the learner
        lambda: backfill(spec, events, tmp_path / "out.parquet"),  # backfill (warm start reads the same spec)
    ):
        with pytest.raises(SpecError, match=r"field 'amt' is not in \[event\.fields\]"):
            reader()
