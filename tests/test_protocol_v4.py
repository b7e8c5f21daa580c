"""Protocol 4 (docs/protocol.md): near parents as a run with toggled
exceptions, and one-byte frame headers for small messages. Both are used
only once the hellos chose version 4; a hostile run is a typed error."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.event import Event
from gether.errors import DecodeError, LimitExceededError, UnknownParentError
from gether.sync import Role, SyncConnection
from gether.sync.batch import NEAR, _listed_flags, _run, decode_batch, encode_batch, near_run
from gether.sync.framing import FrameReader, frame
from gether.sync.names import ReceivedNames, SentNames
from gether.sync.window import ReceivedWindow, SentWindow
from gether.testing.sync import DocumentsHost, deliver, pump


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 300), max_size=80))
def test_a_near_run_names_exactly_its_distances(distances: set[int]) -> None:
    written = near_run(list(distances))
    raw = tuple(written)
    near, end = _run(raw, 300, [10_000])
    assert end == len(raw) and sorted(near) == sorted(distances)
    assert len(written) <= len(distances) + 1  # never worse than listing each


def test_the_newest_received_but_one_is_a_run_and_one_exception() -> None:
    assert near_run([1, 2, 3, 5, 6, 7, 8]) == [8, -4]
    assert near_run([]) == [0]
    assert near_run([40, 90]) == [0, -40, -90]


@settings(max_examples=40, deadline=None)
@given(edits=st.integers(1, 15), writers=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_near_parents_as_runs_decode_to_their_events(edits: int, writers: int, seed: int) -> None:
    """Many writers typing between two of ours: our keystroke names most of
    what it received last, by run; the decoded bodies (parents in order,
    hashes filled in) are the events'."""
    rng = random.Random(seed)
    others = {f"w{i}": gether.Document(f"w{i}", signed=False) for i in range(writers)}
    server, mine = gether.Document("server", signed=False), gether.Document("mine", signed=False)
    near, sent = ReceivedWindow(), SentWindow()
    names_out, names_in = SentNames(), ReceivedNames()
    for _ in range(edits):
        for writer in rng.sample(list(others.values()), rng.randrange(len(others) + 1)):
            writer.apply_events(server.events_since(writer.version))
            writer.text("t").insert(0, "ab")
            server.apply_events(writer.events_since(server.version))
        fresh = [e for e in server.events_since(mine.version) if e.id[0] != "mine"]
        rng.shuffle(fresh)  # any causal order the server sends them in
        fresh.sort(key=lambda e: e.lamport)
        mine.apply_events(fresh)
        near.extend(e.id for e in fresh)
        sent.extend(e.id for e in fresh)
        text = mine.text("t")
        text.insert(rng.randrange(len(text) + 1), "x")
        held = {e.id: e for e in server.events_since(None)}
        batch = [e for e in mine.events_since(server.version) if e.id[0] == "mine"]
        records = encode_batch(batch, held.get, near=near, names=names_out, runs=True)
        decoded = decode_batch(records, held.get, 100, sent.at, names_in, runs=True)
        assert [e.body for e in decoded] == [e.body for e in batch]
        assert [e.hash for e in decoded] == [e.hash for e in batch]
        server.apply_events(batch)


def _keystroke_on(received: list[Event], parents_order: int = 1, me: str = "me") -> Event:
    """An unsigned event of replica ``me`` naming ``received`` as parents, in
    order or (``parents_order`` -1) in reverse: bodies keep the order given."""
    doc = gether.Document(me, signed=False)
    doc.counter("c").increment(1)
    first = doc.events_since(None)[0]
    parents = tuple(sorted(((e.id, e.hash) for e in received), reverse=parents_order < 0))
    return Event(
        (me, 1), first.counter, max(e.lamport for e in received) + 1, first.hlc,
        first.key_id, None, parents, None, first.ops,
    )  # fmt: skip


def _received(count: int) -> list[Event]:
    out = []
    for i in range(count):
        doc = gether.Document(f"r{i:03d}", signed=False)
        doc.counter("c").increment(1)
        out.extend(doc.events_since(None))
    return out


@pytest.mark.parametrize("order", [1, -1], ids=["in-order", "reversed"])
def test_an_event_whose_parents_are_out_of_order_names_them_in_full(order: int) -> None:
    """The receiver rebuilds run parents in order: an event whose body has
    them otherwise is written without near references, and still decodes
    to its body."""
    received = _received(5)
    near, sent = ReceivedWindow(), SentWindow()
    near.extend(e.id for e in received)
    sent.extend(e.id for e in received)
    event = _keystroke_on(received, order)
    held = {e.id: e for e in received}
    records = encode_batch([event], held.get, near=near, names=SentNames(), runs=True)
    (decoded,) = decode_batch(records, held.get, 10, sent.at, ReceivedNames(), runs=True)
    assert decoded.body == event.body
    fields = msgpack.Unpacker()
    fields.feed(records)
    fields.unpack()  # the table
    flags = _listed_flags(fields.unpack())
    assert bool(flags & NEAR) == (order == 1)


