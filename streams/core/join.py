"""Log and wait: join each label with the features logged at prediction time (pure, no Kafka).

DESIGN.md decision 2: a prediction's features are kept until its label comes, and the training example is
built from them, never from features recomputed later. Labels may come late, out of order, twice, before
their prediction, or for ids never predicted. All waiting is measured in **event time**: a prediction waits
``ttl_s`` after its ``event_ts``; a label that comes first waits ``ttl_s`` after its ``ts``. A label joins a
prediction when ``label.ts - prediction.event_ts <= ttl_s`` (the label delay; negative delays are allowed
for clocks that disagree), whichever arrives first.

Outcomes (counted in :attr:`LabelJoin.counts`, per label and per prediction):

- ``joined``: the label met its prediction(s); one :class:`~streams.records.Example` per slot.
- ``pending``: the label came first; it waits (later ``joined`` or ``unknown``).
- ``duplicate``: a second label for an id still remembered (the first label wins).
- ``unknown``: a label that met no prediction within the wait (never seen, or its prediction is too old).
- ``expired_prediction``: a prediction whose label did not come within the wait.
- ``duplicate_prediction``: the same slot predicted the same event id twice (the first is kept).

Each label ends up counted once as joined, unknown or duplicate (``pending`` counts those that had to wait
on the way), and each prediction as joined, expired or duplicate. An entry whose wait ended before the
watermark (the latest event time seen) is dead whether or not :meth:`LabelJoin.expire` has run yet, so the
outcomes do not depend on how often it runs. Duplicates are recognised while the id is remembered (until
its wait ends); a message for an id forgotten since counts as new.

State is one small JSON-able dict per event id, so the I/O layer can keep ``entries`` in a Faust table
keyed by event id (the join writes an entry back after every change, as a Faust table needs)::

    {"p": {slot: prediction dict},  # predictions waiting for the label
     "j": {slot: event_ts},         # slots already joined (for duplicate detection)
     "l": {"label": ..., "ts": ...} or None,
     "d": deadline}                 # event time after which the entry expires

After a table is recovered or partitions are reassigned, call :meth:`LabelJoin.rebuild_index`.

>>> from streams.records import LabelRecord, Prediction
>>> join = LabelJoin(ttl_s=60)
>>> pred = Prediction(id="e1", entity="u1", prediction=True, probabilities={"True": 0.9, "False": 0.1},
...                   model="default@3", features={"f": 1.0}, event_ts=100.0, produced_ts=100.2)
>>> join.on_prediction(pred)
[]
>>> out = join.on_label(LabelRecord(id="e1", label=False, ts=130.0))
>>> out.outcome, out.delay_s, out.examples[0].features, out.examples[0].slot
('joined', 30.0, {'f': 1.0}, 'default')
>>> join.on_label(LabelRecord(id="e1", label=True, ts=131.0)).outcome
'duplicate'
>>> join.on_label(LabelRecord(id="nope", label=True, ts=140.0)).outcome
'pending'
>>> [o.outcome for o in join.expire(now_event_ts=500.0)]
['unknown']
>>> join.counts["joined"], join.counts["unknown"], len(join)
(1, 1, 0)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.records import Example, LabelRecord, Prediction

__all__ = ["OUTCOMES", "JoinOutcome", "LabelJoin", "slot_of"]

OUTCOMES = ("joined", "pending", "duplicate", "unknown", "expired_prediction", "duplicate_prediction")


def slot_of(model_ref: str) -> str:
    """The slot of a ``"name@version"`` model reference.

    >>> slot_of("fraud@12"), slot_of("fraud")
    ('fraud', 'fraud')
    """
    return model_ref.rsplit("@", 1)[0] if "@" in model_ref else model_ref


@dataclass(frozen=True)
class JoinOutcome:
    """What happened to one label or prediction."""

    outcome: str  # one of OUTCOMES
    id: str
    examples: tuple[Example, ...] = ()
    delay_s: float | None = None  # label.ts - prediction.event_ts, for joined labels
    slot: str | None = None  # for prediction outcomes
    # False only when a label already counted joins one more slot's prediction: count outcomes with
    # ``counted`` set and the totals equal ``LabelJoin.counts``.
    counted: bool = True


Entry = dict[str, Any]


class LabelJoin:
    """Predictions wait for labels (and labels for predictions) up to ``ttl_s`` seconds of event time.

    ``entries`` is where the per-event state lives (a dict by default; a Faust table in the worker).
    ``slot_for`` names the slot a prediction belongs to (default: its ``slot`` field).
    """

    def __init__(
        self,
        ttl_s: float,
        entries: MutableMapping[str, Entry] | None = None,
        slot_for: Callable[[Prediction], str] | None = None,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s = {ttl_s}: the label wait must be a positive number of seconds")
        self.ttl_s = float(ttl_s)
        self.slot_for: Callable[[Prediction], str] = slot_for or (lambda pred: pred.slot)
        self.entries: MutableMapping[str, Entry] = {} if entries is None else entries
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.watermark = float("-inf")
        self._heap: list[tuple[float, str]] = []
        self.waiting_predictions = 0
        self.pending_labels = 0
        # Outcomes of entries found expired while handling a message, returned by the next expire().
        self._outbox: list[JoinOutcome] = []
        if self.entries:
            self.rebuild_index()

    def __len__(self) -> int:
        return len(self.entries)

    # -- index -----------------------------------------------------------------------------------

    def rebuild_index(self) -> None:
        """Rebuild the expiry index and gauges by scanning ``entries`` (after recovery or rebalance)."""
        self._heap = [(float(e["d"]), event_id) for event_id, e in self.entries.items()]
        heapq.heapify(self._heap)
        self.waiting_predictions = sum(len(e["p"]) for e in self.entries.values())
        self.pending_labels = sum(
            1 for e in self.entries.values() if e["l"] is not None and not e["j"]
        )
        for e in self.entries.values():
            for p in e["p"].values():
                self.watermark = max(self.watermark, float(p["event_ts"]))
            if e["l"] is not None:
                self.watermark = max(self.watermark, float(e["l"]["ts"]))

    def _store(self, event_id: str, entry: Entry, old_deadline: float | None) -> None:
        self.entries[event_id] = entry  # written back whole: a Faust table only sees assignments
        if old_deadline is None or entry["d"] != old_deadline:
            heapq.heappush(self._heap, (entry["d"], event_id))

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n

    def _live(self, event_id: str) -> Entry | None:
        """The entry for ``event_id`` unless its wait is over (then it is expired now, as expire() would)."""
        entry = self.entries.get(event_id)
        if entry is not None and float(entry["d"]) < self.watermark:
            self._outbox.extend(self._expire_entry(event_id, entry))
            return None
        return entry

    def _expire_entry(self, event_id: str, entry: Entry) -> list[JoinOutcome]:
        out = [JoinOutcome("expired_prediction", event_id, slot=slot) for slot in entry["p"]]
        self.waiting_predictions -= len(entry["p"])
        self._count("expired_prediction", len(entry["p"]))
        if entry["l"] is not None and not entry["j"]:
            out.append(JoinOutcome("unknown", event_id))
            self.pending_labels -= 1
            self._count("unknown")
        del self.entries[event_id]
        return out

    # -- events ----------------------------------------------------------------------------------

    def on_prediction(self, pred: Prediction) -> list[JoinOutcome]:
        """Log a prediction; if its label is already waiting, join at once."""
        self.watermark = max(self.watermark, pred.event_ts)
        slot = self.slot_for(pred)
        entry = self._live(pred.id)
        old_deadline = None if entry is None else float(entry["d"])
        if entry is None:
            entry = {"p": {}, "j": {}, "l": None, "d": pred.event_ts + self.ttl_s}
        else:
            entry = {"p": dict(entry["p"]), "j": dict(entry["j"]), "l": entry["l"], "d": entry["d"]}
        if slot in entry["p"] or slot in entry["j"]:
            self._count("duplicate_prediction")
            return [JoinOutcome("duplicate_prediction", pred.id, slot=slot)]
        label = entry["l"]
        if label is not None and label["ts"] - pred.event_ts <= self.ttl_s:
            was_pending = not entry["j"]
            entry["j"][slot] = pred.event_ts
            self._store(pred.id, entry, old_deadline)
            example = _example(pred, slot, label)
            if was_pending:
                # The pending label is now resolved: count it joined (once, whatever the slots).
                self.pending_labels -= 1
                self._count("joined")
            return [
                JoinOutcome(
                    "joined", pred.id, (example,), label["ts"] - pred.event_ts, slot=slot, counted=was_pending
                )
            ]
        entry["p"][slot] = pred.to_dict()
        entry["d"] = max(float(entry["d"]), pred.event_ts + self.ttl_s)
        self.waiting_predictions += 1
        self._store(pred.id, entry, old_deadline)
        return []

    def on_label(self, label: LabelRecord) -> JoinOutcome:
        """Join a label with its waiting prediction(s), or keep it waiting for them."""
        self.watermark = max(self.watermark, label.ts)
        entry = self._live(label.id)
        if entry is not None and entry["l"] is not None:
            self._count("duplicate")
            return JoinOutcome("duplicate", label.id)
        old_deadline = None if entry is None else float(entry["d"])
        if entry is None:
            entry = {"p": {}, "j": {}, "l": None, "d": label.ts + self.ttl_s}
        else:
            entry = {"p": dict(entry["p"]), "j": dict(entry["j"]), "l": entry["l"], "d": entry["d"]}
        entry["l"] = {"label": label.label, "ts": label.ts}
        matched = {
            slot: p for slot, p in entry["p"].items() if label.ts - float(p["event_ts"]) <= self.ttl_s
        }
        if matched:
            examples = []
            for slot, p in matched.items():
                del entry["p"][slot]
                entry["j"][slot] = p["event_ts"]
                examples.append(_example(Prediction.from_dict(p), slot, entry["l"]))
            self.waiting_predictions -= len(matched)
            self._store(label.id, entry, old_deadline)
            self._count("joined")
            delay = label.ts - min(float(p["event_ts"]) for p in matched.values())
            return JoinOutcome("joined", label.id, tuple(examples), delay)
        # No prediction yet, or only ones too old for this label (they will expire): wait for one.
        entry["d"] = max(float(entry["d"]), label.ts + self.ttl_s)
        self.pending_labels += 1
        self._store(label.id, entry, old_deadline)
        self._count("pending")
        return JoinOutcome("pending", label.id)

    def expire(self, now_event_ts: float | None = None) -> list[JoinOutcome]:
        """Forget entries whose wait ended before ``now_event_ts`` (default: the latest event time seen).

        Returns an ``expired_prediction`` per prediction that got no label and an ``unknown`` per label
        that met no prediction.
        """
        if now_event_ts is not None:
            self.watermark = max(self.watermark, now_event_ts)
        now = self.watermark
        out, self._outbox = self._outbox, []
        while self._heap and self._heap[0][0] < now:
            deadline, event_id = heapq.heappop(self._heap)
            entry = self.entries.get(event_id)
            if entry is None or float(entry["d"]) != deadline:
                continue  # forgotten already, or its wait was extended (a newer index item exists)
            out.extend(self._expire_entry(event_id, entry))
        return out

    # -- persistence -----------------------------------------------------------------------------

    def dumps(self) -> bytes:
        """The whole state as JSON bytes (entries, counts, watermark)."""
        return orjson.dumps(
            {
                "v": 1,
                "ttl_s": self.ttl_s,
                "watermark": self.watermark if self.watermark != float("-inf") else None,
                "counts": self.counts,
                "entries": dict(self.entries),
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    @classmethod
    def loads(cls, data: bytes, ttl_s: float | None = None) -> LabelJoin:
        """Rebuild from :meth:`dumps` (``ttl_s`` overrides the saved wait).

        >>> join = LabelJoin(60)
        >>> _ = join.on_label(LabelRecord(id="e9", label=1, ts=5.0))
        >>> again = LabelJoin.loads(join.dumps())
        >>> again.entries == join.entries, again.counts["pending"], again.pending_labels
        (True, 1, 1)
        """
        raw = orjson.loads(data)
        join = cls(ttl_s if ttl_s is not None else raw["ttl_s"], dict(raw["entries"]))
        join.counts.update(raw.get("counts", {}))
        if raw.get("watermark") is not None:
            join.watermark = max(join.watermark, float(raw["watermark"]))
        return join


def _example(pred: Prediction, slot: str, label: dict[str, Any]) -> Example:
    return Example(
        id=pred.id,
        entity=pred.entity,
        slot=slot,
        features=dict(pred.features),
        label=label["label"],
        event_ts=pred.event_ts,
        label_ts=float(label["ts"]),
        served_prediction=pred.prediction,
        served_model=pred.model,
        served_probabilities=dict(pred.probabilities),
    )
