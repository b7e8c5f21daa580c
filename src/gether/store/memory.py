"""The reference store: everything in memory, shared by every handle opened on
the same ``memory://name`` URL in this process."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import StoreUnavailableError
from gether.store.base import (
    AuditRecord,
    EventKey,
    Identity,
    Snapshot,
    check_doc_id,
    event_order,
    plan_append,
)


@dataclass
class _Doc:
    events: dict[EventKey, Event] = field(default_factory=dict)
    ordered: list[Event] = field(default_factory=list)
    sorted_upto: int = 0
    snapshots: list[Snapshot] = field(default_factory=list)
    identity: Identity | None = None
    audit: list[AuditRecord] = field(default_factory=list)

    def in_order(self) -> list[Event]:
        if self.sorted_upto != len(self.ordered):
            self.ordered.sort(key=event_order)
            self.sorted_upto = len(self.ordered)
        return self.ordered


class MemoryData:
    """The documents of one ``memory://`` store, shared by its handles."""

    def __init__(self) -> None:
        self.docs: dict[str, _Doc] = {}
        self.lock = threading.Lock()


class MemoryStore:
    """A ``BlockingStore`` handle on a ``MemoryData``; safe to share between threads."""

    def __init__(self, data: MemoryData | None = None) -> None:
        data = data if data is not None else MemoryData()
        self._docs = data.docs
        self._lock = data.lock
        self._closed = False

    def _doc(self, doc_id: str) -> _Doc:
        if self._closed:
            raise StoreUnavailableError("this store is closed")
        return self._docs.get(check_doc_id(doc_id)) or _Doc()

    def append(self, doc_id: str, events: Sequence[Event]) -> int:
        with self._lock:
            doc = self._doc(doc_id)

            def lookup(ids: Collection[EventKey]) -> dict[EventKey, bytes]:
                return {i: doc.events[i].hash for i in ids if i in doc.events}

            fresh = plan_append(events, lookup)
            if fresh:
                self._docs[doc_id] = doc
                for event in fresh:
                    doc.events[event.id] = event
                doc.ordered.extend(fresh)
            return len(fresh)

    def events(self, doc_id: str, since: Version | None = None) -> list[Event]:
        with self._lock:
            ordered = self._doc(doc_id).in_order()
            if since is None:
                return list(ordered)
            return [e for e in ordered if not since.includes(e.id)]

    def version(self, doc_id: str) -> Version:
        with self._lock:
            vector: dict[str, int] = {}
            for replica, seq in self._doc(doc_id).events:
                if seq > vector.get(replica, 0):
                    vector[replica] = seq
            return Version(vector)

    def count(self, doc_id: str) -> int:
        with self._lock:
            return len(self._doc(doc_id).events)

    def size(self, doc_id: str) -> int:
        with self._lock:
            return sum(len(e.to_bytes()) for e in self._doc(doc_id).ordered)

    def documents(self) -> list[str]:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("this store is closed")
            return sorted(name for name, doc in self._docs.items() if doc.events)

    def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None:
        with self._lock:
            doc = self._doc(doc_id)
            self._docs[doc_id] = doc
            doc.snapshots.append(snapshot)

    def load_snapshot(self, doc_id: str) -> Snapshot | None:
        with self._lock:
            snapshots = self._doc(doc_id).snapshots
            if not snapshots:
                return None
            return max(reversed(snapshots), key=lambda s: sum(s.version.values()))

    def delete_snapshots(self, doc_id: str) -> int:
        with self._lock:
            doc = self._doc(doc_id)
            count = len(doc.snapshots)
            doc.snapshots.clear()
            return count

    def claim_identity(self, doc_id: str, identity: Identity) -> Identity:
        with self._lock:
            doc = self._doc(doc_id)
            self._docs[doc_id] = doc
            if doc.identity is None:
                doc.identity = identity
            return doc.identity

    def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None:
        with self._lock:
            doc = self._doc(doc_id)
            self._docs[doc_id] = doc
            doc.audit.extend(records)

    def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]:
        with self._lock:
            records = self._doc(doc_id).audit
            return list(records if limit is None else records[max(0, len(records) - limit) :])

    def audit_authors(self, doc_id: str) -> dict[str, str]:
        with self._lock:
            authors: dict[str, str] = {}
            for record in self._doc(doc_id).audit:
                if record.verdict == "accepted":
                    authors.setdefault(record.key_id, record.subject)
            return authors

    def close(self) -> None:
        """Close this handle; the data stays for the other handles of the process."""
        self._closed = True
