"""The server as an ASGI application: a WebSocket endpoint at any path (mount
it inside a Starlette or FastAPI app, or run it with ``gether serve``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gether.server.auth import Authenticator, info_from_certificate
from gether.server.hub import DocumentHub
from gether.server.session import Session
from gether.server.wsprotocol import aborter, frame_limit_setter, peercert, sender_now

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GOING_AWAY = 1001


class WebSocketChannel:
    def __init__(
        self,
        receive: Receive,
        send: Send,
        abort: Callable[[], None] | None = None,
        send_now: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._receive = receive
        self._send = send
        self._abort = abort
        self._send_now = send_now
        self._closed = False

    async def receive(self) -> bytes | None:
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._closed = True
                return None
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:  # a text frame is not the protocol: let it fail to decode
                    data = (message.get("text") or "").encode()
                return bytes(data)

    async def send(self, data: bytes) -> None:
        if not self._closed:
            await self._send({"type": "websocket.send", "bytes": data})

    def send_now(self, data: bytes) -> bool:
        """Sent at once, if the server offers a send that does not wait (ours)."""
        if self._closed or self._send_now is None:
            return False
        return self._send_now(data)

    async def close(self, going_away: bool = False) -> None:
        if not self._closed:
            self._closed = True
            await self._send(
                {"type": "websocket.close", "code": GOING_AWAY if going_away else 1000}
            )

    def abort(self) -> None:
        """Drop the connection now. On an ASGI server other than ours there is
        no such thing: we only stop sending, and the connection ends with the app."""
        self._closed = True
        if self._abort is not None:
            self._abort()


class GetherApp:
    """ASGI: WebSocket connections speak the sync protocol; ``GET`` answers a
    small JSON status; lifespan shutdown says going-away to every client.
    Every connection is authenticated by ``authenticator`` (default: open)."""

    def __init__(self, hub: DocumentHub, authenticator: Authenticator | None = None) -> None:
        self.hub = hub
        self.authenticator = authenticator
        self.sessions: set[Session] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(receive, send, scope)
        elif kind == "http":
            await self._status(send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _websocket(self, receive: Receive, send: Send, scope: Scope) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        client = scope.get("client") or ("?", 0)
        remote = f"{client[0]}:{client[1]}"
        tls = scope.get("scheme") == "wss"
        set_limit = frame_limit_setter(scope)
        max_message = self.hub.config.limits.max_frame_bytes + 4
        session = Session(
            self.hub,
            WebSocketChannel(receive, send, aborter(scope), sender_now(scope)),
            f"ws:{remote}",
            authenticator=self.authenticator,
            info=info_from_certificate("websocket", remote, tls, peercert(scope)),
            on_admitted=None if set_limit is None else lambda: set_limit(max_message),
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def _status(self, send: Send) -> None:
        body = json.dumps({"gether": "ok", "sessions": len(self.sessions)}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shut_down()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shut_down(self) -> None:
        """Tell every client we are going away, flush, close; then finish snapshots."""
        await asyncio.gather(*(s.shut_down() for s in list(self.sessions)))
        await self.hub.close()
