"""Writer-to-reader latency under N typing clients, gether vs pycrdt-websocket
(after Dang & Ignat, "Performance of real-time collaborative editors at large scale").

    PYTHONPATH=src python bench/latency.py                    # N = 0,10,50,100,200
    PYTHONPATH=src python bench/latency.py --quick            # N = 0,10,50, short windows
    PYTHONPATH=src python bench/latency.py --coalesce 0,0.02 --servers gether,pycrdt

One writer types ``--writer-rate`` keystrokes per second at the end of one
shared text, one reader holds the same text, and N dummy writers each type one
keystroke per second (each at its own random phase within the second) into
their own line of it. The latency of a writer keystroke is the time from just
before the writer's local edit to just after the reader has applied it. See
bench/README.md for the processes, what the dummies skip, and every column.
Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import msgpack  # noqa: E402
import psutil  # noqa: E402

import gether  # noqa: E402
from gether.cli.serving import tune_collector  # noqa: E402
from gether.core.event import Event  # noqa: E402
from gether.core.ids import Version  # noqa: E402
from gether.core.ops import TEXT_INSERT  # noqa: E402
from gether.errors import GetherError  # noqa: E402
from gether.server.process import ServerProcess, wait_for_port  # noqa: E402
from gether.sync.batch import decode_batch  # noqa: E402
from gether.sync.connection import encode_events_frame  # noqa: E402
from gether.sync.framing import SHORT, frame  # noqa: E402
from gether.sync.messages import (  # noqa: E402
    AckV2,
    Events,
    EventsV2,
    Hello,
    Subscribe,
    decode,
    encode,
)
from gether.sync.names import ReceivedNames, SentNames  # noqa: E402
from gether.sync.window import ReceivedWindow, SentWindow  # noqa: E402

DOC = "bench"  # gether document id, and the pycrdt-websocket room (path /bench)
TEXT = "text"  # the shared text's name in both libraries
WRITER_CLIENT_ID = 1_000_001  # the pycrdt writer's client id (dummies use others)
N_DEFAULT = (0, 10, 50, 100, 200)
N_QUICK = (0, 10, 50)

# gether sync message kinds (docs/protocol.md), read by the dummies without decode()
SUBSCRIBE, EVENTS, ACK, ERROR, PING, PONG = 2, 3, 4, 5, 6, 7


# -- a minimal WebSocket client for the dummy writers ----------------------------------


class RawWebSocket(asyncio.Protocol):
    """Just enough of RFC 6455 for many cheap clients in one process: binary
    messages out (masked with a zero key, so the payload goes as is), messages
    in (fragments joined), pings answered, a close answered. The dummy writers
    use it so that 200 of them cost their process little; the writer and the
    reader use the real clients (``gether.connect``, ``websockets``)."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False
        self.bytes_received = 0

    @classmethod
    async def connect(cls, url: str, on_message: Callable[[bytes], None]) -> RawWebSocket:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        _, ws = await loop.create_connection(lambda: cls(on_message), host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert ws.transport is not None
        ws.transport.write(request.encode())
        await asyncio.wait_for(ws.upgraded, 30)
        return ws

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the upgrade"))

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        if self.closed or self.transport is None:
            return
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        self.transport.write(head + b"\0\0\0\0" + payload)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.send(b"\x03\xe8", 0x8)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        buf = self.buffer
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            mask = b""
            if b1 & 0x80:  # servers do not mask, but be lenient
                mask, head = bytes(buf[pos + head : pos + head + 4]), head + 4
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head : end])
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            pos = end
            self._frame(b0, payload)
        del buf[:pos]

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode in (0x0, 0x1, 0x2):
            if not b0 & 0x80:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload = b"".join([*self.fragments, payload])
                self.fragments = []
            self.on_message(payload)
        elif opcode == 0x9:
            self.send(payload, 0xA)
        elif opcode == 0x8:
            self.send(payload[:2], 0x8)
            if self.transport is not None:
                self.transport.close()


# -- dummy writers ----------------------------------------------------------------------

_HELD: dict[tuple[str, int], Event] = {}
"""Per process: every event its dummies received or made, by id (v2 batches
name held parents without their hashes: decoding looks them up here)."""

Heads = dict[tuple[str, int], Event]


