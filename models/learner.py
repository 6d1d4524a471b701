"""The ordered learner of one slot, without I/O: exactly-once test-then-train with signed snapshots.

The I/O layer (a Faust agent or a plain consumer) feeds :meth:`Learner.process` the slot's examples in offset
order and acts on what it returns: publish the new model version, the promotion event, the metric snapshot,
the drift alerts and actions. The learner owns drift supervision of its group
(:class:`models.drift.supervisor.SlotDriftSupervisor`, from the spec's ``[drift]``): a drift policy that
promotes a challenger gives the one :class:`~models.champion.PromotionEvent` path, as the promotion policy
does, and a changed group is due a snapshot at once. The learner snapshots the whole group together with the
offset of the last example learned (DESIGN.md decision 3). After a crash, :meth:`Learner.restore` resumes from
the current snapshot and the I/O layer seeks the slot's examples partition (one slot, one partition: the topic
is keyed by slot) to :attr:`Learner.next_offset`; offsets at or below the restored one are skipped anyway, so
nothing is learned twice and nothing is skipped. (Do not rely on the consumer group's committed offsets: the
snapshot's offset is the truth.)

>>> from models.registry import InMemoryRegistryStore, Registry
>>> from models.spec import parse_models
>>> from models.example import Example
>>> registry = Registry(InMemoryRegistryStore(), "key")
>>> [slot] = parse_models(None, "classification")
>>> learner = Learner.restore(registry, slot, snapshot_every=2)
>>> learner.next_offset
0
>>> def ex(i): return Example(id=f"e{i}", entity="u", slot="default", features={"x": float(i)},
...                           label=i % 2 == 0, event_ts=float(i), label_ts=float(i))
>>> [learner.process(ex(i), offset=i).snapshot is not None for i in range(3)]
[False, True, False]
>>> crashed = Learner.restore(registry, slot, snapshot_every=2)  # learned 0..1, lost 2
>>> crashed.next_offset, crashed.process(ex(0), offset=0).skipped
(2, True)
"""

from __future__ import annotations

import logging
import math
import numbers
import pickle
from dataclasses import dataclass, field, replace
from typing import Any

from models.champion import ModelGroup, PromotionEvent
from models.drift.alerts import DriftAlert
from models.drift.config import DriftConfig
from models.drift.policy import Action
from models.drift.supervisor import SlotDriftSupervisor
from models.example import Example
from models.registry import ModelMeta, Registry
from models.spec import ModelSlotDef

__all__ = ["BadExample", "Capture", "LearnOutput", "Learner", "check_label"]

_log = logging.getLogger(__name__)


class BadExample(ValueError):
    """An example that cannot be learned (its label does not fit the slot's kind)."""


def check_label(kind: str, label: Any) -> Any:
    """The label as the slot's models expect it, or :class:`BadExample`.

    >>> check_label("regression", 3), check_label("classification", 1.0)
    (3.0, 1)
    >>> check_label("regression", "high")
    Traceback (most recent call last):
    ...
    models.learner.BadExample: label 'high' is not a number; a regression slot needs numeric labels
    """
    if kind == "regression":
        if isinstance(label, bool) or not isinstance(label, numbers.Real) or not math.isfinite(label):
            raise BadExample(f"label {label!r} is not a number; a regression slot needs numeric labels")
        return float(label)
    if isinstance(label, bool | int | str):
        return label
    if isinstance(label, float) and label.is_integer():
        return int(label)  # JSON writers may send 1.0 for the class 1
    raise BadExample(f"label {label!r} is not a class; a classification slot needs bool, int or str labels")


