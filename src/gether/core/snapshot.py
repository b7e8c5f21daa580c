"""The saved form of a document: its state, ready to use, next to its history.

::

    b"GTd" FORMAT  lzma( msgpack([replicas, state, history, staged]) )

* ``replicas``: the replica ids; everywhere else a replica is its index here.
* ``state``: every container as integrated (sequences as runs with their
  origins, registers with their live writes), so opening a document reads it
  directly instead of replaying history.
* ``history``: every event, column by column (per replica: lamport and clock
  deltas, parents, ops; text inserted as one string). Hashes are not stored:
  the encoding of an event is canonical, so they are recomputed, and only the
  newest signature of each replica is kept, since it vouches for the hash
  chain below it. History is decoded only when something needs it.
* ``staged``: received events still waiting, as their bytes.

lzma's large window lets the text of the state and the text of the history
share one compressed copy.
"""

from __future__ import annotations

import lzma
from itertools import accumulate
from typing import Any

import msgpack

from gether.core.containers import (
    DELETED,
    Container,
    CounterState,
    Element,
    ListState,
    MapState,
    Register,
    TextState,
)
from gether.core.event import Event, _ext_default, _ext_hook
from gether.core.history_codec import (
    Replicas,
    TextIndex,
    dec_container,
    dec_id,
    decode_history,
    enc_container,
    enc_id,
    encode_history,
)
from gether.core.ids import ContainerId, OpId
from gether.core.sequence import Block, Run, Sequence
from gether.core.state import DocState
from gether.core.values import INT_MAX, INT_MIN, Kind
from gether.errors import DecodeError, UnsupportedVersionError

# what damaged bytes can raise on their way through lzma, msgpack and the columns
_CORRUPT = (
    lzma.LZMAError,
    msgpack.exceptions.UnpackException,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    StopIteration,
    UnicodeDecodeError,
)

MAGIC = b"GTd"
FORMAT = 1
_EXT_DELETED = 3
_MAX_SAVED = 1 << 31


def _default(value: object) -> msgpack.ExtType:
    if value is DELETED:
        return msgpack.ExtType(_EXT_DELETED, b"")
    return _ext_default(value)  # container values, as in events


def _hook(code: int, data: bytes) -> object:
    if code == _EXT_DELETED:
        return DELETED
    return _ext_hook(code, data)


# -- state -------------------------------------------------------------------------


def _enc_register(rep: Replicas, register: Register) -> Any:
    writes = [(w[0], rep(w[1]), w[2], w[3]) for w in register.writes]
    killed = [(rep(r), c) for r, c in sorted(register.killed)] if register.killed else None
    return (writes, killed)


def _dec_register(names: list[str], value: Any) -> Register:
    register = Register()
    writes, killed = value
    register.writes = [(w[0], names[w[1]], w[2], w[3]) for w in writes]
    if killed:
        register.killed = {(names[r], c) for r, c in killed}
    return register


_DELETED = 1
_LEFT_OWN = 2  # left origin: the run's own previous id
_RIGHT_GIVEN = 4
_LEFT_PREVIOUS_RUN = 8  # left origin: the last element of the run before
_RIGHT_NEXT_RUN = 16  # right origin: the first element of the run after


def _enc_sequence(rep: Replicas, seq: Sequence, text_index: TextIndex) -> Any:
    """Runs as columns. Most origins name a neighbour in the final order, so
    they become flags instead of ids."""
    runs = list(seq.runs())
    reps = [rep(run.replica) for run in runs]
    counters = [run.counter for run in runs]
    lengths = [run.length for run in runs]
    flags: list[int] = []
    origins: list[Any] = []
    contents: list[Any] = []
    for i, run in enumerate(runs):
        flag = _DELETED if run.deleted else 0
        before = runs[i - 1] if i else None
        after = runs[i + 1] if i + 1 < len(runs) else None
        if run.left == (run.replica, run.counter - 1):
            flag |= _LEFT_OWN
        elif before is not None and run.left == (
            before.replica,
            before.counter + before.length - 1,
        ):
            flag |= _LEFT_PREVIOUS_RUN
        else:
            origins.append(enc_id(rep, run.left))
        if run.right is not None:
            if after is not None and run.right == (after.replica, after.counter):
                flag |= _RIGHT_NEXT_RUN
            else:
                flag |= _RIGHT_GIVEN
                origins.append(enc_id(rep, run.right))
        flags.append(flag)
        if seq.text:
            # the text is in the history: keep how far its offset there lags
            # the run's counter, which changes only at non-text ops
            if not run.deleted:
                contents.append(run.counter - text_index.offset(run.replica, run.counter))
        else:
            contents.append(enc_id(rep, run.content))
    if seq.text:
        contents = _deltas(contents)
    return (reps, _deltas(counters), lengths, bytes(flags), origins, contents)


