"""Events: one atomic change by one replica, hashed and signed.

An event's identity is the SHA-256 of its *body*, a canonical msgpack encoding
of everything but the signature::

    [FORMAT, replica, seq, counter, lamport, hlc, key_id, public_key | nil,
     parents: [[replica, seq, hash], ...], prev: hash | nil, ops: [...]]

Parents are named with their hashes, so the hash of an event covers its whole
causal past (a Merkle DAG). ``prev`` is the hash of the author's previous event
when that event is not among the parents (nil otherwise, and for seq 1), so a
replica's own events always form a hash chain: a signature on an event vouches
for every earlier event of its author, and a replica need only sign the newest
event of each batch it sends. ``public_key`` is carried by a replica's first
event, which binds the replica id to that key; later events name the key by
``key_id``.

Decoding is strict: the body must re-encode to the same bytes, so one event has
exactly one encoding and therefore one hash.
"""

from __future__ import annotations

from hashlib import sha256 as _sha256
from typing import Any, Final

import msgpack

from gether.core.keys import KEY_ID_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey
from gether.core.ops import SEQ_DELETE, Op, ops_length
from gether.core.values import Kind, NamedRef, NewContainer
from gether.errors import DecodeError, LimitExceededError, UnsupportedVersionError

FORMAT = 1
EVENT_MAGIC = b"GTe\x01"
HASH_SIZE = 32
MAX_EVENT_BYTES = 64 * 1024 * 1024
MAX_PARENTS = 10_000
"""An event names the heads its author had seen: one per concurrent branch.
More than this is an attack (a parent costs a lookup and ~45 bytes held while
the event waits), not a document."""

_EXT_NEW = 1
_EXT_NAMED = 2

Parent = tuple[tuple[str, int], bytes]


def _ext_default(value: object) -> msgpack.ExtType:
    if type(value) is NewContainer:
        return msgpack.ExtType(_EXT_NEW, bytes((value.kind,)))
    if type(value) is NamedRef:
        return msgpack.ExtType(_EXT_NAMED, bytes((value.kind,)) + value.name.encode())
    raise TypeError(f"cannot encode {type(value).__name__}")


