"""Rate-limited logging under the formatter Faust's worker installs (mode's ExtensionFormatter)."""

from __future__ import annotations

import io
import logging

from mode.utils.logging import ExtensionFormatter

from streams.runtime.log_limit import RateLimitFilter


def test_one_line_per_kind_per_interval_and_the_count_of_the_rest() -> None:
    now = [0.0]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(ExtensionFormatter(stream=out, fmt="%(message)s"))
    suppressed: list[int] = []
    handler.addFilter(RateLimitFilter(10.0, on_suppressed=lambda: suppressed.append(1), clock=lambda: now[0]))
    logger = logging.getLogger("test.log_limit")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for t in range(25):  # 25 s of a complaint every second
            now[0] = float(t)
            logger.error("Unable connect to node with id %s: %s", 1, "refused")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines == [
        "Unable connect to node with id 1: refused",
        "Unable connect to node with id 1: refused (9 more like this in the last 10 s suppressed)",
        "Unable connect to node with id 1: refused (9 more like this in the last 10 s suppressed)",
    ]
    assert len(suppressed) == 22
