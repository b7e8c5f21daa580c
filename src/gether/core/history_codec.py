"""History in the saved form: every event, field by field, in flat columns.

Hashes are not stored: an event's encoding is canonical, so decoding rebuilds
its body and hash exactly. Only the newest signature of each replica is kept:
it vouches for the hash chain below it. Text inserts and deletes, the bulk of
any history, are stored as small integers relative to the op's own counter,
and all inserted text as one string, which compresses well.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from gether.core.event import Event
from gether.core.ids import ROOT, ContainerId, EventKey, OpId
from gether.core.ops import (
    COUNTER_ADD,
    LIST_INSERT,
    LIST_MOVE,
    LIST_SET,
    MAP_DELETE,
    MAP_SET,
    SEQ_DELETE,
    SET_ADD,
    SET_REMOVE,
    TEXT_INSERT,
    op_length,
)


class Replicas:
    """Replica ids as small integers."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = names or []
        self.index = {name: i for i, name in enumerate(self.names)}

    def __call__(self, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found


def enc_id(rep: Replicas, element: OpId | None) -> Any:
    return None if element is None else (rep(element[0]), element[1])


def dec_id(names: list[str], value: Any) -> OpId | None:
    return None if value is None else (names[value[0]], value[1])


def enc_container(rep: Replicas, cid: ContainerId) -> Any:
    if cid == ROOT:
        return 0
    if cid[0].startswith("/"):
        return (cid[0], cid[1])
    return (rep(cid[0]), cid[1])


def dec_container(names: list[str], value: Any) -> ContainerId:
    if value == 0:
        return ROOT
    first, second = value
    if isinstance(first, str):
        return (first, second)
    return (names[first], second)


# Ops other than text inserts and deletes, field by field:
# "i" an id or None, "p" a tuple of ids, "v" a value stored as it is.
_FIELDS = {
    MAP_SET: "vvp",
    MAP_DELETE: "vp",
    LIST_INSERT: "iiv",
    LIST_SET: "ivp",
    LIST_MOVE: "iii",
    COUNTER_ADD: "v",
    SET_ADD: "vp",
    SET_REMOVE: "vp",
}

_COLUMNS = (
    "lamport", "hlc", "nparents", "parents", "nops", "kind", "container",
    "left", "left_delta", "right", "right_delta", "length",
    "nspans", "span_rep", "span_delta", "span_len", "other",
)  # fmt: skip


def _enc_field(rep: Replicas, kind: str, value: Any) -> Any:
    if kind == "i":
        return enc_id(rep, value)
    if kind == "p":
        return tuple(enc_id(rep, v) for v in value)
    return value


def _dec_field(names: list[str], kind: str, value: Any) -> Any:
    if kind == "i":
        return dec_id(names, value)
    if kind == "p":
        return tuple(dec_id(names, v) for v in value)
    return value


class _Writer:
    def __init__(self, rep: Replicas) -> None:
        self.rep = rep
        self.cols: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        self.text: list[str] = []
        self.containers: dict[ContainerId, int] = {}
        self.last_right: OpId | None = None
        self.last_span = 0
        self.text_len = 0
        # per replica: counter and text offset where each text insert starts
        self.text_starts: dict[str, tuple[list[int], list[int]]] = {}

    def event(self, event: Event, last: Event | None) -> None:
        cols = self.cols
        replica, seq = event.id
        cols["lamport"].append(event.lamport - (last.lamport if last else 0))
        cols["hlc"].append(event.hlc - (last.hlc if last else 0))
        ids = [p for p, _ in event.parents]
        if len(ids) == 1 and ids[0] == (replica, seq - 1):
            cols["nparents"].append(-1)  # just the author's previous event
        else:
            cols["nparents"].append(len(ids))
            for parent in ids:
                cols["parents"].extend((self.rep(parent[0]), parent[1]))
        cols["nops"].append(len(event.ops))
        counter = event.counter
        for op in event.ops:
            self.op(op, replica, counter)
            counter += op_length(op)

    def op(self, op: Any, author: str, counter: int) -> None:
        cols = self.cols
        rep = self.rep
        kind = op[0]
        cols["kind"].append(kind)
        index = self.containers.get(op[1])
        if index is None:
            index = self.containers[op[1]] = len(self.containers)
        cols["container"].append(index)
        if kind == TEXT_INSERT:
            self.text.append(op[4])
            starts = self.text_starts.setdefault(author, ([], []))
            starts[0].append(counter)
            starts[1].append(self.text_len)
            self.text_len += len(op[4])
            cols["length"].append(len(op[4]))
            left, right = op[2], op[3]
            if left == (author, counter - 1):
                cols["left"].append(0)
            elif left is None:
                cols["left"].append(-1)
            else:
                cols["left"].append(rep(left[0]) + 1)
                cols["left_delta"].append(counter - left[1])
            if right is None:
                cols["right"].append(0)
            elif right == self.last_right:
                cols["right"].append(-1)  # typing on before the same character
            else:
                cols["right"].append(rep(right[0]) + 1)
                cols["right_delta"].append(counter - right[1])
            self.last_right = right
        elif kind == SEQ_DELETE:
            cols["nspans"].append(len(op[2]))
            for replica, start, length in op[2]:
                # relative to the previous span: backspacing and forward
                # deleting make runs of -1 and +1
                cols["span_rep"].append(rep(replica))
                cols["span_delta"].append(start - self.last_span)
                cols["span_len"].append(length)
                self.last_span = start
        else:
            schema = _FIELDS[kind]
            fields = tuple(_enc_field(rep, f, v) for f, v in zip(schema, op[2:], strict=True))
            cols["other"].append(fields)


class TextIndex:
    """Where the text of any character lies in the history's one string."""

    def __init__(self, starts: dict[str, tuple[list[int], list[int]]]) -> None:
        self.starts = starts

    def offset(self, replica: str, counter: int) -> int:
        counters, offsets = self.starts[replica]
        i = bisect_right(counters, counter) - 1
        return offsets[i] + counter - counters[i]


def encode_history(rep: Replicas, chains: dict[str, list[Event]]) -> tuple[Any, str, TextIndex]:
    """The history as ``(columns, text, index of the text)``."""
    writer = _Writer(rep)
    headers = []
    for replica, chain in chains.items():
        last = None
        writer.last_right = None
        writer.last_span = 0
        for event in chain:
            writer.event(event, last)
            last = event
        first = chain[0]
        headers.append(
            (rep(replica), first.key_id, first.public_key, len(chain), chain[-1].signature)
        )
    table = [enc_container(rep, cid) for cid in writer.containers]
    columns = [
        bytes(writer.cols[name]) if name == "kind" else writer.cols[name] for name in _COLUMNS
    ]
    return (headers, table, columns), "".join(writer.text), TextIndex(writer.text_starts)


TextSource = Callable[[str, int, int], str]
"""``(author, counter, length) -> str``: the text a text insert of the history
carries, asked for in history order."""


def sequential_text(text: str) -> TextSource:
    """The text of each insert, from one string of all of them in history order."""
    position = 0

    def take(_author: str, _counter: int, length: int) -> str:
        nonlocal position
        start = position
        position += length
        if position > len(text):
            raise IndexError("history text is too short")
        return text[start:position]

    return take


def decode_history(names: list[str], history: Any, text: TextSource) -> list[Event]:
    """Rebuild every event, hashes included, parents before children."""
    headers, table, columns = history
    containers = [dec_container(names, c) for c in table]
    raw = _Reader(names, containers, dict(zip(_COLUMNS, columns, strict=True)), text).read(headers)
    raw.sort(key=_raw_order)
    events: dict[EventKey, Event] = {}
    signatures = {(names[h[0]], h[3]): h[4] for h in headers}
    for event_id, counter, end, lamport, hlc, key_id, public_key, parent_ids, ops in raw:
        parents = tuple((p, events[p].hash) for p in parent_ids)
        prev = None
        if event_id[1] > 1 and (event_id[0], event_id[1] - 1) not in parent_ids:
            prev = events[(event_id[0], event_id[1] - 1)].hash
        events[event_id] = Event.create(
            event_id,
            counter,
            lamport,
            hlc,
            key_id,
            public_key,
            parents,
            prev,
            ops,
            None,
            signatures.get(event_id),
            end,
        )
    return list(events.values())


def _raw_order(item: tuple[Any, ...]) -> tuple[int, EventKey]:
    return item[3], item[0]


class _Reader:
    """Walks the columns back into events, one iterator per column."""

    def __init__(
        self,
        names: list[str],
        containers: list[ContainerId],
        cols: dict[str, Any],
        text: TextSource,
    ) -> None:
        self.names = names
        self.containers = containers
        self.next = {name: iter(cols[name]).__next__ for name in _COLUMNS}
        self.text = text
        self.last_right: OpId | None = None
        self.last_span = 0

    def read(self, headers: Any) -> list[tuple[Any, ...]]:
        raw: list[tuple[Any, ...]] = []
        names = self.names
        nxt = self.next
        lamports, hlcs, nparents, parents, nops = (
            nxt["lamport"], nxt["hlc"], nxt["nparents"], nxt["parents"], nxt["nops"]
        )  # fmt: skip
        op = self.op
        for me, key_id, public_key, count, _ in headers:
            replica = names[me]
            lamport = hlc = counter = 0
            self.last_right = None
            self.last_span = 0
            for seq in range(1, count + 1):
                lamport += lamports()
                hlc += hlcs()
                n = nparents()
                if n == -1:
                    parent_ids: tuple[EventKey, ...] = ((replica, seq - 1),)
                else:
                    parent_ids = tuple((names[parents()], parents()) for _ in range(n))
                start = counter
                n = nops()
                if n == 1:
                    ops: tuple[Any, ...] = (op(replica, counter),)
                    counter += op_length(ops[0])
                else:
                    built = []
                    for _ in range(n):
                        one = op(replica, counter)
                        built.append(one)
                        counter += op_length(one)
                    ops = tuple(built)
                raw.append(
                    (
                        (replica, seq),
                        start,
                        counter,
                        lamport,
                        hlc,
                        key_id,
                        public_key if seq == 1 else None,
                        parent_ids,
                        ops,
                    )
                )
        return raw

    def op(self, author: str, counter: int) -> Any:
        nxt = self.next
        names = self.names
        kind = nxt["kind"]()
        container = self.containers[nxt["container"]()]
        if kind == TEXT_INSERT:
            length = nxt["length"]()
            code = nxt["left"]()
            if code == 0:
                left: OpId | None = (author, counter - 1)
            elif code == -1:
                left = None
            else:
                left = (names[code - 1], counter - nxt["left_delta"]())
            code = nxt["right"]()
            if code == -1:
                right = self.last_right
            elif code:
                right = (names[code - 1], counter - nxt["right_delta"]())
            else:
                right = None
            self.last_right = right
            return (kind, container, left, right, self.text(author, counter, length))
        if kind == SEQ_DELETE:
            spans = []
            for _ in range(nxt["nspans"]()):
                self.last_span += nxt["span_delta"]()
                spans.append((names[nxt["span_rep"]()], self.last_span, nxt["span_len"]()))
            return (kind, container, tuple(spans))
        schema = _FIELDS[kind]
        fields = nxt["other"]()
        decoded = (_dec_field(names, f, v) for f, v in zip(schema, fields, strict=True))
        return (kind, container, *decoded)
