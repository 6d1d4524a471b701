"""Aggregations: what a feature computes over the events of a window.

An aggregation is four pure functions over a small *state* (the extension point for custom ones)::

    initialize()            -> state       # the empty state
    add(state, value, t_s)  -> state       # one more value, seen at event time t_s
    merge(a, b)             -> state       # two states of disjoint sets of events
    result(state)           -> float | None

The contract (``tests/unit/features/test_features_aggregations.py`` runs it against every shipped aggregation;
run :func:`check_aggregation` on yours):

* Pure: ``add``, ``merge`` and ``result`` never modify their arguments (the engine shares states
  between tiles and partial results).
* ``merge`` is associative, and commutative unless ``commutative = False``: merging the states of
  any split of a sequence gives the result of adding the whole sequence to one state (up to
  floating-point rounding).
* States are JSON-compatible (lists, str-keyed dicts, str, int, finite float, bool, None): they are
  stored with orjson in Faust tables. Keep them small.
* Deterministic: the same values give the same state, byte for byte (no randomness, no ``hash()``,
  which Python seeds per process).

The engine only calls ``add`` with valid values, so an aggregation never sees bad input:
``accepts = "number"`` receives finite floats with ``abs(x) <= MAX_ABS`` (``bool`` as 0.0/1.0);
``accepts = "any"`` also receives strings; aggregations used without a field (``count``,
``time_since_last``) receive ``None`` once per event. NaN, infinities, larger magnitudes, missing fields
and values of the wrong type are skipped (they never reach a state).

Shipped aggregations (``params`` in parentheses):

==================  ======================================================  =================
name                result                                                  empty window
==================  ======================================================  =================
count               events (no field) or valid values of the field          0
sum                 sum                                                     0
mean                arithmetic mean                                         None
min, max            smallest / largest value                                None
variance (ddof=1)   sample variance (``ddof = 0``: population); Chan merge  None (n <= ddof)
std (ddof=1)        square root of ``variance``                             None (n <= ddof)
last                value of the latest event (ties: the later arrival)     None
distinct_count      distinct values: exact up to ``exact_up_to`` (32),      0
                    then HyperLogLog with 2**``precision`` (2**8) registers
time_since_last     seconds since the previous event (no field)             None
==================  ======================================================  =================

>>> mean = DEFAULT_REGISTRY.create("mean")
>>> s = mean.initialize()
>>> for x in (1.0, 2.0, 6.0):
...     s = mean.add(s, x, 0.0)
>>> mean.result(s)
3.0
>>> std = DEFAULT_REGISTRY.create("std", {"ddof": 0})
>>> round(std.result(std.merge(std.add(std.initialize(), 1.0, 0.0), std.add(std.initialize(), 3.0, 0.0))), 6)
1.0
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson

# Values beyond this magnitude are treated as invalid, so that sums and squared deviations stay finite
# (a state can never become inf or NaN).
MAX_ABS = 1e100
ACCEPTS = ("number", "any", "event")


@dataclass(frozen=True)
class Kernel:
    """Inline Python for the engine's generated hot loop, doing exactly what add/merge/result do.

    Optional: aggregations without one are called through their methods. Statements may span lines.
    Placeholders: ``{a}`` is a prefix for this slot's local variables; the snippets may read ``s`` (a
    tile's state), ``v`` (a valid value) and ``t`` (its event time, seconds). ``state`` and ``result``
    are expressions. ``tests/unit/features/test_features_engine.py`` holds generated and method code equal.
    """

    init: str
    merge: str
    add: str
    state: str
    result: str
    # Names the snippets use, added to the generated code's globals (keys are formatted with {a}).
    env: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Aggregation(Protocol):
    """What the engine needs from an aggregation (see the module docstring for the contract)."""

    name: str
    accepts: str
    requires_field: bool | None
    state_key: str | None
    commutative: bool
    relative_time: bool

    def initialize(self) -> Any: ...

    def add(self, state: Any, value: Any, t_s: float) -> Any: ...

    def merge(self, a: Any, b: Any) -> Any: ...

    def result(self, state: Any) -> float | None: ...


class AggregationBase:
    """Defaults for custom aggregations: subclass and write the four functions.

    ``accepts``: ``"number"`` or ``"any"`` (strings too). ``requires_field``: True (a field is
    required), False (never takes a field), None (optional: without one, ``add`` gets ``None`` per
    event). ``state_key``: features with the same key, field and window share one state (e.g. mean and
    std both use ``"moments"``); None means not shared. ``commutative``: whether ``merge(a, b) ==
    merge(b, a)``. ``relative_time``: the result is an event time and the feature reports the seconds
    from it to the query time (``time_since_last``).

    >>> class Range(AggregationBase):
    ...     name = "range"
    ...     def initialize(self): return None
    ...     def add(self, s, v, t_s): return [v, v] if s is None else [min(s[0], v), max(s[1], v)]
    ...     def merge(self, a, b):
    ...         return b if a is None else a if b is None else [min(a[0], b[0]), max(a[1], b[1])]
    ...     def result(self, s): return None if s is None else s[1] - s[0]
    >>> check_aggregation(Range(), [3.0, -1.0, 4.0, 1.5])
    >>> r = Range()
    >>> r.result(r.add(r.add(r.initialize(), 2.0, 0.0), 5.0, 1.0))
    3.0
    """

    name: ClassVar[str] = "custom"
    accepts: ClassVar[str] = "number"
    requires_field: ClassVar[bool | None] = True
    state_key: str | None = None
    commutative: ClassVar[bool] = True
    relative_time: ClassVar[bool] = False

    def initialize(self) -> Any:
        raise NotImplementedError

    def add(self, state: Any, value: Any, t_s: float) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def result(self, state: Any) -> float | None:
        raise NotImplementedError

    def kernel(self) -> Kernel | None:
        """Inline code for the engine (shipped aggregations only); None: call the methods."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- value domain ---------------------------------------------------------------------------------------


