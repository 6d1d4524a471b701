"""Decisions that stay valid when looked at after every example (issue 10). Pure: no I/O.

Two tests, both safe to check continuously (no "peeking" problem):

- :class:`PairedSPRT`, for promotion on the shadow scores: champion and challenger are scored on the same
  examples, so each example is a pair of losses. Only pairs where one model did strictly better carry
  information (McNemar's idea); among those, ``p`` = P(the challenger did better). The sequential
  probability ratio of H1: p = 1/2 + ``effect`` against H0: p = 1/2 (equal models) is a nonnegative
  martingale under H0, so by Ville's inequality it *ever* reaches 1 / alpha with probability at most
  alpha, however long the stream is watched: promote when it does. (Wald's A = (1 - beta) / alpha is only
  approximately valid, and restarting the test after a "no better" verdict spends alpha again: measured,
  it gave 5.5% false promotions at alpha = 5%, so the test is never restarted while the pair lasts; the
  group starts a new one when the champion changes or a model is reset.) The "no better" boundary
  B = beta / (1 - alpha) is reported (``"keep"``, once) but stops nothing.
- :class:`BernoulliCS`, an always-valid confidence sequence for a served rate (accuracy, error rate):
  Hoeffding's bound at each n with a union bound over n (alpha_n = alpha * 6 / (pi**2 n**2)), so the
  interval holds at every n at once with probability 1 - alpha. :func:`worse_with_confidence` compares two.

>>> import random
>>> rng = random.Random(1)
>>> test = PairedSPRT(alpha=0.05, beta=0.05, effect=0.1)
>>> decision = None
>>> for n in range(5000):
...     decision = test.update(rng.random() < 0.2, rng.random() < 0.1)  # champion errs 20%, challenger 10%
...     if decision == "promote":
...         break
>>> decision, n < 1500
('promote', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BernoulliCS", "PairedSPRT", "worse_with_confidence"]


@dataclass
class PairedSPRT:
    """Wald's SPRT on the paired losses of a champion and a challenger (see the module docstring).

    :meth:`update` takes one pair of losses (any numbers: 0/1 errors, absolute errors) and returns
    ``"promote"`` when the challenger is better with false-promotion rate ``alpha``, ``"keep"`` (once) when
    it crossed the "no better" boundary, or None.
    ``min_examples`` pairs must be seen before a promotion is returned.
    """

    alpha: float = 0.05
    beta: float = 0.05
    effect: float = 0.1
    min_examples: int = 0
    llr: float = 0.0
    n: int = 0  # pairs seen
    wins: int = 0  # pairs the challenger did better
    losses: int = 0  # pairs the champion did better
    kept: int = 0  # 1 once "keep" was reported

    def __post_init__(self) -> None:
        if not (0 < self.alpha < 1 and 0 < self.beta < 1 and 0 < self.effect < 0.5):
            raise ValueError("need 0 < alpha < 1, 0 < beta < 1 and 0 < effect < 0.5")

    @property
    def upper(self) -> float:
        """log(1 / alpha): the log likelihood ratio above which the challenger is promoted."""
        return math.log(1.0 / self.alpha)

    @property
    def lower(self) -> float:
        """log B: below it, the challenger is no better so far (reported, the test goes on)."""
        return math.log(self.beta / (1 - self.alpha))

    def update(self, champion_loss: float, challenger_loss: float) -> str | None:
        self.n += 1
        if challenger_loss == champion_loss:
            return None
        p1 = 0.5 + self.effect
        if challenger_loss < champion_loss:
            self.wins += 1
            self.llr += math.log(p1 / 0.5)
        else:
            self.losses += 1
            self.llr += math.log((1 - p1) / 0.5)
        if self.llr >= self.upper and self.n >= self.min_examples:
            return "promote"
        if self.llr <= self.lower and not self.kept:
            self.kept = 1  # reported once: "no better so far"; the test goes on (see the module docstring)
            return "keep"
        return None

    def confidence(self) -> float:
        """1 - alpha: the confidence a promotion is made with."""
        return 1.0 - self.alpha

    def summary(self) -> dict[str, float | int | str]:
        """The statistic, its threshold, the confidence and the sample sizes (for the decision message)."""
        return {
            "test": "sprt", "statistic": round(self.llr, 6), "threshold": round(self.upper, 6),
            "confidence": self.confidence(), "n": self.n,
            "n_discordant": self.wins + self.losses, "wins": self.wins, "losses": self.losses,
            "kept": self.kept,
        }


@dataclass
class BernoulliCS:
    """An always-valid confidence sequence for the rate of a 0/1 outcome.

    >>> cs = BernoulliCS()
    >>> for i in range(1000):
    ...     cs.update(i % 10 != 0)
    >>> lo, hi = cs.interval(0.01)
    >>> round(cs.mean, 3), lo < 0.9 < hi, round(hi - lo, 3)
    (0.9, True, 0.198)
    """

    n: int = 0
    successes: int = 0

    def update(self, success: bool) -> None:
        self.n += 1
        self.successes += bool(success)

    @property
    def mean(self) -> float:
        return self.successes / self.n if self.n else math.nan

    def radius(self, alpha: float) -> float:
        """Half-width at the current n (holds for all n at once with probability 1 - alpha)."""
        if self.n == 0:
            return math.inf
        alpha_n = alpha * 6.0 / (math.pi**2 * self.n**2)
        return math.sqrt(math.log(2.0 / alpha_n) / (2.0 * self.n))

    def interval(self, alpha: float) -> tuple[float, float]:
        r = self.radius(alpha)
        return max(0.0, self.mean - r), min(1.0, self.mean + r)


def worse_with_confidence(candidate: BernoulliCS, baseline: BernoulliCS, confidence: float) -> tuple[bool, float]:
    """Whether ``candidate``'s rate is below ``baseline``'s with ``confidence`` (both sequences hold at once
    with that probability, each at half the alpha), and the gap ``baseline - candidate`` minus the two radii
    (positive: worse; the decision's statistic).

    >>> good, bad = BernoulliCS(), BernoulliCS()
    >>> for i in range(400):
    ...     good.update(i % 10 != 0); bad.update(i % 10 == 0)
    >>> worse_with_confidence(bad, good, 0.99)[0], worse_with_confidence(good, bad, 0.99)[0]
    (True, False)
    """
    alpha = (1.0 - confidence) / 2.0
    if candidate.n == 0 or baseline.n == 0:
        return False, -math.inf
    margin = (baseline.mean - candidate.mean) - candidate.radius(alpha) - baseline.radius(alpha)
    return margin > 0, margin