@dataclass(frozen=True)
class LearnOutput:
    """What processing one example produced, for the I/O layer to publish."""

    offset: int
    skipped: bool  # already learned (offset <= restored offset), another slot's, or bad
    predictions: dict[str, Any]  # each model's prediction, made before it learned the example
    snapshot: ModelMeta | None = None  # a new version was saved: announce it on model-versions
    promotion: PromotionEvent | None = None
    metrics: dict[str, dict[str, float]] | None = None  # periodic: {model: {metric: value}}
    error: str | None = None  # why a bad example was not learned (dead-letter it)
    snapshot_due: bool = False  # a snapshot falls here (count or promotion); learn_one leaves it to the caller
    # Routing decisions (models.router: canary steps, rollbacks, bandit shares) to announce, and whether
    # the plan the workers serve changed (publish a record now).
    decisions: list[dict[str, Any]] = field(default_factory=list)
    plan_changed: bool = False
    alerts: tuple[DriftAlert, ...] = ()  # drift alerts raised by this example (concept drift, label shift)
    actions: tuple[Action, ...] = ()  # what the drift policy did about them (promote, reset_and_retrain, alert)
    group_changed: bool = False  # a promotion or a drift action changed the group: snapshot and announce now


@dataclass(frozen=True)
class Capture:
    """A snapshot taken (pickled) at one example and written later (once per batch): see :meth:`Learner.capture`."""

    blob: bytes
    offset: int
    examples_learned: int
    champion: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


