"""The event graph of one document: what has been applied, what waits, and
the causal questions the rest of the core asks about it.

Applied events form a causally closed set, kept as one chain per replica
(``chains[r][seq - 1]``). Events that arrive early wait in ``staged`` until
they are authenticated and their parents are applied; then the document
checks and applies them in causal order.

Authentication follows each author's hash chain (see ``event.py``): a staged
event is trusted when its own signature verifies, or when the next event of
its author is trusted and names it by its hash.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gether.core.event import Event
from gether.core.ids import EventKey, Version
from gether.core.keys import check_public_key, key_id_of, verify
from gether.errors import (
    EquivocationError,
    GetherError,
    HashMismatchError,
    InvalidEventError,
    InvalidKeyError,
    SignatureError,
)

Vector = Mapping[str, int]
Entry = tuple[int, dict[str, int]]
"""A causal past as the log keeps it: ``(at, exceptions)`` (see ``Past``)."""
_EMPTY: dict[str, int] = {}


def _at(entry: Entry) -> int:
    return entry[0]


class Past(Mapping[str, int]):
    """An event's causal past as a version vector: per replica, how many of
    its events are in it. Kept as "the first ``at`` events the log applied,
    but for a few replicas ``exceptions`` says how many" (fewer: events it
    had not seen; or more: its author's own, applied after ``at``), because
    a new event has seen nearly a prefix of what was applied: what it had not
    seen is the few events concurrent with it, so both making a past and
    keeping it cost those few, not one entry per replica (with hundreds of
    writers, merging full vectors per event was most of a server's time, and
    their memory)."""

    __slots__ = ("_log", "at", "exceptions")

    def __init__(self, log: EventLog, at: int, exceptions: dict[str, int]) -> None:
        self._log = log
        self.at = at
        self.exceptions = exceptions

    def get(self, replica: str, default: int = 0) -> int:  # type: ignore[override]
        found = self.exceptions.get(replica)
        if found is None:
            found = self._log.count_before(replica, self.at)
        return found or default

    def holds(self, replica: str, counter: int) -> bool:
        """Is the element ``(replica, counter)`` made by an event of this past?"""
        seq = self.exceptions.get(replica)
        if seq is None:
            seq = self._log.count_before(replica, self.at)
        return bool(seq) and counter < self._log.chains[replica][seq - 1].end

    def __getitem__(self, replica: str) -> int:
        found = self.get(replica)
        if not found:
            raise KeyError(replica)
        return found

    def to_dict(self) -> dict[str, int]:
        return {r: seq for r in self._log.chains if (seq := self.get(r))}

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"Past({self.to_dict()!r})"


class EventLog:
    __slots__ = (
        "_checked",
        "_keys",
        "_order",
        "_pasts",
        "_positions",
        "_version",
        "accept_unsigned",
        "chains",
        "heads",
        "local",
        "max_lamport",
        "rejected",
        "staged",
        "trusted",
    )

    def __init__(self, local: str) -> None:
        self.local = local
        self.chains: dict[str, list[Event]] = {}
        self.heads: dict[EventKey, bytes] = {}
        self.max_lamport = 0
        # per replica: the seqs at which its events' causal past changed, and
        # those pasts (consecutive events that saw nothing new share one)
        # (the seqs, the pasts' ``at`` and their exceptions, in lists per
        # replica: a dict of str -> int is not tracked by the collector, and
        # an object per event was a third of what its full passes walked in
        # a busy replica)
        self._pasts: dict[str, tuple[list[int], list[int], list[dict[str, int]]]] = {}
        # the events in the order they were applied, and per replica the
        # positions of its events in that order (a Past's terms)
        self._order: list[Event] = []
        self._positions: dict[str, list[int]] = {}
        self._version: Version | None = None
        self._keys: dict[str, tuple[bytes, Ed25519PublicKey | None]] = {}
        self.staged: dict[EventKey, Event] = {}
        self.trusted: set[EventKey] = set()
        self.rejected: dict[EventKey, bytes] = {}
        self._checked: dict[bytes, Ed25519PublicKey] = {}
        self.accept_unsigned = False
        """An unsigned document: events need no signature (one that is there is still checked)."""

    # -- what is applied -----------------------------------------------------

    def __len__(self) -> int:
        return sum(len(chain) for chain in self.chains.values())

    def get(self, event_id: EventKey) -> Event | None:
        chain = self.chains.get(event_id[0])
        if chain is not None and 0 < event_id[1] <= len(chain):
            return chain[event_id[1] - 1]
        return None

    def version(self) -> Version:
        version = self._version
        if version is None:  # made once per change: a server asks per batch
            chains = self.chains
            version = self._version = Version.unchecked({r: len(c) for r, c in chains.items()})
        return version

    @property
    def applied(self) -> int:
        """How many events were applied: a mark for ``applied_since`` and ``version_at``."""
        return len(self._order)

    def applied_since(self, mark: int) -> list[Event]:
        """The events applied after the first ``mark``, in the order applied (parents first)."""
        return self._order[mark:]

    def version_at(self, mark: int) -> Version:
        """The version of the first ``mark`` events applied."""
        if mark >= len(self._order):
            return self.version()
        counts = {r: len(chain) for r, chain in self.chains.items()}
        for event in self._order[mark:]:
            counts[event.id[0]] -= 1
        return Version.unchecked(counts)

    def next_counter(self, replica: str) -> int:
        chain = self.chains.get(replica)
        return chain[-1].end if chain else 0

    def tip(self, replica: str) -> tuple[int, bytes | None, int]:
        """How many events ``replica`` has, the hash of its newest, the counter after it."""
        chain = self.chains.get(replica)
        if not chain:
            return 0, None, 0
        last = chain[-1]
        return len(chain), last.hash, last.end

    def events_since(self, version: Version | None) -> list[Event]:
        """Applied events not in ``version``, parents first."""
        out: list[Event] = []
        for replica, chain in self.chains.items():
            have = version.get(replica, 0) if version is not None else 0
            out.extend(chain[have:])
        out.sort(key=_causal_order)
        return out

    # -- causality -------------------------------------------------------------

    def full_vector(self, parents: Sequence[EventKey]) -> dict[str, int]:
        """For each replica, the highest seq in the causal past of ``parents``."""
        return self.past_of(parents).to_dict()

    def past_of(self, parents: Sequence[EventKey], author: str | None = None) -> Past:
        """The causal past of ``parents`` (themselves included), for an event
        by ``author`` about to be applied with them as its parents.

        It is taken just after the newest parent not by ``author``: what an
        author received comes in the order the log applied it (a server's
        stream), so that prefix is nearly all of its past, while its own
        previous event, applied when it arrived, may lie well after events it
        had not received yet (taken after that one, a past had as exceptions
        every event of those, which under load grew with the latency and fed
        on itself). It costs what differs from the parents' pasts, not one
        step per replica: a replica that none of them holds apart from their
        prefix, and that has no event between the newest of those prefixes
        and this one, is exact as the prefix says."""
        order = self._order
        n = len(order)
        if not parents:
            return Past(self, 0, _EMPTY)
        heads = self.heads
        if len(parents) == len(heads) and all(p in heads for p in parents):
            return Past(self, n, _EMPTY)  # it saw everything
        positions = self._positions
        own: dict[str, int] = {}
        found: dict[tuple[int, int], Entry] = {}
        top = 0  # just after the newest parent not by the author
        newest = 0  # just after the newest parent
        for replica, seq in parents:
            if seq > own.get(replica, 0):
                own[replica] = seq
            position = positions[replica][seq - 1] + 1
            if position > newest:
                newest = position
            if position > top and replica != author:
                top = position
            entry = self._entry_at(replica, seq)
            found[entry[0], id(entry[1])] = entry  # parents sharing one past
        if not top:
            top = newest
        pasts = sorted(found.values(), key=_at, reverse=True)
        reach = pasts[0][0]
        low, high = (reach, top) if reach < top else (top, reach)
        chains = self.chains
        candidates: set[str]
        if high - low > 2 * len(chains):
            candidates = set(chains)
        else:
            candidates = {e.id[0] for e in order[low:high]}
            candidates.update(own)
        # the most each replica is held apart from a parent's prefix
        apart: dict[str, int] = {}
        for _, held in pasts:
            for replica, value in held.items():
                if value > apart.get(replica, -1):
                    apart[replica] = value
        candidates.update(apart)
        count_before = self.count_before
        exceptions: dict[str, int] = {}
        for replica in candidates:
            value = own.get(replica, 0)
            most = apart.get(replica, 0)
            if most > value:
                value = most
            # the parents' pasts holding it as their prefix does: the one
            # taken last holds the most of them
            for at, held in pasts:
                if replica not in held:
                    prefix = count_before(replica, at)
                    if prefix > value:
                        value = prefix
                    break
            if value != count_before(replica, top):
                exceptions[replica] = value
        return Past(self, top, exceptions or _EMPTY)

    def past_at(self, replica: str, seq: int) -> Past:
        """The causal past of ``(replica, seq)``, applied."""
        at, held = self._entry_at(replica, seq)
        return Past(self, at, held)

    def _entry_at(self, replica: str, seq: int) -> Entry:
        seqs, ats, held = self._pasts[replica]
        i = len(seqs) - 1 if seqs[-1] <= seq else bisect_right(seqs, seq) - 1
        return ats[i], held[i]

    def vector_for(self, parents: list[EventKey], author: str) -> Past:
        """The causal past of an event with these parents (shared with the
        parent when nothing new was seen)."""
        if len(parents) == 1 and parents[0][0] == author:
            return self.past_at(author, parents[0][1])
        return self.past_of(parents, author)

    def _past_from(self, vector: Vector) -> Past:
        """A plain vector as a past taken now."""
        exceptions = {}
        for replica, chain in self.chains.items():
            seq = vector.get(replica, 0)
            if seq != len(chain):
                exceptions[replica] = seq
        return Past(self, len(self._order), exceptions)

    def count_before(self, replica: str, at: int) -> int:
        """How many events of ``replica`` were among the first ``at`` applied."""
        positions = self._positions.get(replica)
        if not positions:
            return 0
        if positions[-1] < at:
            return len(positions)
        return bisect_left(positions, at)

    # -- recording -----------------------------------------------------------

    def record(self, event: Event, vector: Vector | None) -> None:
        """Add an applied event (checked by the caller); ``vector`` is its
        causal past, as ``vector_for`` gave it just before, or None for an
        event whose one parent is its author's previous event (it saw nothing
        new, so it shares that event's past: a local keystroke)."""
        replica = event.id[0]
        order = self._order
        self._version = None
        if vector is None:
            self.chains[replica].append(event)
            self._positions[replica].append(len(order))
            order.append(event)
        else:
            if type(vector) is not Past:
                vector = self._past_from(vector)
            chain = self.chains.get(replica)
            if chain is None:
                chain = self.chains[replica] = []
                self._pasts[replica] = ([], [], [])
                self._positions[replica] = []
            chain.append(event)
            self._positions[replica].append(len(order))
            order.append(event)
            seqs, ats, held = self._pasts[replica]
            if not seqs or ats[-1] != vector.at or held[-1] is not vector.exceptions:
                seqs.append(event.id[1])
                ats.append(vector.at)
                held.append(vector.exceptions)
        heads = self.heads
        for parent, _ in event.parents:
            heads.pop(parent, None)
        heads[event.id] = event.hash
        lamport = event.lamport
        if lamport > self.max_lamport:
            self.max_lamport = lamport

    def bind_key(self, replica: str, key_id: bytes, key: Ed25519PublicKey | None) -> None:
        self._keys[replica] = (key_id, key)

    def key_of(self, replica: str) -> tuple[bytes, Ed25519PublicKey | None] | None:
        return self._keys.get(replica)

    # -- arrival: staging and authentication ------------------------------------

    def stage(self, event: Event) -> bool:
        """Take an event in; False if it is already known (a duplicate)."""
        event_id = event.id
        applied = self.get(event_id)
        if applied is not None:
            if applied.hash != event.hash:
                raise EquivocationError(f"{event_id} already exists with another hash")
            if applied.signature is None and event.signature is not None:
                applied.signature = event.signature
            return False
        if event_id[0] == self.local:
            raise InvalidEventError(f"{event_id}: only this replica makes its own events")
        if event_id in self.rejected:
            raise InvalidEventError(f"{event_id} was rejected before")
        staged = self.staged.get(event_id)
        if staged is not None:
            if staged.hash != event.hash:
                raise EquivocationError(f"{event_id} is already waiting with another hash")
            if staged.signature is None and event.signature is not None:
                staged.signature = event.signature
            return False
        self.staged[event_id] = event
        return True

    def authenticate(self) -> list[tuple[EventKey, GetherError]]:
        """Trust what can be trusted among staged events; return those rejected.

        Each author's events are taken newest first: one verified signature
        trusts the whole hash chain below it, so a batch costs one signature
        check per author, however many of its events carry signatures.
        """
        errors: list[tuple[EventKey, GetherError]] = []
        trusted = self.trusted
        staged = self.staged
        by_author: dict[str, list[EventKey]] = {}
        for event_id in staged:
            if event_id not in trusted:
                waiting = by_author.get(event_id[0])
                if waiting is None:
                    by_author[event_id[0]] = [event_id]
                else:
                    waiting.append(event_id)
        for waiting in by_author.values():
            waiting.sort(reverse=True)  # newest first
        for event_id in itertools.chain.from_iterable(by_author.values()):
            event = staged.get(event_id)
            if event is None or event_id in trusted:
                continue
            if event.signed:
                try:
                    verdict = self._verify_signature(event)
                except GetherError as exc:
                    errors.extend(self.reject(event_id, exc))
                    continue
                if verdict:
                    self._trust_chain(event, errors)
            elif self.accept_unsigned:
                self._trust_chain(event, errors)
            else:
                after = self._trusted_successor(event_id)
                if after is not None:
                    self._trust_chain(after, errors)
        return errors

    def _trusted_successor(self, event_id: EventKey) -> Event | None:
        successor = (event_id[0], event_id[1] + 1)
        if successor in self.trusted:
            return self.staged[successor]
        return None

    def _key_for(self, event: Event) -> Ed25519PublicKey | None:
        replica = event.id[0]
        bound = self._keys.get(replica)
        if bound is not None:
            key_id, key = bound
            if key_id != event.key_id:
                raise SignatureError(f"{event.id} names a key that is not its replica's")
            return key
        first = event if event.id[1] == 1 else self.staged.get((replica, 1))
        if first is None or first.public_key is None:
            return None  # wait until the replica's first event arrives
        if key_id_of(first.public_key) != event.key_id:
            raise SignatureError(f"{event.id} names a key that is not its replica's")
        return self.checked_key(first.public_key)

    def checked_key(self, public_key: bytes) -> Ed25519PublicKey:
        """``check_public_key``, remembered: the curve arithmetic is slow."""
        key = self._checked.get(public_key)
        if key is None:
            key = self._checked[public_key] = check_public_key(public_key)
        return key

    def _verify_signature(self, event: Event) -> bool:
        """True if verified, False if the key is not known yet; raises if forged."""
        key = self._key_for(event)
        if key is None:
            return False
        raw = key.public_bytes_raw()
        if event.known_valid(raw):
            return True
        signature = event.signature
        assert signature is not None
        if not verify(key, signature, event.hash):
            raise SignatureError(f"{event.id}: signature does not verify")
        event.mark_valid(raw)
        return True

    def _trust_chain(self, event: Event, errors: list[tuple[EventKey, GetherError]]) -> None:
        """Trust ``event`` and, down its author's hash chain, the staged events it vouches for."""
        self.trusted.add(event.id)
        while True:
            claimed = event.prev_hash()
            previous = (event.id[0], event.id[1] - 1)
            before = self.staged.get(previous)
            if before is None or previous in self.trusted or claimed is None:
                return
            if before.hash != claimed:
                errors.extend(
                    self.reject(
                        previous,
                        HashMismatchError(f"{previous} is not the event its author signed"),
                    )
                )
                return
            self.trusted.add(previous)
            event = before

    def reject(self, event_id: EventKey, error: GetherError) -> list[tuple[EventKey, GetherError]]:
        """Drop a staged event and every staged event that depends on it."""
        out: list[tuple[EventKey, GetherError]] = []
        work: list[tuple[EventKey, GetherError]] = [(event_id, error)]
        while work:
            current, why = work.pop()
            event = self.staged.pop(current, None)
            if event is None and out:
                continue  # reached twice
            self.trusted.discard(current)
            if event is not None:
                self.rejected[current] = event.hash
            out.append((current, why))
            dependent = InvalidEventError(f"depends on rejected {current}")
            successor = (current[0], current[1] + 1)
            for other_id, other in self.staged.items():
                if other_id == successor or any(p == current for p, _ in other.parents):
                    work.append((other_id, dependent))
        return out

    def causes_applied(self, event: Event) -> bool:
        """Are its author's previous event and all its parents applied?"""
        chains = self.chains
        author, seq = event.id
        chain = chains.get(author)
        if seq - 1 != (len(chain) if chain else 0):
            return False
        for parent, _ in event.parents:
            chain = chains.get(parent[0])
            if chain is None or not 0 < parent[1] <= len(chain):
                return False
        return True

    def trusted_staged(self) -> list[Event]:
        """Trusted staged events, in the order they came."""
        trusted = self.trusted
        return [event for event_id, event in self.staged.items() if event_id in trusted]

    def trusted_in_order(self) -> list[Event]:
        """Trusted staged events in causal order: a valid event comes after
        its parents in it."""
        staged = self.staged
        return sorted([staged[i] for i in self.trusted], key=_causal_order)

    def unstage(self, event_id: EventKey) -> None:
        self.staged.pop(event_id, None)
        self.trusted.discard(event_id)


