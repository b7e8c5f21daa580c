"""A TCP stream as a byte channel: the protocol's frames over asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib

READ_SIZE = 64 * 1024


class StreamChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive(self) -> bytes | None:
        """The next bytes, or None once the peer closed (or the link broke)."""
        try:
            data = await self.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return None
        return data or None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        """Drop the connection now, discarding what is not yet written."""
        self.writer.transport.abort()

    async def close(self, going_away: bool = False) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            # shielded: a caller cancelled while waiting here must not cancel the
            # stream's own closed future, or a later close() would raise it
            await asyncio.shield(self.writer.wait_closed())
