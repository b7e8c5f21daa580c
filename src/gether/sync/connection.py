"""One sync connection as a state machine, with no I/O (docs/protocol.md).

The owner feeds it bytes with ``receive_data(data, now)``, sends what
``data_to_send()`` returns, answers what ``subscriptions_requested()`` returns
with ``accept`` (once the document is loaded and the peer may read it) or
``refuse``, applies and stores what ``events_received()`` returns and then
calls ``acknowledge`` (or ``reject``), and calls ``push(doc)`` whenever a
document has events the peer may lack. Time is a number of seconds
passed in; nothing here reads a clock.

Every protocol version is spoken here: the version is chosen in the hellos
(the highest both speak) and only the messages of that version are accepted
after them. v2 differs in ``Events`` (compact records, ``sync/batch.py``),
``Ack`` (cumulative, ``sync/acks.py``) and in naming documents by a number the
server gives in its ``Subscribe``. v3 lists replica ids per connection
(``sync/names.py``); v4 names near parents as runs and frames small
messages with a one-byte header (``sync/framing.py``).

A server made with ``admission=True`` authenticates before anything else:
once the peer's hello arrives, ``hello_to_admit()`` returns it and nothing
after it is decoded until the owner calls ``admit()`` (then our hello goes
out and the frames behind it are read) or ``deny(error)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from gether.core.event import Event, decode_body
from gether.core.ids import Version
from gether.errors import (
    DecodeError,
    GetherError,
    LimitExceededError,
    ProtocolViolationError,
    UnknownParentError,
    UnsupportedVersionError,
    UsageError,
)
from gether.sync.acks import Outstanding, Receipts
from gether.sync.batch import decode_batch, encode_batch
from gether.sync.fanout import SharedBatch
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import (
    VERSIONS,
    Ack,
    AckV2,
    Error,
    Events,
    EventsV2,
    Hello,
    Message,
    Ping,
    Pong,
    Subscribe,
    decode,
    encode,
    encode_packed_events,
)
from gether.sync.names import ReceivedNames, SentNames
from gether.sync.tracker import VersionTracker
from gether.sync.window import ReceivedWindow, SentWindow

EventId = tuple[str, int]


class SyncHost(Protocol):
    """The documents a connection syncs, as the owner holds them."""

    def version(self, doc_id: str) -> Version: ...

    def events_since(self, doc_id: str, version: Version) -> list[Event]: ...

    def event(self, doc_id: str, event_id: EventId) -> Event | None:
        """An event held (applied or waiting for parents), by id: v2 batches
        name parents the receiver holds without their hashes."""
        ...


def encode_events_frame(
    number: int,
    events: list[Event],
    lookup: Callable[[EventId], Event | None],
    holds: Callable[[EventId], bool] | None = None,
    compress_above: int = 4096,
    near: ReceivedWindow | None = None,
    names: SentNames | None = None,
    protocol: int = 3,
) -> bytes:
    """One whole v2 ``Events`` frame (length header included) of document
    ``number``. With ``holds`` None the receiver is assumed to hold every event
    not in ``events`` (a caught-up subscriber), and without ``near`` (what it
    sent us) nothing in the bytes is per connection, so the same frame serves
    every such subscriber of the document. ``protocol`` 4: near parents as
    runs, and a one-byte frame header when it fits."""
    v4 = protocol >= 4
    records = encode_batch(events, lookup, holds, near=near, names=names, runs=v4)
    return frame(encode(EventsV2(number, records), compress_above, 2), short=v4)


class Role(Enum):
    CLIENT = "client"  # says hello first (the side that dialled)
    SERVER = "server"  # answers hello


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 16 << 20
    max_frame_before_hello: int = 8 << 10
    """Until the peer's hello is accepted: a hello with a token fits; more is an attack."""
    max_batch_events: int = 10_000
    max_pending_batches: int = 64
    max_unsettled_events: int = 10_000
    """Events decoded and not yet stored or refused by the owner past which a
    connection stops decoding (the rest waits, as bytes, until ``resume``): a
    few KB of compressed frames can hold a hundred thousand events."""
    """Batches received and not yet acknowledged or rejected by the owner."""
    max_parked_events: int = 10_000
    """Events of one peer waiting for parents that never came (enforced by the owner)."""
    max_documents: int = 1_000
    max_replicas: int = 100_000
    batch_events: int = 1_000
    batch_bytes: int = 1 << 20
    compress_above: int = 4_096
    hello_timeout: float = 5.0
    """Seconds until the peer is introduced and admitted (authenticated)."""
    idle_timeout: float = 60.0
    ping_interval: float = 20.0
    # What one connection a server accepted may cost it (server/limits.py): over a
    # budget or the queue bound, that connection alone is closed, with
    # ``rate_limited`` or ``slow_consumer``. The bursts let an honest client
    # upload or download a large document at once; the rates are far above
    # what typing costs (a keystroke: one frame of about 100 bytes).
    messages_per_second: float = 200.0
    """Frames a connection may send per second, sustained."""
    message_burst: int = 2_000
    """Frames at once (a mesh peer subscribes to up to ``max_documents``)."""
    bytes_per_second: float = 1 << 20
    """Bytes a connection may send per second, sustained."""
    byte_burst: int = 64 << 20
    """Bytes at once: a few frames of the largest size."""
    max_queued_bytes: int = 4 << 20
    """Bytes waiting to be sent to a connection, behind the write under way
    (which may be a whole document's catch-up); past it the peer is too slow."""
    send_buffer_bytes: int | None = None
    """The kernel's send buffer of each accepted socket (``SO_SNDBUF``). None
    keeps the system's autotuning, which lets it grow to ``tcp_wmem``'s
    maximum (4 MiB on Linux) for a peer that stops reading, before the queue
    above fills; set it to bound that memory too, at some cost in throughput
    on links with a long round trip."""