class TipLog:
    """The newest events of a loaded document whose history is still encoded:
    its heads, its highest lamport clock, and per replica how many events it
    has, the hash of its newest and the counter after it. That is all a local
    event needs, so editing a loaded document does not decode its history.
    Local events made meanwhile wait here until the history is decoded."""

    __slots__ = ("_saved", "events", "heads", "max_lamport", "tips")

    def __init__(
        self,
        heads: dict[EventKey, bytes],
        max_lamport: int,
        tips: dict[str, tuple[int, bytes, int]],
    ) -> None:
        self.heads = heads
        self.max_lamport = max_lamport
        self.tips = tips  # replica -> (events, newest hash, next counter)
        self.events: list[Event] = []
        self._saved = (dict(heads), max_lamport, dict(tips))

    def tip(self, replica: str) -> tuple[int, bytes | None, int]:
        return self.tips.get(replica) or (0, None, 0)

    def next_counter(self, replica: str) -> int:
        return self.tip(replica)[2]

    def vector_for(self, parents: list[EventKey], author: str) -> Vector:
        return _EMPTY

    def record(self, event: Event, vector: Vector | None) -> None:
        self.events.append(event)
        for parent, _ in event.parents:
            self.heads.pop(parent, None)
        self.heads[event.id] = event.hash
        self.max_lamport = max(self.max_lamport, event.lamport)
        self.tips[event.id[0]] = (event.id[1], event.hash, event.end)

    def version(self) -> Version:
        return Version.unchecked({replica: tip[0] for replica, tip in self.tips.items()})

    def describes(self, log: EventLog) -> bool:
        """Do the saved tips match the history they were saved with?"""
        heads, max_lamport, tips = self._saved
        return (
            log.heads == heads
            and log.max_lamport == max_lamport
            and log.chains.keys() == tips.keys()
            and all(log.tip(replica) == tip for replica, tip in tips.items())
        )


def _causal_order(event: Event) -> tuple[int, str, int]:
    return event.lamport, event.id[0], event.id[1]


def check_first_key(log: EventLog, event: Event) -> Ed25519PublicKey:
    """The key a replica's first event binds it to."""
    if event.public_key is None:
        raise InvalidKeyError(f"{event.id} is a replica's first event and carries no public key")
    if key_id_of(event.public_key) != event.key_id:
        raise InvalidKeyError(f"{event.id}: key id does not match its public key")
    return log.checked_key(event.public_key)
