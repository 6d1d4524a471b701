"""The ``[drift]`` section of the pipeline spec: which detectors watch what, with which thresholds.

Every key is optional; the values shown are the defaults::

    [drift.concept]                 # concept drift on each model's test-then-train error stream
    enabled = true
    detector = "adwin"              # adwin | page_hinkley | kswin | ddm | eddm | hddm_a | hddm_w | fhddm
    params = {}                     # the detector's River parameters, over freshet's defaults
    seed = 42                       # for detectors that take one (kswin)
    min_spacing = 500               # values (examples) between two drift alerts of one model
    warnings = true                 # publish warning alerts (detectors with a warning zone)
    alert_on = "increase"           # "increase": a drop in error is no alert; "any"
    policy = "alert"                # alert | promote_best_challenger | reset_and_retrain
    retrain_buffer = 200            # recent examples kept per model for reset_and_retrain
    retrain_recent = 200            # how many of them the fresh model learns (default: retrain_buffer)
    min_gain = 0.0                  # promote only a challenger better than the champion by more than this
    min_challenger_examples = 0     # ... and that has learned at least this many examples
    fallback = "alert"              # promote_best_challenger without a better challenger: alert | reset_and_retrain

    [drift.concept.models."default/lr"]   # per model: any key above, over [drift.concept]
    detector = "ddm"
    policy = "reset_and_retrain"

    [drift.features]                # data drift, one window monitor per feature
    enabled = true
    reference_size = 1000           # values in the reference window
    current_size = 1000             # values in the current window
    window = "sliding"              # sliding (checked every check_every values) | tumbling
    check_every = 100
    bins = 10                       # quantile bins of the reference for PSI
    psi_threshold = 0.2             # alert above; false turns PSI off
    ks_threshold = 0.15             # alert above; false turns KS off (KS: numeric values only)
    rebase = "refill"               # after an alert: refill the reference | "current" window as reference
    include = []                    # features to watch (default: all); exclude = [] to skip some
    [drift.features.overrides.amount_mean_300s]   # per feature: any window key
    psi_threshold = 0.3

    [drift.prediction]              # prediction drift on each model's served scores (same keys)
    [drift.label]                   # label shift on the labels (same keys)

A model is looked up in ``[drift.concept.models]`` by its name without the version (``"default/lr"`` for
``"default/lr@3"``), then by the part after the slot (``"lr"``), then by the slot (``"default"``).

>>> cfg = DriftConfig.from_toml('''
... [drift.concept]
... detector = "page_hinkley"
... params = { threshold = 40 }
... [drift.concept.models.fraud]
... detector = "ddm"
... policy = "reset_and_retrain"
... retrain_buffer = 2000
... [drift.features]
... reference_size = 500
... ks_threshold = false
... ''')
>>> cfg.concept_for("default/lr@3").detector, cfg.concept_for("default/lr@3").params
('page_hinkley', {'threshold': 40})
>>> c = cfg.concept_for("fraud@7")
>>> c.detector, c.params, c.policy.kind, c.policy.retrain_buffer
('ddm', {}, 'reset_and_retrain', 2000)
>>> cfg.concept_monitor("fraud@7").detector_name
'ddm'
>>> m = cfg.feature_monitors().monitor("amount")
>>> m.reference_size, m.current_size, m.psi_threshold, m.ks_threshold
(500, 1000, 0.2, None)
>>> DriftConfig.from_dict({"concept": {"detektor": "adwin"}})
Traceback (most recent call last):
...
models.drift.config.DriftConfigError: [drift.concept] has unknown keys ['detektor']; allowed: alert_on, detector, enabled, fallback, min_challenger_examples, min_gain, min_spacing, models, params, policy, retrain_buffer, retrain_recent, seed, warnings
"""  # noqa: E501

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from models.clock import Clock, system_clock
from models.drift.concept import ConceptDriftMonitor, build_detector, detector_name
from models.drift.distribution import FeatureDriftMonitors, WindowDriftMonitor
from models.drift.policy import DriftPolicy
from models.errors import FreshetError


