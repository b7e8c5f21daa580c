"""A seeded, simulated network of replicas, for convergence tests.

Real networks lose, repeat, reorder and delay messages, and split into groups
that cannot reach each other. Convergence bugs hide in exactly those schedules,
and they are rare, so tests need to produce many of them cheaply and replay any
one of them exactly. :class:`SimulatedNetwork` does that with no sockets, no
clock and no global randomness: every choice comes from one
``random.Random(seed)``, so a seed names one schedule, and a failing seed
reproduces forever (after the idea of yjs's ``TestConnector``).

The model:

- :meth:`SimulatedNetwork.broadcast` takes the events a replica made since its
  last broadcast and puts one *batch* per recipient in flight. Events travel as
  bytes (``Event.to_bytes``), so every delivery also exercises the codec.
- :meth:`SimulatedNetwork.deliver_some` delivers a random subset of the batches
  in flight, in random order; a batch may be duplicated, split in two, have its
  events shuffled, or be dropped. A dropped batch goes to a resend queue and is
  put back in flight on the next round, as a sender that times out and resends
  would: nothing is lost forever, only late.
- :meth:`SimulatedNetwork.partition` stops delivery between groups (batches
  wait in flight) until :meth:`SimulatedNetwork.heal`.
- :meth:`SimulatedNetwork.settle` heals, delivers until quiet, then runs a
  final anti-entropy round (every pair exchanges what the other lacks), after
  which every correct replica must hold the same events.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import gether

__all__ = ["Batch", "NetworkStats", "SimulatedNetwork"]

_FAULT_FREE_AFTER = 64
"""Rounds of :meth:`SimulatedNetwork.settle` after which faults stop, so it ends."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded events on their way from one replica to another."""

    sender: int
    recipient: int
    payload: tuple[bytes, ...]
    ids: tuple[tuple[str, int], ...]
    """The ids of ``payload``'s events, in the same order (bookkeeping, not sent)."""


def _batch(sender: int, recipient: int, pairs: Sequence[tuple[tuple[str, int], bytes]]) -> Batch:
    return Batch(sender, recipient, tuple(d for _, d in pairs), tuple(i for i, _ in pairs))


@dataclass(slots=True)
class NetworkStats:
    """What the network did so far; tests use it to check faults really happened."""

    batches_sent: int = 0
    batches_delivered: int = 0
    events_delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    split: int = 0
    blocked: int = 0
    anti_entropy_events: int = 0


@dataclass(slots=True)
class _Replica:
    """One replica and the network's bookkeeping about it."""

    doc: gether.Document
    broadcast_at: gether.Version | None = None
    received: set[tuple[str, int]] = field(default_factory=set)


