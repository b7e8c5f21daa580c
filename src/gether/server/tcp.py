"""Raw TCP: the protocol's frames over an asyncio stream, for devices and
servers talking to each other; with an SSL context, TLS (``tls://``)."""

from __future__ import annotations

import asyncio
import ssl

from gether.server.auth import Authenticator, info_from_certificate
from gether.server.hub import DocumentHub
from gether.server.session import Session
from gether.transport.stream import StreamChannel, set_send_buffer


class TCPServer:
    """Sessions over TCP; ``close()`` says going-away to every client."""

    def __init__(
        self,
        hub: DocumentHub,
        authenticator: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hub = hub
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.sessions: set[Session] = set()
        self.server: asyncio.Server | None = None
        self._closing = False

    @property
    def scheme(self) -> str:
        return "tcp" if self.ssl_context is None else "tls"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            # accepted before close() but through its TLS handshake only now: no
            # session would be told to shut down, and wait_closed() would wait for it
            writer.close()
            return
        set_send_buffer(writer.transport, self.hub.config.limits.send_buffer_bytes)
        peer = writer.get_extra_info("peername") or ("?", 0)
        remote = f"{peer[0]}:{peer[1]}"
        ssl_object = writer.get_extra_info("ssl_object")
        info = info_from_certificate(
            "tcp",
            remote,
            ssl_object is not None,
            ssl_object.getpeercert() if ssl_object is not None else None,
        )
        session = Session(
            self.hub,
            StreamChannel(reader, writer),
            name=f"{self.scheme}:{remote}",
            authenticator=self.authenticator,
            info=info,
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(
            self._handle,
            host,
            port,
            ssl=self.ssl_context,
            # asyncio's default of 100 leaves a burst of connections (1,000 at
            # once: tests/test_hostile.py) half-open in the kernel, never
            # accepted, so never timed out either; uvicorn uses 2048
            backlog=2048,
            # a client that stalls its TLS handshake is dropped as quickly as one
            # that never says hello
            ssl_handshake_timeout=self.hub.config.limits.hello_timeout
            if self.ssl_context
            else None,
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._closing = True
        if self.server is not None:
            self.server.close()
        await asyncio.gather(*(s.shut_down() for s in list(self.sessions)))
        if self.server is not None:
            await self.server.wait_closed()
