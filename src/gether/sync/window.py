"""The recent events of one document that one side of a connection sent, or
received, in order: the terms of a *near reference* (docs/protocol.md,
"Near parents").

Both sides count the event records of a document's ``Events`` frames in the
order they travel, so "the i-th event you sent me" names an event in a byte
or two instead of its replica id and seq. A sender names parents it received
that way; the receiver resolves them in what it sent. Only the last ``keep``
are remembered (a reference to an older one is ``unknown_parent``, and the
batch comes again with hashes); a receiver that failed to decode a batch
stops naming (``frozen``): the two counts no longer agree.
"""

from __future__ import annotations

from collections.abc import Iterable

EventId = tuple[str, int]

KEEP = 8192
"""Events remembered per document and direction (near references reach back
at most ``KEEP // 2`` received events, so the sender's newer records, still
in flight, leave room)."""


class SentWindow:
    """What this side sent, by position (to resolve the peer's references)."""

    __slots__ = ("_ids", "_start")

    def __init__(self) -> None:
        self._ids: list[EventId] = []
        self._start = 0  # position of _ids[0]

    def extend(self, ids: Iterable[EventId]) -> None:
        ids_ = self._ids
        ids_.extend(ids)
        if len(ids_) > 2 * KEEP:
            drop = len(ids_) - KEEP
            del ids_[:drop]
            self._start += drop

    def at(self, position: int) -> EventId | None:
        i = position - self._start
        if 0 <= i < len(self._ids):
            return self._ids[i]
        return None


class ReceivedWindow:
    """What this side received, by event (to name them by position)."""

    __slots__ = ("_count", "_positions", "frozen")

    def __init__(self) -> None:
        self._positions: dict[EventId, int] = {}
        self._count = 0
        self.frozen = False

    @property
    def count(self) -> int:
        return self._count

    def extend(self, ids: Iterable[EventId]) -> None:
        if self.frozen:
            return
        positions, count = self._positions, self._count
        for event_id in ids:
            positions[event_id] = count
            count += 1
        self._count = count
        if len(positions) > 2 * KEEP:
            floor = count - KEEP
            self._positions = {e: p for e, p in positions.items() if p >= floor}

    def position(self, event_id: EventId) -> int | None:
        """Where ``event_id`` was received, if recently enough to be named so."""
        if self.frozen:
            return None
        position = self._positions.get(event_id)
        if position is None or self._count - position > KEEP // 2:
            return None
        return position
