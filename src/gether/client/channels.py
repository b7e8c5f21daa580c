"""The byte channels a client dials: WebSocket (``ws://``, ``wss://``) and raw
TCP (``tcp://host:port``)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from gether.errors import ConnectionFailedError, UsageError
from gether.transport.stream import StreamChannel


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

    async def close(self, going_away: bool = False) -> None:
        await self.ws.close(1001 if going_away else 1000)


Channel = WebSocketClientChannel | StreamChannel


async def dial(url: str, max_frame: int, timeout: float = 10.0) -> Channel:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("ws", "wss"):
            ws = await asyncio.wait_for(
                ws_connect(url, max_size=max_frame + 4, compression=None), timeout
            )
            return WebSocketClientChannel(ws)
        if scheme == "tcp":
            if parts.hostname is None or parts.port is None:
                raise UsageError("a TCP URL is tcp://host:port")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), timeout
            )
            return StreamChannel(reader, writer)
    except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        raise ConnectionFailedError(f"cannot reach {url}: {exc}") from exc
    raise UsageError(f"unknown URL scheme {scheme!r}: use ws://, wss:// or tcp://")
