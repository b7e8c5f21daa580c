"""Raw TCP: the protocol's frames over an asyncio stream, for devices and
servers talking to each other."""

from __future__ import annotations

import asyncio

from gether.server.hub import DocumentHub
from gether.server.session import Session
from gether.transport.stream import StreamChannel


class TCPServer:
    """Sessions over TCP; ``close()`` says going-away to every client."""

    def __init__(self, hub: DocumentHub) -> None:
        self.hub = hub
        self.sessions: set[Session] = set()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        session = Session(self.hub, StreamChannel(reader, writer), name=f"tcp:{peer}")
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._handle, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await asyncio.gather(*(s.shut_down() for s in list(self.sessions)))
        if self.server is not None:
            await self.server.wait_closed()
