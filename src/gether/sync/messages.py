"""The messages of the sync protocol, one frozen dataclass per kind, and their
msgpack encoding: ``[kind, field, field, ...]`` (docs/protocol.md). Version 2
changes ``Subscribe`` (a document number and flags) and replaces ``Events``
and ``Ack`` with ``EventsV2`` and ``AckV2``; the other kinds are the same.

Decoding is strict: every field is type-checked, so a malformed message is a
``DecodeError`` here and never reaches the state machine.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from gether.core.ids import Version
from gether.errors import (
    DecodeError,
    GetherError,
    LimitExceededError,
    UnsupportedVersionError,
)

MAGIC = "gether-sync"
PROTOCOL_VERSION = 1
"""The version of a ``Hello`` that names a single one (what v1 peers send)."""
VERSIONS = (1, 2, 3, 4)
"""The protocol versions this build speaks."""
MAX_DOC_NUMBER = 2**32 - 1
UNSIGNED = 1
"""``Subscribe.flags`` bit: the server hosts this document without per-event signatures."""


class MessageKind(IntEnum):
    HELLO = 1
    SUBSCRIBE = 2
    EVENTS = 3
    ACK = 4
    ERROR = 5
    PING = 6
    PONG = 7


class Encoding(IntEnum):
    """How the events of an ``Events`` message are packed."""

    PLAIN = 0
    ZLIB = 1


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each way: who is talking, and its credentials.

    ``versions`` (non-empty) are the protocol versions the sender speaks, sent
    as an array; without them ``protocol_version`` is sent alone (as v1 peers
    do). The answering side names the one version both will use."""

    peer_id: str
    credentials: str | None = None
    protocol_version: int = PROTOCOL_VERSION
    versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start syncing a document: "this is the version I hold". In v2 the
    server's Subscribe also gives the document's ``number`` (the same on all of
    its connections) and ``unsigned``; v1 sends neither."""

    doc_id: str
    version: Version
    number: int | None = None
    unsigned: bool = False


@dataclass(frozen=True, slots=True)
class Events:
    """A batch of events of one document, parents first. Each event is its body
    and its signature (or None): ``Event.body`` and ``Event.signature``."""

    doc_id: str
    batch: int
    events: tuple[tuple[bytes, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class EventsV2:
    """A v2 batch: the document's number and its records (``sync/batch.py``),
    uncompressed here; ``encode`` deflates large ones."""

    number: int
    records: bytes


@dataclass(frozen=True, slots=True)
class AckV2:
    """A v2 cumulative acknowledgement: the next ``count`` batches of the
    document the sender sent us are stored."""

    number: int
    count: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver stored batch ``batch``; it now holds ``version``."""

    doc_id: str
    batch: int
    version: Version


@dataclass(frozen=True, slots=True)
class Error:
    """A refusal with a stable code (``GetherError.code``). ``doc_id`` is None
    for a connection-level error, after which the sender closes."""

    code: str
    message: str
    doc_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    """Sent after everything the peer lacked of our subscribed documents."""

    nonce: int


Message = Hello | Subscribe | Events | Ack | Error | Ping | Pong | EventsV2 | AckV2


def _version_out(version: Version) -> dict[str, int]:
    return version.to_dict()


def pack_events(
    events: Sequence[tuple[bytes, bytes | None]], compress_above: int = 4096
) -> tuple[Encoding, bytes]:
    """The ``events`` field of an ``Events`` message, compressed if large:
    the costly part, which a server computes once for all its subscribers."""
    packed: bytes = msgpack.packb([list(e) for e in events], use_bin_type=True)
    if len(packed) > compress_above:
        return Encoding.ZLIB, zlib.compress(packed, 6)
    return Encoding.PLAIN, packed


def encode_packed_events(doc_id: str, batch: int, encoding: Encoding, packed: bytes) -> bytes:
    """The payload of an ``Events`` message whose events are packed already."""
    out: bytes = msgpack.packb(
        [MessageKind.EVENTS, doc_id, batch, int(encoding), packed], use_bin_type=True
    )
    return out


