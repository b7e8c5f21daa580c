"""The saved form of a document: its state, ready to use, next to its history.

::

    b"GTd" FORMAT=2  msgpack([replicas, summary, zlib(state), zlib(visible),
                              lzma(runs), lzma(deleted), lzma(history), staged])

* ``replicas``: the replica ids; everywhere else a replica is its index here.
* ``summary``: ``[max_hlc, key ids, version, heads, max_lamport, tips]``: what
  opening a document and its next local event need of the history (heads
  with their hashes, and per replica the counter after its newest event and
  that event's hash), so a local edit does not decode the history.
* ``state``: every container as integrated (sequences as runs with their
  origins, registers with their live writes) with where it was created
  (parent and key: its place in a schema), so opening a document reads it
  directly instead of replaying history. A text is only its visible length
  here: its characters are in ``visible``, its runs in ``runs``.
* ``visible``: the visible text of every text, one after the other. Opening a
  document and reading its texts needs only this, ``state`` and ``summary``,
  the sections compressed with zlib, which inflates several times faster than
  lzma. Everything below is read only when needed, and compressed with lzma.
* ``runs``: per text, its runs as columns (decoded when it is first edited
  or merged into).
* ``deleted``: the text of every deleted run, in document order. With
  ``visible`` it holds every character ever inserted, exactly once, which is
  where the history's text inserts find their text.
* ``history``: every event, column by column (per replica: lamport and clock
  deltas, parents, ops). Hashes are not stored: the encoding of an event is
  canonical, so they are recomputed, and only the newest signature of each
  replica is kept, since it vouches for the hash chain below it.
* ``staged``: received events still waiting, as their bytes.

Format 1 (``[replicas, summary, lzma(state), lzma(text), lzma(history),
staged]``, runs pointing into the history's inserted text in typing order) is
still read.
"""

from __future__ import annotations

import lzma
import zlib
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterator
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
    SetState,
    TextState,
)
from gether.core.event import Event, _ext_default, _ext_hook
from gether.core.history_codec import (
    Replicas,
    TextIndex,
    TextSource,
    dec_container,
    dec_id,
    decode_history,
    enc_container,
    enc_id,
    encode_history,
    sequential_text,
)
from gether.core.ids import ContainerId, EventKey, OpId
from gether.core.oplog import TipLog
from gether.core.sequence import Block, Run, Sequence
from gether.core.state import DocState
from gether.core.values import INT_MAX, INT_MIN, SET_KINDS, Kind, element_key
from gether.errors import DecodeError, UnsupportedVersionError

# what damaged bytes can raise on their way through lzma, msgpack and the columns
_CORRUPT = (
    lzma.LZMAError,
    zlib.error,
    msgpack.exceptions.UnpackException,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    StopIteration,
    UnicodeDecodeError,
)

MAGIC = b"GTd"
FORMAT = 2
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


class _TextSink:
    """Collects, in document order, the text of every text run being saved:
    visible text (read when a document opens) apart from deleted text (read
    only to rebuild history)."""

    def __init__(self, history_text: str, text_index: TextIndex) -> None:
        self.history_text = history_text
        self.index = text_index
        self.visible: list[str] = []
        self.deleted: list[str] = []
        self.runs: list[Any] = []

    def add(self, run: Run) -> int:
        """Take in a run's text; return how many visible characters it adds."""
        offset = self.index.offset(run.replica, run.counter)
        piece = self.history_text[offset : offset + run.length]
        if run.deleted:
            self.deleted.append(piece)
            return 0
        self.visible.append(piece)
        return run.length


def _enc_sequence(rep: Replicas, seq: Sequence, texts: _TextSink | None) -> Any:
    """Runs as columns. Most origins name a neighbour in the final order, so
    they become flags instead of ids. The text of a text sequence goes to
    ``texts``; a list keeps its slots' contents as a column."""
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
        if texts is None:
            contents.append(enc_id(rep, run.content))
        else:
            texts.add(run)
    columns = (reps, _deltas(counters), lengths, bytes(flags), origins)
    return columns if texts is not None else (*columns, contents)


def _dec_sequence(names: list[str], value: Any, pieces: Iterator[str] | None) -> Sequence:
    """Runs from their columns. ``pieces`` yields the text of each visible run
    of a text, in order; a list (``None``) has a column of slot contents."""
    reps, counter_deltas, lengths, flags, origins = value[:5]
    text = pieces is not None
    contents = value[5] if not text else ()
    seq = Sequence(text)
    next_origin = iter(origins).__next__
    counters = _undeltas(counter_deltas)
    replicas = [names[r] for r in reps]
    blocks: list[Block] = []
    block = Block()
    runs = block.runs
    visible = 0
    previous_last: OpId | None = None
    count = len(counters)
    if len(replicas) != count or len(lengths) != count or len(flags) != count:
        raise DecodeError("saved sequence columns differ in length")
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
            content = next(pieces)  # type: ignore[arg-type]
            if len(content) != length:
                raise DecodeError("saved text is shorter than its runs")
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


