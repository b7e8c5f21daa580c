"""Name tables (protocol 3, ``sync/names.py``): a batch made for one
connection names the replicas its sender listed there before by their place.
Both sides must list the same names in the same order, whatever the batches;
a reference to a place never listed is a fatal ``decode`` error."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.event import Event
from gether.errors import DecodeError
from gether.sync import Role, SyncConnection
from gether.sync.batch import decode_batch, encode_batch
from gether.sync.framing import frame
from gether.sync.messages import EventsV2, encode
from gether.sync.names import MAX_NAMES, ReceivedNames, SentNames
from gether.sync.window import ReceivedWindow, SentWindow
from gether.testing.histories import history
from gether.testing.sync import DocumentsHost, pump


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 6),
    edits=st.integers(1, 60),
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_batches_in_a_row_decode_to_their_events(
    replicas: int, edits: int, cuts: list[int], seed: int
) -> None:
    """Any history cut into batches of any sizes, sent in a row on one
    connection: every batch decodes to exactly its events."""
    events, _ = history(replicas, edits, seed)
    held: dict[tuple[str, int], Event] = {}
    sent, received = SentNames(), ReceivedNames()
    start, i = 0, 0
    while start < len(events):
        batch = events[start : start + cuts[i % len(cuts)]]
        records = encode_batch(batch, held.get, names=sent)
        decoded = decode_batch(records, held.get, 1_000, names=received)
        assert [e.body for e in decoded] == [e.body for e in batch]
        held.update((e.id, e) for e in batch)
        start, i = start + len(batch), i + 1
    assert [received.at(i) for i in range(len(received._names))] == list(sent._places)


def test_a_replica_named_before_costs_a_byte() -> None:
    doc = gether.Document(signed=False)
    text = doc.text("t")
    text.insert(0, "a")
    held = {e.id: e for e in doc.events_since(None)}
    text.insert(1, "b")
    (keystroke,) = [e for e in doc.events_since(None) if e.id not in held]
    names = SentNames()
    first = encode_batch([keystroke], held.get, names=names)
    again = encode_batch([keystroke], held.get, names=names)
    plain = encode_batch([keystroke], held.get)
    # the table: a list of the id (first), then of its place: 17 bytes, then 1
    assert len(first) - len(again) == len(doc.replica_id)
    assert len(again) < len(plain)
    assert doc.replica_id.encode() in first and doc.replica_id.encode() not in again


def test_past_the_limit_names_are_spelled_out_on_both_sides() -> None:
    sent, received = SentNames(), ReceivedNames()
    docs = [gether.Document(f"r{i:05d}", signed=False) for i in range(MAX_NAMES + 3)]
    rng = random.Random(1)
    order = [*docs, *rng.sample(docs, 50)]
    for doc in order:
        doc.counter("c").increment(1)
        events = doc.events_since(None)
        records = encode_batch(events, {}.get, names=sent)
        assert decode_batch(records, {}.get, 10, names=received) == events
    assert len(received._names) == MAX_NAMES == len(sent._places)


def test_a_listed_table_is_malformed_without_names() -> None:
    doc = gether.Document(signed=False)
    doc.counter("c").increment(1)
    records = encode_batch(doc.events_since(None), {}.get, names=SentNames())
    with pytest.raises(DecodeError):
        decode_batch(records, {}.get, 10)  # a v2 connection


@pytest.mark.parametrize(
    "table",
    [(0,), ("ok", 1), (-1,), (b"x",), ("",), ("a,b",), ("x" * 65,), ((1,),)],
    ids=["unlisted", "past-the-end", "negative", "bytes", "empty", "comma", "long", "nested"],
)
def test_a_bad_listed_table_is_a_decode_error(table: tuple[object, ...]) -> None:
    with pytest.raises(DecodeError):
        decode_batch(
            msgpack.packb(list(table)) + msgpack.packb(0), {}.get, 10, names=ReceivedNames()
        )


def test_a_reference_to_a_name_never_listed_closes_the_connection() -> None:
    """Over a real v3 connection pair: the server answers ``decode`` and
    closes; its document is unchanged."""
    server_doc = gether.Document("srv", signed=False)
    server_doc.counter("c").increment(1)
    host = DocumentsHost({"d": server_doc}, gether.Document, "srv")
    client_host = DocumentsHost({}, gether.Document, "c")
    client = SyncConnection(client_host, "c", Role.CLIENT, now=0.0)
    server = SyncConnection(host, "srv", Role.SERVER, now=0.0)
    client.subscribe("d")
    pump(client, client_host, server, host)
    assert client.protocol == server.protocol >= 3
    mine = client_host.document("d")
    mine.counter("c").increment(5)
    events = mine.events_since(server_doc.version)
    records = encode_batch(events, server_doc.known_event, names=SentNames())
    unpacker = msgpack.Unpacker()
    unpacker.feed(records)
    table = unpacker.unpack()
    assert all(type(name) is str for name in table)
    bad = msgpack.packb([7] * len(table)) + records[unpacker.tell() :]  # never listed
    before = server_doc.to_json()
    server.receive_data(frame(encode(EventsV2(1, bad), protocol=3)), 0.0)
    assert server.closed and server.close_reason is not None
    assert server.close_reason.code == "decode"
    assert server_doc.to_json() == before


@settings(max_examples=40, deadline=None)
@given(edits=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_near_parents_and_clock_bits_survive_a_listed_table(edits: int, seed: int) -> None:
    """A listed table's records write ``NEAR`` and ``HLC_LOW`` in each other's
    bits: events naming parents by place, with or without a logical clock
    part, decode to their bodies."""
    rng = random.Random(seed)
    server = gether.Document("server", signed=False)
    mine = gether.Document("mine", signed=False)
    received: list[Event] = []
    near, sent = ReceivedWindow(), SentWindow()
    names_out, names_in = SentNames(), ReceivedNames()
    writers: dict[str, gether.Document] = {}
    for _ in range(edits):
        name = f"w{rng.randrange(5)}"
        writer = writers.setdefault(name, gether.Document(name, signed=False))
        writer.apply_events(server.events_since(writer.version))
        writer.text("t").insert(0, "ab")
        server.apply_events(writer.events_since(server.version))
        fresh = [e for e in server.events_since(mine.version) if e.id[0] != "mine"]
        mine.apply_events(fresh)
        received += fresh
        near.extend(e.id for e in fresh)  # what mine received, and the server sent
        sent.extend(e.id for e in fresh)
        text = mine.text("t")
        text.insert(rng.randrange(len(text) + 1), "x")
        held = {e.id: e for e in server.events_since(None)}
        batch = [e for e in mine.events_since(server.version) if e.id[0] == "mine"]
        records = encode_batch(batch, held.get, near=near, names=names_out)
        decoded = decode_batch(records, held.get, 100, sent.at, names_in)
        assert [e.body for e in decoded] == [e.body for e in batch]
        server.apply_events(batch)