@dataclass(slots=True)
class Traffic:
    """What crossed one connection (or, summed, several)."""

    events_sent: int = 0
    events_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_received: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.events_sent + other.events_sent,
            self.events_received + other.events_received,
            self.bytes_sent + other.bytes_sent,
            self.bytes_received + other.bytes_received,
            self.frames_received + other.frames_received,
        )


@dataclass(frozen=True, slots=True)
class ReceivedEvents:
    """A batch to apply and store; then ``acknowledge`` or ``reject`` it."""

    doc_id: str
    batch: int
    events: tuple[Event, ...]


@dataclass
class _DocSync:
    subscribed: bool = False
    peer_subscribed: bool = False
    peer_has: VersionTracker = field(default_factory=VersionTracker)
    """Events the peer holds or will hold (what it told us, and what we sent)."""
    peer_told: VersionTracker = field(default_factory=VersionTracker)
    """Events the peer told us it holds (its subscribe, its events, its acks)."""
    peer_stored: VersionTracker = field(default_factory=VersionTracker)
    """What the peer acknowledged as stored."""
    live: Version | None = None
    """The end of the last shared batch the peer was sent or caught up to (by
    identity: see ``SharedBatch``); it holds or will hold all of it."""
    requested: Version | None = None
    """The version of a subscription the peer asked for and the owner has not answered."""
    next_batch: int = 1
    outstanding: set[int] = field(default_factory=set)
    unacknowledged: set[int] = field(default_factory=set)
    # v2
    number: int | None = None
    """The document's number on this connection (given by the server side)."""
    unsigned: bool = False
    """The peer announced its copy as unsigned (no per-event signatures)."""
    receipts: Receipts = field(default_factory=Receipts)
    sent: Outstanding = field(default_factory=Outstanding)
    received: dict[int, tuple[Event, ...]] = field(default_factory=dict)
    """Batches handed to the owner and not settled: their events resolve
    hash-less parents of later batches before the owner holds them."""
    recent: dict[EventId, Event] = field(default_factory=dict)
    sent_ids: SentWindow = field(default_factory=SentWindow)
    """The events of our ``Events`` frames, in order (the peer's near references)."""
    received_ids: ReceivedWindow = field(default_factory=ReceivedWindow)
    """The events of the peer's ``Events`` frames, in order (ours)."""


