"""Durable replicas: ``gether.Document.open`` on a store."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.errors import StoreUnavailableError, UsageError
from gether.store import open_blocking_store
from gether.store.journal import SnapshotPolicy
from gether.testing.histories import edit, history, replicas

DOC = "notes"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/replica.db"


def test_edits_survive_reopening(url: str) -> None:
    with gether.Document.open(url, DOC) as doc:
        doc["title"] = "Groceries"
        doc.text("notes").insert(0, "milk")
        with doc.transaction():
            doc.list("todos").append({"text": "eggs", "done": False})
            doc.counter("likes").increment(2)
        replica, state, version = doc.replica_id, doc.to_json(), doc.version
    with gether.Document.open(url, DOC) as again:
        assert again.replica_id == replica
        assert again.to_json() == state
        assert again.version == version
        again.text("notes").insert(4, " and bread")  # the chain goes on
        assert again.version[replica] == version[replica] + 1
    with gether.Document.open(url, DOC) as third:
        assert third.get("notes") == "milk and bread"


def test_an_edit_is_stored_when_it_returns(url: str) -> None:
    reader = open_blocking_store(url)
    with gether.Document.open(url, DOC) as doc:
        doc["a"] = 1
        assert reader.count(DOC) == 1
        with doc.transaction():
            doc["b"] = 2
            doc["c"] = 3
            assert reader.count(DOC) == 1
        assert reader.count(DOC) == 2
        assert reader.version(DOC) == doc.version
    reader.close()


def test_received_events_are_stored(url: str) -> None:
    events, source = history(seed=21)
    with gether.Document.open(url, DOC) as doc:
        doc.apply_events(events)
        doc["mine"] = True
    with gether.Document.open(url, DOC) as again:
        expected = source.to_json() | {"mine": True}
        assert again.to_json() == expected


def test_several_documents_and_explicit_identity(url: str) -> None:
    (alice,) = replicas(1, prefix="alice")
    with gether.Document.open(url, "one", replica_id="alice", key=alice.key) as one:
        one["x"] = 1
    with gether.Document.open(url, "two") as two:
        two["y"] = 2
        assert two.replica_id != "alice"
    with gether.Document.open(url, "one", replica_id="alice", key=alice.key) as one:
        assert one.to_json() == {"x": 1}
    (other,) = replicas(1, prefix="mallory")
    with pytest.raises(UsageError):
        gether.Document.open(url, "one", replica_id="alice", key=other.key)
    with pytest.raises(UsageError):
        gether.Document.open(url, "one", replica_id="alice")


def test_a_failed_write_changes_nothing(url: str) -> None:
    doc = gether.Document.open(url, DOC)
    doc["kept"] = 1
    before, version = doc.to_json(), doc.version
    doc._journal.store.close()  # type: ignore[union-attr]
    with pytest.raises(StoreUnavailableError):
        doc["lost"] = 2
    with pytest.raises(StoreUnavailableError), doc.transaction():
        doc.text("t").insert(0, "abc")
        doc["lost"] = 3
    assert doc.to_json() == before
    assert doc.version == version
    with gether.Document.open(url, DOC) as again:
        assert again.to_json() == before


def test_closed_replica_is_read_only(url: str) -> None:
    doc = gether.Document.open(url, DOC)
    doc["a"] = 1
    doc.close()
    assert doc.to_json() == {"a": 1}
    with pytest.raises(gether.ReadOnlyError):
        doc["b"] = 2


def test_bad_snapshot_is_ignored(url: str) -> None:
    with gether.Document.open(url, DOC, snapshots=SnapshotPolicy(every_events=3)) as doc:
        for i in range(10):
            doc[f"k{i}"] = i
        state = doc.to_json()
    store = open_blocking_store(url)
    from gether.store import Snapshot

    store.save_snapshot(DOC, Snapshot(gether.Version({"x": 99}), b"garbage"))
    store.close()
    with gether.Document.open(url, DOC) as again:
        assert again.to_json() == state


def test_memory_url() -> None:
    with gether.Document.open("memory://test_memory_url", DOC) as doc:
        doc["a"] = 1
    with gether.Document.open("memory://test_memory_url", DOC) as again:
        assert again.to_json() == {"a": 1}


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), every=st.integers(1, 30))
def test_snapshot_plus_tail_equals_full_replay(tmp_path_factory: pytest.TempPathFactory,
                                               seed: int, every: int) -> None:  # fmt: skip
    """Opening from the newest snapshot and the events after it gives exactly
    what replaying every event gives, wherever the snapshot fell."""
    url = f"sqlite:///{tmp_path_factory.mktemp('snap')}/r.db"
    rng = random.Random(seed)
    events, _ = history(replica_count=3, edits=rng.randint(5, 60), seed=seed)
    with gether.Document.open(url, DOC, snapshots=SnapshotPolicy(every_events=every)) as doc:
        cut = rng.randint(0, len(events))
        doc.apply_events(events[:cut])
        for _ in range(rng.randint(0, 20)):
            edit(doc, rng)
        doc.apply_events(events[cut:])
        edit(doc, rng)
    with gether.Document.open(url, DOC) as from_snapshot:
        store = open_blocking_store(url)
        assert (store.load_snapshot(DOC) is not None) == (store.count(DOC) >= every)
        store.delete_snapshots(DOC)
        store.close()
        with gether.Document.open(url, DOC) as from_events:
            assert from_snapshot.to_json() == from_events.to_json()
            assert from_snapshot.version == from_events.version
            assert {e.hash for e in from_snapshot.events_since(None)} == {
                e.hash for e in from_events.events_since(None)
            }
