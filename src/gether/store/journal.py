"""A durable replica's link to its store: local events are written before they
count, received events once applied, and a snapshot every so often.

Snapshots are made on a background thread, from the store rather than from
the live document: the thread opens its own handle, loads the newest snapshot
and the events after it, and saves the result. The writer never waits for it
(SQLite in WAL mode lets it write while the thread reads), and a snapshot
that fails costs nothing but time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gether.core.event import Event
from gether.errors import GetherError
from gether.store.base import BlockingStore

if TYPE_CHECKING:
    from gether.core.document import Document

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        store: BlockingStore,
        doc_id: str,
        policy: SnapshotPolicy,
        snapshot: Callable[[], None],
    ) -> None:
        self.store = store
        self.doc_id = doc_id
        self.policy = policy
        self.unwritten: list[Event] = []
        self._snapshot = snapshot
        self._snapshotter: threading.Thread | None = None
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
        if self._snapshotter is not None and self._snapshotter.is_alive():
            return  # the next one will catch up
        self._snapshotter = threading.Thread(
            target=self._take_snapshot, name=f"gether-snapshot-{self.doc_id}", daemon=True
        )
        self._snapshotter.start()

    def _take_snapshot(self) -> None:
        try:
            self._snapshot()
        except GetherError as exc:  # a snapshot only saves time; the events are safe
            log.warning("snapshot of %s failed: [%s] %s", self.doc_id, exc.code, exc)

    def close(self) -> None:
        if self._snapshotter is not None:
            self._snapshotter.join()
        self.store.close()