def normalize_value(value: Any) -> float | str | None:
    """What the engine stores for a raw field value: a valid float, a string, or None (skipped).

    >>> normalize_value(2), normalize_value(True), normalize_value("a"), normalize_value(float("inf"))
    (2.0, 1.0, 'a', None)
    >>> normalize_value(float("nan")), normalize_value(None), normalize_value([1]), normalize_value(1e300)
    (None, None, None, None)
    """
    if type(value) is float:
        return value if -MAX_ABS <= value <= MAX_ABS else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        try:
            f = float(value)
        except (OverflowError, ValueError, TypeError):
            return None
        return f if -MAX_ABS <= f <= MAX_ABS else None
    return None


def attribute_value(raw: Any) -> float | None:
    """What an ``agg = "attribute"`` feature reports for a raw attribute: a valid number (numeric text
    included, since Redis stores text), else None.

    >>> attribute_value("12.5"), attribute_value(3), attribute_value("NL"), attribute_value(None)
    (12.5, 3.0, None, None)
    """
    v = normalize_value(raw)
    if isinstance(v, str):
        try:
            v = normalize_value(float(v))
        except ValueError:
            return None
    return v if isinstance(v, float) else None


@lru_cache(maxsize=65536)
def value_hash(value: float | str) -> int:
    """A stable 32-bit hash of a normalized value (same in every process; ``1`` and ``1.0`` are equal).

    >>> value_hash("a") == value_hash("a"), value_hash(1.0) == value_hash(-0.0 + 1.0)
    (True, True)
    """
    data = ("s:" + value) if isinstance(value, str) else ("n:" + repr(value + 0.0))
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=4).digest(), "big")


# -- shipped aggregations ---------------------------------------------------------------------------


