"""One client connection on the server, whatever carries its bytes: reads
frames into its ``SyncConnection``, hands subscriptions and events to the hub,
and sends what the connection has to say.

A session we accepted first authenticates: until the peer's hello is read and
its credentials accepted (all within ``Limits.hello_timeout``), nothing else
it sends is decoded, and on refusal it gets ``Error(authentication_failed)``
and is closed.

What a session costs the server is bounded (``Limits``): what it reads by a
budget of frames and bytes per second (``server/limits.py``), what it sends by
a bounded queue (``server/outbox.py``), so a peer that stops reading is
disconnected (``slow_consumer``) instead of growing the server's memory, and
never holds up the fan-out to anyone else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gether.errors import (
    AuthenticationError,
    GetherError,
    GoingAwayError,
    LimitExceededError,
    RateLimitedError,
    SignatureRequiredError,
    SlowConsumerError,
    StorageError,
)
from gether.server import gate
from gether.server.auth import Authenticator, ConnectionInfo, OpenAuthenticator, Principal
from gether.server.authz import Rights
from gether.server.hub import DocumentHub
from gether.server.limits import Budget
from gether.server.outbox import Outbox
from gether.sync.connection import ReceivedEvents, Role, SyncConnection
from gether.sync.fanout import SharedBatch
from gether.sync.messages import Hello

log = logging.getLogger(__name__)

FEED_BYTES = 4096
"""The most a session decodes before applying what it decoded (``_feed``)."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closing session waits for what it queued to be sent before it
aborts the connection (a peer that stopped reading would hold it forever)."""


class Channel(Protocol):
    """A bidirectional byte channel (a WebSocket, a TCP stream)."""

    async def receive(self) -> bytes | None:
        """The next bytes, or None once the peer has closed."""
        ...

    async def send(self, data: bytes) -> None: ...

    def send_now(self, data: bytes) -> bool:
        """Send ``data`` at once if that needs no waiting; False: it was not sent."""
        ...

    async def close(self, going_away: bool = False) -> None: ...

    def abort(self) -> None:
        """Drop the connection now, sending nothing more (a peer that stopped reading)."""
        ...


class Session:
    """``role`` is SERVER for a connection we accepted and CLIENT for one we
    dialled (a peer's link). With ``mesh``, the session subscribes to every
    document the hub holds, now and later, instead of only answering."""

    def __init__(
        self,
        hub: DocumentHub,
        channel: Channel,
        name: str = "?",
        role: Role = Role.SERVER,
        mesh: bool = False,
        *,
        authenticator: Authenticator | None = None,
        info: ConnectionInfo | None = None,
        credentials: str | None = None,
        on_admitted: Callable[[], None] | None = None,
    ) -> None:
        self.hub = hub
        self._on_admitted = on_admitted
        self.channel = channel
        self.name = name
        self.mesh = mesh or hub.config.mesh
        self.authenticator = authenticator or OpenAuthenticator()
        self.info = info or ConnectionInfo("unknown", name)
        self.principal: Principal | None = None
        """Who the peer is, once authenticated (a session we accepted)."""
        self.rights: Rights | None = None
        """What it may read and push (``server/authz.py``), once authenticated."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.conn = SyncConnection(
            hub,
            hub.config.server_id,
            role,
            now=loop.time(),
            credentials=credentials,
            limits=hub.config.limits,
            versions=hub.config.versions,
            admission=role is Role.SERVER,
        )
        limits = hub.config.limits
        self.outbox = Outbox(channel.send, limits.max_queued_bytes, channel.send_now)
        self._budget = Budget(limits, loop.time()) if role is Role.SERVER else None
        self._charged = 0
        """Frames decoded so far that were charged to the budget."""
        self._dirty: dict[str, list[SharedBatch] | None] = {}
        """Documents with news: the shared batches in order, or None to work it out."""
        self._flush_scheduled = False
        self._closing = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._settled = asyncio.Event()  # a received batch was stored or refused

    # -- the hub tells us ----------------------------------------------------------

    def document_opened(self, doc_id: str) -> None:
        """A document the hub holds now (a mesh session subscribes to it)."""
        hosted = self.hub.loaded(doc_id)
        if self.mesh and not self.conn.closed and hosted is not None:
            if gate.read_refusal(self, hosted) is not None:
                return
            self.hub.subscribe(doc_id, self)
            self.conn.subscribe(doc_id)
            self.document_changed(doc_id)

    def document_changed(self, doc_id: str, shared: SharedBatch | None = None) -> None:
        if (
            shared is not None
            and not self._dirty
            and not self._flush_scheduled
            and not self.conn.closed
            and self.hub.loaded(doc_id) is not None
        ):
            # the fan-out's common case, with no task: a task per subscriber
            # per tick was much of the server's time with hundreds of them
            self.conn.push_shared(shared)
            if self._send_or_queue():
                self._start(self.outbox.pump())
            return
        batches = self._dirty.get(doc_id, [])
        if shared is None or batches is None:
            self._dirty[doc_id] = None
        else:
            batches.append(shared)
            self._dirty[doc_id] = batches
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._start_flush)  # the hub coalesced already

    def forbid(self, error: GetherError) -> None:
        """It may no longer read a document it is subscribed to (its keys lost
        their role in the document's policy): say why and close."""
        self.hub.unsubscribe(self)
        self.conn.close(error)
        self._start_flush()  # sends the error; the ticker closes the channel

    def _start_flush(self) -> None:
        self._start(self._flush_dirty())

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for doc_id, batches in dirty.items():
            if self.hub.loaded(doc_id) is None:
                # evicted after a failed write: our view of it is gone
                self.conn.close(StorageError(f"{doc_id} is being reloaded; reconnect"))
            elif batches is None:
                self.conn.push(doc_id)
            else:
                for shared in batches:
                    self.conn.push_shared(shared)
        await self.flush()

    # -- the loop ------------------------------------------------------------------

    async def flush(self) -> None:
        """Send what the connection has to say, or queue it behind the send
        under way (``Outbox``); a peer too slow for it is cut off."""
        if self._send_or_queue():
            await self.outbox.pump()

    def _send_or_queue(self) -> bool:
        """What the connection has to say, sent now if the channel takes it
        at once, else queued: True if it was queued (the caller pumps)."""
        data = self.conn.data_to_send()
        if not data or self.outbox.send_now(data):
            return False
        if self.outbox.put(data):
            return True
        limit = self.outbox.limit
        self.conn.close(SlowConsumerError(f"more than {limit} bytes waiting to be sent"))
        self.channel.abort()  # it does not read: the error could not reach it anyway
        return False

    def _take(self, data: bytes) -> bool:
        """Hand received bytes to the connection within the budget; False if
        the connection is closed now (over budget, or by what it read)."""
        conn, now = self.conn, self._loop.time()
        if self._budget is not None:
            try:
                self._budget.spend_bytes(len(data), now)
            except RateLimitedError as exc:
                conn.close(exc)  # before any of it is decoded
                return False
        conn.receive_data(data, now)
        self._charge()
        return not conn.closed

    def _charge(self) -> None:
        """Charge the frames decoded since the last charge (after a read, and
        after admission decodes what came behind the hello) before any of
        them is acted on; over the budget, the connection closes."""
        if self._budget is None:
            return
        frames = self.conn.traffic.frames_received
        try:
            self._budget.spend_frames(frames - self._charged, self._loop.time())
        except RateLimitedError as exc:
            self.conn.close(exc)
        self._charged = frames

    async def _close_channel(self, going_away: bool = False) -> None:
        """Send what is queued and the connection's last words, then close;
        abort if the peer does not take them in time."""
        if not self.outbox.put(self.conn.data_to_send()):
            self.channel.abort()
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.outbox.drained()
                await self.channel.close(going_away=going_away)
        except TimeoutError:
            self.channel.abort()
        except (ConnectionError, OSError):
            pass

    async def run(self) -> None:
        ticker = asyncio.create_task(self._tick())
        try:
            if not await self._introduce():
                return
            if self.mesh:
                self.hub.sessions.add(self)
                for doc_id in self.hub.open_documents():
                    self.document_opened(doc_id)
                await self.flush()
            while not self.conn.closed:
                data = await self.channel.receive()
                if data is None:
                    self.conn.receive_eof()
                    break
                await self._feed(data)
                await self.flush()
        except (ConnectionError, OSError):
            pass
        finally:
            ticker.cancel()
            self.hub.sessions.discard(self)
            self.hub.unsubscribe(self)
            await self._close_channel(going_away=self._closing)
            if self.conn.close_reason is not None:
                reason = self.conn.close_reason
                log.info("%s closed: [%s] %s", self.name, reason.code, reason.message)

    async def _feed(self, data: bytes) -> None:
        """Hand ``data`` to the connection a slice at a time, applying what each
        slice completes before decoding more: compressed batches hold thousands
        of events in a few KB, and a whole read of them was decoded before the
        first was applied and the sender, past its limits, cut off
        (tests/test_hostile.py; docs/architecture.md, "Hostile input")."""
        for start in range(0, len(data), FEED_BYTES):
            if not self._take(data[start : start + FEED_BYTES]):
                return
            await self._drain()
            if self.conn.closed:
                return

    async def _drain(self) -> None:
        """Apply what was decoded; while the connection holds back frames until
        enough of it is settled (``SyncConnection.backlogged``), wait for
        settlements and decode on."""
        conn = self.conn
        await self._process()
        while conn.backlogged and not conn.closed:
            if not conn.settled_enough:
                self._settled.clear()
                await self._settled.wait()
                continue
            conn.resume(self._loop.time())
            self._charge()
            await self._process()

    async def _introduce(self) -> bool:
        """Hellos both ways, the peer's credentials checked, within the hello
        timeout; only then is anything behind its hello read. False if the
        connection ended instead."""
        conn = self.conn
        await self.flush()  # our hello, if we dialled
        try:
            async with asyncio.timeout(self.hub.config.limits.hello_timeout):
                while conn.peer is None and not conn.closed:
                    hello = conn.hello_to_admit()
                    if hello is not None:
                        await self._authenticate(hello)
                        continue
                    data = await self.channel.receive()
                    if data is None:
                        conn.receive_eof()
                        return False
                    self._take(data)
                    await self.flush()
        except TimeoutError:
            if conn.peer is None:
                conn.close(AuthenticationError("no hello and credentials in time"))
        if conn.closed:
            await self.flush()
            return False
        # what came behind the hello, outside the timeout: opening documents may take long
        await self._drain()
        await self.flush()
        return True

    async def _authenticate(self, hello: Hello) -> None:
        try:
            self.principal = await self.authenticator.authenticate(hello.credentials, self.info)
        except AuthenticationError as exc:
            log.info("%s (%s) not authenticated: %s", self.name, hello.peer_id, exc)
            self.conn.deny(exc)
            return
        self.rights = Rights(self.principal, self.hub.config.authorization)
        if self._on_admitted is not None:
            self._on_admitted()
        self.conn.admit()  # decodes the frames behind the hello, for _process
        self._charge()

    async def _process(self) -> None:
        conn = self.conn
        for doc_id in conn.subscriptions_requested():
            try:
                hosted = await self.hub.open(doc_id)
            except GetherError as exc:
                conn.refuse(doc_id, exc)
                continue
            if conn.unsigned(doc_id) and self.hub.signed(doc_id):
                conn.refuse(doc_id, SignatureRequiredError(f"{doc_id} is hosted signed"))
                continue
            refusal = gate.read_refusal(self, hosted)
            if refusal is not None:
                conn.refuse(doc_id, refusal)
                continue
            self.hub.subscribe(doc_id, self)
            conn.accept(doc_id, live=hosted.shared)
        for received in conn.events_received():
            # not awaited here: the next frames are read (and applied, in order:
            # tasks start in the order made) while this batch is being stored
            task = asyncio.ensure_future(self._receive(received))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            # let it apply before more is decoded: a sender past a limit (events
            # waiting for parents) is cut off now, not after all it sent
            await asyncio.sleep(0)

    async def _receive(self, received: ReceivedEvents) -> None:
        conn = self.conn
        if conn.closed:
            return  # an earlier batch closed the connection: nothing more of it counts
        try:
            rejected = await gate.receive(self, received.doc_id, received.events)
        except (StorageError, LimitExceededError) as exc:
            conn.close(exc)  # nothing of it is acknowledged
        else:
            if rejected is None:
                conn.acknowledge(received)
            else:
                conn.reject(received, rejected)
        finally:
            self._settled.set()
        await self.flush()

    async def _tick(self) -> None:
        while not self.conn.closed:
            await asyncio.sleep(1.0)
            self.conn.tick(self._loop.time())
            if self.conn.closed:
                await self._close_channel()
            else:
                await self.flush()

    async def shut_down(self) -> None:
        """Server shutdown: tell the client, flush, close."""
        self._closing = True
        self.conn.close(GoingAwayError("the server is shutting down"))
        await self._close_channel(going_away=True)
