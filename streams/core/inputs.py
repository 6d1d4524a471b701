"""What a model sees: the event's numeric fields and the computed feature values, as one flat dict.

The same dict is logged with the prediction ("features used") and is what the learner learns from
when the label arrives, so training never re-reads features that have moved on (DESIGN.md decision 2).

>>> model_input({"amount": 3.0, "country": "fr", "flag": True}, {"amount_mean_60s": 2.5, "n_60s": None})
{'amount': 3.0, 'flag': 1.0, 'amount_mean_60s': 2.5}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def model_input(fields: Mapping[str, Any], features: Mapping[str, float | None]) -> dict[str, float]:
    """Numeric fields (bools as 0/1) then features; text fields and missing values are left out."""
    x: dict[str, float] = {}
    for source in (fields, features):
        for name, value in source.items():
            if value is None or isinstance(value, str):
                continue
            number = float(value)
            if math.isfinite(number):
                x[name] = number
    return x
