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

from bisect import bisect_right
from collections.abc import Iterable

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

Vector = dict[str, int]
_EMPTY: Vector = {}


class EventLog:
    __slots__ = (
        "_checked",
        "_keys",
        "_vectors",
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
        # per replica: the causal past of each event on other replicas, shared
        # between consecutive events that saw nothing new.
        # per replica: the seqs at which its causal vector changed, and the
        # vectors; consecutive events that saw nothing new share one entry
        self._vectors: dict[str, tuple[list[int], list[Vector]]] = {}
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
        return Version.unchecked({r: len(chain) for r, chain in self.chains.items()})

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

    def full_vector(self, parents: Iterable[EventKey]) -> Vector:
        """For each replica, the highest seq in the causal past of ``parents``."""
        merged: Vector = {}
        for replica, seq in parents:
            for other, other_seq in self._vector_at(replica, seq).items():
                if other_seq > merged.get(other, 0):
                    merged[other] = other_seq
            if seq > merged.get(replica, 0):
                merged[replica] = seq
        return merged

    def own_vector(self, replica: str) -> Vector:
        """The vector of ``replica``'s newest event (its next one, if it saw nothing new)."""
        return self._vectors[replica][1][-1]

    def _vector_at(self, replica: str, seq: int) -> Vector:
        seqs, vectors = self._vectors[replica]
        if seqs[-1] <= seq:
            return vectors[-1]
        return vectors[bisect_right(seqs, seq) - 1]

    def vector_for(self, parents: list[EventKey], author: str) -> Vector:
        """The causal past, on replicas other than ``author``, of an event with
        these parents (shared with the parent when nothing new was seen)."""
        if len(parents) == 1 and parents[0][0] == author:
            return self._vector_at(author, parents[0][1])
        merged = self.full_vector(parents)
        merged.pop(author, None)
        return merged or _EMPTY

    def counter_in_past(self, vector: Vector, replica: str, counter: int) -> bool:
        """Is the element ``(replica, counter)`` made by an event of ``vector``?"""
        seq = vector.get(replica, 0)
        if not seq:
            return False
        return counter < self.chains[replica][seq - 1].end

    # -- recording -----------------------------------------------------------

    def record(self, event: Event, vector: Vector) -> None:
        """Add an applied event (checked by the caller)."""
        replica = event.id[0]
        chain = self.chains.get(replica)
        if chain is None:
            chain = self.chains[replica] = []
            self._vectors[replica] = ([], [])
        chain.append(event)
        seqs, vectors = self._vectors[replica]
        if not vectors or vectors[-1] is not vector:
            seqs.append(event.id[1])
            vectors.append(vector)
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
        waiting = sorted(
            (event_id for event_id in self.staged if event_id not in self.trusted),
            key=lambda event_id: (event_id[0], -event_id[1]),
        )
        for event_id in waiting:
            event = self.staged.get(event_id)
            if event is None or event_id in self.trusted:
                continue
            if event.signature is not None:
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
        signature = event.signature
        assert signature is not None
        raw = key.public_bytes_raw()
        if event.known_valid(raw):
            return True
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

    def ready(self) -> list[Event]:
        """Trusted staged events whose parents are all applied, parents first.

        One pass in causal order: a valid event comes after its parents in it.
        An event whose lamport lies is found ready on the next call (and
        rejected when checked)."""
        chains = self.chains
        staged = self.staged
        out: list[Event] = []
        taken: set[EventKey] = set()
        for event in sorted((staged[i] for i in self.trusted), key=_causal_order):
            author, seq = event.id
            chain = chains.get(author)
            if seq - 1 != (len(chain) if chain else 0) and (author, seq - 1) not in taken:
                continue
            for parent, _ in event.parents:
                chain = chains.get(parent[0])
                if (chain is None or parent[1] > len(chain)) and parent not in taken:
                    break
            else:
                out.append(event)
                taken.add(event.id)
        return out

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

    def own_vector(self, replica: str) -> Vector:
        return _EMPTY  # vectors are worked out when the history is decoded

    def vector_for(self, parents: list[EventKey], author: str) -> Vector:
        return _EMPTY

    def record(self, event: Event, vector: Vector) -> None:
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
