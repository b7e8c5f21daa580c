"""What every event store does, as two protocols with the same methods: the
async ``EventStore`` (servers) and the synchronous ``BlockingStore`` (a local
replica; each backend implements this one, and ``AsyncStore`` lifts it).

The rules every store keeps (the conformance suite in
``gether.testing.store_conformance`` checks them on each):

* ``append`` is atomic and idempotent: an event already stored is a no-op; an
  event with a stored ``(replica, seq)`` but another hash raises
  ``EquivocationError`` and nothing of the batch is written.
* The stored events of a document are causally closed and gapless: every
  parent of an event, and its author's previous event, is stored or in the same
  batch. So a ``Version`` read from the store names exactly the stored events.
* ``events`` returns parents first, in one deterministic order (lamport, then
  replica, then seq), whatever order the events were appended in.
* Snapshots are an optimisation: deleting them loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import (
    EquivocationError,
    HashMismatchError,
    IncompleteHistoryError,
    UsageError,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A saved document (``Document.save()``) and the version it covers."""

    version: Version
    data: bytes


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What a server did with one event it received (``server/audit.py``):
    who sent it, what it wrote, and the verdict. Kept apart from the events:
    a rejected event is never stored, but its audit record is."""

    replica: str
    seq: int
    key_id: str
    """The hex id of the key the event names (its author in the access policy)."""
    subject: str
    """The authenticated subject of the connection that sent it."""
    connection: str
    """Which connection: transport and remote address."""
    hlc: int
    """The event's own hybrid logical clock stamp (when its author made it)."""
    received: float
    """When the server received it (seconds since the epoch, server clock)."""
    summary: str
    """What it wrote: op verbs and paths (``core/writes.py``)."""
    verdict: str
    """``accepted``, ``rejected`` or ``pending`` (waiting for its parents)."""
    code: str | None = None
    """The error code of a rejection."""


AUDIT_VERDICTS = ("accepted", "rejected", "pending")


@dataclass(frozen=True, slots=True)
class Identity:
    """The replica id and key seed a local replica of a document signs with."""

    replica_id: str
    seed: bytes


class BlockingStore(Protocol):
    def append(self, doc_id: str, events: Sequence[Event]) -> int:
        """Store a batch atomically; returns how many events were new."""
        ...

    def events(self, doc_id: str, since: Version | None = None) -> list[Event]:
        """The stored events ``since`` lacks (all if None), parents first."""
        ...

    def version(self, doc_id: str) -> Version: ...

    def count(self, doc_id: str) -> int: ...

    def size(self, doc_id: str) -> int:
        """Bytes of the stored events of a document (``Event.to_bytes()``)."""
        ...

    def documents(self) -> list[str]: ...

    def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None: ...

    def load_snapshot(self, doc_id: str) -> Snapshot | None:
        """The snapshot covering the most events, if any."""
        ...

    def delete_snapshots(self, doc_id: str) -> int: ...

    def claim_identity(self, doc_id: str, identity: Identity) -> Identity:
        """The document's local identity: the stored one, else ``identity``, stored."""
        ...

    def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None:
        """Add audit records (never changed or removed afterwards)."""
        ...

    def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]:
        """The audit records of a document in the order added (the newest
        ``limit`` of them if given)."""
        ...

    def audit_authors(self, doc_id: str) -> dict[str, str]:
        """Key id -> the subject of the first accepted audit record of that key."""
        ...

    def close(self) -> None: ...


class EventStore(Protocol):
    """The async face of a store, for servers; same methods and rules."""

    async def append(self, doc_id: str, events: Sequence[Event]) -> int: ...

    async def events(self, doc_id: str, since: Version | None = None) -> list[Event]: ...

    async def version(self, doc_id: str) -> Version: ...

    async def count(self, doc_id: str) -> int: ...

    async def size(self, doc_id: str) -> int: ...

    async def documents(self) -> list[str]: ...

    async def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, doc_id: str) -> Snapshot | None: ...

    async def delete_snapshots(self, doc_id: str) -> int: ...

    async def claim_identity(self, doc_id: str, identity: Identity) -> Identity: ...

    async def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None: ...

    async def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]: ...

    async def audit_authors(self, doc_id: str) -> dict[str, str]: ...

    async def close(self) -> None: ...


def event_order(event: Event) -> tuple[int, str, int]:
    """The order ``events`` returns: parents always come first."""
    return (event.lamport, event.id[0], event.id[1])


def check_doc_id(doc_id: str) -> str:
    if type(doc_id) is not str or not 0 < len(doc_id) <= 256 or "\x00" in doc_id:
        raise UsageError("a document id is a non-empty string of at most 256 characters")
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no database can store it
        raise UsageError("a document id must be valid Unicode (no lone surrogates)") from exc
    return doc_id


EventKey = tuple[str, int]


def plan_append(
    events: Iterable[Event], lookup: Callable[[Collection[EventKey]], dict[EventKey, bytes]]
) -> list[Event]:
    """The events of a batch that a store must write, in ``event_order``, after
    the rules of this module: ``lookup`` returns the stored hash of each of the
    given ids that is stored. Raises (and nothing may be written) on an
    equivocation, a cause neither stored nor in the batch, or a cause named by
    a hash that is not its own."""
    batch: dict[EventKey, Event] = {}
    for event in events:
        if not isinstance(event, Event):
            raise UsageError("a store appends gether.Event objects")
        twin = batch.setdefault(event.id, event)
        if twin.hash != event.hash:
            raise EquivocationError(f"{event.id} appears twice in the batch, with two hashes")
    causes: dict[EventKey, bytes | None] = {}
    for event in batch.values():
        replica, seq = event.id
        for parent_id, digest in event.parents:
            causes[parent_id] = digest
        if seq > 1:
            causes.setdefault((replica, seq - 1), event.prev_hash())
    wanted = set(batch) | {c for c in causes if c not in batch}
    stored = lookup(wanted) if wanted else {}
    fresh: list[Event] = []
    for event_id, event in batch.items():
        known = stored.get(event_id)
        if known is None:
            fresh.append(event)
        elif known != event.hash:
            raise EquivocationError(f"{event_id} is already stored with another hash")
    for cause, named in causes.items():
        have = batch[cause].hash if cause in batch else stored.get(cause)
        if have is None:
            raise IncompleteHistoryError(f"{cause} is neither stored nor in the batch")
        if named is not None and have != named:
            raise HashMismatchError(f"an event names {cause} by a hash that is not its own")
    fresh.sort(key=event_order)
    return fresh
