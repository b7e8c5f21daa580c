"""Bytes to bring a replica that was offline for 1,000 edits up to date:
gether's sync protocol against the same edits as one JSON object each.

    PYTHONPATH=src python bench/catchup.py [--edits 1000] [--authors 3] [--seed 1]

A ``gether serve`` process (SQLite) hosts one document; a returning replica
syncs it and goes offline; the authors, each connected live, make ``--edits``
edits (typing into a text, list inserts, map sets), each one event sent as it
happens; then the returning replica reconnects and syncs. See bench/README.md.
Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import gether  # noqa: E402
from gether.core.event import Event  # noqa: E402
from gether.server.process import ServerProcess  # noqa: E402
from gether.sync import Limits  # noqa: E402
from gether.sync.framing import frame  # noqa: E402
from gether.sync.messages import Events, encode  # noqa: E402

DOC = "catchup"
WORDS = (
    "the", "meeting", "moved", "to", "thursday", "so", "we", "can", "review", "the", "budget",
    "draft", "and", "the", "launch", "plan", "please", "bring", "the", "numbers", "from", "last",
    "quarter", "and", "a", "list", "of", "open", "questions", "for", "the", "team", "we", "still",
    "need", "a", "venue", "for", "the", "offsite", "and", "someone", "to", "book", "the", "train",
    "tickets", "early",
)  # fmt: skip
TODOS = (
    "buy milk", "call the venue", "send the agenda", "book tickets", "review budget",
    "water the plants", "renew passport", "fix the printer", "order lunch", "email Sam",
)  # fmt: skip
SETTINGS = {
    "theme": ("light", "dark", "solarized"),
    "font_size": (12, 14, 16, 18),
    "title": ("Weekly plan", "Offsite", "Q3 review"),
    "spellcheck": (True, False),
}


@dataclass(frozen=True)
class Mix:
    """Shares of the edits (the rest are map sets)."""

    typing: float = 0.70  # one keystroke into the notes text (a backspace 1 time in 10)
    list_insert: float = 0.15  # a new todo, a small map, at a random index


# -- the edits ----------------------------------------------------------------------


class Author:
    """One live replica: edits its document, one event per edit, and sends it."""

    def __init__(self, name: str, session: Any, doc: gether.Document, rng: random.Random) -> None:
        self.name = name
        self.session = session
        self.doc = doc
        self.rng = rng
        self.cursor = 0
        self.pending_word: list[str] = []

    def edit(self, mix: Mix) -> dict[str, Any]:
        """Make one edit; returns it as a plain JSON object."""
        roll = self.rng.random()
        if roll < mix.typing:
            return self._type()
        if roll < mix.typing + mix.list_insert:
            return self._list_insert()
        return self._map_set()

    def _stamp(self, edit: dict[str, Any]) -> dict[str, Any]:
        edit["author"] = self.name
        edit["ts"] = int(time.time() * 1000)
        return edit

    def _type(self) -> dict[str, Any]:
        notes = self.doc.text("notes")
        self.cursor = min(self.cursor, len(notes))
        if self.cursor > 0 and self.rng.random() < 0.1:
            self.cursor -= 1
            notes.delete(self.cursor, 1)
            return self._stamp({"op": "delete", "path": ["notes", self.cursor], "count": 1})
        if not self.pending_word:
            self.pending_word = list(self.rng.choice(WORDS) + " ")
        char = self.pending_word.pop(0)
        notes.insert(self.cursor, char)
        self.cursor += 1
        return self._stamp({"op": "insert", "path": ["notes", self.cursor - 1], "value": char})

    def _list_insert(self) -> dict[str, Any]:
        todos = self.doc.list("todos")
        index = self.rng.randint(0, len(todos))
        value = {"text": self.rng.choice(TODOS), "done": False}
        todos.insert(index, value)
        return self._stamp({"op": "insert", "path": ["todos", index], "value": value})

    def _map_set(self) -> dict[str, Any]:
        todos = self.doc.list("todos")
        if todos and self.rng.random() < 0.5:
            index = self.rng.randrange(len(todos))
            done = not todos[index]["done"]
            todos[index]["done"] = done
            return self._stamp({"op": "set", "path": ["todos", index, "done"], "value": done})
        key = self.rng.choice(sorted(SETTINGS))
        value = self.rng.choice(SETTINGS[key])
        self.doc.map("settings")[key] = value
        return self._stamp({"op": "set", "path": ["settings", key], "value": value})


def seed_document(doc: gether.Document) -> None:
    doc.text("notes").insert(0, "Notes for the week.\n")
    doc["todos"] = [{"text": t, "done": False} for t in TODOS[:3]]
    doc["settings"] = {"theme": "light", "font_size": 14, "title": "Weekly plan"}


# -- the run --------------------------------------------------------------------------


@dataclass
class Outcome:
    edits: list[dict[str, Any]]
    wire_received: int  # bytes the returning replica received over the protocol
    wire_sent: int
    connections: int  # connections it needed (1 unless the catch-up failed)
    received: list[Event]  # the events it lacked, as it holds them now
    converged: bool
    error: str = ""


async def run(url: str, args: argparse.Namespace) -> Outcome:
    rng = random.Random(args.seed)
    mix = Mix(args.typing, args.list_insert)
    names = [f"author{i + 1}" for i in range(args.authors)]
    async with contextlib.AsyncExitStack() as stack:
        authors: list[Author] = []
        for name in names:
            doc = gether.Document(replica_id=name)
            session = await stack.enter_async_context(gether.connect(url, DOC, doc=doc))
            authors.append(Author(name, session, doc, random.Random(rng.random())))
        seed_document(authors[0].doc)
        for author in authors:
            await author.session.sync()
        for author in authors:  # everyone holds the seed before editing
            await author.session.sync()

        returning = gether.Document(replica_id="returning")
        async with gether.connect(url, DOC, doc=returning) as session:
            await session.sync()
        offline_at = returning.version  # offline from here

        edits = []
        for _ in range(args.edits):
            author = rng.choice(authors)
            edits.append(author.edit(mix))
            await author.session.sync()  # sent alone, as when typing live
        for author in authors:
            await author.session.sync()
        for author in authors:
            await author.session.sync()

        # Workaround: the server's Hello and a batch larger than the pre-hello
        # frame limit (64 KiB) arrive in one chunk, which the client checks
        # against that limit (bench/README.md); lift it for this replica.
        limits = Limits(max_frame_before_hello=Limits().max_frame_bytes)
        if args.no_workaround:
            limits = Limits()
        error = ""
        async with gether.connect(url, DOC, doc=returning, limits=limits) as session:
            try:
                await session.sync(timeout=20)
            except TimeoutError:
                first = session.errors[0] if session.errors else None
                error = f"no catch-up in 20 s: {first}"
            traffic, connections = session.traffic, session.connections
        states = [a.doc.to_json() for a in authors]
    return Outcome(
        edits=edits,
        wire_received=traffic.bytes_received,
        wire_sent=traffic.bytes_sent,
        connections=connections,
        received=returning.events_since(offline_at),
        converged=all(s == returning.to_json() for s in states),
        error=error,
    )


def batches_size(events: Sequence[Event], signatures: str) -> int:
    """What-if: the bytes of the protocol v1 ``Events`` frames carrying
    ``events`` in the server's batches (1,000 events), re-encoded with the signatures kept:
    "all" (as sent), "newest" (each author's newest event in each batch only:
    the hash chain vouches for the others) or "none"."""
    total = 0
    for start in range(0, len(events), 1000):
        batch = events[start : start + 1000]
        newest = {e.id[0]: e.id for e in batch}
        wire = []
        for e in batch:
            keep = signatures == "all" or (signatures == "newest" and newest[e.id[0]] == e.id)
            wire.append((e.body, e.signature if keep else None))
        total += len(frame(encode(Events(DOC, 1 + start // 1000, tuple(wire)))))
    return total


def yjs_catchup(edits: Sequence[dict[str, Any]], authors: int) -> tuple[int, int] | None:
    """Context: the same edits replayed one after another into pycrdt (one
    document per author, kept in sync), and the y-protocol sync step 2 that
    brings a replica at the starting state vector up to date: (bytes of that
    message, bytes of the updates the authors sent one per edit)."""
    try:
        from pycrdt import Array, Doc, Map, Text, create_sync_message, handle_sync_message
    except ImportError:
        return None
    docs = [Doc(client_id=100 + i) for i in range(authors)]
    first = docs[0]
    first.get("notes", type=Text).insert(0, "Notes for the week.\n")
    first.get("todos", type=Array).extend([Map({"text": t, "done": False}) for t in TODOS[:3]])
    settings = first.get("settings", type=Map)
    for key, value in {"theme": "light", "font_size": 14, "title": "Weekly plan"}.items():
        settings[key] = value
    seed = first.get_update()
    for doc in docs[1:]:
        doc.apply_update(seed)
    returning = Doc(client_id=99)
    returning.apply_update(seed)
    index = {f"author{i + 1}": doc for i, doc in enumerate(docs)}
    live = 0
    for edit in edits:
        doc = index[edit["author"]]
        updates: list[bytes] = []
        subscription = doc.observe(lambda event, out=updates: out.append(event.update))
        path = edit["path"]
        if path[0] == "notes":
            text = doc.get("notes", type=Text)
            pos = min(path[1], len(text))
            if edit["op"] == "delete":
                if pos < len(text):
                    del text[pos : pos + 1]
            else:
                text.insert(pos, edit["value"])
        elif path[0] == "todos" and edit["op"] == "insert":
            todos = doc.get("todos", type=Array)
            todos.insert(min(path[1], len(todos)), Map(dict(edit["value"])))
        elif path[0] == "todos":
            todos = doc.get("todos", type=Array)
            if path[1] < len(todos):
                todos[path[1]]["done"] = edit["value"]
        else:
            doc.get("settings", type=Map)[path[1]] = edit["value"]
        doc.unobserve(subscription)
        (update,) = updates  # the transaction's own update, as a provider sends it
        live += len(update) + 3  # as a y-protocol update message
        for other in docs:
            if other is not doc:
                other.apply_update(update)
    reply = handle_sync_message(create_sync_message(returning)[1:], docs[0])
    return (len(reply) if reply else 0), live


# -- table ----------------------------------------------------------------------------


def pct_saving(ours: int, baseline: int) -> str:
    return f"{100 * (1 - ours / baseline):.1f}%" if baseline else "-"


def print_table(out: Outcome, args: argparse.Namespace, yjs: tuple[int, int] | None) -> None:
    json_objects = [json.dumps(e, separators=(",", ":")) for e in out.edits]
    json_bytes = sum(len(j.encode()) for j in json_objects)
    json_zlib = len(zlib.compress("\n".join(json_objects).encode(), 6))
    kinds: dict[str, int] = {}
    for edit in out.edits:
        kind = "keystrokes" if edit["path"][0] == "notes" else f"{edit['op']} {edit['path'][0]}"
        kinds[kind] = kinds.get(kind, 0) + 1
    n = len(out.edits)
    events = out.received
    print(
        f"Catch-up after {n} edits offline ({args.authors} authors: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + "); saving = 1 - bytes / JSON bytes"
    )
    head = f"{'what':<64} {'bytes':>9} {'B/edit':>7} {'saving':>7}"
    print(head)
    print("-" * len(head))

    def row(what: str, size: int) -> None:
        saving = pct_saving(size, json_bytes) if size != json_bytes else ""
        print(f"{what:<64} {size:>9,} {size / max(1, n):>7.1f} {saving:>7}")

    row("JSON, one object per edit (op, path, value, author, ts)", json_bytes)
    row("gether: bytes received by the returning replica (real protocol)", out.wire_received)
    row("  its events uncompressed (bodies + signatures)",
        sum(len(e.body) + len(e.signature or b"") for e in events))  # fmt: skip
    row("  what-if: protocol v1 batches, re-encoded", batches_size(events, "all"))
    row("  what-if: v1, only each author's newest signature per batch",
        batches_size(events, "newest"))  # fmt: skip
    row("  what-if: v1, no signatures", batches_size(events, "none"))
    row("context: the JSON objects zlib-compressed together", json_zlib)
    if yjs is not None:
        step2, live = yjs
        row("context: pycrdt (Yjs) sync step 2 for the same edits", step2)
        row("context: Yjs updates as sent live, one message per edit", live)
    print()
    signed = sum(1 for e in events if e.signature is not None)
    verdict = "converged" if out.converged else "DID NOT CONVERGE"
    print(
        f"gether: {len(events)} events received ({signed} signed) over {out.connections} "
        f"connection(s), {out.wire_sent:,} bytes sent by the returning replica; {verdict}."
        + (f" ERROR: {out.error}" if out.error else "")
    )
    saving = "none: the catch-up failed" if out.error else pct_saving(out.wire_received, json_bytes)
    print(f"Saving against one JSON object per edit: {saving} (the original Gether claim: 65%).")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--edits", type=int, default=1000, help="edits made while offline")
    parser.add_argument("--authors", type=int, default=3, help="live replicas making them")
    parser.add_argument("--typing", type=float, default=Mix.typing, help="share of keystrokes")
    parser.add_argument("--list-insert", type=float, default=Mix.list_insert,
                        help="share of list inserts (the rest are map sets)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-workaround", action="store_true", help="keep the 64 KiB pre-hello frame limit"
    )
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="gether-catchup-") as tmp,
        ServerProcess(f"sqlite:///{tmp}/server.db") as server,
    ):
        out = asyncio.run(run(server.ws_url, args))
    print_table(out, args, yjs_catchup(out.edits, args.authors))
    return 0 if out.converged and not out.error else 1


if __name__ == "__main__":
    raise SystemExit(main())
