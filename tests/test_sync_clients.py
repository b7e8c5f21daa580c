"""Many clients, a server restarted under them, an offline client, and a
client killed in the middle of its edits."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import gether
from gether.client import ClientSession
from gether.server.hub import HubConfig
from gether.server.serve import start_server
from gether.store import open_blocking_store
from gether.sync import Limits
from gether.testing.histories import edit
from gether.testing.servers import ServerProcess

CLIENTS = 10


async def test_ten_clients_a_restart_and_an_offline_client(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/server.db"
    server = ServerProcess(store_url, extra=["--snapshot-every", "50"]).start()
    rng = random.Random(5)
    docs = [gether.Document(f"c{i}") for i in range(CLIENTS)]
    urls = [server.ws_url if i % 2 else server.tcp_url for i in range(CLIENTS)]
    sessions: list[ClientSession | None] = []
    try:
        for doc, url in zip(docs, urls, strict=True):
            sessions.append(
                await gether.connect(url, "shared", doc=doc, backoff=(0.05, 0.3)).__aenter__()
            )

        async def burst(rounds: int) -> None:
            for _ in range(rounds):
                edit(rng.choice(docs), rng)
                if rng.random() < 0.3:
                    await asyncio.sleep(0.001)

        await burst(150)
        offline = sessions[3]
        assert offline is not None
        await offline.close()  # client 3 goes offline and keeps editing
        sessions[3] = None
        for _ in range(30):
            edit(docs[3], rng)
        await burst(100)
        assert server.stop() == 0
        server = ServerProcess(store_url, server.port, server.tcp_port,
                               ["--snapshot-every", "50"]).start()  # fmt: skip
        await burst(100)
        sessions[3] = await gether.connect(urls[3], "shared", doc=docs[3]).__aenter__()
        for _ in range(2):
            for session in sessions:
                assert session is not None
                await session.sync()
        states = [doc.to_json() for doc in docs]
        assert all(state == states[0] for state in states)
        assert all(doc.version == docs[0].version for doc in docs)
    finally:
        for session in sessions:
            if session is not None:
                await session.close()
        server.kill()
    store = open_blocking_store(store_url)
    try:
        assert store.version("shared") == docs[0].version
        assert store.count("shared") == docs[0].event_count
        assert store.load_snapshot("shared") is not None
        rebuilt = gether.Document("rebuilt")
        rebuilt.apply_events(store.events("shared"))
        assert rebuilt.to_json() == docs[0].to_json()
    finally:
        store.close()


def client(args: list[str]) -> subprocess.Popen[str]:
    src = str(Path(gether.__file__).parents[1])
    script = Path(__file__).parent / "helpers" / "sync_client.py"
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
    )


async def test_a_client_killed_while_editing_loses_nothing(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path}/server.db") as server:
        local = f"sqlite:///{tmp_path}/client.db"
        rng = random.Random(6)
        committed: set[tuple[str, int]] = set()
        for cycle in range(5):
            proc = client([server.ws_url, local, "notes", str(cycle)])
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            for line in out.splitlines():
                replica, seq = line.split()
                committed.add((replica, int(seq)))
        assert committed
        # restarted once more, it sends whatever the server still lacks
        proc = client([server.ws_url, local, "notes", "99", "sync-only"])
        out, _ = proc.communicate(timeout=60)
        assert out.strip() == "synced"
        store = open_blocking_store(f"sqlite:///{tmp_path}/server.db")
        try:
            stored = store.events("notes")
            ids = [e.id for e in stored]
            assert len(ids) == len(set(ids))  # nothing twice
            assert committed <= set(ids)  # nothing lost
        finally:
            store.close()
        with gether.Document.open(local, "notes") as doc:
            assert doc.version == store_version(tmp_path)


def store_version(tmp_path: Path) -> gether.Version:
    store = open_blocking_store(f"sqlite:///{tmp_path}/server.db")
    try:
        return store.version("notes")
    finally:
        store.close()


async def test_a_long_offline_run_syncs_within_the_servers_waiting_limit(tmp_path: Path) -> None:
    """A client back from an offline run longer than the events a server lets
    one sender keep waiting (for a signature still to come) syncs whole: its
    export has signatures all along the run, not only at its end."""
    limits = Limits(max_parked_events=300, batch_events=100)
    running = await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        config=HubConfig(limits=limits),
        handle_signals=False,
    )
    try:
        doc = gether.Document("offline")
        for _ in range(1_500):
            doc.counter("c").increment(1)
        async with gether.connect(running.ws_url, "long", doc=doc) as session:
            await session.sync(timeout=60)
        reader = gether.Document("reader")
        async with gether.connect(running.ws_url, "long", doc=reader) as session:
            await session.sync(timeout=60)
        assert reader.to_json() == {"c": 1_500}
    finally:
        await running.stop()
