"""Server and clients on real sockets (loopback): WebSocket and TCP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gether
from gether.core.ids import Version
from gether.server.hub import HubConfig
from gether.server.serve import GetherServer, start_server
from gether.store import open_blocking_store
from gether.sync import Error, Events, Hello, Limits, Subscribe
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import decode, encode
from gether.testing.histories import edit, history


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[GetherServer]:
    running = await start_server(
        f"sqlite:///{tmp_path}/server.db", port=0, tcp_port=0, handle_signals=False
    )
    yield running
    await running.stop()


async def test_clients_over_websocket_and_tcp_converge(
    server: GetherServer, tmp_path: Path
) -> None:
    assert server.tcp_url is not None
    urls = [server.ws_url, server.tcp_url, server.ws_url, server.tcp_url]
    docs = [gether.Document(f"client{i}") for i in range(len(urls))]
    sessions = [gether.connect(url, "notes", doc=doc) for url, doc in zip(urls, docs, strict=True)]
    for session in sessions:
        await session.__aenter__()
    try:
        rng = random.Random(1)
        for _ in range(60):
            edit(rng.choice(docs), rng)
            await asyncio.sleep(0)
        for session in sessions:
            await session.sync()
        for session in sessions:  # a second pass: everyone now has everyone's events
            await session.sync()
        states = [doc.to_json() for doc in docs]
        assert all(state == states[0] for state in states)
        assert all(not s.errors for s in sessions)
    finally:
        for session in sessions:
            await session.close()
    # the server stored exactly the events the clients hold
    store = open_blocking_store(f"sqlite:///{tmp_path}/server.db")
    try:
        assert store.version("notes") == docs[0].version
    finally:
        store.close()


async def test_a_client_catches_up_after_a_restart_of_the_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/server.db"
    first = await start_server(url, port=0, handle_signals=False)
    alice = gether.Document("alice")
    async with gether.connect(first.ws_url, "notes", doc=alice) as session:
        alice.text("t").insert(0, "hello")
        await session.sync()
    await first.stop()
    second = await start_server(url, port=0, handle_signals=False)
    try:
        bob = gether.Document("bob")
        async with gether.connect(second.ws_url, "notes", doc=bob) as session:
            await session.sync()
            assert bob.to_json() == {"t": "hello"}
    finally:
        await second.stop()


async def test_unreachable_server() -> None:
    with pytest.raises(gether.ConnectionFailedError):
        async with gether.connect("ws://127.0.0.1:9", "notes"):
            pass


async def test_a_flood_of_orphans_is_cut_off(tmp_path: Path) -> None:
    """Events whose parents never come are parked per sender, up to a limit;
    past it the sender is disconnected with limit_exceeded and its orphans dropped."""
    config = HubConfig(limits=Limits(max_parked_events=50))
    running = await start_server(
        f"sqlite:///{tmp_path}/s.db", port=0, tcp_port=0, config=config, handle_signals=False
    )
    try:
        events, _ = history(replica_count=1, edits=200, seed=12)
        orphans = events[1:]  # the first event never comes
        assert running.tcp_url is not None
        host = running.tcp_url.removeprefix("tcp://").split(":")
        reader, writer = await asyncio.open_connection(host[0], int(host[1]))
        writer.write(frame(encode(Hello("flooder"))) + frame(encode(Subscribe("d", Version()))))
        frames = FrameReader(1 << 24)
        answered: list[object] = []
        while not any(isinstance(m, Subscribe) for m in answered):  # the server's answer
            answered += [decode(p) for p in frames.feed(await reader.read(65536))]
        for i in range(0, len(orphans), 20):
            batch = tuple((e.body, e.signature) for e in orphans[i : i + 20])
            writer.write(frame(encode(Events("d", i + 1, batch))))
        await writer.drain()
        received = await reader.read()  # until the server closes
        writer.close()
        messages = [decode(p) for p in frames.feed(received)]
        assert isinstance(messages[-1], Error) and messages[-1].code == "limit_exceeded"
        hosted = running.hub.loaded("d")
        assert hosted is not None and not hosted.doc.pending
        good = gether.Document("good")
        async with gether.connect(running.ws_url, "d", doc=good) as session:
            good["still"] = "served"
            await session.sync()
    finally:
        await running.stop()


async def test_a_client_may_start_offline(tmp_path: Path) -> None:
    from gether.testing.servers import free_port

    port = free_port()
    doc = gether.Document("early")
    async with gether.connect(
        f"tcp://127.0.0.1:{port}", "d", doc=doc, offline_start=True, backoff=(0.05, 0.2)
    ) as session:
        doc["written"] = "before the server existed"
        assert not session.connected
        running = await start_server(
            f"sqlite:///{tmp_path}/s.db", port=0, tcp_port=port, handle_signals=False
        )
        try:
            await session.sync()
            assert running.hub.loaded("d") is not None
            assert running.hub.loaded("d").doc.to_json() == doc.to_json()  # type: ignore[union-attr]
        finally:
            await running.stop()


async def test_a_raising_on_change_callback_does_not_stop_syncing(
    server: GetherServer, caplog: pytest.LogCaptureFixture
) -> None:
    writer, reader = gether.Document("writer"), gether.Document("reader")
    heard: list[object] = []

    def broken(changes: object) -> None:
        heard.append(changes)
        raise RuntimeError("the application's bug")

    reader.on_change("", broken)
    async with (
        gether.connect(server.ws_url, "cb", doc=writer) as w,
        gether.connect(server.ws_url, "cb", doc=reader) as r,
    ):
        for round_ in range(3):
            writer[f"k{round_}"] = round_
            await w.sync()
            await r.sync()
            assert reader.to_json() == writer.to_json()
        assert r.connected and not r.errors
    assert len(heard) >= 3
    assert "an on_change callback raised" in caplog.text
