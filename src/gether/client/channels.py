"""The byte channels a client dials: WebSocket (``ws://``, ``wss://``) and raw
TCP (``tcp://host:port``, or ``tls://host:port`` with TLS)."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from gether.errors import ConnectionFailedError, TLSError, UsageError
from gether.transport.stream import StreamChannel
from gether.transport.tls import client_context


class WebSocketClientChannel:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def receive(self) -> bytes | None:
        try:
            data = await self.ws.recv()
        except websockets.ConnectionClosed:
            return None
        return data if isinstance(data, bytes) else data.encode()

    async def send(self, data: bytes) -> None:
        try:
            await self.ws.send(data)
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from exc

    def send_now(self, data: bytes) -> bool:
        return False  # ``websockets``' send may wait: always ``send``

    async def close(self, going_away: bool = False) -> None:
        await self.ws.close(1001 if going_away else 1000)

    def abort(self) -> None:
        """Drop the connection now, discarding what is not yet written."""
        self.ws.transport.abort()


Channel = WebSocketClientChannel | StreamChannel


async def dial(
    url: str, max_frame: int, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
) -> Channel:
    """Connect to ``url``; ``ssl_context`` (for ``wss://`` and ``tls://``) says
    which CAs to trust and which client certificate to present (default: the
    system's roots, no client certificate)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("ws", "wss"):
            context = (ssl_context or client_context()) if scheme == "wss" else None
            ws = await asyncio.wait_for(
                ws_connect(url, max_size=max_frame + 4, compression=None, ssl=context), timeout
            )
            return WebSocketClientChannel(ws)
        if scheme in ("tcp", "tls"):
            if parts.hostname is None or parts.port is None:
                raise UsageError(f"a {scheme.upper()} URL is {scheme}://host:port")
            context = (ssl_context or client_context()) if scheme == "tls" else None
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port, ssl=context), timeout
            )
            return StreamChannel(reader, writer)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        raise TLSError(f"TLS with {url} failed: {exc}") from exc
    except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        raise ConnectionFailedError(f"cannot reach {url}: {exc}") from exc
    raise UsageError(f"unknown URL scheme {scheme!r}: use ws://, wss://, tcp:// or tls://")
