"""The sans-I/O sync protocol: messages, frames, and two connections wired
back to back with no sockets."""

from __future__ import annotations

import random
import zlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.ids import Version
from gether.sync import (
    Ack,
    Error,
    Events,
    Hello,
    Limits,
    Ping,
    Pong,
    Role,
    Subscribe,
    SyncConnection,
)
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import MAGIC, MessageKind, decode, encode
from gether.testing.histories import edit, history, replicas
from gether.testing.sync import DocumentsHost, deliver, pump

# -- messages --------------------------------------------------------------------

ids = st.text("abcxyz0123456789_.:-", min_size=1, max_size=12)
versions = st.dictionaries(ids, st.integers(1, 2**40), max_size=5).map(Version)
docs = st.text(min_size=1, max_size=30).filter(lambda d: "\x00" not in d)
messages = st.one_of(
    st.builds(Hello, ids, st.none() | st.text(max_size=50)),
    st.builds(Subscribe, docs, versions),
    st.builds(
        Events,
        docs,
        st.integers(0, 2**40),
        st.lists(
            st.tuples(st.binary(min_size=1), st.none() | st.binary(min_size=64, max_size=64)),
            max_size=5,
        ).map(tuple),
    ),
    st.builds(Ack, docs, st.integers(0, 2**40), versions),
    st.builds(Error, ids, st.text(max_size=100), st.none() | docs),
    st.builds(Ping, st.integers(0, 2**62)),
    st.builds(Pong, st.integers(0, 2**62)),
)


@settings(max_examples=300)
@given(messages, st.sampled_from([0, 4096, 10**9]))
def test_messages_round_trip(message: object, compress_above: int) -> None:
    assert decode(encode(message, compress_above)) == message  # type: ignore[arg-type]


def test_large_batches_are_compressed() -> None:
    events = tuple((b"x" * 1000, None) for _ in range(50))
    big = encode(Events("d", 1, events))
    assert len(big) < 5000
    assert decode(big) == Events("d", 1, events)


BOMB = zlib.compress(b"\x00" * (64 << 20))
TOO_MANY = msgpack.packb([[b"e", None]] * 10_001)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xc1garbage", "decode"),
        (msgpack.packb([99, 1]), "decode"),  # unknown kind
        (msgpack.packb([MessageKind.HELLO, MAGIC, 99, "a", None]), "unsupported_version"),
        (msgpack.packb([MessageKind.HELLO, "other-protocol", 1, "a", None]), "decode"),
        (msgpack.packb([MessageKind.SUBSCRIBE, "", {}]), "decode"),
        (msgpack.packb([MessageKind.SUBSCRIBE, "d", {"bad id!": 1}]), "decode"),
        (msgpack.packb([MessageKind.SUBSCRIBE, "d", {"a": -1}]), "decode"),
        (msgpack.packb([MessageKind.ACK, "d", 1]), "decode"),
        (msgpack.packb([MessageKind.EVENTS, "d", 1, 7, b""]), "decode"),
        (msgpack.packb([MessageKind.EVENTS, "d", 1, 0, msgpack.packb([[1, 2]])]), "decode"),
        (msgpack.packb([MessageKind.EVENTS, "d", 1, 1, b"not zlib"]), "decode"),
        (msgpack.packb([MessageKind.PING, 2**64 - 1]), "decode"),
        (
            msgpack.packb([MessageKind.EVENTS, "d", 1, 1, zlib.compress(b"\x00" * (64 << 20))]),
            "limit_exceeded",
        ),
        (
            msgpack.packb([MessageKind.EVENTS, "d", 1, 0, msgpack.packb([[b"e", None]] * 10_001)]),
            "limit_exceeded",
        ),
    ],
)
def test_malformed_messages(payload: bytes, code: str) -> None:
    with pytest.raises(gether.GetherError) as info:
        decode(payload)
    assert info.value.code == code