class DriftConfigError(FreshetError, ValueError):
    """The ``[drift]`` section is malformed; the message names the key and what is expected."""


_CONCEPT_KEYS = {
    "enabled", "detector", "params", "seed", "min_spacing", "warnings", "alert_on", "policy",
    "retrain_buffer", "retrain_recent", "min_gain", "min_challenger_examples", "fallback",
}
_WINDOW_KEYS = {
    "enabled", "reference_size", "current_size", "window", "check_every", "bins", "psi_threshold",
    "ks_threshold", "rebase", "include", "exclude", "overrides",
}
_POLICY_KEYS = {
    "policy", "retrain_buffer", "retrain_recent", "min_gain", "min_challenger_examples", "fallback",
}
_MONITOR_KEYS = _WINDOW_KEYS - {"enabled", "include", "exclude", "overrides"}


@dataclass(frozen=True)
class ConceptConfig:
    """Concept-drift settings of one model."""

    enabled: bool = True
    detector: str = "adwin"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 42
    min_spacing: int = 500
    warnings: bool = True
    alert_on: str = "increase"
    policy: DriftPolicy = field(default_factory=DriftPolicy)

    def monitor(self, subject: str, clock: Clock = system_clock) -> ConceptDriftMonitor:
        return ConceptDriftMonitor(
            self.detector, self.params, subject=subject, seed=self.seed, min_spacing=self.min_spacing,
            alert_on=self.alert_on, emit_warnings=self.warnings, clock=clock,
        )


@dataclass(frozen=True)
class WindowConfig:
    """Settings of the window monitors of one kind (features, predictions or labels)."""

    enabled: bool = True
    reference_size: int = 1000
    current_size: int = 1000
    window: str = "sliding"
    check_every: int = 100
    bins: int = 10
    psi_threshold: float | None = 0.2
    ks_threshold: float | None = 0.15
    rebase: str = "refill"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def monitor_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in sorted(_MONITOR_KEYS)}


@dataclass(frozen=True)
class DriftConfig:
    """The parsed ``[drift]`` section (see the module docstring for the format)."""

    concept: ConceptConfig = field(default_factory=ConceptConfig)
    concept_models: dict[str, ConceptConfig] = field(default_factory=dict)
    features: WindowConfig = field(default_factory=WindowConfig)
    prediction: WindowConfig = field(default_factory=WindowConfig)
    label: WindowConfig = field(default_factory=WindowConfig)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DriftConfig:
        """Parse the ``[drift]`` table (``None`` or ``{}``: all defaults)."""
        raw = dict(raw or {})
        _check_keys("[drift]", raw, {"concept", "features", "prediction", "label"})
        concept_raw = dict(_table("[drift.concept]", raw.get("concept", {})))
        models_raw = _table("[drift.concept.models]", concept_raw.pop("models", {}))
        concept = _parse_concept("[drift.concept]", concept_raw, ConceptConfig(), extra_keys={"models"})
        models = {
            str(name): _parse_concept(
                f"[drift.concept.models.{name}]", _table(f"[drift.concept.models.{name}]", m), concept,
                inherit_raw=concept_raw,
            )
            for name, m in models_raw.items()
        }
        return cls(
            concept=concept,
            concept_models=models,
            features=_parse_window("[drift.features]", raw.get("features", {})),
            prediction=_parse_window("[drift.prediction]", raw.get("prediction", {})),
            label=_parse_window("[drift.label]", raw.get("label", {})),
        )

    @classmethod
    def from_toml(cls, text: str) -> DriftConfig:
        """Parse a TOML document holding a ``[drift]`` table."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DriftConfigError(f"drift config is not valid TOML: {exc}") from None
        return cls.from_dict(doc.get("drift"))

    @classmethod
    def from_spec(cls, spec: Any) -> DriftConfig:
        """From a :class:`streams.spec.PipelineSpec` (its ``raw["drift"]``)."""
        return cls.from_dict(getattr(spec, "raw", {}).get("drift"))

    def concept_for(self, model: str) -> ConceptConfig:
        """The concept settings of ``model`` ("slot/name@version"; see the module docstring)."""
        name = model.split("@", 1)[0]
        slot, _, short = name.partition("/")
        for key in (name, short, slot):
            if key and key in self.concept_models:
                return self.concept_models[key]
        return self.concept

    def policy_for(self, model: str) -> DriftPolicy:
        return self.concept_for(model).policy

    def concept_monitor(
        self, model: str, clock: Clock = system_clock
    ) -> ConceptDriftMonitor | None:
        """A monitor for ``model`` (alerts name ``model`` without its version), or ``None`` if disabled."""
        cfg = self.concept_for(model)
        return cfg.monitor(model.split("@", 1)[0], clock) if cfg.enabled else None

    def feature_monitors(self, clock: Clock = system_clock) -> FeatureDriftMonitors | None:
        f = self.features
        if not f.enabled:
            return None
        return FeatureDriftMonitors(
            f.monitor_kwargs(), features=f.include, exclude=f.exclude, overrides=f.overrides, clock=clock
        )

    def prediction_monitor(
        self, model: str, clock: Clock = system_clock
    ) -> WindowDriftMonitor | None:
        """Prediction drift on ``model``'s served scores (subject: the model name without version)."""
        return _window_monitor(self.prediction, model.split("@", 1)[0], "prediction", clock)

    def label_monitor(
        self, subject: str = "labels", clock: Clock = system_clock
    ) -> WindowDriftMonitor | None:
        """Label shift on the labels (one monitor; ``subject`` names it in alerts)."""
        return _window_monitor(self.label, subject, "label", clock)