class Batch:
    """One v2 ``Events`` message as a process's dummies receive it: the server
    sends the same bytes to every live subscriber, so it is decoded once per
    process, and so is what it does to their heads (see ``heads_after``)."""

    __slots__ = ("events", "heads", "ids")

    def __init__(
        self,
        records: bytes,
        names: ReceivedNames | None = None,
        sent: SentWindow | None = None,
    ) -> None:
        at = sent.at if sent is not None else None
        self.events = decode_batch(records, _HELD.get, 100_000, at, names, runs=True)
        for event in self.events:
            _HELD[event.id] = event
        self.ids = frozenset(e.id for e in self.events)
        self.heads: Heads | None = None

    def heads_after(self, before: Heads) -> Heads:
        """The heads of what a dummy holds once it takes this batch, from the
        heads of what it held before. The same for every dummy that takes it:
        a batch sent to many is sent to those that hold all before it (a
        catch-up batch, to one, is made of what that one lacked), so what they
        hold after it is the same set."""
        if self.heads is None:
            heads = dict(before)
            for event in self.events:
                for parent, _ in event.parents:
                    heads.pop(parent, None)
                heads[event.id] = event
            self.heads = heads
        return self.heads


_BATCHES: dict[bytes, Batch] = {}
"""Per process: an ``Events`` payload -> its batch (batches made for many)."""
_LISTED = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
"""First bytes of a batch whose table lists names (msgpack arrays): made for
one connection (protocol 3)."""


class GetherDummy:
    """A gether client that types into its own line and never applies what it
    receives. It speaks protocol 4, as ``gether.connect`` does: it learns the
    ids, clocks and parents of the batches it receives (decoded once per
    process, see ``Batch``), so that its own events name the heads it has seen
    as parents, exactly as a full replica's would (naming those it received
    from the server by position, as ``SyncConnection`` does), and it
    acknowledges what it received with cumulative acks at most once a second
    (riding on its keystrokes). Its first two events (the text's creation, its
    newline) come from a real ``gether.Document``; each keystroke after that is
    built and signed here, with the op a ``Document`` holding only this line
    would make."""

    def __init__(self, name: str) -> None:
        self.name = name
        doc = gether.Document(replica_id=name)
        doc.text(TEXT).insert(0, "\n")
        self.first = doc.events_since(None)  # tip signed, like a client's first batch
        for event in self.first:
            _HELD[event.id] = event
        last = self.first[-1]
        self.key = doc.key
        self.text_id = last.ops[0][1]
        self.newline = (name, last.counter)
        self.left: tuple[str, int] | None = None  # our previous character
        self.seq, self.counter, self.last = last.id[1], last.end, last
        # the heads of what it received (shared with the process's other
        # dummies at the same point); its own newest event, until the server
        # sends it back, and the received heads that event covered
        self.received_heads: Heads = {}
        self.mine: Event | None = last
        self.covered: Heads = {}
        self.number = 0  # the server's number for the document (its Subscribe says)
        self.received = ReceivedWindow()  # parents it received are named by position
        self.sent = SentWindow()  # and the server names those it sent so in a catch-up
        self.names_out, self.names_in = SentNames(), ReceivedNames()  # protocol 3+
        self.unacked = 0  # batches received and not acknowledged yet
        self.ws: RawWebSocket | None = None
        self.subscribed = asyncio.get_running_loop().create_future()
        self.keystrokes = 0
        self.errors: list[str] = []

    async def connect(self, url: str) -> None:
        self.ws = await RawWebSocket.connect(url, self.on_message)
        hello = frame(encode(Hello(self.name, versions=(1, 2, 3, 4))))
        version = Version({self.name: self.seq})
        self.ws.send(hello + frame(encode(Subscribe(DOC, version, None, False))))
        await asyncio.wait_for(self.subscribed, 60)

    def on_message(self, data: bytes) -> None:
        out: list[bytes] = []
        pos = 0
        while pos < len(data):  # whole frames: a WebSocket message holds whole frames
            if data[pos] & SHORT:  # protocol 4: a one-byte header
                size, pos = data[pos] & ~SHORT, pos + 1
            else:
                size, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
            payload = data[pos : pos + size]
            pos += size
            kind = payload[1]  # a fixarray header, then the kind
            if kind == EVENTS:
                batch = _BATCHES.get(payload)
                if batch is None:
                    message = decode(payload, protocol=4)
                    assert isinstance(message, EventsV2)
                    try:
                        if message.records[0] in _LISTED:  # made for this dummy alone
                            batch = Batch(message.records, self.names_in, self.sent)
                        else:
                            batch = _BATCHES[payload] = Batch(message.records)
                    except GetherError as exc:  # reported; its count is off: name none by number
                        self.errors.append(f"{self.name} decoding a batch: {exc}")
                        self.received.frozen = True
                        continue
                self.received_heads = batch.heads_after(self.received_heads)
                self.received.extend(e.id for e in batch.events)
                if self.mine is not None and self.mine.id in batch.ids:
                    self.mine = None  # back from the server: the received heads say it all
                self.unacked += 1
            elif kind == SUBSCRIBE and not self.subscribed.done():
                message = decode(payload, protocol=4)
                assert isinstance(message, Subscribe) and message.number is not None
                self.number = message.number
                first = list(self.first)
                out.append(
                    encode_events_frame(
                        self.number, first, _HELD.get, names=self.names_out, protocol=4
                    )
                )
                self.sent.extend(e.id for e in first)
                self.subscribed.set_result(None)
            elif kind == PING:  # the sender waits for our acks: send them now
                out.append(self._ack())
                out.append(frame(msgpack.packb([PONG, msgpack.unpackb(payload)[1]]), short=True))
            elif kind == ERROR:
                self.errors.append(str(msgpack.unpackb(payload)[1:]))
        if out and self.ws is not None:
            self.ws.send(b"".join(out))

    def _ack(self) -> bytes:
        count, self.unacked = self.unacked, 0
        return frame(encode(AckV2(self.number, count), protocol=4), short=True) if count else b""

    def heads(self) -> list[Event]:
        """What a replica holding all this dummy received and made has as heads."""
        received, mine = self.received_heads, self.mine
        if mine is None:
            return list(received.values())
        # its newest event covers the heads it was made on, and its own older
        # events; what came after it is concurrent with it
        covered, me = self.covered, self.name
        later = [e for i, e in received.items() if i not in covered and i[0] != me]
        return [mine, *later]

    def keystroke(self) -> None:
        heads = self.heads()
        me = self.name
        parents = tuple(sorted((e.id, e.hash) for e in heads))
        lamport = max(e.lamport for e in heads) + 1
        hlc = max(max(e.hlc for e in heads) + 1, int(time.time() * 1000) << 16)
        own = (me, self.seq)
        prev = None if any(e.id == own for e in heads) else self.last.hash
        op = (TEXT_INSERT, self.text_id, self.left, self.newline, "x")
        event = Event(
            (me, self.seq + 1), self.counter, lamport, hlc, self.key.key_id, None,
            parents, prev, (op,),
        )  # fmt: skip
        event.signature = self.key.sign(event.hash)
        _HELD[event.id] = event
        self.left, self.counter = (me, self.counter), self.counter + 1
        self.seq, self.last = self.seq + 1, event
        self.mine, self.covered = event, self.received_heads
        self.keystrokes += 1
        assert self.ws is not None
        # acks ride on the keystroke: once a second, as gether.connect's do
        frame_ = encode_events_frame(
            self.number, [event], _HELD.get, near=self.received, names=self.names_out, protocol=4
        )
        self.sent.extend((event.id,))
        self.ws.send(self._ack() + frame_)


