"""The streaming feature engine: per-entity state, updated one event at a time, on event time.

Pure Python and free of I/O: the Faust agent keeps each entity's state as bytes in a table
(``engine.dumps`` / ``engine.loads``) and calls :meth:`FeatureEngine.update` per event.

What a value means
    ``update(state, t, fields)`` returns every feature as of ``t``, *including this event*: an
    aggregation over the events of the entity that (1) arrived up to and including this one, (2) have
    an event time at or before ``t``, (3) fall in the window that answers "as of t" (see
    :mod:`streams.features.windows`), and (4) were not late for that feature. An event that arrived
    earlier but happened later than ``t`` is left out: nothing from the future leaks into a value.
    ``time_since_last`` is the gap to the latest *other* such event. The pandas engine
    (:mod:`streams.features.batch`) computes exactly this for every row of a log, which is what makes
    a point-in-time correct training set.

Event time, watermark, lateness
    The entity's watermark is the largest event time it has seen (per entity, so values do not depend
    on how entities are spread over partitions, nor on other entities' traffic). An event is late for
    a feature when ``t < watermark - grace_s``; it is not applied to that feature, whose value is then
    None (or its ``default``), and ``res.late`` / ``res.late_features`` say so. ``res.late_action``
    is the feature's ``late_policy`` (``"dead-letter"`` if any late feature asks for it, else
    ``"drop"``); the agent acts on it. The event is still applied to the features it is not late for.
    No wall clock is read anywhere.

State
    Per window (and grace) a list of *tiles*, each holding one aggregation state per (aggregation,
    field); plus, per grace, the events of the last ``grace_s`` as a small *pending* list, because they
    can still be overtaken by a late-arriving earlier event. Pending events are folded into their tile
    once the watermark has passed them by more than the grace, and tiles are dropped once no event that
    is not late can see them. So state expires on event time alone: replaying last month's log gives
    the same features as living through it. Times are kept in integer microseconds. ``dumps`` is
    orjson: a few hundred bytes for an entity with a handful of events in its windows.

Speed
    Calling each aggregation's ``add``/``merge``/``result`` per tile and event costs more than the
    arithmetic, so per window the engine generates one Python function with the shipped aggregations'
    arithmetic inlined (their :class:`~streams.features.aggregations.Kernel`), calling the methods of
    the others. ``FeatureEngine(defs, compiled=False)`` runs the plain reference code instead; the
    property test holds both to the same values and state bytes.

>>> from streams.features.definitions import parse_features
>>> engine = FeatureEngine(parse_features([
...     {"name": "n_10s", "agg": "count", "window": {"kind": "tumbling", "size_s": 10}},
...     {"name": "x_sum_10s", "agg": "sum", "field": "x", "window": {"kind": "sliding", "size_s": 10},
...      "grace_s": 2.0},
... ]))
>>> state = engine.new_state()
>>> engine.update(state, 100.0, {"x": 1.0}).values
{'n_10s': 1.0, 'x_sum_10s': 1.0}
>>> engine.update(state, 105.0, {"x": float("nan")}).values      # NaN is skipped, the event counts
{'n_10s': 2.0, 'x_sum_10s': 1.0}
>>> res = engine.update(state, 103.5, {"x": 2.0})                 # 1.5 s out of order, within grace
>>> res.values, res.late
({'n_10s': None, 'x_sum_10s': 3.0}, True)
>>> res.late_features
('n_10s',)
>>> engine.read(state, 109.0)
{'n_10s': 2.0, 'x_sum_10s': 3.0}
>>> engine.loads(engine.dumps(state)) == state
True
"""

from __future__ import annotations

import functools
import math
import numbers
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from streams.errors import FreshetError
from streams.features.aggregations import MAX_ABS, Aggregation, Kernel, attribute_value, normalize_value
from streams.features.definitions import FeatureDef, check_ratio_inputs
from streams.features.windows import MAX_EVENT_TIME_S, MAX_EVENT_TIME_US, US_PER_S, Window, to_us

# The per-entity state: [layout fingerprint, watermark_us, pending events per grace..., tiles per window...].
FeatureState = list[Any]
_STATE_VERSION = 2  # 2: moments hold [n, sum, m2] (a stored state of version 1 is reset, counted)


