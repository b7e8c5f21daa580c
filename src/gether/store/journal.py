"""A durable replica's link to its store: local events are written before they
count, received events once applied, and a snapshot every so often."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gether.core.event import Event
from gether.errors import GetherError, StorageError
from gether.store.base import BlockingStore, Snapshot

if TYPE_CHECKING:
    from gether.core.document import Document


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Take a snapshot once this many events, or bytes of events, were written
    since the last one (``None`` disables that trigger)."""

    every_events: int | None = 1000
    every_bytes: int | None = 4 * 1024 * 1024

    def due(self, events: int, size: int) -> bool:
        return (self.every_events is not None and events >= self.every_events) or (
            self.every_bytes is not None and size >= self.every_bytes
        )


class StoreJournal:
    """The ``Journal`` of ``gether.Document.open``.

    Received events whose write failed stay in ``unwritten`` (they are applied
    in memory) and go first in the next write, so the store never holds an
    event without its causes. A local event whose write failed is undone.
    """

    def __init__(self, store: BlockingStore, doc_id: str, policy: SnapshotPolicy) -> None:
        self.store = store
        self.doc_id = doc_id
        self.policy = policy
        self.unwritten: list[Event] = []
        self._events_since_snapshot = 0
        self._bytes_since_snapshot = 0

    def write_local(self, event: Event) -> None:
        self._append([*self.unwritten, event])

    def write_received(self, events: Sequence[Event]) -> None:
        batch = [*self.unwritten, *events]
        try:
            self._append(batch)
        except GetherError:
            self.unwritten = batch  # applied in memory: written with the next batch
            raise

    def _append(self, batch: list[Event]) -> None:
        self.store.append(self.doc_id, batch)
        self.unwritten = []
        self._events_since_snapshot += len(batch)
        self._bytes_since_snapshot += sum(len(e.body) for e in batch)

    def written(self, doc: Document) -> None:
        if not self.policy.due(self._events_since_snapshot, self._bytes_since_snapshot):
            return
        self._events_since_snapshot = 0
        self._bytes_since_snapshot = 0
        with suppress(StorageError):  # a snapshot only saves time; the events are safe
            self.store.save_snapshot(self.doc_id, Snapshot(doc.version, doc.save()))

    def close(self) -> None:
        self.store.close()
