"""The documents a server hosts: each one held in memory as a replica that
never edits, used to check every incoming event against its causal past,
backed by the store, and shared by the sessions subscribed to it.

Incoming events are applied, then stored, then acknowledged, then offered to
every other subscriber: nothing is acknowledged or relayed before it is
durable. A failed write evicts the document from memory (the store is the
truth), so the server never serves an event it has not stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

from gether.core.event import Event
from gether.core.ids import Version
from gether.document import Document
from gether.errors import (
    GetherError,
    LimitExceededError,
    PendingEventsError,
    RejectedEventsError,
    StorageError,
    UsageError,
)
from gether.server.audit import AuditTrail
from gether.server.authz import AuthorBook, Authorization
from gether.server.snapshots import SnapshotWorker, replica_from
from gether.store.base import EventStore, check_doc_id
from gether.sync.connection import Limits
from gether.sync.fanout import SharedBatch, shared_batches
from gether.sync.messages import VERSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HubConfig:
    server_id: str = "server"
    snapshot_every: int = 1_000
    """Store a snapshot of a document every this many new events (less often
    when making them would take over ``snapshot_share`` of the time)."""
    snapshot_share: float = 0.05
    """At most this share of the time goes to making a document's snapshots:
    the next waits ``1 / snapshot_share - 1`` times as long as the last took
    (each re-encodes the whole history, so at a fixed count they grew to most
    of a busy server's time)."""
    limits: Limits = field(default_factory=Limits)
    coalesce: float = 0.0
    """Seconds a document gathers new events at least before fanning them out:
    one batch, packed once, for all its subscribers (0: the next loop turn)."""
    fanout_frames: int = 10_000
    """Frames per second a document's fan-out aims to stay under: with many
    subscribers it gathers longer (200 subscribers: 20 ms, 500: 50 ms), since
    sending a frame, not packing it, is then what costs."""
    mesh: bool = False
    """Every session subscribes to every document the hub holds (peers)."""
    versions: tuple[int, ...] = VERSIONS
    """Sync protocol versions spoken (the highest common one is used)."""
    unsigned: tuple[str, ...] = ()
    """Glob patterns (``fnmatch``) of document ids hosted without per-event
    signatures: the authenticated connection vouches for the author instead."""
    authorization: Authorization | None = None
    """Server roles and key binding of connections (``server/authz.py``);
    None: every authenticated connection may read and push (the documents'
    own policies still judge every event)."""
    audit: bool = True
    """Keep an audit record of every event received (``server/audit.py``)."""


class Subscriber(Protocol):
    """What the hub needs of a session: to be told a document has news."""

    def document_changed(self, doc_id: str, shared: SharedBatch | None = None) -> None:
        """``shared``: the news, packed once for everyone; None: work it out."""
        ...

    def document_opened(self, doc_id: str) -> None:
        """A document is now held by the hub (mesh sessions subscribe to it)."""
        ...


class HostedDocument:
    def __init__(self, doc_id: str, doc: Document, number: int = 1) -> None:
        self.doc_id = doc_id
        self.doc = doc
        self.number = number
        self.subscribers: set[Subscriber] = set()
        self.parked: dict[Subscriber, set[tuple[str, int]]] = {}
        self.since_snapshot = 0
        self._durable: Version | None = doc.version
        self._durable_mark: int | None = None
        self.unstored: list[Event] = []
        """Events applied in memory and not stored yet, in the order applied."""
        self.stored: asyncio.Future[None] | None = None
        """Resolved once ``unstored`` (as it is now) is stored."""
        self.storing = False
        self.shared = self.durable
        """The end of the last batch fanned out (its identity marks live subscribers)."""
        self.fanout_due = False

    @property
    def durable(self) -> Version:
        """What the store holds: all that is sent, announced or acknowledged
        (made when asked, once per tick, not per store write: building a
        version costs a step per replica)."""
        if self._durable is None:
            assert self._durable_mark is not None
            self._durable = self.doc.version_at(self._durable_mark)
        return self._durable

    def stored_up_to(self, mark: int) -> None:
        """The first ``mark`` events the document applied are stored."""
        if mark != self._durable_mark:
            self._durable_mark, self._durable = mark, None

    def durable_since(self, version: Version) -> list[Event]:
        events = self.doc.events_since(version)
        if self.unstored:
            durable = self.durable
            events = [e for e in events if durable.includes(e.id)]
        return events


class DocumentHub:
    """Every document of one server (``SyncHost`` for its sessions)."""

    def __init__(self, store: EventStore, config: HubConfig | None = None) -> None:
        self.store = store
        self.config = config or HubConfig()
        self._docs: dict[str, HostedDocument] = {}
        self._numbers: dict[str, int] = {}
        """Document numbers of protocol v2, kept for the life of the hub (a
        document evicted and reloaded keeps its number)."""
        self._loading: dict[str, asyncio.Task[HostedDocument]] = {}
        self._background: set[asyncio.Task[None]] = set()
        """Store writes and snapshots under way, awaited by ``close``."""
        self._snapshotting: set[str] = set()
        self._snapshot_after: dict[str, float] = {}
        """Per document, the loop time before which no new snapshot starts."""
        self.sessions: set[Subscriber] = set()
        """Mesh sessions: told of every document the hub opens."""
        self.authors = AuthorBook()
        self.audit = AuditTrail(store, self.config.audit)
        self._snapshots = SnapshotWorker()

    # -- SyncHost (documents already loaded) ------------------------------------------

    def version(self, doc_id: str) -> Version:
        return self._docs[doc_id].durable

    def events_since(self, doc_id: str, version: Version) -> list[Event]:
        return self._docs[doc_id].durable_since(version)

    def event(self, doc_id: str, event_id: tuple[str, int]) -> Event | None:
        return self._docs[doc_id].doc.known_event(event_id)

    def signed(self, doc_id: str) -> bool:
        """Does the document require per-event signatures (not in ``unsigned``)?"""
        return not any(fnmatchcase(doc_id, p) for p in self.config.unsigned)

    def doc_number(self, doc_id: str) -> int:
        """The document's number on every v2 connection of this server (so a
        batch of it is encoded once for all its subscribers)."""
        return self._docs[doc_id].number

    # -- loading -------------------------------------------------------------------

    async def open(self, doc_id: str) -> HostedDocument:
        """The document, loaded from the store on first use (once, however many
        sessions ask at the same time)."""
        check_doc_id(doc_id)
        hosted = self._docs.get(doc_id)
        if hosted is not None:
            return hosted
        task = self._loading.get(doc_id)
        if task is None:
            task = self._loading[doc_id] = asyncio.create_task(self._load(doc_id))
            task.add_done_callback(lambda _: self._loading.pop(doc_id, None))
        return await asyncio.shield(task)

    async def _load(self, doc_id: str) -> HostedDocument:
        doc = await self._load_document(doc_id)
        number = self._numbers.setdefault(doc_id, len(self._numbers) + 1)
        hosted = self._docs[doc_id] = HostedDocument(doc_id, doc, number)
        for session in list(self.sessions):
            session.document_opened(doc_id)
        return hosted

    async def _load_document(self, doc_id: str) -> Document:
        snapshot = await self.store.load_snapshot(doc_id)
        data = snapshot.data if snapshot is not None else None
        doc = await asyncio.to_thread(replica_from, data, self.signed(doc_id))
        tail = await self.store.events(doc_id, doc.version)
        if tail:
            await asyncio.to_thread(doc._replay, tail)
        return doc

    async def _persist(self, doc_id: str, events: list[Event]) -> None:
        """Make newly applied events durable before they are acknowledged."""
        await self.store.append(doc_id, events)

    def loaded(self, doc_id: str) -> HostedDocument | None:
        return self._docs.get(doc_id)

    def open_documents(self) -> list[str]:
        return list(self._docs)

    def local_change(self, doc_id: str) -> None:
        """The hub's own replica of ``doc_id`` was edited: offer it to everyone."""
        hosted = self._docs.get(doc_id)
        if hosted is not None:
            hosted.stored_up_to(hosted.doc.applied_count)  # a peer's replica journals its edits
            self._schedule_fanout(hosted)

    # -- fan-out ---------------------------------------------------------------------

    def _schedule_fanout(self, hosted: HostedDocument) -> None:
        if not hosted.fanout_due:
            hosted.fanout_due = True
            config = self.config
            delay = max(config.coalesce, len(hosted.subscribers) / config.fanout_frames)
            asyncio.get_running_loop().call_later(delay, self._fan_out, hosted)

    def _fan_out(self, hosted: HostedDocument) -> None:
        """Everything ``hosted`` gained since the last fan-out, as batches sent
        alike to every subscriber (the senders too: their own events come back
        to them as duplicates, which costs less than packing a batch per
        subscriber). A gain over the batch limits goes as several batches, each
        within them: a connection packs one that is not for itself alone, and
        under a burst that was every subscriber packing the whole gain."""
        hosted.fanout_due = False
        if self._docs.get(hosted.doc_id) is not hosted:
            return  # evicted meanwhile
        before, after = hosted.shared, hosted.durable
        if after is before:
            return
        events = hosted.durable_since(before)
        hosted.shared = after
        limits = self.config.limits
        for shared in shared_batches(hosted.doc_id, before, after, events, limits):
            for subscriber in list(hosted.subscribers):
                subscriber.document_changed(hosted.doc_id, shared)

    # -- receiving --------------------------------------------------------------------

    async def receive(
        self, doc_id: str, events: Sequence[Event], source: Subscriber | None
    ) -> GetherError | None:
        """Check, apply and store a batch, then tell the other subscribers.
        Returns the rejection to report to the sender, if any event was refused
        (or is left waiting for causes it should have sent first: not stored);
        raises ``StorageError`` if the batch could not be stored, and
        ``LimitExceededError`` if the sender has too many events waiting for
        parents (they are dropped)."""
        hosted = await self.open(doc_id)
        # applied at once (nothing awaits in between, so no lock), stored with
        # whatever other batches arrive meanwhile: one store write per round
        # trip to the store, not per batch (with hundreds of writers a queue of
        # one write each kept every keystroke waiting behind all the others)
        mark = hosted.doc.applied_count
        waiting = hosted.doc.pending
        rejected: GetherError | None = None
        try:
            hosted.doc.apply_events(events, callback_error=_log_callback_error)
        except RejectedEventsError as exc:
            rejected = exc
        overflow = None
        if source is not None:
            overflow = self._park(hosted, source, hosted.doc.pending - waiting)
        fresh = hosted.doc.applied_since(mark)
        if fresh:
            await self._store(hosted, fresh)
        if overflow is not None:
            raise overflow  # after the good events of the batch are stored and relayed
        if rejected is None and hosted.doc.pending:
            # an acknowledgement says "stored": events left waiting are not
            waiting = hosted.doc.pending
            held = sum(1 for event in events if event.id in waiting)
            if held:
                rejected = PendingEventsError(
                    f"{held} event(s) wait for parents or a signature not sent before them"
                )
        return rejected

    async def _store(self, hosted: HostedDocument, fresh: list[Event]) -> None:
        """Return once ``fresh`` (just applied) is stored; raise ``StorageError``
        if it could not be (the document is evicted: the store is the truth)."""
        if self._docs.get(hosted.doc_id) is not hosted:
            raise StorageError(f"{hosted.doc_id} is being reloaded after a failed write")
        hosted.unstored.extend(fresh)
        if hosted.stored is None:
            hosted.stored = asyncio.get_running_loop().create_future()
        stored = hosted.stored
        if not hosted.storing:
            hosted.storing = True
            task = asyncio.ensure_future(self._store_rounds(hosted))
            self._background.add(task)  # awaited at close
            task.add_done_callback(self._background.discard)
        await asyncio.shield(stored)

    async def _store_rounds(self, hosted: HostedDocument) -> None:
        try:
            while hosted.unstored:
                assert hosted.stored is not None
                batch, done = hosted.unstored, hosted.stored
                hosted.unstored, hosted.stored = [], None
                # nothing else is applied but not stored: this is what the store will hold
                mark = hosted.doc.applied_count
                try:
                    await self._persist(hosted.doc_id, batch)
                except GetherError as exc:
                    if self._docs.get(hosted.doc_id) is hosted:
                        self._evict(hosted.doc_id)
                    done.set_exception(exc)
                    if hosted.stored is not None:
                        hosted.stored.set_exception(exc)
                    return
                hosted.stored_up_to(mark)
                done.set_result(None)
                self._schedule_fanout(hosted)
                hosted.since_snapshot += len(batch)
                self._maybe_snapshot(hosted)
        finally:
            hosted.storing = False

    def _park(
        self, hosted: HostedDocument, source: Subscriber, new: frozenset[tuple[str, int]]
    ) -> LimitExceededError | None:
        """Account for the events ``source`` sent that wait for their parents;
        past the limit they are dropped and the error is returned."""
        parked = hosted.parked.setdefault(source, set())
        parked &= hosted.doc.pending  # those applied or dropped since
        parked |= new
        limit = self.config.limits.max_parked_events
        if len(parked) > limit:
            hosted.doc.drop_pending(parked)
            count = len(parked)
            parked.clear()
            return LimitExceededError(f"{count} events waiting for parents (limit {limit})")
        return None

    def _evict(self, doc_id: str) -> None:
        hosted = self._docs.pop(doc_id, None)
        log.error("evicted %s after a failed write; it reloads from the store", doc_id)
        if hosted is not None:
            for subscriber in list(hosted.subscribers):
                subscriber.document_changed(doc_id)

    def subscribe(self, doc_id: str, subscriber: Subscriber) -> None:
        hosted = self._docs.get(doc_id)
        if hosted is None:
            raise UsageError(f"{doc_id} is not loaded")
        hosted.subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        for hosted in self._docs.values():
            hosted.subscribers.discard(subscriber)
            hosted.parked.pop(subscriber, None)

    # -- snapshots --------------------------------------------------------------------

    def _maybe_snapshot(self, hosted: HostedDocument) -> None:
        if hosted.since_snapshot < self.config.snapshot_every:
            return
        doc_id = hosted.doc_id
        if (
            doc_id in self._snapshotting
            or asyncio.get_running_loop().time() < self._snapshot_after.get(doc_id, 0.0)
        ):
            return
        hosted.since_snapshot = 0
        self._snapshotting.add(doc_id)
        task = asyncio.create_task(self._snapshot(doc_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _snapshot(self, doc_id: str) -> None:
        """A new snapshot made from the store, never from the live replica, so
        writers of the document do not wait for it."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await self._make_snapshot(doc_id)
        finally:
            self._snapshotting.discard(doc_id)
            end = loop.time()
            self._snapshot_after[doc_id] = end + (end - start) * (
                1 / self.config.snapshot_share - 1
            )

    async def _make_snapshot(self, doc_id: str) -> None:
        try:
            newest = await self.store.load_snapshot(doc_id)
            tail = await self.store.events(doc_id, newest.version if newest else None)
            if not tail:
                return
            signed = self.signed(doc_id)
            built = await self._snapshots.build(newest, tail, signed)
            if built is None:  # the last snapshot does not load: from the whole history
                everything = await self.store.events(doc_id, None)
                built = await self._snapshots.build(None, everything, signed)
            assert built is not None
            await self.store.save_snapshot(doc_id, built)
        except GetherError as exc:
            log.warning("snapshot of %s failed: [%s] %s", doc_id, exc.code, exc)

    async def close(self) -> None:
        """Wait for the writes and snapshots in progress (the store stays open:
        it is the caller's)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._snapshots.close()
        await self.audit.close()


def _log_callback_error(exc: Exception) -> None:
    """An on_change callback on a hosted document (a peer's application) failed:
    the events are applied all the same and must still be stored and relayed."""
    log.error("an on_change callback raised", exc_info=exc)
