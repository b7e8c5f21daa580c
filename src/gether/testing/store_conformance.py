"""The conformance suite every ``EventStore`` passes.

Subclass :class:`StoreConformance` in a test module and give it a
``store_url`` fixture naming a fresh, empty store::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/test.db"

Tests are async (pytest-asyncio, ``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from gether.core.event import Event
from gether.core.ids import Version
from gether.document import Document
from gether.errors import (
    EquivocationError,
    HashMismatchError,
    IncompleteHistoryError,
    StoreUnavailableError,
    UsageError,
)
from gether.store import Identity, Snapshot, open_store
from gether.store.asyncstore import AsyncStore
from gether.store.base import AuditRecord, event_order
from gether.testing.histories import causal_shuffles, history, replicas, ticking_clock

DOC = "doc-1"


def _fingerprint(events: list[Event]) -> list[tuple[tuple[str, int], bytes, bytes | None]]:
    return [(e.id, e.hash, e.signature) for e in events]


def _versions_of(events: list[Event]) -> list[Version]:
    """Every prefix version of a causally ordered list, and a few more."""
    versions = [Version({})]
    vector: dict[str, int] = {}
    for event in events:
        vector[event.id[0]] = event.id[1]
        versions.append(Version(vector))
    versions.append(Version({"stranger": 5}))
    versions.append(Version({r: s + 10 for r, s in vector.items()}))
    return versions


class StoreConformance:
    """What every store must do; see ``gether.store.base`` for the rules."""

    @pytest.fixture
    def store_url(self) -> str:
        pytest.fail(f"{type(self).__name__} must define a store_url fixture naming an empty store")

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[AsyncStore]:
        async with open_store(store_url) as store:
            yield store

    # -- empty cases --------------------------------------------------------------

    async def test_empty_store(self, store: AsyncStore) -> None:
        assert await store.documents() == []
        assert await store.events(DOC) == []
        assert await store.events(DOC, Version({"a": 3})) == []
        assert await store.version(DOC) == Version({})
        assert await store.count(DOC) == 0
        assert await store.size(DOC) == 0
        assert await store.load_snapshot(DOC) is None
        assert await store.delete_snapshots(DOC) == 0
        assert await store.append(DOC, []) == 0
        assert await store.documents() == []

    async def test_bad_document_ids(self, store: AsyncStore) -> None:
        for bad in ("", "x" * 257, "a\x00b", "lone \ud800 surrogate"):
            with pytest.raises(UsageError):
                await store.events(bad)

    # -- appending and reading ---------------------------------------------------------

    async def test_append_and_read_back(self, store: AsyncStore) -> None:
        events, doc = history(seed=1)
        assert await store.append(DOC, events) == len(events)
        stored = await store.events(DOC)
        assert _fingerprint(stored) == _fingerprint(sorted(events, key=event_order))
        assert [e.to_bytes() for e in stored] == [
            e.to_bytes() for e in sorted(events, key=event_order)
        ]
        assert await store.version(DOC) == doc.version
        assert await store.count(DOC) == len(events)
        assert await store.size(DOC) == sum(len(e.to_bytes()) for e in events)
        assert await store.documents() == [DOC]

    async def test_order_does_not_depend_on_append_order(self, store: AsyncStore) -> None:
        events, _ = history(seed=2)
        for batch in causal_shuffles(events, seed=3):
            await store.append(DOC, batch)
        assert _fingerprint(await store.events(DOC)) == _fingerprint(
            sorted(events, key=event_order)
        )

    async def test_a_replica_rebuilt_from_the_store_is_equal(self, store: AsyncStore) -> None:
        events, doc = history(seed=4)
        await store.append(DOC, events)
        (fresh,) = replicas(1, prefix="reader")
        fresh.apply_events(await store.events(DOC))
        assert fresh.to_json() == doc.to_json()
        assert fresh.version == doc.version

    async def test_idempotent(self, store: AsyncStore) -> None:
        events, _ = history(seed=5)
        half = len(events) // 2
        assert await store.append(DOC, events[:half]) == half
        assert await store.append(DOC, events[:half]) == 0
        assert await store.append(DOC, events) == len(events) - half
        assert await store.append(DOC, events + events) == 0
        assert await store.count(DOC) == len(events)

    async def test_a_large_batch(self, store: AsyncStore) -> None:
        events, doc = history(replica_count=4, edits=1500, seed=6)
        assert await store.append(DOC, events) == len(events)
        assert await store.count(DOC) == len(events)
        assert await store.version(DOC) == doc.version

    # -- refusals -------------------------------------------------------------------

    async def test_equivocation_refused_and_nothing_written(self, store: AsyncStore) -> None:
        events, doc = history(seed=7)
        await store.append(DOC, events)
        honest, liar = (_fork_of(doc, text) for text in ("one future", "another future"))
        assert honest.id == liar.id and honest.hash != liar.hash
        await store.append(DOC, [honest])
        before = _fingerprint(await store.events(DOC))
        more, _ = history(replica_count=1, edits=5, seed=8, prefix="other")
        with pytest.raises(EquivocationError):
            await store.append(DOC, [*more, liar])
        assert _fingerprint(await store.events(DOC)) == before
        with pytest.raises(EquivocationError):
            await store.append("doc-2", [*events, honest, liar])
        assert await store.count("doc-2") == 0

    async def test_missing_causes_refused(self, store: AsyncStore) -> None:
        events, _ = history(seed=9)
        orphan = max(events, key=lambda e: e.lamport)
        with pytest.raises(IncompleteHistoryError):
            await store.append(DOC, [orphan])
        second = next(e for e in events if e.id[1] == 2)
        with pytest.raises(IncompleteHistoryError):
            await store.append(DOC, [second])
        assert await store.count(DOC) == 0
        assert await store.documents() == []

    async def test_wrong_parent_hash_refused(self, store: AsyncStore) -> None:
        events, _ = history(seed=10)
        await store.append(DOC, events)
        tip = max(events, key=lambda e: e.lamport)
        forged = Event(
            (tip.id[0], tip.id[1] + 1),
            tip.end,
            tip.lamport + 1,
            tip.hlc + 1,
            tip.key_id,
            None,
            ((tip.id, b"\x00" * 32),),
            None,
            (),
        )
        with pytest.raises(HashMismatchError):
            await store.append(DOC, [forged])
        assert await store.count(DOC) == len(events)

    # -- ranges ---------------------------------------------------------------------------

    async def test_events_since_each_version(self, store: AsyncStore) -> None:
        events, _ = history(seed=11)
        ordered = sorted(events, key=event_order)
        await store.append(DOC, events)
        for version in _versions_of(ordered):
            expected = [e for e in ordered if not version.includes(e.id)]
            assert _fingerprint(await store.events(DOC, version)) == _fingerprint(expected)

    # -- snapshots ------------------------------------------------------------------------

    async def test_snapshots(self, store: AsyncStore) -> None:
        events, doc = history(seed=12)
        half = sorted(events, key=event_order)[: len(events) // 2]
        await store.append(DOC, events)
        older = Snapshot(Version({"r0": 1}), b"older")
        newest = Snapshot(doc.version, doc.save())
        middle = Snapshot(Version({e.id[0]: e.id[1] for e in half}), b"middle")
        for snapshot in (older, newest, middle):
            await store.save_snapshot(DOC, snapshot)
        assert await store.load_snapshot(DOC) == newest
        assert await store.load_snapshot("doc-2") is None
        assert await store.delete_snapshots(DOC) >= 1
        assert await store.load_snapshot(DOC) is None
        assert await store.count(DOC) == len(events)

    # -- many documents -------------------------------------------------------------------

    async def test_many_documents(self, store: AsyncStore) -> None:
        names = [f"doc-{i:02}" for i in range(12)]
        histories = {name: history(replica_count=2, edits=8, seed=i)[0] for i, name in
                     enumerate(names)}  # fmt: skip
        for name in reversed(names):
            await store.append(name, histories[name])
        assert await store.documents() == names
        for name in names:
            assert _fingerprint(await store.events(name)) == _fingerprint(
                sorted(histories[name], key=event_order)
            )
        # one event may belong to two documents (a fork copied)
        await store.append("copy", histories[names[0]])
        assert await store.count("copy") == await store.count(names[0])

    async def test_identity(self, store: AsyncStore) -> None:
        first = Identity("alice", b"\x01" * 32)
        assert await store.claim_identity(DOC, first) == first
        assert await store.claim_identity(DOC, Identity("bob", b"\x02" * 32)) == first
        other = Identity("carol", b"\x03" * 32)
        assert await store.claim_identity("doc-2", other) == other

    # -- concurrency and lifetime -----------------------------------------------------------

    async def test_concurrent_writers(self, store: AsyncStore, store_url: str) -> None:
        events, doc = history(replica_count=4, edits=300, seed=13)
        batches = list(causal_shuffles(events, seed=14))
        async with open_store(store_url) as second:

            async def writer(target: AsyncStore, seed: int) -> int:
                rng = random.Random(seed)
                written = 0
                for i, batch in enumerate(batches):
                    # each writer sends every batch with all the earlier ones
                    # now and then, so they race on the same events
                    prefix = [e for b in batches[: i + 1] for e in b]
                    chunk = prefix if rng.random() < 0.2 else batch
                    while True:
                        try:
                            written += await target.append(DOC, chunk)
                            break
                        except IncompleteHistoryError:
                            chunk = prefix  # another writer is behind us
                return written

            counts = await asyncio.gather(
                *(writer(store if i % 2 else second, i) for i in range(6))
            )
        assert sum(counts) == len(events)
        assert await store.count(DOC) == len(events)
        assert await store.version(DOC) == doc.version

    async def test_reopen_keeps_everything(self, store: AsyncStore, store_url: str) -> None:
        events, doc = history(seed=15)
        await store.append(DOC, events)
        await store.save_snapshot(DOC, Snapshot(doc.version, b"snap"))
        await store.close()
        async with open_store(store_url) as again:
            assert _fingerprint(await again.events(DOC)) == _fingerprint(
                sorted(events, key=event_order)
            )
            assert (await again.load_snapshot(DOC)) == Snapshot(doc.version, b"snap")

    # -- the audit trail ------------------------------------------------------------------

    async def test_audit_records_read_back_in_order(
        self, store: AsyncStore, store_url: str
    ) -> None:
        assert await store.audit(DOC) == []
        assert await store.audit_authors(DOC) == {}
        records = [_audit_record(i) for i in range(7)]
        await store.append_audit(DOC, records[:3])
        await store.append_audit(DOC, [])
        await store.append_audit(DOC, records[3:])
        await store.append_audit("other", [_audit_record(99)])
        assert await store.audit(DOC) == records
        assert await store.audit(DOC, limit=2) == records[-2:]
        assert await store.audit(DOC, limit=100) == records
        # the first accepted record of each key names its subject
        assert await store.audit_authors(DOC) == {"k1": "s1", "k0": "s4"}
        assert await store.documents() == []  # audit records alone make no document
        await store.close()
        async with open_store(store_url) as again:
            assert await again.audit(DOC) == records
            assert await again.audit("other") == [_audit_record(99)]

    async def test_closed_store_refuses(self, store_url: str) -> None:
        store = await open_store(store_url).open()
        await store.close()
        with pytest.raises(StoreUnavailableError):
            await store.count(DOC)


def _audit_record(i: int) -> AuditRecord:
    verdict = ("rejected", "accepted", "pending")[i % 3]
    return AuditRecord(
        replica=f"r{i % 2}",
        seq=i + 1,
        key_id=f"k{i % 2}",
        subject=f"s{i}" if verdict != "rejected" else "mallory",
        connection="tcp 127.0.0.1:1",
        hlc=(1_700_000_000_000 << 16) + i,
        received=1_700_000_000.5 + i,
        summary=f"set /n{i} ✓",
        verdict=verdict,
        code="forbidden" if verdict == "rejected" else None,
    )


def _fork_of(doc: Document, text: str) -> Event:
    """The next event of ``doc``'s replica, typing ``text``: called twice with
    two texts, it gives two events with one id (an equivocation)."""
    twin = Document.load(doc.save(), doc.replica_id, doc.key, ticking_clock(2_000_000_000_000))
    twin.text("notes").insert(0, text)
    (event,) = twin.events_since(doc.version)
    return event
