"""Live views of containers with Python's own protocols: ``str``-like Text,
MutableSequence List, MutableMapping Map, and Counter.

A proxy holds only its document and container id; every read goes to the
current state and every write becomes an op, so proxies never go stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence, MutableSet
from typing import TYPE_CHECKING, Any, overload

from gether.core.containers import DELETED, CounterState, ListState, MapState, SetState, TextState
from gether.core.ids import ContainerId
from gether.core.values import (
    MAX_DEPTH,
    Kind,
    NewContainer,
    Scalar,
    check_key,
    check_scalar,
    check_text,
)
from gether.errors import (
    GetherError,
    InvalidPathError,
    InvalidValueError,
    OutOfRangeError,
    UsageError,
)

if TYPE_CHECKING:
    from gether.core.document import Document


class Text:
    """An initial value that makes a collaborative text: ``doc["notes"] = Text("hi")``."""

    __slots__ = ("initial",)

    def __init__(self, initial: str = "") -> None:
        self.initial = check_text(initial)

    def __repr__(self) -> str:
        return f"Text({self.initial!r})"


class Counter:
    """An initial value that makes a PN-counter: ``doc["likes"] = Counter()``."""

    __slots__ = ("initial",)

    def __init__(self, initial: int = 0) -> None:
        if type(initial) is not int:
            raise InvalidValueError("a counter starts from an integer")
        self.initial = initial

    def __repr__(self) -> str:
        return f"Counter({self.initial})"


SET_VARIANTS = {
    "or": Kind.SET,
    "g": Kind.GSET,
    "2p": Kind.TWO_PHASE_SET,
    "lww": Kind.LWW_SET,
}


class Set:
    """An initial value that makes a collaborative set of scalars:
    ``doc["tags"] = Set(["a"])``. ``variant``: ``"or"`` (the default: an add
    wins over a concurrent remove), ``"g"`` (grow-only), ``"2p"`` (a removed
    element is removed for good), ``"lww"`` (the latest add or remove wins)."""

    __slots__ = ("initial", "kind")

    def __init__(self, initial: Iterable[Scalar] = (), variant: str = "or") -> None:
        kind = SET_VARIANTS.get(variant)
        if kind is None:
            raise UsageError(f"unknown set variant {variant!r} (or, g, 2p, lww)")
        self.kind = kind
        self.initial = tuple(check_scalar(v) for v in initial)

    def __repr__(self) -> str:
        return f"Set({list(self.initial)!r})"


Nested = tuple[Kind, Any] | None


def check_value(value: Any, depth: int = 0) -> tuple[Any, Nested]:
    """Validate a value to store; return the op value and what to fill in after.

    The whole tree is checked before anything is written, so a bad leaf deep in
    a dict leaves the document untouched.
    """
    if depth > MAX_DEPTH:
        raise InvalidValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Proxy):
        value = value.to_json()
    if isinstance(value, dict):
        for key, item in value.items():
            check_key(key)
            check_value(item, depth + 1)
        return NewContainer(Kind.MAP), (Kind.MAP, value)
    if isinstance(value, list | tuple):
        for item in value:
            check_value(item, depth + 1)
        return NewContainer(Kind.LIST), (Kind.LIST, value)
    if isinstance(value, Text):
        return NewContainer(Kind.TEXT), (Kind.TEXT, value.initial)
    if isinstance(value, Counter):
        return NewContainer(Kind.COUNTER), (Kind.COUNTER, value.initial)
    if isinstance(value, Set):
        return NewContainer(value.kind), (value.kind, value.initial)
    return check_scalar(value), None


class Proxy:
    __slots__ = ("_doc", "_id")
    _kind: Kind

    def __init__(self, doc: Document, container_id: ContainerId) -> None:
        self._doc = doc
        self._id = container_id

    @property
    def container_id(self) -> ContainerId:
        return self._id

    def _state(self) -> Any:
        return self._doc._container(self._id, self._kind)

    def to_json(self) -> Any:
        return self._doc._reveal_json(self._doc._state.to_json(self._state()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"


class TextProxy(Proxy):
    """Collaborative text; positions count Unicode code points."""

    __slots__ = ()
    _kind = Kind.TEXT

    def insert(self, pos: int, text: str) -> None:
        self._doc._text_insert(self._id, pos, text)

    def delete(self, pos: int, count: int = 1) -> None:
        self._doc._seq_delete(self._id, Kind.TEXT, pos, count)

    def splice(self, pos: int, delete: int, insert: str = "") -> None:
        with self._doc.transaction():
            self.delete(pos, delete)
            self.insert(pos, insert)

    def __str__(self) -> str:
        state: TextState = self._state()
        return state.to_text()

    def __len__(self) -> int:
        state: TextState = self._state()
        return len(state)

    def __getitem__(self, index: int | slice) -> str:
        return str(self)[index]

    def __setitem__(self, index: int | slice, text: str) -> None:
        start, stop = _slice_bounds(index, len(self))
        self.splice(start, stop - start, text)

    def __delitem__(self, index: int | slice) -> None:
        start, stop = _slice_bounds(index, len(self))
        self.delete(start, stop - start)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        if isinstance(other, TextProxy):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def __contains__(self, text: str) -> bool:
        return text in str(self)

    def to_json(self) -> str:
        return str(self)


class ListProxy(Proxy, MutableSequence[Any]):
    """A collaborative list of values and containers."""

    __slots__ = ()
    _kind = Kind.LIST

    def __len__(self) -> int:
        state: ListState = self._state()
        return state.seq.visible

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        state: ListState = self._state()
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(state.seq.visible))]
        index = _index(index, state.seq.visible)
        element = state.element_at(index)
        return wrap(self._doc, self._doc._state.element_value(state, element))

    @overload
    def __setitem__(self, index: int, value: Any) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Any) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            start, stop = _slice_bounds(index, len(self))
            with self._doc.transaction():
                if stop > start:
                    self._doc._seq_delete(self._id, Kind.LIST, start, stop - start)
                self._doc._list_insert(self._id, start, list(value))
            return
        self._doc._list_set(self._id, _index(index, len(self)), value)

    def __delitem__(self, index: int | slice) -> None:
        if isinstance(index, slice):
            start, stop = _slice_bounds(index, len(self))
            self._doc._seq_delete(self._id, Kind.LIST, start, stop - start)
            return
        self._doc._seq_delete(self._id, Kind.LIST, _index(index, len(self)), 1)

    def insert(self, index: int, value: Any) -> None:
        length = len(self)
        if index < 0:
            index = max(0, length + index)
        self._doc._list_insert(self._id, min(index, length), [value])

    def extend(self, values: Any) -> None:
        self._doc._list_insert(self._id, len(self), list(values))

    def move(self, src: int, dst: int) -> None:
        """Move an item: the result is as of ``x = l.pop(src); l.insert(dst, x)``,
        but the item keeps its identity, so concurrent edits to it survive."""
        length = len(self)
        self._doc._list_move(self._id, _index(src, length), _index(dst, length))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return bool(self.to_json() == other)
        if isinstance(other, ListProxy):
            return bool(self.to_json() == other.to_json())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)


class MapProxy(Proxy, MutableMapping[str, Any]):
    """A collaborative map from string keys to values and containers."""

    __slots__ = ()
    _kind = Kind.MAP

    def __getitem__(self, key: str) -> Any:
        state: MapState = self._state()
        value = self._doc._state.map_value(state, key)
        if value is DELETED:
            raise KeyError(key)
        if type(value) is bytes:  # an encrypted field (core/sealed.py)
            return self._doc._reveal(self._id, key, value)
        return wrap(self._doc, value)

    def __setitem__(self, key: str, value: Any) -> None:
        self._doc._map_set(self._id, key, value)

    def __delitem__(self, key: str) -> None:
        self._doc._map_delete(self._id, key)

    def __iter__(self) -> Iterator[str]:
        state: MapState = self._state()
        values = self._doc._state
        keys = [k for k in sorted(state.entries) if values.map_value(state, k) is not DELETED]
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return bool(self.to_json() == other)
        if isinstance(other, MapProxy):
            return bool(self.to_json() == other.to_json())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)


class CounterProxy(Proxy):
    """A PN-counter: every replica's increments and decrements all count."""

    __slots__ = ()
    _kind = Kind.COUNTER

    def increment(self, amount: int = 1) -> None:
        self._doc._counter_add(self._id, amount)

    def decrement(self, amount: int = 1) -> None:
        if type(amount) is not int:
            raise InvalidValueError("counters count in integers")
        self._doc._counter_add(self._id, -amount)

    @property
    def value(self) -> int:
        state: CounterState = self._state()
        return state.value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return self.value == other
        if isinstance(other, CounterProxy):
            return self.value == other.value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def to_json(self) -> int:
        return self.value


