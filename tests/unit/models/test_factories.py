"""Contract tests for every model factory (River's ``checks/`` habit), and the spec that names them."""

from __future__ import annotations

import copy
import itertools
import pickle
import tomllib
from typing import Any

import pytest
from river import base, datasets
from river.datasets import synth

from models import factories
from models.spec import (
    ModelDef,
    ModelSlotDef,
    ModelSpecError,
    PromotionConfig,
    build_model,
    parse_models,
)
from streams.spec import PipelineSpec

CLASSIFIERS = {
    "logistic_regression": {},
    "hoeffding_adaptive_tree": {"seed": 7},
    "arf": {"n_models": 3, "seed": 7},
}
REGRESSORS = {
    "linear_regression": {},
    "hoeffding_tree_regressor": {},
    "arf_regressor": {"n_models": 3, "seed": 7},
}
ALL = {**CLASSIFIERS, **REGRESSORS}


def test_every_public_factory_is_under_contract() -> None:
    assert set(factories.__all__) == set(ALL)


def _stream(name: str, n: int = 300) -> list[tuple[dict, Any]]:
    if name in CLASSIFIERS:
        return list(itertools.islice(datasets.Phishing(), n))
    return list(itertools.islice(synth.Friedman(seed=42), n))


def _predict(model: base.Estimator, x: dict) -> object:
    if isinstance(model, base.Classifier):
        return model.predict_proba_one(x)
    return model.predict_one(x)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(ALL))
def test_factory_returns_a_fresh_estimator_of_its_kind(name: str) -> None:
    build = getattr(factories, name)
    a, b = build(**ALL[name]), build(**ALL[name])
    assert a is not b
    assert isinstance(a, base.Estimator)
    kind = base.Classifier if name in CLASSIFIERS else base.Regressor
    assert isinstance(a, kind)


@pytest.mark.parametrize("name", sorted(ALL))
def test_learning_leaves_the_input_unchanged(name: str) -> None:
    model = getattr(factories, name)(**ALL[name])
    for x, y in _stream(name, 100):
        before = copy.deepcopy(x)
        _predict(model, x)
        model.learn_one(x, y)
        assert x == before


@pytest.mark.parametrize("name", sorted(ALL))
def test_model_pickles_and_keeps_learning_identically(name: str) -> None:
    stream = _stream(name)
    model = getattr(factories, name)(**ALL[name])
    for x, y in stream[:150]:
        model.learn_one(x, y)
    twin = pickle.loads(pickle.dumps(model))
    for x, y in stream[150:]:
        assert _predict(twin, x) == _predict(model, x)
        model.learn_one(x, y)
        twin.learn_one(x, y)


@pytest.mark.parametrize("name", sorted(ALL))
def test_seeded_runs_repeat_exactly(name: str) -> None:
    stream = _stream(name)
    a, b = getattr(factories, name)(**ALL[name]), getattr(factories, name)(**ALL[name])
    for x, y in stream:
        assert _predict(a, x) == _predict(b, x)
        a.learn_one(x, y)
        b.learn_one(x, y)


@pytest.mark.parametrize("name", sorted(ALL))
def test_clone_rebuilds_an_unfitted_twin(name: str) -> None:
    stream = _stream(name, 100)
    model = getattr(factories, name)(**ALL[name])
    for x, y in stream:
        model.learn_one(x, y)
    clone, fresh = model.clone(), getattr(factories, name)(**ALL[name])
    for x, y in stream:
        assert _predict(clone, x) == _predict(fresh, x)
        clone.learn_one(x, y)
        fresh.learn_one(x, y)


def test_logistic_regression_defaults_are_rivers() -> None:
    from river import linear_model, preprocessing

    ours = factories.logistic_regression()
    reference = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in _stream("logistic_regression"):
        assert ours.predict_proba_one(x) == reference.predict_proba_one(x)
        ours.learn_one(x, y)
        reference.learn_one(x, y)


# -- the [[models]] spec ---------------------------------------------------------------------------


