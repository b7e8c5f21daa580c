"""What one side knows the other holds, as a version vector that grows in place.

A connection learns of a few events at a time (a batch received, an
acknowledgement) while the vector has an entry per writer; rebuilding an
immutable ``Version`` per batch made every batch cost as much as there are
writers (with hundreds of them, that was most of a server's time). Here a
batch costs its own size, and the ``Version`` is built only when asked for,
and kept until the next change.
"""

from __future__ import annotations

from collections.abc import Iterable

from gether.core.event import Event
from gether.core.ids import Version


class VersionTracker:
    __slots__ = ("_frozen", "_vector")

    def __init__(self, version: Version | None = None) -> None:
        self._vector: dict[str, int] = version.to_dict() if version is not None else {}
        self._frozen: Version | None = version

    def get(self, replica: str) -> int:
        return self._vector.get(replica, 0)

    def includes(self, event_id: tuple[str, int]) -> bool:
        return self._vector.get(event_id[0], 0) >= event_id[1]

    def add(self, events: Iterable[Event]) -> None:
        """Include these events (ids of decoded events are valid)."""
        vector = self._vector
        changed = False
        for event in events:
            replica, seq = event.id
            if seq > vector.get(replica, 0):
                vector[replica] = seq
                changed = True
        if changed:
            self._frozen = None

    def merge(self, version: Version) -> None:
        """Include everything of ``version``."""
        if version is self._frozen:
            return
        vector = self._vector
        changed = False
        for replica, seq in version.items():
            if seq > vector.get(replica, 0):
                vector[replica] = seq
                changed = True
        if changed:
            self._frozen = None

    def version(self) -> Version:
        if self._frozen is None:
            self._frozen = Version.unchecked(self._vector)
        return self._frozen
