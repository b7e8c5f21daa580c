"""Frames: a 4-byte big-endian length, then that many bytes of payload. The
same frames go over TCP streams and inside WebSocket binary messages."""

from __future__ import annotations

from gether.errors import DecodeError, LimitExceededError

HEADER = 4


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


class FrameReader:
    """Cuts a byte stream into payloads. The size limit is checked on the
    header, before any of the payload is buffered."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
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
            if len(self._buffer) < HEADER:
                return None
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
