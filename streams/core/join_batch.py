"""The label join, a batch at a time: predictions re-read + labels → examples, with no I/O.

The worker's join agent takes a batch of records from ``predictions`` and ``labels`` (both keyed by event
id, so an event's prediction and its label share a partition), hands it to :meth:`JoinStep.on_batch`, and
gets back the examples to send, the dead letters, the label outcomes, the served metrics and the
join-state writes. State writes are **one per event id per batch** (a key logged and joined in the same
batch costs none); the agent sends them after the batch's examples are acknowledged, so a crash between
the two repeats an example (the label is read again) rather than losing one.

Why the re-read of ``predictions`` stays: labels are keyed by event id while features live with the entity,
so joining needs one repartition by event id; ``predictions`` is that repartition, and it is durable, so
the join never depends on the worker that served the event (DESIGN.md, review of 2026-12-01).

Shapes::

    [InRecord(topic "predictions" | "labels", ...)]
      → prediction bytes → Prediction → LabelJoin.on_prediction;  label bytes → LabelRecord | Invalid → on_label
      → JoinOutput(examples=[OutMessage "examples", key slot], dead_letters, outcomes, delays_s,
                   state_writes={event id key: (partition, bytes | None)});  served_snapshot() on a timer

>>> from streams.records import Prediction, encode
>>> store = {}  # the worker's label-join table
>>> step = JoinStep(ttl_s=60, store=store, n_partitions=1, slot_kinds={"default": "classification"},
...                 predictions_topic="predictions")
>>> pred = Prediction(id="e1", entity="u1", prediction=True, probabilities={"true": 0.9, "false": 0.1},
...                   model="lr@3", features={"f": 1.0}, event_ts=100.0, produced_ts=100.2)
>>> out = step.on_batch([InRecord("predictions", 0, 0, b"e1", encode(pred.to_dict()), 100.2),
...                      InRecord("labels", 0, 0, b"e1", b'{"id": "e1", "label": true, "ts": 130}', 130.0)])
>>> [decode(m.value)["label"] for m in out.examples], out.outcomes["joined"]
([True], 1)
>>> step.served_snapshot()["default"]["accuracy"]  # on a timer in the worker
1.0
>>> out.state_writes[b"e1"][1] is not None  # remembered as joined (a second label is a duplicate)
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field

import orjson

from models.clock import Clock, system_clock
from models.evaluation import OnlineScorer
from streams.core.join import Entry, JoinOutcome, LabelJoin
from streams.core.partitions import partition_for
from streams.core.serve import InRecord, OutMessage, dead_letter_message
from streams.core.validate import Invalid, validate_label
from streams.records import Prediction, decode, encode
from streams.spec import LabelSchema

__all__ = ["SERVED_METRICS", "BatchEntries", "JoinOutput", "JoinStep"]

# The served metrics shown on /metrics (scope served_rolling / served_cumulative).
SERVED_METRICS = ("accuracy", "log_loss", "mae", "rmse")


class BatchEntries(MutableMapping[str, Entry]):
    """The join's entries over a bytes → bytes store: each key decoded once per batch, written once.

    Reads go to the store (decoded and cached); writes stay in the cache until :meth:`take_writes`, which
    returns each changed key's final bytes (``None``: deleted). The caller applies them to the store after
    the batch's examples are sent.

    >>> store = {b"a": b'{"x": 1}'}
    >>> entries = BatchEntries(store)
    >>> entries["a"]["x"], "b" in entries
    (1, False)
    >>> entries["b"] = {"x": 2}; entries["b"] = {"x": 3}; del entries["a"]
    >>> sorted(entries), sorted(entries.take_writes().items())
    (['b'], [(b'a', None), (b'b', b'{"x":3}')])
    """

    def __init__(self, store: Mapping[bytes, bytes]) -> None:
        self.store = store
        self._cache: dict[str, Entry | None] = {}
        self._dirty: set[str] = set()

    def __getitem__(self, key: str) -> Entry:
        if key in self._cache:
            value = self._cache[key]
        else:
            raw = self.store.get(key.encode())
            value = None if raw is None else orjson.loads(raw)
            self._cache[key] = value
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Entry) -> None:
        self._cache[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError when absent, as a dict would
        self._cache[key] = None
        self._dirty.add(key)

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for raw in list(self.store.keys()):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            seen.add(key)
            if self._cache.get(key, True) is not None:
                yield key
        for key, value in list(self._cache.items()):
            if key not in seen and value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def take_writes(self) -> dict[bytes, bytes | None]:
        writes: dict[bytes, bytes | None] = {}
        for key in self._dirty:
            value = self._cache[key]
            writes[key.encode()] = None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        self._dirty.clear()
        self._cache.clear()
        return writes


@dataclass(slots=True)
class JoinOutput:
    examples: list[OutMessage] = field(default_factory=list)
    dead_letters: list[OutMessage] = field(default_factory=list)
    dead_letter_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # counted outcomes (see streams.core.join)
    delays_s: list[float] = field(default_factory=list)  # label delay of each joined label
    state_writes: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)


class JoinStep:
    """Log predictions, join labels, score what was served; one call per batch of records."""

    def __init__(
        self,
        ttl_s: float,
        store: Mapping[bytes, bytes],
        n_partitions: int,
        slot_kinds: Mapping[str, str],
        predictions_topic: str,
        rolling_window: int = 1000,
        label_schema: LabelSchema | None = None,
        clock: Clock = system_clock,
    ) -> None:
        """``clock``: the wall clock, for when a record was dead-lettered (event times come from the data)."""
        self.label_schema = label_schema
        self.clock = clock
        self.entries = BatchEntries(store)
        self.join = LabelJoin(ttl_s, entries=self.entries)
        self.entries.take_writes()  # reading the recovered entries is not a change
        self.n_partitions = n_partitions
        self.predictions_topic = predictions_topic
        self.scorers = {slot: OnlineScorer(kind, rolling_window=rolling_window) for slot, kind in slot_kinds.items()}
        self._scored: set[str] = set()  # slots scored since the last served_snapshot()

    def served_snapshot(self) -> dict[str, dict[str, float]]:
        """The served metrics of the slots scored since the last call (``{slot: {metric: value}}``).

        Called by the runtime on a timer, not per batch: at low rates a batch holds one or two examples,
        and a snapshot (rolling windows included) costs more than scoring them.
        """
        out = {}
        for slot in sorted(self._scored):
            snap = self.scorers[slot].snapshot()
            out[slot] = {
                name: value
                for name, value in snap.items()
                if value is not None and name.removesuffix("_rolling") in SERVED_METRICS
            }
        self._scored = set()
        return out

    def rebuild_index(self) -> None:
        """After the store was recovered (or partitions moved): rebuild the expiry index and gauges."""
        self.join.rebuild_index()
        self.entries.take_writes()

    @property
    def waiting_predictions(self) -> int:
        return self.join.waiting_predictions

    def on_batch(self, records: list[InRecord]) -> JoinOutput:
        out = JoinOutput()
        scored: set[str] = set()
        for rec in records:
            if rec.topic == self.predictions_topic:
                # bytes → Prediction → logged (and joined if its label came first)
                pred = _prediction(rec.value)
                if isinstance(pred, Invalid):
                    self._dead_letter(rec, pred, out)
                    continue
                outcomes = self.join.on_prediction(pred)
            else:
                # bytes → LabelRecord | Invalid → joined with its logged prediction(s), or waits
                label = validate_label(rec.value, self.label_schema, arrival_s=rec.timestamp_s)
                if isinstance(label, Invalid):
                    self._dead_letter(rec, label, out)
                    continue
                outcomes = [self.join.on_label(label)]
            self._outcomes(outcomes, out, scored)
        self._outcomes(self.join.expire(), out, scored)
        self._scored |= scored
        # A key's state goes to the partition its records came from (no hashing per write); an entry
        # touched without a record of this batch (expired) is placed by the default partitioner.
        n = self.n_partitions
        came_from = {rec.key: rec.partition for rec in records if rec.key is not None}
        out.state_writes = {
            key: (p if (p := came_from.get(key)) is not None else partition_for(key, n), value)
            for key, value in self.entries.take_writes().items()
        }
        return out

    def _outcomes(self, outcomes: list[JoinOutcome], out: JoinOutput, scored: set[str]) -> None:
        for o in outcomes:
            if o.counted:
                out.outcomes[o.outcome] += 1
                if o.outcome == "joined" and o.delay_s is not None:
                    out.delays_s.append(o.delay_s)
            for example in o.examples:
                # Example → examples (key: slot, so one learner reads each slot in order)
                out.examples.append(OutMessage("examples", example.slot.encode(), encode(example.to_dict())))
                scorer = self.scorers.get(example.slot)
                if scorer is not None and example.served_prediction is not None:
                    scorer.update(example.label, example.served_prediction, example.served_probabilities or None)
                    scored.add(example.slot)

    def _dead_letter(self, rec: InRecord, why: Invalid, out: JoinOutput) -> None:
        out.dead_letters.append(dead_letter_message(rec, why.reason, why.detail, self.clock()))
        out.dead_letter_reasons[(rec.topic, why.reason)] += 1


def _prediction(data: bytes | None) -> Prediction | Invalid:
    """A prediction re-read from ``predictions``, or why it cannot be joined (never raises)."""
    try:
        raw = decode(data or b"")
        if not isinstance(raw, dict):
            return Invalid("not_an_object", "a prediction must be a JSON object")
        return Prediction.from_dict(raw)
    except orjson.JSONDecodeError:
        return Invalid("undecodable", "prediction is not UTF-8 JSON")
    except (KeyError, TypeError, ValueError) as exc:
        return Invalid("bad_prediction", f"prediction does not match the format: {exc!r}"[:200])
