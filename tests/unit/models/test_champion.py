"""ModelGroup: reference parity with River, test-then-train, promotion, snapshots of the whole group."""

from __future__ import annotations

import itertools
import logging
import pickle

import pytest
from river import datasets, evaluate, metrics
from river.datasets import synth

from models import factories
from models.champion import ModelGroup, PromotionPolicy
from models.spec import ModelSlotDef, parse_models


def _slot(
    champion: dict, *challengers: dict, kind: str = "classification", **promotion: object
) -> ModelSlotDef:
    raw: dict = {"champion": champion, "challengers": list(challengers)}
    if promotion:
        raw["promotion"] = promotion
    return parse_models([raw], kind)[0]


LR = {"name": "lr", "factory": "logistic_regression"}
HAT = {"name": "hat", "factory": "hoeffding_adaptive_tree", "params": {"seed": 42}}
ARF = {"name": "arf", "factory": "arf", "params": {"n_models": 10, "seed": 42}}


# -- reference parity (DESIGN.md "Measuring") ------------------------------------------------------


@pytest.mark.parametrize(
    ("defn", "factory", "expected"),
    [
        (LR, factories.logistic_regression, 0.8928),
        (HAT, lambda: factories.hoeffding_adaptive_tree(seed=42), 0.8743),
        (ARF, lambda: factories.arf(n_models=10, seed=42), 0.9103),
    ],
    ids=["logistic_regression", "hoeffding_adaptive_tree", "arf"],
)
def test_phishing_parity_with_progressive_val_score(defn: dict, factory: object, expected: float) -> None:
    reference = evaluate.progressive_val_score(datasets.Phishing(), factory(), metrics.Accuracy())  # type: ignore[operator]
    group = ModelGroup(_slot(defn))
    for x, y in datasets.Phishing():
        group.score_and_learn(x, y)
    ours = group.metrics()[defn["name"]]
    assert ours["accuracy"] == reference.get()  # exactly, not approximately
    assert round(ours["accuracy"], 4) == expected


def test_phishing_roc_auc_parity_for_the_champion_and_every_challenger() -> None:
    group = ModelGroup(_slot(LR, HAT))
    for x, y in datasets.Phishing():
        group.score_and_learn(x, y)
    auc = evaluate.progressive_val_score(
        datasets.Phishing(), factories.logistic_regression(), metrics.ROCAUC()
    )
    assert group.metrics()["lr"]["roc_auc"] == auc.get()
    assert round(auc.get(), 4) == 0.9507
    # The challenger is scored exactly as if it ran alone.
    assert round(group.metrics()["hat"]["accuracy"], 4) == 0.8743


# -- test-then-train -------------------------------------------------------------------------------


def test_every_model_predicts_before_it_learns() -> None:
    group = ModelGroup(_slot(LR, HAT))
    shadow_lr, shadow_hat = factories.logistic_regression(), factories.hoeffding_adaptive_tree(seed=42)
    for x, y in itertools.islice(datasets.Phishing(), 400):
        predictions = group.score_and_learn(x, y)
        assert predictions == {"lr": shadow_lr.predict_one(x), "hat": shadow_hat.predict_one(x)}
        shadow_lr.learn_one(x, y)
        shadow_hat.learn_one(x, y)
    assert group.examples_learned == 400
    assert group.predict({"long_url": 1.0}) == (
        shadow_lr.predict_one({"long_url": 1.0}),
        shadow_lr.predict_proba_one({"long_url": 1.0}),
    )


def test_missing_features_are_left_out() -> None:
    group = ModelGroup(_slot(LR))
    twin = factories.logistic_regression()
    for i in range(50):
        x = {"a": float(i), "b": None, "c": float("nan")}
        group.score_and_learn(x, i % 3 == 0)
        twin.learn_one({"a": float(i)}, i % 3 == 0)
    assert group.predict({"a": 3.0, "b": None})[1] == twin.predict_proba_one({"a": 3.0})


def test_regression_group() -> None:
    slot = _slot({"name": "lin", "factory": "linear_regression"},
                 {"name": "tree", "factory": "hoeffding_tree_regressor"}, kind="regression")
    group = ModelGroup(slot)
    for x, y in itertools.islice(synth.Friedman(seed=1), 300):
        group.score_and_learn(x, y)
    snap = group.metrics()
    assert set(snap["lin"]) >= {"mae", "rmse", "r2", "mae_rolling"}
    assert snap["lin"]["n"] == 300.0 and snap["tree"]["n"] == 300.0
    y_pred, proba = group.predict(x)
    assert isinstance(y_pred, float) and proba is None


# -- promotion -------------------------------------------------------------------------------------

# Agrawal's function 0 labels by age bands (< 40 or >= 60): not linear, a tree gets it, a linear model
# cannot. Seeded, so the promotion point is exact.
def _agrawal(n: int) -> list[tuple[dict, int]]:
    return list(itertools.islice(synth.Agrawal(classification_function=0, seed=42), n))