class YDummy:
    """A y-protocol client (pycrdt) that types into its own line and never
    applies what it receives. A Yjs update names no causal parents, only its
    neighbours, so its updates are those of a full client typing there."""

    def __init__(self, client_id: int) -> None:
        from pycrdt import Doc, Text

        self.doc: Any = Doc(client_id=client_id)
        self.text: Any = self.doc.get(TEXT, type=Text)
        self.text.insert(0, "\n")
        self.ws: RawWebSocket | None = None
        self.answered = False
        self.keystrokes = 0
        self.errors: list[str] = []

    async def connect(self, url: str) -> None:
        from pycrdt import create_sync_message

        self.ws = await RawWebSocket.connect(f"{url}/{DOC}", self.on_message)
        self.ws.send(create_sync_message(self.doc))

    def on_message(self, data: bytes) -> None:
        if not self.answered and data[:2] == b"\x00\x00":  # the room's sync step 1
            from pycrdt import handle_sync_message

            reply = handle_sync_message(data[1:], self.doc)
            self.answered = True
            if reply is not None and self.ws is not None:
                self.ws.send(reply)

    def keystroke(self) -> None:
        from pycrdt import create_update_message

        before = self.doc.get_state()
        self.text.insert(self.keystrokes, "x")
        self.keystrokes += 1
        assert self.ws is not None
        self.ws.send(create_update_message(self.doc.get_update(before)))


async def _settle_dummies() -> None:
    while True:
        if len(_BATCHES) > 1_000:
            for payload in list(_BATCHES)[:-100]:  # insertion order: the oldest first
                del _BATCHES[payload]
        gc.freeze()
        await asyncio.sleep(2.0)


