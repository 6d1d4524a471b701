"""The learner: exactly-once learning across crashes, snapshots, promotion; and warm start."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import datasets
from river.datasets import synth

from models.champion import ModelGroup
from models.drift.config import DriftConfig
from models.learner import Learner
from models.registry import InMemoryRegistryStore, Registry, SnapshotError
from models.spec import ModelSlotDef, parse_models
from models.warm_start import warm_start
from streams.records import Example

SLOT = parse_models(
    [{
        "slot": "default",
        "champion": {"name": "lr", "factory": "logistic_regression"},
        "challengers": [{"name": "hat", "factory": "hoeffding_adaptive_tree", "params": {"seed": 42}}],
        "promotion": {"metric": "accuracy", "margin": 0.02, "window": 200, "min_examples": 300},
    }]
)[0]
LR_ONLY = parse_models(None, "classification")[0]


def _examples(stream: list[tuple[dict, object]], slot: str = "default") -> list[Example]:
    return [
        Example(id=f"e{i}", entity="u", slot=slot, features=x, label=y, event_ts=float(i), label_ts=float(i))  # type: ignore[arg-type]
        for i, (x, y) in enumerate(stream)
    ]


AGRAWAL = _examples(list(itertools.islice(synth.Agrawal(classification_function=0, seed=42), 900)))
PHISHING = _examples(list(datasets.Phishing()))
PROBES = [e.features for e in AGRAWAL[::7]]


def _registry() -> Registry:
    return Registry(InMemoryRegistryStore(), "k")


def _fingerprint(group: ModelGroup) -> tuple:
    """Everything observable: champion, each model's predictions on the probes, metrics, counts."""
    answers = {
        name: [group.predict(x, name) for x in PROBES] for name in group.names
    }
    return group.champion, answers, group.metrics(), group.examples_learned, group.promotions


def _run(slot: ModelSlotDef, examples: list[Example], snapshot_every: int) -> Learner:
    learner = Learner.restore(_registry(), slot, snapshot_every=snapshot_every)
    for offset, example in enumerate(examples):
        learner.process(example, offset)
    return learner


def _run_with_crashes(
    slot: ModelSlotDef, examples: list[Example], snapshot_every: int, crashes: list[int]
) -> tuple[Learner, list[int]]:
    """Process ``examples``; at each crash offset, drop the learner and restore it from the registry.

    The consumer seeks to ``next_offset``, but (as after an at-least-once redelivery) replays from an
    earlier offset to prove the learner skips what it already learned. Returns the learner and the
    offsets it actually learned.
    """
    registry = _registry()
    learner = Learner.restore(registry, slot, snapshot_every=snapshot_every)
    learned: list[int] = []
    offset = 0
    pending = sorted(crashes)
    while offset < len(examples):
        if pending and offset == pending[0]:
            pending.pop(0)
            learner = Learner.restore(registry, slot, snapshot_every=snapshot_every)  # the crash
            learned = [o for o in learned if o < learner.next_offset]  # lost with the process memory
            offset = max(0, learner.next_offset - 25)  # redelivered from before the snapshot
            continue
        out = learner.process(examples[offset], offset)
        if not out.skipped:
            learned.append(offset)
        offset += 1
    return learner, learned


def test_crash_and_restore_learns_every_example_exactly_once() -> None:
    reference = _run(SLOT, AGRAWAL, snapshot_every=100)
    # Crashes: mid-interval, right after a snapshot, after the promotion (at 301), twice in a row.
    crashed, learned = _run_with_crashes(SLOT, AGRAWAL, 100, crashes=[150, 200, 340, 341, 777])
    assert learned == list(range(len(AGRAWAL)))
    assert reference.group.champion == "hat"  # the run does promote, before and after crashes
    assert _fingerprint(crashed.group) == _fingerprint(reference.group)
    assert crashed.offset == reference.offset == len(AGRAWAL) - 1


@settings(max_examples=12, deadline=None)
@given(
    snapshot_every=st.integers(1, 60),
    crashes=st.lists(st.integers(0, 299), max_size=4, unique=True),
)
def test_any_crash_points_give_the_uninterrupted_model(snapshot_every: int, crashes: list[int]) -> None:
    examples = PHISHING[:300]
    reference = _run(LR_ONLY, examples, snapshot_every)
    crashed, learned = _run_with_crashes(LR_ONLY, examples, snapshot_every, crashes)
    assert learned == list(range(len(examples)))
    probes = [e.features for e in PHISHING[1000:1100]]
    assert [crashed.group.predict(x) for x in probes] == [reference.group.predict(x) for x in probes]
    assert crashed.group.metrics() == reference.group.metrics()


def test_snapshots_carry_offset_counts_lineage_and_metrics() -> None:
    registry = _registry()
    learner = Learner.restore(registry, SLOT, snapshot_every=100)
    metas = []
    promotions = []
    for offset, example in enumerate(AGRAWAL[:401]):
        out = learner.process(example, offset + 1000)  # offsets need not start at 0
        if out.snapshot:
            metas.append(out.snapshot)
            assert out.metrics is not None
        if out.promotion:
            promotions.append(out.promotion)
    # A promotion is snapshotted at once so predictors swap; the regular cadence restarts from it.
    assert [m.offset for m in metas] == [1099, 1199, 1299, 1300, 1400]
    assert [m.version for m in metas] == [1, 2, 3, 4, 5]
    assert [m.parent for m in metas] == [None, 1, 2, 3, 4]
    assert [m.examples_learned for m in metas] == [100, 200, 300, 301, 401]
    assert [m.champion for m in metas] == ["lr", "lr", "lr", "hat", "hat"]
    [promotion] = promotions
    assert promotion.offset == 1300 and promotion.promoted == "hat"
    assert metas[-1].metrics["hat"]["n"] == 400.0  # its first example could not be predicted
    assert registry.current("default") == metas[-1]


