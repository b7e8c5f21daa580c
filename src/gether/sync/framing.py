"""Frames: a length header, then that many bytes of payload. The header is a
4-byte big-endian length, or (protocol 4) one byte ``0x80 | length`` for a
payload under 128 bytes: a keystroke and an acknowledgement save 3 bytes
each. A 4-byte length never starts with that bit (frames are far below
2 GiB), so the first byte tells the two apart; both sides use and accept
the short one only once the hellos chose protocol 4 (before, such a byte is
an oversized length). The same frames go over TCP streams and inside WebSocket binary
messages."""

from __future__ import annotations

from gether.errors import DecodeError, LimitExceededError

HEADER = 4
SHORT = 0x80
"""A first byte with this bit is a one-byte header: the length is its low 7 bits."""


def frame(payload: bytes, short: bool = False) -> bytes:
    """``payload`` framed; ``short``: the peer reads one-byte headers (protocol 4)."""
    size = len(payload)
    if short and size < SHORT:
        return bytes((SHORT | size,)) + payload
    return size.to_bytes(HEADER, "big") + payload


class FrameReader:
    """Cuts a byte stream into payloads. The size limit is checked on the
    header, before any of the payload is buffered."""

    def __init__(self, max_size: int, short: bool = False) -> None:
        self.max_size = max_size
        self.short = short
        """One-byte headers are read (protocol 4)."""
        self._buffer = bytearray()
        self._expected: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Every whole payload ``data`` completes (with the limit as it is now)."""
        self.push(data)
        out: list[bytes] = []
        while (payload := self.next()) is not None:
            out.append(payload)
        return out

    def push(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> bytes | None:
        """The next whole payload, or None. One at a time, so that a limit
        changed by one message (a hello) applies to the frames after it."""
        if self._expected is None:
            if not self._buffer:
                return None
            first = self._buffer[0]
            if first & SHORT and self.short:
                size = first & ~SHORT
                del self._buffer[:1]
            elif len(self._buffer) < HEADER:
                return None
            else:
                size = int.from_bytes(self._buffer[:HEADER], "big")
                del self._buffer[:HEADER]
            if size > self.max_size:
                self._buffer.clear()
                raise LimitExceededError(f"a frame of {size} bytes (limit {self.max_size})")
            if size == 0:
                raise DecodeError("an empty frame")
            self._expected = size
        if len(self._buffer) < self._expected:
            return None
        payload = bytes(self._buffer[: self._expected])
        del self._buffer[: self._expected]
        self._expected = None
        return payload

    @property
    def buffered(self) -> int:
        return len(self._buffer)
