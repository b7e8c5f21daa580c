"""New events of one document, sent alike to every subscriber that already
holds everything before them: a server packs them once per tick instead of
once per subscriber, and knows who holds what by identity, not by comparing
version vectors (both were most of its time with hundreds of subscribers)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from gether.core.event import Event
from gether.core.ids import Version
from gether.sync.messages import Encoding, pack_events
from gether.sync.tracker import VersionTracker

T = TypeVar("T")


class BatchLimits(Protocol):
    @property
    def batch_events(self) -> int: ...
    @property
    def batch_bytes(self) -> int: ...


class SharedBatch:
    """The events a document gained from ``before`` to ``after``, parents first.

    ``before`` and ``after`` are compared by identity: a connection that was
    sent the batch ending at ``before`` (or caught up to it) is "live" at that
    very object, and takes this batch without working out what it lacks.
    """

    __slots__ = ("_made", "after", "before", "doc_id", "events", "size")

    def __init__(
        self, doc_id: str, before: Version, after: Version, events: Sequence[Event]
    ) -> None:
        self.doc_id = doc_id
        self.before = before
        self.after = after
        self.events = tuple(events)
        self.size = sum(len(e.body) + 64 for e in self.events)
        self._made: dict[Hashable, Any] = {}

    def once(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, once per ``key`` (a wire format and its parameters)."""
        if key not in self._made:
            self._made[key] = make()
        made: T = self._made[key]
        return made

    def packed(self, compress_above: int) -> tuple[Encoding, bytes]:
        """The events packed as a v1 ``Events`` message carries them, made once."""
        pairs = [(e.body, e.signature) for e in self.events]
        return self.once((1, compress_above), lambda: pack_events(pairs, compress_above))


def shared_batches(
    doc_id: str,
    before: Version,
    after: Version,
    events: Sequence[Event],
    limits: BatchLimits,
) -> list[SharedBatch]:
    """What a document gained from ``before`` to ``after`` (``events``,
    parents first) as shared batches in a row, each within the batch limits
    (``limits.batch_events``, ``limits.batch_bytes``): a connection packs a
    batch over them for itself alone, and under a burst that was every
    subscriber packing the whole gain. An event over the byte limit is a batch
    of its own."""
    out: list[SharedBatch] = []
    chunk: list[Event] = []
    size = 0
    reached: VersionTracker | None = None  # made at the first cut: most gains fit whole
    start = before
    for event in events:
        cost = len(event.body) + 64
        if chunk and (len(chunk) >= limits.batch_events or size + cost > limits.batch_bytes):
            if reached is None:
                reached = VersionTracker(before)
            reached.add(chunk)
            end = reached.version()  # a causally closed prefix: a version
            out.append(SharedBatch(doc_id, start, end, chunk))
            start, chunk, size = end, [], 0
        chunk.append(event)
        size += cost
    out.append(SharedBatch(doc_id, start, after, chunk))
    return out