def _text_pieces(value: Any, text: str) -> Iterator[str]:
    """Format 2: the visible runs' text, one after the other in ``text``."""
    _, _, lengths, flags, _ = value
    position = 0
    for length, flag in zip(lengths, flags, strict=True):
        if not flag & _DELETED:
            yield text[position : position + length]
            position += length


def _history_pieces(value: Any, history_text: str) -> Iterator[str]:
    """Format 1: the visible runs' text, found in the history's inserted text
    by how far each run's offset there lags its counter."""
    _, counter_deltas, lengths, flags, _, contents = value
    lags = iter(_undeltas(contents))
    for counter, length, flag in zip(accumulate(counter_deltas), lengths, flags, strict=True):
        if not flag & _DELETED:
            offset = counter - next(lags)
            yield history_text[offset : offset + length]


def _enc_container_state(rep: Replicas, container: Container, texts: _TextSink) -> Any:
    if isinstance(container, MapState):
        keys = list(container.entries)
        return (keys, [_enc_register(rep, container.entries[k]) for k in keys])
    if isinstance(container, TextState):
        # the runs go to a section read only when the text is first edited
        texts.runs.append(_enc_sequence(rep, container.seq, texts))
        return container.seq.visible
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
        return (_enc_sequence(rep, container.seq, None), elements)
    if isinstance(container, SetState):
        values = list(container.values.values())
        registers = [_enc_register(rep, container.elements[element_key(v)]) for v in values]
        removed = [container.values[k] for k in container.removed]
        return (values, registers, removed)
    # concurrent increments may sum past 64 bits: such totals travel as text
    return container.value if INT_MIN <= container.value <= INT_MAX else str(container.value)


TextDecoder = Callable[[ContainerId, Any], TextState]
"""Makes a (still encoded) text from its payload in the saved state."""


def _dec_container_state(
    names: list[str], cid: ContainerId, kind: Kind, value: Any, text: TextDecoder
) -> Container:
    if kind is Kind.MAP:
        state = MapState(cid)
        keys, registers = value
        state.entries = {k: _dec_register(names, r) for k, r in zip(keys, registers, strict=True)}
        return state
    if kind is Kind.TEXT:
        return text(cid, value)
    if kind is Kind.LIST:
        lst = ListState(cid)
        seq_value, elements = value
        lst.seq = _dec_sequence(names, seq_value, None)
        for element_id, slot, stamp, deleted, register in elements:
            element = Element(
                dec_id(names, slot),  # type: ignore[arg-type]
                (stamp[0], names[stamp[1]], stamp[2]),
            )
            element.deleted = deleted
            element.register = _dec_register(names, register)
            lst.elements[dec_id(names, element_id)] = element  # type: ignore[index]
        return lst
    if kind in SET_KINDS:
        elements = SetState(cid, kind)
        values, registers, removed = value
        for item, register in zip(values, registers, strict=True):
            key = element_key(item)
            elements.values[key] = item
            elements.elements[key] = _dec_register(names, register)
        elements.removed = {element_key(item) for item in removed}
        return elements
    counter = CounterState(cid)
    counter.value = int(value)
    return counter


def decode_state(names: list[str], value: Any, text: TextDecoder) -> DocState:
    state = DocState()
    for item in value:
        cid = dec_container(names, item[0])
        state.containers[cid] = _dec_container_state(names, cid, Kind(item[1]), item[2], text)
        if len(item) > 3:  # saved before schemas: the parents are not known
            parent, key = item[3]
            state.parents[cid] = (dec_container(names, parent), key)
    return state


def _lazy_text(
    cid: ContainerId, decode: Callable[[], Sequence], text: Callable[[], str]
) -> TextState:
    def guarded() -> Sequence:
        # runs are decoded on first edit, long after load: damage found then
        # is still a DecodeError
        try:
            return decode()
        except DecodeError:
            raise
        except _CORRUPT as exc:
            raise DecodeError(f"corrupt saved text: {exc!r}") from exc

    state = TextState(cid)
    state.defer(guarded, text)
    return state


# -- the whole document -----------------------------------------------------------


