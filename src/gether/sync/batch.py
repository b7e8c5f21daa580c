"""The compact v2 encoding of a batch of events (docs/protocol.md, "Events v2").

A transport encoding only: every record decodes back to the event's canonical
body (``core/event.py``), whose SHA-256 is its hash and what its signature
covers, so nothing about an event's identity depends on this module.

What makes it small, for one keystroke as for a catch-up of thousands:

* a batch is a msgpack stream (no array headers): a string table, then each
  record's fields, which of them present being said by its flags;
* replica ids appear once per batch, in the string table (front-coded);
  strings equal to a table entry inside ops become 3-byte references, and
  element ids of the author inside ops become counter deltas;
* seq, counter, Lamport time and HLC are deltas from a *base*: the author's
  previous event, when it is earlier in the batch or the receiver holds it;
* a parent (and ``prev``) the receiver holds, or that is earlier in the
  batch, is named by (replica, seq) without its hash: the receiver fills the
  hash in from its own log, so the recomputed event hash (and the signature
  check) still covers it. A parent it cannot find is ``UnknownParentError``;
* a parent the sender received from the receiver on this connection is
  named by where it came in that stream (``sync/window.py``): a negative
  number of a byte, no replica id in the table, no seq; in protocol 4, as
  a *run* (the newest m received) with the few exceptions toggled, since a
  keystroke among many writers names nearly every event it received last;
* the event hash is never sent (it is recomputed), and a sender may keep only
  each author's newest signature in a batch: the author's hash chain makes it
  vouch for the others (``EventLog.authenticate``).

Decoding is strict: records are type-checked, every reference is
bounds-checked, and the rebuilt body goes through ``decode_body`` (canonical
form, field types), so a hostile batch ends in a typed error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from gether.core.event import MAX_PARENTS, Event, Parent, _ext_hook, event_of_fields, pack
from gether.core.keys import KEY_ID_SIZE
from gether.errors import DecodeError, LimitExceededError, UnknownParentError, UsageError
from gether.sync.names import ReceivedNames, SentNames
from gether.sync.window import ReceivedWindow

EventId = tuple[str, int]
Lookup = Callable[[EventId], Event | None]
"""An event the receiver (or, when encoding, the sender) holds, by id."""
Holds = Callable[[EventId], bool]
"""Does the receiver hold this event (so its hash may be left out)?"""
Sent = Callable[[int], EventId | None]
"""The event the receiver sent at a position of its stream (near references)."""

# record flags, the common ones in the low bits (a keystroke's fit in one byte)
BASE = 1  # deltas are from the author's previous event (seq - 1)
DENSE = 2  # the counter follows the base's ops (omitted)
ONLY_PREV = 4  # the only parent is the base, hash-less (parents omitted)
SIGNATURE = 8  # a signature follows
LAMPORT = 16  # lamport is 1 + the parents' highest, all held (omitted)
PREV_OWN = 32  # prev is the base's hash
HLC_LOW = 64  # the low 16 bits of the HLC follow (else 0)
KEY = 128  # a key id follows (else the base's)
PUBLIC = 256  # a public key follows
PREV_HASH = 512  # a prev hash follows (rare: the author's previous event is not held)
NEAR = 1024  # some parents are near references (a base count follows)
_FLAGS = 2047


def _listed_flags(flags: int) -> int:
    """Flags as a batch with a listed table (protocol 3) writes them, and back:
    ``NEAR`` and ``HLC_LOW`` trade bits, so that a keystroke naming parents
    by place has its flags in one byte (``NEAR`` at 1024 made them three)."""
    swapped = flags & ~(NEAR | HLC_LOW)
    if flags & NEAR:
        swapped |= HLC_LOW
    if flags & HLC_LOW:
        swapped |= NEAR
    return swapped


RUN_BUDGET_PER_BYTE = 8
"""Parents a batch may name in near runs, per byte of it (plus 256): far
above what keystrokes name, and a bound on a hostile batch's lookups."""
_EXT_REF = 16  # inside ops: a string of the batch table (index, big-endian)
_EXT_OWN = 17  # inside ops: (author, counter - d), d signed big-endian
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
MAX_TABLE = 65_536