def test_restore_resumes_from_the_current_version_after_a_rollback() -> None:
    registry = _registry()
    learner = Learner.restore(registry, LR_ONLY, snapshot_every=100)
    for offset, example in enumerate(PHISHING[:300]):
        learner.process(example, offset)
    registry.rollback("default")
    resumed = Learner.restore(registry, LR_ONLY, snapshot_every=100)
    assert resumed.next_offset == 200 and resumed.version == 2
    out = resumed.process(PHISHING[200], 200)
    assert not out.skipped
    assert resumed.snapshot().parent == 2


def test_skips_and_bad_examples() -> None:
    learner = Learner.restore(_registry(), LR_ONLY, snapshot_every=1000, metrics_every=2)
    first = learner.process(PHISHING[0], 5)
    assert not first.skipped and first.predictions == {"lr": False}
    assert learner.process(PHISHING[1], 5).skipped  # same offset again
    assert learner.process(PHISHING[1], 3).skipped  # older offset
    other = learner.process(_examples([({"x": 1.0}, True)], slot="other")[0], 6)
    assert other.skipped and learner.next_offset == 7
    bad = Example(id="b", entity="u", slot="default", features={"x": 1.0}, label=None, event_ts=0.0,  # type: ignore[arg-type]
                  label_ts=0.0)
    out = learner.process(bad, 7)
    assert out.skipped and out.error is not None and "not a class" in out.error
    assert learner.next_offset == 8 and learner.group.examples_learned == 1
    assert learner.process(PHISHING[2], 8).metrics is not None  # every 2 examples learned


def test_restore_refuses_a_tampered_snapshot() -> None:
    store = InMemoryRegistryStore()
    registry = Registry(store, "k")
    learner = Learner.restore(registry, LR_ONLY, snapshot_every=10)
    for offset, example in enumerate(PHISHING[:10]):
        learner.process(example, offset)
    blob = bytearray(store.get_blob("default", 1) or b"")
    blob[len(blob) // 2] ^= 0x01
    store.put("default", 1, bytes(blob), store.get_meta("default", 1) or {})
    with pytest.raises(SnapshotError, match="tampered"):
        Learner.restore(registry, LR_ONLY)


def test_fresh_restore_and_bad_arguments() -> None:
    learner = Learner.restore(_registry(), LR_ONLY)
    assert learner.next_offset == 0 and learner.version is None
    with pytest.raises(ValueError):
        Learner(learner.group, learner.registry, snapshot_every=0)


# -- warm start ------------------------------------------------------------------------------------


def _frame(n: int = 400) -> pd.DataFrame:
    stream = itertools.islice(datasets.Phishing(), n)
    rows = [dict(x, label=y, ts=float(i)) for i, (x, y) in enumerate(stream)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # shuffled: warm start must sort


def test_warm_start_learns_rows_in_time_order_then_goes_online() -> None:
    frame = _frame()
    features = [c for c in frame.columns if c not in ("label", "ts")]
    group = warm_start(SLOT, frame, "label", features, time_col="ts")
    reference = ModelGroup(SLOT)
    for e in PHISHING[:400]:
        reference.score_and_learn(e.features, e.label)
    probes = [e.features for e in PHISHING[1000:1100]]
    assert [group.predict(x) for x in probes] == [reference.predict(x) for x in probes]
    assert group.metrics() == reference.metrics()

    registry = _registry()
    meta = Learner(group, registry).snapshot()
    assert (meta.offset, meta.examples_learned) == (-1, 400)
    learner = Learner.restore(registry, SLOT)
    assert learner.next_offset == 0
    learner.process(PHISHING[400], 0)
    assert learner.group.examples_learned == 401


def test_warm_start_missing_values_and_labels() -> None:
    frame = pd.DataFrame({"a": [1.0, None, 3.0, 4.0], "label": [True, False, None, True]})
    group = warm_start(LR_ONLY, frame, "label")
    assert group.examples_learned == 3  # the row without a label is skipped
    with pytest.raises(ValueError, match=r"no column\(s\) \['b'\]"):
        warm_start(LR_ONLY, frame, "label", ["a", "b"])


def test_the_learner_owns_drift_supervision_and_returns_alerts_and_actions() -> None:
    """Concept drift is watched inside the learner: learn_one returns the alerts and what the policy did,
    and a changed group is due a snapshot at that example (the learner process only publishes them)."""
    [slot] = parse_models(None, "classification")
    drift = DriftConfig.from_dict({"concept": {"policy": "reset_and_retrain"}})
    learner = Learner.restore(Registry(InMemoryRegistryStore(), "k"), slot, snapshot_every=10_000, drift=drift)
    before = itertools.islice(synth.Agrawal(classification_function=0, seed=1), 3000)
    after = itertools.islice(synth.Agrawal(classification_function=4, seed=2), 3000)
    outs = []
    for i, (x, y) in enumerate(itertools.chain(before, after)):
        ex = Example(id=f"e{i}", entity="u", slot="default", features=x, label=y, event_ts=float(i), label_ts=float(i))
        outs.append(learner.learn_one(ex, offset=i))
    acted = [o for o in outs if o.actions]
    assert acted, "the switch of concept at example 3000 was not acted on"
    assert all(o.alerts and o.group_changed and o.snapshot_due for o in acted)
    assert {a.kind for o in acted for a in o.actions} == {"reset_and_retrain"}
    assert min(o.offset for o in acted) >= 3000
