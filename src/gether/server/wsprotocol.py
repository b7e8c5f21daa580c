"""uvicorn's sans-I/O WebSocket protocol with four additions the ASGI scope
lacks: the verified TLS client certificate (as ``getpeercert()`` gives it),
a message size limit the app can raise once the peer is authenticated, a
way to abort the connection (ASGI can only ask to close it, which waits for
a peer that may never read again), and a send that does not wait (ASGI's
``send`` is a coroutine: a fan-out to hundreds of subscribers made a task
each, every tick).

Without the second, uvicorn would buffer a whole message of ``ws_max_size``
(16 MiB) from anyone before our hello check ever saw a byte of it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from gether.transport.stream import abort_transport

CERTIFICATE = "gether.peercert"
"""Scope extension: ``{"peercert": dict | None}``."""
FRAME_LIMIT = "gether.frame_limit"
"""Scope extension: ``{"set": callable(max_bytes)}``, the WebSocket message limit now."""
ABORT = "gether.abort"
"""Scope extension: ``{"abort": callable()}``, drop the connection now."""
SEND_NOW = "gether.send_now"
"""Scope extension: ``{"send": callable(bytes) -> bool}``, a binary message
sent at once if the transport takes it without waiting (False: it did not)."""


def websocket_protocol(before_hello: int) -> type[WebSocketsSansIOProtocol]:
    """The protocol class for ``uvicorn.Config(ws=...)``: messages of at most
    ``before_hello`` bytes until the app raises the limit."""

    class GetherWebSocketProtocol(WebSocketsSansIOProtocol):
        def handle_connect(self, event: Request) -> None:
            super().handle_connect(event)
            scope: dict[str, Any] | None = getattr(self, "scope", None)
            if scope is None:  # the handshake was refused
                return
            ssl_object = self.transport.get_extra_info("ssl_object")
            peercert = ssl_object.getpeercert() if ssl_object is not None else None
            extensions = scope.setdefault("extensions", {})
            extensions[CERTIFICATE] = {"peercert": peercert or None}
            # the app task has not run yet: frames read from now on obey this
            self.conn.max_message_size = before_hello
            extensions[FRAME_LIMIT] = {"set": self._set_limit}
            transport = self.transport
            extensions[ABORT] = {"abort": lambda: abort_transport(transport)}
            extensions[SEND_NOW] = {"send": self._send_now}

        def _set_limit(self, max_bytes: int) -> None:
            self.conn.max_message_size = max_bytes

        def _send_now(self, data: bytes) -> bool:
            """uvicorn's own ``send``, run to its end here: while the transport
            is writable it never waits (its one wait is for that, before it
            writes anything), so it finishes in one step."""
            if not self.writable.is_set():
                return False
            step = self.send({"type": "websocket.send", "bytes": data})
            try:
                step.send(None)
            except StopIteration:
                return True
            step.close()  # it waited after all, before writing: nothing was sent
            return False

    return GetherWebSocketProtocol


def frame_limit_setter(scope: MutableMapping[str, Any]) -> Callable[[int], None] | None:
    """The limit's setter, when the app runs on ``websocket_protocol``."""
    extension = scope.get("extensions", {}).get(FRAME_LIMIT)
    return None if extension is None else extension["set"]


def aborter(scope: MutableMapping[str, Any]) -> Callable[[], None] | None:
    """What drops the connection now, when the app runs on ``websocket_protocol``."""
    extension = scope.get("extensions", {}).get(ABORT)
    return None if extension is None else extension["abort"]


def sender_now(scope: MutableMapping[str, Any]) -> Callable[[bytes], bool] | None:
    """The send that does not wait, when the app runs on ``websocket_protocol``."""
    extension = scope.get("extensions", {}).get(SEND_NOW)
    return None if extension is None else extension["send"]


def peercert(scope: MutableMapping[str, Any]) -> dict[str, Any] | None:
    """The verified client certificate, when the app runs on ``websocket_protocol``."""
    extension = scope.get("extensions", {}).get(CERTIFICATE)
    return None if extension is None else extension["peercert"]