class _Ref:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _Own:
    __slots__ = ("delta",)

    def __init__(self, delta: int) -> None:
        self.delta = delta


# -- encoding ----------------------------------------------------------------------


def _check_id(value: str) -> None:
    if not value or not _ID_CHARS.issuperset(value):
        raise UsageError(f"{value!r} is not a replica id")


def encode_table(strings: Sequence[str]) -> str:
    """Replica ids in one string: comma-separated, each sharing a prefix of
    2-31 characters with the one before written as chr(length) + the rest
    (ids never hold commas or control characters)."""
    out: list[str] = []
    previous = ""
    for value in strings:
        _check_id(value)
        shared = 0
        limit = min(len(value), len(previous), 31)
        while shared < limit and value[shared] == previous[shared]:
            shared += 1
        out.append(chr(shared) + value[shared:] if shared >= 2 else value)
        previous = value
    return ",".join(out)


def encode_listed_table(strings: Sequence[str], names: SentNames) -> list[int | str]:
    """The table as a list (protocol 3): a replica this side named on the
    connection before by its place there, a new one in full (now listed)."""
    out: list[int | str] = []
    for value in strings:
        place = names.place(value)
        if place is None:
            _check_id(value)
            names.add(value)
            out.append(value)
        else:
            out.append(place)
    return out


def _compact(value: Any, table: dict[str, int], author: str, counter: int) -> Any:
    """``value`` (ops) with the author's element ids as counter deltas and
    table strings as references (not inside maps: keys must stay strings)."""
    if type(value) is str:
        index = table.get(value)
        if index is None:
            return value
        return msgpack.ExtType(_EXT_REF, index.to_bytes(1 if index < 256 else 2, "big"))
    if type(value) is tuple:
        if (
            len(value) == 2
            and value[0] == author
            and type(value[0]) is str
            and type(value[1]) is int
            and -(2**62) < counter - value[1] < 2**62
        ):
            delta = counter - value[1]
            size = next(n for n in (1, 2, 4, 8) if -(1 << (8 * n - 1)) <= delta < 1 << (8 * n - 1))
            return msgpack.ExtType(_EXT_OWN, delta.to_bytes(size, "big", signed=True))
        return tuple(_compact(v, table, author, counter) for v in value)
    return value


def _sorted(parents: Sequence[Parent]) -> bool:
    return all(a[0] < b[0] for a, b in itertools.pairwise(parents))


def near_run(distances: list[int]) -> list[int]:
    """Near parents, each ``distance`` back from the newest received (1 is
    the newest), as protocol 4 writes them: a run length m (the newest m are
    parents), then a negative ``-d`` per exception (inside the run: not a
    parent; beyond it: one). The run that leaves the fewest exceptions."""
    ordered = sorted(distances)
    best, fewest = 0, len(ordered)
    for count, distance in enumerate(ordered, 1):
        exceptions = (distance - count) + (len(ordered) - count)  # gaps, then beyond
        if exceptions < fewest:
            best, fewest = distance, exceptions
    inside = set(ordered)
    out = [best]
    out.extend(-d for d in range(1, best + 1) if d not in inside)
    out.extend(-d for d in ordered if d > best)
    return out


