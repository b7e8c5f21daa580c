"""Where events write: each op of an event as ``(what, path)``, for the
server's path-scoped roles and for audit summaries.

A container's path is found from where it was created, which never changes,
so a document's present state answers for any of its events, past ones too
(``gether log``), and a batch not applied yet is placed with the containers
its own events create (``WriteFinder.batch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gether.core.access import Path, _key_of, _places
from gether.core.event import Event
from gether.core.ids import ContainerId
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
)
from gether.core.state import DocState

if TYPE_CHECKING:
    from gether.core.document import Document

OP_NAMES = {
    MAP_SET: "set",
    MAP_DELETE: "delete",
    LIST_INSERT: "insert",
    TEXT_INSERT: "type",
    SEQ_DELETE: "remove",
    LIST_SET: "replace",
    LIST_MOVE: "move",
    COUNTER_ADD: "add",
    SET_ADD: "add",
    SET_REMOVE: "discard",
}
"""A short verb per op kind."""

Write = tuple[str, Path]
Places = dict[ContainerId, tuple[ContainerId, str | None]]


def event_writes(state: DocState, event: Event, places: Places | None = None) -> list[Write]:
    """``(verb, path)`` per op of ``event``. ``places``: containers created by
    events not in ``state`` (this event's own are added); a container placed
    nowhere (its creator not held) is shown at the root."""
    known = places if places is not None else {}
    known.update(_places(event))
    out: list[Write] = []
    for op in event.ops:
        found = state.place_keys(op[1], known)
        path: Path = found[0] if found is not None else ()
        key = _key_of(op)
        out.append((OP_NAMES.get(op[0], "op"), (*path, key) if key is not None else path))
    return out


def batch_writes(state: DocState, events: Sequence[Event]) -> list[list[Write]]:
    """``event_writes`` of each event of a batch in order, placing the
    containers that earlier events of the batch create."""
    places: Places = {}
    return [event_writes(state, event, places) for event in events]


def pointer_of(path: Path) -> str:
    """A JSON pointer, ``-`` standing for a list element."""
    return "/" + "/".join(
        "-" if k is None else k.replace("~", "~0").replace("/", "~1") for k in path
    )


def summarize(writes: Sequence[Write], limit: int = 6) -> str:
    """``set /todos/-/done, type /body`` (repeats counted, at most ``limit``)."""
    if len(writes) == 1:  # a keystroke
        verb, path = writes[0]
        return f"{verb} {pointer_of(path)}"
    counts: dict[str, int] = {}
    for verb, path in writes:
        item = f"{verb} {pointer_of(path)}"
        counts[item] = counts.get(item, 0) + 1
    items = [item if n == 1 else f"{item} x{n}" for item, n in counts.items()]
    more = len(items) - limit
    shown = ", ".join(items[:limit]) if items else "(no ops)"
    return shown + (f", +{more} more" if more > 0 else "")


def describe_events(doc: Document, events: Sequence[Event]) -> list[str]:
    """``summarize`` of each event, placed by ``doc`` (which holds them, or
    their containers' creators)."""
    places: Places = {}
    return [summarize(event_writes(doc._state, event, places)) for event in events]
