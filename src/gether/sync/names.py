"""The replica ids one side of a connection has put in the string tables of
its batches: the terms of a *name reference* (protocol 3, docs/protocol.md,
"Name tables").

A batch names its replicas in a table at its head. A keystroke's batch names
one, its author, and spelling it out was a third of the keystroke's bytes;
from protocol 3 a batch made for one connection may name a replica the
sender already named on it by its place in that connection's list (one
byte), and names a new one in full, which adds it to the list. Both sides
add the same names in the same order (a name not yet listed, while the list
holds fewer than ``MAX_NAMES``), as they send or read each table, so the
places agree without any message about them. Batches made once for many
receivers (a server's fan-out) keep the plain table and change no list.
"""

from __future__ import annotations

MAX_NAMES = 4096
"""Names listed per connection and direction (a replica named after that is
spelled out each time)."""


class SentNames:
    """The names this side listed, with their places (to name them so)."""

    __slots__ = ("_places",)

    def __init__(self) -> None:
        self._places: dict[str, int] = {}

    def place(self, name: str) -> int | None:
        return self._places.get(name)

    def add(self, name: str) -> None:
        places = self._places
        if len(places) < MAX_NAMES and name not in places:
            places[name] = len(places)


class ReceivedNames:
    """The names the other side listed, by place (to resolve its references)."""

    __slots__ = ("_listed", "_names")

    def __init__(self) -> None:
        self._names: list[str] = []
        self._listed: set[str] = set()

    def at(self, place: int) -> str | None:
        return self._names[place] if 0 <= place < len(self._names) else None

    def add(self, name: str) -> None:
        if len(self._names) < MAX_NAMES and name not in self._listed:
            self._names.append(name)
            self._listed.add(name)