def encode(message: Message, compress_above: int = 4096, protocol: int = 1) -> bytes:
    """The payload of one frame (``protocol``: the connection's version)."""
    fields: list[Any]
    match message:
        case Hello(peer_id, credentials, protocol_version, versions):
            spoken: Any = list(versions) if versions else protocol_version
            fields = [MessageKind.HELLO, MAGIC, spoken, peer_id, credentials]
        case Subscribe(doc_id, version, number, unsigned):
            fields = [MessageKind.SUBSCRIBE, doc_id, _version_out(version)]
            if number is not None or unsigned:  # v2: the server's answer, or unsigned
                fields += [number, UNSIGNED if unsigned else 0]
        case EventsV2(number, records):
            # [3, number] then the records as they are, or deflated in one bin
            head: bytes = msgpack.packb([MessageKind.EVENTS, number])
            if len(records) > compress_above:
                deflated: bytes = msgpack.packb(zlib.compress(records, 6), use_bin_type=True)
                return head + deflated
            return head + records
        case AckV2(number, count):
            fields = [MessageKind.ACK, number, count]
        case Events(doc_id, batch, events):
            return encode_packed_events(doc_id, batch, *pack_events(events, compress_above))
        case Ack(doc_id, batch, version):
            fields = [MessageKind.ACK, doc_id, batch, _version_out(version)]
        case Error(code, text, doc_id):
            fields = [MessageKind.ERROR, code, text, doc_id]
        case Ping(nonce):
            fields = [MessageKind.PING, nonce]
        case Pong(nonce):
            fields = [MessageKind.PONG, nonce]
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


# -- decoding --------------------------------------------------------------------


def _str(value: Any, what: str, limit: int = 256) -> str:
    if type(value) is not str or len(value) > limit:
        raise DecodeError(f"malformed {what}")
    return value


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise DecodeError(f"malformed {what}")
    return value


def _doc(value: Any) -> str:
    doc_id = _str(value, "document id")
    if not doc_id or "\x00" in doc_id:
        raise DecodeError("malformed document id")
    return doc_id


def _version(value: Any, max_entries: int) -> Version:
    if type(value) is not dict:
        raise DecodeError("malformed version")
    if len(value) > max_entries:
        raise LimitExceededError(f"a version of {len(value)} replicas")
    try:
        return Version({_str(r, "replica id", 64): _uint(s, "seq") for r, s in value.items()})
    except ValueError as exc:  # InvalidValueError: a bad replica id
        raise DecodeError(f"malformed version: {exc}") from exc


def _inflate(encoding: Any, packed: Any, max_bytes: int) -> bytes:
    """Events bytes as sent, inflated (at most ``max_bytes``) if compressed."""
    if type(packed) is not bytes:
        raise DecodeError("malformed events")
    if encoding == Encoding.ZLIB:
        inflater = zlib.decompressobj()
        try:
            packed = inflater.decompress(packed, max_bytes)
        except zlib.error as exc:
            raise DecodeError(f"malformed compressed events: {exc}") from exc
        if inflater.unconsumed_tail:
            raise LimitExceededError(f"events inflate beyond {max_bytes} bytes")
        if not inflater.eof:
            raise DecodeError("truncated compressed events")
    elif encoding != Encoding.PLAIN:
        raise DecodeError(f"unknown events encoding {encoding!r}")
    out: bytes = packed
    return out


def _events(encoding: Any, packed: Any, max_events: int, max_bytes: int) -> tuple[Any, ...]:
    packed = _inflate(encoding, packed, max_bytes)
    try:
        events = msgpack.unpackb(packed, raw=False, max_array_len=max_events, use_list=False)
    except ValueError as exc:
        if "exceeds max_array_len" in str(exc):
            raise LimitExceededError(f"more than {max_events} events in a batch") from exc
        raise DecodeError(f"malformed events: {exc}") from exc
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed events: {exc}") from exc
    if type(events) is not tuple:
        raise DecodeError("malformed events")
    for event in events:
        if (
            type(event) is not tuple
            or len(event) != 2
            or type(event[0]) is not bytes
            or (event[1] is not None and type(event[1]) is not bytes)
        ):
            raise DecodeError("malformed event in a batch")
    return events


def _hello(spoken: Any, peer_id: Any, credentials: Any) -> Hello:
    if type(spoken) is int:
        if spoken not in VERSIONS:
            raise UnsupportedVersionError(f"protocol version {spoken!r} is not spoken here")
        chosen, versions = spoken, ()
    elif type(spoken) is list and 0 < len(spoken) <= 16 and all(type(v) is int for v in spoken):
        common = set(spoken) & set(VERSIONS)
        if not common:
            raise UnsupportedVersionError(
                f"none of the protocol versions {spoken!r} is spoken here"
            )
        chosen, versions = max(common), tuple(spoken)
    else:
        raise DecodeError("malformed protocol version")
    if credentials is not None:
        credentials = _str(credentials, "credentials", 16_384)
    return Hello(_str(peer_id, "peer id", 64), credentials, chosen, versions)


