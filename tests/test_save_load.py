"""Saving and loading: exact state, history intact, fast open, bad bytes refused."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.testing.histories import history


def rich_doc() -> gether.Document:
    d = gether.Document(replica_id="alice")
    d["title"] = "T"
    d["todos"] = [{"text": "milk", "done": False}, {"text": "eggs", "done": True}]
    d["todos"].move(0, 1)
    d["notes"] = gether.Text("hello world")
    d["notes"].delete(0, 6)
    d["likes"] = gether.Counter(3)
    d["likes"].decrement()
    other = gether.Document(replica_id="bob")
    other.merge(d)
    other["notes"].insert(0, "big ")
    other["todos"][0]["done"] = True
    d.merge(other)
    return d


def test_round_trip_keeps_state_version_and_history() -> None:
    d = rich_doc()
    loaded = gether.Document.load(d.save())
    assert loaded.to_json() == d.to_json()
    assert loaded.version == d.version
    assert loaded.replica_id not in ("alice", "bob")
    assert [e.hash for e in loaded.events_since(None)] == [e.hash for e in d.events_since(None)]
    again = gether.Document.load(loaded.save())
    assert again.to_json() == d.to_json()


def test_loaded_document_keeps_editing_and_syncing() -> None:
    d = rich_doc()
    loaded = gether.Document.load(d.save())
    loaded["notes"].insert(0, "!")
    loaded["todos"].append("new")
    d["likes"].increment(10)
    loaded.merge(d)
    d.merge(loaded)
    assert loaded.to_json() == d.to_json()
    fresh = gether.Document(replica_id="carol")
    fresh.apply_events(e.to_bytes() for e in loaded.events_since(None))
    assert fresh.to_json() == d.to_json()


def test_same_replica_continues_with_its_key() -> None:
    d = rich_doc()
    again = gether.Document.load(d.save(), replica_id="alice", key=d.key)
    again["title"] = "T2"
    assert again.events_since(None)[-1].id == gether.EventId("alice", d.version["alice"] + 1)
    peer = gether.Document(replica_id="zed")
    peer.merge(d)
    peer.merge(again)
    assert peer["title"] == "T2"
    with pytest.raises(gether.UsageError):
        gether.Document.load(d.save(), replica_id="alice")  # a new key would fork alice


def test_waiting_events_survive_a_save() -> None:
    src = rich_doc()
    events = src.events_since(None)
    d = gether.Document(replica_id="zed")
    d.apply_events([e.to_bytes() for e in events[1:]])  # the first is missing
    assert d.pending
    loaded = gether.Document.load(d.save())
    assert loaded.pending == d.pending
    loaded.apply_events([events[0].to_bytes()])
    assert loaded.to_json() == src.to_json() and not loaded.pending


@pytest.mark.parametrize(
    "data", [b"", b"GTd", b"GTd\x01", b"GTd\x01garbage", b"GTd\x07xx", b"{}", b"\x00" * 100]
)
def test_bad_saves_are_decode_errors(data: bytes) -> None:
    with pytest.raises(gether.DecodeError):
        gether.Document.load(data)


def test_corrupted_save_is_refused_not_misread() -> None:
    data = bytearray(rich_doc().save())
    for i in range(4, len(data), max(1, len(data) // 60)):
        corrupted = bytes(data[:i]) + bytes([data[i] ^ 0x55]) + bytes(data[i + 1 :])
        try:
            loaded = gether.Document.load(corrupted)
            loaded.events_since(None)
        except gether.GetherError:
            continue
        # a flip the format cannot notice (inside a string) must still load cleanly
        assert isinstance(loaded.to_json(), dict)


def test_loaded_document_keeps_wall_clock_last_writer_wins() -> None:
    d = gether.Document(replica_id="old", clock=lambda: 1000)
    d["title"] = "then"
    loaded = gether.Document.load(d.save())
    loaded["title"] = "later"
    assert loaded.events_since(None)[-1].hlc >> 16 > 1_600_000_000_000  # wall-clock millis


def test_history_text_is_rebuilt_from_visible_and_deleted_text() -> None:
    # several texts, nested ones, typed by two replicas, with deletions: each
    # inserted character is saved once, in the visible or the deleted text
    a = gether.Document(replica_id="a")
    a["t1"] = gether.Text("hello brave new world")
    a["items"] = [gether.Text("first item"), {"note": gether.Text("nested")}]
    b = gether.Document(replica_id="b")
    b.merge(a)
    a["t1"].delete(6, 6)
    b["t1"].insert(0, "¡olé! ")
    b["items"][0].delete(0, 6)
    a["items"][1]["note"].insert(6, " note 🎉")
    a.merge(b)
    a["t1"].delete(0, 3)
    loaded = gether.Document.load(a.save())
    assert loaded.to_json() == a.to_json()
    assert [e.hash for e in loaded.events_since(None)] == [e.hash for e in a.events_since(None)]
    assert gether.Document.load(loaded.save()).to_json() == a.to_json()


def test_unchanged_loaded_document_saves_the_same_bytes() -> None:
    data = rich_doc().save()
    assert gether.Document.load(data).save() == data


def test_local_edits_after_load_leave_the_history_encoded() -> None:
    d = rich_doc()
    again = gether.Document.load(d.save(), replica_id="alice", key=d.key)
    again["notes"].insert(0, ">")
    with again.transaction():
        again["title"] = "T3"
        again["likes"].increment(2)
    assert again._log_value is None  # the history is still encoded
    assert again.version["alice"] == d.version["alice"] + 2
    reference = gether.Document.load(d.save(), replica_id="alice", key=d.key)
    assert reference.heads  # decodes the history first: the same edits must make the same events
    reference["notes"].insert(0, ">")
    with reference.transaction():
        reference["title"] = "T3"
        reference["likes"].increment(2)

    def shape(doc: gether.Document) -> list[object]:  # all but clocks and hashes
        return [
            (e.id, [p for p, _ in e.parents], e.prev is None, e.lamport, e.counter, e.ops)
            for e in doc.events_since(None)
        ]

    assert shape(again) == shape(reference)
    peer = gether.Document(replica_id="zed")
    peer.merge(d)
    peer.merge(again)
    assert peer.to_json() == again.to_json()


def test_summary_that_contradicts_the_history_is_refused() -> None:
    data = rich_doc().save()
    raw = list(msgpack.unpackb(data[4:], use_list=False))
    summary = list(raw[1])
    (rep, seq, _), *rest = summary[3]
    summary[3] = [(rep, seq, bytes(32)), *rest]
    raw[1] = summary
    forged = data[:4] + msgpack.packb(raw)
    loaded = gether.Document.load(forged)
    with pytest.raises(gether.DecodeError):
        loaded.events_since(None)


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 5),
    edits=st.integers(1, 80),
    cut=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_saved_with_a_tail_is_the_replayed_save(
    replicas: int, edits: int, cut: float, seed: int
) -> None:
    """A server's snapshot (``saved_with``: the tail's ops and events added to
    a loaded save, no log) opens to the same replica as replaying the tail
    and saving, and that replica goes on syncing."""
    events, source = history(replicas, edits, seed)
    base = gether.Document("relay")
    base.apply_events(events[: int(len(events) * cut)])
    base.drop_pending(base.pending)  # a server stores what it applied, no more
    tail = [e for e in events if not base.version.includes(e.id)]
    data = base.save()
    quick = gether.Document.load(data, replica_id="relay", key=base.key).saved_with(tail)
    slow = gether.Document.load(data, replica_id="relay", key=base.key)
    slow.apply_events(tail)
    a = gether.Document.load(quick)
    b = gether.Document.load(slow.save())
    assert a.to_json() == b.to_json() == source.to_json()
    assert a.version == b.version and a.heads == b.heads
    assert [e.body for e in a.events_since(None)] == [e.body for e in b.events_since(None)]
    whole = gether.Document.load(gether.Document("relay").saved_with(events))  # no save before
    assert whole.to_json() == a.to_json() and whole.version == a.version
    source.text("after").insert(0, "x")
    a.apply_events(source.events_since(a.version))
    assert a.to_json() == source.to_json()
