"""Deterministic sample histories for store and sync tests: several replicas
editing one document and syncing now and then, with fixed keys and clocks."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import gether
from gether.core.event import Event
from gether.core.hlc import Clock
from gether.core.keys import SigningKey


def fixed_key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"gether-test-key:" + name.encode()).digest())


def ticking_clock(start: int = 1_700_000_000_000) -> Clock:
    """A clock that advances one millisecond per reading."""
    now = iter(range(start, start + 10**12))
    return lambda: next(now)


def replicas(count: int, prefix: str = "r") -> list[gether.Document]:
    return [
        gether.Document(f"{prefix}{i}", key=fixed_key(f"{prefix}{i}"), clock=ticking_clock())
        for i in range(count)
    ]


def edit(doc: gether.Document, rng: random.Random) -> None:
    """One random edit (one event) of a text, a list, a map key or a counter."""
    choice = rng.randrange(4)
    if choice == 0:
        text = doc.text("notes")
        text.insert(rng.randint(0, len(text)), rng.choice(["a", "bc", "déf", "🙂"]))
    elif choice == 1:
        items = doc.list("items")
        if items and rng.random() < 0.3:
            del items[rng.randrange(len(items))]
        else:
            items.insert(rng.randint(0, len(items)), {"n": rng.randrange(100)})
    elif choice == 2:
        doc.map("settings")[rng.choice("abc")] = rng.randrange(1000)
    else:
        doc.counter("hits").increment(rng.randint(-3, 5))


def history(
    replica_count: int = 3, edits: int = 40, seed: int = 0, prefix: str = "r"
) -> tuple[list[Event], gether.Document]:
    """The events of a random session (parents first) and a replica holding them all."""
    rng = random.Random(seed)
    docs = replicas(replica_count, prefix)
    for _ in range(edits):
        doc = rng.choice(docs)
        edit(doc, rng)
        if rng.random() < 0.3:
            other = rng.choice(docs)
            if other is not doc:
                other.apply_events(doc.events_since(other.version))
    everyone = docs[0]
    for doc in docs[1:]:
        everyone.apply_events(doc.events_since(everyone.version))
    for doc in docs[1:]:
        doc.apply_events(everyone.events_since(doc.version))
    return everyone.events_since(None), everyone


def causal_shuffles(events: list[Event], seed: int) -> Iterator[list[Event]]:
    """Random batches of ``events`` such that every batch's causes come earlier."""
    rng = random.Random(seed)
    done: set[tuple[str, int]] = set()
    left = list(events)
    while left:
        ready = [
            e
            for e in left
            if all(p in done for p, _ in e.parents)
            and (e.id[1] == 1 or (e.id[0], e.id[1] - 1) in done)
        ]
        batch = rng.sample(ready, rng.randint(1, len(ready)))
        rng.shuffle(batch)
        for event in batch:
            done.add(event.id)
            left.remove(event)
        yield batch