class SetProxy(Proxy, MutableSet[Scalar]):
    """A collaborative set of scalars (see ``Set`` for the variants); iterates
    in the order every replica renders it."""

    __slots__ = ()
    _kind = Kind.SET

    def _state(self) -> SetState:
        return self._doc._set_state(self._id)

    @property
    def variant(self) -> str:
        """``"or"``, ``"g"``, ``"2p"`` or ``"lww"`` (see ``Set``)."""
        kind = self._state().kind
        return next(name for name, k in SET_VARIANTS.items() if k is kind)

    def add(self, value: Scalar) -> None:
        self._doc._set_add(self._id, value)

    def discard(self, value: Scalar) -> None:
        if value in self:
            self._doc._set_remove(self._id, value)

    def remove(self, value: Scalar) -> None:
        if value not in self:
            raise KeyError(value)
        self._doc._set_remove(self._id, value)

    def __contains__(self, value: object) -> bool:
        try:
            return self._state().contains(check_scalar(value))
        except GetherError:
            return False

    def __iter__(self) -> Iterator[Scalar]:
        return iter(self._state().items())

    def __len__(self) -> int:
        return len(self._state().items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SetProxy):
            return self.to_json() == other.to_json()
        if isinstance(other, set | frozenset | list):
            return set(self._state().items()) == set(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._id)

    def to_json(self) -> list[Scalar]:
        return self._state().items()


