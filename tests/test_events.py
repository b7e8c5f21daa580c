"""Events: exact round trips, and every forged or malformed event rejected
whole, with a typed error, leaving the receiver unchanged."""

from __future__ import annotations

import sys
import threading

import msgpack
import pytest

import gether
from gether.core.event import EVENT_MAGIC, Event, pack
from gether.core.ids import EventId
from gether.core.keys import SigningKey, check_public_key, key_id_of
from gether.core.ops import TEXT_INSERT
from gether.core.values import Kind, NamedRef

# The eight points of small order on Ed25519 and two non-canonical encodings:
# with any of them as a public key, one signature verifies for every message.
SMALL_ORDER_KEYS = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
]
NON_CANONICAL_KEYS = [
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def key(n: int) -> SigningKey:
    return SigningKey(bytes([n]) * 32)


def source() -> gether.Document:
    doc = gether.Document(replica_id="alice", key=key(1))
    doc.text("t").insert(0, "hello")
    doc["n"] = 1
    return doc


def fingerprint(doc: gether.Document) -> tuple[object, object, int]:
    return doc.to_json(), doc.version, doc.event_count


def forge(
    replica: str,
    seq: int,
    ops: tuple[object, ...],
    signer: SigningKey,
    parents: tuple[tuple[EventId, bytes], ...] = (),
    counter: int = 0,
    lamport: int | None = None,
    hlc: int = 1 << 20,
    public_key: bytes | None = None,
    key_id: bytes | None = None,
    prev: bytes | None = None,
) -> Event:
    """An event built by hand, signed by ``signer``."""
    if public_key is None and seq == 1:
        public_key = signer.public_bytes
    event = Event(
        EventId(replica, seq),
        counter,
        lamport if lamport is not None else 1,
        hlc,
        key_id or (key_id_of(public_key) if public_key else signer.key_id),
        public_key,
        parents,
        prev,
        ops,
    )
    event.signature = signer.sign(event.hash)
    return event


def insert(container: str = "t", text: str = "x") -> tuple[object, ...]:
    return (TEXT_INSERT, ("/" + container, 3), None, None, text)


def test_round_trip_is_exact() -> None:
    doc = source()
    for event in doc.events_since(None):
        data = event.to_bytes()
        again = gether.Event.from_bytes(data)
        assert again.to_bytes() == data
        assert again.hash == event.hash
        assert again.id == event.id and again.parents == event.parents
        assert again.ops == event.ops


def test_hash_covers_parent_hashes() -> None:
    doc = source()
    events = doc.events_since(None)
    child = events[-1]
    assert child.parents and child.parents[0][1] == events[-2].hash


def test_sender_signs_its_newest_event_and_receiver_accepts_chain() -> None:
    doc = source()
    events = doc.events_since(None)
    assert events[-1].signature is not None
    assert all(e.signature is None for e in events[:-1])
    other = gether.Document(replica_id="bob")
    assert other.apply_events(e.to_bytes() for e in events) == len(events)
    assert other.to_json() == doc.to_json()


def test_unsigned_events_wait_for_their_signed_successor() -> None:
    doc = source()
    events = doc.events_since(None)
    other = gether.Document(replica_id="bob")
    assert other.apply_events([e.to_bytes() for e in events[:-1]]) == 0
    assert len(other.pending) == len(events) - 1
    assert other.apply_events([events[-1].to_bytes()]) == len(events)
    assert other.pending == frozenset()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        EVENT_MAGIC,
        EVENT_MAGIC + b"\x92",
        EVENT_MAGIC + msgpack.packb([b"x", None]),
        EVENT_MAGIC + msgpack.packb([pack([1, "a"]), None]),
        EVENT_MAGIC + msgpack.packb([pack([1] * 11), None]),
        b"GTe\x09" + msgpack.packb([b"", None]),
        EVENT_MAGIC + b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
    ],
)
def test_malformed_bytes_are_decode_errors(data: bytes) -> None:
    with pytest.raises(gether.DecodeError):
        gether.Event.from_bytes(data)
    doc = source()
    before = fingerprint(doc)
    with pytest.raises(gether.RejectedEventsError) as info:
        doc.apply_events([data])
    assert isinstance(info.value.rejected[0][1], gether.DecodeError)
    assert fingerprint(doc) == before


def test_truncated_event_is_a_decode_error() -> None:
    data = source().events_since(None)[-1].to_bytes()
    for cut in range(1, len(data)):
        with pytest.raises(gether.DecodeError):
            gether.Event.from_bytes(data[:cut])


