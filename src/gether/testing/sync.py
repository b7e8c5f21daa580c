"""Driving sync connections in tests: a host over plain documents, and a pump
that moves bytes between two connections the way a server or client would."""

from __future__ import annotations

from dataclasses import dataclass, field

from gether.core.document import Document
from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import GetherError, RejectedEventsError
from gether.sync.connection import SyncConnection


@dataclass
class DocumentsHost:
    """A ``SyncHost`` over documents in memory; ``make`` creates missing ones."""

    docs: dict[str, Document]
    make: type[Document] | None = None
    replica_id: str = "host"
    shared: dict[str, Version] = field(default_factory=dict)
    """Per document, the end of the last ``SharedBatch`` fanned out (a server's)."""

    def document(self, doc_id: str) -> Document:
        doc = self.docs.get(doc_id)
        if doc is None:
            if self.make is None:
                raise KeyError(doc_id)
            doc = self.docs[doc_id] = self.make(self.replica_id)  # type: ignore[call-arg]
        return doc

    def version(self, doc_id: str) -> Version:
        return self.document(doc_id).version

    def events_since(self, doc_id: str, version: Version) -> list[Event]:
        return self.document(doc_id).events_since(version)

    def event(self, doc_id: str, event_id: tuple[str, int]) -> Event | None:
        return self.document(doc_id).known_event(event_id)


@dataclass
class PumpStats:
    round_trips: int = 0
    frames: int = 0
    bytes: int = 0
    rejected: list[GetherError] = field(default_factory=list)


def deliver(conn: SyncConnection, host: DocumentsHost, data: bytes, now: float) -> PumpStats:
    """Feed ``data`` to ``conn``, then apply and acknowledge what arrived."""
    stats = PumpStats()
    conn.receive_data(data, now)
    while True:
        _settle(conn, host, stats)
        if not conn.backlogged or not conn.settled_enough or conn.closed:
            return stats
        conn.resume(now)


def _settle(conn: SyncConnection, host: DocumentsHost, stats: PumpStats) -> None:
    for doc_id in conn.subscriptions_requested():
        host.document(doc_id)
        conn.accept(doc_id, live=host.shared.get(doc_id))
    for received in conn.events_received():
        doc = host.document(received.doc_id)
        try:
            doc.apply_events(received.events)
        except RejectedEventsError as exc:
            stats.rejected.append(exc)
            conn.reject(received, exc)
            continue
        conn.acknowledge(received)


def pump(
    a: SyncConnection,
    host_a: DocumentsHost,
    b: SyncConnection,
    host_b: DocumentsHost,
    now: float = 0.0,
    max_round_trips: int = 100,
) -> PumpStats:
    """Exchange data until both sides are quiet; counts round trips (one
    delivery each way) and what crossed."""
    stats = PumpStats()
    for _ in range(max_round_trips):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return stats
        stats.round_trips += 1
        stats.bytes += len(out_a) + len(out_b)
        for data, conn, host in ((out_a, b, host_b), (out_b, a, host_a)):
            if data:
                stats.rejected += deliver(conn, host, data, now).rejected
    raise AssertionError(f"still talking after {max_round_trips} round trips")
