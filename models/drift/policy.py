"""What to do when a model's concept drifts: alert only, promote the best challenger, or reset and retrain.

Pure decisions on plain data, decoupled from the model group: :func:`decide` takes the alert, the policy
and the challengers' scores and returns the :class:`Action` to carry out; :func:`retrain` rebuilds a model
from a factory and a recent :class:`ExampleBuffer` through callables. The learner owns the models and
applies the action.

>>> policy = DriftPolicy("promote_best_challenger")
>>> from models.drift.alerts import DriftAlert
>>> alert = DriftAlert(kind="concept", subject="default/lr", detector="adwin", statistic="error_mean",
...                    value=0.4, threshold=0.1, event_ts=None, offset=None)
>>> decide(alert, policy, champion_score=0.61, challenger_scores={"default/tree": 0.83, "default/nb": 0.7})
Action(kind='promote', subject='default/lr', target='default/tree', n_examples=0, reason='challenger default/tree scores 0.83 vs champion 0.61 after concept drift')
"""  # noqa: E501

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from models.drift.alerts import DriftAlert

POLICY_KINDS = ("alert", "promote_best_challenger", "reset_and_retrain")
ACTION_KINDS = ("alert", "promote", "reset_and_retrain")

M = TypeVar("M")


@dataclass(frozen=True)
class DriftPolicy:
    """A model's response to concept drift.

    - ``alert``: publish the alert, change nothing.
    - ``promote_best_challenger``: make the challenger with the best recent score champion if it beats the
      champion by more than ``min_gain`` and has seen ``min_challenger_examples``; else
      ``fallback`` (``"alert"`` or ``"reset_and_retrain"``).
    - ``reset_and_retrain``: replace the model by a fresh one from its factory, trained on the last
      ``retrain_recent`` examples of the model's buffer (which keeps ``retrain_buffer``; default: all).
      Keep the buffer short: an abrupt drift is detected tens of examples after it happens, so a long
      buffer is mostly the old concept (``tests/unit/models/test_drift_adaptive.py`` measures this).

    Warnings (``level="warning"``) only ever alert.

    >>> DriftPolicy("reset_and_retrain", retrain_buffer=500).retrain_recent
    500
    >>> DriftPolicy("retrain")
    Traceback (most recent call last):
    ...
    ValueError: drift policy 'retrain': use one of alert, promote_best_challenger, reset_and_retrain
    """

    kind: str = "alert"
    retrain_buffer: int = 200
    retrain_recent: int | None = None
    min_gain: float = 0.0
    min_challenger_examples: int = 0
    fallback: str = "alert"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"drift policy {self.kind!r}: use one of {', '.join(POLICY_KINDS)}")
        if self.fallback not in ("alert", "reset_and_retrain"):
            raise ValueError(f"drift policy fallback {self.fallback!r}: use 'alert' or 'reset_and_retrain'")
        if self.retrain_buffer < 0:
            raise ValueError(f"retrain_buffer={self.retrain_buffer}: must be >= 0")
        if self.retrain_recent is None:
            object.__setattr__(self, "retrain_recent", self.retrain_buffer)
        elif not 0 <= self.retrain_recent <= self.retrain_buffer:
            raise ValueError(
                f"retrain_recent={self.retrain_recent}: must be between 0 and retrain_buffer "
                f"({self.retrain_buffer})"
            )

    @property
    def needs_buffer(self) -> bool:
        """Whether the learner must keep recent examples for this policy."""
        return self.retrain_buffer > 0 and "reset_and_retrain" in (self.kind, self.fallback)


@dataclass(frozen=True)
class Action:
    """What the learner should do: ``alert`` (nothing more), ``promote`` ``target`` in place of
    ``subject``, or ``reset_and_retrain`` ``subject`` on its last ``n_examples`` buffered examples."""

    kind: str
    subject: str
    target: str | None = None
    n_examples: int = 0
    reason: str = ""


