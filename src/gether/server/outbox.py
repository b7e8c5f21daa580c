"""A connection's bounded send queue: a peer that reads too slowly for what
it is sent shows up as a queue past its bound (the session then disconnects
it) instead of as server memory growing without end, and no one waits on it.

Whoever has something to send puts it and pumps: if no send is under way,
that caller sends (the common case costs no extra task); if one is, the
bytes wait behind it and that caller returns at once, and the pumping caller
sends them when its send completes. So a stuck peer holds one caller, never
a growing crowd of them.

The bound is on the bytes queued *behind* the write under way, and one chunk
is always taken into an empty queue: the catch-up of a large document is one
chunk, written while live edits queue behind it; only a peer that falls
``limit`` bytes behind on top of that is too slow. So what one connection
holds is at most one write, one chunk and ``limit`` bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Outbox:
    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        limit: int,
        send_now: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._send = send
        self._send_now = send_now
        self.limit = limit
        self._chunks: list[bytes] = []
        self.queued = 0
        """Bytes waiting behind the write under way."""
        self.writing = 0
        """Bytes of the write under way (handed to the channel, not yet taken)."""
        self.broken = False
        """The channel failed: nothing more is sent, what is put is dropped."""
        self._pumping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def send_now(self, data: bytes) -> bool:
        """Send ``data`` at once, if nothing waits before it and the channel
        takes it without waiting (the common case: no coroutine to run);
        False: ``put`` it and ``pump``."""
        if self._pumping or self._chunks or self._send_now is None:
            return False
        if self.broken:
            return True  # dropped, as ``put`` drops it
        try:
            return self._send_now(data)
        except (ConnectionError, OSError):
            self.broken = True
            return True

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False if it does not fit (the peer is too slow)."""
        if self.broken or not data:
            return True
        if self.queued and self.queued + len(data) > self.limit:
            return False
        self._chunks.append(data)
        self.queued += len(data)
        self._idle.clear()
        return True

    async def pump(self) -> None:
        """Send what is queued, in order, unless a send is under way already
        (its caller sends what is queued behind it)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._chunks and not self.broken:
                chunks, self._chunks = self._chunks, []
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.queued, self.writing = 0, len(data)
                try:
                    await self._send(data)
                except (ConnectionError, OSError):
                    self.broken = True
                finally:
                    self.writing = 0
        finally:
            self._pumping = False
            if self.broken:
                self._chunks, self.queued = [], 0
            if not self._chunks:
                self._idle.set()

    async def drained(self) -> None:
        """Return once everything put so far is sent (or the channel broke)."""
        await self.pump()
        await self._idle.wait()
