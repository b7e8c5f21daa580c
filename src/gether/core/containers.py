"""The state of each container type, as integrated from ops.

A ``Register`` holds the writes to one map key or list element that no later
write has overwritten. Each write names the writes it saw (``pred``), so two
writes are concurrent exactly when neither names the other; last-writer-wins
picks the highest ``(hlc, replica, counter)`` among them, and other policies
can read them all. The result depends only on the set of writes, not on the
order they arrived in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gether.core.ids import ContainerId, OpId
from gether.core.sequence import Sequence
from gether.core.values import Kind


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"


DELETED: Any = _Deleted()
"""The value of a write that deletes a key."""

Write = tuple[int, str, int, Any]
"""``(hlc, replica, counter, value)``; the first three order writes for LWW."""


class Register:
    __slots__ = ("killed", "writes")

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.killed: set[OpId] | None = None

    def apply(self, write: Write, pred: tuple[OpId, ...]) -> None:
        writes = self.writes
        for target in pred:
            for i, old in enumerate(writes):
                if old[1] == target[0] and old[2] == target[1]:
                    del writes[i]
                    break
            else:
                # Not here yet or already overwritten: remember it, so that a
                # write arriving later is dead on arrival, as on every replica.
                if self.killed is None:
                    self.killed = set()
                self.killed.add(target)
        if self.killed is not None and (write[1], write[2]) in self.killed:
            return
        writes.append(write)

    def winner(self) -> Write | None:
        writes = self.writes
        if not writes:
            return None
        if len(writes) == 1:
            return writes[0]
        return max(writes, key=_order)

    def live_ids(self) -> tuple[OpId, ...]:
        """What a new write overwrites: every write now held."""
        return tuple((w[1], w[2]) for w in self.writes)


def _order(write: Write) -> tuple[int, str, int]:
    return write[0], write[1], write[2]


class MapState:
    __slots__ = ("entries", "id")
    kind = Kind.MAP

    def __init__(self, container_id: ContainerId) -> None:
        self.id = container_id
        self.entries: dict[str, Register] = {}


class Element:
    """One list element: its value register and the slot it currently sits in.

    A move inserts a new slot and hands the element to it if its stamp is
    higher than the current slot's, so concurrent moves never duplicate an
    element: the highest stamp wins and the other slots stay empty.
    """

    __slots__ = ("deleted", "register", "slot", "slot_stamp")

    def __init__(self, slot: OpId, stamp: tuple[int, str, int]) -> None:
        self.register = Register()
        self.slot = slot
        self.slot_stamp = stamp
        self.deleted = False


class ListState:
    __slots__ = ("elements", "id", "seq")
    kind = Kind.LIST

    def __init__(self, container_id: ContainerId) -> None:
        self.id = container_id
        self.seq = Sequence(text=False)
        self.elements: dict[OpId, Element] = {}

    def element_at(self, index: int) -> OpId:
        run, offset = self.seq.run_at(index)
        if run.content is None:
            return (run.replica, run.counter + offset)
        element: OpId = run.content
        return element

    def element_ids(self) -> list[OpId]:
        out: list[OpId] = []
        for run in self.seq.visible_runs():
            if run.content is None:
                out.extend((run.replica, run.counter + i) for i in range(run.length))
            else:
                out.append(run.content)
        return out


class TextState:
    """A text. A loaded one keeps its runs encoded until first edited or
    merged: reading it only needs the visible text, which is cheaper to get."""

    __slots__ = ("_decode", "_seq", "_text", "id")
    kind = Kind.TEXT

    def __init__(self, container_id: ContainerId) -> None:
        self.id = container_id
        self._seq: Sequence | None = Sequence(text=True)
        self._decode: Callable[[], Sequence] | None = None
        self._text: Callable[[], str] | None = None

    def defer(self, decode: Callable[[], Sequence], text: Callable[[], str]) -> None:
        self._seq = None
        self._decode = decode
        self._text = text

    @property
    def seq(self) -> Sequence:
        seq = self._seq
        if seq is None:
            assert self._decode is not None
            seq = self._seq = self._decode()
            self._decode = self._text = None
        return seq

    def to_text(self) -> str:
        if self._seq is None and self._text is not None:
            return self._text()
        return self.seq.to_text()

    def __len__(self) -> int:
        if self._seq is None:
            return len(self.to_text())
        return self._seq.visible


class CounterState:
    """A PN-counter. Each delta fits 64 bits; the total is a Python int, since
    concurrent increments may sum past any fixed width."""

    __slots__ = ("id", "value")
    kind = Kind.COUNTER

    def __init__(self, container_id: ContainerId) -> None:
        self.id = container_id
        self.value = 0


Container = MapState | ListState | TextState | CounterState

CONTAINER_TYPES: dict[Kind, type[Container]] = {
    Kind.MAP: MapState,
    Kind.LIST: ListState,
    Kind.TEXT: TextState,
    Kind.COUNTER: CounterState,
}