async def run_dummies(kind: str, url: str, first: int, count: int, seed: int) -> None:
    """A dummy process: connect ``count`` dummies, say "ready", type from "go"
    (stdin) until stdin closes, then print what happened as JSON."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    dummies: list[Any] = []
    for i in range(first, first + count):
        gether_kind = kind.startswith("gether")
        dummies.append(GetherDummy(f"dummy{i:04d}") if gether_kind else YDummy(10 + i))
    gate = asyncio.Semaphore(10)

    async def connect(dummy: Any) -> None:
        async with gate:
            await dummy.connect(url)

    await asyncio.gather(*(connect(d) for d in dummies))
    print("ready", flush=True)
    await stdin.readline()  # "go"
    # load generators, not clients under test: what they hold is kept out of
    # the collector's full passes (they paused a process of 100 dummies for
    # 100+ ms, whatever the library), and batches every dummy has taken are
    # forgotten
    gc.set_threshold(50_000, 20, 10)  # as the servers' (cli/serving.py tune_collector)
    collector = asyncio.create_task(_settle_dummies())
    rng = random.Random(seed)
    start = loop.time() + 0.05
    handles: list[asyncio.TimerHandle] = []

    def schedule(dummy: Any, at: float) -> None:
        def fire() -> None:
            dummy.keystroke()
            schedule(dummy, at + 1.0)

        handles.append(loop.call_at(at, fire))

    for dummy in dummies:
        schedule(dummy, start + rng.random())
    await stdin.read()  # until the parent closes our stdin
    for handle in handles:
        handle.cancel()
    collector.cancel()
    received = sum(d.ws.bytes_received for d in dummies if d.ws is not None)
    closed = sum(1 for d in dummies if d.ws is None or d.ws.closed)
    errors = [e for d in dummies for e in d.errors][:5]
    for dummy in dummies:
        if dummy.ws is not None:
            dummy.ws.close()
    keys = sum(d.keystrokes for d in dummies)
    print(json.dumps({"keystrokes": keys, "bytes_received": received, "closed": closed,
                      "errors": errors}), flush=True)  # fmt: skip


# -- servers, each in its own process -------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    kind: str  # "gether", "gether-unsigned" (documents hosted unsigned) or "pycrdt"
    coalesce: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "pycrdt":
            return "pycrdt-websocket"
        name = "gether unsigned" if self.kind == "gether-unsigned" else "gether"
        return name if self.coalesce == 0 else f"{name} c={self.coalesce:g}"


class BenchServerProcess(ServerProcess):
    """This script's ``--serve`` mode as a ``ServerProcess``: the pycrdt-websocket
    server, or ``start_server`` with a ``HubConfig(coalesce=...)`` (written
    before ``gether serve --coalesce`` existed; the two are equivalent)."""

    def __init__(self, spec: ServerSpec, store_url: str) -> None:
        super().__init__(store_url)
        self.spec = spec

    def start(self) -> BenchServerProcess:
        args = [self.spec.kind, self.store_url, str(self.port), str(self.spec.coalesce)]
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", *args], env=_child_env(), stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port)
        except TimeoutError as exc:
            self.kill()
            raise TimeoutError(f"{self.spec.label} did not start: {self.stderr[-2000:]}") from exc
        return self


def start_server_process(spec: ServerSpec, store_url: str) -> ServerProcess:
    if spec.kind == "gether" and spec.coalesce == 0:
        return ServerProcess(store_url).start()  # ``gether serve``, as deployed
    return BenchServerProcess(spec, store_url).start()


async def serve(kind: str, store_url: str, port: int, coalesce: float) -> None:
    """The ``--serve`` mode (runs in the server's own process)."""
    import logging

    import uvicorn

    tune_collector()  # as `gether serve` does, for every server measured

    logging.basicConfig(level=logging.WARNING)
    if kind.startswith("gether"):
        from gether.server.hub import HubConfig
        from gether.server.serve import start_server

        unsigned = ("*",) if kind == "gether-unsigned" else ()
        config = HubConfig(coalesce=coalesce, unsigned=unsigned)
        server = await start_server(store_url, "127.0.0.1", port, None, config, handle_signals=True)
        await server.wait()
        return
    from pycrdt.websocket import ASGIServer, WebsocketServer

    rooms = WebsocketServer(auto_clean_rooms=False)
    config = uvicorn.Config(
        ASGIServer(rooms),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
        ws_max_size=16 << 20,
        ws_per_message_deflate=False,
    )  # fmt: skip: the same uvicorn settings as gether serve
    async with rooms:
        await uvicorn.Server(config).serve()


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


# -- the writer and the reader (in this process, one event loop, one clock) ------------


class Probe:
    """The measured pair. ``sent[k]``: time just before the writer's k-th edit;
    ``arrived[k]``: time just after the reader applied it."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.arrived: dict[int, float] = {}
        self._pending = 0.0

    async def start(self, url: str) -> None:
        raise NotImplementedError

    def keystroke(self, k: int) -> None:
        raise NotImplementedError

    def bytes_sent(self) -> int:
        """Everything the writer sent so far (message payloads)."""
        raise NotImplementedError

    def errors(self) -> list[str]:
        """Errors the writer's and the reader's connections received."""
        return []

    def key_bytes(self, keys: list[int]) -> list[int]:
        """Bytes of the message that carried each of these keystrokes."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class GetherProbe(Probe):
    """Two ``gether.connect`` sessions; keystrokes are keyed by the writer's
    event seq, and the reader sees them through the document's listener."""

    def __init__(self, signed: bool = True) -> None:
        super().__init__()
        self._writer_events: list[Event] = []
        self.signed = signed

    async def start(self, url: str) -> None:
        self.writer_doc = gether.Document(replica_id="writer", signed=self.signed)
        self.reader_doc = gether.Document(replica_id="reader", signed=self.signed)
        self.reader_doc._listen(self._on_reader_events)  # no public on_change yet
        self.writer_doc._listen(self._on_writer_events)
        self._stack = contextlib.AsyncExitStack()
        self.reader = await self._stack.enter_async_context(
            gether.connect(url, DOC, doc=self.reader_doc)
        )
        self.writer = await self._stack.enter_async_context(
            gether.connect(url, DOC, doc=self.writer_doc)
        )
        await self.writer.sync()
        await self.reader.sync()

    def _on_reader_events(self, events: Sequence[Event], local: bool) -> None:
        now = time.perf_counter()
        for event in events:
            if event.id[0] == "writer":
                self.arrived[event.id[1]] = now

    def _on_writer_events(self, events: Sequence[Event], local: bool) -> None:
        if local:
            for event in events:
                self.sent[event.id[1]] = self._pending
                self._writer_events.append(event)

    def keystroke(self, k: int) -> None:
        text = self.writer_doc.text(TEXT)
        self._pending = time.perf_counter()
        text.insert(len(text), chr(97 + k % 26))

    def bytes_sent(self) -> int:
        return self.writer.traffic.bytes_sent

    def errors(self) -> list[str]:
        sessions = (("writer", self.writer), ("reader", self.reader))
        return [f"{who}: [{e.code}] {e.message}" for who, s in sessions for e in s.errors]

    def key_bytes(self, keys: list[int]) -> list[int]:
        """The ``Events`` frame that carried each keystroke alone (re-encoded
        in the connection's protocol version: signatures are set by the time
        they were sent)."""
        wanted = set(keys)
        conn = self.writer._conn
        if conn is None or conn.protocol < 2:
            return [
                len(frame(encode(Events(DOC, e.id[1], ((e.body, e.signature),)))))
                for e in self._writer_events
                if e.id[1] in wanted
            ]
        lookup = self.writer_doc.known_event
        names = None
        if conn.protocol >= 3:  # the writer's id is listed on its connection
            names = SentNames()
            names.add(self.writer_doc.replica_id)
        return [
            len(encode_events_frame(1, [e], lookup, names=names, protocol=conn.protocol))
            for e in self._writer_events
            if e.id[1] in wanted
        ]

    async def close(self) -> None:
        await self._stack.aclose()


class YProbe(Probe):
    """The same pair speaking the y-protocol with pycrdt over ``websockets``
    (the client library gether's own client uses). Both apply every update."""

    async def start(self, url: str) -> None:
        from pycrdt import Doc, Text, create_sync_message
        from websockets.asyncio.client import connect

        self.key_frames: list[int] = []
        self.writer_doc: Any = Doc(client_id=WRITER_CLIENT_ID)
        self.reader_doc: Any = Doc()
        self.writer_text: Any = self.writer_doc.get(TEXT, type=Text)
        self.reader_doc.get(TEXT, type=Text)
        self._sent_bytes = 0
        self._stack = contextlib.AsyncExitStack()
        self.writer_ws = await self._stack.enter_async_context(
            connect(f"{url}/{DOC}", max_size=None, compression=None)
        )
        self.reader_ws = await self._stack.enter_async_context(
            connect(f"{url}/{DOC}", max_size=None, compression=None)
        )
        self._tasks = [
            asyncio.create_task(self._receive(self.writer_ws, self.writer_doc, False)),
            asyncio.create_task(self._receive(self.reader_ws, self.reader_doc, True)),
        ]
        for ws, doc in ((self.writer_ws, self.writer_doc), (self.reader_ws, self.reader_doc)):
            await ws.send(create_sync_message(doc))

    async def _receive(self, ws: Any, doc: Any, reader: bool) -> None:
        from pycrdt import handle_sync_message

        with contextlib.suppress(Exception):  # the connection closing ends it
            async for message in ws:
                if message[:1] != b"\x00":  # awareness
                    continue
                writer_clock = _writer_clock(message) if reader else None
                reply = handle_sync_message(message[1:], doc)
                if writer_clock is not None:
                    self.arrived[writer_clock + 1] = time.perf_counter()
                if reply is not None:
                    await ws.send(reply)

    def keystroke(self, k: int) -> None:
        from pycrdt import create_update_message

        self._pending = time.perf_counter()
        before = self.writer_doc.get_state()
        self.writer_text.insert(len(self.writer_text), chr(97 + k % 26))
        message = create_update_message(self.writer_doc.get_update(before))
        self.sent[k] = self._pending
        self.key_frames.append(len(message))
        self._sent_bytes += len(message)
        task = asyncio.ensure_future(self.writer_ws.send(message))
        self._tasks.append(task)

    def bytes_sent(self) -> int:
        return self._sent_bytes

    def key_bytes(self, keys: list[int]) -> list[int]:
        return [self.key_frames[k - 1] for k in keys if k - 1 < len(self.key_frames)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._stack.aclose()


def _varuint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _writer_clock(message: bytes) -> int | None:
    """The writer's clock if this sync message is an update of the writer's
    (one client per update as the room relays them: count, structs, client, clock)."""
    if message[1:2] not in (b"\x01", b"\x02"):
        return None
    _, pos = _varuint(message, 2)  # length of the update
    clients, pos = _varuint(message, pos)
    if clients != 1:
        return None
    _, pos = _varuint(message, pos)
    client, pos = _varuint(message, pos)
    clock, _ = _varuint(message, pos)
    return clock if client == WRITER_CLIENT_ID else None


# -- one measurement ---------------------------------------------------------------------


@dataclass
class Window:
    p50: float  # seconds; inf if a keystroke never arrived
    p99: float
    lost: int
    keys: int
    server_cpu: float  # fraction of one core
    client_cpu: float  # dummies + this process, fraction of one core
    other_cpu: float  # every other process on the machine, fraction of one core
    bytes_up: float  # per writer keystroke, everything the writer sent
    key_bytes: float  # per writer keystroke, its own message only


@dataclass
class Result:
    spec: ServerSpec
    n: int
    windows: list[Window] = field(default_factory=list)
    note: str = ""

    def median(self, attr: str) -> float | None:
        values = [getattr(w, attr) for w in self.windows]
        return statistics.median(values) if values else None


def percentile(samples: list[float], q: float) -> float:
    """Nearest rank: with few samples, p99 is the largest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def with_children(process: psutil.Process) -> list[psutil.Process]:
    """A server and the processes it started (gether's snapshot worker): one
    that starts during a window has spent all its time in it."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def machine_busy() -> tuple[float, float]:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, sum(times)


async def start_dummies(
    spec: ServerSpec, url: str, n: int, per_process: int, seed: int
) -> list[asyncio.subprocess.Process]:
    processes = []
    for first in range(0, n, per_process):
        count = min(per_process, n - first)
        args = ["--dummies", spec.kind, url, str(first), str(count), str(seed + first)]
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, *args, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=_child_env(),
            )
        )  # fmt: skip
    for process in processes:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError(f"a dummy process failed to connect ({line!r})")
    return processes


async def stop_dummies(processes: list[asyncio.subprocess.Process]) -> list[dict[str, Any]]:
    reports = []
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
    for process in processes:
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        except (TimeoutError, ValueError, IndexError):
            reports.append({"errors": ["no report"], "closed": -1})
        finally:
            if process.returncode is None:
                process.kill()
    return reports


async def measure(spec: ServerSpec, n: int, args: argparse.Namespace) -> Result:
    result = Result(spec, n)
    server = await asyncio.to_thread(start_server_process, spec, args.store)
    dummies: list[asyncio.subprocess.Process] = []
    probe: Probe = (
        GetherProbe(signed=spec.kind == "gether") if spec.kind.startswith("gether") else YProbe()
    )
    try:
        dummies = await start_dummies(spec, server.ws_url, n, args.per_process, args.seed)
        await probe.start(server.ws_url)
        assert server.process is not None
        server_proc = psutil.Process(server.process.pid)
        clients = [psutil.Process(), *(psutil.Process(d.pid) for d in dummies)]
        for process in dummies:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
        typing = asyncio.create_task(type_keys(probe, args.writer_rate))
        # windows start and end between two writer keystrokes, not on one
        await asyncio.sleep(args.warmup + 0.5 / args.writer_rate)
        spans = []

        def sample() -> tuple[Any, ...]:
            return (time.perf_counter(), cpu_seconds(with_children(server_proc)),
                    cpu_seconds(clients), machine_busy(), probe.bytes_sent())  # fmt: skip

        for _ in range(args.runs):
            start = sample()
            await asyncio.sleep(args.window)
            end = sample()
            spans.append((start, end))
        typing.cancel()
        await wait_arrivals(probe, args.grace)
        reports = await stop_dummies(dummies)
        dummies = []
        for start, end in spans:
            result.windows.append(window_of(probe, start, end))
        problems = [e for r in reports for e in r.get("errors", [])]
        problems += probe.errors()
        closed = sum(r.get("closed", 0) for r in reports)
        if problems or closed:
            result.note = f"dummies: {closed} closed, errors {problems[:2]}"
    finally:
        for process in dummies:
            if process.returncode is None:
                process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(probe.close(), 10)
        server.kill()
    return result


async def type_keys(probe: Probe, rate: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    k = 0
    while True:
        k += 1
        await asyncio.sleep(max(0.0, start + k / rate - loop.time()))
        probe.keystroke(k)


async def wait_arrivals(probe: Probe, grace: float) -> None:
    deadline = time.perf_counter() + grace
    while time.perf_counter() < deadline and set(probe.sent) - set(probe.arrived):
        await asyncio.sleep(0.05)


def window_of(probe: Probe, start: tuple[Any, ...], end: tuple[Any, ...]) -> Window:
    t0, t1 = start[0], end[0]
    keys = [k for k, t in probe.sent.items() if t0 <= t < t1]
    delays = [probe.arrived[k] - probe.sent[k] if k in probe.arrived else math.inf for k in keys]
    lost = sum(1 for d in delays if d == math.inf)
    wall = t1 - t0
    server_cpu = (end[1] - start[1]) / wall
    client_cpu = (end[2] - start[2]) / wall
    busy = (end[3][0] - start[3][0]) / max(1e-9, end[3][1] - start[3][1])
    other_cpu = max(0.0, busy * (os.cpu_count() or 1) - server_cpu - client_cpu)
    frames = probe.key_bytes(keys)
    count = max(1, len(keys))
    return Window(
        p50=percentile(delays, 0.5) if delays else math.nan,
        p99=percentile(delays, 0.99) if delays else math.nan,
        lost=lost,
        keys=len(keys),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        other_cpu=other_cpu,
        bytes_up=(end[4] - start[4]) / count,
        key_bytes=statistics.mean(frames) if frames else math.nan,
    )


# -- table ----------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return "lost" if math.isinf(value) else f"{value * 1e3:.1f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return ""
    if math.isinf(ours) or math.isinf(theirs):
        return ""
    return f"{ours / theirs:.2f}"


def print_table(results: Sequence[Result], args: argparse.Namespace) -> None:
    print(
        f"Writer-to-reader latency: 1 writer ({args.writer_rate:g} keys/s), 1 reader, N dummy "
        f"writers (1 key/s each); median of {args.runs} window(s) of {args.window:g} s"
    )
    print("x = gether / pycrdt-websocket at the same N (< 1: gether is faster/smaller)")
    head = (
        f"{'server':<18} {'N':>4} {'p50 ms':>8} {'p99 ms':>8} {'lost':>4} {'srv CPU%':>8} "
        f"{'cli CPU%':>8} {'other%':>6} {'B up/key':>8} {'B key':>6} "
        f"{'x p50':>6} {'x p99':>6} {'x CPU':>6} {'x B up':>6}"
    )
    print(head)
    print("-" * len(head))
    theirs = {r.n: r for r in results if r.spec.kind == "pycrdt" and r.windows}
    for r in results:
        if not r.windows:
            print(f"{r.spec.label:<18} {r.n:>4} {r.note}")
            continue
        lost = sum(w.lost for w in r.windows)
        cpu = {k: 100 * (r.median(k) or 0) for k in ("server_cpu", "client_cpu", "other_cpu")}
        line = (
            f"{r.spec.label:<18} {r.n:>4} {ms(r.median('p50')):>8} {ms(r.median('p99')):>8} "
            f"{lost:>4} {cpu['server_cpu']:>8.1f} {cpu['client_cpu']:>8.1f} "
            f"{cpu['other_cpu']:>6.1f} "
            f"{r.median('bytes_up') or 0:>8.1f} {r.median('key_bytes') or 0:>6.1f}"
        )
        other = theirs.get(r.n)
        if r.spec.kind.startswith("gether") and other is not None:
            line += (
                f" {ratio(r.median('p50'), other.median('p50')):>6}"
                f" {ratio(r.median('p99'), other.median('p99')):>6}"
                f" {ratio(r.median('server_cpu'), other.median('server_cpu')):>6}"
                f" {ratio(r.median('bytes_up'), other.median('bytes_up')):>6}"
            )
        print(line + (f"  ({r.note})" if r.note else ""))
    print()
    for label in dict.fromkeys(r.spec.label for r in results):
        ok = [r.n for r in results if r.spec.label == label and r.windows
              and (r.median("p99") or math.inf) <= 1.0]  # fmt: skip
        tried = [r.n for r in results if r.spec.label == label and r.windows]
        best = max(ok) if ok else "none"
        print(f"largest N with p99 <= 1 s, {label}: {best} (of N = {tried})")


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", help="comma-separated numbers of dummy writers (0,10,50,100,200)")
    parser.add_argument(
        "--servers",
        default="gether,pycrdt",
        help="gether, gether-unsigned (documents without per-event signatures), pycrdt; "
        "comma-separated",
    )
    parser.add_argument("--coalesce", default="0", help="gether HubConfig.coalesce values, s")
    parser.add_argument("--store", default="memory://", help="the gether server's store")
    parser.add_argument("--runs", type=int, default=3, help="measurement windows (median)")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of typing first")
    parser.add_argument("--grace", type=float, default=5.0, help="wait for late keystrokes, s")
    parser.add_argument("--writer-rate", type=float, default=2.0, help="writer keystrokes/s")
    parser.add_argument("--per-process", type=int, default=100, help="dummies per process")
    parser.add_argument(
        "--give-up", type=float, default=5.0, help="skip larger N once p99 passed this many s"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--wait-idle", type=float, default=30.0, help="wait up to this many s for a quiet machine"
    )
    parser.add_argument("--quick", action="store_true", help="N = 0,10,50; 1 window of 5 s")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--dummies", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, store, port, coalesce = args.serve
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(kind, store, int(port), float(coalesce)))
        return 0
    if args.dummies:
        kind, url, first, count, seed = args.dummies
        asyncio.run(run_dummies(kind, url, int(first), int(count), int(seed)))
        return 0
    if args.quick:
        args.runs, args.window, args.warmup, args.grace = 1, 5.0, 2.0, 3.0
    numbers = (
        [int(x) for x in args.n.split(",")]
        if args.n
        else list(N_QUICK if args.quick else N_DEFAULT)
    )
    specs: list[ServerSpec] = []
    for name in args.servers.split(","):
        if name.strip() in ("gether", "gether-unsigned"):
            specs += [ServerSpec(name.strip(), float(c)) for c in args.coalesce.split(",")]
        elif name.strip() == "pycrdt":
            specs.append(ServerSpec("pycrdt"))
    # the harness's modules (psutil, pycrdt, websockets, gether...) out of the
    # collector's full passes, as `gether serve` does with its own: those
    # passes stop the writer and the reader while they walk them
    gc.freeze()
    load = os.getloadavg()
    progress(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
             f"{os.cpu_count()} cores")  # fmt: skip
    results = asyncio.run(run_all(specs, numbers, args))
    print_table(results, args)
    return 0


async def run_all(
    specs: list[ServerSpec], numbers: list[int], args: argparse.Namespace
) -> list[Result]:
    results: list[Result] = []
    for spec in specs:
        broke_at: int | None = None
        for n in numbers:
            if broke_at is not None:
                results.append(
                    Result(spec, n, note=f"not run: p99 > {args.give_up:g} s at N={broke_at}")
                )
                continue
            await wait_idle(args.wait_idle)
            progress(f"{spec.label}, N = {n}")
            try:
                result = await measure(spec, n, args)
            except (OSError, RuntimeError, TimeoutError) as exc:  # shown in the table
                result = Result(spec, n, note=f"failed: {type(exc).__name__}: {exc}")
            results.append(result)
            p99 = result.median("p99")
            if p99 is None or p99 > args.give_up:
                broke_at = n
    return results


async def wait_idle(limit: float, threshold: float = 0.15) -> None:
    """Wait up to ``limit`` seconds for the machine to be quiet (this is a
    shared machine): less than ``threshold`` of all cores busy over a second."""
    deadline = time.monotonic() + limit
    while True:
        busy = await asyncio.to_thread(psutil.cpu_percent, 1.0) / 100
        if busy < threshold or time.monotonic() >= deadline:
            if busy >= threshold:
                progress(f"machine still {busy:.0%} busy; measuring anyway (see other%)")
            return


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
