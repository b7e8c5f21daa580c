"""What one connection may send a server: a budget of frames and bytes per
second (token buckets, ``Limits.messages_per_second`` and friends). Over it,
that connection alone is closed with ``rate_limited``; the others never wait
for it. Time is passed in (the session's loop clock), so the buckets are
tested without sleeping."""

from __future__ import annotations

from gether.errors import RateLimitedError
from gether.sync.connection import Limits


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (full at the start)."""

    __slots__ = ("_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._last = now

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` if there is that much; False (and nothing spent) if not."""
        if now > self._last:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
            self._last = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


class Budget:
    """A connection's frames and bytes per second."""

    __slots__ = ("_bytes", "_frames")

    def __init__(self, limits: Limits, now: float) -> None:
        self._frames = TokenBucket(limits.messages_per_second, limits.message_burst, now)
        self._bytes = TokenBucket(limits.bytes_per_second, limits.byte_burst, now)

    def spend_bytes(self, count: int, now: float) -> None:
        """Bytes received, before they are decoded; raises ``RateLimitedError``."""
        if not self._bytes.take(count, now):
            bucket = self._bytes
            raise RateLimitedError(
                f"over the byte budget: {bucket.rate:.0f} bytes/s, {bucket.burst:.0f} at once"
            )

    def spend_frames(self, count: int, now: float) -> None:
        """Frames decoded, before they are acted on; raises ``RateLimitedError``."""
        if count and not self._frames.take(count, now):
            bucket = self._frames
            raise RateLimitedError(
                f"over the message budget: {bucket.rate:.0f} frames/s, {bucket.burst:.0f} at once"
            )