class Count(AggregationBase):
    """Events in the window (without a field) or valid values of the field.

    >>> c = Count()
    >>> c.result(c.add(c.add(c.initialize(), None, 0.0), None, 1.0)), c.result(c.initialize())
    (2.0, 0.0)
    """

    name = "count"
    accepts = "any"
    requires_field = None
    state_key = "count"

    def initialize(self) -> int:
        return 0

    def add(self, state: int, value: Any, t_s: float) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, state: int) -> float:
        return float(state)


    def kernel(self) -> Kernel:
        return Kernel(init="{a} = 0", merge="{a} += s", add="{a} += 1", state="{a}", result="float({a})")

class Sum(AggregationBase):
    """Sum of the values; 0 for an empty window.

    >>> s = Sum()
    >>> s.result(s.merge(s.add(s.initialize(), 1.5, 0.0), s.add(s.initialize(), 2.0, 0.0)))
    3.5
    """

    name = "sum"
    state_key = "sum"

    def initialize(self) -> float:
        return 0.0

    def add(self, state: float, value: float, t_s: float) -> float:
        return state + value

    def merge(self, a: float, b: float) -> float:
        return a + b

    def result(self, state: float) -> float:
        return float(state)


    def kernel(self) -> Kernel:
        return Kernel(init="{a} = 0.0", merge="{a} += s", add="{a} += v", state="{a}", result="float({a})")

class _Moments(AggregationBase):
    """Count, sum and sum of squared deviations ``[n, sum, m2]``: Welford's update, Chan's merge.

    The mean is ``sum / n``, not a running mean: a running mean's update leaves rounding residue (about
    1e-17) where the values cancel exactly, e.g. ``[0, -1, 1]`` merged across tiles, and a ``ratio`` over
    such a mean then divides by 1e-17 instead of giving its default (the equivalence test's event 38).
    """

    state_key = "moments"

    def initialize(self) -> list[Any]:
        return [0, 0.0, 0.0]

    def add(self, state: list[Any], value: float, t_s: float) -> list[Any]:
        n, total, m2 = state
        delta = value - (total / n if n else 0.0)
        n += 1
        total += value
        return [n, total, m2 + delta * (value - total / n)]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        na, nb = a[0], b[0]
        if not nb:
            return a
        if not na:
            return b
        n = na + nb
        delta = b[1] / nb - a[1] / na
        return [n, a[1] + b[1], a[2] + b[2] + delta * delta * na * nb / n]


    def _kernel(self, result: str) -> Kernel:
        return Kernel(
            init="{a}n = 0\n{a}m = 0.0\n{a}q = 0.0",
            merge=(
                "nb = s[0]\n"
                "if nb:\n"
                "    if {a}n:\n"
                "        n = {a}n + nb\n"
                "        d = s[1] / nb - {a}m / {a}n\n"
                "        {a}m, {a}q = {a}m + s[1], {a}q + s[2] + d * d * {a}n * nb / n\n"
                "        {a}n = n\n"
                "    else:\n"
                "        {a}n, {a}m, {a}q = nb, s[1], s[2]"
            ),
            add="d = v - ({a}m / {a}n if {a}n else 0.0)\n{a}n += 1\n{a}m += v\n{a}q += d * (v - {a}m / {a}n)",
            state="[{a}n, {a}m, {a}q]",
            result=result,
        )

class Mean(_Moments):
    """Arithmetic mean; None for an empty window.

    >>> m = Mean()
    >>> m.result(m.add(m.add(m.initialize(), 1.0, 0.0), 4.0, 0.0)), m.result(m.initialize())
    (2.5, None)
    """

    name = "mean"

    def result(self, state: list[Any]) -> float | None:
        return float(state[1] / state[0]) if state[0] else None


    def kernel(self) -> Kernel:
        return self._kernel("(float({a}m / {a}n) if {a}n else None)")

