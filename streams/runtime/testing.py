"""Test doubles shipped with freshet (for unit and agent tests only; never used in production).

>>> import asyncio
>>> sender = RecordingSender()
>>> asyncio.run(sender.send_all([("t-predictions", b"e1", b"{}", None)]))
>>> sender.values("t-predictions")
[b'{}']
"""

from __future__ import annotations

from streams.runtime.app import Wire


class RecordingSender:
    """A :class:`streams.runtime.app.Sender` that keeps every message instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[Wire] = []

    async def send_all(self, messages: list[Wire]) -> None:
        self.sent.extend(messages)

    def values(self, topic: str) -> list[bytes | None]:
        """The values sent to ``topic`` (its full name), in order."""
        return [value for name, _, value, _ in self.sent if name == topic]