def _dec_sequence(names: list[str], value: Any, text: bool, history_text: str) -> Sequence:
    reps, counter_deltas, lengths, flags, origins, contents = value
    seq = Sequence(text)
    lags = iter(_undeltas(contents)) if text else iter(())
    next_origin = iter(origins).__next__
    counters = _undeltas(counter_deltas)
    replicas = [names[r] for r in reps]
    blocks: list[Block] = []
    block = Block()
    runs = block.runs
    visible = 0
    previous_last: OpId | None = None
    count = len(counters)
    for i in range(count):
        counter = counters[i]
        replica = replicas[i]
        length = lengths[i]
        flag = flags[i]
        if flag & _LEFT_OWN:
            left: OpId | None = (replica, counter - 1)
        elif flag & _LEFT_PREVIOUS_RUN:
            left = previous_last
        else:
            left = dec_id(names, next_origin())
        if flag & _RIGHT_NEXT_RUN and i + 1 < count:
            right: OpId | None = (replicas[i + 1], counters[i + 1])
        elif flag & _RIGHT_GIVEN:
            right = dec_id(names, next_origin())
        else:
            right = None
        previous_last = (replica, counter + length - 1)
        deleted = flag & _DELETED
        if not text:
            content: Any = dec_id(names, contents[i])
        elif deleted:
            content = ""
        else:
            offset = counter - next(lags)
            content = history_text[offset : offset + length]
        if len(runs) >= 32:
            blocks.append(block)
            block = Block()
            runs = block.runs
        runs.append(Run(replica, counter, length, content, left, right, bool(deleted), block))
        block.size += length
        if not deleted:
            block.visible += length
            visible += length
    blocks.append(block)
    seq.blocks = blocks
    seq.visible = visible
    seq.rebuild_index()
    return seq


def _visible_text(value: Any, history_text: str) -> str:
    """The text of encoded runs, without building them."""
    _, counter_deltas, lengths, flags, _, contents = value
    lags = iter(_undeltas(contents))
    pieces = []
    for counter, length, flag in zip(accumulate(counter_deltas), lengths, flags, strict=True):
        if not flag & _DELETED:
            offset = counter - next(lags)
            pieces.append(history_text[offset : offset + length])
    return "".join(pieces)


def _enc_container_state(rep: Replicas, container: Container, text_index: TextIndex) -> Any:
    if isinstance(container, MapState):
        keys = list(container.entries)
        return (keys, [_enc_register(rep, container.entries[k]) for k in keys])
    if isinstance(container, TextState):
        return _enc_sequence(rep, container.seq, text_index)
    if isinstance(container, ListState):
        elements = []
        for element_id, element in container.elements.items():
            stamp = element.slot_stamp
            elements.append(
                (
                    enc_id(rep, element_id),
                    enc_id(rep, element.slot),
                    (stamp[0], rep(stamp[1]), stamp[2]),
                    element.deleted,
                    _enc_register(rep, element.register),
                )
            )
        return (_enc_sequence(rep, container.seq, text_index), elements)
    # concurrent increments may sum past 64 bits: such totals travel as text
    return container.value if INT_MIN <= container.value <= INT_MAX else str(container.value)


def _dec_container_state(
    names: list[str], cid: ContainerId, kind: Kind, value: Any, history_text: str
) -> Container:
    if kind is Kind.MAP:
        state = MapState(cid)
        keys, registers = value
        state.entries = {k: _dec_register(names, r) for k, r in zip(keys, registers, strict=True)}
        return state
    if kind is Kind.TEXT:
        text = TextState(cid)
        text.defer(
            lambda: _dec_sequence(names, value, True, history_text),
            lambda: _visible_text(value, history_text),
        )
        return text
    if kind is Kind.LIST:
        lst = ListState(cid)
        seq_value, elements = value
        lst.seq = _dec_sequence(names, seq_value, False, history_text)
        for element_id, slot, stamp, deleted, register in elements:
            element = Element(
                dec_id(names, slot),  # type: ignore[arg-type]
                (stamp[0], names[stamp[1]], stamp[2]),
            )
            element.deleted = deleted
            element.register = _dec_register(names, register)
            lst.elements[dec_id(names, element_id)] = element  # type: ignore[index]
        return lst
    counter = CounterState(cid)
    counter.value = int(value)
    return counter


