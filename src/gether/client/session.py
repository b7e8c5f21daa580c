"""``gether.connect``: keep one document in sync with a server.

Local edits go out as they happen; remote events are applied (and stored,
for a document opened on a store) before they are acknowledged. If the link
drops, the session dials again with exponential backoff and jitter, and the
new connection exchanges only what each side lacks: nothing is sent twice
into the document, since events are idempotent and named by their ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Sequence
from types import TracebackType

from gether.client.channels import Channel, dial
from gether.core.document import Document
from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import (
    AuthenticationError,
    ConnectionFailedError,
    GetherError,
    RejectedEventsError,
    SignatureRequiredError,
    UsageError,
)
from gether.sync.connection import Limits, Role, SyncConnection, Traffic
from gether.sync.messages import VERSIONS, Error

log = logging.getLogger(__name__)

STABLE_AFTER = 5.0
"""Seconds after which a connection that ends is not counted as a failed dial."""


class _OneDocument:
    """The ``SyncHost`` of a client: its one document."""

    def __init__(self, doc_id: str, doc: Document) -> None:
        self.doc_id = doc_id
        self.doc = doc

    def version(self, doc_id: str) -> Version:
        return self.doc.version

    def events_since(self, doc_id: str, version: Version) -> list[Event]:
        return self.doc.events_since(version)

    def event(self, doc_id: str, event_id: tuple[str, int]) -> Event | None:
        return self.doc.known_event(event_id)

    def signed(self, doc_id: str) -> bool:
        return self.doc.signed


class ClientSession:
    def __init__(
        self,
        url: str,
        doc_id: str,
        doc: Document,
        *,
        token: str | None = None,
        limits: Limits | None = None,
        backoff: tuple[float, float] = (0.05, 5.0),
        connect_timeout: float = 10.0,
        offline_start: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.doc_id = doc_id
        self.doc = doc
        self.token = token
        self.limits = limits or Limits()
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.offline_start = offline_start
        self.ssl_context = ssl_context
        self.refused: AuthenticationError | None = None
        """Set when the server refused our credentials: we stop redialling."""
        self.errors: list[Error] = []
        """Refusals the server sent for our events (and the reasons it closed)."""
        self.connections = 0
        self.versions: tuple[int, ...] = VERSIONS
        """Protocol versions offered; v1 alone after a server refused them all."""
        self._past_traffic = Traffic()
        self._host = _OneDocument(doc_id, doc)
        self._conn: SyncConnection | None = None
        self._channel: Channel | None = None
        self._changed = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._unlisten = doc._listen(self._on_events)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> ClientSession:
        try:
            await self._connect()  # by default the first dial must work: the URL is right
        except ConnectionFailedError:
            if not self.offline_start:
                raise
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unlisten()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self._drop()

    @property
    def traffic(self) -> Traffic:
        """Events and bytes sent and received, over every connection so far."""
        current = self._conn.traffic if self._conn is not None else Traffic()
        return self._past_traffic + current

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    # -- syncing ---------------------------------------------------------------------

    async def sync(self, timeout: float | None = 30.0) -> None:
        """Return once the server has stored all our events and we hold all of its."""
        async with asyncio.timeout(timeout):
            while True:
                if self.refused is not None:
                    raise self.refused
                conn = self._conn
                if conn is None or conn.closed:
                    async with self._changed:
                        await self._changed.wait_for(self._live_or_refused)
                    continue
                nonce = conn.ping(self._loop.time())
                await self._flush()
                async with self._changed:
                    await self._changed.wait_for(
                        lambda c=conn, n=nonce: (
                            c.closed  # type: ignore[misc]
                            or (c.pong_received(n) and c.is_synced(self.doc_id))
                        )
                    )
                if not conn.closed:
                    return

    def _live_or_refused(self) -> bool:
        conn = self._conn
        return self.refused is not None or (conn is not None and not conn.closed)

    def _on_events(self, events: Sequence[Event], local: bool) -> None:
        if local:
            self._loop.call_soon_threadsafe(self._push_soon)

    def _push_soon(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.push(self.doc_id)
            task = asyncio.ensure_future(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        conn, channel = self._conn, self._channel
        if conn is None or channel is None:
            return
        async with self._send_lock:
            data = conn.data_to_send()
            if data:
                with contextlib.suppress(ConnectionError, OSError):
                    await channel.send(data)

    # -- connections -------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._conn is not None:
            self._past_traffic = self._past_traffic + self._conn.traffic
            self._conn = None
        channel = await dial(
            self.url, self.limits.max_frame_bytes, self.connect_timeout, self.ssl_context
        )
        conn = SyncConnection(
            self._host,
            self.doc.replica_id,
            Role.CLIENT,
            now=self._loop.time(),
            credentials=self.token,
            limits=self.limits,
            versions=self.versions,
        )
        conn.subscribe(self.doc_id)
        self._conn, self._channel = conn, channel
        self.connections += 1
        await self._flush()

    async def _drop(self) -> None:
        channel = self._channel
        if self._conn is not None:
            self._conn.close()
        if channel is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await channel.close()
        # forgotten only once closed: if close() cancels us mid-way (a refusal
        # raised in sync() ends the caller's block), its own _drop finishes the
        # job, and no TLS transport is left half closed
        if self._channel is channel:
            self._channel = None
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            if not self.connected:
                try:
                    await self._connect()
                except ConnectionFailedError as exc:
                    failures += 1
                    log.info("reconnecting to %s: %s", self.url, exc)
                    await self._back_off(failures)
                    continue
            started = self._loop.time()
            await self._serve_connection()
            await self._drop()
            if self.refused is not None:
                return  # the same credentials would be refused again
            # a link that dies young (a refusal, a crash loop) counts as a failure:
            # redialling at once would hammer the server
            failures = failures + 1 if self._loop.time() - started < STABLE_AFTER else 0
            if failures:
                await self._back_off(failures)

    async def _back_off(self, failures: int) -> None:
        low, high = self.backoff
        await asyncio.sleep(min(high, low * 2**failures) * random.uniform(0.5, 1.0))

    async def _serve_connection(self) -> None:
        conn, channel = self._conn, self._channel
        assert conn is not None and channel is not None
        ticker = asyncio.create_task(self._tick(conn))
        try:
            while not conn.closed:
                data = await channel.receive()
                if data is None:
                    conn.receive_eof()
                    break
                conn.receive_data(data, self._loop.time())
                self._process(conn)
                # what it held back, now that _process settled what it had
                while conn.backlogged and conn.settled_enough and not conn.closed:
                    conn.resume(self._loop.time())
                    self._process(conn)
                await self._flush()
                async with self._changed:
                    self._changed.notify_all()
        except (ConnectionError, OSError):
            pass
        finally:
            ticker.cancel()
            reason = conn.close_reason
            if reason is not None:
                self.errors.append(reason)
                if reason.code == "unsupported_version" and conn.peer is None:
                    # a server from before v2 refuses an offer of several
                    # versions: speak v1 alone, as it does, from now on
                    self.versions = (1,)
                if reason.code == AuthenticationError.code and reason.doc_id is None:
                    self.refused = AuthenticationError(reason.message)

    def _process(self, conn: SyncConnection) -> None:
        for doc_id in conn.subscriptions_requested():
            conn.refuse(doc_id, UsageError(f"this client syncs {self.doc_id} only"))
        if conn.unsigned(self.doc_id) and self.doc.signed:
            # the server would send events no signature vouches for
            conn.close(
                SignatureRequiredError(f"{self.doc_id} is hosted unsigned; this copy is signed")
            )
            return
        for received in conn.events_received():
            try:
                self.doc.apply_events(received.events, callback_error=_log_callback_error)
            except RejectedEventsError as exc:
                conn.reject(received, exc)
                continue
            except GetherError as exc:  # e.g. the local store failed: do not acknowledge
                conn.close(exc)
                return
            conn.acknowledge(received)
        self.errors.extend(conn.errors_received())

    async def _tick(self, conn: SyncConnection) -> None:
        while not conn.closed:
            await asyncio.sleep(1.0)
            conn.tick(self._loop.time())
            await self._flush()
        channel = self._channel
        if channel is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await channel.close()


def _log_callback_error(exc: Exception) -> None:
    """An application's on_change callback failed: the events are applied and
    stored all the same, so syncing goes on."""
    log.error("an on_change callback raised", exc_info=exc)


def connect(
    url: str,
    doc_id: str,
    doc: Document | None = None,
    token: str | None = None,
    **options: object,
) -> ClientSession:
    """``async with gether.connect(url, doc_id, doc=doc) as session:`` keeps
    ``doc`` (a new one if None) in sync with the server at ``url``."""
    if doc is None:
        from gether.document import Document as DefaultDocument

        doc = DefaultDocument()
    if not isinstance(doc, Document):
        raise UsageError("connect() syncs a gether.Document")
    return ClientSession(url, doc_id, doc, token=token, **options)  # type: ignore[arg-type]
