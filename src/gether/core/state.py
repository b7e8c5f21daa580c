"""The integrated state of a document: its containers, how ops change them,
and which ops are acceptable.

Ops from other replicas are checked in full (``check``) before any of them is
applied (``apply``), so a rejected event changes nothing. A reference to an
element or a container counts only if it lies in the event's own causal past
(or earlier in the same event): whether an event is accepted must not depend
on what else the receiver happens to hold.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Any

from gether.core.containers import (
    CONTAINER_TYPES,
    DELETED,
    Container,
    CounterState,
    Element,
    ListState,
    MapState,
    Register,
    SetState,
    TextState,
    Write,
)
from gether.core.ids import ROOT, ContainerId, OpId, named_container
from gether.core.ops import (
    COUNTER_ADD,
    LIST_INSERT,
    LIST_MOVE,
    LIST_SET,
    MAP_DELETE,
    MAP_SET,
    SEQ_DELETE,
    SET_ADD,
    SET_REMOVE,
    TEXT_INSERT,
    Op,
    op_length,
)
from gether.core.policy import named_place
from gether.core.sealed import Encrypted, is_sealed
from gether.core.values import (
    INT_MAX,
    INT_MIN,
    SET_KINDS,
    Kind,
    NamedRef,
    NewContainer,
    check_key,
    check_scalar,
    check_text,
    element_key,
)
from gether.errors import GetherError, InvalidEventError

MergeFunction = Callable[[list[Any]], Any]
"""A custom merge: concurrent scalar values (in last-writer order) -> one value."""

_OP_SIZES = {
    MAP_SET: 5,
    MAP_DELETE: 4,
    LIST_INSERT: 5,
    TEXT_INSERT: 5,
    SEQ_DELETE: 3,
    LIST_SET: 5,
    LIST_MOVE: 5,
    COUNTER_ADD: 3,
    SET_ADD: 4,
    SET_REMOVE: 4,
}
_OP_CONTAINER_KIND = {
    MAP_SET: Kind.MAP,
    MAP_DELETE: Kind.MAP,
    LIST_INSERT: Kind.LIST,
    TEXT_INSERT: Kind.TEXT,
    LIST_SET: Kind.LIST,
    LIST_MOVE: Kind.LIST,
    COUNTER_ADD: Kind.COUNTER,
}


class OpContext:
    """What ``check`` needs to know about the event whose ops it judges."""

    __slots__ = ("author", "counter", "created", "in_past", "new_containers")

    def __init__(self, author: str, counter: int, in_past: Callable[[str, int], bool]) -> None:
        self.author = author
        self.counter = counter
        self.in_past = in_past
        # per container: starts and ends of the id ranges this event made so
        # far, in counter order (ops consume counters in order)
        self.created: dict[ContainerId, tuple[list[int], list[int]]] = {}
        self.new_containers: dict[ContainerId, Kind] = {}

    def made(self, container_id: ContainerId, start: int, end: int) -> None:
        ranges = self.created.get(container_id)
        if ranges is None:
            ranges = self.created[container_id] = ([], [])
        ranges[0].append(start)
        ranges[1].append(end)

    def made_here(self, container_id: ContainerId, start: int, end: int) -> bool:
        """Did an earlier op of this event make every id in ``[start, end)``?"""
        ranges = self.created.get(container_id)
        if ranges is None:
            return False
        starts, ends = ranges
        i = bisect_right(starts, start) - 1
        while start < end:  # the span may cross several ops' ranges
            if i < 0 or i >= len(starts) or not starts[i] <= start < ends[i]:
                return False
            start = ends[i]
            i += 1
        return True

    def before(self, replica: str, counter: int) -> bool:
        """Was ``(replica, counter)`` made by an event in this event's causal past?"""
        if replica == self.author:
            return counter < self.counter
        return self.in_past(replica, counter)


def _bad(message: str) -> InvalidEventError:
    return InvalidEventError(message)


