"""The change values: what each one means, how it applies to plain JSON, how it inverts.

A change is a frozen value. ``apply`` never mutates its argument: it returns a new
value that shares the untouched parts with the old one (treat JSON values as
immutable, or copy them) and copies whatever the change inserts, so that the
result never aliases the change. ``apply`` checks shapes and ranges, not
contents: a change trusts its ``before`` (which is what makes ``invert`` free).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Final, Self, TypeAlias

from gether.errors import (
    DecodeError,
    InvalidPathError,
    InvalidValueError,
    OutOfRangeError,
    TypeMismatchError,
)

Json: TypeAlias = Any
"""Plain JSON: ``dict[str, Json]``, ``list[Json]``, ``str``, ``int``, ``float``, ``bool``,
``None``."""
Key: TypeAlias = str | int
Path: TypeAlias = tuple[Key, ...]
Items: TypeAlias = str | tuple[Json, ...]
"""What a splice removes or inserts: a string, or a tuple of list elements."""


class Missing(Enum):
    """The type of :data:`MISSING`."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""The value of a map key that is absent: ``Replace(MISSING, v)`` creates the key,
``Replace(v, MISSING)`` deletes it (always under a :class:`PathChange` ending at the key)."""


class Change(ABC):
    """The common interface of every change."""

    __slots__ = ()

    @abstractmethod
    def apply(self, value: Json) -> Json:
        """Return ``value`` with this change applied (``value`` is left as it was)."""

    @abstractmethod
    def invert(self) -> Change:
        """The change that undoes this one; it needs no document."""

    def compose(self, other: Change) -> Change:
        """One change equivalent to applying ``self`` and then ``other``."""
        from gether.core.changes.compose import compose

        return compose(self, other)

    def merge(self, other: Change) -> tuple[Change, Change]:
        """Transform two concurrent changes: return ``(other', self')``.

        ``self'.apply(other.apply(x)) == other'.apply(self.apply(x))`` (TP1).
        On a tie ``self`` wins: see the module documentation of ``gether.core.changes``.
        """
        from gether.core.changes.merge import merge

        return merge(self, other)

    def to_json(self) -> Json:
        """A plain JSON form (lists, strings, numbers): see ``gether.core.changes.codec``."""
        from gether.core.changes.codec import encode_change

        return encode_change(self)

    @classmethod
    def from_json(cls, data: Json) -> Self:
        """Decode the form of :meth:`to_json`; raise ``DecodeError`` if it is not one."""
        from gether.core.changes.codec import decode_change

        change = decode_change(data)
        if not isinstance(change, cls):
            raise DecodeError(f"expected a {cls.__name__}, got a {type(change).__name__}")
        return change


@dataclass(frozen=True, slots=True)
class Replace(Change):
    """Replace the whole value ``before`` by ``after``.

    Either side may be :data:`MISSING` (also ``Replace.MISSING``) to create or
    delete a map key.
    """

    before: Json
    after: Json

    MISSING: ClassVar[Missing] = MISSING

    def apply(self, value: Json) -> Json:
        if (value is MISSING) != (self.before is MISSING):
            if value is MISSING:
                raise InvalidPathError("nothing to replace: the key is missing")
            raise InvalidPathError("cannot create a key that exists")
        return copy_json(self.after)

    def invert(self) -> Replace:
        return Replace(self.after, self.before)


@dataclass(frozen=True, slots=True)
class Splice(Change):
    """Replace ``before`` at ``offset`` by ``after`` in a string or a list.

    Offsets count Unicode code points (Python ``str`` indices) in strings and
    elements in lists. ``before`` and ``after`` are both strings (a text
    splice) or both sequences (a list splice, stored as tuples).
    """

    offset: int
    before: str | Sequence[Json]
    after: str | Sequence[Json]

    def __post_init__(self) -> None:
        check_count("offset", self.offset)
        before, after = self.before, self.after
        if isinstance(before, str) and isinstance(after, str):
            return
        if isinstance(before, list | tuple) and isinstance(after, list | tuple):
            object.__setattr__(self, "before", tuple(before))
            object.__setattr__(self, "after", tuple(after))
            return
        raise TypeMismatchError("a splice's before and after are both strings or both lists")

    @property
    def on_text(self) -> bool:
        return isinstance(self.before, str)

    @property
    def end(self) -> int:
        """The offset just past ``before``."""
        return self.offset + len(self.before)

    def apply(self, value: Json) -> Json:
        check_sequence(value, str if self.on_text else list, "splice")
        if self.end > len(value):
            raise OutOfRangeError(f"splice of [{self.offset}, {self.end}) on length {len(value)}")
        if isinstance(self.after, str):
            return value[: self.offset] + self.after + value[self.end :]
        return [*value[: self.offset], *map(copy_json, self.after), *value[self.end :]]

    def invert(self) -> Splice:
        return Splice(self.offset, self.after, self.before)

    def map_index(self, index: int) -> int | None:
        """Where the element at ``index`` is after this splice (``None``: deleted)."""
        if index < self.offset:
            return index
        if index >= self.end:
            return index + len(self.after) - len(self.before)
        return None


@dataclass(frozen=True, slots=True)
class Move(Change):
    """Move the ``count`` items at ``offset`` by ``distance`` in a string or a list.

    ``distance > 0`` moves them right, past the ``distance`` items that follow;
    ``distance < 0`` moves them left, past the ``-distance`` items before.
    So ``Move(1, 2, 1)`` turns ``"abcd"`` into ``"adbc"``, ``Move(2, 2, -1)``
    turns it into ``"acdb"``. A move is the swap of two adjacent ranges
    ``[p, q)`` and ``[q, r)`` (see :meth:`bounds`); which one is "the moved one"
    matters only for where concurrent insertions at ``q`` go (they follow it).
    """

    offset: int
    count: int
    distance: int

    def __post_init__(self) -> None:
        check_count("offset", self.offset)
        check_count("count", self.count)
        check_int("distance", self.distance)
        if self.offset + self.distance < 0:
            raise OutOfRangeError(f"cannot move items at {self.offset} by {self.distance}")

    def bounds(self) -> tuple[int, int, int]:
        """``(p, q, r)``: the move turns ``[p, q) + [q, r)`` into ``[q, r) + [p, q)``."""
        o, c, d = self.offset, self.count, self.distance
        if d >= 0:
            return o, o + c, o + c + d
        return o + d, o, o + c

    def apply(self, value: Json) -> Json:
        check_sequence(value, (str, list), "move")
        p, q, r = self.bounds()
        if r > len(value):
            raise OutOfRangeError(f"move within [{p}, {r}) on length {len(value)}")
        return value[:p] + value[q:r] + value[p:q] + value[r:]

    def invert(self) -> Move:
        return Move(self.offset + self.distance, self.count, -self.distance)

    def map_index(self, index: int) -> int:
        """Where the element at ``index`` is after this move."""
        p, q, r = self.bounds()
        if p <= index < q:
            return index + r - q
        if q <= index < r:
            return index - (q - p)
        return index


@dataclass(frozen=True, slots=True)
class PathChange(Change):
    """Apply ``change`` at ``path``: map keys (``str``) and list indices (``int``).

    ``()`` is the value itself. Every step must exist, except that the last
    key may be missing from its map when ``change`` creates it (see :data:`MISSING`).
    """

    path: Sequence[Key]
    change: Change

    def __post_init__(self) -> None:
        path = tuple(self.path)
        for key in path:
            if not isinstance(key, str):
                check_count("path index", key)
        if not isinstance(self.change, Change):
            raise TypeMismatchError(f"expected a change, got {type(self.change).__name__}")
        object.__setattr__(self, "path", path)

    def apply(self, value: Json) -> Json:
        return _apply_at(value, tuple(self.path), 0, self.change)

    def invert(self) -> PathChange:
        return PathChange(self.path, self.change.invert())


@dataclass(frozen=True, slots=True)
class ChangeSet(Change):
    """Changes applied in order; ``ChangeSet()`` changes nothing."""

    changes: Sequence[Change] = ()

    def __post_init__(self) -> None:
        changes = tuple(self.changes)
        for change in changes:
            if not isinstance(change, Change):
                raise TypeMismatchError(f"expected a change, got {type(change).__name__}")
        object.__setattr__(self, "changes", changes)

    def apply(self, value: Json) -> Json:
        for change in self.changes:
            value = change.apply(value)
        return value

    def invert(self) -> ChangeSet:
        return ChangeSet([change.invert() for change in reversed(self.changes)])


IDENTITY: Final = ChangeSet()


# -- helpers shared by compose, merge and the codec ----------------------------


def is_identity(change: Change) -> bool:
    """Whether ``change`` visibly changes nothing (without looking at a value)."""
    match change:
        case ChangeSet():
            return all(is_identity(c) for c in change.changes)
        case PathChange():
            return is_identity(change.change)
        case Move():
            return change.count == 0 or change.distance == 0
        case Splice():
            return not change.before and not change.after
    return False


def at(path: Path, change: Change) -> Change:
    """``change`` applied at ``path``, without nesting PathChanges or wrapping identities."""
    if is_identity(change):
        return IDENTITY
    if not path:
        return change
    if isinstance(change, PathChange):
        return PathChange(path + tuple(change.path), change.change)
    return PathChange(path, change)


def unwrap(change: Change) -> Change:
    """``change`` without an empty-path PathChange around it."""
    while isinstance(change, PathChange) and not change.path:
        change = change.change
    return change


def flatten(changes: Iterable[Change]) -> list[Change]:
    """The non-identity changes of ``changes``, with ChangeSets spliced in."""
    out: list[Change] = []
    for change in changes:
        change = unwrap(change)
        if isinstance(change, ChangeSet):
            out.extend(flatten(change.changes))
        elif not is_identity(change):
            out.append(change)
    return out


def join(changes: Iterable[Change]) -> Change:
    """One change for ``changes`` in order: the identity, a single change, or a ChangeSet."""
    flat = flatten(changes)
    if not flat:
        return IDENTITY
    return flat[0] if len(flat) == 1 else ChangeSet(flat)


def copy_json(value: Json) -> Json:
    """A copy of the containers of ``value`` (scalars and strings are immutable)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeMismatchError(f"{name} must be an int, got {type(value).__name__}")
    return value