class Variance(_Moments):
    """Variance with ``ddof`` delta degrees of freedom (1: sample, the pandas/River default; 0: population).

    >>> v = Variance()
    >>> s = v.initialize()
    >>> for x in (1.0, 2.0, 3.0, 4.0):
    ...     s = v.add(s, x, 0.0)
    >>> round(v.result(s), 12), round(Variance(ddof=0).result(s), 12)
    (1.666666666667, 1.25)
    """

    name = "variance"

    def __init__(self, ddof: int = 1) -> None:
        if ddof not in (0, 1):
            raise ValueError(f"ddof = {ddof!r}: use 0 (population) or 1 (sample)")
        self.ddof = ddof

    def result(self, state: list[Any]) -> float | None:
        n = state[0]
        if n <= self.ddof:
            return None
        return max(0.0, float(state[2]) / float(n - self.ddof))

    def kernel(self) -> Kernel:
        var = f"max(0.0, float({{a}}q) / ({{a}}n - {self.ddof}))"
        return self._kernel(f"({var} if {{a}}n > {self.ddof} else None)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ddof={self.ddof})"


class Std(Variance):
    """Standard deviation: the square root of :class:`Variance` (same ``ddof``).

    >>> s = Std(ddof=0)
    >>> s.result(s.add(s.add(s.initialize(), 1.0, 0.0), 3.0, 0.0))
    1.0
    """

    name = "std"

    def result(self, state: list[Any]) -> float | None:
        var = Variance.result(self, state)
        return None if var is None else math.sqrt(var)


    def kernel(self) -> Kernel:
        var = f"max(0.0, float({{a}}q) / ({{a}}n - {self.ddof}))"
        return self._kernel(f"(sqrt({var}) if {{a}}n > {self.ddof} else None)")

class Min(AggregationBase):
    """Smallest value; None for an empty window.

    >>> m = Min()
    >>> m.result(m.add(m.add(m.initialize(), 3.0, 0.0), -1.0, 0.0))
    -1.0
    """

    name = "min"
    state_key = "min"

    def initialize(self) -> float | None:
        return None

    def add(self, state: float | None, value: float, t_s: float) -> float | None:
        return value if state is None or value < state else state

    def merge(self, a: float | None, b: float | None) -> float | None:
        if a is None:
            return b
        if b is None:
            return a
        return b if b < a else a

    def result(self, state: float | None) -> float | None:
        return None if state is None else float(state)


    def kernel(self) -> Kernel:
        return Kernel(
            init="{a} = None",
            merge="if s is not None and ({a} is None or s < {a}):\n    {a} = s",
            add="if {a} is None or v < {a}:\n    {a} = v",
            state="{a}",
            result="(None if {a} is None else float({a}))",
        )

class Max(Min):
    """Largest value; None for an empty window.

    >>> m = Max()
    >>> m.result(m.add(m.add(m.initialize(), 3.0, 0.0), -1.0, 0.0))
    3.0
    """

    name = "max"
    state_key = "max"

    def add(self, state: float | None, value: float, t_s: float) -> float | None:
        return value if state is None or value > state else state

    def merge(self, a: float | None, b: float | None) -> float | None:
        if a is None:
            return b
        if b is None:
            return a
        return b if b > a else a


    def kernel(self) -> Kernel:
        return Kernel(
            init="{a} = None",
            merge="if s is not None and ({a} is None or s > {a}):\n    {a} = s",
            add="if {a} is None or v > {a}:\n    {a} = v",
            state="{a}",
            result="(None if {a} is None else float({a}))",
        )

class Last(AggregationBase):
    """Value of the latest event; at equal times, the later arrival wins (so merge is not commutative).

    >>> last = Last()
    >>> s = last.add(last.add(last.initialize(), 1.0, 10.0), 2.0, 5.0)   # arrives later, happened earlier
    >>> last.result(s)
    1.0
    """

    name = "last"
    state_key = "last"
    commutative = False

    def initialize(self) -> list[Any] | None:
        return None

    def add(self, state: list[Any] | None, value: float, t_s: float) -> list[Any] | None:
        return [t_s, value] if state is None or t_s >= state[0] else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        if a is None:
            return b
        if b is None:
            return a
        return b if b[0] >= a[0] else a

    def result(self, state: list[Any] | None) -> float | None:
        return None if state is None else float(state[1])


    def kernel(self) -> Kernel:
        return Kernel(
            init="{a}t = None\n{a}v = None",
            merge="if s is not None and ({a}t is None or s[0] >= {a}t):\n    {a}t, {a}v = s[0], s[1]",
            add="if {a}t is None or t >= {a}t:\n    {a}t, {a}v = t, v",
            state="(None if {a}t is None else [{a}t, {a}v])",
            result="(None if {a}t is None else float({a}v))",
        )

class TimeSinceLast(AggregationBase):
    """Seconds from the previous event of the entity to the query time (None for the first event).

    The state is the latest event time; the engine subtracts it from the query time, and on an update
    it leaves the current event out (its own gap would be 0).

    >>> a = TimeSinceLast()
    >>> a.result(a.merge(a.add(a.initialize(), None, 3.0), a.add(a.initialize(), None, 7.5)))
    7.5
    """

    name = "time_since_last"
    accepts = "event"
    requires_field = False
    state_key = "last_time"
    relative_time = True

    def initialize(self) -> float | None:
        return None

    def add(self, state: float | None, value: Any, t_s: float) -> float | None:
        return t_s if state is None or t_s > state else state

    def merge(self, a: float | None, b: float | None) -> float | None:
        if a is None:
            return b
        if b is None:
            return a
        return b if b > a else a

    def result(self, state: float | None) -> float | None:
        return state


    def kernel(self) -> Kernel:
        return Kernel(
            init="{a} = None",
            merge="if s is not None and ({a} is None or s > {a}):\n    {a} = s",
            add="if {a} is None or t > {a}:\n    {a} = t",
            state="{a}",
            result="{a}",
        )

# HyperLogLog bias constant for m registers (Flajolet et al. 2007).
def _hll_alpha(m: int) -> float:
    return {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))