def encode_batch(
    events: Sequence[Event],
    lookup: Lookup,
    holds: Holds | None = None,
    *,
    thin_signatures: bool = True,
    near: ReceivedWindow | None = None,
    names: SentNames | None = None,
    runs: bool = False,
) -> bytes:
    """The records of ``events`` (parents first). ``holds`` says which events
    the receiver has (None: every event not in the batch, the case of a
    caught-up subscriber); ``lookup`` finds the sender's copy of an author's
    previous event, the base of the deltas; ``near``, what the receiver sent
    us on this connection (its parents among them are named by position);
    ``names``, the replica ids we listed on this connection (protocol 3: the
    table names them by place); ``runs``, near parents as a run (protocol 4:
    only for an event whose parents are in order, the order the receiver
    rebuilds)."""
    batch_ids = {event.id for event in events}
    near_at: dict[EventId, int] = {}
    replicas = {event.id[0] for event in events}
    placed: list[bool] = []  # per event: may its parents be named by place?
    for event in events:
        by_place = near is not None and (not runs or _sorted(event.parents))
        placed.append(by_place)
        for parent_id, _ in event.parents:
            if by_place and parent_id in near_at:
                continue
            if (
                near is not None
                and by_place
                and parent_id[0] != event.id[0]
                and parent_id not in batch_ids
            ):
                position = near.position(parent_id)
                if position is not None:
                    near_at[parent_id] = position - near.count  # < 0
                    continue
            replicas.add(parent_id[0])  # named in full (by this event, at least)
    strings = sorted(replicas)  # sorted, neighbours share prefixes (dummy0001, dummy0002...)
    table = {replica: i for i, replica in enumerate(strings)}
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

    head = encode_table(strings) if names is None else encode_listed_table(strings, names)
    out: list[Any] = [head]
    for position, event in enumerate(events):
        replica, seq = event.id
        own_previous = (replica, seq - 1)
        base = in_batch.get(own_previous)
        if base is None and seq > 1 and known(own_previous):
            base = lookup(own_previous)
        flags = 0
        counter, hlc_ms = event.counter, event.hlc >> 16
        if base is not None:
            flags |= BASE
            counter -= base.end
            hlc_ms -= base.hlc >> 16
            if counter == 0:
                flags |= DENSE
            if len(event.parents) == 1 and event.parents[0][0] == own_previous:
                flags |= ONLY_PREV
        fields: list[Any] = [table[replica], seq - last_seq.get(replica, 0)]
        if not flags & DENSE:
            fields.append(counter)
        fields.append(hlc_ms)
        if event.hlc & 0xFFFF:
            flags |= HLC_LOW
            fields.append(event.hlc & 0xFFFF)
        # the receiver knows the lamport of parents it holds: an event's is
        # the highest of them + 1 (a rule every valid event follows)
        highest: int | None = 0
        parents: list[Any] = []
        distances: list[int] = []  # near parents, with runs
        by_place = placed[position]
        for (p_replica, p_seq), digest in event.parents:
            back = near_at.get((p_replica, p_seq)) if by_place else None
            if back is not None:
                flags |= NEAR
                if runs:
                    distances.append(-back)
                else:
                    parents.append(back)
                parent = lookup((p_replica, p_seq))
                if parent is None or highest is None:
                    highest = None
                else:
                    highest = max(highest, parent.lamport)
                continue
            parents.append(table[p_replica])
            parents.append(p_seq - seq if p_replica == replica else p_seq)
            if known((p_replica, p_seq)):
                parent = in_batch.get((p_replica, p_seq)) or lookup((p_replica, p_seq))
                if parent is None or highest is None:
                    highest = None
                else:
                    highest = max(highest, parent.lamport)
            else:
                parents.append(digest)
                highest = None
        if not flags & ONLY_PREV:
            if flags & NEAR:
                assert near is not None
                fields.append(near.count)
                if runs:
                    parents[:0] = near_run(distances)
            fields.append(parents)
        if highest is not None and event.lamport == highest + 1:
            flags |= LAMPORT
        else:
            fields.append(event.lamport)
        fields.append(_compact(event.ops, table, replica, event.counter))
        signature = event.signature
        if signature is not None and (not thin_signatures or position in signed):
            flags |= SIGNATURE
            fields.append(signature)
        if base is None or base.key_id != event.key_id:
            flags |= KEY
            fields.append(event.key_id)
        if event.public_key is not None:
            flags |= PUBLIC
            fields.append(event.public_key)
        if event.prev is not None:
            if base is not None and base.hash == event.prev:
                flags |= PREV_OWN
            else:
                flags |= PREV_HASH
                fields.append(event.prev)
        out.append(flags if names is None else _listed_flags(flags))
        out.extend(fields)
        in_batch[event.id] = event
        last_seq[replica] = seq
    return b"".join(pack(item) for item in out)


# -- decoding ----------------------------------------------------------------------


