"""The ops an event carries, as plain tuples (they are the hot path).

Every op starts with its ``OpKind`` and the id of the container it edits. An op
consumes counters of its author: a text insert one per character, a list insert
one per element, anything else one. The op's id is the author's counter at its
start, so the elements an insert creates are named by consecutive ids.

=================  ===========================================================
kind               fields after ``(kind, container)``
=================  ===========================================================
MAP_SET            key, value, pred (ids of the writes it overwrites)
MAP_DELETE         key, pred
LIST_INSERT        origin_left, origin_right, values (tuple)
TEXT_INSERT        origin_left, origin_right, text
SEQ_DELETE         spans: ((replica, counter, length), ...)
LIST_SET           element, value, pred
LIST_MOVE          element, origin_left, origin_right
COUNTER_ADD        delta
SET_ADD            element (a scalar), pred (the element's writes it saw)
SET_REMOVE         element, pred
=================  ===========================================================

Origins are element ids or ``None`` (the start or the end of the sequence).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

Op = tuple[Any, ...]


class OpKind(IntEnum):
    MAP_SET = 1
    MAP_DELETE = 2
    LIST_INSERT = 3
    TEXT_INSERT = 4
    SEQ_DELETE = 5
    LIST_SET = 6
    LIST_MOVE = 7
    COUNTER_ADD = 8
    SET_ADD = 9
    SET_REMOVE = 10


MAP_SET = OpKind.MAP_SET.value
MAP_DELETE = OpKind.MAP_DELETE.value
LIST_INSERT = OpKind.LIST_INSERT.value
TEXT_INSERT = OpKind.TEXT_INSERT.value
SEQ_DELETE = OpKind.SEQ_DELETE.value
LIST_SET = OpKind.LIST_SET.value
LIST_MOVE = OpKind.LIST_MOVE.value
COUNTER_ADD = OpKind.COUNTER_ADD.value
SET_ADD = OpKind.SET_ADD.value
SET_REMOVE = OpKind.SET_REMOVE.value


def op_length(op: Op) -> int:
    """How many counters ``op`` consumes."""
    if len(op) == 5 and (op[0] == TEXT_INSERT or op[0] == LIST_INSERT):
        content = op[4]
        if type(content) is str or type(content) is tuple:
            return len(content)
    return 1  # malformed ops are refused when checked


def ops_length(ops: tuple[Op, ...]) -> int:
    return sum(op_length(op) for op in ops)