_REGISTER_BASE = 48  # registers are stored one character each, chr(48 + rank): '0', '1', ... JSON-safe


def hll_rank(h: int, precision: int) -> tuple[int, int]:
    """Register index and rank (position of the first 1 bit, from 1) of a 32-bit hash."""
    bits = 32 - precision
    rest = h & ((1 << bits) - 1)
    return h >> bits, bits - rest.bit_length() + 1


def hll_registers(hashes: Iterable[int], precision: int) -> str:
    """The HyperLogLog registers of a set of 32-bit hashes, one character per register."""
    regs = [0] * (1 << precision)
    for h in hashes:
        i, r = hll_rank(h, precision)
        if r > regs[i]:
            regs[i] = r
    return "".join(chr(_REGISTER_BASE + r) for r in regs)


def hll_union(a: str, b: str) -> str:
    """Registers of the union of two sets: the larger register of each pair."""
    return "".join(max(x, y) for x, y in zip(a, b, strict=True))


def hll_estimate(registers: str) -> float:
    """Cardinality estimate with the small-range (linear counting) correction."""
    m = len(registers)
    total = 0.0
    zeros = 0
    for c in registers:
        r = ord(c) - _REGISTER_BASE
        total += 2.0**-r
        zeros += r == 0
    estimate = _hll_alpha(m) * m * m / total
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)
    return float(round(estimate))


def distinct_of_hashes(hashes: set[int], exact_up_to: int, precision: int) -> float:
    """What :class:`DistinctCount` reports for this set of value hashes (used by the pandas engine)."""
    if len(hashes) <= exact_up_to:
        return float(len(hashes))
    return hll_estimate(hll_registers(hashes, precision))