_EVENTS_V2_HEAD = bytes((0x92, MessageKind.EVENTS))


def _events_v2(payload: bytes, max_bytes: int) -> EventsV2:
    """``[3, number]`` then the records: a stream starting with the string
    table (a str), or one bin of them deflated."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(payload), 1))
    unpacker.feed(payload)
    try:
        _, number = unpacker.unpack()
        start = unpacker.tell()
        if payload[start : start + 1] in (b"\xc4", b"\xc5", b"\xc6"):
            packed = unpacker.unpack()
            if unpacker.tell() != len(payload):
                raise DecodeError("bytes after compressed events")
            records = _inflate(Encoding.ZLIB, packed, max_bytes)
        else:
            records = payload[start:]
    except GetherError:  # DecodeError, LimitExceededError of the inflation
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed events message: {exc}") from exc
    if not records:
        raise DecodeError("an events message without records")
    return EventsV2(_number(number), records)


def _number(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_DOC_NUMBER:
        raise DecodeError("malformed document number")
    return value


def decode(
    payload: bytes,
    *,
    protocol: int = 1,
    max_events: int = 10_000,
    max_bytes: int = 16 << 20,
    max_replicas: int = 100_000,
) -> Message:
    """The message in one frame's payload (limits: events per batch, bytes of
    inflated events, replicas in a version)."""
    if protocol >= 2 and payload[:2] == _EVENTS_V2_HEAD:
        return _events_v2(payload, max_bytes)
    try:
        fields = msgpack.unpackb(
            payload, raw=False, use_list=True, max_array_len=16, max_map_len=max_replicas
        )
    except ValueError as exc:
        if "exceeds max_map_len" in str(exc):
            raise LimitExceededError(f"a version of more than {max_replicas} replicas") from exc
        raise DecodeError(f"malformed message: {exc}") from exc
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed message: {exc}") from exc
    if type(fields) is not list or not fields or type(fields[0]) is not int:
        raise DecodeError("a message is [kind, ...]")
    kind, *rest = fields
    try:
        match MessageKind(kind), rest:
            case MessageKind.HELLO, [magic, spoken, peer_id, credentials]:
                if magic != MAGIC:
                    raise DecodeError("not a gether sync hello")
                return _hello(spoken, peer_id, credentials)
            case MessageKind.SUBSCRIBE, [doc_id, version]:  # v1, or a v2 client's
                return Subscribe(_doc(doc_id), _version(version, max_replicas))
            case MessageKind.SUBSCRIBE, [doc_id, version, number, flags]:
                if type(flags) is not int or flags & ~UNSIGNED:
                    raise DecodeError("malformed subscribe flags")
                return Subscribe(
                    _doc(doc_id),
                    _version(version, max_replicas),
                    None if number is None else _number(number),
                    bool(flags & UNSIGNED),
                )
            case MessageKind.EVENTS, [number, encoding, packed] if protocol >= 2:
                return EventsV2(_number(number), _inflate(encoding, packed, max_bytes))
            case MessageKind.ACK, [number, count] if protocol >= 2:
                return AckV2(_number(number), _uint(count, "acknowledged count"))
            case MessageKind.EVENTS, [doc_id, batch, encoding, packed] if protocol == 1:
                events = _events(encoding, packed, max_events, max_bytes)
                return Events(_doc(doc_id), _uint(batch, "batch number"), events)
            case MessageKind.ACK, [doc_id, batch, version] if protocol == 1:
                return Ack(
                    _doc(doc_id), _uint(batch, "batch number"), _version(version, max_replicas)
                )
            case MessageKind.ERROR, [code, text, doc_id]:
                return Error(
                    _str(code, "error code", 64),
                    _str(text, "error message", 4096),
                    None if doc_id is None else _doc(doc_id),
                )
            case MessageKind.PING, [nonce]:
                return Ping(_uint(nonce, "nonce"))
            case MessageKind.PONG, [nonce]:
                return Pong(_uint(nonce, "nonce"))
    except ValueError as exc:  # MessageKind(kind) of an unknown kind
        raise DecodeError(f"unknown message kind {kind!r}") from exc
    raise DecodeError(f"malformed {MessageKind(kind).name.lower()} message")