_PROXIES: dict[type, type[Proxy]] = {
    SetState: SetProxy,
    MapState: MapProxy,
    ListState: ListProxy,
    TextState: TextProxy,
    CounterState: CounterProxy,
}


def wrap(doc: Document, value: Any) -> Any:
    """A proxy for a container, the value itself for a scalar."""
    proxy = _PROXIES.get(type(value))
    if proxy is None:
        return value
    return proxy(doc, value.id)


def plain(value: Any) -> Any:
    return value.to_json() if isinstance(value, Proxy) else value


def split_path(path: str | tuple[str | int, ...] | list[str | int]) -> tuple[str | int, ...]:
    if isinstance(path, str):
        return tuple(part for part in path.split("/") if part != "")
    if isinstance(path, tuple | list):
        return tuple(path)
    raise UsageError(f"a path is a string or a tuple, got {type(path).__name__}")


def path_error(parts: tuple[str | int, ...], why: str) -> InvalidPathError:
    return InvalidPathError("/".join(str(p) for p in parts) + ": " + why)


def resolve_path(doc: Document, parts: tuple[str | int, ...]) -> Any:
    """Walk a path from the root; raise InvalidPathError where it leads nowhere."""
    current: Any = doc.root()
    for depth, part in enumerate(parts):
        try:
            if isinstance(current, MapProxy):
                current = current[str(part)]
            elif isinstance(current, ListProxy):
                current = current[int(part)]
            elif isinstance(current, TextProxy):
                current = str(current)[int(part)]
            else:
                raise path_error(parts[: depth + 1], "leads into a scalar")
        except (KeyError, IndexError, ValueError) as exc:
            if isinstance(exc, InvalidPathError):
                raise
            raise path_error(parts[: depth + 1], "does not exist") from exc
    return current


def _index(index: int, length: int) -> int:
    if not isinstance(index, int):
        raise UsageError(f"list indices are integers, got {type(index).__name__}")
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise OutOfRangeError(f"index {index} outside list of length {length}")
    return index


def _slice_bounds(index: int | slice, length: int) -> tuple[int, int]:
    if isinstance(index, slice):
        start, stop, step = index.indices(length)
        if step != 1:
            raise UsageError("only contiguous slices can be assigned")
        return start, max(start, stop)
    index = _index(index, length)
    return index, index + 1
