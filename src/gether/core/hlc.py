"""Hybrid logical clock: physical milliseconds plus a logical counter in one int.

A stamp is ``millis << 16 | logical``. It never goes backwards, stays close to
wall time, and is larger than every stamp its replica has seen, so a write made
after seeing another always wins last-writer-wins against it. The time source
is passed in: the core never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], int]
"""Returns wall time in milliseconds since the epoch."""

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def stamp(millis: int, logical: int = 0) -> int:
    return (millis << LOGICAL_BITS) | logical


class HybridClock:
    """The HLC state of one replica."""

    __slots__ = ("_clock", "last")

    def __init__(self, clock: Clock | None, last: int = 0) -> None:
        self._clock = clock
        self.last = last

    def tick(self, floor: int = 0) -> int:
        """A new stamp for a local event, greater than ``floor`` and every earlier one."""
        last = self.last + 1
        if floor >= last:
            last = floor + 1
        if self._clock is not None:
            physical = self._clock() << LOGICAL_BITS
            if physical > last:
                last = physical
        self.last = last
        return last

    def observe(self, remote: int) -> None:
        """Remember a stamp seen on a received event."""
        if remote > self.last:
            self.last = remote