class FeatureInputError(FreshetError, ValueError):
    """The event cannot be used (e.g. its time is not a finite number); the state is unchanged."""


class StateLayoutError(FreshetError, ValueError):
    """Stored state was written by a different feature spec (or is not feature state at all)."""


class UpdateResult(NamedTuple):
    """What :meth:`FeatureEngine.update` returns (a named tuple: cheap to build once per event).

    ``values``: every feature as of the event's time, this event included. ``late``: the event was
    behind the watermark by more than the grace of at least one feature and was not applied there
    (``late_features`` names them; their value is None or their default). ``late_action``: None when
    not late, else ``"dead-letter"`` or ``"drop"`` from the late features' ``late_policy``.
    """

    values: dict[str, float | None]
    late: bool
    late_features: tuple[str, ...]
    late_action: str | None

    @property
    def action(self) -> str | None:
        """Alias of ``late_action``."""
        return self.late_action


class _Slot:
    """One aggregation state per tile, shared by features with the same (state key, field, mode)."""

    __slots__ = ("add", "agg", "empty", "field", "index", "merge", "mode", "relative")

    def __init__(self, agg: Aggregation, field: str | None, mode: str) -> None:
        self.agg = agg
        self.add = agg.add
        self.merge = agg.merge
        self.field = field
        self.index = 0  # position of the field's value in a pending entry (set by the lane); 0: none
        self.mode = mode  # "number" | "any" | "event"
        self.relative = bool(agg.relative_time)
        self.empty = agg.initialize()


class _Group:
    """The features that share a window and a grace: one list of tiles."""

    def __init__(self, window: Window, grace_us: int) -> None:
        self.window = window
        self.grace_us = grace_us
        self.tile_us = window.tile_us
        self.n_tiles = window.n_tiles
        self.tiles_at = 0  # position of the tile list in the state (set by the engine)
        self.slots: list[_Slot] = []
        self.slot_keys: list[tuple[Any, ...]] = []
        # (feature name, slot index, aggregation) in spec order
        self.features: list[tuple[str, int, Aggregation]] = []
        # Prebound tuples for the hot loops (see freeze()).
        self.slot_table: tuple[tuple[Any, ...], ...] = ()
        self.feature_table: tuple[tuple[Any, ...], ...] = ()
        self.empties: tuple[Any, ...] = ()
        # query(tiles, pending, t_us, exclude_current, values): generated, or _query (see _Lane.compile)
        self.query: Callable[..., None] = functools.partial(_query, self)

    def add_feature(self, d: FeatureDef) -> None:
        agg = d.aggregation
        assert agg is not None
        mode = "event" if d.field is None else agg.accepts
        key = (agg.state_key, d.field, mode) if agg.state_key is not None else ("feature", d.name)
        if key not in self.slot_keys:
            self.slot_keys.append(key)
            self.slots.append(_Slot(agg, d.field, mode))
        self.features.append((d.name, self.slot_keys.index(key), agg))

    def freeze(self, fields: list[str]) -> None:
        modes = {"number": 0, "any": 1, "event": 2}
        for s in self.slots:
            s.index = 0 if s.mode == "event" else fields.index(s.field) + 1  # type: ignore[arg-type]
        self.slot_table = tuple(
            (i, s.add, s.merge, s.empty, modes[s.mode], s.index, s.relative)
            for i, s in enumerate(self.slots, 1)
        )
        self.feature_table = tuple(
            (name, k, agg.result, self.slots[k].relative) for name, k, agg in self.features
        )
        self.empties = tuple(s.empty for s in self.slots)

    def layout(self) -> list[Any]:
        w = self.window
        return [w.kind, w.size_us, w.tile_us, [list(map(str, k)) for k in self.slot_keys]]


