"""The hostile input battery (issue "Security"): every case of ``tests/hostile``
sent over real sockets to a server (uvicorn WebSocket and raw TCP) and to a
``gether.Peer``, each on a document of its own. For each: the documented
error code arrives (or closes the connection), the receiver's state, stored
event count and waiting events are unchanged, nothing is acknowledged (a
replayed event is, as the no-op it is), and an honest client connected all
along still syncs an edit afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import websockets

import gether
from gether.client.session import ClientSession
from gether.core.event import Event
from gether.server.hub import DocumentHub, HubConfig
from gether.server.serve import start_server
from gether.server.tcp import TCPServer
from gether.sync import Error, Limits
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import Ack, AckV2, Message, Ping, Pong, Subscribe, decode, encode
from gether.testing.histories import fixed_key
from hostile import (
    BY_NAME,
    CASES,
    MALLORY,
    SCHEMA,
    SILENT_CONNECTIONS,
    Case,
    Scene,
    Target,
    forge,
    wire,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HELLO_TIMEOUT = 1.0
WAIT = 10.0
"""Seconds any one answer may take before the test fails (never the normal case)."""


@dataclass
class Host:
    kind: str
    tcp_url: str
    ws_url: str
    hub: DocumentHub
    tcp: TCPServer

    def url(self, transport: str) -> str:
        return self.tcp_url if transport == "tcp" else self.ws_url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Host]]:
    folder = tmp_path_factory.mktemp("hostile")
    limits = Limits(hello_timeout=HELLO_TIMEOUT)
    server = await start_server(
        f"sqlite:///{folder}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(limits=limits),
        handle_signals=False,
    )
    peer = gether.Peer(f"sqlite:///{folder}/peer.db", "peer", limits=limits, anti_entropy=60)
    await peer.start()
    assert server.tcp_url is not None and server.tcp is not None
    assert peer.server is not None and peer.server.tcp is not None
    yield {
        "server": Host("server", server.tcp_url, server.ws_url, server.hub, server.tcp),
        "peer": Host("peer", peer.tcp_url, peer.ws_url, peer.hub, peer.server.tcp),
    }
    await peer.stop()
    await server.stop()


# -- a raw connection, as an attacker holds it ----------------------------------------


class Raw:
    """Frames out, messages in, over TCP or WebSocket, no protocol logic."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.messages: list[Message] = []
        self.closed = False
        self._frames = FrameReader(1 << 26)
        self._arrived = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self._tcp: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._ws: Any = None

    @classmethod
    async def open(cls, url: str, protocol: int = 2) -> Raw:
        raw = cls(protocol)
        if url.startswith("tcp://"):
            host, port = url.removeprefix("tcp://").split(":")
            raw._tcp = await asyncio.open_connection(host, int(port))
        else:
            raw._ws = await websockets.connect(url, max_size=None)
        raw._reading = asyncio.create_task(raw._read())
        return raw

    async def _read(self) -> None:
        try:
            while True:
                if self._tcp is not None:
                    data = await self._tcp[0].read(65536)
                else:
                    data = await self._ws.recv()
                if not data:
                    break
                self.messages += [
                    decode(p, protocol=self.protocol) for p in self._frames.feed(data)
                ]
                self._arrived.set()
        except (ConnectionError, websockets.ConnectionClosed):
            pass
        finally:
            self.closed = True
            self._arrived.set()

    async def send(self, data: bytes) -> bool:
        """False if the peer has closed (what it sent is still read)."""
        if self.closed:
            return False
        try:
            if self._tcp is not None:
                self._tcp[1].write(data)
                await self._tcp[1].drain()
            else:
                await self._ws.send(data)
        except (ConnectionError, websockets.ConnectionClosed):
            return False
        return True

    async def half_close(self) -> None:
        assert self._tcp is not None
        self._tcp[1].write_eof()

    async def until(self, done: Callable[[list[Message]], bool], timeout: float = WAIT) -> bool:
        """Wait for ``done(messages)`` or the end of the connection."""
        deadline = time.monotonic() + timeout
        while not done(self.messages) and not self.closed:
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return done(self.messages)

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp[1].close()
        elif self._ws is not None:
            await self._ws.close()
        if self._reading is not None:
            await asyncio.wait_for(self._reading, WAIT)