def _ext_hook(code: int, data: bytes) -> object:
    try:
        if code == _EXT_NEW and len(data) == 1:
            return NewContainer(Kind(data[0]))
        if code == _EXT_NAMED and len(data) >= 1:
            return NamedRef(data[1:].decode(), Kind(data[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"bad container value: {exc}") from exc
    raise DecodeError(f"unknown extension type {code}")


_new_object = object.__new__


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(default=_ext_default, use_bin_type=True, autoreset=True)


_idle_packers: list[msgpack.Packer] = [_new_packer()]
"""Packers not in use. A packer keeps its buffer while it calls back into
Python for container values, where another thread may run and pack too:
with one packer for the process, a server mixed the bytes of a snapshot
packed on a worker thread with those of a keystroke's body packed meanwhile
on its event loop (the keystroke then failed its signature check, and the
snapshot was corrupt). So each pack takes a packer of its own (``list.pop``
and ``append`` are atomic), as fast as the shared one was."""


def pack(value: Any) -> bytes:
    """Canonical msgpack: smallest integer forms, float64, tuples as arrays."""
    try:
        packer = _idle_packers.pop()
    except IndexError:  # another thread is packing
        packer = _new_packer()
    out: bytes = packer.pack(value)
    _idle_packers.append(packer)  # not after an error: it is dropped
    return out


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data, use_list=False, raw=False, ext_hook=_ext_hook, strict_map_key=True
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from exc


_UNKNOWN: Final = object()
"""Not worked out yet (``Event.prev_hash``)."""


class Event:
    """One immutable, hashed event. ``id`` is the plain tuple ``(replica, seq)``
    (equal to an ``EventId``): exact tuples of strings and ints are left alone by
    the cyclic garbage collector, which matters with a million events alive.
    ``signature`` may be filled in later (lazily by its author, when it first
    leaves the replica).

    The numbers, the body and the keys are kept together in one tuple of
    atoms (read through properties), which the collector stops tracking at
    its first pass: every full collection then touches five objects per event
    instead of ten. With a document's whole history alive, full collections
    were a fifth of the time of a local edit.

    ``_inner`` and ``_op`` are read by nothing: they hold the first op (and
    a deletion's spans) so that the collector reaches them before ``ops``.
    It stops tracking a tuple only once the items are untracked, checking
    new objects in the order it reached them: through ``ops`` alone, the
    tuple of ops comes before the op and the op before its spans, so each
    pass freed one level, and the tuples were still tracked when promoted to
    the oldest generation, whose full collections then visited them with
    every event. Reached innermost first, all are freed by the second pass
    (a tenth of the time of a replayed keystroke).
    """

    __slots__ = (
        "_atoms",
        "_claimed",
        "_inner",
        "_op",
        "_signature",
        "_signer",
        "_valid_for",
        "hash",
        "id",
        "ops",
        "parents",
    )
    id: tuple[str, int]
    parents: tuple[Parent, ...]
    ops: tuple[Op, ...]
    hash: bytes
    _atoms: tuple[int, int, int, int, bytes, bytes, bytes | None, bytes | None]
    _signature: bytes | None
    _claimed: bytes | object | None
    _signer: SigningKey | None
    _valid_for: bytes | None
    _inner: object
    _op: object

    def __init__(
        self,
        event_id: tuple[str, int],
        counter: int,
        lamport: int,
        hlc: int,
        key_id: bytes,
        public_key: bytes | None,
        parents: tuple[Parent, ...],
        prev: bytes | None,
        ops: tuple[Op, ...],
        body: bytes | None = None,
        signature: bytes | None = None,
        end: int | None = None,
    ) -> None:
        # ``create`` is the one way an event is filled in (the hot paths call
        # it directly); the constructor, for everyone else, copies what it made
        made = Event.create(
            event_id, counter, lamport, hlc, key_id, public_key, parents, prev, ops,
            body, signature, end,
        )  # fmt: skip
        for name in Event.__slots__:
            setattr(self, name, getattr(made, name))

    @classmethod
    def create(
        cls,
        event_id: tuple[str, int],
        counter: int,
        lamport: int,
        hlc: int,
        key_id: bytes,
        public_key: bytes | None,
        parents: tuple[Parent, ...],
        prev: bytes | None,
        ops: tuple[Op, ...],
        body: bytes | None = None,
        signature: bytes | None = None,
        end: int | None = None,
    ) -> Event:
        """``Event(...)``, made faster: calling a class runs ``__init__`` through
        a generic slot that repacks the arguments, which costs as much as
        filling the event in. Every local commit and decoded event comes here
        (written out in one function: a helper called with twelve arguments
        was a tenth of the cost of a keystroke's event)."""
        event: Event = _new_object(cls)
        event.id = event_id
        event.parents = parents
        event.ops = ops
        if ops:
            first = ops[0]
            event._inner = first[2] if first[0] == SEQ_DELETE else None
            event._op = first
        else:
            event._inner = event._op = None
        if end is None:
            end = counter + ops_length(ops)
        if body is None:
            if len(parents) == 1:
                ((parent, digest),) = parents
                encoded: tuple[Any, ...] = ((parent[0], parent[1], digest),)
            else:
                encoded = tuple((p[0], p[1], h) for p, h in parents)
            body = pack(
                (
                    FORMAT,
                    event_id[0],
                    event_id[1],
                    counter,
                    lamport,
                    hlc,
                    key_id,
                    public_key,
                    encoded,
                    prev,
                    ops,
                )
            )
        event._atoms = (counter, end, lamport, hlc, body, key_id, public_key, prev)
        event._claimed = _UNKNOWN
        event.hash = _sha256(body).digest()
        event._signature = signature
        event._signer = None
        # the public key the signature is known to verify with (signed or
        # verified in this process): Ed25519 is deterministic, so checking
        # the same signature, hash and key again cannot give another answer
        event._valid_for = None
        return event

    @property
    def counter(self) -> int:
        return self._atoms[0]

    @property
    def end(self) -> int:
        return self._atoms[1]

    @property
    def lamport(self) -> int:
        return self._atoms[2]

    @property
    def hlc(self) -> int:
        return self._atoms[3]

    @property
    def body(self) -> bytes:
        return self._atoms[4]

    @property
    def key_id(self) -> bytes:
        return self._atoms[5]

    @property
    def public_key(self) -> bytes | None:
        return self._atoms[6]

    @property
    def prev(self) -> bytes | None:
        return self._atoms[7]

    @property
    def signature(self) -> bytes | None:
        """The author's Ed25519 signature of the hash, or None. An event its
        author marked with ``sign_later`` is signed here, on first need."""
        signature = self._signature
        if signature is None and self._signer is not None:
            self.sign(self._signer)
            signature = self._signature
        return signature

    @signature.setter
    def signature(self, value: bytes | None) -> None:
        self._signature = value
        self._signer = None
        self._valid_for = None

    def sign(self, key: SigningKey) -> None:
        """Sign now with the author's key."""
        self._signature = key.sign(self.hash)
        self._signer = None
        self._valid_for = key.public_bytes

    @property
    def signed(self) -> bool:
        """Does it carry a signature, or get one when first read (``sign_later``)?"""
        return self._signature is not None or self._signer is not None

    def known_valid(self, public_key: bytes) -> bool:
        """Was the signature already found to verify with ``public_key``, or
        will it, being made on first need by that key's private half?"""
        if self._signature is None:
            # another replica of this process made it: signing it only to
            # check the signature was a tenth of merging their histories
            signer = self._signer
            return signer is not None and signer.public_bytes == public_key
        return self._valid_for == public_key

    def mark_valid(self, public_key: bytes) -> None:
        self._valid_for = public_key

    def sign_later(self, key: SigningKey) -> None:
        """Have ``key`` sign this event when its signature is first read.

        A replica exports many events that will never need their own
        signature (a later event of the same author vouches for them through
        the hash chain); signing costs 36 µs, so it waits until someone looks.
        """
        if self._signature is None:
            self._signer = key

    @property
    def author(self) -> str:
        return self.id[0]

    @property
    def seq(self) -> int:
        return self.id[1]

    def prev_hash(self) -> bytes | None:
        """The hash this event claims for its author's previous event
        (worked out once: a receiver asks twice, a local event never)."""
        claimed = self._claimed
        if claimed is _UNKNOWN:
            claimed = self.prev
            if claimed is None:  # its author's previous event is a parent (or it has none)
                previous = (self.id[0], self.id[1] - 1)
                for parent, digest in self.parents:
                    if parent == previous:
                        claimed = digest
                        break
            self._claimed = claimed
        return claimed  # type: ignore[return-value]

    def to_bytes(self) -> bytes:
        return EVENT_MAGIC + pack((self.body, self.signature))

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError("an event is bytes")
        data = bytes(data)
        if len(data) > MAX_EVENT_BYTES:
            raise DecodeError("event larger than the limit")
        if data[:3] != EVENT_MAGIC[:3]:
            raise DecodeError("not a Gether event")
        if data[3:4] != EVENT_MAGIC[3:]:
            raise UnsupportedVersionError(f"event format {data[3:4].hex()} is not supported")
        outer = unpack(data[4:])
        if type(outer) is not tuple or len(outer) != 2 or type(outer[0]) is not bytes:
            raise DecodeError("malformed event envelope")
        body, signature = outer
        if signature is not None and (type(signature) is not bytes or len(signature) != 64):
            raise DecodeError("malformed signature")
        return decode_body(body, signature)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Event):
            return self.hash == other.hash and self.signature == other.signature
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"Event({self.id[0]}@{self.id[1]}, {len(self.ops)} op(s), {self.hash[:6].hex()})"


def _is_id(value: Any) -> bool:
    return (
        type(value) is tuple
        and len(value) == 2
        and type(value[0]) is str
        and type(value[1]) is int
        and value[1] >= 0
    )


def decode_body(body: bytes, signature: bytes | None = None) -> Event:
    """Parse and structurally check an event body (ops are judged later, against
    the event's causal past)."""
    fields = unpack(body)
    event = event_of_fields(fields, body, signature)
    try:
        canonical = pack(fields)
    except (TypeError, ValueError, IndexError) as exc:
        raise DecodeError(f"malformed event: {exc}") from exc
    if canonical != body:
        raise DecodeError("event body is not in canonical form")
    return event


def event_of_fields(
    fields: Any,
    body: bytes,
    signature: bytes | None = None,
    checked_parents: list[Parent] | None = None,
) -> Event:
    """``decode_body`` of fields already parsed, where ``body`` is
    ``pack(fields)`` (so it is canonical by construction): the compact sync
    encoding rebuilds the fields, and unpacking the body it had just packed,
    then packing it again to compare, was a fifth of a busy client's time.
    ``checked_parents``: the parents as ``(id, hash)``, from a caller that
    built them of checked parts (only their number and repeats are judged)."""
    if type(fields) is not tuple or not fields:
        raise DecodeError("malformed event body")
    if fields[0] != FORMAT:
        raise UnsupportedVersionError(f"event body format {fields[0]!r} is not supported")
    if len(fields) != 11:
        raise DecodeError("malformed event body")
    _, replica, seq, counter, lamport, hlc, key_id, public_key, parents, prev, ops = fields
    for name, number in (("seq", seq), ("counter", counter), ("lamport", lamport), ("hlc", hlc)):
        if type(number) is not int or number < 0 or number >= 2**63:
            raise DecodeError(f"malformed {name}")
    if seq < 1 or type(replica) is not str or not _is_id((replica, seq)):
        raise DecodeError("malformed event id")
    if type(key_id) is not bytes or len(key_id) != KEY_ID_SIZE:
        raise DecodeError("malformed key id")
    if public_key is not None and (type(public_key) is not bytes or len(public_key) != 32):
        raise DecodeError("malformed public key")
    if prev is not None and (type(prev) is not bytes or len(prev) != HASH_SIZE):
        raise DecodeError("malformed prev hash")
    if type(parents) is not tuple or type(ops) is not tuple or not ops:
        raise DecodeError("malformed parents or ops")
    if len(parents) > MAX_PARENTS:
        raise LimitExceededError(f"an event with {len(parents)} parents (limit {MAX_PARENTS})")
    parsed: list[Parent] = [] if checked_parents is None else checked_parents
    for parent in parents if checked_parents is None else ():
        if type(parent) is not tuple or len(parent) != 3:
            raise DecodeError("malformed parent")
        p_replica, p_seq, digest = parent
        if (
            type(p_replica) is not str
            or type(p_seq) is not int
            or p_seq < 1
            or type(digest) is not bytes
            or len(digest) != HASH_SIZE
        ):
            raise DecodeError("malformed parent")
        parsed.append(((p_replica, p_seq), digest))
    if len(parsed) > 1 and len({p for p, _ in parsed}) != len(parsed):
        raise DecodeError("duplicate parent")
    for op in ops:
        if type(op) is not tuple or not op or type(op[0]) is not int:
            raise DecodeError("malformed op")
    try:
        event = Event.create(
            (replica, seq),
            counter,
            lamport,
            hlc,
            key_id,
            public_key,
            tuple(parsed),
            prev,
            ops,
            body,
            signature,
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise DecodeError(f"malformed event: {exc}") from exc
    return event


__all__ = ["EVENT_MAGIC", "HASH_SIZE", "PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "Event", "decode_body"]