class DistinctCount(AggregationBase):
    """Distinct values in bounded memory: an exact sorted list of 32-bit value hashes up to
    ``exact_up_to`` values, then HyperLogLog registers (relative error about 1.04 / sqrt(2**precision)).

    The state depends only on the *set* of values, so any order of adds and merges gives the same
    number, in the stream and in pandas alike.

    >>> d = DistinctCount(exact_up_to=4)
    >>> s = d.initialize()
    >>> for v in ("a", "b", "a", 1.0, 1):
    ...     s = d.add(s, float(v) if isinstance(v, int) else v, 0.0)
    >>> d.result(s)
    3.0
    >>> big = d.initialize()
    >>> for i in range(1000):
    ...     big = d.add(big, f"user{i}", 0.0)
    >>> 900 < d.result(big) < 1100, len(big)
    (True, 256)
    """

    name = "distinct_count"
    accepts = "any"
    commutative = True

    def __init__(self, exact_up_to: int = 32, precision: int = 8) -> None:
        if not isinstance(exact_up_to, int) or not 0 <= exact_up_to <= 1024:
            raise ValueError(f"exact_up_to = {exact_up_to!r}: use an integer from 0 to 1024")
        if not isinstance(precision, int) or not 4 <= precision <= 16:
            raise ValueError(f"precision = {precision!r}: use an integer from 4 to 16")
        self.exact_up_to = exact_up_to
        self.precision = precision
        self.state_key = f"distinct:{exact_up_to}:{precision}"

    def initialize(self) -> list[int] | str:
        return []

    def _add_hash(self, state: list[int] | str, h: int) -> list[int] | str:
        if isinstance(state, str):
            i, r = hll_rank(h, self.precision)
            c = chr(_REGISTER_BASE + r)
            return state[:i] + c + state[i + 1 :] if c > state[i] else state
        pos = bisect.bisect_left(state, h)
        if pos < len(state) and state[pos] == h:
            return state
        if len(state) >= self.exact_up_to:
            return hll_registers([*state, h], self.precision)
        return [*state[:pos], h, *state[pos:]]

    def add(self, state: list[int] | str, value: float | str, t_s: float) -> list[int] | str:
        return self._add_hash(state, value_hash(value))

    def merge(self, a: list[int] | str, b: list[int] | str) -> list[int] | str:
        if isinstance(a, str) and isinstance(b, str):
            return hll_union(a, b)
        hashes, out = (b, a) if isinstance(a, str) else (a, b)
        # Fold the list of hashes into the other state.
        for h in hashes:
            out = self._add_hash(out, h)  # type: ignore[arg-type]
        return out

    def result(self, state: list[int] | str) -> float:
        if isinstance(state, str):
            return hll_estimate(state)
        return float(len(state))

    # The engine's kernel gathers the hashes in a set (and any registers met) and builds the same state.
    def state_of(self, hashes: set[int], registers: str | None) -> list[int] | str:
        """The state of a set of value hashes plus, optionally, registers of more values."""
        if registers is None:
            if len(hashes) <= self.exact_up_to:
                return sorted(hashes)
            return hll_registers(hashes, self.precision)
        out: list[int] | str = registers
        for h in hashes:
            out = self._add_hash(out, h)
        return out

    def result_of(self, hashes: set[int], registers: str | None) -> float:
        if registers is None and len(hashes) <= self.exact_up_to:
            return float(len(hashes))
        return self.result(self.state_of(hashes, registers))

    def kernel(self) -> Kernel:
        # {a} gathers hash lists (a tile's list, or one new hash) and unions them once at the end.
        return Kernel(
            init="{a} = []\n{a}r = None",
            merge=(
                "if s.__class__ is str:\n"
                "    {a}r = s if {a}r is None else hll_union({a}r, s)\n"
                "else:\n"
                "    {a}.append(s)"
            ),
            add="{a}.append((value_hash(v),))",
            state="{a}_state(set().union(*{a}), {a}r)",
            result="{a}_result(set().union(*{a}), {a}r)",
            env={
                "{a}_state": self.state_of,
                "{a}_result": self.result_of,
                "hll_union": hll_union,
                "value_hash": value_hash,
            },
        )

    def __repr__(self) -> str:
        return f"DistinctCount(exact_up_to={self.exact_up_to}, precision={self.precision})"


