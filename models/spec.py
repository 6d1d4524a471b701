"""The ``[[models]]`` section of the pipeline spec: which models learn, in which slots, how one is promoted.

A *slot* is one ordered learner (DESIGN.md decision 3): its champion serves predictions; its challengers
learn the same examples in shadow and are scored the same way. Each model is built by a factory named by
import path (``"package.module:function"``; a bare name means one of :mod:`models.factories`) and
its parameters: models are built, never unpickled from config (decision 4).

The TOML format (every key but ``champion.factory`` has a default; with no ``[[models]]`` section at all
there is one slot ``"default"`` whose champion is ``"lr"`` built by ``logistic_regression``, or
``"linear"`` built by ``linear_regression`` when ``[label] kind = "regression"``)::

    [[models]]
    slot = "default"                  # slot name: the key of the examples topic and of model versions
    kind = "classification"           # defaults to [label] kind
    positive = true                   # class scored as positive by F1 / ROC AUC (default: true for bools)
    [models.champion]
    name = "lr"                       # unique within the slot; default: the factory's name
    factory = "logistic_regression"   # or "package.module:function"
    params = { l2 = 0.0 }
    [[models.challengers]]
    name = "hat"
    factory = "models.factories:hoeffding_adaptive_tree"
    params = { seed = 42 }
    [models.promotion]
    metric = "accuracy"               # accuracy, log_loss, roc_auc, f1 (classification); mae, rmse, r2
    margin = 0.01                     # the challenger must beat the champion by this much (metric units)
    window = 1000                     # ... over this many most recent examples
    min_examples = 1000               # ... and only after it was scored on this many
    test = "margin"                   # or "sprt": a sequential test on the paired errors (models/sequential.py)
    alpha = 0.05                      # sprt: the false-promotion rate you accept
    beta = 0.05                       # sprt: the rate of missing a challenger better by `effect`
    effect = 0.1                      # sprt: P(challenger right | the two disagree) = 0.5 + effect under H1
    [models.routing]                  # who serves: champion (default), split, canary, bandit (models/routing.py)
    kind = "champion"

>>> import tomllib
>>> raw = tomllib.loads('''
... [[models]]
... slot = "fraud"
... [models.champion]
... factory = "logistic_regression"
... [[models.challengers]]
... name = "hat"
... factory = "models.factories:hoeffding_adaptive_tree"
... params = { seed = 1 }
... [models.promotion]
... margin = 0.02
... ''')
>>> [slot] = parse_models(raw["models"], "classification")
>>> slot.slot, slot.champion.name, [c.name for c in slot.challengers]
('fraud', 'logistic_regression', ['hat'])
>>> slot.promotion  # doctest: +NORMALIZE_WHITESPACE
PromotionConfig(metric='accuracy', margin=0.02, window=1000, min_examples=1000, test='margin',
                alpha=0.05, beta=0.05, effect=0.1)
>>> slot.routing.kind
'champion'
>>> type(build_model(slot.challengers[0])).__name__
'HoeffdingAdaptiveTreeClassifier'
>>> parse_models(None, "regression")[0].champion.factory
'models.factories:linear_regression'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from river import base

from models.errors import FreshetError
from models.routing import RoutingConfig, RoutingError, parse_routing

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "ModelDef",
    "ModelSlotDef",
    "ModelSpecError",
    "PromotionConfig",
    "build_model",
    "parse_models",
]

KINDS = ("classification", "regression")
# Metrics each kind is scored on (models.evaluation computes them; promotion may use any of them).
METRICS = {
    "classification": ("accuracy", "log_loss", "roc_auc", "f1"),
    "regression": ("mae", "rmse", "r2"),
}
HIGHER_IS_BETTER = {
    "accuracy": True, "log_loss": False, "roc_auc": True, "f1": True, "mae": False, "rmse": False, "r2": True,
}
# The default slot's champion when the spec has no [[models]]: (model name, factory).
DEFAULT_CHAMPION = {
    "classification": ("lr", "logistic_regression"),
    "regression": ("linear", "linear_regression"),
}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "mae"}


class ModelSpecError(FreshetError, ValueError):
    """The ``[[models]]`` section or a factory is wrong; the message names which and what to do."""


@dataclass(frozen=True)
class ModelDef:
    """One model: a name, the factory that builds it, its parameters, and its initial role."""

    name: str
    factory: str  # "package.module:function"
    params: dict[str, Any] = field(default_factory=dict)
    role: str = "champion"  # "champion" or "challenger" (initial role; promotion changes it)


@dataclass(frozen=True)
class PromotionConfig:
    """When a challenger replaces the champion (see :class:`models.champion.PromotionPolicy`)."""

    metric: str = "accuracy"
    margin: float = 0.01
    window: int = 1000
    min_examples: int = 1000
    test: str = "margin"  # "margin" (beat by margin over window) or "sprt" (models.sequential.PairedSPRT)
    alpha: float = 0.05
    beta: float = 0.05
    effect: float = 0.1


@dataclass(frozen=True)
class ModelSlotDef:
    """One slot: one ordered learner holding a champion and its challengers."""

    slot: str
    kind: str
    champion: ModelDef
    challengers: list[ModelDef] = field(default_factory=list)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    # Class scored as positive by F1 and ROC AUC; None: True for boolean labels, else multiclass metrics.
    positive: Any = None
    routing: RoutingConfig = field(default_factory=RoutingConfig)

    @property
    def models(self) -> list[ModelDef]:
        return [self.champion, *self.challengers]


def _resolve_factory(path: str) -> str:
    return path if ":" in path else f"models.factories:{path}"


def _model_def(raw: Any, where: str, role: str) -> ModelDef:
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where} must be a table with factory = \"package.module:function\"")
    known = {"name", "factory", "params"}
    unknown = set(raw) - known
    if unknown:
        raise ModelSpecError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    if "factory" not in raw or not isinstance(raw["factory"], str) or not raw["factory"]:
        raise ModelSpecError(
            f"{where} needs factory = \"package.module:function\" (or a models.factories name)"
        )
    factory = _resolve_factory(raw["factory"])
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise ModelSpecError(f"{where}.params must be a table of keyword arguments for {factory}")
    name = str(raw.get("name") or factory.rsplit(":", 1)[1])
    if not name or "@" in name:
        raise ModelSpecError(f"{where}.name = {name!r}: use a non-empty name without '@'")
    return ModelDef(name=name, factory=factory, params=dict(params), role=role)


def _promotion(raw: Any, where: str, kind: str) -> PromotionConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where} must be a table (metric, margin, window, min_examples)")
    known = {"metric", "margin", "window", "min_examples", "test", "alpha", "beta", "effect"}
    unknown = set(raw) - known
    if unknown:
        raise ModelSpecError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    metric = raw.get("metric", DEFAULT_METRIC[kind])
    if metric not in METRICS[kind]:
        raise ModelSpecError(f"{where}.metric = {metric!r}: for {kind} use one of {METRICS[kind]}")
    try:
        margin = float(raw.get("margin", 0.01))
        window = int(raw.get("window", 1000))
        min_examples = int(raw.get("min_examples", 1000))
    except (TypeError, ValueError):
        raise ModelSpecError(f"{where}: margin must be a number, window and min_examples integers") from None
    if margin < 0 or window < 1 or min_examples < 0:
        raise ModelSpecError(f"{where}: need margin >= 0, window >= 1 and min_examples >= 0")
    test = raw.get("test", "margin")
    if test not in ("margin", "sprt"):
        raise ModelSpecError(f"{where}.test = {test!r}: use margin or sprt")
    try:
        alpha, beta, effect = (float(raw.get(k, d)) for k, d in (("alpha", 0.05), ("beta", 0.05), ("effect", 0.1)))
    except (TypeError, ValueError):
        raise ModelSpecError(f"{where}: alpha, beta and effect must be numbers") from None
    if not (0 < alpha < 1 and 0 < beta < 1 and 0 < effect < 0.5):
        raise ModelSpecError(f"{where}: need 0 < alpha < 1, 0 < beta < 1 and 0 < effect < 0.5")
    return PromotionConfig(metric=metric, margin=margin, window=window, min_examples=min_examples, test=test,
                           alpha=alpha, beta=beta, effect=effect)


def parse_models(raw: Any, label_kind: str = "classification") -> list[ModelSlotDef]:
    """Parse ``spec.raw.get("models")``: a list of tables; None or ``[]`` gives the default slot."""
    if label_kind not in KINDS:
        raise ModelSpecError(f"label kind {label_kind!r}: use one of {KINDS}")
    if raw is None or (isinstance(raw, list) and not raw):
        name, factory = DEFAULT_CHAMPION[label_kind]
        champion = ModelDef(name, _resolve_factory(factory), {}, "champion")
        return [
            ModelSlotDef(
                slot="default", kind=label_kind, champion=champion,
                promotion=PromotionConfig(metric=DEFAULT_METRIC[label_kind]),
            )
        ]
    if isinstance(raw, Mapping):  # a single [models] table instead of [[models]]
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ModelSpecError("[[models]] must be an array of tables, each with a [models.champion]")
    slots: list[ModelSlotDef] = []
    for i, entry in enumerate(raw):
        where = f"[[models]] #{i + 1}"
        if not isinstance(entry, Mapping):
            raise ModelSpecError(f"{where} must be a table")
        known = {"slot", "kind", "positive", "champion", "challengers", "promotion", "routing"}
        unknown = set(entry) - known
        if unknown:
            raise ModelSpecError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        slot = str(entry.get("slot", "default"))
        if not slot or "@" in slot:
            raise ModelSpecError(f"{where} slot = {slot!r}: use a non-empty name without '@'")
        where = f"[[models]] slot {slot!r}"
        kind = entry.get("kind", label_kind)
        if kind not in KINDS:
            raise ModelSpecError(f"{where} kind = {kind!r}: use one of {KINDS}")
        if "champion" not in entry:
            raise ModelSpecError(f"{where} needs a [models.champion] table with a factory")
        champion = _model_def(entry["champion"], f"{where} champion", "champion")
        challengers_raw = entry.get("challengers", [])
        if not isinstance(challengers_raw, list):
            raise ModelSpecError(f"{where}: challengers must be an array of tables ([[models.challengers]])")
        challengers = [
            _model_def(c, f"{where} challenger #{j + 1}", "challenger") for j, c in enumerate(challengers_raw)
        ]
        names = [champion.name] + [c.name for c in challengers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelSpecError(f"{where}: model names must be unique within a slot; repeated: {dupes}")
        promotion = _promotion(entry.get("promotion"), f"{where} promotion", kind)
        try:
            routing = parse_routing(entry.get("routing"), slot, names, kind)
        except RoutingError as exc:
            raise ModelSpecError(str(exc)) from None
        slots.append(
            ModelSlotDef(
                slot=slot, kind=kind, champion=champion, challengers=challengers, promotion=promotion,
                positive=entry.get("positive"), routing=routing,
            )
        )
    slot_names = [s.slot for s in slots]
    dupes = sorted({n for n in slot_names if slot_names.count(n) > 1})
    if dupes:
        raise ModelSpecError(f"[[models]]: slot names must be unique; repeated: {dupes}")
    return slots


def build_model(defn: ModelDef, kind: str | None = None) -> base.Estimator:
    """Import the factory, call it with the parameters, and check it returned a River estimator.

    With ``kind``, also check it is a classifier or a regressor accordingly.

    >>> build_model(ModelDef("x", "builtins:dict"))
    Traceback (most recent call last):
    ...
    models.spec.ModelSpecError: model 'x': factory builtins:dict returned dict, not a River estimator; ...
    """
    path = _resolve_factory(defn.factory)
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSpecError(
            f"model {defn.name!r}: cannot import {module_name!r} for factory {path} ({exc}); check the path"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelSpecError(
            f"model {defn.name!r}: {path} is not a callable in {module_name}; name a factory function"
        )
    try:
        model = factory(**defn.params)
    except TypeError as exc:
        raise ModelSpecError(f"model {defn.name!r}: {path}(**{defn.params!r}) failed: {exc}") from None
    if not isinstance(model, base.Estimator):
        raise ModelSpecError(
            f"model {defn.name!r}: factory {path} returned {type(model).__name__}, not a River estimator; "
            "a factory must build and return a River model"
        )
    if kind == "classification" and not isinstance(model, base.Classifier):
        raise ModelSpecError(f"model {defn.name!r}: {path} built {type(model).__name__}, not a classifier")
    if kind == "regression" and not isinstance(model, base.Regressor):
        raise ModelSpecError(f"model {defn.name!r}: {path} built {type(model).__name__}, not a regressor")
    return model