class _Lane:
    """The groups that share a grace, and so one list of pending (not yet final) events."""

    def __init__(self, grace_us: int) -> None:
        self.grace_us = grace_us
        self.groups: list[_Group] = []
        self.fields: list[str] = []  # the values a pending entry holds, after its time
        self.pending_at = 0
        self.shares_entry = False  # the lane's fields are the engine's: reuse the event's entry
        self.field_positions: tuple[int, ...] = ()
        self.names: tuple[str, ...] = ()
        # fold(state, pending, limit): generated, or _fold_events (see compile)
        self.fold: Callable[..., None] = functools.partial(_fold_events, self)

    def layout(self) -> list[Any]:
        return [self.grace_us, self.fields, [g.layout() for g in self.groups]]

    def compile(self, enabled: bool) -> None:
        """Generate the lane's fold and its groups' queries (``enabled=False``: the reference code)."""
        if enabled:
            self.fold = _compile_fold(self)
            for g in self.groups:
                g.query = _compile_query(g)


class FeatureEngine:
    """Computes the features of one spec, one event at a time, for any number of entities.

    The engine is immutable and shared; each entity has its own state from :meth:`new_state`.
    See the module docstring for the semantics and an example.

    >>> from streams.features.definitions import parse_features
    >>> engine = FeatureEngine(parse_features([
    ...     {"name": "gap_s", "agg": "time_since_last", "window": {"kind": "sliding", "size_s": 60}},
    ... ]))
    >>> s = engine.new_state()
    >>> engine.update(s, 10.0, {}).values, engine.update(s, 12.5, {}).values
    ({'gap_s': None}, {'gap_s': 2.5})
    >>> engine.expired(s, 60.0), engine.expired(s, 80.0)
    (False, True)
    """

    def __init__(self, defs: Sequence[FeatureDef], *, compiled: bool = True) -> None:
        names = [d.name for d in defs]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique: {names}")
        self.defs: tuple[FeatureDef, ...] = tuple(defs)
        self.feature_names: list[str] = names
        self._ratios: list[FeatureDef] = []
        self._attributes: list[FeatureDef] = []
        for d in check_ratio_inputs(list(defs)):
            if d.kind == "ratio":
                self._ratios.append(d)
            elif d.kind == "attribute":
                self._attributes.append(d)
        lanes: dict[int, _Lane] = {}
        groups: dict[tuple[Window, int], _Group] = {}
        for d in defs:
            if d.kind != "aggregation":
                continue
            assert d.window is not None
            lane = lanes.setdefault(d.grace_us, _Lane(d.grace_us))
            key = (d.window, d.grace_us)
            if key not in groups:
                groups[key] = _Group(d.window, d.grace_us)
                lane.groups.append(groups[key])
            groups[key].add_feature(d)
            if d.field is not None and d.field not in lane.fields:
                lane.fields.append(d.field)
        self._lanes: tuple[_Lane, ...] = tuple(lanes.values())
        self._groups: tuple[_Group, ...] = tuple(groups.values())
        self.fields: list[str] = sorted({f for lane in self._lanes for f in lane.fields})
        position = 2
        for lane in self._lanes:
            lane.fields.sort()
            lane.pending_at = position
            position += 1
            lane.shares_entry = lane.fields == self.fields
            lane.field_positions = tuple(self.fields.index(f) for f in lane.fields)
            lane.names = tuple(name for g in lane.groups for name, _, _ in g.features)
        for g in self._groups:
            g.tiles_at = position
            position += 1
            g.freeze(next(lane.fields for lane in self._lanes if g in lane.groups))
        for lane in self._lanes:
            lane.compile(compiled)
        self._state_len = position
        self._defaults = {d.name: float(d.default) for d in defs if d.default is not None}
        self._policies = {d.name: d.late_policy for d in defs}
        self._has_extras = bool(self._attributes or self._ratios or self._defaults)
        layout = [_STATE_VERSION, [lane.layout() for lane in self._lanes]]
        self.layout_id: int = zlib.crc32(orjson.dumps(layout))
        self.attribute_fields: list[str] = sorted({d.field for d in self._attributes if d.field})

    # -- state ----------------------------------------------------------------------------------------

    def new_state(self) -> FeatureState:
        """The state of an entity that has seen no event."""
        state: FeatureState = [self.layout_id, None]
        state.extend([] for _ in range(self._state_len - 2))
        return state

    def dumps(self, state: FeatureState) -> bytes:
        """Compact bytes for a Faust table (orjson); :meth:`loads` gives back an equal state."""
        return orjson.dumps(state)

    def loads(self, data: bytes, *, on_mismatch: str = "raise") -> FeatureState:
        """The state from :meth:`dumps`. With ``on_mismatch="reset"`` a state written by a different
        spec gives a new state instead of raising :class:`StateLayoutError`."""
        try:
            state = orjson.loads(data)
        except orjson.JSONDecodeError:
            state = None
        if not isinstance(state, list) or len(state) != self._state_len or state[0] != self.layout_id:
            if on_mismatch == "reset":
                return self.new_state()
            raise StateLayoutError(
                "stored feature state was written by a different feature spec (or is corrupt); "
                "clear the feature table or run with the spec that wrote it"
            )
        return state

    def watermark(self, state: FeatureState) -> float | None:
        """The entity's watermark (largest event time seen), epoch seconds."""
        w = state[1]
        return None if w is None else w / US_PER_S

    @property
    def retention_s(self) -> float:
        """How far behind the watermark state can still matter: the largest window + grace."""
        return max(((g.window.size_us + g.grace_us) / US_PER_S for g in self._groups), default=0.0)

    def expired(self, state: FeatureState, watermark_s: float) -> bool:
        """True when, for an event at ``watermark_s - grace`` or later, every window is empty: the state
        may be deleted. Call it with an event-time watermark (not the wall clock) so that replays
        expire state exactly as live runs do. Deleting state forgets the entity's watermark too."""
        w = to_us(watermark_s)
        for lane in self._lanes:
            pending = state[lane.pending_at]
            for g in lane.groups:
                first = g.window.first_useful_tile(w, g.grace_us)
                if any(t[0] >= first for t in state[g.tiles_at]):
                    return False
                if any(e[0] // g.tile_us >= first for e in pending):
                    return False
        return True

    # -- update / read --------------------------------------------------------------------------------

    def update(
        self,
        state: FeatureState,
        t_s: float,
        fields: Mapping[str, Any],
        attributes: Mapping[str, Any] | None = None,
    ) -> UpdateResult:
        """Apply one event of the entity and return every feature as of its time (this event included).

        ``fields`` are the event's fields; ``attributes`` the entity's static attributes (for
        ``agg = "attribute"`` features). Raises :class:`FeatureInputError` (state unchanged) when the
        event time is not a finite number or ``fields`` is not a mapping.
        """
        if type(t_s) is not float and (isinstance(t_s, bool) or not isinstance(t_s, numbers.Real)):
            raise FeatureInputError(f"event time must be a number of epoch seconds, got {t_s!r}")
        try:
            t_us = round(t_s * US_PER_S)
        except (ValueError, OverflowError):
            raise FeatureInputError(f"event time must be a finite number of epoch seconds, got {t_s!r}") from None
        if not -MAX_EVENT_TIME_US <= t_us <= MAX_EVENT_TIME_US:
            raise FeatureInputError(f"event time {t_s!r} is more than {MAX_EVENT_TIME_S:g} s from the epoch")
        if type(fields) is not dict and not isinstance(fields, Mapping):
            raise FeatureInputError(f"event fields must be a mapping, got {type(fields).__name__}")
        old_w = state[1]
        new_w = t_us if old_w is None or t_us > old_w else old_w
        state[1] = new_w
        advanced = old_w is None or new_w > old_w
        values: dict[str, float | None] = dict.fromkeys(self.feature_names)
        get = fields.get
        # One pending entry per event: [t_us, normalized value of each field the engine reads].
        entry: list[Any] = [t_us]
        for f in self.fields:
            v = get(f)
            # Fast path for the usual floats and strings; NaN fails both comparisons.
            if type(v) is float:
                entry.append(v if -MAX_ABS <= v <= MAX_ABS else None)
            elif type(v) is str:
                entry.append(v)
            else:
                entry.append(normalize_value(v))
        late: list[str] | None = None
        for lane in self._lanes:
            if old_w is not None and t_us < old_w - lane.grace_us:
                late = [*(late or ()), *lane.names]
                continue
            pending = state[lane.pending_at]
            if lane.shares_entry:
                pending.append(entry)
            else:
                pending.append([t_us, *[entry[i + 1] for i in lane.field_positions]])
            if advanced:
                _fold(lane, state, new_w)
            for g in lane.groups:
                g.query(state[g.tiles_at], pending, t_us, True, values)
        self._finish(values, attributes)
        if late is None:
            return UpdateResult(values, False, (), None)
        late_set = set(late)
        ordered = tuple(n for n in self.feature_names if n in late_set)
        action = "dead-letter" if any(self._policies[n] == "dead-letter" for n in ordered) else "drop"
        return UpdateResult(values, True, ordered, action)

    def read(
        self, state: FeatureState, t_s: float, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, float | None]:
        """Every feature as of ``t_s`` without applying an event (e.g. to serve the latest vector).

        Exact for ``t_s`` at or after ``watermark - grace``; for earlier times it is what the kept
        tiles say (events later than ``t_s`` in the same tile count, expired tiles are gone).
        """
        try:
            t_us = to_us(t_s)
        except ValueError as exc:
            raise FeatureInputError(str(exc)) from None
        values: dict[str, float | None] = dict.fromkeys(self.feature_names)
        for lane in self._lanes:
            for g in lane.groups:
                g.query(state[g.tiles_at], state[lane.pending_at], t_us, False, values)
        self._finish(values, attributes)
        return values

    def _finish(self, values: dict[str, float | None], attributes: Mapping[str, Any] | None) -> None:
        if not self._has_extras:
            return
        for d in self._attributes:
            raw = None if attributes is None else attributes.get(d.field)  # type: ignore[arg-type]
            values[d.name] = attribute_value(raw)
        defaults = self._defaults
        if defaults:
            for name, default in defaults.items():
                if values.get(name) is None:
                    values[name] = default
        for d in self._ratios:
            num = values.get(d.numerator)  # type: ignore[arg-type]
            den = values.get(d.denominator)  # type: ignore[arg-type]
            q = None
            if num is not None and den:
                q = num / den
                if not math.isfinite(q):
                    q = None
            values[d.name] = defaults.get(d.name) if q is None else q


def _fold(lane: _Lane, state: FeatureState, watermark_us: int) -> None:
    """Move pending events that can no longer be overtaken into their tiles; drop tiles nobody sees."""
    limit = watermark_us - lane.grace_us
    pending = state[lane.pending_at]
    for e in pending:
        if e[0] < limit:
            lane.fold(state, pending, limit)
            break
    for g in lane.groups:
        tiles = state[g.tiles_at]
        if tiles:
            first = limit // g.tile_us - g.n_tiles + 1
            if tiles[0][0] < first:
                drop = 1
                while drop < len(tiles) and tiles[drop][0] < first:
                    drop += 1
                del tiles[:drop]


def _fold_events(lane: _Lane, state: FeatureState, pending: list[list[Any]], limit: int) -> None:
    """Reference fold: add each pending event older than ``limit`` to its tile, in arrival order."""
    keep = []
    for e in pending:
        t_us = e[0]
        if t_us >= limit:
            keep.append(e)
            continue
        t_s = t_us / US_PER_S
        for g in lane.groups:
            tile = _tile_for(state[g.tiles_at], t_us // g.tile_us, g.empties)
            for i, add, _, _, mode, index, _ in g.slot_table:
                if mode == 2:  # event
                    tile[i] = add(tile[i], None, t_s)
                    continue
                v = e[index]
                if v is None or (mode == 0 and type(v) is not float):
                    continue
                tile[i] = add(tile[i], v, t_s)
    pending[:] = keep


def _tile_for(tiles: list[list[Any]], k: int, empties: tuple[Any, ...]) -> list[Any]:
    # Tiles are sorted by index; events mostly land in the newest one. States are never modified in
    # place, so new tiles may share the empty states.
    i = len(tiles)
    while i and tiles[i - 1][0] > k:
        i -= 1
    if i and tiles[i - 1][0] == k:
        return tiles[i - 1]
    tile = [k, *empties]
    tiles.insert(i, tile)
    return tile


def _query(  # noqa: C901  (the reference code of the generated query: one loop, kept readable beside it)
    g: _Group,
    tiles: list[list[Any]],
    pending: list[list[Any]],
    t_us: int,
    exclude_current: bool,
    values: dict[str, float | None],
) -> None:
    tile_us = g.tile_us
    hi = t_us // tile_us
    lo = hi - g.n_tiles + 1
    chosen = [tile for tile in tiles if lo <= tile[0] <= hi] if tiles else tiles
    # An event at or before t_us is in a tile <= hi; only the old edge needs checking.
    events = [e for e in pending if e[0] <= t_us and e[0] // tile_us >= lo]
    n_events = len(events)
    times = [e[0] / US_PER_S for e in events]
    states: list[Any] = []
    append = states.append
    for i, add, merge, empty, mode, index, relative in g.slot_table:
        if chosen:
            acc = chosen[0][i]
            for tile in chosen[1:]:
                acc = merge(acc, tile[i])
        else:
            acc = empty
        # On update the current event is the last pending entry; a relative-time slot leaves it out.
        n = n_events - 1 if (relative and exclude_current) else n_events
        if mode == 0:  # number
            for j in range(n):
                v = events[j][index]
                if type(v) is float:
                    acc = add(acc, v, times[j])
        elif mode == 1:  # any
            for j in range(n):
                v = events[j][index]
                if v is not None:
                    acc = add(acc, v, times[j])
        else:  # event
            for j in range(n):
                acc = add(acc, None, times[j])
        append(acc)
    t_query = t_us / US_PER_S
    isfinite = math.isfinite
    for name, slot_index, result, relative in g.feature_table:
        r = result(states[slot_index])
        if r is not None:
            if relative:
                r = t_query - r
            elif type(r) is not float:
                r = float(r)
            if not isfinite(r):
                r = None
        values[name] = r


# -- generated hot loops ------------------------------------------------------------------------------
#
# _query and _fold_events call each aggregation's add/merge/result per tile and event; in pure Python
# those calls dominate. The functions below generate, per window group, one function with the shipped
# aggregations' arithmetic inlined (Kernel snippets in aggregations.py) and the others called through
# their methods, exactly as the reference code does. A unit test holds both paths equal, bit for bit.

_NOTHING = object()


def _slot_kernel(slot: _Slot, tag: str, ns: dict[str, Any]) -> Kernel:
    """The slot's inline kernel, or one that calls its methods (names suffixed with ``tag``)."""
    kernel: Kernel | None = getattr(slot.agg, "kernel", lambda: None)()
    if kernel is not None:
        return kernel
    ns[f"EMPTY{tag}"], ns[f"ADD{tag}"], ns[f"MERGE{tag}"] = slot.empty, slot.add, slot.merge
    return Kernel(
        init="{a} = NOTHING",
        merge=f"{{a}} = s if {{a}} is NOTHING else MERGE{tag}({{a}}, s)",
        add=f"{{a}} = ADD{tag}(EMPTY{tag} if {{a}} is NOTHING else {{a}}, v, t)",
        state=f"(EMPTY{tag} if {{a}} is NOTHING else {{a}})",
        result="",
    )


def _bind(ns: dict[str, Any], kernel: Kernel, a: str) -> None:
    for key, value in kernel.env.items():
        ns[key.format(a=a)] = value


def _emit(lines: list[str], code: str, a: str, depth: int) -> None:
    for line in code.format(a=a).split("\n"):
        lines.append("    " * depth + line)


def _emit_valid(lines: list[str], slot: _Slot, depth: int) -> int:
    """Bind ``v`` and open the reference code's validity test; returns the depth of the body."""
    pad = "    " * depth
    if slot.mode == "event":
        lines.append(pad + "v = None")
        return depth
    lines.append(pad + f"v = e[{slot.index}]")
    lines.append(pad + ("if type(v) is float:" if slot.mode == "number" else "if v is not None:"))
    return depth + 1


def _build(name: str, lines: list[str], ns: dict[str, Any]) -> Callable[..., None]:
    ns.update(NOTHING=_NOTHING, sqrt=math.sqrt, isfinite=math.isfinite)
    # The source is built from the Kernel snippets of the aggregations, never from user input.
    exec(compile("\n".join(lines), f"<freshet generated {name}>", "exec"), ns)
    function: Callable[..., None] = ns[name]
    return function


def _compile_query(g: _Group) -> Callable[..., None]:
    ns: dict[str, Any] = {}
    kernels = [_slot_kernel(s, str(i), ns) for i, s in enumerate(g.slots, 1)]
    for i, k in enumerate(kernels, 1):
        _bind(ns, k, f"a{i}")
    lines = [
        "def query(tiles, pending, t_us, exclude_current, values):",
        f"    hi = t_us // {g.tile_us}",
        f"    lo = hi - {g.n_tiles - 1}",
        "    chosen = [tile for tile in tiles if lo <= tile[0] <= hi] if tiles else tiles",
        f"    events = [e for e in pending if e[0] <= t_us and e[0] // {g.tile_us} >= lo]",
    ]
    for i, k in enumerate(kernels, 1):
        _emit(lines, k.init, f"a{i}", 1)
    lines.append("    for tile in chosen:")
    for i, k in enumerate(kernels, 1):
        lines.append(f"        s = tile[{i}]")
        _emit(lines, k.merge, f"a{i}", 2)
    relative = any(s.relative for s in g.slots)
    if relative:
        # On update the current event is the last one; relative-time slots leave it out.
        lines.append("    current = len(events) - 1 if exclude_current else -1")
    lines.append("    for j, e in enumerate(events):")
    lines.append("        t = e[0] / 1000000")
    for i, (slot, k) in enumerate(zip(g.slots, kernels, strict=True), 1):
        depth = 2
        if slot.relative:
            lines.append("        if j != current:")
            depth = 3
        _emit(lines, k.add, f"a{i}", _emit_valid(lines, slot, depth))
    lines.append("    t_query = t_us / 1000000")
    for f_index, (name, k_index, agg) in enumerate(g.features):
        slot, k, a = g.slots[k_index], kernels[k_index], f"a{k_index + 1}"
        if k.result:
            feature_kernel = agg.kernel()  # type: ignore[attr-defined]
            _bind(ns, feature_kernel, a)  # same state key, so the same parameters as the slot's
            expr = feature_kernel.result.format(a=a)
            if slot.relative:
                lines.append(f"    values[{name!r}] = None if {a} is None else t_query - {a}")
            else:
                lines.append(f"    values[{name!r}] = {expr}")
            continue
        ns[f"RESULT{f_index}"] = agg.result
        lines.append(f"    r = RESULT{f_index}({k.state.format(a=a)})")
        lines.append("    if r is not None:")
        lines.append("        r = t_query - r" if slot.relative else "        r = float(r)")
        lines.append("        if not isfinite(r):")
        lines.append("            r = None")
        lines.append(f"    values[{name!r}] = r")
    return _build("query", lines, ns)


def _compile_fold(lane: _Lane) -> Callable[..., None]:
    ns: dict[str, Any] = {"tile_for": _tile_for}
    lines = [
        "def fold(state, pending, limit):",
        "    keep = []",
        "    for e in pending:",
        "        t_us = e[0]",
        "        if t_us >= limit:",
        "            keep.append(e)",
        "            continue",
        "        t = t_us / 1000000",
    ]
    for gi, g in enumerate(lane.groups):
        ns[f"EMPTIES{gi}"] = g.empties
        lines.append(f"        tile = tile_for(state[{g.tiles_at}], t_us // {g.tile_us}, EMPTIES{gi})")
        for i, slot in enumerate(g.slots, 1):
            k = _slot_kernel(slot, f"{gi}_{i}", ns)
            a = f"a{gi}_{i}"
            _bind(ns, k, a)
            # tile[i] = add(tile[i], v, t) for valid values, as the reference code does.
            depth = _emit_valid(lines, slot, 2)
            _emit(lines, k.init, a, depth)
            lines.append("    " * depth + f"s = tile[{i}]")
            _emit(lines, k.merge, a, depth)
            _emit(lines, k.add, a, depth)
            lines.append("    " * depth + f"tile[{i}] = {k.state.format(a=a)}")
    lines.append("    pending[:] = keep")
    return _build("fold", lines, ns)