def _hook(code: int, data: bytes) -> object:
    if code == _EXT_REF:
        if not 1 <= len(data) <= 2:
            raise DecodeError("malformed string reference")
        return _Ref(int.from_bytes(data, "big"))
    if code == _EXT_OWN:
        if len(data) not in (1, 2, 4, 8):
            raise DecodeError("malformed element id")
        return _Own(int.from_bytes(data, "big", signed=True))
    return _ext_hook(code, data)


def decode_table(text: Any) -> tuple[str, ...]:
    if type(text) is not str:
        raise DecodeError("malformed string table")
    if not text:
        return ()
    out: list[str] = []
    previous = ""
    for entry in text.split(","):
        if entry and ord(entry[0]) < 32:
            shared = ord(entry[0])
            if shared < 2 or shared > len(previous):
                raise DecodeError("malformed string table")
            entry = previous[:shared] + entry[1:]
        if not entry or len(entry) > 64 or not _ID_CHARS.issuperset(entry):
            raise DecodeError("malformed replica id in the string table")
        out.append(entry)
        previous = entry
    return tuple(out)


_MAX_OPS_DEPTH = 16
"""Ops are a few levels deep (ops, op, pred, id); values in them are scalars."""


def _expand(value: Any, strings: tuple[str, ...], author: str, counter: int, depth: int = 0) -> Any:
    kind = type(value)
    if kind is _Ref:
        if value.index >= len(strings):
            raise DecodeError("string reference out of the table")
        return strings[value.index]
    if kind is _Own:
        return (author, counter - value.delta)
    if kind is tuple:
        if depth >= _MAX_OPS_DEPTH:  # a bound, not Python's recursion limit
            raise DecodeError("ops nested too deeply")
        # scalars and references inline: a call per item was a fifth of decoding
        out: list[Any] = []
        for item in value:
            item_kind = type(item)
            if item_kind is _Ref:
                if item.index >= len(strings):
                    raise DecodeError("string reference out of the table")
                out.append(strings[item.index])
            elif item_kind is _Own:
                out.append((author, counter - item.delta))
            elif item_kind is tuple or item_kind is dict:
                out.append(_expand(item, strings, author, counter, depth + 1))
            else:
                out.append(item)
        return tuple(out)
    if kind is dict and any(type(v) in (_Ref, _Own) for v in value.values()):
        raise DecodeError("a reference inside a map")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not -(2**63) <= value < 2**64:
        raise DecodeError(f"malformed {what} in a record")
    return value


def _bytes(value: Any, size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError(f"malformed {what} in a record")
    return value


class _Fields:
    """The objects of a batch, one at a time, strictly bounded."""

    def __init__(self, data: bytes) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=False,
            ext_hook=_hook,
            strict_map_key=True,
            max_buffer_size=max(len(data), 1),
        )
        self._unpacker.feed(data)

    def next(self) -> Any:
        try:
            return self._unpacker.unpack()
        except msgpack.OutOfData as exc:
            raise DecodeError("a batch cut short") from exc
        except DecodeError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types
            raise DecodeError(f"malformed batch: {exc}") from exc

    def tell(self) -> int:
        position: int = self._unpacker.tell()
        return position


def decode_listed_table(items: Any, names: ReceivedNames) -> tuple[str, ...]:
    """A protocol 3 table: places in the names the sender listed on this
    connection, and new names (listed as they are read, like the sender did)."""
    if type(items) is not tuple or len(items) > MAX_TABLE:
        raise DecodeError("malformed string table")
    out: list[str] = []
    for item in items:
        if type(item) is int:
            name = names.at(item)
            if name is None:
                raise DecodeError("name reference out of the connection's names")
        elif type(item) is str and 0 < len(item) <= 64 and _ID_CHARS.issuperset(item):
            name = item
            names.add(name)
        else:
            raise DecodeError("malformed replica id in the string table")
        out.append(name)
    return tuple(out)


