"""Event-time windows: tumbling, hopping and trailing sliding windows over epoch-aligned tiles.

Everything here runs on *event time* (the event's own timestamp), never on the wall clock, and on
integer microseconds so that window edges are exact for decimal sizes such as 0.1 s.

Tiles
    A window kind is reduced to *tiles*: epoch-aligned buckets ``tile_us`` wide. An event at ``t_us``
    falls in tile ``t_us // tile_us``. The value of a feature as of time ``t`` merges the tiles
    ``first_tile(t) .. last_tile(t)`` (only events at or before ``t`` count; see the engine).

    ==========  ===================================  ======================  =======================
    kind        parameters                           tile width              tiles per window
    ==========  ===================================  ======================  =======================
    tumbling    ``size_s``                           ``size_s``              1
    hopping     ``size_s``, ``hop_s``                ``hop_s``               ``size_s / hop_s``
    sliding     ``size_s``, ``resolution_s``         ``resolution_s``        ``size_s / resolution_s``
    ==========  ===================================  ======================  =======================

Which window answers "as of t"
    * tumbling: the window ``[k*size, (k+1)*size)`` that contains ``t``;
    * hopping: of the ``size/hop`` windows that contain ``t``, the one that *started first* (so it
      holds the most history up to ``t``: a trailing total at hop resolution, not the newest, nearly
      empty window);
    * sliding: "the last ``size_s`` as of this event" at tile resolution: the events from the start
      of the tile that began ``size_s - resolution_s`` before ``t``'s tile, up to ``t``. The covered
      span is between ``size_s - resolution_s`` and ``size_s``. The default resolution is a tenth of
      the size. (A hopping window and a sliding window with ``resolution_s = hop_s`` give the same
      numbers; the two spellings exist because people think of them differently.)

Watermark and grace
    The watermark of an entity is the largest event time seen for that entity, so results never
    depend on how entities are spread over partitions. An event is *late* for a feature when
    ``t < watermark - grace_s``; late events are not applied to that feature.

>>> w = Window.sliding(60, resolution_s=10)
>>> w.tile_us, w.n_tiles
(10000000, 6)
>>> t = to_us(1_700_000_125.5)
>>> [k * w.tile_us / 1e6 for k in w.tile_range(t)]
[1700000070.0, 1700000120.0]
>>> Window.hopping(60, hop_s=15).n_tiles
4
>>> Window.tumbling(0.5).tile_range(to_us(10.25))
(20, 20)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.errors import FreshetError

US_PER_S = 1_000_000
WINDOW_KINDS = ("tumbling", "hopping", "sliding")
# Sliding windows without an explicit resolution are cut in this many tiles (or the nearest count
# that divides the size in whole microseconds).
DEFAULT_SLIDING_TILES = 10
_FALLBACK_TILES = (10, 12, 8, 6, 5, 4, 3, 2, 1)


class WindowError(FreshetError, ValueError):
    """A window's parameters cannot be used; the message says what to change."""


# Event times beyond this many seconds from the epoch (the year 5138) are refused, so that times in
# microseconds always fit the 64-bit integers of the stored state.
MAX_EVENT_TIME_S = 1e11
MAX_EVENT_TIME_US = round(MAX_EVENT_TIME_S * US_PER_S)


def to_us(t_s: float) -> int:
    """Epoch seconds to integer microseconds (round half to even, like ``numpy.rint``).

    >>> to_us(1.0000004), to_us(0.1)
    (1000000, 100000)
    >>> to_us(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: event time must be a finite number of epoch seconds, got nan
    """
    try:
        us = round(t_s * US_PER_S)
    except (ValueError, OverflowError, TypeError):
        raise ValueError(f"event time must be a finite number of epoch seconds, got {t_s!r}") from None
    if not -MAX_EVENT_TIME_US <= us <= MAX_EVENT_TIME_US:
        raise ValueError(f"event time {t_s!r} is more than {MAX_EVENT_TIME_S:g} s from the epoch")
    return us


def seconds_to_us(name: str, value: object) -> int:
    """A positive duration in seconds as whole microseconds, or a :class:`WindowError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WindowError(f"{name} must be a finite number of seconds, got {value!r}")
    exact = value * US_PER_S
    us = round(exact)
    if us <= 0 or abs(us - exact) > max(1e-3, abs(exact) * 1e-12):
        raise WindowError(f"{name} = {value!r} must be positive and a whole number of microseconds")
    return us


@dataclass(frozen=True)
class Window:
    """A window kind with its sizes, reduced to epoch-aligned tiles (see the module docstring).

    >>> Window.tumbling(300).describe()
    'tumbling 300s'
    >>> Window.sliding(0.5).tile_us
    50000
    """

    kind: str
    size_us: int
    tile_us: int

    @classmethod
    def tumbling(cls, size_s: float) -> Window:
        size = seconds_to_us("window.size_s", size_s)
        return cls("tumbling", size, size)

    @classmethod
    def hopping(cls, size_s: float, hop_s: float) -> Window:
        size = seconds_to_us("window.size_s", size_s)
        hop = seconds_to_us("window.hop_s", hop_s)
        if hop > size or size % hop:
            raise WindowError(
                f"window.hop_s = {hop_s} must divide window.size_s = {size_s} into whole hops "
                f"(e.g. hop_s = {_suggest(size) / US_PER_S:g})"
            )
        return cls("hopping", size, hop)

    @classmethod
    def sliding(cls, size_s: float, resolution_s: float | None = None) -> Window:
        size = seconds_to_us("window.size_s", size_s)
        if resolution_s is None:
            tile = _suggest(size)
        else:
            tile = seconds_to_us("window.resolution_s", resolution_s)
            if tile > size or size % tile:
                raise WindowError(
                    f"window.resolution_s = {resolution_s} must divide window.size_s = {size_s} into "
                    f"whole tiles (e.g. resolution_s = {_suggest(size) / US_PER_S:g})"
                )
        return cls("sliding", size, tile)

    @property
    def n_tiles(self) -> int:
        return self.size_us // self.tile_us

    @property
    def size_s(self) -> float:
        return self.size_us / US_PER_S

    @property
    def tile_s(self) -> float:
        return self.tile_us / US_PER_S

    def tile_of(self, t_us: int) -> int:
        return t_us // self.tile_us

    def tile_range(self, t_us: int) -> tuple[int, int]:
        """First and last tile (inclusive) of the window that answers "as of ``t_us``"."""
        last = t_us // self.tile_us
        return last - self.n_tiles + 1, last

    def first_useful_tile(self, watermark_us: int, grace_us: int) -> int:
        """Tiles before this one can no longer be in any window of an event that is not late."""
        return (watermark_us - grace_us) // self.tile_us - self.n_tiles + 1

    def describe(self) -> str:
        size = f"{self.size_us / US_PER_S:g}s"
        if self.kind == "tumbling":
            return f"tumbling {size}"
        if self.kind == "hopping":
            return f"hopping {size} every {self.tile_us / US_PER_S:g}s"
        return f"sliding {size} at {self.tile_us / US_PER_S:g}s resolution"


def _suggest(size_us: int) -> int:
    for n in _FALLBACK_TILES:
        if size_us % n == 0:
            return size_us // n
    return size_us


def is_late(t_us: int, watermark_us: int | None, grace_us: int) -> bool:
    """An event is late when it is more than the grace behind the entity's watermark.

    >>> is_late(to_us(95.0), to_us(100.0), to_us(5.0)), is_late(to_us(94.9), to_us(100.0), to_us(5.0))
    (False, True)
    """
    return watermark_us is not None and t_us < watermark_us - grace_us