# -- registry ---------------------------------------------------------------------------------------

# A class or function that builds an aggregation from its params.
AggregationFactory = Callable[..., Any]

SHIPPED: dict[str, AggregationFactory] = {
    "count": Count,
    "sum": Sum,
    "mean": Mean,
    "min": Min,
    "max": Max,
    "std": Std,
    "variance": Variance,
    "last": Last,
    "distinct_count": DistinctCount,
    "time_since_last": TimeSinceLast,
}
# Feature kinds that are not aggregations (see definitions.py).
RESERVED = ("ratio", "attribute")


class AggregationRegistry:
    """Aggregations by name. ``create`` also takes an import path ``"package.module:Class"``.

    >>> reg = DEFAULT_REGISTRY.copy()
    >>> reg.register("range", lambda: _RangeForDocs())
    >>> reg.create("range").name
    'range'
    >>> "range" in DEFAULT_REGISTRY.names()
    False
    """

    def __init__(self, factories: Mapping[str, AggregationFactory] | None = None) -> None:
        self._factories: dict[str, AggregationFactory] = dict(factories or {})

    def names(self) -> list[str]:
        return sorted(self._factories)

    def copy(self) -> AggregationRegistry:
        return AggregationRegistry(self._factories)

    def register(self, name: str, factory: AggregationFactory) -> None:
        if not name or ":" in name or name in RESERVED:
            raise ValueError(f"cannot register an aggregation named {name!r}")
        self._factories[name] = factory

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> Aggregation:
        """Build the aggregation ``name`` with ``params``; raises ValueError with a one-line reason."""
        params = dict(params or {})
        factory = self._factories.get(name)
        if factory is None:
            if ":" not in name:
                raise ValueError(
                    f"unknown aggregation {name!r}; use one of {', '.join(self.names())} "
                    "or an import path 'package.module:Class'"
                )
            factory = _import(name)
        try:
            agg: Aggregation = factory(**params)
        except TypeError as exc:
            raise ValueError(f"aggregation {name!r} does not take params {params}: {exc}") from None
        problem = _protocol_problem(agg)
        if problem:
            raise ValueError(f"aggregation {name!r} {problem}")
        return agg


def _import(path: str) -> AggregationFactory:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import aggregation module {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r} to build the aggregation {path!r}")
    built: AggregationFactory = factory
    return built


def _protocol_problem(agg: object) -> str | None:
    for method in ("initialize", "add", "merge", "result"):
        if not callable(getattr(agg, method, None)):
            return f"has no method {method}(); see streams.features.aggregations.Aggregation"
    accepts = getattr(agg, "accepts", "number")
    if accepts not in ACCEPTS:
        return f"has accepts = {accepts!r}; use one of {ACCEPTS}"
    # Fill in the optional attributes so the engine can rely on them.
    for attr, default in (
        ("name", type(agg).__name__),
        ("accepts", "number"),
        ("requires_field", True),
        ("state_key", None),
        ("commutative", True),
        ("relative_time", False),
    ):
        if not hasattr(agg, attr):
            try:
                setattr(agg, attr, default)
            except AttributeError:
                return f"lacks the attribute {attr!r} and it cannot be set"
    return None


DEFAULT_REGISTRY = AggregationRegistry(SHIPPED)


def register_aggregation(
    name: str, factory: AggregationFactory | None = None, *, registry: AggregationRegistry | None = None
) -> Any:
    """Register a custom aggregation under ``name`` (in the default registry unless one is given).

    Usable as a decorator. An import path in the spec (``agg = "mypkg.aggs:Range"``) needs no
    registration at all.

    >>> reg = DEFAULT_REGISTRY.copy()
    >>> @register_aggregation("range_demo", registry=reg)
    ... class RangeDemo(_RangeForDocs):
    ...     pass
    >>> reg.create("range_demo").result(reg.create("range_demo").initialize()) is None
    True
    """
    target = DEFAULT_REGISTRY if registry is None else registry
    if factory is None:

        def decorator(f: AggregationFactory) -> AggregationFactory:
            target.register(name, f)
            return f

        return decorator
    target.register(name, factory)
    return factory