def decode_batch(
    data: bytes,
    lookup: Lookup,
    max_events: int,
    sent: Sent | None = None,
    names: ReceivedNames | None = None,
    runs: bool = False,
) -> list[Event]:
    """The events of a batch, each rebuilt into its canonical body and checked
    by ``decode_body``. ``lookup`` finds events the receiver holds (for
    hash-less parents and bases); one it cannot find is ``UnknownParentError``,
    as is a near reference ``sent`` cannot resolve (None: none allowed).
    ``names``: the names the sender listed on this connection (protocol 3;
    None: a listed table is malformed); ``runs``: near parents come as a run
    (protocol 4)."""
    fields = _Fields(data)
    head = fields.next()
    listed = names is not None and type(head) is tuple
    if listed:
        assert names is not None
        strings = decode_listed_table(head, names)
    else:
        strings = decode_table(head)
    in_batch: dict[EventId, Event] = {}
    last_seq: dict[str, int] = {}

    def find(event_id: EventId) -> Event:
        found = in_batch.get(event_id)
        if found is None:
            found = lookup(event_id)
        if found is None:
            raise UnknownParentError(f"{event_id[0]}@{event_id[1]} is not held here")
        return found

    def string(value: Any) -> str:
        if type(value) is not int or not 0 <= value < len(strings):
            raise DecodeError("replica index out of the table")
        return strings[value]

    out: list[Event] = []
    end = len(data)
    # a run of m parents costs a byte or two: bound them by the batch's size,
    # or a few bytes would cost thousands of lookups
    budget = [RUN_BUDGET_PER_BYTE * end + 256] if runs else None
    while fields.tell() < end:
        if len(out) >= max_events:
            raise LimitExceededError(f"more than {max_events} events in a batch")
        out.append(_record(fields, string, find, in_batch, last_seq, strings, sent, listed, budget))
    return out


def _run(raw: tuple[Any, ...], near_base: int, budget: list[int]) -> tuple[list[int], int]:
    """Protocol 4: the distances of a record's near parents from its run
    (``raw[0]``) and toggles (the negative items after it), and where the
    parents named in full begin. ``budget``: run parents the batch may still
    name."""
    run = raw[0] if raw else None
    if type(run) is not int or not 0 <= run <= near_base:
        raise DecodeError("malformed near run in a record")
    budget[0] -= run
    if run > MAX_PARENTS or budget[0] < 0:
        raise LimitExceededError("near runs naming more parents than a batch of its size may")
    toggled: set[int] = set()
    i = 1
    while i < len(raw) and type(raw[i]) is int and raw[i] < 0:
        distance = -raw[i]
        if distance in toggled:
            raise DecodeError("a near parent toggled twice in a record")
        toggled.add(distance)
        i += 1
    near = [d for d in range(1, run + 1) if d not in toggled]
    near.extend(sorted(d for d in toggled if d > run))
    return near, i


