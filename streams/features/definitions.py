"""Feature definitions: the ``features`` section of the pipeline spec, parsed into :class:`FeatureDef`.

One definition drives both engines: the stream (:mod:`streams.features.engine`) and pandas
(:mod:`streams.features.batch`). Features are computed per entity (the event's entity id).

The section has two shapes. The plain one is an array of tables::

    [[features]]
    name = "x1_mean_60s"            # unique; letters, digits, _ . - ; put the unit in the name
    agg = "mean"                    # see "Aggregations" below
    field = "x1"                    # the event field it reads
    window = { kind = "sliding", size_s = 60 }   # see "Windows" below
    grace_s = 2.0                   # optional, default 0: out-of-order tolerance in event time
    late_policy = "dead-letter"     # optional: "dead-letter" (default) or "drop"
    default = 0.0                   # optional: reported instead of None (empty window, no value)
    params = { ddof = 0 }           # optional: parameters of the aggregation
    description = "..."             # optional

To give every feature the same grace or late policy, use the table shape instead (TOML does not
allow ``[features.defaults]`` next to ``[[features]]``)::

    [features.defaults]
    grace_s = 5.0
    late_policy = "drop"

    [[features.list]]
    name = "..."                    # as above; a key set here wins over the default

Aggregations (``agg``)
    ``count`` (``field`` optional: without it, events; with it, valid values), ``sum``, ``mean``,
    ``min``, ``max``, ``std`` and ``variance`` (``params = { ddof = 1 }`` sample, the default, or 0),
    ``last``, ``distinct_count`` (``params = { exact_up_to = 32, precision = 8 }``),
    ``time_since_last`` (no field), a name given to
    :func:`streams.features.aggregations.register_aggregation`, or an import path
    ``"package.module:Class"`` (built with ``params`` as keyword arguments). Empty windows give
    ``count = 0``, ``sum = 0``, ``distinct_count = 0`` and None for the others (then ``default``).

Windows (``window``; every aggregation needs one — it is also how long state is kept)
    ``{ kind = "tumbling", size_s = 0.5 }``, ``{ kind = "hopping", size_s = 60, hop_s = 10 }``,
    ``{ kind = "sliding", size_s = 600, resolution_s = 30 }`` (resolution defaults to a tenth of
    the size). Sizes are seconds, sub-second allowed, whole microseconds; hops and resolutions must
    divide the size. :mod:`streams.features.windows` says which window answers "as of t".

Other kinds
    ``agg = "ratio"`` with ``numerator`` and ``denominator`` (names of other features): their quotient,
    None when either is None or the denominator is 0. ``agg = "attribute"`` with ``field``: a static
    attribute of the entity, read from its attribute hash in the online store
    (:meth:`streams.runtime.store.RedisOnlineStore.attributes`); non-numeric values give None.

Bad input: NaN, infinities, values beyond 1e100 in magnitude, missing fields and values of the wrong
type are skipped by the aggregations that read them (the event still counts for ``count`` without a
field and for ``time_since_last``). A bad event *time* is an error (``FeatureInputError``).

>>> from streams.spec import PipelineSpec
>>> spec = PipelineSpec.from_toml('''
... [event.fields]
... x1 = "float"
... category = "str"
...
... [features.defaults]
... grace_s = 5.0
...
... [[features.list]]
... name = "x1_mean_60s"
... agg = "mean"
... field = "x1"
... window = { kind = "sliding", size_s = 60 }
...
... [[features.list]]
... name = "events_60s"
... agg = "count"
... window = { kind = "hopping", size_s = 60, hop_s = 10 }
...
... [[features.list]]
... name = "x1_per_event_60s"
... agg = "ratio"
... numerator = "x1_mean_60s"
... denominator = "events_60s"
... ''')
>>> defs = parse_features(spec.raw["features"], event_fields=spec.event.fields)
>>> [(d.name, d.agg, d.grace_s) for d in defs]
[('x1_mean_60s', 'mean', 5.0), ('events_60s', 'count', 5.0), ('x1_per_event_60s', 'ratio', 5.0)]
>>> defs[0].window.describe()
'sliding 60s at 6s resolution'
>>> parse_features([{"name": "m", "agg": "mean", "field": "x1"}])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streams.errors.SpecError: [[features]] #1 'm': agg 'mean' needs a window, e.g. window = { kind = "sliding", ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from streams.errors import SpecError
from streams.features.aggregations import DEFAULT_REGISTRY, Aggregation, AggregationRegistry
from streams.features.windows import US_PER_S, WINDOW_KINDS, Window, WindowError

LATE_POLICIES = ("dead-letter", "drop")
FEATURE_KEYS = (
    "name",
    "agg",
    "field",
    "window",
    "grace_s",
    "late_policy",
    "default",
    "params",
    "numerator",
    "denominator",
    "description",
)
DEFAULT_KEYS = ("grace_s", "late_policy", "default")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class FeatureDef:
    """One feature. Build it with :func:`parse_features` (or directly, in tests).

    >>> from streams.features.windows import Window
    >>> f = FeatureDef("x1_max_1s", "max", field="x1", window=Window.tumbling(1.0))
    >>> f.kind, f.aggregation.name, f.grace_us
    ('aggregation', 'max', 0)
    """

    name: str
    agg: str
    field: str | None = None
    window: Window | None = None
    grace_s: float = 0.0
    late_policy: str = "dead-letter"
    default: float | None = None
    params: Mapping[str, Any] = dc_field(default_factory=dict)
    numerator: str | None = None
    denominator: str | None = None
    description: str = ""
    aggregation: Aggregation | None = dc_field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise SpecError(f"feature {self.name!r}: {problem}")
        if self.kind == "aggregation" and self.aggregation is None:
            try:
                object.__setattr__(self, "aggregation", DEFAULT_REGISTRY.create(self.agg, self.params))
            except ValueError as exc:
                raise SpecError(f"feature {self.name!r}: {exc}") from None

    @property
    def kind(self) -> str:
        """``"aggregation"``, ``"ratio"`` or ``"attribute"``."""
        return self.agg if self.agg in ("ratio", "attribute") else "aggregation"

    @property
    def grace_us(self) -> int:
        return round(self.grace_s * US_PER_S)

    def _problem(self) -> str | None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            return "name must start with a letter or digit and use only letters, digits, _ . -"
        if not isinstance(self.agg, str) or not self.agg:
            return "agg must be a non-empty string"
        if (
            isinstance(self.grace_s, bool)
            or not isinstance(self.grace_s, int | float)
            or not math.isfinite(self.grace_s)
            or self.grace_s < 0
        ):
            return f"grace_s = {self.grace_s!r} must be a finite number of seconds >= 0"
        if self.late_policy not in LATE_POLICIES:
            return f"late_policy = {self.late_policy!r}: use one of {LATE_POLICIES}"
        if self.default is not None and (
            isinstance(self.default, bool)
            or not isinstance(self.default, int | float)
            or not math.isfinite(self.default)
        ):
            return f"default = {self.default!r} must be a finite number"
        if self.kind == "ratio":
            if not self.numerator or not self.denominator:
                return "agg 'ratio' needs numerator and denominator (names of other features)"
            if self.field or self.window:
                return "agg 'ratio' takes no field or window (its inputs have them)"
        elif self.kind == "attribute":
            if not self.field:
                return "agg 'attribute' needs field (the attribute's name in the entity's attribute hash)"
            if self.window:
                return "agg 'attribute' takes no window (attributes are static)"
        else:
            if self.window is None:
                return (
                    f"agg {self.agg!r} needs a window, e.g. "
                    'window = { kind = "sliding", size_s = 60 }'
                )
            if self.numerator or self.denominator:
                return "numerator/denominator are only for agg 'ratio'"
        return None


def parse_features(
    raw: Any,
    *,
    registry: AggregationRegistry | None = None,
    event_fields: Mapping[str, str] | None = None,
) -> list[FeatureDef]:
    """Parse the ``features`` section (array or table shape, see the module docstring).

    ``event_fields`` (the spec's ``[event.fields]``) lets the parser check that each field exists and
    that numeric aggregations do not read string fields. Raises :class:`SpecError` naming the feature.
    """
    registry = registry or DEFAULT_REGISTRY
    defaults: dict[str, Any] = {}
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"defaults", "list"}
        if unknown:
            raise SpecError(
                f"[features] has unknown keys {sorted(unknown)}; use [features.defaults] and "
                "[[features.list]], or only [[features]]"
            )
        defaults = dict(raw.get("defaults", {}))
        bad = set(defaults) - set(DEFAULT_KEYS)
        if bad:
            raise SpecError(f"[features.defaults] has unknown keys {sorted(bad)}; allowed: {DEFAULT_KEYS}")
        entries = raw.get("list", [])
        where = "[[features.list]]"
    else:
        entries = raw
        where = "[[features]]"
    if not isinstance(entries, list):
        raise SpecError(f"{where} must be an array of tables")

    defs: list[FeatureDef] = []
    for i, entry in enumerate(entries, 1):
        label = f"{where} #{i}"
        if not isinstance(entry, Mapping):
            raise SpecError(f"{label} must be a table")
        name = entry.get("name")
        label = f"{label} {name!r}"
        defs.append(_parse_one({**defaults, **entry}, label, registry, event_fields))
    _check_names(defs, where)
    return defs


def _parse_one(  # noqa: C901  (one check per key of a feature, each with its own message)
    entry: Mapping[str, Any],
    label: str,
    registry: AggregationRegistry,
    event_fields: Mapping[str, str] | None,
) -> FeatureDef:
    unknown = set(entry) - set(FEATURE_KEYS)
    if unknown:
        raise SpecError(f"{label}: unknown keys {sorted(unknown)}; allowed: {', '.join(FEATURE_KEYS)}")
    for key in ("name", "agg"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise SpecError(f"{label}: {key} is required (a string)")
    agg_name: str = entry["agg"]
    params = entry.get("params", {})
    if not isinstance(params, Mapping):
        raise SpecError(f"{label}: params must be a table, e.g. params = {{ ddof = 0 }}")
    field_name = entry.get("field")
    if field_name is not None and (not isinstance(field_name, str) or not field_name):
        raise SpecError(f"{label}: field must be a non-empty string")
    window = None
    if "window" in entry:
        try:
            window = _parse_window(entry["window"])
        except WindowError as exc:
            raise SpecError(f"{label}: {exc}") from None

    aggregation: Aggregation | None = None
    if agg_name not in ("ratio", "attribute"):
        try:
            aggregation = registry.create(agg_name, params)
        except ValueError as exc:
            raise SpecError(f"{label}: {exc}") from None
        if aggregation.requires_field is True and field_name is None:
            raise SpecError(f"{label}: agg {agg_name!r} needs a field (the event field it reads)")
        if aggregation.requires_field is False and field_name is not None:
            raise SpecError(f"{label}: agg {agg_name!r} takes no field; remove field = {field_name!r}")
        if event_fields is not None and field_name is not None:
            if field_name not in event_fields:
                raise SpecError(
                    f"{label}: field {field_name!r} is not in [event.fields] ({', '.join(event_fields)})"
                )
            if aggregation.accepts == "number" and event_fields[field_name] == "str":
                raise SpecError(
                    f"{label}: agg {agg_name!r} needs numbers but field {field_name!r} is a str; "
                    "use count, distinct_count or a custom aggregation"
                )
    elif params:
        raise SpecError(f"{label}: agg {agg_name!r} takes no params")

    try:
        return FeatureDef(
            name=entry["name"],
            agg=agg_name,
            field=field_name,
            window=window,
            grace_s=entry.get("grace_s", 0.0),
            late_policy=entry.get("late_policy", "dead-letter"),
            default=entry.get("default"),
            params=dict(params),
            numerator=entry.get("numerator"),
            denominator=entry.get("denominator"),
            description=str(entry.get("description", "")),
            aggregation=aggregation,
        )
    except SpecError as exc:
        # FeatureDef says "feature 'x': ..."; restate with the position in the file.
        raise SpecError(f"{label}: {str(exc).split(': ', 1)[1]}") from None


def _parse_window(raw: Any) -> Window:
    if not isinstance(raw, Mapping):
        raise WindowError('window must be a table, e.g. window = { kind = "tumbling", size_s = 60 }')
    kind = raw.get("kind")
    allowed = {"tumbling": {"kind", "size_s"}, "hopping": {"kind", "size_s", "hop_s"}}.get(
        str(kind), {"kind", "size_s", "resolution_s"}
    )
    if kind not in WINDOW_KINDS:
        raise WindowError(f"window.kind = {kind!r}: use one of {', '.join(WINDOW_KINDS)}")
    unknown = set(raw) - allowed
    if unknown:
        raise WindowError(f"a {kind} window takes {sorted(allowed)}, not {sorted(unknown)}")
    if "size_s" not in raw:
        raise WindowError("window.size_s is required (seconds)")
    if kind == "tumbling":
        return Window.tumbling(raw["size_s"])
    if kind == "hopping":
        if "hop_s" not in raw:
            raise WindowError("a hopping window needs hop_s (seconds between window starts)")
        return Window.hopping(raw["size_s"], raw["hop_s"])
    return Window.sliding(raw["size_s"], raw.get("resolution_s"))


def _check_names(defs: list[FeatureDef], where: str) -> None:
    seen: set[str] = set()
    for d in defs:
        if d.name in seen:
            raise SpecError(f"{where}: feature name {d.name!r} is used twice; names must be unique")
        seen.add(d.name)
    check_ratio_inputs(defs, {d.name: f"{where} #{i} {d.name!r}" for i, d in enumerate(defs, 1)})


def check_ratio_inputs(defs: list[FeatureDef], labels: Mapping[str, str] | None = None) -> list[FeatureDef]:
    """The definitions ordered so that a ratio comes after its inputs; SpecError on unknown names or cycles."""
    by_name = {d.name: d for d in defs}

    def label(name: str) -> str:
        return labels[name] if labels and name in labels else f"feature {name!r}"

    ordered: list[FeatureDef] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(d: FeatureDef, path: tuple[str, ...]) -> None:
        if state.get(d.name) == 2:
            return
        if state.get(d.name) == 1:
            raise SpecError(f"{label(d.name)}: ratio inputs form a cycle {' -> '.join((*path, d.name))}")
        state[d.name] = 1
        if d.kind == "ratio":
            for ref in (d.numerator, d.denominator):
                if ref not in by_name:
                    raise SpecError(f"{label(d.name)}: ratio input {ref!r} is not a feature in the spec")
                visit(by_name[ref], (*path, d.name))
        state[d.name] = 2
        ordered.append(d)

    for d in defs:
        visit(d, ())
    return ordered
