"""A mesh of peers with no server: links cut and healed, everyone converges."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import gether
from gether.peer import Peer
from gether.testing.histories import edit

LINKS = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2)]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[list[Peer]]:
    mesh = [
        Peer(f"sqlite:///{tmp_path}/peer{i}.db", f"peer{i}", anti_entropy=0.5, backoff=(0.05, 0.3))
        for i in range(5)
    ]
    for peer in mesh:
        await peer.start()
    yield mesh
    for peer in mesh:
        await peer.stop()


def url(peer: Peer, i: int) -> str:
    return peer.tcp_url if i % 2 else peer.ws_url


async def test_a_mesh_of_five_converges_with_links_cut_and_healed(peers: list[Peer]) -> None:
    docs = [await peer.document("mesh") for peer in peers]
    for a, b in LINKS:
        peers[a].link(url(peers[b], b))
    rng = random.Random(8)

    def same() -> bool:
        first = docs[0].version
        return all(doc.version == first for doc in docs) and all(
            doc.to_json() == docs[0].to_json() for doc in docs
        )

    for _ in range(40):
        edit(rng.choice(docs), rng)
        await asyncio.sleep(0.005)
    await until(same)

    # cut peer 4 off (its three links), and one more inside the rest
    for a, b in [(3, 4), (4, 0), (1, 2)]:
        await peers[a].unlink(url(peers[b], b))
    await until(
        lambda: not any(s.name.endswith(str(peers[4].tcp_url)) for s in peers[3].hub.sessions)
    )
    for _ in range(40):
        edit(rng.choice(docs), rng)
        await asyncio.sleep(0.005)
    docs[4].text("island").insert(0, "only on peer 4")
    await until(lambda: all(d.version == docs[0].version for d in docs[:4]))
    assert docs[4].version != docs[0].version

    for a, b in [(3, 4), (4, 0), (1, 2)]:  # heal
        peers[a].link(url(peers[b], b))
    await until(same)
    assert docs[0].get("island") == "only on peer 4"


async def test_a_peer_restarted_on_its_store_catches_up(tmp_path: Path) -> None:
    a = await Peer(f"sqlite:///{tmp_path}/a.db", "a", anti_entropy=0.3).start()
    b = await Peer(f"sqlite:///{tmp_path}/b.db", "b", anti_entropy=0.3).start()
    try:
        doc_a = await a.document("notes")
        doc_b = await b.document("notes")
        b.link(a.tcp_url)
        doc_a["x"] = 1
        await until(lambda: doc_b.to_json() == {"x": 1})
        await b.stop()
        doc_a["y"] = 2  # while b is down
        b = await Peer(f"sqlite:///{tmp_path}/b.db", "b", anti_entropy=0.3).start()
        doc_b = await b.document("notes")
        assert doc_b.to_json() == {"x": 1}  # kept on its store
        b.link(a.ws_url)
        await until(lambda: doc_b.to_json() == {"x": 1, "y": 2})
    finally:
        await a.stop()
        await b.stop()


def test_peer_is_exported() -> None:
    assert gether.Peer is Peer
