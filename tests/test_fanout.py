"""A server's fan-out: one batch per document per tick, packed once and sent
alike to every subscriber that holds all before it; new and lagging
subscribers are caught up the slow way and then join. Whatever the
interleaving of edits, deliveries, ticks and late joins, everyone converges."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.ids import Version
from gether.sync import Limits, Role, SyncConnection
from gether.sync.fanout import SharedBatch, shared_batches
from gether.sync.messages import VERSIONS
from gether.testing.histories import edit
from gether.testing.sync import DocumentsHost, deliver, pump

DOC = "d"


class Server:
    """A hub in miniature: one document, a connection per client, and fan-out
    exactly as ``DocumentHub._fan_out`` makes it."""

    def __init__(self, versions: tuple[int, ...] = VERSIONS, limits: Limits | None = None) -> None:
        self.versions = versions
        self.limits = limits or Limits()
        self.doc = gether.Document("server")
        self.host = DocumentsHost({DOC: self.doc}, shared={DOC: self.doc.version})
        self.conns: dict[int, SyncConnection] = {}
        self.batches: list[SharedBatch] = []

    def connection(self, i: int) -> SyncConnection:
        conn = self.conns[i] = SyncConnection(
            self.host, "server", Role.SERVER, now=0.0, versions=self.versions, limits=self.limits
        )
        return conn

    @property
    def shared(self) -> Version:
        return self.host.shared[DOC]

    def fan_out(self) -> None:
        before = self.shared
        events = self.doc.events_since(before)
        if events:
            after = self.host.shared[DOC] = self.doc.version
            for batch in shared_batches(DOC, before, after, events, self.limits):
                self.batches.append(batch)
                for conn in self.conns.values():
                    conn.push_shared(batch)


class Client:
    def __init__(self, i: int, versions: tuple[int, ...] = VERSIONS) -> None:
        self.doc = gether.Document(f"c{i}")
        self.host = DocumentsHost({DOC: self.doc})
        self.conn = SyncConnection(self.host, f"c{i}", Role.CLIENT, now=0.0, versions=versions)
        self.conn.subscribe(DOC)


steps = st.lists(
    st.tuples(st.sampled_from(["edit", "up", "down", "tick", "join", "forget"]), st.integers(0, 4)),
    max_size=60,
)


@settings(max_examples=150)
@given(
    count=st.integers(2, 5),
    plan=steps,
    seed=st.integers(0, 2**32 - 1),
    protocols=st.lists(
        st.sampled_from([(1,), (2,), (1, 2), (3,), (1, 2, 3)]), min_size=5, max_size=5
    ),
)
def test_any_interleaving_of_edits_ticks_and_joins_converges(
    count: int, plan: list[tuple[str, int]], seed: int, protocols: list[tuple[int, ...]]
) -> None:
    """Clients of protocols 1, 2 and 3 on one server (v2 batches name parents
    without their hashes: a live subscriber must hold them; v3 batches of one
    connection name replicas by their place in its names)."""
    rng = random.Random(seed)
    server = Server()
    clients = [Client(i, protocols[i]) for i in range(count)]
    joined: set[int] = set()

    def join(i: int) -> None:
        if i not in joined:
            joined.add(i)
            server.connection(i)

    for step, index in plan:
        i = index % count
        client = clients[i]
        if step == "edit":
            edit(client.doc, rng)
            client.conn.push(DOC)
        elif step == "join":
            join(i)
        elif step == "tick":
            server.fan_out()
        elif step == "forget" and i in joined and DOC in server.conns[i]._docs:
            # as a connection that subscribed without knowing the fan-out (a
            # peer's): it must be caught up the slow way, then go live again
            server.conns[i]._docs[DOC].live = None
        elif i in joined and step == "up":
            deliver(server.conns[i], server.host, client.conn.data_to_send(), 0.0)
        elif i in joined and step == "down":
            deliver(client.conn, client.host, server.conns[i].data_to_send(), 0.0)
    for i in range(count):
        join(i)
    for _ in range(3):  # everyone's events reach the server, then come back out
        for i, client in enumerate(clients):
            client.conn.push(DOC)
            pump(client.conn, client.host, server.conns[i], server.host)
        server.fan_out()
    for i, client in enumerate(clients):
        assert not pump(client.conn, client.host, server.conns[i], server.host).rejected
        assert client.doc.to_json() == server.doc.to_json()
        assert client.doc.version == server.doc.version
        assert client.doc.pending == frozenset()


def test_long_random_schedules_converge() -> None:
    """Longer plans than hypothesis tends to draw, where lagging subscribers
    (``forget``) and late joins are common."""
    rng = random.Random(2026)
    kinds = ["edit", "up", "down", "tick", "join", "forget"]
    for _ in range(100):
        plan = [(rng.choice(kinds), rng.randrange(5)) for _ in range(rng.randrange(20, 120))]
        check = test_any_interleaving_of_edits_ticks_and_joins_converges.hypothesis.inner_test  # type: ignore[attr-defined]
        protocols = [rng.choice([(1,), (2,), (3,)]) for _ in range(5)]
        check(count=rng.randint(2, 5), plan=plan, seed=rng.randrange(2**32), protocols=protocols)


@pytest.mark.parametrize("versions", [(1,), (1, 2)])
def test_a_batch_is_packed_once_for_every_live_subscriber(versions: tuple[int, ...]) -> None:
    server = Server(versions)
    clients = [Client(i) for i in range(4)]
    for i, client in enumerate(clients):
        pump(client.conn, client.host, server.connection(i), server.host)
    server.fan_out()  # nothing new: no batch
    assert server.batches == []
    # subscribers accepted after the last fan-out are live at its end
    assert all(conn._docs[DOC].live is server.shared for conn in server.conns.values())
    writer = gether.Document("w")
    writer["title"] = "hello"
    server.doc.apply_events(writer.events_since(None))
    server.fan_out()
    (batch,) = server.batches
    frames = [server.conns[i].data_to_send() for i in range(4)]
    if versions == (1,):  # the same packed events; v1 numbers each connection's batches
        packed = batch.packed(server.conns[0].limits.compress_above)[1]
        assert all(packed in frame for frame in frames)
    else:  # v2: nothing per connection, the very same frame
        assert all(frame == frames[0] for frame in frames)
    for i, client in enumerate(clients):
        deliver(client.conn, client.host, frames[i], 0.0)
        assert client.doc.to_json() == {"title": "hello"}
        pump(client.conn, client.host, server.conns[i], server.host)
        assert client.conn.is_synced(DOC) and server.conns[i].is_synced(DOC)


def test_a_subscriber_that_missed_a_batch_is_caught_up_then_live() -> None:
    server = Server()
    early, late = Client(0), Client(1)
    pump(early.conn, early.host, server.connection(0), server.host)
    server.doc.apply_events(_edits("a", 3))
    server.fan_out()  # the late client is not connected yet
    pump(late.conn, late.host, server.connection(1), server.host)
    server.doc.apply_events(_edits("b", 2))
    server.fan_out()
    for i, client in enumerate((early, late)):
        pump(client.conn, client.host, server.conns[i], server.host)
        assert client.doc.to_json() == server.doc.to_json()
    # both are live at the end of the last batch: the next one goes out as is
    batch = server.batches[-1]
    assert all(conn._docs[DOC].live is batch.after for conn in server.conns.values())


@pytest.mark.parametrize("limits", [Limits(batch_events=3), Limits(batch_bytes=400)])
def test_a_gain_over_the_batch_limits_goes_as_several_shared_batches(limits: Limits) -> None:
    server = Server((2,), limits)
    clients = [Client(i, (2,)) for i in range(3)]
    for i, client in enumerate(clients):
        pump(client.conn, client.host, server.connection(i), server.host)
    server.doc.apply_events(_edits("a", 7) + _edits("b", 4))
    server.fan_out()
    assert len(server.batches) >= 3
    for batch in server.batches:
        assert len(batch.events) <= limits.batch_events
        assert batch.size <= limits.batch_bytes or len(batch.events) == 1
    for previous, batch in zip(server.batches, server.batches[1:], strict=False):
        assert batch.before is previous.after  # a chain: live subscribers take each as is
    frames = [server.conns[i].data_to_send() for i in range(3)]
    assert frames[0] == frames[1] == frames[2]  # packed once, none for one alone
    for i, client in enumerate(clients):
        deliver(client.conn, client.host, frames[i], 0.0)
        assert client.doc.to_json() == server.doc.to_json()
    assert all(conn._docs[DOC].live is server.shared for conn in server.conns.values())


def _edits(name: str, count: int) -> list[gether.Event]:
    doc = gether.Document(name)
    for k in range(count):
        doc[f"{name}{k}"] = k
    return doc.events_since(None)
