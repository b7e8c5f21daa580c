"""Identifiers and versions: who made what, and which events a replica holds.

An element or op is named by ``(replica, counter)``: every replica numbers the
elements it creates with its own counter, so a run of characters typed in a row
has contiguous ids and can be stored as one entry. An event is named by
``(replica, seq)``, seq counting that replica's events from 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from gether.errors import InvalidValueError

_REPLICA_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

ReplicaId = str
"""A replica's name: 1 to 64 characters of ``[A-Za-z0-9_.:-]``."""

OpId = tuple[str, int]
"""``(replica, counter)``: one element or op."""

ContainerId = tuple[str, int]
"""The op id that created a container, ``ROOT``, or a named container.

A named top-level container is ``("/" + name, kind)``: replica ids cannot start
with ``/``, so the two spaces never collide, and the id is the same on every
replica that asks for the name.
"""

ROOT: ContainerId = ("", 0)


def check_replica_id(replica: object) -> ReplicaId:
    """Return ``replica`` if it is a valid replica id, else raise."""
    if not isinstance(replica, str) or not _REPLICA_RE.fullmatch(replica):
        raise InvalidValueError(
            f"replica id must be 1-64 characters of [A-Za-z0-9_.:-], got {replica!r}"
        )
    return replica


def named_container(name: str, kind: int) -> ContainerId:
    return ("/" + name, int(kind))


EventKey = tuple[str, int]
"""``(replica, seq)`` as the core keeps it: a plain tuple, equal to an EventId."""


class EventId(NamedTuple):
    """``(replica, seq)`` of one event; seq counts from 1 per replica."""

    replica: ReplicaId
    seq: int

    def __str__(self) -> str:
        return f"{self.replica}@{self.seq}"


class Version(Mapping[str, int]):
    """A version vector: for each replica, how many of its events are included.

    Applied event sets are causally closed, so a version vector names such a set
    exactly. Immutable and hashable; replicas with no events are left out so
    that equal sets give equal versions.
    """

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        clean: dict[str, int] = {}
        for replica, seq in items:
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise InvalidValueError(f"version entry for {replica!r} must be a count >= 0")
            if seq:
                clean[check_replica_id(replica)] = seq
        self._entries = dict(sorted(clean.items()))
        self._hash: int | None = None

    def __getitem__(self, replica: str) -> int:
        return self._entries[replica]

    def get(self, replica: str, default: int = 0) -> int:  # type: ignore[override]
        return self._entries.get(replica, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._entries.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Version):
            return self._entries == other._entries
        return NotImplemented

    def __le__(self, other: Version) -> bool:
        """True if every event of ``self`` is in ``other``."""
        return all(other.get(r) >= s for r, s in self._entries.items())

    def includes(self, event: tuple[str, int]) -> bool:
        return self._entries.get(event[0], 0) >= event[1]

    def merged(self, other: Version) -> Version:
        out = dict(self._entries)
        changed = False
        for replica, seq in other._entries.items():
            if seq > out.get(replica, 0):
                out[replica] = seq
                changed = True
        if not changed:
            return self
        return Version.unchecked(out)  # both sides were checked when they were made

    @classmethod
    def unchecked(cls, entries: Mapping[str, int]) -> Version:
        """A version of entries already known valid (ids checked when their
        events were decoded): a sync server builds thousands per second, and
        checking every replica id again was most of its time."""
        version = object.__new__(cls)
        version._entries = dict(sorted((r, s) for r, s in entries.items() if s))
        version._hash = None
        return version

    def to_dict(self) -> dict[str, int]:
        return dict(self._entries)

    def __str__(self) -> str:
        """The text form ``alice@3,bob@5`` (``@`` is never in a replica id)."""
        return ",".join(f"{replica}@{seq}" for replica, seq in self._entries.items())

    @classmethod
    def parse(cls, text: str) -> Version:
        """The version written by ``str(version)``; the empty string is the empty version."""
        entries: list[tuple[str, int]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            replica, at, seq = part.rpartition("@")
            if not at or not seq.isdigit():
                raise InvalidValueError(f"{part!r} is not replica@count")
            entries.append((replica, int(seq)))
        return cls(entries)

    def __repr__(self) -> str:
        return f"Version({self._entries!r})"