def test_frames() -> None:
    reader = FrameReader(max_size=100)
    data = frame(b"one") + frame(b"two") + frame(b"three")
    out: list[bytes] = []
    for i in range(len(data)):  # one byte at a time
        out += reader.feed(data[i : i + 1])
    assert out == [b"one", b"two", b"three"]
    with pytest.raises(gether.LimitExceededError):
        FrameReader(max_size=100).feed((101).to_bytes(4, "big"))  # refused on the header


# -- two connections ---------------------------------------------------------------


def pair(
    docs_a: dict[str, gether.Document],
    docs_b: dict[str, gether.Document],
    limits: Limits | None = None,
    versions: tuple[int, ...] = (1, 2),
) -> tuple[SyncConnection, DocumentsHost, SyncConnection, DocumentsHost]:
    host_a = DocumentsHost(docs_a, gether.Document, "a-host")
    host_b = DocumentsHost(docs_b, gether.Document, "b-host")
    a = SyncConnection(host_a, "a", Role.CLIENT, now=0.0, limits=limits, versions=versions)
    b = SyncConnection(host_b, "b", Role.SERVER, now=0.0, limits=limits)
    return a, host_a, b, host_b


both_versions = pytest.mark.parametrize(
    "versions", [(1,), (1, 2), (1, 2, 3)], ids=["v1", "v2", "v3"]
)


Docs = dict[str, gether.Document]


def divergent(seed: int, doc_ids: list[str]) -> tuple[Docs, Docs]:
    """Per document: a shared past, then each side edits on its own (or the
    document exists on one side only)."""
    rng = random.Random(seed)
    side_a: dict[str, gether.Document] = {}
    side_b: dict[str, gether.Document] = {}
    for doc_id in doc_ids:
        shared, _ = history(replica_count=2, edits=rng.randint(0, 30), seed=rng.randrange(2**32))
        left, right = replicas(2, prefix=f"{doc_id}-")
        where = rng.choice(["both", "both", "a", "b"])
        for side, doc in (("a", left), ("b", right)):
            if where in ("both", side):
                doc.apply_events(shared)
                for _ in range(rng.randint(0, 25)):
                    edit(doc, rng)
                (side_a if side == "a" else side_b)[doc_id] = doc
    return side_a, side_b


@both_versions
@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3))
def test_divergent_replicas_converge_then_go_quiet(
    seed: int, count: int, versions: tuple[int, ...]
) -> None:
    doc_ids = [f"doc{i}" for i in range(count)]
    docs_a, docs_b = divergent(seed, doc_ids)
    a, host_a, b, host_b = pair(docs_a, docs_b, versions=versions)
    assert a.protocol == b.protocol == 1 or versions != (1,)
    for doc_id in doc_ids:
        a.subscribe(doc_id)
    stats = pump(a, host_a, b, host_b)
    # hello+subscribe, subscribe+events, events+acks, acks: bounded, whatever the histories
    assert stats.round_trips <= 4
    assert not stats.rejected
    for doc_id in doc_ids:
        left, right = host_a.document(doc_id), host_b.document(doc_id)
        assert left.to_json() == right.to_json()
        assert left.version == right.version
        assert a.is_synced(doc_id) and b.is_synced(doc_id)
    for conn in (a, b):  # quiet: nothing more to say, even when asked to push
        for doc_id in doc_ids:
            conn.push(doc_id)
    assert pump(a, host_a, b, host_b).round_trips == 0


@both_versions
def test_live_edits_flow_both_ways(versions: tuple[int, ...]) -> None:
    a, host_a, b, host_b = pair({}, {}, versions=versions)
    a.subscribe("notes")
    pump(a, host_a, b, host_b)
    left, right = host_a.document("notes"), host_b.document("notes")
    for i in range(20):
        (left if i % 2 else right).text("t").insert(0, str(i))
        a.push("notes")
        b.push("notes")
        pump(a, host_a, b, host_b)
        assert left.to_json() == right.to_json()
    # v2 acknowledges at most about once a second: a second later, all is said
    a.tick(1.0)
    b.tick(1.0)
    pump(a, host_a, b, host_b, now=1.0)
    assert a.is_synced("notes") and b.is_synced("notes")