class DocState:
    """All containers of one document; the root is a map."""

    __slots__ = ("_named_kinds", "containers", "merge_for", "parents")

    def __init__(self) -> None:
        self.containers: dict[ContainerId, Container] = {ROOT: MapState(ROOT)}
        # named container ids already checked: their kind is in the id
        self._named_kinds: dict[ContainerId, Kind] = {}
        # where each container was created: (map, key) or (list, None); a
        # container never moves to another parent, so this is where its schema
        # and merge policies come from
        self.parents: dict[ContainerId, tuple[ContainerId, str | None]] = {}
        # the custom merge of a map key, if any (set by the document's schema)
        self.merge_for: Callable[[ContainerId, str], MergeFunction | None] | None = None

    # -- containers ----------------------------------------------------------

    def named(self, name: str, kind: Kind) -> Container:
        container_id = named_container(name, kind)
        found = self.containers.get(container_id)
        if found is None:
            found = self.containers[container_id] = CONTAINER_TYPES[kind](container_id)
        return found

    def _create(self, value: Any, op_id: OpId, parent: ContainerId, key: str | None) -> None:
        if type(value) is NewContainer:
            self.containers[op_id] = CONTAINER_TYPES[value.kind](op_id)
            self.parents[op_id] = (parent, key)
        elif type(value) is NamedRef:
            self.named(value.name, value.kind)  # placed by its name (parent_of)

    def resolve(self, write: Write) -> Container | Any:
        """The value of a write: a scalar, or the container it holds."""
        value = write[3]
        if type(value) is NewContainer:
            return self.containers[(write[1], write[2])]
        if type(value) is NamedRef:
            return self.named(value.name, value.kind)
        return value

    # -- applying ops (already checked, or made locally) ----------------------

    def apply(self, op: Op, author: str, counter: int, hlc: int) -> None:
        kind = op[0]
        container: Any = self.containers.get(op[1])
        if container is None:  # a named container seen for the first time
            container = self.named(op[1][0][1:], Kind(op[1][1]))
        if kind == TEXT_INSERT:
            container.seq.integrate(author, counter, len(op[4]), op[4], op[2], op[3])
        elif kind == SEQ_DELETE:
            if type(container) is TextState:
                for replica, start, length in op[2]:
                    container.seq.delete_span(replica, start, length)
            else:
                for replica, start, length in op[2]:
                    for c in range(start, start + length):
                        self._delete_element(container, (replica, c))
        elif kind in (MAP_SET, MAP_DELETE):
            value = op[3] if kind == MAP_SET else DELETED
            register = container.entries.get(op[2])
            if register is None:
                register = container.entries[op[2]] = Register()
            self._create(value, (author, counter), op[1], op[2])
            register.apply((hlc, author, counter, value), op[-1])
        elif kind == LIST_INSERT:
            values = op[4]
            container.seq.integrate(author, counter, len(values), None, op[2], op[3])
            self._add_elements(container, author, counter, values, hlc)
        elif kind == LIST_SET:
            element = container.elements[op[2]]
            self._create(op[3], (author, counter), op[1], None)
            element.register.apply((hlc, author, counter, op[3]), op[4])
        elif kind == LIST_MOVE:
            self._move(container, op[2], author, counter, hlc, op[3], op[4])
        elif kind == COUNTER_ADD:
            container.value += op[2]
        elif kind == SET_ADD:
            container.register(op[2]).apply((hlc, author, counter, True), op[3])
        elif kind == SET_REMOVE:
            container.register(op[2]).apply((hlc, author, counter, DELETED), op[3])
            if container.kind is Kind.TWO_PHASE_SET:
                container.removed.add(element_key(op[2]))

    def _add_elements(
        self, container: ListState, author: str, counter: int, values: tuple[Any, ...], hlc: int
    ) -> None:
        for i, value in enumerate(values):
            op_id = (author, counter + i)
            element = Element(op_id, (hlc, author, counter + i))
            element.register.writes.append((hlc, author, counter + i, value))
            container.elements[op_id] = element
            self._create(value, op_id, container.id, None)

    def _delete_element(self, container: ListState, element_id: OpId) -> None:
        element = container.elements[element_id]
        if element.deleted:
            return
        element.deleted = True
        container.seq.delete_span(element.slot[0], element.slot[1], 1)

    def _move(
        self,
        container: ListState,
        element_id: OpId,
        author: str,
        counter: int,
        hlc: int,
        left: OpId | None,
        right: OpId | None,
    ) -> None:
        element = container.elements[element_id]
        stamp = (hlc, author, counter)
        wins = not element.deleted and stamp > element.slot_stamp
        container.seq.integrate(author, counter, 1, element_id, left, right, deleted=not wins)
        if wins:
            old = element.slot
            container.seq.delete_span(old[0], old[1], 1)
            element.slot = (author, counter)
            element.slot_stamp = stamp

    # -- local edits: compute the op, apply it, return it ----------------------

    def local_text_insert(
        self, text: TextState, pos: int, author: str, counter: int, content: str
    ) -> Op:
        left, right = text.seq.local_insert(pos, author, counter, len(content), content)
        return (TEXT_INSERT, text.id, left, right, content)

    def local_list_insert(
        self, lst: ListState, pos: int, author: str, counter: int, values: tuple[Any, ...], hlc: int
    ) -> Op:
        left, right = lst.seq.local_insert(pos, author, counter, len(values), None)
        self._add_elements(lst, author, counter, values, hlc)
        return (LIST_INSERT, lst.id, left, right, values)

    def local_list_move(
        self, lst: ListState, src: int, dst: int, author: str, counter: int, hlc: int
    ) -> Op:
        element_id = lst.element_at(src)
        element = lst.elements[element_id]
        old = element.slot
        lst.seq.delete_span(old[0], old[1], 1)
        left, right = lst.seq.local_insert(dst, author, counter, 1, element_id)
        element.slot = (author, counter)
        element.slot_stamp = (hlc, author, counter)
        return (LIST_MOVE, lst.id, element_id, left, right)

    # -- checking ops from elsewhere ---------------------------------------------

    def check(self, op: Any, ctx: OpContext, counter: int) -> None:
        """Raise InvalidEventError unless ``op`` (at ``counter``) is acceptable."""
        try:
            self._check(op, ctx, counter)
        except InvalidEventError:
            raise
        except GetherError as exc:
            raise _bad(f"op {op[0] if op else '?'}: {exc}") from exc
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise _bad(f"malformed op: {exc!r}") from exc

    def _check(self, op: Any, ctx: OpContext, counter: int) -> None:
        if type(op) is not tuple or not op or _OP_SIZES.get(op[0]) != len(op):
            raise _bad("malformed op")
        kind = op[0]
        container_id = op[1]
        container_kind = self._named_kinds.get(container_id)
        if container_kind is None:
            container_kind = self._container_kind(_check_id(container_id), ctx)
        if kind == TEXT_INSERT and container_kind is Kind.TEXT:
            # the bulk of any text history: checked here without the general path
            text = op[4]
            if not (type(text) is str and text and text.isascii()) and not check_text(text):
                raise _bad("empty insert")
            self._check_origin(container_id, op[2], ctx)
            self._check_origin(container_id, op[3], ctx)
            ctx.made(container_id, counter, counter + len(text))
            return
        expected = _OP_CONTAINER_KIND.get(kind)
        if kind == SEQ_DELETE:
            if container_kind not in (Kind.TEXT, Kind.LIST):
                raise _bad("delete on a container that is not a sequence")
        elif kind in (SET_ADD, SET_REMOVE):
            if container_kind not in SET_KINDS:
                raise _bad(f"op {kind} does not apply to a {container_kind.name.lower()}")
        elif container_kind is not expected:
            raise _bad(f"op {kind} does not apply to a {container_kind.name.lower()}")
        if kind == MAP_SET:
            check_key(op[2])
            if type(op[3]) is bytes:  # an encrypted field's value (core/sealed.py)
                if not is_sealed(op[3]):
                    raise _bad("malformed encrypted value")
            else:
                self._check_value(op[3], ctx, counter)
            _check_pred(op[4])
        elif kind == MAP_DELETE:
            check_key(op[2])
            _check_pred(op[3])
        elif kind == TEXT_INSERT:
            if not check_text(op[4]):
                raise _bad("empty insert")
            self._check_origins(container_id, op, ctx)
            ctx.made(container_id, counter, counter + len(op[4]))
        elif kind == LIST_INSERT:
            values = op[4]
            if type(values) is not tuple or not values:
                raise _bad("list insert needs a non-empty tuple of values")
            for i, value in enumerate(values):
                self._check_value(value, ctx, counter + i)
            self._check_origins(container_id, op, ctx)
            ctx.made(container_id, counter, counter + len(values))
        elif kind == SEQ_DELETE:
            spans = op[2]
            if type(spans) is not tuple or not spans:
                raise _bad("delete needs a non-empty tuple of spans")
            for span in spans:
                if type(span) is not tuple or len(span) != 3:
                    raise _bad("malformed span")
                replica, start, length = span
                _check_id((replica, start))
                if type(length) is not int or not 0 < length <= INT_MAX:
                    raise _bad("malformed span length")
                self._check_elements(container_id, replica, start, length, ctx)
        elif kind == LIST_SET:
            self._check_elements(container_id, *_check_id(op[2]), 1, ctx)
            self._check_value(op[3], ctx, counter)
            _check_pred(op[4])
        elif kind == LIST_MOVE:
            self._check_elements(container_id, *_check_id(op[2]), 1, ctx)
            self._check_origins(container_id, op, ctx)
            ctx.made(container_id, counter, counter + 1)
        elif kind == COUNTER_ADD:
            delta = op[2]
            if type(delta) is not int or not INT_MIN <= delta <= INT_MAX:
                raise _bad("counter delta must be a 64-bit integer")
        elif kind in (SET_ADD, SET_REMOVE):
            if kind == SET_REMOVE and container_kind is Kind.GSET:
                raise _bad("nothing is ever removed from a grow-only set")
            check_scalar(op[2])
            _check_pred(op[3])

    def _container_kind(self, container_id: ContainerId, ctx: OpContext) -> Kind:
        name, number = container_id
        if name.startswith("/"):
            check_text(name)
            try:
                kind = self._named_kinds[container_id] = Kind(number)
            except ValueError:
                raise _bad("unknown container kind") from None
            return kind
        if container_id == ROOT:
            return Kind.MAP
        if container_id in ctx.new_containers:
            return ctx.new_containers[container_id]
        container = self.containers.get(container_id)
        if container is None or not ctx.before(name, number):
            raise _bad(f"unknown container {container_id}")
        return container.kind

    def _check_value(self, value: Any, ctx: OpContext, counter: int) -> None:
        kind = type(value)
        if kind is NewContainer:
            ctx.new_containers[(ctx.author, counter)] = value.kind
        elif kind is NamedRef:
            check_text(value.name)
        else:
            check_scalar(value)

    def _check_origins(self, container_id: ContainerId, op: Op, ctx: OpContext) -> None:
        for origin in (op[2], op[3]) if op[0] != LIST_MOVE else (op[3], op[4]):
            self._check_origin(container_id, origin, ctx)

    def _check_origin(self, container_id: ContainerId, origin: Any, ctx: OpContext) -> None:
        """``_check_elements`` of one sequence slot, for the common case."""
        if origin is None:
            return
        replica, counter = _check_id(origin)
        if replica == ctx.author:
            if counter >= ctx.counter:
                if not ctx.made_here(container_id, counter, counter + 1):
                    raise _bad("reference to an element this event has not made")
                return
        elif not ctx.in_past(replica, counter):
            raise _bad("reference to an element outside the event's causal past")
        container = self.containers.get(container_id)
        if type(container) is TextState or type(container) is ListState:
            if container.seq.find(origin) is None:
                raise _bad("reference to an unknown element")
        else:
            raise _bad("reference to an element of an unknown container")

    def _check_elements(
        self,
        container_id: ContainerId,
        replica: str,
        start: int,
        length: int,
        ctx: OpContext,
    ) -> None:
        """Every id of the span names an element of the container, made before
        this op in the event's causal past."""
        end = start + length
        if replica == ctx.author and end > ctx.counter:
            first = max(start, ctx.counter)
            if not ctx.made_here(container_id, first, end):
                raise _bad("reference to an element this event has not made")
            end = first
            if start >= end:
                return
        elif not ctx.before(replica, end - 1):
            raise _bad("reference to an element outside the event's causal past")
        container = self.containers.get(container_id)
        if isinstance(container, TextState):
            if not container.seq.contains_span(replica, start, end - start):
                raise _bad("reference to an unknown element")
        elif isinstance(container, ListState):
            elements = container.elements
            if not all((replica, c) in elements for c in range(start, end)):
                raise _bad("reference to an unknown list element")
        else:
            raise _bad("reference to an element of an unknown container")

    # -- reading -----------------------------------------------------------------

    def to_json(self, container: Container | None = None) -> Any:
        if container is None:
            container = self.containers[ROOT]
        if isinstance(container, MapState):
            out: dict[str, Any] = {}
            for key in sorted(container.entries):
                value = self.map_value(container, key)
                if type(value) is bytes:
                    out[key] = Encrypted(value, container.id, key)
                elif value is not DELETED:
                    out[key] = self._json_of(value)
            return out
        if isinstance(container, ListState):
            return [
                self._json_of(self.element_value(container, e)) for e in container.element_ids()
            ]
        if isinstance(container, TextState):
            return container.to_text()
        if isinstance(container, SetState):
            return container.items()
        return container.value

    def _json_of(self, value: Any) -> Any:
        if isinstance(value, MapState | ListState | TextState | CounterState | SetState):
            return self.to_json(value)
        return value

    def map_value(self, container: MapState, key: str) -> Any:
        """A key's value (scalar or container), or DELETED: the last writer's,
        or what the key's custom merge makes of the concurrent writes."""
        register = container.entries.get(key)
        if register is None:
            return DELETED
        if self.merge_for is not None and len(register.writes) > 1:
            merge = self.merge_for(container.id, key)
            if merge is not None:
                return self._custom(register, merge)
        write = register.winner()
        if write is None or write[3] is DELETED:
            return DELETED
        return self.resolve(write)

    def _custom(self, register: Register, merge: MergeFunction) -> Any:
        values = [w[3] for w in sorted(register.writes, key=_order_key) if w[3] is not DELETED]
        scalars = [v for v in values if type(v) is not NewContainer and type(v) is not NamedRef]
        if not values:
            return DELETED
        if len(scalars) < len(values):
            # containers do not merge by value: the last writer's stands
            write = register.winner()
            assert write is not None
            return DELETED if write[3] is DELETED else self.resolve(write)
        return merge(scalars)

    def concurrent_values(self, register: Register) -> list[Any]:
        """Every value the register holds, the last writer's first (deletes left out)."""
        writes = sorted(register.writes, key=_order_key, reverse=True)
        return [self.resolve(w) for w in writes if w[3] is not DELETED]

    def place_keys(
        self,
        container_id: ContainerId,
        places: Mapping[ContainerId, tuple[ContainerId, str | None]],
    ) -> tuple[tuple[str | None, ...], bool] | None:
        """The keys from the root down to a container (None for a list item),
        from where each container was created (``places``: containers an event
        being judged creates, not in the state yet), and whether the state
        alone placed it (then the answer never changes and may be cached).
        None if it is not placed yet, or is linked inside itself (forged)."""
        keys: list[str | None] = []
        seen: set[ContainerId] = set()
        current = container_id
        placed = True
        while current != ROOT:
            if current in seen or len(seen) > 10_000:
                return None
            seen.add(current)
            place = places.get(current)
            if place is not None:
                placed = False
            else:
                place = self.parent_of(current)
                if place is None:
                    return None
            keys.append(place[1])
            current = place[0]
        keys.reverse()
        return tuple(keys), placed

    def parent_of(self, container_id: ContainerId) -> tuple[ContainerId, str | None] | None:
        """Where a container was created: a named one where its name says
        (whatever writes link it), another where the op that made it wrote it."""
        if container_id[0].startswith("/"):
            return named_place(container_id[0][1:])
        return self.parents.get(container_id)

    def element_value(self, container: ListState, element_id: OpId) -> Any:
        write = container.elements[element_id].register.winner()
        assert write is not None  # an element always holds its first write
        return self.resolve(write)


def _order_key(write: Write) -> tuple[int, str, int]:
    return write[0], write[1], write[2]


def _check_id(value: Any) -> OpId:
    if (
        type(value) is not tuple
        or len(value) != 2
        or type(value[0]) is not str
        or type(value[1]) is not int
        or not 0 <= value[1] <= INT_MAX
    ):
        raise _bad(f"malformed id {value!r}")
    return value


def _check_pred(pred: Any) -> None:
    if type(pred) is not tuple:
        raise _bad("pred must be a tuple of ids")
    for item in pred:
        _check_id(item)


__all__ = ["DocState", "OpContext", "op_length"]