def test_non_canonical_encoding_is_refused() -> None:
    event = forge("mallory", 1, (insert(),), key(7))
    fields = list(msgpack.unpackb(event.body, use_list=False))
    # the same seq, encoded as a 64-bit integer instead of a fixint
    body = bytes([0x90 | 11]) + msgpack.packb(fields[0]) + msgpack.packb(fields[1])
    body += b"\xcf" + (1).to_bytes(8, "big") + b"".join(msgpack.packb(f) for f in fields[3:])
    with pytest.raises(gether.DecodeError, match="canonical"):
        gether.Event.from_bytes(EVENT_MAGIC + msgpack.packb([body, event.signature]))


def reject(doc: gether.Document, events: list[Event], error: type[Exception]) -> None:
    before = fingerprint(doc)
    with pytest.raises(gether.RejectedEventsError) as info:
        doc.apply_events([e.to_bytes() for e in events])
    errors = [e for _, e in info.value.rejected]
    assert any(isinstance(e, error) for e in errors), errors
    assert all(isinstance(e, gether.GetherError) for e in errors)
    assert fingerprint(doc) == before
    assert doc.pending == frozenset()


def test_forged_signature_is_rejected() -> None:
    event = forge("mallory", 1, (insert(),), key(7))
    event.signature = bytes(64)
    reject(source(), [event], gether.SignatureError)


def test_signature_by_another_key_is_rejected() -> None:
    doc = source()
    events = doc.events_since(None)
    first = events[0]
    # alice's seq 2, signed by mallory but naming alice's key
    forged = forge(
        "alice",
        2,
        (insert(),),
        key(7),
        parents=((first.id, first.hash),),
        counter=first.end,
        lamport=first.lamport + 1,
        hlc=first.hlc + 1,
        key_id=first.key_id,
    )
    receiver = gether.Document(replica_id="bob")
    receiver.apply_events([e.to_bytes() for e in doc.events_since(None)])
    reject(receiver, [forged], gether.RemoteError)


def test_an_event_signed_on_first_need_is_known_valid_unsigned() -> None:
    # a replica of this process signs its tip when the signature is first
    # read; the receiver knows the signer's key, so it signs nothing to check
    doc = source()
    events = doc.events_since(None)
    tip = events[-1]
    assert tip.signed and tip._signature is None
    receiver = gether.Document(replica_id="bob")
    assert receiver.apply_events(events) == len(events)
    assert tip._signature is None
    assert receiver.to_json() == doc.to_json()
    assert tip.signature is not None and tip.known_valid(key(1).public_bytes)


def test_an_event_to_be_signed_by_another_key_is_rejected_unapplied() -> None:
    doc = source()
    events = doc.events_since(None)
    events[-1].sign_later(key(7))  # not alice's key: what it signs will not verify
    receiver = gether.Document(replica_id="bob")
    with pytest.raises(gether.RejectedEventsError) as info:
        receiver.apply_events(events)
    assert any(isinstance(e, gether.SignatureError) for _, e in info.value.rejected)
    assert receiver.event_count == 0  # the others wait for a signed successor
    assert events[-1].id not in receiver.pending


@pytest.mark.parametrize("public_key", SMALL_ORDER_KEYS + NON_CANONICAL_KEYS)
def test_small_order_and_non_canonical_keys_are_refused(public_key: bytes) -> None:
    with pytest.raises(gether.InvalidKeyError):
        check_public_key(public_key)
    event = forge("mallory", 1, (insert(),), key(7), public_key=public_key)
    # the classic forgery: R = identity, S = 0 verifies for any message under a
    # small-order key in many verifiers
    event.signature = bytes.fromhex("01" + "00" * 31) + bytes(32)
    reject(source(), [event], gether.InvalidEventError)


def test_good_keys_pass_the_check() -> None:
    for n in range(1, 20):
        check_public_key(key(n).public_bytes)


def test_equivocation_is_rejected() -> None:
    a = forge("mallory", 1, (insert("t", "a"),), key(7))
    b = forge("mallory", 1, (insert("t", "b"),), key(7))
    doc = source()
    doc.apply_events([a.to_bytes()])
    reject(doc, [b], gether.EquivocationError)


def test_replayed_event_is_a_no_op() -> None:
    event = forge("mallory", 1, (insert(),), key(7))
    doc = source()
    assert doc.apply_events([event.to_bytes()]) == 1
    before = fingerprint(doc)
    assert doc.apply_events([event.to_bytes(), event.to_bytes()]) == 0
    assert fingerprint(doc) == before