@both_versions
def test_ping_brings_everything_the_peer_has(versions: tuple[int, ...]) -> None:
    docs_a, docs_b = divergent(7, ["d"])
    a, host_a, b, host_b = pair(docs_a, docs_b, versions=versions)
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    host_b.document("d").text("late").insert(0, "news")  # b did not push it
    nonce = a.ping(now=1.0)
    pump(a, host_a, b, host_b)
    assert a.pong_received(nonce)
    assert host_a.document("d").to_json() == host_b.document("d").to_json()


@both_versions
def test_big_histories_go_in_bounded_batches(versions: tuple[int, ...]) -> None:
    _, source = history(replica_count=2, edits=2500, seed=3)
    a, host_a, b, host_b = pair({}, {"big": source}, Limits(batch_events=100), versions)
    a.subscribe("big")
    stats = pump(a, host_a, b, host_b)
    assert host_a.document("big").to_json() == source.to_json()
    assert stats.round_trips <= 4


@both_versions
def test_rejected_events_are_reported_to_the_sender(versions: tuple[int, ...]) -> None:
    docs_a, docs_b = divergent(9, ["d"])
    a, host_a, b, host_b = pair(docs_a, docs_b, versions=versions)
    a.subscribe("d")
    pump(a, host_a, b, host_b)
    doc = host_a.document("d")
    before = host_b.document("d").to_json()
    doc.text("x").insert(0, "forged")
    event = doc.events_since(host_b.document("d").version)[-1]
    event.signature = bytes(64)  # as if a had tampered with its own event
    a.push("d")
    stats = pump(a, host_a, b, host_b)
    assert stats.rejected
    (error,) = a.errors_received()
    assert error.code == "rejected_events" and error.doc_id == "d"
    assert host_b.document("d").to_json() == before
    assert not b.closed  # a document-level refusal does not end the connection


# -- hostile peers ---------------------------------------------------------------


def server() -> SyncConnection:
    return SyncConnection(DocumentsHost({}, gether.Document), "s", Role.SERVER, now=0.0)


def hello() -> bytes:
    return frame(encode(Hello("c")))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00\x00\x00\x05garbage", "decode"),
        (b"\xff\xff\xff\xff", "limit_exceeded"),  # 4 GiB announced before a hello
        (frame(msgpack.packb([MessageKind.HELLO, MAGIC, 99, "c", None])), "unsupported_version"),
        (frame(msgpack.packb([42])), "decode"),
        (frame(encode(Subscribe("d", Version()))), "protocol_violation"),  # before hello
        (hello() + frame(encode(Hello("c"))), "protocol_violation"),
        (hello() + frame(encode(Events("d", 1, ((b"x", None),)))), "protocol_violation"),
        (hello() + frame(encode(Ack("d", 1, Version()))), "protocol_violation"),
        (hello() + frame(msgpack.packb([MessageKind.PING, "x"])), "decode"),
        (hello() + (17 << 20).to_bytes(4, "big"), "limit_exceeded"),
        (hello() + frame(encode(Subscribe("d", Version()))) * 2, "protocol_violation"),
    ],
)
def test_hostile_frames_close_with_a_code(data: bytes, code: str) -> None:
    conn = server()
    conn.receive_data(data, now=0.0)
    assert conn.closed
    assert conn.close_reason is not None and conn.close_reason.code == code
    out = FrameReader(1 << 20).feed(conn.data_to_send())
    assert decode(out[-1]) == conn.close_reason  # the peer is told why


def test_forged_event_in_a_batch_closes_the_connection() -> None:
    conn = server()
    conn.receive_data(hello() + frame(encode(Subscribe("d", Version()))), now=0.0)
    assert conn.subscriptions_requested() == ["d"]
    conn.accept("d")
    conn.receive_data(frame(encode(Events("d", 1, ((b"\x95not an event", None),)))), now=0.0)
    assert conn.closed and conn.close_reason is not None
    assert conn.close_reason.code in ("decode", "unsupported_version")
    assert conn.events_received() == []


