"""Offsets the batch loop may commit: the next offset to read of every partition whose batch is done.

A batch is *done* when its outputs and then its state writes were acknowledged; only then does the loop
:meth:`Offsets.done` it, so a committed offset never passes an event whose prediction (or a label whose
example) did not go out. Commits are made every ``FRESHET_COMMIT_INTERVAL_S`` and when partitions are
revoked; what a crash re-reads since the last commit is recognised by the state (DESIGN.md decision 8).

>>> offsets = Offsets()
>>> offsets.done([("events", 0, 7), ("events", 0, 9), ("labels", 1, 3)])
>>> sorted(offsets.take().items())
[(('events', 0), 10), (('labels', 1), 4)]
>>> offsets.take()  # nothing new since
{}
>>> offsets.done([("events", 0, 10)]); offsets.forget({("events", 0)}); offsets.take()
{}
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Offsets"]


class Offsets:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], int] = {}

    def done(self, coordinates: Iterable[tuple[str, int, int]]) -> None:
        """Mark ``(topic, partition, offset)`` records as done (their outputs and state acknowledged)."""
        pending = self._pending
        for topic, partition, offset in coordinates:
            tp = (topic, partition)
            if offset + 1 > pending.get(tp, -1):
                pending[tp] = offset + 1

    def take(self) -> dict[tuple[str, int], int]:
        """``{(topic, partition): next offset}`` to commit, and forget them."""
        out, self._pending = self._pending, {}
        return out

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked before their commit: another member reads them from the last commit."""
        for tp in partitions:
            self._pending.pop(tp, None)

    def __len__(self) -> int:
        return len(self._pending)
