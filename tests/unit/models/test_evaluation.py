"""Online (test-then-train) scoring: values equal River's metrics, rolling windows, label types."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import metrics

from models.evaluation import OnlineScorer, WindowedMetric, higher_is_better


def _binary_stream(n: int, seed: int = 1) -> list[tuple[bool, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.4
        p = min(max(rng.gauss(0.65 if y else 0.35, 0.2), 0.0), 1.0)
        out.append((y, p))
    return out


def test_binary_bool_metrics_equal_rivers() -> None:
    scorer = OnlineScorer("classification", rolling_window=50)
    acc, ll, auc, f1 = metrics.Accuracy(), metrics.LogLoss(), metrics.ROCAUC(), metrics.F1()
    stream = _binary_stream(400)
    for y, p in stream:
        y_pred = p > 0.5
        scorer.update(y, y_pred, {True: p, False: 1 - p})
        acc.update(y, y_pred)
        ll.update(y, p)
        auc.update(y, p)
        f1.update(y, y_pred)
    snap = scorer.snapshot()
    assert snap["n"] == 400.0 and snap["n_rolling"] == 50.0
    assert snap["accuracy"] == acc.get()
    assert snap["log_loss"] == pytest.approx(ll.get(), rel=1e-12)
    assert snap["roc_auc"] == auc.get()
    assert snap["f1"] == f1.get()


def test_rolling_metrics_are_the_metrics_of_the_last_window() -> None:
    window = 37
    scorer = OnlineScorer("classification", rolling_window=window)
    stream = _binary_stream(300, seed=2)
    for y, p in stream:
        scorer.update(y, p > 0.5, {True: p, False: 1 - p})
    fresh = OnlineScorer("classification", rolling_window=window)
    for y, p in stream[-window:]:
        fresh.update(y, p > 0.5, {True: p, False: 1 - p})
    snap, ref = scorer.snapshot(), fresh.snapshot()
    for name in ("accuracy", "log_loss", "f1"):
        assert snap[f"{name}_rolling"] == pytest.approx(ref[name], rel=1e-9)
    # Rolling ROC AUC is exact (RollingROCAUC); cumulative is River's 10-threshold estimate.
    exact = metrics.RollingROCAUC(window_size=window)
    for y, p in stream[-window:]:
        exact.update(y, p)
    assert snap["roc_auc_rolling"] == pytest.approx(exact.get())


def test_string_classes_with_a_positive_class_use_binary_metrics() -> None:
    scorer = OnlineScorer("classification", rolling_window=10, positive="spam")
    reference = OnlineScorer("classification", rolling_window=10)
    for y, p in _binary_stream(100, seed=3):
        label = "spam" if y else "ham"
        pred = "spam" if p > 0.5 else "ham"
        scorer.update(label, pred, {"spam": p, "ham": 1 - p})
        reference.update(y, p > 0.5, {True: p, False: 1 - p})
    assert scorer.snapshot() == reference.snapshot()


def test_multiclass_strings_without_positive_use_macro_f1_and_cross_entropy() -> None:
    scorer = OnlineScorer("classification", rolling_window=10)
    f1, ce = metrics.MacroF1(), metrics.CrossEntropy()
    rng = random.Random(4)
    for _ in range(60):
        y = rng.choice("abc")
        proba = {c: rng.random() for c in "abc"}
        total = sum(proba.values())
        proba = {c: v / total for c, v in proba.items()}
        y_pred = max(proba, key=proba.__getitem__)
        scorer.update(y, y_pred, proba)
        f1.update(y, y_pred)
        ce.update(y, proba)
    snap = scorer.snapshot()
    assert "roc_auc" not in snap
    assert snap["f1"] == f1.get()
    assert snap["log_loss"] == pytest.approx(ce.get())


def test_int_labels_are_binary_only_with_a_positive_class() -> None:
    plain = OnlineScorer("classification")
    with_positive = OnlineScorer("classification", positive=1)
    for y, p in _binary_stream(50, seed=5):
        plain.update(int(y), int(p > 0.5), {1: p, 0: 1 - p})
        with_positive.update(int(y), int(p > 0.5), {1: p, 0: 1 - p})
    assert "roc_auc" not in plain.snapshot()
    assert "roc_auc" in with_positive.snapshot()
    assert plain.get("accuracy") == with_positive.get("accuracy")


def test_probabilities_keyed_by_text_as_json_gives_them_back() -> None:
    native, from_json = OnlineScorer("classification"), OnlineScorer("classification")
    for y, p in _binary_stream(100, seed=6):
        native.update(y, p > 0.5, {True: p, False: 1 - p})
        from_json.update(y, p > 0.5, {"true": p, "false": 1 - p})
    assert from_json.snapshot() == native.snapshot()
    ints = OnlineScorer("classification", positive=1)
    ints.update(1, 1, {"1": 0.9, "0": 0.1})
    assert ints.get("log_loss") == pytest.approx(-math.log(0.9))


def test_no_prediction_is_not_scored() -> None:
    scorer = OnlineScorer("classification")
    scorer.update(True, None, {})
    assert scorer.snapshot() == {"n": 0.0, "n_rolling": 0.0}
    assert math.isnan(scorer.get("accuracy"))
    scorer.update(True, True, {True: 0.9, False: 0.1})
    assert scorer.snapshot()["n"] == 1.0 and scorer.get("accuracy") == 1.0


def test_missing_probabilities_skip_only_the_probability_metrics() -> None:
    scorer = OnlineScorer("classification")
    scorer.update(True, True, None)
    snap = scorer.snapshot()
    assert snap["accuracy"] == 1.0 and math.isnan(snap["log_loss"]) and math.isnan(snap["roc_auc"])


def test_regression_metrics() -> None:
    scorer = OnlineScorer("regression", rolling_window=2)
    ys, preds = [3.0, -1.0, 2.0, 7.0], [2.5, 0.0, 2.0, 4.0]
    for y, p in zip(ys, preds, strict=True):
        scorer.update(y, p)
    snap = scorer.snapshot()
    errors = [y - p for y, p in zip(ys, preds, strict=True)]
    assert snap["mae"] == pytest.approx(sum(abs(e) for e in errors) / 4)
    assert snap["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    mean = sum(ys) / 4
    assert snap["r2"] == pytest.approx(1 - sum(e * e for e in errors) / sum((y - mean) ** 2 for y in ys))
    assert snap["mae_rolling"] == pytest.approx((0.0 + 3.0) / 2)
    assert set(snap) == {"n", "n_rolling", "mae", "mae_rolling", "rmse", "rmse_rolling", "r2", "r2_rolling"}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        OnlineScorer("ranking")
    with pytest.raises(ValueError, match="rolling_window"):
        OnlineScorer("regression", rolling_window=0)
    with pytest.raises(ValueError, match="unknown metric"):
        OnlineScorer("regression").get("accuracy")
    with pytest.raises(ValueError, match="not a regression metric"):
        WindowedMetric("accuracy", "regression", 10)
    assert higher_is_better("r2") and not higher_is_better("log_loss")


def test_windowed_roc_auc_without_a_positive_class_stays_nan() -> None:
    w = WindowedMetric("roc_auc", "classification", 10)
    w.update("a", "a", {"a": 0.9, "b": 0.1})
    assert math.isnan(w.get())


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(1, 20),
    stream=st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), min_size=1, max_size=80),
)
def test_windowed_metric_matches_a_fresh_metric_over_the_window(
    window: int, stream: list[tuple[bool, float]]
) -> None:
    w = WindowedMetric("log_loss", "classification", window)
    for y, p in stream:
        w.update(y, p > 0.5, {True: p, False: 1 - p})
    fresh = metrics.LogLoss()
    for y, p in stream[-window:]:
        fresh.update(y, p)
    assert w.n == len(stream)
    assert w.get() == pytest.approx(fresh.get(), rel=1e-9, abs=1e-9)
