"""A TCP stream as a byte channel: the protocol's frames over asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

READ_SIZE = 64 * 1024


def abort_transport(transport: asyncio.WriteTransport) -> None:
    """Drop a connection now with a reset: what the kernel still holds for a
    peer that stopped reading is discarded too, instead of being retried for
    minutes by an orphaned socket."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def set_send_buffer(transport: asyncio.BaseTransport, size: int | None) -> None:
    """Fix the kernel's send buffer of a connection (None: leave it to the system)."""
    sock = transport.get_extra_info("socket")
    if size is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


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

    def send_now(self, data: bytes) -> bool:
        """Written at once if nothing is buffered before it (then the stream
        is not paused, and ``send`` would not have waited either)."""
        transport = self.writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        self.writer.write(data)
        return True

    def abort(self) -> None:
        """Drop the connection now, discarding what is not yet written."""
        abort_transport(self.writer.transport)

    async def close(self, going_away: bool = False) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            # shielded: a caller cancelled while waiting here must not cancel the
            # stream's own closed future, or a later close() would raise it
            await asyncio.shield(self.writer.wait_closed())
