"""Cumulative acknowledgements of protocol v2 (docs/protocol.md, "Ack v2").

v1 numbers every batch and answers each with the receiver's whole version
vector, which grows with every writer of the document. In v2 the batches of
a document are numbered implicitly, by their order on the connection, so an
``Events`` frame carries nothing particular to one connection (the server can
encode it once for all subscribers), and ``AckV2(doc, n)`` says "the next
``n`` batches you sent me are stored". A refused batch is answered by an
``Error`` for the document instead, in its place in that order.

``Receipts`` is the receiver's side (what it owes), ``Outstanding`` the
sender's (what it waits for). Neither does I/O or reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gether.core.event import Event
from gether.errors import ProtocolViolationError
from gether.sync.messages import Error

ACK_INTERVAL = 1.0
"""Seconds between two acks of one document, unless one can ride on a batch
or a ping asks for it now: with many writers, acks were most of the bytes."""


class Receipts:
    """Batches of one document received, in arrival order, and the acks owed."""

    def __init__(self) -> None:
        self._next = 0
        self._order: deque[int] = deque()
        self._settled: dict[int, Error | None] = {}
        self.unsent = 0
        """Batches stored and not acknowledged on the wire yet."""
        self._last_sent: float | None = None
        self._hurry = 0
        """Batches up to this token are acknowledged as soon as they are stored
        (a ping came after them: its sender waits to see them stored)."""

    def arrived(self) -> int:
        """A new batch; its token for ``settle``."""
        self._next += 1
        self._order.append(self._next)
        return self._next

    def waiting(self) -> int:
        """Batches the owner has not stored or refused yet."""
        return len(self._order)

    def is_waiting(self, token: int) -> bool:
        return token in self._order and token not in self._settled

    def settle(self, token: int, error: Error | None) -> list[int | Error]:
        """Batch ``token`` is stored (``error`` None) or refused. Returns what
        must go out now, in order: an ack count before an error (acks and
        errors answer batches in the order they came), and the error."""
        self._settled[token] = error
        out: list[int | Error] = []
        while self._order and self._order[0] in self._settled:
            refusal = self._settled.pop(self._order.popleft())
            if refusal is None:
                self.unsent += 1
            else:
                if self.unsent:
                    out.append(self.unsent)
                    self.unsent = 0
                out.append(refusal)
        return out

    def hurry(self) -> None:
        """A ping arrived: what came before it is acknowledged once stored."""
        self._hurry = self._next

    def take(self, now: float, force: bool = False) -> int:
        """How many stored batches to acknowledge now (0: not yet)."""
        if not self.unsent:
            return 0
        if self._hurry and (not self._order or self._order[0] > self._hurry):
            force, self._hurry = True, 0
        if not force and self._last_sent is not None and now - self._last_sent < ACK_INTERVAL:
            return 0
        count, self.unsent = self.unsent, 0
        self._last_sent = now
        return count


class Outstanding:
    """Batches of one document sent and not yet acknowledged or refused."""

    def __init__(self) -> None:
        self._sent: deque[tuple[Event, ...]] = deque()

    def __len__(self) -> int:
        return len(self._sent)

    def sent(self, events: Sequence[Event]) -> None:
        self._sent.append(tuple(events))

    def acknowledged(self, count: int) -> list[Event]:
        """The events of the next ``count`` batches, now stored by the peer."""
        if count < 1 or count > len(self._sent):
            raise ProtocolViolationError(f"an ack of {count} batches, {len(self._sent)} sent")
        out: list[Event] = []
        for _ in range(count):
            out.extend(self._sent.popleft())
        return out

    def refused(self) -> tuple[Event, ...] | None:
        """The batch an error for the document answers (None: the error is
        about something else, such as a refused subscription)."""
        return self._sent.popleft() if self._sent else None
