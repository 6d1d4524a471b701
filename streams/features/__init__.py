"""freshet's feature engine: declarative windowed features per entity, on event time.

One definition (the ``features`` section of the pipeline spec, :mod:`.definitions`) runs in two
engines that agree value for value: the stream (:mod:`.engine`, state as compact bytes for Faust
tables) and pandas (:mod:`.batch`: features as of a time, point-in-time training sets, backfills).
Aggregations (:mod:`.aggregations`) are pluggable; windows and lateness live in :mod:`.windows`.
No Kafka, Faust or Redis here: the online store is :mod:`streams.runtime.store`.

>>> from streams.features import FeatureEngine, parse_features
>>> engine = FeatureEngine(parse_features([
...     {"name": "x1_max_1s", "agg": "max", "field": "x1", "window": {"kind": "tumbling", "size_s": 1}},
... ]))
>>> state = engine.new_state()
>>> engine.update(state, 1_700_000_000.25, {"x1": 0.5}).values
{'x1_max_1s': 0.5}
"""

from __future__ import annotations

from streams.features.aggregations import (
    DEFAULT_REGISTRY,
    Aggregation,
    AggregationBase,
    AggregationRegistry,
    check_aggregation,
    register_aggregation,
)
from streams.features.definitions import FeatureDef, parse_features
from streams.features.engine import (
    FeatureEngine,
    FeatureInputError,
    FeatureState,
    StateLayoutError,
    UpdateResult,
)
from streams.features.windows import Window

__all__ = [
    "DEFAULT_REGISTRY",
    "Aggregation",
    "AggregationBase",
    "AggregationRegistry",
    "FeatureDef",
    "FeatureEngine",
    "FeatureInputError",
    "FeatureState",
    "StateLayoutError",
    "UpdateResult",
    "Window",
    "check_aggregation",
    "parse_features",
    "register_aggregation",
]
