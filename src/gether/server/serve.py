"""``gether serve``: the ASGI app on uvicorn and the TCP listener, on one
store. On SIGTERM or SIGINT (uvicorn's handlers): stop accepting, tell every
client going-away, flush, close, finish snapshots, close the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from gether.errors import UsageError
from gether.server.asgi import GetherApp
from gether.server.auth import Authenticator
from gether.server.httpprotocol import http_protocol
from gether.server.hub import DocumentHub, HubConfig
from gether.server.tcp import TCPServer
from gether.server.wsprotocol import websocket_protocol
from gether.store import open_store
from gether.store.asyncstore import AsyncStore
from gether.transport.tls import ServerTLS

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = 5
"""Seconds uvicorn waits for connections to close after our going-away."""


class _Uvicorn(uvicorn.Server):
    """uvicorn, saying our going-away before it closes connections its own way."""

    def __init__(
        self, config: uvicorn.Config, app: GetherApp, tcp: TCPServer | None, handle_signals: bool
    ) -> None:
        super().__init__(config)
        self.gether_app = app
        self.tcp = tcp
        self.handle_signals = handle_signals

    async def shutdown(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        if self.tcp is not None:
            await self.tcp.close()
        await self.gether_app.shut_down()
        await super().shutdown(sockets)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals:  # in-process (tests): the caller owns signals
            yield
            return
        with super().capture_signals():
            yield


@dataclass
class GetherServer:
    """A running server: ``ws_url`` and ``tcp_url`` say where to connect."""

    store: AsyncStore
    hub: DocumentHub
    app: GetherApp
    tcp: TCPServer | None
    web: _Uvicorn
    task: asyncio.Task[None]
    ws_url: str
    tcp_url: str | None

    async def stop(self) -> None:
        self.web.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.store.close()

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.store.close()


async def start_server(
    store_url: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    tcp_port: int | None = None,
    config: HubConfig | None = None,
    handle_signals: bool = True,
    hub: DocumentHub | None = None,
    authenticator: Authenticator | None = None,
    tls: ServerTLS | None = None,
) -> GetherServer:
    """Start serving (port 0 picks a free port); returns once it listens. With
    ``hub``, serve that hub (its store already open) instead of a new one.
    Every connection is authenticated by ``authenticator`` (default: open to
    all); with ``tls`` both listeners speak TLS (``wss://``, ``tls://``)."""
    ssl_context = tls.context() if tls is not None else None  # bad files fail here, first
    if hub is None:
        store = await open_store(store_url).open()
        hub = DocumentHub(store, config)
    else:
        assert isinstance(hub.store, AsyncStore)
        store = hub.store
    app = GetherApp(hub, authenticator)
    tcp: TCPServer | None = None
    tcp_url = None
    if tcp_port is not None:
        tcp = TCPServer(hub, authenticator, ssl_context)
        tcp_url = f"{tcp.scheme}://{host}:{await tcp.start(host, tcp_port)}"
    limits = hub.config.limits
    tls_options: dict[str, object] = {}
    if tls is not None:
        tls_options = {
            "ssl_certfile": str(tls.cert),
            "ssl_keyfile": str(tls.key),
            "ssl_ca_certs": None if tls.client_ca is None else str(tls.client_ca),
            "ssl_cert_reqs": ssl.CERT_NONE if tls.client_ca is None else ssl.CERT_REQUIRED,
        }
    settings = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=websocket_protocol(limits.max_frame_before_hello + 4),
        # the upgrade request, too, within the hello timeout (uvicorn has none)
        http=http_protocol(limits.hello_timeout, limits.send_buffer_bytes),
        lifespan="on",
        log_level="warning",
        ws_max_size=limits.max_frame_bytes + 4,
        ws_per_message_deflate=False,
        # clients were told going-away already; a TLS connection whose client
        # never answers the close (close_notify) must not hold the exit forever
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        **tls_options,  # type: ignore[arg-type]
    )
    web = _Uvicorn(settings, app, tcp, handle_signals)
    task = asyncio.create_task(web.serve())
    while not web.started:
        if task.done():
            await store.close()
            task.result()
            raise UsageError(f"the server did not start on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = web.servers[0].sockets[0].getsockname()[1]
    ws_scheme = "ws" if tls is None else "wss"
    return GetherServer(store, hub, app, tcp, web, task, f"{ws_scheme}://{host}:{bound}", tcp_url)