def test_default_slot_when_the_section_is_absent() -> None:
    [slot] = parse_models(PipelineSpec.from_toml("[event]").raw.get("models"), "classification")
    assert slot == ModelSlotDef(
        slot="default",
        kind="classification",
        champion=ModelDef("lr", "models.factories:logistic_regression", {}, "champion"),
        promotion=PromotionConfig(metric="accuracy"),
    )
    assert parse_models([], "classification") == [slot]  # spec.raw.get("models", [])
    [reg] = parse_models(None, "regression")
    assert (reg.champion.name, reg.champion.factory) == ("linear", "models.factories:linear_regression")
    assert reg.promotion.metric == "mae"


def test_full_toml_section() -> None:
    raw = tomllib.loads(
        """
        [[models]]
        slot = "fraud"
        positive = true
        [models.champion]
        name = "lr"
        factory = "logistic_regression"
        params = { l2 = 0.001 }
        [[models.challengers]]
        name = "hat"
        factory = "models.factories:hoeffding_adaptive_tree"
        params = { seed = 3 }
        [[models.challengers]]
        name = "forest"
        factory = "arf"
        params = { n_models = 5 }
        [models.promotion]
        metric = "log_loss"
        margin = 0.05
        window = 200
        min_examples = 500

        [[models]]
        slot = "amount"
        kind = "regression"
        [models.champion]
        factory = "hoeffding_tree_regressor"
        """
    )
    fraud, amount = parse_models(raw["models"], "classification")
    assert fraud.champion == ModelDef("lr", "models.factories:logistic_regression", {"l2": 0.001}, "champion")
    assert [c.name for c in fraud.challengers] == ["hat", "forest"]
    assert all(c.role == "challenger" for c in fraud.challengers)
    assert fraud.promotion == PromotionConfig("log_loss", 0.05, 200, 500)
    assert fraud.positive is True
    assert build_model(fraud.challengers[1], "classification").n_models == 5  # type: ignore[attr-defined]
    assert amount.kind == "regression" and amount.promotion.metric == "mae"
    assert amount.champion.name == "hoeffding_tree_regressor"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([{"champion": {}}], "needs factory"),
        ([{"slot": "a"}], "needs a [models.champion]"),
        ([{"champion": {"factory": "arf", "bogus": 1}}], "unknown keys ['bogus']"),
        ([{"champion": {"factory": "arf"}, "challengers": [{"factory": "arf"}]}], "unique within a slot"),
        ([{"champion": {"factory": "arf"}}, {"champion": {"factory": "arf"}}], "slot names must be unique"),
        ([{"champion": {"factory": "arf"}, "promotion": {"metric": "mae"}}], "for classification use"),
        ([{"champion": {"factory": "arf"}, "promotion": {"window": 0}}], "window >= 1"),
        ([{"champion": {"factory": "arf"}, "kind": "ranking"}], "kind = 'ranking'"),
        ([{"champion": {"factory": "arf", "params": 3}}], "params must be a table"),
    ],
)
def test_bad_sections_fail_with_one_clear_line(models: list, message: str) -> None:
    with pytest.raises(ModelSpecError) as err:
        parse_models(models, "classification")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("factory", "params", "kind", "message"),
    [
        ("no_such_package.mod:f", {}, None, "cannot import 'no_such_package.mod'"),
        ("models.factories:nope", {}, None, "is not a callable"),
        ("math:pi", {}, None, "is not a callable"),
        ("builtins:dict", {}, None, "returned dict, not a River estimator"),
        ("logistic_regression", {"bogus": 1}, None, "failed"),
        ("linear_regression", {}, "classification", "not a classifier"),
        ("logistic_regression", {}, "regression", "not a regressor"),
    ],
)
def test_build_model_refuses_what_is_not_a_river_factory(
    factory: str, params: dict, kind: str | None, message: str
) -> None:
    with pytest.raises(ModelSpecError) as err:
        build_model(ModelDef("m", factory, params), kind)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_build_model_builds_a_new_model_each_time() -> None:
    defn = ModelDef("hat", "hoeffding_adaptive_tree", {"seed": 1})
    a, b = build_model(defn, "classification"), build_model(defn, "classification")
    assert a is not b and a.seed == b.seed == 1  # type: ignore[attr-defined]