def test_a_refused_subscription_is_an_error_for_that_document_only() -> None:
    conn = server()
    conn.receive_data(hello() + frame(encode(Subscribe("secret", Version()))), now=0.0)
    conn.refuse("secret", gether.InvalidPathError("no such document"))
    *_, last = FrameReader(1 << 20).feed(conn.data_to_send())
    assert decode(last) == Error("invalid_path", "no such document", "secret")
    assert not conn.closed
    conn.receive_data(frame(encode(Events("secret", 1, ((b"x", None),)))), now=0.0)
    assert conn.closed  # events of a refused document are a violation


def test_truncated_frame_at_eof() -> None:
    conn = server()
    conn.receive_data(hello() + frame(encode(Ping(1)))[:-2], now=0.0)
    assert not conn.closed
    conn.receive_eof()
    assert conn.closed and conn.close_reason is not None
    assert conn.close_reason.code == "decode"


@both_versions
def test_unacknowledged_batches_are_bounded(versions: tuple[int, ...]) -> None:
    _, source = history(replica_count=1, edits=300, seed=4)
    limits = Limits(batch_events=5, max_pending_batches=4)
    host_a = DocumentsHost({}, gether.Document)
    host_b = DocumentsHost({"d": source}, gether.Document)
    a = SyncConnection(host_a, "a", Role.CLIENT, now=0.0, limits=limits, versions=versions)
    b = SyncConnection(host_b, "b", Role.SERVER, now=0.0, limits=limits)
    a.subscribe("d")
    b.receive_data(a.data_to_send(), 0.0)
    b.accept(*b.subscriptions_requested())
    for _ in range(3):  # a never acknowledges
        a.receive_data(b.data_to_send(), 0.0)
        b.receive_data(a.data_to_send(), 0.0)
    assert a.protocol == max(versions)
    assert a.closed and a.close_reason is not None
    assert a.close_reason.code == "limit_exceeded"


def test_timeouts_and_keepalive() -> None:
    limits = Limits(hello_timeout=5, idle_timeout=30, ping_interval=10)
    silent = SyncConnection(DocumentsHost({}), "s", Role.SERVER, now=0.0, limits=limits)
    silent.tick(4.0)
    assert not silent.closed
    silent.tick(6.0)
    assert silent.closed and silent.close_reason is not None
    a, host_a, b, host_b = pair({}, {}, limits)
    pump(a, host_a, b, host_b)
    a.tick(11.0)
    assert decode(FrameReader(1 << 20).feed(a.data_to_send())[0]) == Ping(1)
    b.tick(31.0)
    assert b.closed


def test_the_example_in_docs_protocol_md() -> None:
    assert frame(encode(Ping(7))) == bytes.fromhex("00 00 00 03 92 06 07")


def test_a_big_batch_in_the_same_chunk_as_the_hello() -> None:
    """The peer's hello raises the frame limit for the frames after it, even
    when they arrive in the same read (a catch-up of a few hundred events)."""
    _, source = history(replica_count=1, edits=1200, seed=14)
    limits = Limits(compress_above=10**9)  # one big uncompressed batch
    host_a = DocumentsHost({}, gether.Document)
    host_b = DocumentsHost({"d": source}, gether.Document)
    # v1: its batches are big enough to pass the limit before hello
    a = SyncConnection(host_a, "a", Role.CLIENT, now=0.0, limits=limits, versions=(1,))
    b = SyncConnection(host_b, "b", Role.SERVER, now=0.0, limits=limits)
    a.subscribe("d")
    b.receive_data(a.data_to_send(), 0.0)
    b.accept(*b.subscriptions_requested())
    chunk = b.data_to_send()  # hello, subscribe and the events, in one read
    assert len(chunk) > limits.max_frame_before_hello
    deliver(a, host_a, chunk, 0.0)
    assert not a.closed, a.close_reason
    assert host_a.document("d").to_json() == source.to_json()