def test_wrong_parent_hash_is_rejected() -> None:
    doc = source()
    tip = doc.events_since(None)[-1]
    event = forge(
        "mallory", 1, (insert(),), key(7), parents=((tip.id, bytes(32)),), lamport=tip.lamport + 1
    )
    receiver = source().fork()
    reject(receiver, [event], gether.HashMismatchError)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lamport", 5), ("counter", 3), ("hlc", 0)],
)
def test_inconsistent_header_is_rejected(field: str, value: int) -> None:
    args = {"lamport": 1, "counter": 0, "hlc": 1 << 20}
    args[field] = value
    event = forge("mallory", 1, (insert(),), key(7), **args)  # type: ignore[arg-type]
    reject(source(), [event], gether.InvalidEventError)


@pytest.mark.parametrize(
    "op",
    [
        (TEXT_INSERT, ("alice", 10_000), None, None, "x"),  # unknown container
        (TEXT_INSERT, ("/t", 3), ("alice", 999), None, "x"),  # origin nobody made
        (TEXT_INSERT, ("/t", 3), None, None, ""),  # empty insert
        (TEXT_INSERT, ("/t", 3), None, None, 5),  # not a string
        (99, ("/t", 3)),  # unknown op
        (1, ("", 0), "k", float("nan"), ()),  # NaN value
        (1, ("", 0), "k", 2**63, ()),  # integer over 64 bits
        (8, ("/t", 3), 1),  # counter op on a text
        (5, ("/t", 3), (("alice", 0, 10**6),)),  # delete of elements that do not exist
    ],
)
def test_invalid_ops_are_rejected_whole(op: tuple[object, ...]) -> None:
    # each event carries a valid op first: nothing of it may be applied
    event = forge("mallory", 1, (insert("t", "ok"), op), key(7))
    reject(source(), [event], gether.InvalidEventError)


def test_reference_outside_causal_past_is_rejected_everywhere() -> None:
    """Bob's event names carol's element without having seen carol's event:
    accepting it would depend on what the receiver holds, so nobody does."""
    carol = forge("carol", 1, (insert("t", "c"),), key(3))
    bob = forge(
        "bob", 1, (insert("t", "b"), (TEXT_INSERT, ("/t", 3), ("carol", 0), None, "x")), key(2)
    )
    for order in ([carol, bob], [bob, carol]):
        doc = source()
        with pytest.raises(gether.RejectedEventsError) as info:
            doc.apply_events([e.to_bytes() for e in order])
        assert [i for i, _ in info.value.rejected] == [EventId("bob", 1)]
        assert doc.version == source().version.merged(gether.Version({"carol": 1}))


def test_events_under_our_own_name_are_refused() -> None:
    doc = source()
    event = forge("alice", 3, (insert(),), key(7))
    with pytest.raises(gether.RejectedEventsError):
        doc.apply_events([event])


def test_descendants_of_a_rejected_event_are_rejected() -> None:
    bad = forge("mallory", 1, (insert(),), key(7))
    bad.signature = bytes(64)
    child = forge("eve", 1, (insert(),), key(8), parents=((bad.id, bad.hash),), lamport=2)
    doc = source()
    with pytest.raises(gether.RejectedEventsError) as info:
        doc.apply_events([child.to_bytes(), bad.to_bytes()])
    assert {i for i, _ in info.value.rejected} == {bad.id, child.id}
    assert doc.pending == frozenset()


def test_packing_is_safe_across_threads() -> None:
    # a server packs snapshots on worker threads while its event loop packs
    # event bodies; a container value calls back into Python mid-pack, where
    # the other thread may run: one shared packer mixed their bytes (the
    # event then failed its signature check)
    big = tuple(NamedRef(f"name{i}", Kind.TEXT) for i in range(3000))
    small = (1, "alice", 7, 3, 4, 5, b"k" * 8, None, (("bob", 2, b"h" * 32),), None, ())
    want_big, want_small = pack(big), pack(small)
    wrong: list[str] = []

    def snapshots() -> None:
        for _ in range(30):
            if pack(big) != want_big:
                wrong.append("big")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        worker = threading.Thread(target=snapshots)
        worker.start()
        while worker.is_alive():
            if pack(small) != want_small:
                wrong.append("small")
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, f"{len(wrong)} packs mixed with another thread's"
