"""The compact v2 encoding of a batch of events (docs/protocol.md, "Events v2").

A transport encoding only: every record decodes back to the event's canonical
body (``core/event.py``), whose SHA-256 is its hash and what its signature
covers, so nothing about an event's identity depends on this module.

What makes it small, for one keystroke as for a catch-up of thousands:

* replica ids appear once per batch, in a string table; strings equal to a
  table entry inside ops become 2-3 byte references;
* seq, counter, Lamport time and HLC are deltas from a *base*: the author's
  previous event, when it is earlier in the batch or the receiver holds it;
* a parent (and ``prev``) the receiver holds, or that is earlier in the
  batch, is named by (replica, seq) without its hash: the receiver fills the
  hash in from its own log, so the recomputed event hash (and the signature
  check) still covers it. A parent it cannot find is ``UnknownParentError``;
* the event hash is never sent (it is recomputed), and a sender may keep only
  each author's newest signature in a batch: the author's hash chain makes it
  vouch for the others (``EventLog.authenticate``).

Decoding is strict: records are type-checked, every reference is
bounds-checked, and the rebuilt body goes through ``decode_body`` (canonical
form, field types), so a hostile batch ends in a typed error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from gether.core.event import Event, _ext_hook, decode_body, pack
from gether.core.keys import KEY_ID_SIZE
from gether.errors import DecodeError, LimitExceededError, UnknownParentError

EventId = tuple[str, int]
Lookup = Callable[[EventId], Event | None]
"""An event the receiver (or, when encoding, the sender) holds, by id."""
Holds = Callable[[EventId], bool]
"""Does the receiver hold this event (so its hash may be left out)?"""

# record flags
BASE = 1  # deltas are from the author's previous event (seq - 1)
KEY = 2  # a key id follows (else the base's)
PUBLIC = 4  # a public key follows
PREV_HASH = 8  # a prev hash follows
PREV_OWN = 16  # prev is the hash of the author's previous event, resolved by the receiver
SIGNATURE = 32  # a signature follows
_FLAGS = BASE | KEY | PUBLIC | PREV_HASH | PREV_OWN | SIGNATURE

_EXT_REF = 16  # an ext type inside ops: a string of the batch table
_FIXED = 9  # [flags, replica, seq, counter, lamport, hlc_ms, hlc_low, parents, ops]
MAX_TABLE = 65_536


class _Ref:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


# -- encoding ----------------------------------------------------------------------


def _ref_strings(value: Any, table: dict[str, int]) -> Any:
    """``value`` with strings of the table replaced by references (not inside
    maps: their keys must stay strings, and values there are rare)."""
    if type(value) is str:
        index = table.get(value)
        if index is None:
            return value
        return msgpack.ExtType(_EXT_REF, index.to_bytes(1 if index < 256 else 2, "big"))
    if type(value) is tuple:
        return tuple(_ref_strings(v, table) for v in value)
    return value


def encode_batch(
    events: Sequence[Event],
    lookup: Lookup,
    holds: Holds | None = None,
    *,
    thin_signatures: bool = True,
) -> bytes:
    """The records of ``events`` (parents first). ``holds`` says which events
    the receiver has (None: every event not in the batch, the case of a
    caught-up subscriber); ``lookup`` finds the sender's copy of an author's
    previous event, the base of the deltas."""
    table: dict[str, int] = {}
    strings: list[str] = []

    def index(replica: str) -> int:
        found = table.get(replica)
        if found is None:
            found = table[replica] = len(strings)
            strings.append(replica)
        return found

    for event in events:
        index(event.id[0])
        for (replica, _), _ in event.parents:
            index(replica)
    signed: set[int] = set()
    if thin_signatures:
        newest: dict[str, int] = {}
        for position, event in enumerate(events):
            if event.signature is not None:
                newest[event.id[0]] = position
        signed = set(newest.values())
    in_batch: dict[EventId, Event] = {}
    last_seq: dict[str, int] = {}

    def known(event_id: EventId) -> bool:
        return event_id in in_batch or holds is None or holds(event_id)

    records: list[Any] = [strings]
    for position, event in enumerate(events):
        replica, seq = event.id
        own_previous = (replica, seq - 1)
        base = in_batch.get(own_previous)
        if base is None and seq > 1 and known(own_previous):
            base = lookup(own_previous)
        flags = 0
        counter, lamport, hlc_ms = event.counter, event.lamport, event.hlc >> 16
        if base is not None:
            flags |= BASE
            counter -= base.end
            lamport -= base.lamport
            hlc_ms -= base.hlc >> 16
        optional: list[Any] = []
        if base is None or base.key_id != event.key_id:
            flags |= KEY
            optional.append(event.key_id)
        if event.public_key is not None:
            flags |= PUBLIC
            optional.append(event.public_key)
        if event.prev is not None:
            if base is not None and base.hash == event.prev:
                flags |= PREV_OWN
            else:
                flags |= PREV_HASH
                optional.append(event.prev)
        signature = event.signature
        if signature is not None and (not thin_signatures or position in signed):
            flags |= SIGNATURE
            optional.append(signature)
        parents: list[Any] = []
        for (p_replica, p_seq), digest in event.parents:
            parents.append(table[p_replica])
            parents.append(p_seq - seq if p_replica == replica else p_seq)
            if not known((p_replica, p_seq)):
                parents.append(digest)
        records.append(
            (
                flags,
                table[replica],
                seq - last_seq.get(replica, 0),
                counter,
                lamport,
                hlc_ms,
                event.hlc & 0xFFFF,
                parents,
                _ref_strings(event.ops, table),
                *optional,
            )
        )
        in_batch[event.id] = event
        last_seq[replica] = seq
    return pack(records)


# -- decoding ----------------------------------------------------------------------


def _hook(code: int, data: bytes) -> object:
    if code == _EXT_REF:
        if not 1 <= len(data) <= 2:
            raise DecodeError("malformed string reference")
        return _Ref(int.from_bytes(data, "big"))
    return _ext_hook(code, data)


def _deref(value: Any, strings: tuple[str, ...]) -> Any:
    if type(value) is _Ref:
        if value.index >= len(strings):
            raise DecodeError("string reference out of the table")
        return strings[value.index]
    if type(value) is tuple:
        return tuple(_deref(v, strings) for v in value)
    if type(value) is dict and any(type(v) is _Ref for v in value.values()):
        raise DecodeError("string reference inside a map")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not -(2**63) <= value < 2**64:
        raise DecodeError(f"malformed {what} in a record")
    return value


def _bytes(value: Any, size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError(f"malformed {what} in a record")
    return value


def decode_batch(data: bytes, lookup: Lookup, max_events: int) -> list[Event]:
    """The events of a batch, each rebuilt into its canonical body and checked
    by ``decode_body``. ``lookup`` finds events the receiver holds (for
    hash-less parents and bases); one it cannot find is ``UnknownParentError``."""
    try:
        unpacked = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            ext_hook=_hook,
            strict_map_key=True,
            max_array_len=max(max_events + 1, MAX_TABLE),
        )
    except DecodeError:
        raise
    except ValueError as exc:
        if "exceeds max_array_len" in str(exc):
            raise LimitExceededError(f"more than {max_events} events in a batch") from exc
        raise DecodeError(f"malformed batch: {exc}") from exc
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed batch: {exc}") from exc
    if type(unpacked) is not tuple or not unpacked or type(unpacked[0]) is not tuple:
        raise DecodeError("a batch is [strings, record, ...]")
    strings, records = unpacked[0], unpacked[1:]
    if len(records) > max_events:
        raise LimitExceededError(f"more than {max_events} events in a batch")
    if len(strings) > MAX_TABLE or any(type(s) is not str for s in strings):
        raise DecodeError("malformed string table")
    in_batch: dict[EventId, Event] = {}
    last_seq: dict[str, int] = {}

    def find(event_id: EventId) -> Event:
        found = in_batch.get(event_id) or lookup(event_id)
        if found is None:
            raise UnknownParentError(f"{event_id[0]}@{event_id[1]} is not held here")
        return found

    def string(value: Any) -> str:
        if type(value) is not int or not 0 <= value < len(strings):
            raise DecodeError("replica index out of the table")
        out: str = strings[value]
        return out

    out: list[Event] = []
    for record in records:
        if type(record) is not tuple or len(record) < _FIXED:
            raise DecodeError("malformed record")
        flags, ri, seq_d, counter, lamport, hlc_ms, hlc_low, parents_raw, ops_raw = record[:_FIXED]
        if type(flags) is not int or flags & ~_FLAGS or (flags & PREV_HASH and flags & PREV_OWN):
            raise DecodeError("malformed record flags")
        optional = list(record[_FIXED:])
        wanted = sum(1 for f in (KEY, PUBLIC, PREV_HASH, SIGNATURE) if flags & f)
        if len(optional) != wanted:
            raise DecodeError("malformed record")
        replica = string(ri)
        seq = last_seq.get(replica, 0) + _int(seq_d, "seq")
        if not 1 <= seq < 2**63:
            raise DecodeError("malformed seq in a record")
        counter, lamport = _int(counter, "counter"), _int(lamport, "lamport")
        hlc_ms, hlc_low = _int(hlc_ms, "hlc"), _int(hlc_low, "hlc")
        if not 0 <= hlc_low <= 0xFFFF:
            raise DecodeError("malformed hlc in a record")
        base: Event | None = None
        if flags & BASE:
            if seq < 2:
                raise DecodeError("a first event has no base")
            base = find((replica, seq - 1))
            counter += base.end
            lamport += base.lamport
            hlc_ms += base.hlc >> 16
        elif flags & PREV_OWN:
            raise DecodeError("prev of the author's previous event without a base")
        if flags & KEY:
            key_id = _bytes(optional.pop(0), KEY_ID_SIZE, "key id")
        elif base is not None:
            key_id = base.key_id
        else:
            raise DecodeError("a record without a base names its key")
        public_key = _bytes(optional.pop(0), 32, "public key") if flags & PUBLIC else None
        prev: bytes | None = None
        if flags & PREV_HASH:
            prev = _bytes(optional.pop(0), 32, "prev hash")
        elif base is not None and flags & PREV_OWN:
            prev = base.hash
        signature = _bytes(optional.pop(0), 64, "signature") if flags & SIGNATURE else None
        if type(parents_raw) is not tuple:
            raise DecodeError("malformed parents in a record")
        parents: list[tuple[str, int, bytes]] = []
        i = 0
        while i < len(parents_raw):
            if i + 1 >= len(parents_raw):
                raise DecodeError("malformed parents in a record")
            p_replica, p_seq = string(parents_raw[i]), _int(parents_raw[i + 1], "parent")
            if p_seq < 0 and p_replica == replica:
                p_seq += seq
            if p_seq < 1:
                raise DecodeError("malformed parent seq in a record")
            i += 2
            if i < len(parents_raw) and type(parents_raw[i]) is bytes:
                digest = _bytes(parents_raw[i], 32, "parent hash")
                i += 1
            else:
                digest = find((p_replica, p_seq)).hash
            parents.append((p_replica, p_seq, digest))
        if hlc_ms < 0 or lamport < 0 or counter < 0:
            raise DecodeError("a delta below zero in a record")
        try:
            ops = _deref(ops_raw, strings)
        except RecursionError as exc:
            raise DecodeError("ops nested too deeply") from exc
        fields = (
            1,
            replica,
            seq,
            counter,
            lamport,
            (hlc_ms << 16) | hlc_low,
            key_id,
            public_key,
            tuple(parents),
            prev,
            ops,
        )
        try:
            body = pack(fields)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DecodeError(f"malformed record: {exc}") from exc
        event = decode_body(body, signature)
        in_batch[event.id] = event
        last_seq[replica] = seq
        out.append(event)
    return out
