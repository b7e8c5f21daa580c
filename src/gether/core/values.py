"""What a document can store, checked before anything changes.

Scalars are JSON's, restricted so that every replica encodes, compares and
renders them the same way: integers fit a signed 64-bit word, floats are
finite, strings are valid Unicode (no lone surrogates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from gether.errors import InvalidValueError

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
MAX_DEPTH = 64

Scalar = None | bool | int | float | str


class Kind(IntEnum):
    """The container types; the numbers travel on the wire."""

    MAP = 1
    LIST = 2
    TEXT = 3
    COUNTER = 4
    SET = 5  # OR-set: add wins over a concurrent remove
    GSET = 6  # grow-only: nothing is ever removed
    TWO_PHASE_SET = 7  # a removed element is removed for good
    LWW_SET = 8  # the latest add or remove of an element wins


SET_KINDS = frozenset({Kind.SET, Kind.GSET, Kind.TWO_PHASE_SET, Kind.LWW_SET})


@dataclass(frozen=True, slots=True)
class NewContainer:
    """An op value that creates a container; its id is the id of that op."""

    kind: Kind


@dataclass(frozen=True, slots=True)
class NamedRef:
    """An op value that points at a named top-level container."""

    name: str
    kind: Kind


OpValue = Scalar | NewContainer | NamedRef


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidValueError(f"expected a string, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValueError("string contains a lone surrogate") from exc
    return text


def check_int(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise InvalidValueError(f"integer {value} does not fit in 64 bits")
    return value


def check_scalar(value: object) -> Scalar:
    """Return ``value`` if it is a storable scalar, else raise InvalidValueError."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return check_int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValueError(f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        return check_text(value)
    raise InvalidValueError(f"cannot store a {type(value).__name__}")


def element_key(value: Scalar) -> tuple[int, Scalar]:
    """How a set tells its elements apart: by JSON type and value, so that
    ``1``, ``1.0`` and ``True`` (equal in Python) stay three elements."""
    if value is None:
        return (0, None)
    if value is True or value is False:
        return (1, value)
    if type(value) is int:
        return (2, value)
    if type(value) is float:
        return (3, value)
    return (4, value)


def set_order(key: tuple[int, Scalar]) -> tuple[int, float | int | str, int]:
    """The order a set renders in: null, booleans, numbers, strings."""
    rank, value = key
    if rank == 0:
        return (0, 0, 0)
    if rank in (2, 3):
        return (2, value, rank)  # type: ignore[return-value]
    return (rank, value, 0)  # type: ignore[return-value]


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidValueError(f"map keys are strings, got {type(key).__name__}")
    return check_text(key)
