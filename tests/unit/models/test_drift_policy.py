"""Drift policies and the ``[drift]`` config: decisions on plain data, the buffer, parsing errors."""

from __future__ import annotations

import pytest

from models.drift import DriftAlert, DriftConfig, DriftConfigError, DriftPolicy, ExampleBuffer, decide
from models.drift.alerts import format_ts


def concept_alert(level: str = "drift", kind: str = "concept") -> DriftAlert:
    return DriftAlert(
        kind=kind, subject="default/lr", detector="adwin", statistic="error_mean", value=0.4, threshold=0.1,
        event_ts=1_700_000_000.0, offset=42, level=level, detected_ts=1_700_000_001.0, n=43,
    )


def test_alert_round_trips_and_refuses_unknown_versions() -> None:
    a = concept_alert()
    assert DriftAlert.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="version 2 is not supported"):
        DriftAlert.from_dict({**a.to_dict(), "v": 2})
    with pytest.raises(ValueError, match="missing the field 'subject'"):
        DriftAlert.from_dict({k: v for k, v in a.to_dict().items() if k != "subject"})
    with pytest.raises(ValueError, match="kind 'data'"):
        DriftAlert(kind="data", subject="x", detector="d", statistic="s", value=1, threshold=1,
                   event_ts=None, offset=None)
    assert "offset 42" in a.describe() and format_ts(1_700_000_000.0) in a.describe()


def test_promote_best_challenger() -> None:
    policy = DriftPolicy("promote_best_challenger", min_gain=0.02)
    scores = {"default/tree": 0.80, "default/nb": 0.85, "default/arf": 0.84}
    action = decide(concept_alert(), policy, champion_score=0.70, challenger_scores=scores)
    assert (action.kind, action.subject, action.target) == ("promote", "default/lr", "default/nb")
    # Not enough gain: alert only (the default fallback) ...
    assert decide(concept_alert(), policy, champion_score=0.84, challenger_scores=scores).kind == "alert"
    # ... or reset when the policy falls back to it.
    fallback = DriftPolicy("promote_best_challenger", fallback="reset_and_retrain", retrain_buffer=300)
    action = decide(concept_alert(), fallback, champion_score=0.9, challenger_scores=scores, buffered=120)
    assert (action.kind, action.n_examples) == ("reset_and_retrain", 120)


def test_promote_respects_min_examples_and_lower_is_better() -> None:
    policy = DriftPolicy("promote_best_challenger", min_challenger_examples=500, higher_is_better=False)
    action = decide(
        concept_alert(), policy, champion_score=3.0, challenger_scores={"a": 1.0, "b": 2.0},
        challenger_examples={"a": 10, "b": 900},
    )
    assert action.target == "b"
    assert decide(concept_alert(), policy, champion_score=3.0, challenger_scores={}).kind == "alert"


def test_warnings_and_data_drift_only_alert() -> None:
    policy = DriftPolicy("reset_and_retrain")
    assert decide(concept_alert(level="warning"), policy).kind == "alert"
    assert decide(concept_alert(kind="feature"), policy).kind == "alert"
    assert decide(concept_alert(), DriftPolicy("alert")).kind == "alert"


def test_example_buffer_keeps_the_most_recent() -> None:
    buf = ExampleBuffer(3)
    for i in range(10):
        buf.append({"i": i}, i)
    assert [y for _, y in buf] == [7, 8, 9]
    assert buf.recent(0) == [] and len(buf.recent(10)) == 3
    empty = ExampleBuffer(0)
    empty.append({"i": 1}, 1)
    assert len(empty) == 0
    assert DriftPolicy("reset_and_retrain").needs_buffer and not DriftPolicy("alert").needs_buffer


def test_config_defaults() -> None:
    cfg = DriftConfig.from_dict(None)
    c = cfg.concept_for("default/lr@1")
    assert (c.detector, c.min_spacing, c.policy.kind, c.policy.retrain_buffer) == ("adwin", 500, "alert", 200)
    monitor = cfg.concept_monitor("default/lr@1")
    assert monitor is not None and monitor.subject == "default/lr"
    prediction = cfg.prediction_monitor("default/lr@1")
    assert prediction is not None and prediction.kind == "prediction" and prediction.subject == "default/lr"
    label = cfg.label_monitor()
    assert label is not None and label.kind == "label"


def test_config_per_model_lookup_and_inheritance() -> None:
    cfg = DriftConfig.from_toml(
        """
        [drift.concept]
        min_spacing = 1000
        policy = "reset_and_retrain"
        retrain_buffer = 500
        [drift.concept.models."default/lr"]
        detector = "hddm_w"
        params = { drift_confidence = 0.0001 }
        [drift.concept.models.tree]
        policy = "promote_best_challenger"
        [drift.concept.models.shadow]
        enabled = false
        [drift.prediction]
        enabled = false
        """
    )
    lr = cfg.concept_for("default/lr@9")
    assert (lr.detector, lr.params, lr.min_spacing, lr.policy.kind) == (
        "hddm_w", {"drift_confidence": 0.0001}, 1000, "reset_and_retrain"
    )
    tree = cfg.concept_for("default/tree@2")
    assert (tree.policy.kind, tree.policy.retrain_buffer) == ("promote_best_challenger", 500)
    assert cfg.concept_for("other/nb").detector == "adwin"
    assert cfg.concept_monitor("shadow/x@1") is None
    assert cfg.prediction_monitor("default/lr") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"concept": {"detector": "adwinn"}}, r"\[drift.concept\] unknown drift detector 'adwinn'"),
        ({"concept": {"params": {"delt": 1}}}, "has no parameter 'delt'"),
        ({"concept": {"policy": "retrain"}}, "drift policy 'retrain'"),
        ({"concept": {"min_spacing": -1}}, "min_spacing = -1: must be >= 0"),
        ({"concept": {"retrain_buffer": 10, "retrain_recent": 20}}, "retrain_recent=20"),
        ({"features": {"psi_threshold": False, "ks_threshold": False}}, "both off"),
        ({"features": {"reference_size": "big"}}, "reference_size = 'big': expected a number"),
        ({"features": {"window": "hopping"}}, "window = 'hopping'"),
        ({"label": {"bins": True}}, "expected a number"),
        ({"features": {"overrides": {"a": {"include": ["x"]}}}}, r"\[drift.features.overrides.a\] has unknown keys"),
        ({"concpt": {}}, r"\[drift\] has unknown keys \['concpt'\]"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(DriftConfigError, match=message):
        DriftConfig.from_dict(raw)


def test_config_from_spec() -> None:
    from streams.spec import PipelineSpec

    spec = PipelineSpec.from_toml('[event]\n[drift.concept]\ndetector = "ddm"\n')
    assert DriftConfig.from_spec(spec).concept.detector == "ddm"