def _record(
    fields: _Fields,
    string: Callable[[Any], str],
    find: Callable[[EventId], Event],
    in_batch: dict[EventId, Event],
    last_seq: dict[str, int],
    strings: tuple[str, ...],
    sent: Sent | None,
    listed: bool,
    budget: list[int] | None,
) -> Event:
    flags = fields.next()
    if type(flags) is not int or not 0 <= flags <= _FLAGS:
        raise DecodeError("malformed record flags")
    if listed:
        flags = _listed_flags(flags)
    if flags & (DENSE | ONLY_PREV | PREV_OWN) and not flags & BASE:
        raise DecodeError("record flags need a base")
    if (flags & PREV_OWN and flags & PREV_HASH) or (flags & NEAR and flags & ONLY_PREV):
        raise DecodeError("malformed record flags")
    replica = string(fields.next())
    seq = last_seq.get(replica, 0) + _int(fields.next(), "seq")
    if not 1 <= seq < 2**63:
        raise DecodeError("malformed seq in a record")
    base: Event | None = None
    if flags & BASE:
        if seq < 2:
            raise DecodeError("a first event has no base")
        base = find((replica, seq - 1))
    if flags & DENSE:
        assert base is not None
        counter = base.end
    else:
        counter = _int(fields.next(), "counter") + (base.end if base is not None else 0)
    hlc_ms = _int(fields.next(), "hlc")
    if base is not None:
        hlc_ms += base.hlc >> 16
    hlc_low = _int(fields.next(), "hlc") if flags & HLC_LOW else 0
    if not 0 <= hlc_low <= 0xFFFF or not 0 <= hlc_ms < 2**47:
        raise DecodeError("malformed hlc in a record")
    if counter < 0:
        raise DecodeError("a delta below zero in a record")
    parents: list[tuple[str, int, bytes]] = []
    pairs: list[Parent] = []  # the same, as the event holds them (their parts are checked)
    highest: int | None = 0
    if flags & ONLY_PREV:
        assert base is not None
        parents.append((replica, seq - 1, base.hash))
        pairs.append(((replica, seq - 1), base.hash))
        highest = base.lamport
    else:
        near_base = -1
        if flags & NEAR:
            near_base = _int(fields.next(), "near base")
            if sent is None or near_base < 0:
                raise DecodeError("a near reference where none may be")
        raw = fields.next()
        if type(raw) is not tuple:
            raise DecodeError("malformed parents in a record")
        if len(raw) > 3 * MAX_PARENTS:  # before looking any of them up
            raise LimitExceededError(f"a record with over {MAX_PARENTS} parents")

        def near_parent(distance: int) -> None:
            """Take the parent ``distance`` back from ``near_base``."""
            nonlocal highest
            position = near_base - distance
            if near_base < 0 or position < 0:
                raise DecodeError("malformed near reference in a record")
            assert sent is not None
            near_id = sent(position)
            if near_id is None:
                raise UnknownParentError(f"no event sent at {position} is remembered here")
            parent = find(near_id)
            parents.append((near_id[0], near_id[1], parent.hash))
            pairs.append((near_id, parent.hash))
            if highest is not None and parent.lamport > highest:
                highest = parent.lamport

        i = 0
        ordered = budget is not None and near_base >= 0
        if ordered:  # protocol 4: the near parents are the run's
            assert budget is not None
            distances, i = _run(raw, near_base, budget)
            for distance in distances:
                near_parent(distance)
        while i < len(raw):
            first = raw[i]
            if type(first) is int and first < 0:
                if ordered:  # protocol 4 names them only in the run
                    raise DecodeError("malformed near reference in a record")
                near_parent(-first)  # protocol 2-3: in the parents' order
                i += 1
                continue
            if i + 1 >= len(raw):
                raise DecodeError("malformed parents in a record")
            if type(first) is not int or first >= len(strings):  # ``string``, inline
                raise DecodeError("replica index out of the table")
            p_replica, p_seq = strings[first], _int(raw[i + 1], "parent")
            if p_seq < 0 and p_replica == replica:
                p_seq += seq
            if p_seq < 1:
                raise DecodeError("malformed parent seq in a record")
            i += 2
            if i < len(raw) and type(raw[i]) is bytes:
                digest = _bytes(raw[i], 32, "parent hash")
                highest = None
                i += 1
            else:
                parent = find((p_replica, p_seq))
                digest = parent.hash
                if highest is not None and parent.lamport > highest:
                    highest = parent.lamport
            parents.append((p_replica, p_seq, digest))
            pairs.append(((p_replica, p_seq), digest))
        if ordered:  # the sender wrote them so only for parents in order
            parents.sort()
            pairs.sort()
    if flags & LAMPORT:
        if highest is None:
            raise DecodeError("an implied lamport with a parent not held")
        lamport = highest + 1
    else:
        lamport = _int(fields.next(), "lamport")
        if lamport < 0:
            raise DecodeError("malformed lamport in a record")
    ops = _expand(fields.next(), strings, replica, counter)
    signature = _bytes(fields.next(), 64, "signature") if flags & SIGNATURE else None
    if flags & KEY:
        key_id = _bytes(fields.next(), KEY_ID_SIZE, "key id")
    elif base is not None:
        key_id = base.key_id
    else:
        raise DecodeError("a record without a base names its key")
    public_key = _bytes(fields.next(), 32, "public key") if flags & PUBLIC else None
    prev: bytes | None = None
    if flags & PREV_HASH:
        prev = _bytes(fields.next(), 32, "prev hash")
    elif base is not None and flags & PREV_OWN:
        prev = base.hash
    body_fields = (
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
        body = pack(body_fields)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(f"malformed record: {exc}") from exc
    event = event_of_fields(body_fields, body, signature, pairs)
    in_batch[event.id] = event
    last_seq[replica] = seq
    return event
