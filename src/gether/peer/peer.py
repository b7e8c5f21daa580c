"""``gether.Peer``: a replica that both listens (WebSocket and TCP) and dials
other peers, exchanging events with each by the same sync protocol.

A peer is a server hub whose documents are its own durable, editable
replicas (``Document.open`` on the peer's store). Every link, accepted or
dialled, is a mesh session: it subscribes to every document the peer holds,
so events travel across the mesh hop by hop (what a peer receives it offers
to its other links). Dialled links redial with backoff when cut, and every
link pings on a timer (anti-entropy): a ping makes the other side send what
we lack, so a mesh converges even if a push was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Sequence

from gether.client.channels import dial
from gether.core.event import Event
from gether.document import Document
from gether.errors import ConnectionFailedError, UsageError
from gether.server.auth import Authenticator
from gether.server.hub import DocumentHub, HubConfig
from gether.server.serve import GetherServer, start_server
from gether.server.session import Session
from gether.store import open_store
from gether.store.asyncstore import AsyncStore
from gether.sync.connection import Limits, Role
from gether.transport.tls import ServerTLS

log = logging.getLogger(__name__)


class _PeerHub(DocumentHub):
    """A hub whose documents are the peer's own durable replicas."""

    def __init__(self, store_url: str, config: HubConfig) -> None:
        super().__init__(open_store(store_url), config)
        self.store_url = store_url
        self._unlisten: list[Callable[[], None]] = []

    async def _load_document(self, doc_id: str) -> Document:
        doc = await asyncio.to_thread(Document.open, self.store_url, doc_id)
        loop = asyncio.get_running_loop()

        def on_events(events: Sequence[Event], local: bool) -> None:
            if local:
                loop.call_soon_threadsafe(self.local_change, doc_id)

        self._unlisten.append(doc._listen(on_events))
        return doc

    async def _persist(self, doc_id: str, events: list[Event]) -> None:
        """Nothing to do: the document's own journal stored them as it applied them."""

    def close_documents(self) -> None:
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten.clear()
        for doc_id in self.open_documents():
            hosted = self.loaded(doc_id)
            if hosted is not None:
                hosted.doc.close()


class Peer:
    """``peer = gether.Peer("sqlite:///a.db")``; ``await peer.start()``;
    ``doc = await peer.document("notes")``; ``peer.link(other.tcp_url)``.

    Security: ``authenticator`` checks the peers that connect to us (default:
    open); ``token`` is what we send to the peers we dial; ``tls`` makes our
    listeners ``wss://`` and ``tls://``; ``ssl_context`` is what we trust (and
    present, for mutual TLS) when we dial."""

    def __init__(
        self,
        store_url: str,
        peer_id: str = "peer",
        *,
        anti_entropy: float = 5.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        authenticator: Authenticator | None = None,
        token: str | None = None,
        tls: ServerTLS | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store_url = store_url
        config = HubConfig(server_id=peer_id, mesh=True, limits=limits or Limits())
        self.hub = _PeerHub(store_url, config)
        self.anti_entropy = anti_entropy
        self.backoff = backoff
        self.authenticator = authenticator
        self.token = token
        self.tls = tls
        self.ssl_context = ssl_context
        self.server: GetherServer | None = None
        self._links: dict[str, asyncio.Task[None]] = {}
        self._link_sessions: dict[str, Session] = {}
        self._ticker: asyncio.Task[None] | None = None

    @property
    def ws_url(self) -> str:
        if self.server is None:
            raise UsageError("start the peer first")
        return self.server.ws_url

    @property
    def tcp_url(self) -> str:
        if self.server is None or self.server.tcp_url is None:
            raise UsageError("start the peer first")
        return self.server.tcp_url

    async def start(self, host: str = "127.0.0.1", port: int = 0, tcp_port: int = 0) -> Peer:
        assert isinstance(self.hub.store, AsyncStore)
        await self.hub.store.open()
        self.server = await start_server(
            self.store_url,
            host,
            port,
            tcp_port,
            handle_signals=False,
            hub=self.hub,
            authenticator=self.authenticator,
            tls=self.tls,
        )
        self._ticker = asyncio.create_task(self._anti_entropy())
        return self

    async def document(self, doc_id: str) -> Document:
        """The peer's replica of ``doc_id`` (created if new), synced with every link."""
        return (await self.hub.open(doc_id)).doc

    def link(self, url: str) -> None:
        """Dial ``url`` (``ws://``, ``wss://``, ``tcp://`` or ``tls://`` of another
        peer) and keep the link up."""
        if url not in self._links:
            self._links[url] = asyncio.create_task(self._keep_linked(url))

    async def unlink(self, url: str) -> None:
        task = self._links.pop(url, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session = self._link_sessions.pop(url, None)
        if session is not None:
            await session.channel.close()

    @property
    def links(self) -> list[str]:
        return list(self._links)

    async def _keep_linked(self, url: str) -> None:
        failures = 0
        while True:
            try:
                channel = await dial(
                    url, self.hub.config.limits.max_frame_bytes, ssl_context=self.ssl_context
                )
            except ConnectionFailedError as exc:
                failures += 1
                low, high = self.backoff
                delay = min(high, low * 2**failures) * random.uniform(0.5, 1.0)
                log.info("peer link to %s down (%s); redial in %.2fs", url, exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            session = Session(
                self.hub, channel, f"link:{url}", Role.CLIENT, mesh=True, credentials=self.token
            )
            self._link_sessions[url] = session
            try:
                await session.run()
            finally:
                self._link_sessions.pop(url, None)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(self.anti_entropy)
            sessions = [*self._link_sessions.values()]
            if self.server is not None:
                sessions += list(self.server.app.sessions)
            for session in sessions:
                if not session.conn.closed and session.conn.peer is not None:
                    session.conn.ping(asyncio.get_running_loop().time())
                    await session.flush()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for url in list(self._links):
            await self.unlink(url)
        if self.server is not None:
            await self.server.stop()
        self.hub.close_documents()
