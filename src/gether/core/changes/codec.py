"""Changes as plain JSON, for the wire: a list that starts with the change's tag.

::

    Replace     [1, missing, before, after]   missing: bit 1 before, bit 2 after
                                              (a missing side is written null)
    Splice      [2, offset, before, after]    strings, or lists of values
    Move        [3, offset, count, distance]
    PathChange  [4, [key or index, ...], change]
    ChangeSet   [5, [change, ...]]

Decoding is strict: a form that is not exactly one of these, a value Gether
cannot store (NaN, a lone surrogate, an integer past 64 bits...) or nesting
deeper than ``MAX_DEPTH`` raises ``DecodeError``.
"""

from __future__ import annotations

from enum import IntEnum

from gether.core.changes.model import (
    MISSING,
    Change,
    ChangeSet,
    Json,
    Move,
    PathChange,
    Replace,
    Splice,
)
from gether.core.values import MAX_DEPTH, check_key, check_scalar
from gether.errors import DecodeError, UsageError


class Tag(IntEnum):
    """The first element of an encoded change."""

    REPLACE = 1
    SPLICE = 2
    MOVE = 3
    PATH = 4
    SET = 5


def encode_change(change: Change) -> Json:
    """The plain JSON form of ``change`` (it shares the values the change holds)."""
    match change:
        case Replace(before, after):
            missing = (before is MISSING) | (after is MISSING) << 1
            return [
                int(Tag.REPLACE),
                missing,
                None if before is MISSING else before,
                None if after is MISSING else after,
            ]
        case Splice(offset, before, after):
            text = isinstance(before, str)
            return [int(Tag.SPLICE), offset, before if text else list(before), _items(after)]
        case Move(offset, count, distance):
            return [int(Tag.MOVE), offset, count, distance]
        case PathChange(path, inner):
            return [int(Tag.PATH), list(path), encode_change(inner)]
        case ChangeSet(changes):
            return [int(Tag.SET), [encode_change(c) for c in changes]]
    raise TypeError(f"not a change: {change!r}")  # pragma: no cover


def _items(items: object) -> Json:
    return items if isinstance(items, str) else list(items)  # type: ignore[call-overload]


def decode_change(data: Json, depth: int = 0) -> Change:
    """The change whose plain JSON form is ``data``."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"changes nested deeper than {MAX_DEPTH}")
    if not isinstance(data, list) or not data or type(data[0]) is not int:
        raise DecodeError(f"a change is a list that starts with its tag, not {data!r:.60}")
    sizes = {Tag.REPLACE: 4, Tag.SPLICE: 4, Tag.MOVE: 4, Tag.PATH: 3, Tag.SET: 2}
    try:
        tag = Tag(data[0])
    except ValueError:
        raise DecodeError(f"unknown change tag {data[0]}") from None
    if len(data) != sizes[tag]:
        raise DecodeError(f"a {tag.name} change has {sizes[tag]} elements, not {len(data)}")
    try:
        return _decode(tag, data, depth)
    except UsageError as exc:
        raise DecodeError(f"invalid {tag.name} change: {exc}") from exc


def _decode(tag: Tag, data: list[Json], depth: int) -> Change:
    match tag:
        case Tag.REPLACE:
            missing = data[1]
            if type(missing) is not int or not 0 <= missing <= 3:
                raise DecodeError(f"bad missing mask {missing!r}")
            sides = []
            for bit, value in ((1, data[2]), (2, data[3])):
                if missing & bit:
                    if value is not None:
                        raise DecodeError("a missing side must be written null")
                    sides.append(MISSING)
                else:
                    sides.append(_value(value, depth))
            return Replace(*sides)
        case Tag.SPLICE:
            before, after = data[2], data[3]
            if isinstance(before, str) != isinstance(after, str):
                raise DecodeError("a splice's before and after are both strings or both lists")
            if not isinstance(before, str | list) or not isinstance(after, str | list):
                raise DecodeError("a splice holds strings or lists")
            return Splice(_int(data[1]), _value(before, depth), _value(after, depth))
        case Tag.MOVE:
            return Move(_int(data[1]), _int(data[2]), _int(data[3]))
        case Tag.PATH:
            path = data[1]
            if not isinstance(path, list) or len(path) > MAX_DEPTH:
                raise DecodeError("a path is a list of at most MAX_DEPTH keys")
            keys = [check_key(key) if isinstance(key, str) else _int(key) for key in path]
            return PathChange(keys, decode_change(data[2], depth + 1))
        case Tag.SET:
            if not isinstance(data[1], list):
                raise DecodeError("a change set holds a list of changes")
            return ChangeSet([decode_change(c, depth + 1) for c in data[1]])
    raise AssertionError(tag)  # pragma: no cover


def _int(value: Json) -> int:
    if type(value) is not int:
        raise DecodeError(f"expected an integer, got {value!r:.40}")
    return value


def _value(value: Json, depth: int) -> Json:
    """``value`` if Gether can store it (checked all the way down)."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"a value nested deeper than {MAX_DEPTH}")
    if isinstance(value, list):
        for item in value:
            _value(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_key(key)
            _value(item, depth + 1)
    else:
        check_scalar(value)
    return value
