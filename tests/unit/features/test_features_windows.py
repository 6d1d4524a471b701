"""Window kinds reduced to epoch-aligned tiles, on integer microseconds."""

from __future__ import annotations

import pytest

from streams.features.windows import Window, WindowError, is_late, to_us


def test_decimal_sizes_are_exact() -> None:
    w = Window.tumbling(0.1)
    assert w.tile_us == 100_000
    # 0.3 / 0.1 is 2.9999999999999996 in floats; on microseconds the edge is exact.
    assert w.tile_of(to_us(0.3)) == 3
    assert w.tile_of(to_us(0.3) - 1) == 2


def test_tumbling_answers_with_the_window_containing_t() -> None:
    w = Window.tumbling(60)
    assert w.tile_range(to_us(125.0)) == (2, 2)
    assert w.tile_range(to_us(120.0)) == (2, 2)
    assert w.tile_range(to_us(119.999999)) == (1, 1)


def test_hopping_answers_with_the_earliest_started_window_containing_t() -> None:
    w = Window.hopping(60, hop_s=15)
    lo, hi = w.tile_range(to_us(100.0))
    # Windows containing t=100 start at 45, 60, 75, 90; the earliest, [45, 105), is the answer.
    assert (lo * 15, (hi + 1) * 15) == (45, 105)


def test_sliding_covers_the_last_size_at_tile_resolution() -> None:
    w = Window.sliding(10, resolution_s=2)
    lo, hi = w.tile_range(to_us(25.0))
    assert (lo * 2, hi * 2 + 2) == (16, 26)  # events from 16 to t=25: between 8 and 10 seconds
    assert Window.sliding(60).tile_us == 6_000_000
    assert Window.sliding(0.25, resolution_s=0.125).n_tiles == 2


def test_default_sliding_resolution_divides_sizes_that_a_tenth_does_not() -> None:
    w = Window.sliding(0.000007)  # 7 microseconds: no divisor from the list but 1
    assert w.size_us % w.tile_us == 0


def test_windows_are_aligned_to_the_epoch() -> None:
    # Shifting every time by whole tiles shifts tile indices only: replays of old logs line up.
    w = Window.hopping(300, hop_s=60)
    day = 86400
    for t in (1_700_000_123.5, 1_700_000_180.0):
        lo, hi = w.tile_range(to_us(t))
        lo2, hi2 = w.tile_range(to_us(t - 90 * day))
        assert (lo - lo2, hi - hi2) == (90 * day // 60, 90 * day // 60)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Window.hopping(60, hop_s=7), "must divide window.size_s = 60 into whole hops"),
        (lambda: Window.hopping(60, hop_s=120), "must divide"),
        (lambda: Window.sliding(60, resolution_s=7), "e.g. resolution_s = 6"),
        (lambda: Window.tumbling(0), "must be positive"),
        (lambda: Window.tumbling(-5), "must be positive"),
        (lambda: Window.tumbling(1e-7), "whole number of microseconds"),
        (lambda: Window.tumbling(float("inf")), "finite number of seconds"),
        (lambda: Window.tumbling("60"), "finite number of seconds"),  # type: ignore[arg-type]
    ],
)
def test_bad_windows_say_what_to_change(build: object, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        build()  # type: ignore[operator]


def test_lateness_is_relative_to_watermark_minus_grace() -> None:
    assert not is_late(to_us(10.0), None, 0)
    assert not is_late(to_us(8.0), to_us(10.0), to_us(2.0))
    assert is_late(to_us(7.999999), to_us(10.0), to_us(2.0))


def test_to_us_rejects_non_finite_times() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number of epoch seconds"):
            to_us(bad)


def test_describe() -> None:
    assert Window.hopping(60, 10).describe() == "hopping 60s every 10s"
    assert Window.sliding(0.5, 0.1).describe() == "sliding 0.5s at 0.1s resolution"
