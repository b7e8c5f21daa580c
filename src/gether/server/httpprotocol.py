"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's head.

uvicorn times out only an idle keep-alive connection after a response: a
connection that opens the port and sends nothing, or its request line and
headers a byte at a time, is kept forever. Here every connection must send a
complete request head (a WebSocket upgrade, or the status ``GET``) within
``timeout`` seconds of connecting or of its previous response, like the
hello timeout that follows the upgrade; h11 already bounds the head's size.
It also sets the connection's kernel send buffer (``Limits.send_buffer_bytes``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

from gether.transport.stream import set_send_buffer


def http_protocol(timeout: float, send_buffer: int | None = None) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``."""

    class GetherHTTPProtocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None
        _waiting_since: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            set_send_buffer(transport, send_buffer)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request on a kept-alive connection

        def _arm(self) -> None:
            self._disarm()
            # ``scope`` is replaced by each request head parsed: still the same
            # one at the deadline means no new head arrived in time
            self._waiting_since = self.scope
            self._head_deadline = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _expire(self) -> None:
            self._head_deadline = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to WebSocket (which has the hello timeout)
            if self.scope is self._waiting_since:
                transport.close()

    return GetherHTTPProtocol
