"""``gether serve`` as a real process: graceful shutdown, restarts, offline
replicas on their own stores, hostile bytes on the wire."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import msgpack

import gether
from gether.core.ids import Version
from gether.store import open_blocking_store
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import MAGIC, Hello, MessageKind, Subscribe, decode, encode
from gether.testing.servers import ServerProcess


async def test_restart_and_an_offline_replica(tmp_path: Path) -> None:
    server_store = f"sqlite:///{tmp_path}/server.db"
    server = ServerProcess(server_store).start()
    alice = gether.Document.open(f"sqlite:///{tmp_path}/alice.db", "notes")
    bob = gether.Document.open(f"sqlite:///{tmp_path}/bob.db", "notes")
    try:
        async with (
            gether.connect(server.ws_url, "notes", doc=alice, backoff=(0.05, 0.3)) as a,
            gether.connect(server.tcp_url, "notes", doc=bob, backoff=(0.05, 0.3)) as b,
        ):
            alice.text("t").insert(0, "hello")
            await a.sync()
            await b.sync()
            assert bob.get("t") == "hello"
            assert server.stop() == 0  # graceful: exit status 0
            await until(lambda: not a.connected and not b.connected)
            assert {e.code for e in a.errors + b.errors} == {"going_away"}
            # both edit while the server is down
            alice.text("t").insert(5, " world")
            bob.counter("n").increment(2)
            server = ServerProcess(server_store, server.port, server.tcp_port).start()
            await a.sync()
            await b.sync()
            await a.sync()
            assert alice.to_json() == bob.to_json() == {"t": "hello world", "n": 2}
            assert a.connections >= 2 and b.connections >= 2
        # bob, offline, restarts his process: his unsent edits are in his store
        bob.counter("n").increment(40)
        bob.close()
        bob = gether.Document.open(f"sqlite:///{tmp_path}/bob.db", "notes")
        assert bob.get("n") == 42
        async with gether.connect(server.ws_url, "notes", doc=bob) as b:
            await b.sync()
        async with gether.connect(server.ws_url, "notes", doc=alice) as a:
            await a.sync()
        assert alice.get("n") == 42
    finally:
        server.kill()
        alice.close()
        bob.close()
    store = open_blocking_store(server_store)
    try:
        assert store.version("notes") == alice.version
        ids = [e.id for e in store.events("notes")]
        assert len(ids) == len(set(ids))
    finally:
        store.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def exchange(port: int, data: bytes) -> list[object]:
    """Send raw bytes, read until the server closes; the messages it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # we are done: EOF after the data
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [decode(p) for p in FrameReader(1 << 24).feed(received)]


async def test_hostile_bytes_get_a_code_and_others_keep_being_served(tmp_path: Path) -> None:
    hello = frame(encode(Hello("mallory")))
    cases = {
        "garbage": (b"\x00\x00\x00\x07garbage", "decode"),
        "oversized": ((1 << 30).to_bytes(4, "big"), "limit_exceeded"),
        "unknown kind": (frame(msgpack.packb([77, 1])), "decode"),
        "wrong version": (frame(msgpack.packb([MessageKind.HELLO, MAGIC, 9, "m", None])),
                          "unsupported_version"),
        "events before subscribing": (
            hello + frame(msgpack.packb([MessageKind.EVENTS, "notes", 1, 0, msgpack.packb([])])),
            "protocol_violation",
        ),
        "bad version vector": (
            hello + frame(msgpack.packb([MessageKind.SUBSCRIBE, "notes", {"x y": 1}])),
            "decode",
        ),
    }  # fmt: skip
    with ServerProcess(f"sqlite:///{tmp_path}/server.db") as server:
        carol = gether.Document("carol")
        async with gether.connect(server.ws_url, "notes", doc=carol) as session:
            carol["before"] = 1
            await session.sync()
            for name, (data, code) in cases.items():
                messages = await asyncio.to_thread(exchange, server.tcp_port, data)
                errors = [m for m in messages if isinstance(m, gether.sync.Error)]
                assert errors and errors[-1].code == code, name
            carol["after"] = 2
            await session.sync()
        # a truncated frame then EOF is refused too, and nothing was stored
        partial = hello + frame(encode(Subscribe("notes", Version())))[:-3]
        messages = await asyncio.to_thread(exchange, server.tcp_port, partial)
        assert isinstance(messages[-1], gether.sync.Error)
        assert messages[-1].code == "decode"
        reader = gether.Document("reader")
        async with gether.connect(server.tcp_url, "notes", doc=reader) as session:
            await session.sync()
        assert reader.to_json() == {"before": 1, "after": 2}
