"""A canary rollout of one candidate model against the slot's champion (issue 10). Pure: no I/O.

The candidate serves ``steps[0]`` of the entities (sticky, :func:`models.routing.route`), then the next
step's share each time it has served ``step_examples`` outcomes at the current step with its guards
holding; after the last step it is promoted (reason ``canary_passed``). Guards, on the served outcomes since
the canary started:

- served accuracy below the baseline's (the champion's, on its share of the traffic) with the configured
  ``confidence``, by always-valid confidence sequences (:func:`models.sequential.worse_with_confidence`);
- a failure rate (predictions the candidate could not make) above ``max_error_rate``;
- latency is guarded by the worker, which measures it (:class:`streams.core.predictor.Predictor`).

A breach rolls it back: the champion serves everything again, the decision is announced (``drift``,
``kind: "canary"``, ``decision: "rollback"``) with the statistic, confidence and sample sizes.

>>> c = Canary("new", "old", steps=(0.1, 0.5), step_examples=100, confidence=0.99, min_examples=50)
>>> c.share
0.1
>>> [c.observe("new", True), c.observe("old", True)][0] is None
True
>>> decisions = [c.observe("new", False) for _ in range(60)] + [c.observe("old", True) for _ in range(60)]
>>> [d["decision"] for d in decisions if d]
['rollback']
>>> c.state, c.share
('rolled_back', 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.sequential import BernoulliCS, worse_with_confidence

__all__ = ["Canary"]


@dataclass
class Canary:
    candidate: str
    baseline: str
    steps: tuple[float, ...] = (0.05, 0.25, 0.5)
    step_examples: int = 500
    confidence: float = 0.99
    min_examples: int = 100
    max_error_rate: float = 0.02
    step: int = 0
    state: str = "running"  # running | rolled_back | promoted
    at_step: int = 0  # candidate outcomes at the current step
    served: dict[str, BernoulliCS] = field(default_factory=dict)
    failures: int = 0  # candidate predictions that failed (no prediction)
    reason: str = ""

    def __post_init__(self) -> None:
        self.served.setdefault(self.candidate, BernoulliCS())
        self.served.setdefault(self.baseline, BernoulliCS())

    @property
    def share(self) -> float:
        """The candidate's share now (0 once rolled back, 1 once promoted)."""
        if self.state == "rolled_back":
            return 0.0
        if self.state == "promoted":
            return 1.0
        return self.steps[self.step]

    def observe(self, arm: str, correct: bool | None) -> dict[str, Any] | None:
        """One served outcome (``correct`` None: the prediction failed); a decision dict or None."""
        if self.state != "running" or arm not in self.served:
            return None
        if arm == self.candidate:
            self.at_step += 1
            if correct is None:
                self.failures += 1
        self.served[arm].update(bool(correct))
        cand, base = self.served[self.candidate], self.served[self.baseline]
        if cand.n >= self.min_examples and base.n >= self.min_examples:
            worse, margin = worse_with_confidence(cand, base, self.confidence)
            if worse:
                return self._end("rolled_back", "rollback", "served_accuracy", margin)
        if cand.n >= self.min_examples and self.failures / cand.n > self.max_error_rate:
            return self._end("rolled_back", "rollback", "error_rate", self.failures / cand.n)
        if self.at_step >= self.step_examples:
            if self.step + 1 < len(self.steps):
                self.step += 1
                self.at_step = 0
                return self.decision("step", "guards_held", 0.0)
            return self._end("promoted", "promote", "guards_held", 0.0)
        return None

    def breach(self, reason: str, statistic: float) -> dict[str, Any] | None:
        """A guard breach seen elsewhere (the worker's latency guard): roll back now."""
        if self.state != "running":
            return None
        return self._end("rolled_back", "rollback", reason, statistic)

    def _end(self, state: str, decision: str, reason: str, statistic: float) -> dict[str, Any]:
        self.state = state
        self.reason = reason
        return self.decision(decision, reason, statistic)

    def decision(self, decision: str, reason: str, statistic: float) -> dict[str, Any]:
        """The decision message body: what was decided, why, the statistic, the confidence, the samples."""
        cand, base = self.served[self.candidate], self.served[self.baseline]
        return {
            "decision": decision, "reason": reason, "candidate": self.candidate, "baseline": self.baseline,
            "share": self.share, "step": self.step, "statistic": statistic, "confidence": self.confidence,
            "n_candidate": cand.n, "n_baseline": base.n,
            "accuracy_candidate": cand.mean if cand.n else None, "accuracy_baseline": base.mean if base.n else None,
            "failures_candidate": self.failures,
        }