class SimulatedNetwork:
    """A seeded network that reorders, duplicates, drops, delays and partitions.

    ``drop``, ``duplicate``, ``split`` and ``reorder`` are the chances that a
    delivered batch is lost (and resent later), delivered twice, delivered in
    two parts, or has its events shuffled. ``delivery`` is the chance that a
    batch in flight is delivered in a given :meth:`deliver_some` round; the
    rest are delayed. Replicas are addressed by their index in ``replicas``.

    A replica that rejects events (``RejectedEventsError``: a forged event, or
    one its schema refuses) raises out of the delivery, unless
    ``keep_rejections`` is set: then the rejected ids are added to
    :attr:`rejected` (by replica index) and delivery goes on.
    """

    def __init__(
        self,
        replicas: Sequence[gether.Document],
        seed: int,
        *,
        drop: float = 0.1,
        duplicate: float = 0.1,
        split: float = 0.2,
        reorder: float = 0.5,
        delivery: float = 0.5,
        keep_rejections: bool = False,
    ) -> None:
        for name, chance in [
            ("drop", drop),
            ("duplicate", duplicate),
            ("split", split),
            ("reorder", reorder),
            ("delivery", delivery),
        ]:
            if not 0.0 <= chance <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {chance!r}")
        if drop >= 1.0 or duplicate >= 1.0:
            raise ValueError("drop and duplicate must be below 1, or delivery never ends")
        self._rng = random.Random(seed)
        self._replicas = [_Replica(doc) for doc in replicas]
        self.drop = drop
        self.duplicate = duplicate
        self.split = split
        self.reorder = reorder
        self.delivery = delivery
        self._in_flight: list[Batch] = []
        self._resend: list[Batch] = []
        self._group_of: dict[int, int] | None = None
        self.stats = NetworkStats()
        self.keep_rejections = keep_rejections
        self.rejected: dict[int, set[tuple[str, int] | None]] = {}
        """The ids of the events each replica rejected (``keep_rejections``)."""
        self.log: list[tuple[str, int, int, int]] = []
        """``(what, sender, recipient, events)`` for every network action, in order.

        Two networks with the same seed and the same calls have equal logs:
        this is what the determinism tests compare.
        """
        self.last_recipients: frozenset[int] = frozenset()
        """The replicas that received something in the last delivery call."""

    # -- replicas ---------------------------------------------------------

    @property
    def replicas(self) -> list[gether.Document]:
        """The documents, by index (a copy of the list, the same documents)."""
        return [r.doc for r in self._replicas]

    def __len__(self) -> int:
        return len(self._replicas)

    def __getitem__(self, index: int) -> gether.Document:
        return self._replicas[index].doc

    def replace(self, index: int, doc: gether.Document) -> None:
        """Swap in another document for a replica, e.g. one reloaded from a save.

        The bookkeeping (what was broadcast, what came from the network) stays,
        since a reload of the same replica holds the same history.
        """
        self._replicas[index].doc = doc

    def add(self, doc: gether.Document) -> int:
        """Add a replica (e.g. a fork) and return its index; it starts unpartitioned."""
        self._replicas.append(_Replica(doc))
        if self._group_of is not None:
            self._group_of[len(self._replicas) - 1] = -len(self._replicas)
        return len(self._replicas) - 1

    # -- sending ----------------------------------------------------------

    def broadcast(self, index: int) -> int:
        """Send the events replica ``index`` made since it last broadcast; return how many.

        "Made" means every event that did not reach it through this network:
        its own edits, and events it merged in from a fork. Events it received
        are not relayed, so a recipient may get an event before its parents
        and must buffer it.
        """
        replica = self._replicas[index]
        events = replica.doc.events_since(replica.broadcast_at)
        replica.broadcast_at = replica.doc.version
        own = [e for e in events if e.id not in replica.received]
        if not own:
            return 0
        payload = tuple(e.to_bytes() for e in own)
        ids = tuple(e.id for e in own)
        for recipient in range(len(self._replicas)):
            if recipient != index:
                self._in_flight.append(Batch(index, recipient, payload, ids))
                self.stats.batches_sent += 1
                self.log.append(("send", index, recipient, len(payload)))
        return len(own)

    def broadcast_all(self) -> int:
        """Broadcast from every replica, in index order; return the events sent."""
        return sum(self.broadcast(i) for i in range(len(self._replicas)))

    @property
    def in_flight(self) -> int:
        """Batches on their way, including dropped ones waiting to be resent."""
        return len(self._in_flight) + len(self._resend)

    @property
    def quiet(self) -> bool:
        """True when nothing is in flight and nothing waits to be resent."""
        return not self._in_flight and not self._resend

    # -- partitions -------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Allow delivery only inside each group; a replica in no group is alone.

        Batches between groups are not lost: they wait in flight until
        :meth:`heal`, as messages do behind a broken link that is retried.
        """
        group_of: dict[int, int] = {}
        for number, group in enumerate(groups):
            for index in group:
                if not 0 <= index < len(self._replicas):
                    raise IndexError(f"no replica {index} in a network of {len(self)}")
                if index in group_of:
                    raise ValueError(f"replica {index} is in two groups")
                group_of[index] = number
        for index in range(len(self._replicas)):
            group_of.setdefault(index, -1 - index)
        self._group_of = group_of
        self.log.append(("partition", len(set(group_of.values())), 0, 0))

    def heal(self) -> None:
        """End any partition: every replica can reach every other again."""
        self._group_of = None
        self.log.append(("heal", 0, 0, 0))

    def connected(self, a: int, b: int) -> bool:
        """True if a batch from ``a`` to ``b`` can be delivered now."""
        return self._group_of is None or self._group_of[a] == self._group_of[b]

    # -- delivery ---------------------------------------------------------

    def deliver_some(self) -> int:
        """One round: resend what was dropped, deliver a random subset; return deliveries."""
        return self._round(everything=False, faults=True)

    def deliver_all(self, *, faults: bool = True) -> int:
        """One round that tries every batch in flight (faults may still delay some)."""
        return self._round(everything=True, faults=faults)

    def _round(self, *, everything: bool, faults: bool) -> int:
        self._in_flight.extend(self._resend)
        self._resend.clear()
        rng = self._rng
        rng.shuffle(self._in_flight)
        chosen: list[Batch] = []
        waiting: list[Batch] = []
        for batch in self._in_flight:
            if not self.connected(batch.sender, batch.recipient):
                self.stats.blocked += 1
                waiting.append(batch)
            elif everything or rng.random() < self.delivery:
                chosen.append(batch)
            else:
                waiting.append(batch)
        self._in_flight = waiting
        delivered = 0
        recipients: set[int] = set()
        for batch in chosen:
            delivered += self._deliver(batch, faults=faults, recipients=recipients)
        self.last_recipients = frozenset(recipients)
        return delivered

    def _deliver(self, batch: Batch, *, faults: bool, recipients: set[int]) -> int:
        """Deliver one batch, or part of it, with the network's faults; return 0 or 1."""
        rng = self._rng
        if faults and rng.random() < self.drop:
            self.stats.dropped += 1
            self.log.append(("drop", batch.sender, batch.recipient, len(batch.payload)))
            self._resend.append(batch)
            return 0
        pairs = list(zip(batch.ids, batch.payload, strict=True))
        if faults and len(pairs) > 1 and rng.random() < self.split:
            cut = rng.randrange(1, len(pairs))
            first, rest = pairs[:cut], pairs[cut:]
            if rng.random() < 0.5:
                first, rest = rest, first
            self._in_flight.append(_batch(batch.sender, batch.recipient, rest))
            self.stats.split += 1
            pairs = first
        if faults and rng.random() < self.duplicate:
            self._in_flight.append(_batch(batch.sender, batch.recipient, pairs))
            self.stats.duplicated += 1
        if faults and len(pairs) > 1 and rng.random() < self.reorder:
            rng.shuffle(pairs)
        self._apply(batch.recipient, pairs)
        self.log.append(("deliver", batch.sender, batch.recipient, len(pairs)))
        recipients.add(batch.recipient)
        return 1

    def _apply(self, index: int, pairs: Sequence[tuple[tuple[str, int], bytes]]) -> None:
        """Hand encoded events to a replica, remembering they came from the network."""
        replica = self._replicas[index]
        replica.received.update(event_id for event_id, _ in pairs)
        try:
            replica.doc.apply_events([data for _, data in pairs])
        except gether.RejectedEventsError as exc:
            if not self.keep_rejections:
                raise
            ids = {(i[0], i[1]) if isinstance(i, tuple) else None for i, _ in exc.rejected}
            self.rejected.setdefault(index, set()).update(ids)
        self.stats.batches_delivered += 1
        self.stats.events_delivered += len(pairs)

    # -- the end ----------------------------------------------------------

    def anti_entropy(self) -> int:
        """Every ordered pair exchanges what the other lacks, until nothing moves.

        Return how many events were sent. This is the periodic full sync that
        repairs whatever the broadcasts missed.
        """
        sent = 0
        changed = True
        while changed:
            changed = False
            for a in range(len(self._replicas)):
                for b in range(len(self._replicas)):
                    if a == b:
                        continue
                    source, target = self._replicas[a].doc, self._replicas[b].doc
                    missing = source.events_since(target.version)
                    if not missing:
                        continue
                    before = target.version
                    self._apply(b, [(e.id, e.to_bytes()) for e in missing])
                    self.log.append(("sync", a, b, len(missing)))
                    sent += len(missing)
                    changed = changed or target.version != before
        self.stats.anti_entropy_events += sent
        return sent

    def settle(self, max_rounds: int = 10_000) -> int:
        """Heal, deliver everything until quiet, then anti-entropy; return the rounds.

        Faults keep happening for a while (a dropped batch is resent, a
        duplicate is delivered again) and stop after a bounded number of
        rounds, so that settling always ends.
        """
        self.heal()
        rounds = 0
        while True:
            self.broadcast_all()
            if self.quiet:
                break
            if rounds >= max_rounds:  # unreachable unless the network itself is broken
                raise AssertionError(f"network did not settle in {max_rounds} rounds")
            self.deliver_all(faults=rounds < _FAULT_FREE_AFTER)
            rounds += 1
        self.anti_entropy()
        return rounds