# -- the scene: a document with a policy, two honest clients, mallory's history -----


@dataclass
class Setting:
    doc_id: str
    alice: gether.Document
    bob: gether.Document
    mallory: gether.Document
    first: Event
    sessions: list[ClientSession]


async def _set_up(host: Host, transport: str, case: Case, tag: str = "") -> Setting:
    doc_id = f"{case.name}-{transport}{tag}"
    if case.name == "schema_violation":  # the peer's replica checks the schema
        (await host.hub.open(doc_id)).doc._use_schema(SCHEMA)
    alice, bob, mallory = (
        gether.Document(name, key=fixed_key(name)) for name in ("alice", "bob", MALLORY)
    )
    alice.map("todos")["first"] = 1
    alice.access.grant(fixed_key("bob").key_id, "writer", "/")
    alice.access.grant(fixed_key(MALLORY).key_id, "writer", "/todos")
    mallory.apply_events(alice.events_since(None))
    mallory.map("todos")["m"] = 1
    first = mallory.events_since(alice.version)[-1]
    alice.apply_events([first])
    sessions = []
    for doc in (alice, bob):
        session = gether.connect(host.url(transport), doc_id, doc=doc)
        await session.__aenter__()
        await session.sync()
        sessions.append(session)
    return Setting(doc_id, alice, bob, mallory, first, sessions)


def _digest(doc: gether.Document) -> str:
    state = json.dumps(doc.to_json(), sort_keys=True, default=repr)
    return hashlib.sha256(f"{state}|{doc.version.to_dict()}".encode()).hexdigest()


async def _observed(host: Host, doc_id: str) -> tuple[str, Any, int, frozenset[Any]]:
    hosted = host.hub.loaded(doc_id)
    assert hosted is not None
    stored = await host.hub.store.events(doc_id, None)
    return _digest(hosted.doc), hosted.doc.to_json(), len(stored), hosted.doc.pending


async def _introduce(raw: Raw, setting: Setting, protocol: int) -> Target:
    await raw.send(wire.hello(versions=(protocol,)))
    await raw.send(wire.subscribe(setting.doc_id, setting.alice.version))

    def answered(messages: list[Message]) -> bool:
        return any(isinstance(m, Subscribe) and m.doc_id == setting.doc_id for m in messages)

    assert await raw.until(answered), raw.messages
    (subscribe,) = [
        m for m in raw.messages if isinstance(m, Subscribe) and m.doc_id == setting.doc_id
    ]
    raw.messages.clear()
    return Target(
        setting.doc_id,
        protocol,
        subscribe.number,
        setting.alice.known_event,
        setting.alice.version,
    )


async def _attack(raw: Raw, case: Case, setting: Setting, protocol: int) -> None:
    if case.raw is not None:
        await raw.send(case.raw)
        if case.eof:
            await raw.half_close()
        return
    assert case.build is not None
    target = await _introduce(raw, setting, protocol)
    attack = case.build(Scene(target, setting.mallory, fixed_key(MALLORY), setting.first))
    for data in attack.frames:
        if not await raw.send(data):
            break


async def _settle(raw: Raw, case: Case) -> None:
    """Read the answer: a fatal error and the close, or (the connection
    staying open) the error for the batch, then a ping's pong."""

    def answered(messages: list[Message]) -> bool:
        errors = [m for m in messages if isinstance(m, Error)]
        if not case.codes:
            return any(isinstance(m, Ack | AckV2) for m in messages)
        if case.closes_with:
            return any(m.code == case.closes_with for m in errors)
        return bool(errors)

    await raw.until(answered)
    if not raw.closed:
        await raw.send(frame(encode(Ping(4242))))
        await raw.until(lambda ms: any(isinstance(m, Pong) and m.nonce == 4242 for m in ms))
        fatal = any(isinstance(m, Error) and m.doc_id is None for m in raw.messages)
        if fatal:
            await raw.until(lambda _: False)  # the close that follows


