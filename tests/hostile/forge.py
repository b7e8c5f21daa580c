"""Forged events: a legitimate event remade with one thing wrong, re-signed
by its author's key so that the one wrong thing is what a receiver catches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import msgpack

from gether.core.event import Event
from gether.core.keys import SigningKey, key_id_of
from gether.testing.histories import fixed_key

SMALL_ORDER_KEY = bytes.fromhex("01" + "00" * 31)
"""The identity point: Ed25519 libraries that skip the small-order check
accept the signature ``UNIVERSAL_SIGNATURE`` from it on every message."""
UNIVERSAL_SIGNATURE = SMALL_ORDER_KEY + bytes(32)  # R = identity, S = 0

PLACEHOLDER = "\x00hostile-placeholder\x00"
"""A string op value later replaced by bytes no honest encoder produces."""
PLACEHOLDER_PACKED = msgpack.packb(PLACEHOLDER, use_bin_type=True)


def remake(
    event: Event,
    key: SigningKey | None,
    *,
    event_id: tuple[str, int] | None = None,
    ops: tuple[Any, ...] | None = None,
    parents: tuple[tuple[tuple[str, int], bytes], ...] | None = None,
    public_key: bytes | None = None,
    key_id: bytes | None = None,
    prev: bytes | type[Ellipsis] | None = ...,
) -> Event:
    """``event`` with the given fields replaced, signed with ``key`` (unsigned if None)."""
    made = Event(
        event_id or event.id,
        event.counter,
        event.lamport,
        event.hlc,
        key_id or event.key_id,
        public_key if public_key is not None else event.public_key,
        parents if parents is not None else event.parents,
        event.prev if prev is ... else prev,  # type: ignore[arg-type]
        ops if ops is not None else event.ops,
    )
    if key is not None:
        made.sign(key)
    return made


def with_value(event: Event, key: SigningKey, value: Any) -> Event:
    """``event`` (one map write) writing ``value`` instead."""
    ((kind, container, map_key, _, pred),) = event.ops
    return remake(event, key, ops=((kind, container, map_key, value, pred),))


def spliced(event: Event, key: SigningKey, raw: bytes) -> tuple[Event, bytes]:
    """``event`` (writing ``PLACEHOLDER``) carrying the msgpack bytes ``raw``
    instead, and its body as it goes on the wire. The signature covers that
    body, so only what ``raw`` holds can be wrong. The returned event has the
    placeholder body: encoders splice ``raw`` into what they produce."""
    body = event.body.replace(PLACEHOLDER_PACKED, raw)
    assert body != event.body, "the event does not carry the placeholder"
    signed = remake(event, None)
    signed.signature = key.sign(hashlib.sha256(body).digest())
    return signed, body


def small_order_event(template: Event, replica: str = "evil") -> Event:
    """A first event of a new replica whose key is the identity point, with
    the signature that verifies against it for any message."""
    event = remake(
        template,
        None,
        event_id=(replica, 1),
        public_key=SMALL_ORDER_KEY,
        key_id=key_id_of(SMALL_ORDER_KEY),
        prev=None,
    )
    event.signature = UNIVERSAL_SIGNATURE
    return event


def ghost_parents(count: int) -> tuple[tuple[tuple[str, int], bytes], ...]:
    """``count`` parents that exist nowhere, each with a plausible hash."""
    return tuple(
        ((f"ghost{i}", 1), hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(count)
    )


def orphan_chain(depth: int, replica: str = "deep") -> list[Event]:
    """Events ``2..depth+1`` of ``replica``, each the parent of the next; event
    1, the root, is never sent, so none of them can ever be applied."""
    key = fixed_key(replica)
    root = Event((replica, 1), 0, 1, 1 << 16, key.key_id, key.public_bytes, (), None, _OPS)
    chain: list[Event] = []
    previous = root
    for seq in range(2, depth + 2):
        previous = Event(
            (replica, seq),
            seq - 1,
            seq,
            seq << 16,
            key.key_id,
            None,
            (((replica, seq - 1), previous.hash),),
            None,
            _OPS,
        )
        chain.append(previous)
    return chain


def orphan_flood(count: int) -> Iterator[Event]:
    """``count`` second events of as many replicas whose first events never come."""
    for i in range(count):
        replica = f"orphan{i}"
        parent = ((replica, 1), hashlib.sha256(replica.encode()).digest())
        yield Event((replica, 2), 1, 2, 2 << 16, bytes(8), None, (parent,), None, _OPS)


_OPS = ((8, ("/hits", 4), 1),)
"""One counter increment of a named counter (what the ops are does not matter:
these events never get that far)."""