def encode_state(rep: Replicas, state: DocState, text_index: TextIndex) -> Any:
    return [
        (enc_container(rep, cid), int(c.kind), _enc_container_state(rep, c, text_index))
        for cid, c in state.containers.items()
    ]


def decode_state(names: list[str], value: Any, history_text: str) -> DocState:
    state = DocState()
    for cid_value, kind, payload in value:
        cid = dec_container(names, cid_value)
        state.containers[cid] = _dec_container_state(names, cid, Kind(kind), payload, history_text)
    return state


# -- the whole document -----------------------------------------------------------


def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, default=_default, use_bin_type=True)
    return out


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, use_list=False, raw=False, ext_hook=_hook, strict_map_key=False)


def _compress(data: bytes) -> bytes:
    return lzma.compress(data, preset=6)


def _decompress(data: bytes) -> bytes:
    decompressor = lzma.LZMADecompressor()
    out = decompressor.decompress(data, max_length=_MAX_SAVED)
    if not decompressor.eof:
        raise DecodeError("saved document is truncated or too large")
    return out


def encode_document(
    state: DocState, chains: dict[str, list[Event]], staged: list[bytes], max_hlc: int
) -> bytes:
    rep = Replicas()
    for replica in chains:
        rep(replica)
    history, text, text_index = encode_history(rep, chains)
    keys = [(rep(replica), chain[0].key_id) for replica, chain in chains.items()]
    return _frame(
        rep.names,
        (max_hlc, keys, [(rep(replica), len(chain)) for replica, chain in chains.items()]),
        _compress(_pack(encode_state(rep, state, text_index))),
        _compress(text.encode()),
        _compress(_pack(history)),
        staged,
    )


def _frame(names: list[str], summary: Any, *sections: Any) -> bytes:
    return MAGIC + bytes((FORMAT,)) + _pack((names, summary, *sections))


class SavedDocument:
    """A decoded save: the state now, the history when asked for."""

    __slots__ = ("_history", "_summary", "names", "raw", "staged", "state", "text")

    def __init__(self, raw: tuple[Any, ...]) -> None:
        names, summary, state, text, history, staged = raw
        self.raw = raw
        self.names = list(names)
        self._summary = summary
        self.text = _decompress(text).decode()
        self.state = decode_state(self.names, _unpack(_decompress(state)), self.text)
        self._history = history
        self.staged = list(staged)

    def events(self) -> list[Event]:
        try:
            return decode_history(self.names, _unpack(_decompress(self._history)), self.text)
        except _CORRUPT as exc:
            raise DecodeError(f"corrupt saved history: {exc!r}") from exc

    def key_of(self, replica: str) -> bytes | None:
        """The key id a replica of this history signs with, if it has events."""
        for index, key_id in self._summary[1]:
            if self.names[index] == replica:
                found: bytes = key_id
                return found
        return None

    def max_hlc(self) -> int:
        value: int = self._summary[0]
        return value

    def version(self) -> dict[str, int]:
        """How many events of each replica the history holds."""
        return {self.names[index]: count for index, count in self._summary[2]}


def encode_saved(saved: SavedDocument) -> bytes:
    """Save again a loaded document that has not changed."""
    return MAGIC + bytes((FORMAT,)) + _pack(saved.raw)


def decode_document(data: bytes) -> SavedDocument:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("a saved document is bytes")
    data = bytes(data)
    if data[:3] != MAGIC:
        raise DecodeError("not a saved Gether document")
    if data[3:4] != bytes((FORMAT,)):
        raise UnsupportedVersionError(f"saved document format {data[3:4].hex()} is not supported")
    try:
        raw = _unpack(data[4:])
        if type(raw) is not tuple or len(raw) != 6:
            raise DecodeError("malformed saved document")
        return SavedDocument(raw)
    except DecodeError:
        raise
    except _CORRUPT as exc:
        raise DecodeError(f"corrupt saved document: {exc!r}") from exc


def _deltas(values: list[int]) -> list[int]:
    out = []
    last = 0
    for value in values:
        out.append(value - last)
        last = value
    return out


def _undeltas(values: list[int]) -> list[int]:
    return list(accumulate(values))