RUNS = [
    pytest.param(case.name, kind, transport, protocol, id=f"{case.name}-{kind}-{transport}")
    for case in CASES
    if case.name != "silent_connections"
    for kind, transport, protocol in (
        ("server", "tcp", 1),
        ("server", "ws", 2),
        ("peer", "tcp", 2),
        ("peer", "ws", 1),
    )
    if kind in case.targets and transport in case.transports
]


@pytest.mark.parametrize(("name", "kind", "transport", "protocol"), RUNS)
async def test_hostile_input(
    hosts: dict[str, Host], name: str, kind: str, transport: str, protocol: int
) -> None:
    case, host = BY_NAME[name], hosts[kind]
    setting = await _set_up(host, transport, case)
    try:
        before = await _observed(host, setting.doc_id)
        raw = await Raw.open(host.url(transport), protocol)
        await _attack(raw, case, setting, protocol)
        await _settle(raw, case)
        await raw.close()
        messages = raw.messages
        errors = [m for m in messages if isinstance(m, Error)]
        acks = [m for m in messages if isinstance(m, Ack | AckV2)]
        if case.codes:
            assert errors, messages
            assert code_of(errors[0]) in case.codes, errors
            assert not acks, messages
            if case.closes_with:
                assert (errors[-1].code, errors[-1].doc_id) == (case.closes_with, None)
            if errors[-1].doc_id is None:
                assert raw.closed  # a fatal error closes the connection
            else:
                assert any(isinstance(m, Pong) for m in messages)  # and it stays open
        else:
            assert not errors and acks, messages
        assert await _observed(host, setting.doc_id) == before
        # an honest client, connected all along, still syncs
        alice_session, bob_session = setting.sessions
        setting.bob["after"] = name
        await bob_session.sync()
        await alice_session.sync()
        assert setting.alice.to_json()["after"] == name
        hosted = host.hub.loaded(setting.doc_id)
        assert hosted is not None and hosted.doc.to_json() == setting.bob.to_json()
    finally:
        for session in setting.sessions:
            await session.close()


def code_of(error: Error) -> str:
    """The error's code; for ``rejected_events``, the code of its first
    rejection, which the message names first in brackets (docs/protocol.md)."""
    if error.code == "rejected_events" and "[" in error.message:
        return error.message.split("[", 1)[1].split("]", 1)[0]
    return error.code


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _silent(url: str) -> Raw:
    return await Raw.open(url)


