"""Sync protocol v2: compact batches that decode to the identical canonical
events, hostile batches, version negotiation, cumulative acks, one encoding
for every caught-up subscriber, and unsigned documents."""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import DecodeError, GetherError, LimitExceededError, UnknownParentError
from gether.server.hub import HubConfig
from gether.server.serve import start_server
from gether.sync import Hello, Limits, Role, SyncConnection
from gether.sync.batch import BASE, KEY, NEAR, decode_batch, encode_batch, encode_table
from gether.sync.connection import encode_events_frame
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import MAGIC, AckV2, Error, EventsV2, MessageKind, decode, encode
from gether.sync.tracker import VersionTracker
from gether.testing.histories import edit, history
from gether.testing.sync import DocumentsHost, deliver, pump


def _signed(events: list[Event]) -> list[Event]:
    for event in events:
        _ = event.signature  # sign what waits to be signed
    return events


def _none(_: tuple[str, int]) -> Event | None:
    return None


# -- round trips -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    replicas=st.integers(1, 4),
    edits=st.integers(1, 80),
    split=st.floats(0, 1),
    thin=st.booleans(),
)
def test_batches_round_trip_to_identical_events(
    seed: int, replicas: int, edits: int, split: float, thin: bool
) -> None:
    """Whatever the receiver holds (a causally closed prefix), the events it
    decodes have the very bodies (so hashes) of the sent ones, and the
    signatures, all of them or each author's newest."""
    _, source = history(replica_count=replicas, edits=edits, seed=seed)
    events = _signed(source.events_since(None))
    cut = int(len(events) * split)
    receiver = gether.Document()
    receiver.apply_events(events[:cut])
    sent = events[cut:]
    data = encode_batch(
        sent,
        source.known_event,
        lambda i: receiver.known_event(i) is not None,
        thin_signatures=thin,
    )
    got = decode_batch(data, receiver.known_event, 10_000)
    assert [e.body for e in got] == [e.body for e in sent]
    assert [e.hash for e in got] == [e.hash for e in sent]
    if not thin:
        assert [e.signature for e in got] == [e.signature for e in sent]
    else:
        newest = {e.id[0]: e.id for e in sent if e.signature is not None}
        assert {e.id for e in got if e.signature is not None} == set(newest.values())
    receiver.apply_events(got)  # thin signatures still authenticate (hash chains)
    assert receiver.to_json() == source.to_json()
    assert not receiver.pending


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_without_any_held_event_every_parent_carries_its_hash(seed: int) -> None:
    _, source = history(replica_count=2, edits=30, seed=seed)
    events = _signed(source.events_since(None))
    tail = events[len(events) // 2 :]
    data = encode_batch(tail, source.known_event, lambda _: False)
    assert [e.body for e in decode_batch(data, _none, 10_000)] == [e.body for e in tail]


def test_a_parent_the_receiver_lacks_is_unknown_parent() -> None:
    _, source = history(replica_count=1, edits=10, seed=1)
    events = source.events_since(None)
    data = encode_batch(events[5:], source.known_event)  # assumes the receiver holds 1..5
    with pytest.raises(UnknownParentError) as caught:
        decode_batch(data, _none, 10_000)
    assert caught.value.code == "unknown_parent"


def test_tables_front_code_neighbours() -> None:
    names = ["dummy0001", "dummy0002", "dummy0010", "writer"]
    text = encode_table(names)
    assert len(text) < len(",".join(names))
    from gether.sync.batch import decode_table

    assert decode_table(text) == tuple(names)


# -- hostile batches -------------------------------------------------------------------


def _batch() -> tuple[bytes, list[Event]]:
    _, source = history(replica_count=2, edits=20, seed=2)
    events = _signed(source.events_since(None))
    return encode_batch(events, source.known_event, lambda _: False), events


def test_every_truncation_is_a_typed_error_or_a_prefix() -> None:
    data, events = _batch()
    bodies = [e.body for e in events]
    for cut in range(len(data)):
        try:
            got = decode_batch(data[:cut], _none, 10_000)
        except (DecodeError, UnknownParentError):
            continue
        assert [e.body for e in got] == bodies[: len(got)]  # cut at a record boundary


@pytest.mark.parametrize(
    "stream",
    [
        [5],  # the table is a string
        ["a", BASE, 0, 1, 0, [], (4,)],  # a base for a first event
        ["a", 0, 7, 1, 0, 0, [], 1, (4,), b"k" * 8],  # replica index out of the table
        ["a", 1 << 12, 0, 1, 0, 0, [], 1, (4,)],  # unknown flag
        ["a", 0, 0, 0, 0, 0, [], 1, (4,), b"k" * 8],  # seq 0
        ["a", 0, 0, 1, -5, 0, [], 1, (4,), b"k" * 8],  # a counter below zero
        ["a", 0, 0, 1, 0, 0, [0], 1, (4,), b"k" * 8],  # half a parent
        ["a", 0, 0, 1, 0, 0, [0, 1, b"short"], 1, (4,), b"k" * 8],  # a short parent hash
        ["a", 0, 0, 1, 0, 0, [], 1, (4,), b"k" * 3],  # a short key id
        ["a", 0, 0, 1, 0, 0, [], 1, (4, msgpack.ExtType(16, b"\x09")), b"k" * 8],  # bad ref
        ["a,\x05x", 0],  # a shared prefix longer than the previous id
        ["a b", 0],  # not a replica id
    ],
)
def test_malformed_records_are_decode_errors(stream: list[object]) -> None:
    data = b"".join(msgpack.packb(item, use_bin_type=True) for item in stream)
    with pytest.raises(DecodeError):
        decode_batch(data, _none, 10_000)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdb\xff\xff\xff\xff",  # a table declaring 4 GiB
        b"\xa1a\xdd\xff\xff\xff\xff",  # parents declaring 4 billion entries
        b"\xa1a\x00\x00\x01\x00\x00\xc6\x7f\xff\xff\xff",  # a 2 GiB parent list of bins
    ],
)
def test_huge_declared_lengths_allocate_nothing(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(data, _none, 10_000)


def test_too_many_records_is_a_limit() -> None:
    data, events = _batch()
    with pytest.raises(LimitExceededError):
        decode_batch(data, _none, len(events) - 1)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_junk_is_only_ever_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(GetherError):
        decode_batch(data, _none, 100)


def test_v2_messages_round_trip_and_inflation_is_bounded() -> None:
    data, _ = _batch()
    for compress_above in (0, 10**9):
        payload = encode(EventsV2(7, data), compress_above, protocol=2)
        assert decode(payload, protocol=2) == EventsV2(7, data)
    assert decode(encode(AckV2(3, 12), protocol=2), protocol=2) == AckV2(3, 12)
    bomb = msgpack.packb([MessageKind.EVENTS, 1]) + msgpack.packb(zlib.compress(bytes(1 << 20)))
    with pytest.raises(LimitExceededError):
        decode(bomb, protocol=2, max_bytes=1 << 16)
    with pytest.raises(DecodeError):  # an Ack of v1 on a v2 connection
        decode(msgpack.packb([MessageKind.ACK, "d", 1, {}]), protocol=2)


# -- negotiation -----------------------------------------------------------------------


def _pair(
    client: tuple[int, ...], server: tuple[int, ...], docs: dict[str, gether.Document] | None = None
) -> tuple[SyncConnection, DocumentsHost, SyncConnection, DocumentsHost]:
    host_a = DocumentsHost({}, gether.Document, "a-host")
    host_b = DocumentsHost(docs or {}, gether.Document, "b-host")
    a = SyncConnection(host_a, "a", Role.CLIENT, now=0.0, versions=client)
    b = SyncConnection(host_b, "b", Role.SERVER, now=0.0, versions=server)
    return a, host_a, b, host_b


@pytest.mark.parametrize(
    ("client", "server", "chosen"),
    [((1, 2), (1, 2), 2), ((1, 2), (1,), 1), ((1,), (1, 2), 1), ((2,), (1, 2), 2)],
)
def test_the_highest_common_version_is_used(
    client: tuple[int, ...], server: tuple[int, ...], chosen: int
) -> None:
    _, source = history(replica_count=2, edits=40, seed=8)
    a, host_a, b, host_b = _pair(client, server, {"d": source})
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    assert a.protocol == b.protocol == chosen
    assert host_a.document("d").to_json() == source.to_json()
    assert a.is_synced("d") and b.is_synced("d")


def test_no_common_version_is_unsupported() -> None:
    a, _, b, _ = _pair((2,), (1,))
    b.receive_data(a.data_to_send(), 0.0)
    assert b.closed and b.close_reason is not None
    assert b.close_reason.code == "unsupported_version"
    hello = frame(msgpack.packb([MessageKind.HELLO, MAGIC, [5, 6], "c", None]))
    conn = SyncConnection(DocumentsHost({}), "s", Role.SERVER, now=0.0)
    conn.receive_data(hello, 0.0)
    assert conn.close_reason is not None and conn.close_reason.code == "unsupported_version"


def test_a_v1_hello_is_what_v1_peers_send() -> None:
    assert encode(Hello("c")) == msgpack.packb([MessageKind.HELLO, MAGIC, 1, "c", None])
    offered = decode(encode(Hello("c", None, 2, (1, 2))))
    assert isinstance(offered, Hello) and offered.versions == (1, 2)


# -- acks and fan-out -------------------------------------------------------------------


def test_acks_are_cumulative_and_at_most_once_a_second() -> None:
    a, host_a, b, host_b = _pair((1, 2), (1, 2))
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    doc = host_a.document("d")
    acks = 0
    for i in range(10):  # ten batches within a second: one ack, or none yet
        doc.text("t").insert(0, str(i))
        a.push("d")
        b.receive_data(a.data_to_send(), 0.5)
        for received in b.events_received():
            host_b.document("d").apply_events(received.events)
            b.acknowledge(received)
        out = b.data_to_send()
        acks += sum(
            isinstance(decode(p, protocol=2), AckV2) for p in FrameReader(1 << 20).feed(out)
        )
        a.receive_data(out, 0.5)
    assert acks <= 1
    assert not a.is_synced("d")
    b.tick(2.0)  # a second later the owed ack goes, covering all ten
    a.receive_data(b.data_to_send(), 2.0)
    assert a.is_synced("d")


def test_a_ping_asks_for_the_acks_at_once() -> None:
    a, host_a, b, host_b = _pair((1, 2), (1, 2))
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    for i in range(5):
        host_a.document("d").text("t").insert(0, str(i))
        a.push("d")
        pump(a, host_a, b, host_b)
    nonce = a.ping(0.0)
    pump(a, host_a, b, host_b)
    assert a.pong_received(nonce) and a.is_synced("d") and b.is_synced("d")


def test_one_encoding_serves_every_caught_up_subscriber() -> None:
    server_doc = gether.Document("srv")
    server_doc.text("t").insert(0, "hello")
    host = DocumentsHost({"d": server_doc}, gether.Document, "srv")
    clients = []
    for name in ("c1", "c2"):
        # v2: from v3 a batch made for one connection lists its names there
        # (a hub's fan-out, made for all, does not: test_fanout.py)
        conn = SyncConnection(
            DocumentsHost({}, gether.Document, name), name, Role.CLIENT, now=0.0, versions=(1, 2)
        )
        server = SyncConnection(host, "srv", Role.SERVER, now=0.0, versions=(1, 2))
        conn.subscribe("d")
        pump(conn, conn.host, server, host)  # type: ignore[arg-type]
        clients.append(server)
    server_doc.text("t").insert(5, " world")
    new = server_doc.events_since(None)[-1:]
    sent = []
    for server in clients:
        server.push("d")
        sent.append(server.data_to_send())
    expected = encode_events_frame(1, new, server_doc.known_event)
    assert sent == [expected, expected]


def test_unknown_parent_is_answered_by_a_resend_with_hashes() -> None:
    a, host_a, b, host_b = _pair((1, 2), (1, 2))
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    doc = host_a.document("d")
    for i in range(6):
        doc.text("t").insert(0, str(i))
    state = a._docs["d"]
    state.peer_has = VersionTracker(Version({doc.replica_id: 3}))  # as if b held events it refused
    a.push("d")
    b.receive_data(a.data_to_send(), 0.0)
    assert b.events_received() == []  # unknown_parent, in that batch's place
    a.receive_data(b.data_to_send(), 0.0)
    assert a.errors_received() == []  # not an error for the owner: a resend
    b.receive_data(a.data_to_send(), 0.0)
    (received,) = b.events_received()
    assert [e.id[1] for e in received.events] == list(range(4, doc.version.get(doc.replica_id) + 1))
    assert not a.closed and not b.closed


def test_decoding_waits_while_too_much_is_unsettled() -> None:
    """A connection holds back the frames behind more than
    ``max_unsettled_events`` decoded, unsettled events (a few KB of
    compressed frames can hold a hundred thousand), until the owner settles
    them and resumes; a large catch-up still goes through whole."""
    limits = Limits(max_unsettled_events=10, batch_events=4)
    source = gether.Document("src")
    host_a = DocumentsHost({"d": source}, gether.Document, "a-host")
    host_b = DocumentsHost({}, gether.Document, "b-host")
    a = SyncConnection(host_a, "a", Role.CLIENT, now=0.0, limits=limits)
    b = SyncConnection(host_b, "b", Role.SERVER, now=0.0, limits=limits)
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    for i in range(60):
        source.text("t").insert(i, "x")
    a.push("d")
    b.receive_data(a.data_to_send(), 0.0)  # every batch of the catch-up at once
    got = b.events_received()
    assert 10 <= sum(len(r.events) for r in got) < 10 + 4
    assert b.backlogged and b.events_received() == []
    assert not b.settled_enough
    for received in got:
        host_b.document("d").apply_events(received.events)
        b.acknowledge(received)
    b.resume(0.0)
    more = b.events_received()
    assert more  # decoding went on
    for received in more:
        host_b.document("d").apply_events(received.events)
        b.acknowledge(received)
    deliver(b, host_b, b"", 0.0)  # the rest, settled as it comes
    pump(a, host_a, b, host_b)
    assert host_b.document("d").to_json() == source.to_json()


def test_a_long_offline_run_never_waits_long_for_a_signature() -> None:
    """Exported in batches, a long run of one replica's events is
    authenticated batch by batch: one event in ``VOUCH_EVERY`` is signed, so
    a receiver never holds more than that many waiting (a server cuts off a
    sender past ``max_parked_events``)."""
    from gether.core.document import VOUCH_EVERY

    offline = gether.Document("offline")
    for _ in range(3 * VOUCH_EVERY + 10):
        offline.counter("c").increment(1)
    events = offline.events_since(None)
    data = encode_batch(events, _none, lambda _: False)  # thin: each batch's newest signed one
    received = decode_batch(data, _none, 10_000)
    signed = [e.id[1] for e in received if e.signature is not None]
    assert signed == [len(events)]  # one batch: its newest signature vouches for all
    receiver = gether.Document("server")
    most = 0
    for start in range(0, len(events), 100):
        batch = events[start : start + 100]
        chunk = decode_batch(encode_batch(batch, receiver.known_event), receiver.known_event, 1000)
        receiver.apply_events(chunk)
        most = max(most, len(receiver.pending))
    assert receiver.to_json() == offline.to_json()
    assert 0 < most <= VOUCH_EVERY < len(events) // 2  # not the whole run


# -- near parents --------------------------------------------------------------------


def _hub_and_writer(
    writers: int,
) -> tuple[SyncConnection, DocumentsHost, SyncConnection, DocumentsHost]:
    """A server holding one keystroke of each of ``writers`` others, and a
    client that received them all from it (its next event names them all)."""
    hub_doc = gether.Document("srv", signed=False)
    hub_doc.text("t").insert(0, "\n")
    base = hub_doc.events_since(None)
    for i in range(writers):  # concurrent: each saw only the base
        other = gether.Document(f"writer{i:03d}", signed=False)
        other.apply_events(base)
        other.text("t").insert(0, "x")
        hub_doc.apply_events(other.events_since(hub_doc.version))
    a, host_a, b, host_b = _pair((1, 2), (1, 2), {"d": hub_doc})
    host_a.docs["d"] = gether.Document("me", signed=False)
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    return a, host_a, b, host_b


def _keystroke(a: SyncConnection, doc: gether.Document) -> bytes:
    doc.text("t").insert(0, "k")
    a.push("d")
    return a.data_to_send()


def test_parents_received_from_the_peer_are_named_by_position() -> None:
    """A keystroke that saw 30 concurrent writers names them in about a byte
    each; named the long way, each costs its replica id and seq."""
    a, host_a, b, host_b = _hub_and_writer(30)
    doc = host_a.document("d")
    assert len(doc._log.heads) == 30
    data = _keystroke(a, doc)
    deliver(b, host_b, data, 0.0)
    pump(a, host_a, b, host_b)
    assert host_b.document("d").to_json() == doc.to_json()
    assert doc.to_json()["t"].startswith("k")

    a2, host_a2, _, _ = _hub_and_writer(30)
    a2._docs["d"].received_ids.frozen = True  # as after a failed batch: the long way
    far = len(_keystroke(a2, host_a2.document("d")))
    assert far - len(data) >= 30 * 4, (len(data), far)  # each long name: 4+ bytes more


def test_a_position_the_receiver_forgot_is_answered_by_a_resend_with_hashes() -> None:
    a, host_a, b, host_b = _hub_and_writer(5)
    b._docs["d"].sent_ids = type(b._docs["d"].sent_ids)()  # it remembers nothing sent
    doc = host_a.document("d")
    deliver(b, host_b, _keystroke(a, doc), 0.0)
    assert host_b.document("d").version.get("me") == 0  # unknown_parent, in that batch's place
    assert b._docs["d"].received_ids.frozen  # its count of a's events is off now
    pump(a, host_a, b, host_b)
    assert host_b.document("d").to_json() == doc.to_json()
    assert not a.closed and not b.closed and a.errors_received() == []


def test_a_near_reference_where_none_may_be_is_a_decode_error() -> None:
    def record(flags: int, *near_base: int) -> bytes:
        fields = ["a", flags, 0, 1, 0, 1, *near_base, (-1,), 1, ((0,),), b"\0" * 8]
        return b"".join(msgpack.packb(f) for f in fields)

    with pytest.raises(DecodeError, match="near reference"):  # no NEAR flag, so no base
        decode_batch(record(KEY), _none, 100, lambda _: ("b", 1))
    with pytest.raises(DecodeError, match="near reference"):  # NEAR, but none may be
        decode_batch(record(KEY | NEAR, 5), _none, 100)
    with pytest.raises(UnknownParentError):  # a position the receiver does not remember
        decode_batch(record(KEY | NEAR, 5), _none, 100, lambda _: None)


# -- unsigned documents ------------------------------------------------------------------


async def test_unsigned_documents_end_to_end(tmp_path: Path) -> None:
    running = await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(unsigned=("open-*",)),
        handle_signals=False,
    )
    try:
        assert running.tcp_url is not None
        alice = gether.Document("alice", signed=False)
        bob = gether.Document("bob", signed=False)
        async with (
            gether.connect(running.ws_url, "open-notes", doc=alice) as s1,
            gether.connect(running.tcp_url, "open-notes", doc=bob) as s2,
        ):
            rng = random.Random(3)
            for _ in range(30):
                edit(alice, rng)
                edit(bob, rng)
            await s1.sync()
            await s2.sync()
            await s1.sync()
            assert alice.to_json() == bob.to_json()
            assert all(e.signature is None for e in bob.events_since(None))
            assert s1._conn is not None and s1._conn.protocol >= 2

        # a signed copy of an unsigned document, and the other way round
        signed = gether.Document("carol")
        async with gether.connect(running.ws_url, "open-notes", doc=signed) as s3:
            with pytest.raises(TimeoutError):
                await s3.sync(timeout=1.0)
            assert any(e.code == "signature_required" for e in s3.errors)
        lone = gether.Document("dave", signed=False)
        async with gether.connect(running.ws_url, "closed", doc=lone) as s4:
            with pytest.raises(TimeoutError):
                await s4.sync(timeout=1.0)
            assert any(e.code == "signature_required" for e in s4.errors)
    finally:
        await running.stop()