class Learner:
    """Feeds examples to a :class:`ModelGroup` in offset order, once each, and snapshots it."""

    def __init__(
        self,
        group: ModelGroup,
        registry: Registry,
        *,
        name: str | None = None,
        snapshot_every: int = 500,
        metrics_every: int = 100,
        offset: int = -1,
        parent: int | None = None,
        drift: DriftConfig | None = None,
    ) -> None:
        if snapshot_every < 1 or metrics_every < 1:
            raise ValueError("snapshot_every and metrics_every must be at least 1")
        self.group = group
        self.registry = registry
        self.name = name or group.slot
        self.snapshot_every = snapshot_every
        self.metrics_every = metrics_every
        self.offset = offset
        self.version = parent
        self._since_snapshot = 0
        # The learner owns drift supervision of its group: concept drift per model, label shift, the policy.
        self.supervisor = SlotDriftSupervisor(group, drift) if drift is not None else None

    @property
    def next_offset(self) -> int:
        """The first offset not yet learned: where the examples consumer must seek."""
        return self.offset + 1

    @classmethod
    def restore(
        cls,
        registry: Registry,
        slot_def: ModelSlotDef,
        *,
        name: str | None = None,
        rolling_window: int = 1000,
        snapshot_every: int = 500,
        metrics_every: int = 100,
        drift: DriftConfig | None = None,
    ) -> Learner:
        """Resume from the slot's current snapshot (verified), or start a fresh group at offset -1.

        ``drift``: the spec's drift settings (``PipelineSpec.drift``); None watches no drift."""
        name = name or slot_def.slot
        meta = registry.current(name)
        if meta is None:
            _log.info("slot %s: no snapshot in the registry; starting fresh models", slot_def.slot)
            group = ModelGroup(slot_def, rolling_window=rolling_window)
            return cls(group, registry, name=name, snapshot_every=snapshot_every,
                       metrics_every=metrics_every, drift=drift)
        state, meta = registry.load(name, meta.version)
        group = ModelGroup.from_state(state, slot_def)
        _log.info(
            "slot %s: resumed from %s (offset %d, %d examples learned)",
            slot_def.slot, meta.ref, meta.offset, meta.examples_learned,
        )
        return cls(group, registry, name=name, snapshot_every=snapshot_every, metrics_every=metrics_every,
                   offset=meta.offset, parent=meta.version, drift=drift)

    def process(self, example: Example, offset: int) -> LearnOutput:
        """Score and learn one example at ``offset`` (once: offsets at or below the last one are skipped).

        Snapshots when one is due and computes the metrics every ``metrics_every`` examples. The learner
        process uses :meth:`learn_one` and :meth:`capture` instead, to write once per batch.
        """
        out = self.learn_one(example, offset)
        if out.skipped:
            return out
        snapshot = metrics = None
        if out.snapshot_due or self.group.examples_learned % self.metrics_every == 0:
            metrics = self.group.metrics()
        if out.snapshot_due:
            snapshot = self.commit(self.capture(metrics))
        return replace(out, snapshot=snapshot, metrics=metrics)

    def learn_one(self, example: Example, offset: int) -> LearnOutput:
        """Score and learn one example, no I/O; ``snapshot_due`` says a snapshot falls here.

        The count restarts at a due snapshot whether or not the caller takes it, so snapshots fall at the
        same examples however the stream is cut into batches.
        """
        if offset <= self.offset:
            return LearnOutput(offset=offset, skipped=True, predictions={})
        if example.slot != self.group.slot:
            # Slots may share a partition; another slot's example only moves the offset on.
            self.offset = offset
            return LearnOutput(offset=offset, skipped=True, predictions={})
        try:
            y = check_label(self.group.kind, example.label)
        except BadExample as exc:
            self.offset = offset
            return LearnOutput(offset=offset, skipped=True, predictions={}, error=str(exc))
        predictions = self.group.score_and_learn(example.features, y)
        self.offset = offset
        self._since_snapshot += 1
        decisions: list[dict[str, Any]] = []
        plan_changed = False
        router = self.group.router
        routed = router.observe(example, y, self.group.champion) if router is not None else None
        if routed is not None:
            decisions.extend(routed.decisions)
            plan_changed = routed.plan_changed
        if routed is not None and routed.promote is not None:
            promotion: PromotionEvent | None = self.group.promote(routed.promote, reason="canary_passed")
        else:
            promotion = self.group.maybe_promote()
            proposal = self.group.take_proposal()
            if proposal is not None:
                decisions.extend(proposal.decisions)
                plan_changed = plan_changed or proposal.plan_changed
        alerts: tuple[DriftAlert, ...] = ()
        actions: tuple[Action, ...] = ()
        # A promotion or a routing change of a canary (start, step, rollback) is snapshotted at once.
        changed = promotion is not None or (plan_changed and any(d.get("kind") == "canary" for d in decisions))
        if self.supervisor is not None:
            watched = self.supervisor.on_example(
                example.features, y, predictions, event_ts=example.event_ts, offset=offset
            )
            alerts, actions = tuple(watched.alerts), tuple(watched.actions)
            changed = changed or watched.changed_group
            promotion = promotion or watched.promotion
        if promotion is not None:
            promotion = replace(promotion, offset=offset)
            self.group.promotions[-1] = promotion
        for d in decisions:
            if d.get("decision") == "rollback" and "~v" in str(d.get("candidate")):
                self.group.drop_member(str(d["candidate"]))  # an operator's version, canaried: gone again
            d.setdefault("offset", offset)
            d.setdefault("event_ts", example.event_ts)
            d.setdefault("examples_learned", self.group.examples_learned)
        # A changed group (promotion, retrained model) is snapshotted at once so predictors swap to it.
        due = changed or self._since_snapshot >= self.snapshot_every
        if due:
            self._since_snapshot = 0
        return LearnOutput(
            offset=offset, skipped=False, predictions=predictions, promotion=promotion, snapshot_due=due,
            decisions=decisions, plan_changed=plan_changed,
            alerts=alerts, actions=actions, group_changed=changed,
        )

    def capture(self, metrics: dict[str, dict[str, float]] | None = None) -> Capture:
        """Pickle the whole group now, with the offset of the last example learned (no I/O)."""
        self._since_snapshot = 0
        return Capture(
            blob=pickle.dumps(self.group.state(), protocol=pickle.HIGHEST_PROTOCOL),
            offset=self.offset,
            examples_learned=self.group.examples_learned,
            champion=self.group.champion,
            metrics=metrics if metrics is not None else self.group.metrics(),
        )

    def commit(self, capture: Capture, make_current: bool = True) -> ModelMeta:
        """Save a capture (signed) as the slot's next version; current unless told otherwise."""
        meta = self.registry.save_blob(
            self.name,
            capture.blob,
            parent=self.version,
            slot=self.group.slot,
            examples_learned=capture.examples_learned,
            offset=capture.offset,
            metrics=capture.metrics,
            role="group",
            champion=capture.champion,
            make_current=make_current,
        )
        self.version = meta.version
        return meta

    def snapshot(self, metrics: dict[str, dict[str, float]] | None = None) -> ModelMeta:
        """Save the group now (signed, with the offset of the last example learned) and make it current."""
        return self.commit(self.capture(metrics))
