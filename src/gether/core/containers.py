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
from gether.core.values import Kind, Scalar, element_key, set_order


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


class SetState:
    """A set of scalars. Each element has a register of its adds and removes
    (each naming the writes it saw); the kind decides how they combine:

    * ``SET`` (OR-set): present if any write nobody saw is an add, so an add
      wins over a concurrent remove;
    * ``LWW_SET``: the latest of those writes decides;
    * ``TWO_PHASE_SET``: present if added and never removed, whatever the order;
    * ``GSET``: present once added; removes do not exist.
    """

    __slots__ = ("elements", "id", "kind", "removed", "values")

    def __init__(self, container_id: ContainerId, kind: Kind = Kind.SET) -> None:
        self.id = container_id
        self.kind = kind
        self.elements: dict[tuple[int, Scalar], Register] = {}
        self.values: dict[tuple[int, Scalar], Scalar] = {}
        self.removed: set[tuple[int, Scalar]] = set()

    def register(self, value: Scalar) -> Register:
        key = element_key(value)
        register = self.elements.get(key)
        if register is None:
            register = self.elements[key] = Register()
            self.values[key] = value
        return register

    def contains(self, value: Scalar) -> bool:
        return self._present(element_key(value))

    def _present(self, key: tuple[int, Scalar]) -> bool:
        register = self.elements.get(key)
        if register is None or not register.writes:
            return False
        kind = self.kind
        if kind is Kind.SET:
            return any(w[3] is not DELETED for w in register.writes)
        if kind is Kind.LWW_SET:
            winner = register.winner()
            return winner is not None and winner[3] is not DELETED
        return key not in self.removed  # grow-only and two-phase: ever added

    def items(self) -> list[Scalar]:
        """The elements present, in the order every replica renders them."""
        keys = sorted((k for k in self.elements if self._present(k)), key=set_order)
        return [self.values[k] for k in keys]


def _new_set(kind: Kind) -> Callable[[ContainerId], SetState]:
    return lambda container_id: SetState(container_id, kind)


Container = MapState | ListState | TextState | CounterState | SetState

CONTAINER_TYPES: dict[Kind, Callable[[ContainerId], Container]] = {
    Kind.MAP: MapState,
    Kind.LIST: ListState,
    Kind.TEXT: TextState,
    Kind.COUNTER: CounterState,
    Kind.SET: _new_set(Kind.SET),
    Kind.GSET: _new_set(Kind.GSET),
    Kind.TWO_PHASE_SET: _new_set(Kind.TWO_PHASE_SET),
    Kind.LWW_SET: _new_set(Kind.LWW_SET),
}