class ExampleBuffer:
    """A ring buffer of the most recent ``(x, y)`` examples (oldest dropped first).

    >>> buf = ExampleBuffer(3)
    >>> for i in range(5):
    ...     buf.append({"x": i}, i % 2)
    >>> len(buf), list(buf)
    (3, [({'x': 2}, 0), ({'x': 3}, 1), ({'x': 4}, 0)])
    >>> buf.recent(2)
    [({'x': 3}, 1), ({'x': 4}, 0)]
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 0:
            raise ValueError(f"ExampleBuffer maxlen={maxlen}: must be >= 0")
        self.maxlen = maxlen
        self._items: deque[tuple[dict[str, Any], Any]] = deque(maxlen=maxlen)

    def append(self, x: Mapping[str, Any], y: Any) -> None:
        if self.maxlen:
            self._items.append((dict(x), y))

    def recent(self, n: int | None = None) -> list[tuple[dict[str, Any], Any]]:
        """The last ``n`` examples (all when ``None``), oldest first."""
        items = list(self._items)
        if n is None:
            return items
        return items[-n:] if n > 0 else []

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], Any]]:
        return iter(list(self._items))


def decide(
    alert: DriftAlert,
    policy: DriftPolicy,
    *,
    champion_score: float | None = None,
    challenger_scores: Mapping[str, float] | None = None,
    challenger_examples: Mapping[str, int] | None = None,
    buffered: int | None = None,
) -> Action:
    """The action ``policy`` takes on ``alert`` for the model ``alert.subject``.

    ``challenger_scores`` maps each challenger to its recent online score (e.g. rolling accuracy; lower
    is better when ``policy.higher_is_better`` is false); ``challenger_examples`` how many examples each
    has learned; ``buffered`` how many examples the model's buffer holds (default: assume it is full).

    >>> alert = DriftAlert(kind="concept", subject="m", detector="adwin", statistic="error_mean",
    ...                    value=0.4, threshold=0.1, event_ts=None, offset=None)
    >>> decide(alert, DriftPolicy("reset_and_retrain", retrain_buffer=1000, retrain_recent=300))
    Action(kind='reset_and_retrain', subject='m', target=None, n_examples=300, reason='concept drift on m')
    >>> decide(alert, DriftPolicy("promote_best_challenger"), champion_score=0.9,
    ...        challenger_scores={"c": 0.8}).kind
    'alert'
    """
    subject = alert.subject
    if alert.level != "drift" or policy.kind == "alert" or alert.kind != "concept":
        return Action("alert", subject, reason=f"{alert.kind} {alert.level} on {subject}")
    if policy.kind == "promote_best_challenger":
        best = best_challenger(
            champion_score, challenger_scores or {}, challenger_examples or {}, policy
        )
        if best is not None:
            name, score = best
            return Action(
                "promote", subject, target=name,
                reason=f"challenger {name} scores {score:.4g} vs champion {_fmt(champion_score)} "
                "after concept drift",
            )
        if policy.fallback == "alert":
            return Action("alert", subject, reason=f"concept drift on {subject}; no challenger is better")
    recent = policy.retrain_recent if policy.retrain_recent is not None else policy.retrain_buffer
    n = recent if buffered is None else min(recent, buffered)
    return Action("reset_and_retrain", subject, n_examples=n, reason=f"concept drift on {subject}")


def best_challenger(
    champion_score: float | None,
    challenger_scores: Mapping[str, float],
    challenger_examples: Mapping[str, int],
    policy: DriftPolicy,
) -> tuple[str, float] | None:
    """The best eligible challenger that beats the champion by more than ``policy.min_gain``, if any.

    >>> best_challenger(0.6, {"a": 0.7, "b": 0.75}, {"a": 100, "b": 5},
    ...                 DriftPolicy("promote_best_challenger", min_challenger_examples=10))
    ('a', 0.7)
    """
    sign = 1.0 if policy.higher_is_better else -1.0
    eligible = [
        (name, score) for name, score in challenger_scores.items()
        if score == score and challenger_examples.get(name, policy.min_challenger_examples)
        >= policy.min_challenger_examples
    ]
    if not eligible:
        return None
    # Ties go to the first name in sorted order so the choice is deterministic.
    name, score = max(sorted(eligible), key=lambda item: sign * item[1])
    if champion_score is None or champion_score != champion_score:
        return name, score
    return (name, score) if sign * (score - champion_score) > policy.min_gain else None


def retrain(
    factory: Callable[[], M],
    examples: ExampleBuffer | list[tuple[dict[str, Any], Any]],
    learn_one: Callable[[M, dict[str, Any], Any], None] | None = None,
    n: int | None = None,
) -> M:
    """A fresh model from ``factory`` that has learned the last ``n`` of ``examples`` in order.

    ``learn_one(model, x, y)`` defaults to ``model.learn_one(x, y)`` (River's API).

    >>> from river import linear_model
    >>> buf = ExampleBuffer(100)
    >>> for i in range(100):
    ...     buf.append({"x": float(i % 2)}, bool(i % 2))
    >>> model = retrain(linear_model.LogisticRegression, buf, n=50)
    >>> model.predict_one({"x": 1.0}), model.predict_one({"x": 0.0})
    (True, False)
    """
    model = factory()
    buffer = examples if isinstance(examples, ExampleBuffer) else _as_buffer(examples)
    for x, y in buffer.recent(n):
        if learn_one is None:
            model.learn_one(x, y)  # type: ignore[attr-defined]
        else:
            learn_one(model, x, y)
    return model


def _as_buffer(examples: list[tuple[dict[str, Any], Any]]) -> ExampleBuffer:
    buffer = ExampleBuffer(len(examples))
    for x, y in examples:
        buffer.append(x, y)
    return buffer


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.4g}"
