"""When the learner publishes a servable version (a champion record) of a slot: pure, clock passed in.

Issue 13 / DESIGN.md decision 9: users are served the last version the workers swapped in, so the learner
publishes by time as well as by count. A slot's record is due when something was learned since the last
one and

* a snapshot was just taken (every ``snapshot_every`` examples, a promotion, a drift action): the record
  carries the snapshot's version;
* early in the slot's life, after examples 1, 2, 4, 8, ... up to ``snapshot_every`` (the first versions
  matter most: an untrained model is the worst one a user can get);
* ``every_s`` seconds have passed since the last record.

Big models are not republished faster than they can be loaded: after each publication the minimum interval
becomes ``cost_factor`` times what publishing it cost the learner (the CPU time of pickling, signing and
writing the champion, about what unpickling it costs a worker; CPU, not wall time, so that a busy machine or a
slow Redis does not hold back a small model), so publication takes at most ~1/cost_factor of the learner's time and a
worker spends at most about as much loading. Snapshots are never held back.

>>> s = PublicationSchedule(every_s=0.25, snapshot_every=500)
>>> [n for n in range(1, 40) if s.due(n, now=0.0) and s.published(n, now=0.0, cost_s=0.0) is None]
[1, 2, 4, 8, 16, 32]
>>> s.due(33, now=0.1), s.due(33, now=0.3), s.due(32, now=9.0)  # by time; nothing new: never
(False, True, False)
>>> s.published(33, now=0.3, cost_s=0.05)  # a big model: 20 x 0.05 s between records from now on
>>> s.due(40, now=0.6), s.due(40, now=1.31), s.due(40, now=0.6, snapshot=True)
(False, True, True)
>>> s.due(40, now=1.0, idle=True), s.due(40, now=1.31, idle=True)  # the stream paused: publish when allowed
(False, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PublicationSchedule"]


@dataclass
class PublicationSchedule:
    """Decides, per slot, when the next champion record is due (see the module docstring)."""

    every_s: float = 0.25  # 0 or less: by time (and on idle) never, only with snapshots and the early ones
    snapshot_every: int = 500
    early: bool = True
    cost_factor: float = 20.0
    last_ts: float = -math.inf
    last_examples: int = -1
    min_interval_s: float = 0.0
    _next_early: int = 1

    def due(self, examples_learned: int, now: float, snapshot: bool = False, idle: bool = False) -> bool:
        """Whether to publish the slot's champion now, having learned ``examples_learned`` examples.

        ``idle``: no examples are coming in; what was learned is published as soon as the cost allows.
        """
        if examples_learned == self.last_examples and not snapshot:
            return False
        if snapshot:
            return True
        since = now - self.last_ts
        if idle and self.every_s > 0:
            return since >= self.min_interval_s
        if self.early and examples_learned >= self._next_early and examples_learned <= self.snapshot_every:
            return since >= self.min_interval_s
        return self.every_s > 0 and since >= max(self.every_s, self.min_interval_s)

    def next_due_in(self, now: float) -> float:
        """Seconds until a record may be due by time (how long the learner may wait for examples)."""
        if self.every_s <= 0:
            return math.inf
        return max(0.0, self.last_ts + max(self.every_s, self.min_interval_s) - now)

    def published(self, examples_learned: int, now: float, cost_s: float) -> None:
        """Record a publication (``cost_s``: what pickling and writing the record took)."""
        self.last_ts = now
        self.last_examples = examples_learned
        self.min_interval_s = self.cost_factor * max(0.0, cost_s)
        while self._next_early <= examples_learned:
            self._next_early *= 2