def check_count(name: str, value: object) -> int:
    number = check_int(name, value)
    if number < 0:
        raise OutOfRangeError(f"{name} must not be negative, got {number}")
    return number


def check_sequence(value: Json, kind: type | tuple[type, ...], what: str) -> None:
    if value is MISSING:
        raise InvalidPathError(f"nothing to {what}: the key is missing")
    if not isinstance(value, kind) or isinstance(value, tuple):
        expected = "a string" if kind is str else "a list" if kind is list else "a string or list"
        raise TypeMismatchError(f"a {what} applies to {expected}, not to {kind_name(value)}")


def kind_name(value: Json) -> str:
    match value:
        case dict():
            return "a map"
        case list():
            return "a list"
        case str():
            return "a string"
        case Missing():
            return "a missing key"
    return "a scalar"


def _apply_at(value: Json, path: Path, depth: int, change: Change) -> Json:
    if depth == len(path):
        return change.apply(value)
    key, last = path[depth], depth + 1 == len(path)
    where = "/".join(map(str, path[: depth + 1]))
    if isinstance(value, dict):
        if not isinstance(key, str):
            raise InvalidPathError(f"{where}: a map is indexed by strings, not {key!r}")
        old = value.get(key, MISSING)
        if old is MISSING and not last:
            raise InvalidPathError(f"{where}: no such key")
        new = _apply_at(old, path, depth + 1, change)
        out = dict(value)
        if new is MISSING:
            out.pop(key, None)
        else:
            out[key] = new
        return out
    if isinstance(value, list):
        if not isinstance(key, int):
            raise InvalidPathError(f"{where}: a list is indexed by ints, not {key!r}")
        if key >= len(value):
            raise OutOfRangeError(f"{where}: index {key} of a list of {len(value)}")
        new = _apply_at(value[key], path, depth + 1, change)
        if new is MISSING:
            raise InvalidValueError(f"{where}: a list element cannot be missing; use a Splice")
        out_list = list(value)
        out_list[key] = new
        return out_list
    raise InvalidPathError(f"{where}: {kind_name(value)} has no children")