def test_a_batch_with_parents_in_order_and_not_shares_what_both_name() -> None:
    received = _received(4)
    near, sent = ReceivedWindow(), SentWindow()
    near.extend(e.id for e in received)
    sent.extend(e.id for e in received)
    batch = [_keystroke_on(received, 1, "me"), _keystroke_on(received, -1, "me2")]
    held = {e.id: e for e in received}
    records = encode_batch(batch, held.get, near=near, names=SentNames(), runs=True)
    decoded = decode_batch(records, held.get, 10, sent.at, ReceivedNames(), runs=True)
    assert [e.body for e in decoded] == [e.body for e in batch]


def _near_record(parents: list[object], near_base: int = 5) -> bytes:
    """A listed-table batch of one record of ``me`` (seq 1) whose parents are
    ``parents`` (raw), as protocol 4 writes them."""
    flags = _listed_flags(NEAR | 128)  # NEAR and KEY, no base
    items: list[object] = [["me"], flags, 0, 1, 0, 1000, near_base, parents, 1]
    items += [[[1, "x"]], b"k" * 8]
    return b"".join(msgpack.packb(item) for item in items)


@pytest.mark.parametrize(
    ("parents", "error"),
    [
        ([6], DecodeError),  # a run past what was received
        ([-1], DecodeError),  # no run first
        ([2, -1, -1], DecodeError),  # toggled twice
        ([0, 0, 1, b"h" * 32, -2], DecodeError),  # a near reference after a full one
        (["x"], DecodeError),
        ([0, -9], DecodeError),  # before the stream began
        ([0, -5], UnknownParentError),  # sent, but not remembered
    ],
    ids=["past-base", "no-run", "twice", "late", "not-int", "before-start", "unremembered"],
)
def test_a_malformed_run_is_a_typed_error(parents: list[object], error: type[Exception]) -> None:
    sent = SentWindow()
    sent.extend([("a", 1), ("a", 2)])
    sent._start = 3  # positions 3 and 4 are remembered, 0-2 forgotten
    with pytest.raises(error):
        decode_batch(_near_record(parents), {}.get, 10, sent.at, ReceivedNames(), runs=True)


def test_runs_naming_more_parents_than_a_batch_may_is_a_limit() -> None:
    sent = SentWindow()
    with pytest.raises(LimitExceededError):
        decode_batch(
            _near_record([5_000], near_base=6_000), {}.get, 10, sent.at, ReceivedNames(), runs=True
        )


def test_a_short_header_frames_a_small_payload() -> None:
    assert frame(b"x" * 127, short=True)[:1] == b"\xff"
    assert frame(b"x" * 128, short=True)[:4] == (128).to_bytes(4, "big")
    assert frame(b"x", short=False) == b"\x00\x00\x00\x01x"
    reader = FrameReader(1 << 20, short=True)
    data = frame(b"ab", True) + frame(b"c" * 300, True) + frame(b"d", True)
    got = [p for byte in data for p in reader.feed(bytes((byte,)))]  # any split
    assert got == [b"ab", b"c" * 300, b"d"]
    with pytest.raises(DecodeError):
        reader.feed(b"\x80")  # empty
    with pytest.raises(LimitExceededError):  # before protocol 4: a length over 2 GiB
        FrameReader(1 << 20).feed(b"\x81xyz")


@pytest.mark.parametrize("versions", [(1, 2, 3, 4), (1, 2, 3)], ids=["v4", "v3-peer"])
def test_a_v4_pair_uses_short_frames_and_a_v3_peer_gets_long_ones(
    versions: tuple[int, ...],
) -> None:
    server_doc = gether.Document("srv", signed=False)
    server_doc.text("t").insert(0, "hello")
    host = DocumentsHost({"d": server_doc}, gether.Document, "srv")
    client_host = DocumentsHost({"d": gether.Document("c", signed=False)})
    client = SyncConnection(client_host, "c", Role.CLIENT, now=0.0, versions=versions)
    server = SyncConnection(host, "srv", Role.SERVER, now=0.0)
    client.subscribe("d")
    pump(client, client_host, server, host)
    assert client.protocol == server.protocol == max(versions)
    mine = client_host.document("d")
    mine.text("t").insert(5, "!")
    client.push("d")
    keystroke = client.data_to_send()
    assert bool(keystroke[0] & 0x80) == (max(versions) >= 4)
    deliver(server, host, keystroke, 0.0)
    ack = server.data_to_send()
    assert ack and bool(ack[0] & 0x80) == (max(versions) >= 4)
    client.receive_data(ack, 0.0)
    pump(client, client_host, server, host)
    assert server_doc.to_json() == mine.to_json() == {"t": "hello!"}