@pytest.mark.parametrize(("kind", "transport"), [("server", "tcp"), ("peer", "ws")])
async def test_silent_connections_are_closed_by_the_hello_timeout(
    hosts: dict[str, Host], kind: str, transport: str
) -> None:
    host = hosts[kind]
    case = BY_NAME["silent_connections"]
    setting = await _set_up(host, transport, case)
    try:
        gc.collect()
        fds, rss = _fds(), _rss()
        started = time.monotonic()
        silent = await asyncio.gather(
            *(_silent(host.url(transport)) for _ in range(SILENT_CONNECTIONS))
        )
        opened = time.monotonic() - started
        peak_fds, peak_rss = _fds(), _rss()
        # meanwhile an honest client still syncs
        setting.bob["during"] = True
        await setting.sessions[1].sync()
        await setting.sessions[0].sync()
        assert setting.alice.to_json()["during"] is True
        await asyncio.gather(*(s.until(lambda _: False, HELLO_TIMEOUT + WAIT) for s in silent))
        elapsed = time.monotonic() - started
        still = [s for s in silent if not s.closed]
        assert not still, (len(still), elapsed, [s.messages for s in still[:3]])
        codes = {tuple(m.code for m in s.messages if isinstance(m, Error)) for s in silent}
        assert codes <= {case.codes, ()}, codes  # a WebSocket may close before it reads
        assert sum(1 for s in silent if s.messages) >= SILENT_CONNECTIONS // 2
        for s in silent:
            await s.close()
        gc.collect()
        growth = _rss() - rss
        print(
            f"\n{SILENT_CONNECTIONS} silent {transport} connections to the {kind}: opened in "
            f"{opened:.2f}s, all closed after {elapsed:.2f}s, fds {fds} -> {peak_fds} -> "
            f"{_fds()}, RSS +{(peak_rss - rss) / 1e6:.1f} MB open, +{growth / 1e6:.1f} MB after"
        )
        assert elapsed < HELLO_TIMEOUT + opened + 5
        assert _fds() <= fds + 10
        assert peak_rss - rss < 200e6 and growth < 100e6
        hosted = host.hub.loaded(setting.doc_id)
        assert hosted is not None and hosted.doc.to_json() == setting.alice.to_json()
    finally:
        for session in setting.sessions:
            await session.close()


@pytest.mark.parametrize("protocol", [1, 2])
async def test_events_waiting_for_parents_are_not_acknowledged(
    hosts: dict[str, Host], protocol: int
) -> None:
    """An ack says "stored": a batch whose events only wait for parents (or a
    signature) is answered with events_pending instead; they are kept waiting."""
    host, case = hosts["server"], BY_NAME["orphan_flood"]
    setting = await _set_up(host, "tcp", case, f"-acks{protocol}")
    try:
        raw = await Raw.open(host.tcp_url, protocol)
        target = await _introduce(raw, setting, protocol)
        batches = target.batches(forge.orphan_flood(10), 10)
        await raw.send(next(iter(batches)))
        await raw.send(frame(encode(Ping(1))))
        await raw.until(lambda ms: any(isinstance(m, Pong) for m in ms))
        await asyncio.sleep(0.3)  # an ack due once the batch is "stored"
        await raw.send(frame(encode(Ping(2))))
        await raw.until(lambda ms: any(isinstance(m, Pong) and m.nonce == 2 for m in ms))
        await raw.close()
        assert not [m for m in raw.messages if isinstance(m, Ack | AckV2)]
        assert [m.code for m in raw.messages if isinstance(m, Error)] == ["events_pending"]
        hosted = host.hub.loaded(setting.doc_id)
        assert hosted is not None and len(hosted.doc.pending) == 10
    finally:
        for session in setting.sessions:
            await session.close()


async def test_a_compressed_flood_is_cut_off_before_it_is_all_decoded(
    hosts: dict[str, Host],
) -> None:
    """What bounds the work of a flood is the decoder's: 4 KB of v2 frames
    (a chain compresses to about 220 bytes per 5,000 events) must not become
    90,000 decoded events. A connection stops decoding behind
    ``Limits.max_unsettled_events`` until its owner settles them, and the
    hub cuts the sender off past ``max_parked_events``."""
    host, case = hosts["server"], BY_NAME["parent_chain_100000_deep"]
    setting = await _set_up(host, "tcp", case, "-decoded")
    try:
        raw = await Raw.open(host.tcp_url, 2)
        target = await _introduce(raw, setting, 2)
        (session,) = [
            s for s in host.tcp.sessions if s.conn.peer and s.conn.peer.peer_id == "mallory-conn"
        ]
        assert case.build is not None
        attack = case.build(Scene(target, setting.mallory, fixed_key(MALLORY), setting.first))
        for data in attack.frames:
            if not await raw.send(data):
                break
        await raw.until(lambda _: False)
        await raw.close()
        limit = host.hub.config.limits.max_parked_events
        assert session.conn.traffic.events_received <= 2 * limit
    finally:
        for s in setting.sessions:
            await s.close()