def test_challenger_that_wins_is_promoted_at_its_minimum_not_before(caplog: pytest.LogCaptureFixture) -> None:
    slot = _slot(LR, HAT, metric="accuracy", margin=0.02, window=500, min_examples=1000)
    group = ModelGroup(slot)
    events = []
    ahead_before_minimum = False
    with caplog.at_level(logging.INFO, logger="models.champion"):
        for i, (x, y) in enumerate(_agrawal(1500), start=1):
            group.score_and_learn(x, y)
            snap = group.metrics()
            window = "promotion_accuracy_window"
            if i < 1000 and snap["hat"][window] - snap["lr"][window] >= 0.02:
                ahead_before_minimum = True
            event = group.maybe_promote()
            if event is not None:
                events.append((i, event))
    # The tree led by more than the margin long before it had the minimum number of examples...
    assert ahead_before_minimum
    # ...and was promoted at the first example where it had been scored on 1000 (its first example
    # could not be predicted: an empty tree predicts nothing).
    [(at, event)] = events
    assert at == 1001
    assert event.promoted == "hat" and event.demoted == "lr"
    assert event.challenger_examples == 1000 and event.examples_learned == 1001
    assert event.challenger_value == pytest.approx(0.944)
    assert event.champion_value == pytest.approx(0.664)
    assert event.challenger_value - event.champion_value >= event.margin
    assert group.champion == "hat" and group.challengers == ["lr"]
    assert group.promotions == [event]
    assert "promoted hat over lr" in caplog.text
    # The champion serves: predictions now come from the tree.
    x = _agrawal(1)[0][0]
    assert group.predict(x) == group.predict(x, "hat")


def test_no_promotion_without_a_margin_of_victory() -> None:
    twin = {"name": "twin", "factory": "logistic_regression"}
    group = ModelGroup(_slot(LR, twin, margin=0.0, window=100, min_examples=10))
    for x, y in itertools.islice(datasets.Phishing(), 500):
        group.score_and_learn(x, y)
        assert group.maybe_promote() is None  # equal is not better


def test_lower_is_better_metrics_and_the_best_challenger_wins() -> None:
    policy = PromotionPolicy(metric="mae", margin=0.5, min_examples=10, window=10)
    assert policy.choose("a", {"a": 3.0, "b": 2.4, "c": 2.0}, {"b": 10, "c": 10}) == ("c", 2.0)
    assert policy.choose("a", {"a": 3.0, "b": 2.6}, {"b": 10}) is None
    assert policy.choose("a", {"a": float("nan"), "b": 1.0}, {"b": 10}) is None
    with pytest.raises(ValueError, match="unknown metric"):
        PromotionPolicy(metric="auc")


def test_manual_promotion_is_logged_and_returned(caplog: pytest.LogCaptureFixture) -> None:
    group = ModelGroup(_slot(LR, HAT))
    with caplog.at_level(logging.INFO, logger="models.champion"):
        event = group.promote("hat")
    assert (event.promoted, event.demoted, event.reason) == ("hat", "lr", "manual")
    assert group.champion == "hat" and "reason manual" in caplog.text
    with pytest.raises(KeyError):
        group.promote("nope")


# -- snapshots of the whole group -----------------------------------------------------------------


def test_state_round_trip_continues_identically() -> None:
    stream = _agrawal(1200)
    slot = _slot(LR, HAT, margin=0.02, window=200, min_examples=300)
    group = ModelGroup(slot)
    for x, y in stream[:250]:
        group.score_and_learn(x, y)
        group.maybe_promote()
    twin = ModelGroup.from_state(pickle.loads(pickle.dumps(group.state())))
    assert twin.metrics() == group.metrics()
    for x, y in stream[250:]:
        assert twin.score_and_learn(x, y) == group.score_and_learn(x, y)
        assert twin.maybe_promote() == group.maybe_promote()
    assert twin.champion == group.champion == "hat"
    assert twin.metrics() == group.metrics()
    assert twin.promotions == group.promotions


def test_from_state_follows_the_spec_as_it_is_now(caplog: pytest.LogCaptureFixture) -> None:
    group = ModelGroup(_slot(LR, HAT))
    for x, y in itertools.islice(datasets.Phishing(), 100):
        group.score_and_learn(x, y)
    group.promote("hat")
    # The spec now lists lr with a new challenger and no hat: hat stays (it is the champion), arf starts.
    new_spec = _slot(LR, {"name": "arf", "factory": "arf", "params": {"n_models": 2}}, metric="f1")
    with caplog.at_level(logging.WARNING, logger="models.champion"):
        restored = ModelGroup.from_state(group.state(), new_spec)
    assert restored.champion == "hat"
    assert restored.names == ["hat", "lr", "arf"]
    assert restored.metrics()["arf"]["n"] == 0.0 and restored.metrics()["lr"]["n"] == 100.0
    assert restored.policy.metric == "f1"
    assert "arf is new in the spec" in caplog.text
    assert "promotion_f1_window" in restored.metrics()["lr"]
    dropped = ModelGroup.from_state(group.state(), _slot(HAT))
    assert dropped.names == ["hat"]


def test_from_state_refuses_other_objects() -> None:
    with pytest.raises(ValueError, match="not a ModelGroup state"):
        ModelGroup.from_state({"weights": [1, 2]})
    group = ModelGroup(_slot(LR))
    with pytest.raises(ValueError, match="use a new slot name"):
        ModelGroup.from_state(group.state(), _slot({"factory": "linear_regression"}, kind="regression"))