class SyncConnection:
    def __init__(
        self,
        host: SyncHost,
        local_id: str,
        role: Role,
        *,
        now: float,
        credentials: str | None = None,
        limits: Limits | None = None,
        versions: tuple[int, ...] = VERSIONS,
        admission: bool = False,
    ) -> None:
        if not versions or not set(versions) <= set(VERSIONS):
            raise UsageError(f"protocol versions {versions!r}: this build speaks {VERSIONS}")
        self.host = host
        self.versions = tuple(sorted(set(versions)))
        self.protocol = 1
        """The version in use: 1 until the hellos chose another."""
        self._numbers: dict[int, str] = {}
        self._next_number = 1
        self._sent_names = SentNames()
        self._received_names = ReceivedNames()
        """Replica ids each side listed in its batches' tables (protocol 3)."""
        self._now = now
        self.local_id = local_id
        self.role = role
        self.limits = limits or Limits()
        self.peer: Hello | None = None
        """The peer's hello, once it is accepted (admitted, if admission is on)."""
        self._admission = admission
        self._waiting: Hello | None = None
        self._held_back = False  # frames wait behind too many unsettled events
        self.closed = False
        self.close_reason: Error | None = None
        """Why the connection closed: our error to the peer, or the peer's to us."""
        self._credentials = credentials
        self._reader = FrameReader(self.limits.max_frame_before_hello)
        self._out = bytearray()
        self._docs: dict[str, _DocSync] = {}
        self._received: list[ReceivedEvents] = []
        self._requests: list[str] = []
        self._errors: list[Error] = []
        self._pongs: set[int] = set()
        self._next_nonce = 1
        self._opened = self._last_in = self._last_out = now
        self.traffic = Traffic()
        if role is Role.CLIENT:
            self._send(self._hello())

    # -- what the owner calls ----------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        self._last_in = self._now = now
        self.traffic.bytes_received += len(data)
        try:
            self._reader.push(data)
            self._read_frames()
        except GetherError as exc:
            self._fail(exc)

    def hello_to_admit(self) -> Hello | None:
        """The peer's hello, waiting for ``admit`` or ``deny`` (with ``admission``)."""
        return None if self.closed else self._waiting

    def admit(self) -> None:
        """The peer's credentials are good: answer its hello, read what follows."""
        hello, self._waiting = self._waiting, None
        if self.closed or hello is None:
            return
        try:
            self._welcome(hello)
            self._read_frames()
        except GetherError as exc:
            self._fail(exc)

    def deny(self, error: GetherError) -> None:
        """The peer may not connect: tell it why and close, reading nothing more."""
        self._waiting = None
        self.close(error)

    def receive_eof(self) -> None:
        """The peer closed its side; a frame cut short is an error."""
        if not self.closed and self._reader.buffered:
            self._fail(DecodeError("the stream ended inside a frame"))
        self.closed = True

    def data_to_send(self) -> bytes:
        if not self.closed:
            self._send_acks()
        out = bytes(self._out)
        self._out.clear()
        self.traffic.bytes_sent += len(out)
        return out

    def events_received(self) -> list[ReceivedEvents]:
        out, self._received = self._received, []
        return out

    def subscriptions_requested(self) -> list[str]:
        """Documents the peer asked to sync that we did not ask for: answer each
        with ``accept`` or ``refuse``."""
        out, self._requests = self._requests, []
        return out

    def accept(self, doc_id: str, live: Version | None = None) -> None:
        """``live``: the end of the host's last ``SharedBatch`` of the document,
        if it fans out; what this sends now covers it, so the next batch can go
        out as it is."""
        doc = self._docs.get(doc_id)
        if self.closed or doc is None or doc.requested is None:
            return
        self._start(doc_id, doc, doc.requested)
        doc.live = live

    def refuse(self, doc_id: str, error: GetherError) -> None:
        doc = self._docs.get(doc_id)
        if self.closed or doc is None or doc.requested is None:
            return
        del self._docs[doc_id]
        self._send(Error(error.code, str(error)[:4096], doc_id))

    def errors_received(self) -> list[Error]:
        """Document-level errors the peer sent (its refusals of our events)."""
        out, self._errors = self._errors, []
        return out

    def subscribe(self, doc_id: str) -> None:
        """Start syncing ``doc_id`` (the peer answers with its own version)."""
        self._check_open()
        doc = self._doc(doc_id)
        if not doc.subscribed:
            doc.subscribed = True
            if self.role is Role.SERVER and self.peer is None:
                return  # sent right after our hello, which answers the peer's
            self._send(self._subscribe_message(doc_id, doc))

    def push(self, doc_id: str) -> None:
        """Send the events of ``doc_id`` the peer lacks, in batches."""
        doc = self._docs.get(doc_id)
        if self.closed or doc is None or not doc.peer_subscribed or not doc.subscribed:
            return
        if doc.live is not None:  # the fast path's knowledge, made explicit for the slow one
            doc.peer_has.merge(doc.live)
        events = self.host.events_since(doc_id, doc.peer_has.version())
        batch: list[Event] = []
        size = 0
        for event in events:
            batch.append(event)
            size += len(event.body) + 64
            if len(batch) >= self.limits.batch_events or size >= self.limits.batch_bytes:
                self._send_batch(doc_id, doc, batch)
                batch, size = [], 0
        if batch:
            self._send_batch(doc_id, doc, batch)

    def push_shared(self, shared: SharedBatch) -> None:
        """Send a batch packed once for every subscriber: as it is if the peer
        is live at its start, else (a new or lagging peer) whatever it lacks,
        after which it is live at the batch's end. ``shared.after`` must be
        included in the host's version (the host only grows)."""
        doc = self._docs.get(shared.doc_id)
        if self.closed or doc is None or not doc.peer_subscribed or not doc.subscribed:
            return
        limits = self.limits
        fits = len(shared.events) <= limits.batch_events and shared.size <= limits.batch_bytes
        if doc.live is not shared.before or not fits:
            self.push(shared.doc_id)  # everything the host holds, so all of shared.after
        elif shared.events:
            self._send_shared(doc, shared)
        doc.live = shared.after

    def _send_shared(self, doc: _DocSync, shared: SharedBatch) -> None:
        events, compress = shared.events, self.limits.compress_above
        self.traffic.events_sent += len(events)
        if self.protocol >= 2:
            # hash-less parents are safe: the peer holds everything before the batch
            number, lookup = doc.number, self._lookup(shared.doc_id)
            assert number is not None
            self._out += shared.once(
                (2, number, compress),
                lambda: encode_events_frame(number, list(events), lookup, None, compress),
            )
            doc.sent.sent(events)
            doc.sent_ids.extend(shared.once("ids", lambda: [e.id for e in events]))
        else:
            batch = doc.next_batch
            doc.next_batch += 1
            doc.outstanding.add(batch)
            encoding, packed = shared.packed(compress)
            self._out += frame(encode_packed_events(shared.doc_id, batch, encoding, packed))

    def acknowledge(self, received: ReceivedEvents) -> None:
        """The batch is applied and stored: tell the peer, with our version now."""
        doc = self._docs.get(received.doc_id)
        if self.protocol >= 2:
            if not self.closed and doc is not None:
                self._settle(received.doc_id, doc, received.batch, None)
            return
        if self.closed or doc is None or received.batch not in doc.unacknowledged:
            return
        doc.unacknowledged.discard(received.batch)
        self._send(Ack(received.doc_id, received.batch, self.host.version(received.doc_id)))

    def reject(self, received: ReceivedEvents, error: GetherError) -> None:
        """Some events of the batch were refused: tell the peer why."""
        doc = self._docs.get(received.doc_id)
        refusal = Error(error.code, str(error)[:4096], received.doc_id)
        if self.protocol >= 2:
            if not self.closed and doc is not None:
                self._settle(received.doc_id, doc, received.batch, refusal)
            return
        if self.closed or doc is None or received.batch not in doc.unacknowledged:
            return
        doc.unacknowledged.discard(received.batch)
        self._send(refusal)

    def ping(self, now: float) -> int:
        """Ask the peer to send what we lack and answer; ``pong_received(nonce)``
        then means we have everything it held when it answered."""
        self._check_open()
        nonce = self._next_nonce
        self._next_nonce += 1
        self._now = now
        self._send_acks(force=True)  # so that the peer, too, can see it is in sync
        self._send(Ping(nonce))
        self._last_out = now
        return nonce

    def pong_received(self, nonce: int) -> bool:
        return nonce in self._pongs

    def is_synced(self, doc_id: str) -> bool:
        """Both sides subscribed; everything we sent is stored by the peer; we
        hold all the peer told us it holds; nothing waits for our acknowledgement."""
        doc = self._docs.get(doc_id)
        if doc is None or not (doc.subscribed and doc.peer_subscribed):
            return False
        mine = self.host.version(doc_id)
        return (
            not doc.outstanding
            and not doc.unacknowledged
            and not len(doc.sent)
            and not doc.receipts.waiting()
            and doc.peer_told.version() <= mine
            and mine <= doc.peer_stored.version()
        )

    def tick(self, now: float) -> None:
        """Time passes: time out a silent or unintroduced peer, keep the link alive."""
        if self.closed:
            return
        self._now = now
        limits = self.limits
        if self.peer is None and now - self._opened > limits.hello_timeout:
            self._fail(ProtocolViolationError("no hello in time"))
        elif now - self._last_in > limits.idle_timeout:
            self._fail(ProtocolViolationError("the peer went silent"))
        elif self.peer is not None and now - self._last_out > limits.ping_interval:
            self.ping(now)

    def close(self, error: GetherError | None = None) -> None:
        """Close from our side, telling the peer why if there is a reason."""
        if not self.closed:
            if error is not None:
                self._fail(error)
            else:
                self.closed = True

    def unsigned(self, doc_id: str) -> bool:
        """Did the peer announce its copy of ``doc_id`` as unsigned (v2)?"""
        doc = self._docs.get(doc_id)
        return doc is not None and doc.unsigned

    @property
    def documents(self) -> list[str]:
        return [d for d, s in self._docs.items() if s.subscribed or s.peer_subscribed]

    # -- internals ------------------------------------------------------------------

    @property
    def backlogged(self) -> bool:
        """Frames wait undecoded behind too many unsettled events: settle
        some (``acknowledge``, ``reject``), then ``resume``."""
        return self._held_back

    @property
    def settled_enough(self) -> bool:
        """Few enough events are unsettled for ``resume`` to decode more."""
        return self._unsettled() < self.limits.max_unsettled_events

    def resume(self, now: float) -> None:
        """Decode what waited while too much was unsettled (see ``backlogged``)."""
        self._held_back = False
        self.receive_data(b"", now)

    def _unsettled(self) -> int:
        return sum(len(events) for doc in self._docs.values() for events in doc.received.values())

    def _read_frames(self) -> None:
        # a hello waiting for admission holds back everything behind it
        while self._waiting is None and not self._held_back:
            if self._reader.buffered and not self.settled_enough:
                self._held_back = True
                return
            payload = self._reader.next()
            if payload is None:
                return
            self.traffic.frames_received += 1
            self._handle(
                decode(
                    payload,
                    protocol=self.protocol,
                    max_events=self.limits.max_batch_events,
                    max_bytes=self.limits.max_frame_bytes,
                    max_replicas=self.limits.max_replicas,
                )
            )
            if self.closed:
                return

    def _check_open(self) -> None:
        if self.closed:
            raise UsageError("this connection is closed")

    def _send(self, message: Message) -> None:
        self._out += frame(
            encode(message, self.limits.compress_above, self.protocol), self.protocol >= 4
        )

    def _hello(self) -> Hello:
        if len(self.versions) == 1:
            return Hello(self.local_id, self._credentials, self.versions[0])
        return Hello(self.local_id, self._credentials, max(self.versions), self.versions)

    def _negotiate(self, hello: Hello) -> int:
        """The version both speak: the highest common (a server's answer names one)."""
        offered = hello.versions or (hello.protocol_version,)
        common = set(offered) & set(self.versions)
        if not common:
            raise UnsupportedVersionError(
                f"the peer speaks protocol versions {offered}, this side {self.versions}"
            )
        return max(common)

    def _subscribe_message(self, doc_id: str, doc: _DocSync) -> Subscribe:
        """Our Subscribe. In v2 it says whether our copy is unsigned (read by
        the connection's ``unsigned``), and a server's gives the number."""
        version = self.host.version(doc_id)
        signed = getattr(self.host, "signed", None)
        unsigned = signed is not None and not signed(doc_id)
        if self.role is Role.CLIENT:
            # sent before the hellos chose a version: a v1 server reads a v1
            # Subscribe, and a v2 server also reads the 4-field form
            return Subscribe(doc_id, version, None, unsigned)
        if self.protocol < 2:
            return Subscribe(doc_id, version)
        if doc.number is None:
            doc.number = self._number_for(doc_id)
            self._numbers[doc.number] = doc_id
        return Subscribe(doc_id, version, doc.number, unsigned)

    def _number_for(self, doc_id: str) -> int:
        """The host's number for the document (the same on all its connections,
        so that one encoded batch fits them all), or one of this connection's."""
        numbering = getattr(self.host, "doc_number", None)
        if numbering is not None:
            number: int = numbering(doc_id)
            if number not in self._numbers:
                return number
        while self._next_number in self._numbers:
            self._next_number += 1
        return self._next_number

    def _by_number(self, number: int) -> tuple[str, _DocSync]:
        doc_id = self._numbers.get(number)
        doc = self._docs.get(doc_id) if doc_id is not None else None
        if doc_id is None or doc is None or not (doc.subscribed and doc.peer_subscribed):
            raise ProtocolViolationError(f"document number {number} is not subscribed")
        return doc_id, doc

    def _send_acks(self, force: bool = False) -> None:
        """The cumulative acks that are due (all owed ones with ``force``)."""
        if self.protocol < 2:
            return
        for doc in self._docs.values():
            if doc.number is None:
                continue
            count = doc.receipts.take(self._now, force)
            if count:
                self._send(AckV2(doc.number, count))

    def _settle(self, doc_id: str, doc: _DocSync, token: int, refusal: Error | None) -> None:
        if not doc.receipts.is_waiting(token):
            return
        for event in doc.received.pop(token, ()):
            doc.recent.pop(event.id, None)
        assert doc.number is not None
        for item in doc.receipts.settle(token, refusal):
            if isinstance(item, Error):
                self._send(item)
            else:
                self._send(AckV2(doc.number, item))

    def _lookup(self, doc_id: str) -> Callable[[EventId], Event | None]:
        host = self.host

        def lookup(event_id: EventId) -> Event | None:
            return host.event(doc_id, event_id)

        return lookup

    def _fail(self, error: GetherError) -> None:
        reason = Error(error.code, str(error)[:4096], None)
        self._send(reason)
        self.close_reason = reason
        self.closed = True

    def _doc(self, doc_id: str) -> _DocSync:
        doc = self._docs.get(doc_id)
        if doc is None:
            if len(self._docs) >= self.limits.max_documents:
                raise LimitExceededError(f"more than {self.limits.max_documents} documents")
            doc = self._docs[doc_id] = _DocSync()
        return doc

    def _start(self, doc_id: str, doc: _DocSync, version: Version) -> None:
        """Both sides now sync ``doc_id``: send what the peer's version lacks."""
        doc.requested = None
        doc.peer_subscribed = True
        doc.peer_has.merge(version)
        doc.peer_told.merge(version)
        doc.peer_stored.merge(version)
        if not doc.subscribed:
            self.subscribe(doc_id)
        self.push(doc_id)

    def _send_batch(self, doc_id: str, doc: _DocSync, batch: list[Event]) -> None:
        if self.protocol >= 2:
            assert doc.number is not None
            peer_has = doc.peer_has
            self.traffic.events_sent += len(batch)
            self._out += encode_events_frame(
                doc.number,
                batch,
                self._lookup(doc_id),
                peer_has.includes,
                self.limits.compress_above,
                doc.received_ids,
                self._names_out(),
                self.protocol,
            )
            doc.sent.sent(batch)
            doc.sent_ids.extend(e.id for e in batch)
            doc.peer_has.add(batch)
            return
        number = doc.next_batch
        doc.next_batch += 1
        doc.outstanding.add(number)
        self.traffic.events_sent += len(batch)
        self._send(Events(doc_id, number, tuple((e.body, e.signature) for e in batch)))
        doc.peer_has.add(batch)

    def _names_out(self) -> SentNames | None:
        """Where a batch for this connection alone lists its names (protocol 3)."""
        return self._sent_names if self.protocol >= 3 else None

    def _welcome(self, hello: Hello) -> None:
        chosen = self._negotiate(hello)
        self.peer = hello
        self._reader.max_size = self.limits.max_frame_bytes
        self._reader.short = chosen >= 4
        if self.role is Role.SERVER:
            self._send(Hello(self.local_id, self._credentials, chosen))
            self.protocol = chosen
            for wanted, state in self._docs.items():
                if state.subscribed:
                    self._send(self._subscribe_message(wanted, state))
        else:
            self.protocol = chosen

    def _handle(self, message: Message) -> None:
        if self.peer is None:
            if isinstance(message, Error) and message.doc_id is None:
                # the peer refused our hello (unsupported_version, credentials): its reason
                self.close_reason = message
                self.closed = True
                return
            if not isinstance(message, Hello):
                raise ProtocolViolationError("the first message must be a hello")
            if self._admission:
                self._waiting = message
            else:
                self._welcome(message)
            return
        match message:
            case Hello():
                raise ProtocolViolationError("a second hello")
            case Subscribe(doc_id, version, number, unsigned):
                doc = self._doc(doc_id)
                if doc.peer_subscribed or doc.requested is not None:
                    raise ProtocolViolationError(f"{doc_id} subscribed twice")
                doc.unsigned = unsigned
                if self.protocol >= 2 and self.role is Role.CLIENT:
                    if number is None or number in self._numbers:
                        raise ProtocolViolationError(f"{doc_id} without a free number")
                    doc.number = number
                    self._numbers[number] = doc_id
                if doc.subscribed:
                    self._start(doc_id, doc, version)
                else:
                    doc.requested = version
                    self._requests.append(doc_id)
            case Events(doc_id, batch, raw):
                known = self._docs.get(doc_id)
                if known is None or not (known.subscribed and known.peer_subscribed):
                    raise ProtocolViolationError(f"events of {doc_id} before both subscribed")
                doc = known
                if batch in doc.unacknowledged:
                    raise ProtocolViolationError(f"batch {batch} of {doc_id} sent twice")
                pending = sum(len(d.unacknowledged) for d in self._docs.values())
                if pending >= self.limits.max_pending_batches:
                    raise LimitExceededError(f"more than {pending} batches unacknowledged")
                events = tuple(decode_body(body, signature) for body, signature in raw)
                doc.unacknowledged.add(batch)
                self.traffic.events_received += len(events)
                doc.peer_has.add(events)
                doc.peer_told.add(events)
                # the peer stores what it sends before sending it
                doc.peer_stored.add(events)
                self._received.append(ReceivedEvents(doc_id, batch, events))
            case Ack(doc_id, batch, version):
                acked = self._docs.get(doc_id)
                if acked is None or batch not in acked.outstanding:
                    raise ProtocolViolationError(f"ack of unknown batch {batch} of {doc_id}")
                doc = acked
                doc.outstanding.discard(batch)
                doc.peer_has.merge(version)
                doc.peer_told.merge(version)
                doc.peer_stored.merge(version)
            case EventsV2(number, records):
                self._receive_v2(number, records)
            case AckV2(number, count):
                doc_id, doc = self._by_number(number)
                stored = doc.sent.acknowledged(count)
                doc.peer_has.add(stored)
                doc.peer_stored.add(stored)
            case Error(doc_id=doc_id):
                if doc_id is None:
                    self.close_reason = message
                    self.closed = True
                else:
                    self._refused(doc_id, message)
            case Ping(nonce):
                self._send_acks(force=True)
                for state in self._docs.values():  # and those the owner still stores
                    state.receipts.hurry()
                for doc_id in list(self._docs):
                    self.push(doc_id)
                self._send(Pong(nonce))
            case Pong(nonce):
                self._pongs.add(nonce)
            case _:  # pragma: no cover - decode() returns only the kinds above
                raise DecodeError(f"unexpected message {message!r}")

    def _receive_v2(self, number: int, records: bytes) -> None:
        doc_id, doc = self._by_number(number)
        pending = sum(d.receipts.waiting() for d in self._docs.values())
        if pending >= self.limits.max_pending_batches:
            raise LimitExceededError(f"more than {pending} batches unacknowledged")
        host_lookup = self._lookup(doc_id)
        recent = doc.recent

        def lookup(event_id: EventId) -> Event | None:
            found = recent.get(event_id)
            return found if found is not None else host_lookup(event_id)

        token = doc.receipts.arrived()
        try:
            events = tuple(
                decode_batch(
                    records,
                    lookup,
                    self.limits.max_batch_events,
                    doc.sent_ids.at,
                    self._received_names if self.protocol >= 3 else None,
                    self.protocol >= 4,
                )
            )
        except UnknownParentError as exc:
            # not the peer's fault: it assumed we hold what we refused before;
            # the error, in this batch's place, asks for it again with hashes.
            # Our count of its events is off from now on: name none by position
            doc.received_ids.frozen = True
            self._settle(doc_id, doc, token, Error(exc.code, str(exc)[:4096], doc_id))
            return
        self.traffic.events_received += len(events)
        doc.received_ids.extend(e.id for e in events)
        doc.received[token] = events
        for event in events:
            recent[event.id] = event
        doc.peer_has.add(events)
        doc.peer_told.add(events)
        doc.peer_stored.add(events)
        self._received.append(ReceivedEvents(doc_id, token, events))

    def _refused(self, doc_id: str, error: Error) -> None:
        """An error for a document: in v2, the answer to our oldest batch not
        yet answered; ``unknown_parent`` asks for it again with parent hashes."""
        doc = self._docs.get(doc_id)
        if self.protocol >= 2 and doc is not None and doc.subscribed and doc.peer_subscribed:
            batch = doc.sent.refused()
            if batch is not None and error.code == UnknownParentError.code:
                assert doc.number is not None
                self._out += encode_events_frame(
                    doc.number,
                    list(batch),
                    self._lookup(doc_id),
                    lambda _: False,
                    self.limits.compress_above,
                    names=self._names_out(),
                    protocol=self.protocol,
                )
                doc.sent.sent(batch)
                doc.sent_ids.extend(e.id for e in batch)
                return
        self._errors.append(error)