def test_an_unsigned_document_accepts_unsigned_events_and_a_signed_one_waits() -> None:
    author = gether.Document("a", signed=False)
    author.text("t").insert(0, "hi")
    events = author.events_since(None)
    assert all(e.signature is None for e in events)
    assert gether.Document("b", signed=False).apply_events(events) == len(events)
    assert gether.Document("c").apply_events(events) == 0  # nothing vouches for them


async def test_a_client_falls_back_to_v1_with_a_server_from_before_v2(tmp_path: Path) -> None:
    """A server from before v2 reads a Hello offering [1, 2] as an unknown
    version and closes with unsupported_version; the client then offers v1
    alone. Emulated by a proxy that refuses such hellos in front of a server
    speaking v1 only."""
    running = await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(versions=(1,)),
        handle_signals=False,
    )
    assert running.tcp_url is not None
    upstream_port = int(running.tcp_url.rsplit(":", 1)[1])
    refused = 0

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        size = int.from_bytes(await reader.readexactly(4), "big")
        payload = await reader.readexactly(size)
        if isinstance(msgpack.unpackb(payload)[2], list):
            refused += 1
            writer.write(frame(encode(Error("unsupported_version", "not spoken", None))))
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        up_writer.write(frame(payload))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(old_server, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        doc = gether.Document("alice")
        doc.text("t").insert(0, "hello")
        url = f"tcp://127.0.0.1:{port}"
        async with gether.connect(
            url, "d", doc=doc, backoff=(0.01, 0.05), offline_start=True
        ) as session:
            await session.sync(timeout=10)
            assert session._conn is not None and session._conn.protocol == 1
            assert session.versions == (1,) and refused == 1
        other = gether.Document("bob")
        async with gether.connect(running.tcp_url, "d", doc=other) as session:
            await session.sync(timeout=10)
        assert other.to_json() == doc.to_json()
    finally:
        proxy.close()
        await running.stop()
