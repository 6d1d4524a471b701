"""Model factories: each builds a fresh River estimator from plain parameters.

The spec names a factory by import path (``"models.factories:logistic_regression"``, or just
``"logistic_regression"`` for the ones here) and gives its parameters; :func:`models.spec.build_model`
calls it. Models are built, never unpickled from config (DESIGN.md decision 4). The factories wrap
River's classes instead of subclassing them, so ``clone()`` keeps working.

Defaults are River's own, so a factory called without arguments reproduces River's reference figures
(DESIGN.md "Measuring": StandardScaler | LogisticRegression scores 0.8928 accuracy on Phishing).

>>> model = logistic_regression()
>>> list(model.steps)
['StandardScaler', 'LogisticRegression']
>>> model.learn_one({"x": 1.0}, True)
>>> round(model.predict_proba_one({"x": 1.0})[True], 4)
0.5012
"""

from __future__ import annotations

from typing import cast

from river import base, forest, linear_model, optim, preprocessing, tree

__all__ = [
    "arf",
    "arf_regressor",
    "hoeffding_adaptive_tree",
    "hoeffding_tree_regressor",
    "linear_regression",
    "logistic_regression",
]


def logistic_regression(
    l2: float = 0.0, lr: float = 0.01, intercept_lr: float = 0.01, l1: float = 0.0
) -> base.Classifier:
    """``StandardScaler | LogisticRegression`` with plain SGD (River's defaults).

    >>> logistic_regression(l2=0.001)["LogisticRegression"].l2
    0.001
    """
    # A Pipeline whose last step classifies is a Classifier to River (isinstance says so); mypy needs telling.
    return cast(
        base.Classifier,
        preprocessing.StandardScaler()
        | linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2, l1=l1, intercept_lr=intercept_lr),
    )


def hoeffding_adaptive_tree(
    seed: int = 42,
    grace_period: int = 200,
    max_depth: int | None = None,
    delta: float = 1e-7,
    leaf_prediction: str = "nba",
    max_size: float = 100.0,
) -> base.Classifier:
    """A Hoeffding Adaptive Tree classifier (drift-aware: subtrees are replaced when they degrade).

    >>> hoeffding_adaptive_tree(seed=7).seed
    7
    """
    return tree.HoeffdingAdaptiveTreeClassifier(
        grace_period=grace_period,
        max_depth=max_depth,
        delta=delta,
        leaf_prediction=leaf_prediction,
        max_size=max_size,
        seed=seed,
    )


def arf(
    n_models: int = 10,
    seed: int = 42,
    max_features: str | int = "sqrt",
    lambda_value: int = 6,
    grace_period: int = 50,
    max_size: float = 100.0,
) -> base.Classifier:
    """An Adaptive Random Forest classifier.

    It is the most accurate and the heaviest of these (about 1.4 ms per event and an 82 MiB pickle
    after 20k events, DESIGN.md "Measuring"): ``max_size`` caps each tree in MiB, and a slot holding
    one should snapshot less often.

    >>> arf(n_models=3).n_models
    3
    """
    return forest.ARFClassifier(
        n_models=n_models,
        max_features=max_features,
        lambda_value=lambda_value,
        grace_period=grace_period,
        max_size=max_size,
        seed=seed,
    )


def linear_regression(
    l2: float = 0.0, lr: float = 0.01, intercept_lr: float = 0.01, l1: float = 0.0
) -> base.Regressor:
    """``StandardScaler | LinearRegression`` with plain SGD (River's defaults).

    >>> model = linear_regression()
    >>> model.learn_one({"x": 1.0}, 2.0)
    >>> model.predict_one({"x": 1.0}) > 0
    True
    """
    return cast(
        base.Regressor,
        preprocessing.StandardScaler()
        | linear_model.LinearRegression(optimizer=optim.SGD(lr), l2=l2, l1=l1, intercept_lr=intercept_lr),
    )


def hoeffding_tree_regressor(
    grace_period: int = 200,
    max_depth: int | None = None,
    leaf_prediction: str = "adaptive",
    model_selector_decay: float = 0.95,
    max_size: float = 500.0,
    scale: bool = True,
) -> base.Regressor:
    """A Hoeffding Tree regressor, behind a ``StandardScaler`` (its leaves hold linear models).

    >>> hoeffding_tree_regressor(scale=False).grace_period
    200
    """
    model = tree.HoeffdingTreeRegressor(
        grace_period=grace_period,
        max_depth=max_depth,
        leaf_prediction=leaf_prediction,
        model_selector_decay=model_selector_decay,
        max_size=max_size,
    )
    if scale:
        return cast(base.Regressor, preprocessing.StandardScaler() | model)
    return model


def arf_regressor(n_models: int = 10, seed: int = 42, max_features: str | int = "sqrt") -> base.Regressor:
    """An Adaptive Random Forest regressor.

    >>> arf_regressor(n_models=2).n_models
    2
    """
    return forest.ARFRegressor(n_models=n_models, max_features=max_features, seed=seed)