class _RangeForDocs(AggregationBase):
    """max - min; a small custom aggregation used in the examples."""

    name = "range"

    def initialize(self) -> list[float] | None:
        return None

    def add(self, state: list[float] | None, value: float, t_s: float) -> list[float]:
        return [value, value] if state is None else [min(state[0], value), max(state[1], value)]

    def merge(self, a: list[float] | None, b: list[float] | None) -> list[float] | None:
        if a is None:
            return b
        if b is None:
            return a
        return [min(a[0], b[0]), max(a[1], b[1])]

    def result(self, state: list[float] | None) -> float | None:
        return None if state is None else state[1] - state[0]


# -- contract ---------------------------------------------------------------------------------------


def _fold(agg: Aggregation, values: Iterable[tuple[Any, float]]) -> Any:
    state = agg.initialize()
    for v, t in values:
        state = agg.add(state, v, t)
    return state


def _close(a: float | None, b: float | None, scale: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


def check_aggregation(agg: Aggregation, values: list[Any], times: list[float] | None = None) -> None:
    """Assert the aggregation contract on ``values`` (raises AssertionError with what broke).

    Checks: adding, merging and reading results leave their inputs unchanged; the state round-trips
    through orjson; any split merged back gives the result of adding everything to one state (in both
    orders if ``commutative``); merge is associative; the empty state gives a result; folding is
    deterministic.
    """
    times = list(times) if times is not None else [float(i) for i in range(len(values))]
    pairs = list(zip(values, times, strict=True))
    numeric = [abs(v) for v in values if isinstance(v, float)]
    scale = (max(numeric) if numeric else 1.0) + 1.0
    scale = scale * scale * max(1, len(values))

    empty = agg.initialize()
    agg.result(empty)
    whole = _fold(agg, pairs)
    expected = agg.result(whole)
    # Pure: a copy taken before each call must equal the argument after it.
    state = agg.initialize()
    for v, t in pairs:
        before = orjson.dumps(state)
        new_state = agg.add(state, v, t)
        assert orjson.dumps(state) == before, "add modified its state argument"
        state = new_state
    snapshot = orjson.dumps(whole)
    agg.result(whole)
    assert orjson.dumps(whole) == snapshot, "result modified its state"
    # orjson round trip gives the same result (states live in Faust tables as JSON).
    restored = orjson.loads(orjson.dumps(whole))
    assert _close(agg.result(restored), expected, scale), "state does not survive orjson round trip"
    # Deterministic: folding again gives the same bytes.
    assert orjson.dumps(_fold(agg, pairs)) == snapshot, "folding the same values twice differs"
    for cut in range(len(pairs) + 1):
        a = _fold(agg, pairs[:cut])
        b = _fold(agg, pairs[cut:])
        a_bytes, b_bytes = orjson.dumps(a), orjson.dumps(b)
        merged = agg.merge(a, b)
        assert orjson.dumps(a) == a_bytes and orjson.dumps(b) == b_bytes, "merge modified an argument"
        assert _close(agg.result(merged), expected, scale), f"merge of split at {cut} differs"
        if agg.commutative:
            assert _close(agg.result(agg.merge(b, a)), expected, scale), f"merge(b, a) at {cut} differs"
        # Associativity over a three-way split.
        for cut2 in range(cut, len(pairs) + 1, max(1, len(pairs) // 4)):
            x, y, z = _fold(agg, pairs[:cut]), _fold(agg, pairs[cut:cut2]), _fold(agg, pairs[cut2:])
            left = agg.result(agg.merge(agg.merge(x, y), z))
            right = agg.result(agg.merge(x, agg.merge(y, z)))
            assert _close(left, right, scale) and _close(left, expected, scale), "merge not associative"