def _window_monitor(
    cfg: WindowConfig, subject: str, kind: str, clock: Callable[[], float]
) -> WindowDriftMonitor | None:
    if not cfg.enabled:
        return None
    kwargs = {**cfg.monitor_kwargs(), **cfg.overrides.get(subject, {})}
    return WindowDriftMonitor(subject, kind=kind, clock=clock, **kwargs)


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DriftConfigError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _check_keys(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise DriftConfigError(
            f"{where} has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _typed(where: str, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are Python ints: refuse them where a number is expected.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("boolean" if k is bool else "string" if k is str else "number" for k in kinds)
        raise DriftConfigError(f"{where} {key} = {value!r}: expected a {names}")
    return value


def _parse_concept(
    where: str,
    raw: Mapping[str, Any],
    base: ConceptConfig,
    inherit_raw: Mapping[str, Any] | None = None,
    extra_keys: set[str] | None = None,
) -> ConceptConfig:
    _check_keys(where, raw, _CONCEPT_KEYS | (extra_keys or set()))
    changes: dict[str, Any] = {}
    if "enabled" in raw:
        changes["enabled"] = _typed(where, "enabled", raw["enabled"], bool)
    if "detector" in raw:
        try:
            changes["detector"] = detector_name(_typed(where, "detector", raw["detector"], str))
        except ValueError as exc:
            raise DriftConfigError(f"{where} {exc}") from None
        # A model that picks another detector does not inherit the default detector's parameters.
        if changes["detector"] != base.detector:
            changes["params"] = {}
    if "params" in raw:
        changes["params"] = dict(_table(f"{where} params", raw["params"]))
    if "seed" in raw:
        changes["seed"] = _typed(where, "seed", raw["seed"], int)
    if "min_spacing" in raw:
        changes["min_spacing"] = _positive(where, "min_spacing", raw["min_spacing"], allow_zero=True)
    if "warnings" in raw:
        changes["warnings"] = _typed(where, "warnings", raw["warnings"], bool)
    if "alert_on" in raw:
        if raw["alert_on"] not in ("increase", "any"):
            raise DriftConfigError(f"{where} alert_on = {raw['alert_on']!r}: use 'increase' or 'any'")
        changes["alert_on"] = raw["alert_on"]
    if _POLICY_KEYS & set(raw):
        p = base.policy
        # retrain_recent follows retrain_buffer unless set at this level or the level above.
        recent_set = "retrain_recent" in raw or "retrain_recent" in (inherit_raw or {})
        try:
            buffer = _positive(where, "retrain_buffer", raw.get("retrain_buffer", p.retrain_buffer), True)
            changes["policy"] = DriftPolicy(
                kind=str(raw.get("policy", p.kind)),
                retrain_buffer=buffer,
                retrain_recent=(
                    _positive(where, "retrain_recent", raw.get("retrain_recent", p.retrain_recent), True)
                    if recent_set else None
                ),
                min_gain=float(_typed(where, "min_gain", raw.get("min_gain", p.min_gain), (int, float))),
                min_challenger_examples=_positive(
                    where, "min_challenger_examples",
                    raw.get("min_challenger_examples", p.min_challenger_examples), True,
                ),
                fallback=str(raw.get("fallback", p.fallback)),
                higher_is_better=p.higher_is_better,
            )
        except ValueError as exc:
            if isinstance(exc, DriftConfigError):
                raise
            raise DriftConfigError(f"{where} {exc}") from None
    cfg = replace(base, **changes)
    try:
        build_detector(cfg.detector, cfg.params, cfg.seed)
    except (ValueError, TypeError) as exc:
        raise DriftConfigError(f"{where} {exc}") from None
    return cfg


def _positive(where: str, key: str, value: Any, allow_zero: bool = False) -> int:
    value = _typed(where, key, value, int)
    if value < 0 or (value == 0 and not allow_zero):
        raise DriftConfigError(f"{where} {key} = {value}: must be {'>= 0' if allow_zero else '> 0'}")
    return int(value)


def _threshold(where: str, key: str, value: Any) -> float | None:
    if value is False:
        return None
    value = _typed(where, key, value, (int, float))
    if value <= 0:
        raise DriftConfigError(f"{where} {key} = {value}: must be > 0 (or false to turn it off)")
    return float(value)


def _parse_window(  # noqa: C901  (one check per key of [drift.*], in the order the reference lists them)
    where: str, raw: Any, base: WindowConfig | None = None, overrides: bool = True
) -> WindowConfig:
    raw = _table(where, raw)
    _check_keys(where, raw, _WINDOW_KEYS if overrides else _MONITOR_KEYS)
    cfg = base or WindowConfig()
    changes: dict[str, Any] = {}
    if "enabled" in raw:
        changes["enabled"] = _typed(where, "enabled", raw["enabled"], bool)
    for key in ("reference_size", "current_size", "check_every", "bins"):
        if key in raw:
            changes[key] = _positive(where, key, raw[key])
    for key in ("psi_threshold", "ks_threshold"):
        if key in raw:
            changes[key] = _threshold(where, key, raw[key])
    if "window" in raw:
        if raw["window"] not in ("sliding", "tumbling"):
            raise DriftConfigError(f"{where} window = {raw['window']!r}: use 'sliding' or 'tumbling'")
        changes["window"] = raw["window"]
    if "rebase" in raw:
        if raw["rebase"] not in ("refill", "current"):
            raise DriftConfigError(f"{where} rebase = {raw['rebase']!r}: use 'refill' or 'current'")
        changes["rebase"] = raw["rebase"]
    for key in ("include", "exclude"):
        if key in raw:
            names = raw[key]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DriftConfigError(f"{where} {key} = {names!r}: expected a list of feature names")
            changes[key] = tuple(names) if names or key == "exclude" else None
    cfg = replace(cfg, **changes)
    if cfg.psi_threshold is None and cfg.ks_threshold is None:
        raise DriftConfigError(f"{where}: psi_threshold and ks_threshold are both off; keep at least one")
    if overrides and "overrides" in raw:
        parsed: dict[str, dict[str, Any]] = {}
        for name, sub in _table(f"{where} overrides", raw["overrides"]).items():
            sub_where = f"{where[:-1]}.overrides.{name}]"
            sub_cfg = _parse_window(sub_where, sub, cfg, overrides=False)
            parsed[str(name)] = {k: getattr(sub_cfg, k) for k in sub}
        cfg = replace(cfg, overrides=parsed)
    return cfg
