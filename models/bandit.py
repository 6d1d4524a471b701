"""A bandit over a slot's models on their served reward (issue 10). Pure: no I/O.

Each arm's reward is 1 when the prediction it served was right, 0 otherwise; its posterior is
Beta(1 + successes, 1 + failures). Thompson sampling serves each event from the arm whose posterior draw is
highest; the worker does the same in distribution by *probability matching*: the learner computes, from
the posteriors, the probability that each arm is the best (Monte Carlo, seeded) and publishes those as
shares; each event id hashes into them. Every arm keeps at least ``floor`` of the traffic, so a bad start
is always corrected. ``ucb`` gives the arm with the highest UCB1 bound everything but the floors.

>>> b = BetaBandit(["good", "bad"], floor=0.05, seed=1)
>>> for i in range(400):
...     b.update("good", i % 10 != 0)  # 90% right
...     b.update("bad", i % 2 == 0)    # 50% right
>>> shares = b.shares()
>>> shares["good"], shares["bad"]
(0.95, 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BetaBandit"]


@dataclass
class BetaBandit:
    arms: Sequence[str]
    floor: float = 0.05
    algorithm: str = "thompson"
    seed: int = 0
    draws: int = 4000
    successes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    rounds: int = 0

    def __post_init__(self) -> None:
        self.arms = list(self.arms)
        for arm in self.arms:
            self.successes.setdefault(arm, 0)
            self.failures.setdefault(arm, 0)

    def update(self, arm: str, reward: bool) -> None:
        if arm not in self.successes:
            return
        if reward:
            self.successes[arm] += 1
        else:
            self.failures[arm] += 1

    def n(self, arm: str) -> int:
        return self.successes[arm] + self.failures[arm]

    def p_best(self) -> dict[str, float]:
        """P(arm is the best) under the Beta posteriors (``draws`` seeded Monte Carlo draws)."""
        self.rounds += 1
        rng = np.random.default_rng([self.seed, self.rounds])
        samples = np.stack([
            rng.beta(1 + self.successes[a], 1 + self.failures[a], size=self.draws) for a in self.arms
        ])
        wins = np.bincount(samples.argmax(axis=0), minlength=len(self.arms))
        return {a: float(w) / self.draws for a, w in zip(self.arms, wins, strict=True)}

    def ucb_best(self) -> dict[str, float]:
        total = sum(self.n(a) for a in self.arms)
        best, best_bound = self.arms[0], -math.inf
        for arm in self.arms:
            n = self.n(arm)
            bound = math.inf if n == 0 else self.successes[arm] / n + math.sqrt(2 * math.log(max(total, 1)) / n)
            if bound > best_bound:
                best, best_bound = arm, bound
        return {a: 1.0 if a == best else 0.0 for a in self.arms}

    def shares(self) -> dict[str, float]:
        """The traffic shares: floor + (1 - k * floor) * P(best), rounded to 1e-4, summing to 1."""
        p = self.p_best() if self.algorithm == "thompson" else self.ucb_best()
        k = len(self.arms)
        raw = {a: self.floor + (1.0 - k * self.floor) * p[a] for a in self.arms}
        out = {a: round(v, 4) for a, v in raw.items()}
        top = max(out, key=lambda a: out[a])
        out[top] = round(out[top] + 1.0 - sum(out.values()), 4)
        return out

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Per arm: posterior mean, successes, failures (for the decision message)."""
        return {
            a: {"mean": (1 + self.successes[a]) / (2 + self.n(a)), "n": self.n(a), "successes": self.successes[a]}
            for a in self.arms
        }