def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, default=_default, use_bin_type=True)
    return out


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, use_list=False, raw=False, ext_hook=_hook, strict_map_key=False)


def _compress(data: bytes) -> bytes:
    """For sections read only when needed: small matters more than fast."""
    return lzma.compress(data, preset=6)


def _decompress(data: bytes) -> bytes:
    decompressor = lzma.LZMADecompressor()
    out = decompressor.decompress(data, max_length=_MAX_SAVED)
    if not decompressor.eof:
        raise DecodeError("saved document is truncated or too large")
    return out


def _compress_fast(data: bytes) -> bytes:
    """For sections read on every load: zlib inflates several times faster than lzma."""
    return zlib.compress(data, 9)


def _decompress_fast(data: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    out = decompressor.decompress(data, _MAX_SAVED)
    if not decompressor.eof:
        raise DecodeError("saved document is truncated or too large")
    return out


def encode_document(
    state: DocState,
    chains: dict[str, list[Event]],
    heads: dict[EventKey, bytes],
    staged: list[bytes],
    max_hlc: int,
) -> bytes:
    rep = Replicas()
    for replica in chains:
        rep(replica)
    history, text, text_index = encode_history(rep, chains)
    texts = _TextSink(text, text_index)
    parents = state.parents
    state_value = []
    for cid, c in state.containers.items():
        item: tuple[Any, ...] = (
            enc_container(rep, cid),
            int(c.kind),
            _enc_container_state(rep, c, texts),
        )
        parent = parents.get(cid)
        if parent is not None:
            item += ((enc_container(rep, parent[0]), parent[1]),)
        state_value.append(item)
    keys = [(rep(replica), chain[0].key_id) for replica, chain in chains.items()]
    summary = (
        max_hlc,
        keys,
        [(rep(replica), len(chain)) for replica, chain in chains.items()],
        [(rep(replica), seq, digest) for (replica, seq), digest in heads.items()],
        max((e.lamport for e in (chains[r][s - 1] for r, s in heads)), default=0),
        [(rep(replica), chain[-1].end, chain[-1].hash) for replica, chain in chains.items()],
    )
    return _frame(
        rep.names,
        summary,
        _compress_fast(_pack(state_value)),
        _compress_fast("".join(texts.visible).encode()),
        _compress(_pack(texts.runs)),
        _compress("".join(texts.deleted).encode()),
        _compress(_pack(history)),
        staged,
    )


def _frame(names: list[str], summary: Any, *sections: Any) -> bytes:
    return MAGIC + bytes((FORMAT,)) + _pack((names, summary, *sections))


class SavedDocument(ABC):
    """A decoded save: the state now, the history when asked for."""

    __slots__ = ("_summary", "format", "names", "raw", "staged", "state")

    def __init__(self, fmt: int, raw: tuple[Any, ...]) -> None:
        self.format = fmt
        self.raw = raw
        self.names = list(raw[0])
        self._summary = raw[1]
        self.staged = list(raw[-1])
        self.state = DocState()

    def events(self) -> list[Event]:
        """Every event of the history, parents first (decoded now)."""
        try:
            return self._events()
        except DecodeError:
            raise
        except _CORRUPT as exc:
            raise DecodeError(f"corrupt saved history: {exc!r}") from exc

    @abstractmethod
    def _events(self) -> list[Event]: ...

    def tips(self) -> TipLog | None:
        """What the next local event needs of the history, without decoding it
        (None if this format does not keep it)."""
        return None

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


class _SavedV1(SavedDocument):
    """Format 1: ``[replicas, summary, lzma(state), lzma(text), lzma(history),
    staged]``, runs pointing into the history's inserted text."""

    __slots__ = ("_history", "_text")

    def __init__(self, raw: tuple[Any, ...]) -> None:
        super().__init__(1, raw)
        _, _, state, text, history, _ = raw
        self._text = _decompress(text).decode()
        self._history = history
        self.state = decode_state(self.names, _unpack(_decompress(state)), self._text_state)

    def _text_state(self, cid: ContainerId, value: Any) -> TextState:
        names, history_text = self.names, self._text
        return _lazy_text(
            cid,
            lambda: _dec_sequence(names, value, _history_pieces(value, history_text)),
            lambda: "".join(_history_pieces(value, history_text)),
        )

    def _events(self) -> list[Event]:
        history = _unpack(_decompress(self._history))
        return decode_history(self.names, history, sequential_text(self._text))


class _SavedV2(SavedDocument):
    """Format 2 (see the module docstring)."""

    __slots__ = ("_deleted", "_history", "_runs", "_runs_value", "_texts", "_used", "_visible")

    def __init__(self, raw: tuple[Any, ...]) -> None:
        super().__init__(2, raw)
        _, _, state, visible, runs, deleted, history, _ = raw
        self._visible = _decompress_fast(visible).decode()
        self._runs = runs
        self._runs_value: tuple[Any, ...] | None = None
        self._deleted = deleted
        self._history = history
        self._texts = 0  # texts decoded so far: the index of the next one's runs
        self._used = 0  # visible characters they took
        self.state = decode_state(self.names, _unpack(_decompress_fast(state)), self._text_state)
        if self._used != len(self._visible):
            raise DecodeError("saved text is longer than its texts")

    def _text_state(self, cid: ContainerId, value: Any) -> TextState:
        if type(value) is not int or not 0 <= value <= len(self._visible) - self._used:
            raise DecodeError("malformed saved text")
        index = self._texts
        self._texts += 1
        start = self._used
        self._used += value
        text = self._visible[start : self._used]

        def decode() -> Sequence:
            runs = self.runs()[index]
            return _dec_sequence(self.names, runs, _text_pieces(runs, text))

        return _lazy_text(cid, decode, lambda: text)

    def runs(self) -> tuple[Any, ...]:
        """The runs of every text, in the order of the state (decoded once)."""
        if self._runs_value is None:
            value = _unpack(_decompress(self._runs))
            if type(value) is not tuple or len(value) != self._texts:
                raise DecodeError("saved runs do not match the texts")
            self._runs_value = value
        return self._runs_value

    def _events(self) -> list[Event]:
        history = _unpack(_decompress(self._history))
        return decode_history(self.names, history, self._text_source())

    def _text_source(self) -> TextSource:
        """The history's inserted text, found in the runs of the texts: every
        character ever inserted is in exactly one run, visible or deleted."""
        deleted = _decompress(self._deleted).decode()
        pieces: dict[str, list[tuple[int, str]]] = {}
        visible = self._visible
        at_visible = at_deleted = 0
        for value in self.runs():
            reps, counter_deltas, lengths, flags, _ = value
            for rep, counter, length, flag in zip(
                reps, accumulate(counter_deltas), lengths, flags, strict=True
            ):
                if flag & _DELETED:
                    piece = deleted[at_deleted : at_deleted + length]
                    at_deleted += length
                else:
                    piece = visible[at_visible : at_visible + length]
                    at_visible += length
                pieces.setdefault(self.names[rep], []).append((counter, piece))
        if at_deleted != len(deleted) or at_visible != len(visible):
            raise DecodeError("saved text does not match its runs")
        index: dict[str, tuple[list[int], list[str]]] = {}
        for replica, found in pieces.items():
            found.sort()
            index[replica] = ([c for c, _ in found], [p for _, p in found])

        def text_of(author: str, counter: int, length: int) -> str:
            starts, texts = index[author]
            i = bisect_right(starts, counter) - 1
            out = []
            while length > 0:
                if i < 0 or starts[i] + len(texts[i]) <= counter:
                    raise DecodeError(f"no saved text for {author}:{counter}")
                piece = texts[i][counter - starts[i] : counter - starts[i] + length]
                out.append(piece)
                counter += len(piece)
                length -= len(piece)
                i += 1
            return "".join(out)

        return text_of

    def tips(self) -> TipLog:
        _, _, counts, heads, max_lamport, tips = self._summary
        names = self.names
        count = {r: n for r, n in counts}
        return TipLog(
            {(names[r], seq): digest for r, seq, digest in heads},
            max_lamport,
            {names[r]: (count[r], digest, end) for r, end, digest in tips},
        )


def encode_saved(saved: SavedDocument) -> bytes:
    """Save again a loaded document that has not changed."""
    return MAGIC + bytes((saved.format,)) + _pack(saved.raw)


_READERS: dict[int, tuple[int, type[_SavedV1] | type[_SavedV2]]] = {
    1: (6, _SavedV1),
    2: (8, _SavedV2),
}


def decode_document(data: bytes) -> SavedDocument:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("a saved document is bytes")
    data = bytes(data)
    if data[:3] != MAGIC:
        raise DecodeError("not a saved Gether document")
    reader = _READERS.get(data[3]) if len(data) > 3 else None
    if reader is None:
        raise UnsupportedVersionError(f"saved document format {data[3:4].hex()} is not supported")
    sections, cls = reader
    try:
        raw = _unpack(data[4:])
        if type(raw) is not tuple or len(raw) != sections:
            raise DecodeError("malformed saved document")
        return cls(raw)
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
