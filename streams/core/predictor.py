"""The serving side of each model slot: the champion's current version, swapped without a pause.

Predictors learn nothing (DESIGN.md decision 3). A swap replaces one reference, so an event being
scored finishes on the old model and the next one sees the new model: no lock, no pause.

Staleness (issue 13): the version follower (streams/runtime/hot_swap.py) tells the predictor how far the learner
is (:meth:`Predictor.note_learner`, from every ``model-versions`` announcement), so each prediction can say
how many examples, and seconds, its version was behind the learner *as far as this worker knows*
(:meth:`Predictor.staleness`).

>>> from models.spec import parse_models
>>> p = Predictor(parse_models([], "classification"))
>>> y, proba, served = p.predict("default", {"x": 1.0})
>>> served
'lr@0'
>>> p.staleness("default", now_s=100.0)  # nothing heard from the learner yet
(None, None)
>>> p.note_learner("default", examples_learned=40, ts=90.0)
>>> p.staleness("default", now_s=100.0)  # version 0 has learned nothing; the learner was ahead since 90
(40, 10.0)
>>> p.swap("default", p.models["default"].model, "lr@7", examples_learned=40, published_ts=99.0)
>>> p.predict("default", {"x": 1.0})[2], p.staleness("default", now_s=100.0)
('lr@7', (0, 0.0))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from models.router import ArmsBundle
from models.routing import initial_plan
from models.spec import ModelSlotDef, build_model
from streams.core.routed import RoutedSlot


@dataclass(frozen=True)
class Served:
    model: Any
    label: str  # "name@version"
    kind: str  # "classification" | "regression"
    examples_learned: int | None = 0  # examples the version had learned (None: not known)
    published_ts: float | None = None  # when the learner published it (epoch s)


class Predictor:
    def __init__(self, slots: list[ModelSlotDef]) -> None:
        self.slots = {s.slot: s for s in slots}
        # Until the learner publishes a version, each slot serves its untrained champion as version 0.
        self.models: dict[str, Served] = {
            s.slot: Served(build_model(s.champion), f"{s.champion.name}@0", s.kind) for s in slots
        }
        # slot -> (examples the learner has learned, epoch s since which it is ahead of the served version)
        self._learner: dict[str, tuple[int, float | None]] = {}
        # Routed slots (issue 10): the arms' models and the plan; until a record comes, the spec's plan
        # over untrained models (version 0).
        self.routed: dict[str, RoutedSlot] = {}
        self.breaches: list[dict[str, Any]] = []  # latency guard rollbacks to announce (taken by the serve step)
        for s in slots:
            if s.routing.kind != "champion":
                plan = initial_plan(s.routing, s.slot, s.champion.name)
                defs = {d.name: d for d in s.models}
                models = {a: build_model(defs[a]) for a in plan.arms if a in defs}
                models.setdefault(s.champion.name, self.models[s.slot].model)
                self.routed[s.slot] = RoutedSlot(models, plan, 0, s.routing, s.champion.name)

    def swap(
        self,
        slot: str,
        model: Any,
        label: str,
        examples_learned: int | None = None,
        published_ts: float | None = None,
    ) -> None:
        if isinstance(model, ArmsBundle):  # a routed slot's record: every arm it serves, and the plan
            version = label.rpartition("@")[2]
            routed = self.routed.get(slot)
            if routed is None:
                routed = RoutedSlot(model.models, model.plan, int(version), self.slots[slot].routing, model.champion)
            self.routed[slot] = routed.adopt(model.models, model.plan, int(version), model.champion)
            model = model.models[model.champion]
        self.models[slot] = served = Served(model, label, self.slots[slot].kind, examples_learned, published_ts)
        known = self._learner.get(slot)
        if known is not None:
            ahead = served.examples_learned is not None and known[0] > served.examples_learned
            self._learner[slot] = (known[0], (known[1] or published_ts) if ahead else None)

    def note_learner(self, slot: str, examples_learned: int, ts: float) -> None:
        """The learner has learned ``examples_learned`` examples, as announced at ``ts`` (epoch s)."""
        served = self.models.get(slot)
        if served is None:
            return
        known = self._learner.get(slot)
        ahead = served.examples_learned is not None and examples_learned > served.examples_learned
        since = (known[1] if known is not None and known[1] is not None else ts) if ahead else None
        self._learner[slot] = (examples_learned, since)

    def staleness(self, slot: str, now_s: float) -> tuple[int | None, float | None]:
        """How far the served version of ``slot`` is behind the learner, as far as this worker knows.

        ``(examples, seconds)``: examples the learner has learned that the served version has not, and
        the seconds since the worker first heard the learner was ahead of it (0 when it is not). ``None``
        when the worker has heard nothing from the learner yet (or does not know what the version learned).
        The worker fills a prediction's ``staleness_examples`` / ``staleness_s`` from this.
        """
        known = self._learner.get(slot)
        served = self.models.get(slot)
        if known is None or served is None or served.examples_learned is None:
            return None, None
        examples = max(0, known[0] - served.examples_learned)
        if examples == 0 or known[1] is None:
            return examples, 0.0
        return examples, max(0.0, now_s - known[1])

    def predict(self, slot: str, x: dict[str, float]) -> tuple[Any, dict[str, float], str]:
        """(prediction, probabilities keyed by class as text, "name@version").

        A model that has learned nothing gives no prediction (``None``): a classifier has no probabilities
        yet (River's rule), and a regressor would answer 0.0 whatever the input, the worst answer there is
        (TrumpApproval's approval ratings are ~40), so it is held back the same way until the first trained
        version is swapped in (the learner publishes it after its first example).

        >>> from models.spec import parse_models
        >>> p = Predictor(parse_models([], "regression"))
        >>> p.predict("default", {"x": 1.0})[0] is None
        True
        >>> model = p.models["default"].model
        >>> model.learn_one({"x": 1.0}, 40.0)
        >>> p.swap("default", model, "linear@1", examples_learned=1)
        >>> p.predict("default", {"x": 1.0})[0] > 0
        True
        """
        served = self.models[slot]
        if served.kind == "regression" and served.examples_learned == 0:
            return None, {}, served.label  # an untrained regressor says 0.0 for everything: not an answer
        return (*_predict(served.model, served.kind, x), served.label)

    def predict_routed(
        self, slot: str, x: dict[str, float], entity: str, event_id: str
    ) -> tuple[Any, dict[str, float], str, RoutedSlot | None, str | None]:
        """Like :meth:`predict`, by the arm the slot's plan routes this event to.

        Returns (prediction, probabilities, "arm@version", the routed slot or None, the arm or None).
        """
        routed = self.routed.get(slot)
        if routed is None:
            return (*self.predict(slot, x), None, None)
        arm = routed.choose(entity, event_id)
        started = time.perf_counter()
        y, proba = _predict(routed.models[arm], self.models[slot].kind, x)
        breach = routed.observe_latency(arm, time.perf_counter() - started)
        if breach is not None:
            self.breaches.append(breach)
        return y, proba, routed.label(arm), routed, arm


def _predict(model: Any, kind: str, x: dict[str, float]) -> tuple[Any, dict[str, float]]:
    if kind == "regression":
        return model.predict_one(x), {}
    proba = model.predict_proba_one(x)
    if not proba:
        return None, {}
    y = max(proba, key=proba.get)
    return y, {_class_key(k): float(v) for k, v in proba.items()}


def _class_key(c: Any) -> str:
    """JSON object keys are text; booleans keep their JSON spelling (``true``/``false``)."""
    if isinstance(c, bool):
        return "true" if c else "false"
    return str(c)
