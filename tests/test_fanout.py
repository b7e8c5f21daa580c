"""A server's fan-out: one batch per document per tick, packed once and sent
alike to every subscriber that holds all before it; new and lagging
subscribers are caught up the slow way and then join. Whatever the
interleaving of edits, deliveries, ticks and late joins, everyone converges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.ids import Version
from gether.sync import Role, SyncConnection
from gether.sync.fanout import SharedBatch
from gether.testing.histories import edit
from gether.testing.sync import DocumentsHost, deliver, pump

DOC = "d"


class Server:
    """A hub in miniature: one document, a connection per client, and fan-out
    exactly as ``DocumentHub._fan_out`` makes it."""

    def __init__(self) -> None:
        self.doc = gether.Document("server")
        self.host = DocumentsHost({DOC: self.doc}, shared={DOC: self.doc.version})
        self.conns: dict[int, SyncConnection] = {}
        self.batches: list[SharedBatch] = []

    def connection(self, i: int) -> SyncConnection:
        conn = self.conns[i] = SyncConnection(self.host, "server", Role.SERVER, now=0.0)
        return conn

    @property
    def shared(self) -> Version:
        return self.host.shared[DOC]

    def fan_out(self) -> None:
        before = self.shared
        events = self.doc.events_since(before)
        if events:
            after = self.host.shared[DOC] = self.doc.version
            batch = SharedBatch(DOC, before, after, events)
            self.batches.append(batch)
            for conn in self.conns.values():
                conn.push_shared(batch)


class Client:
    def __init__(self, i: int) -> None:
        self.doc = gether.Document(f"c{i}")
        self.host = DocumentsHost({DOC: self.doc})
        self.conn = SyncConnection(self.host, f"c{i}", Role.CLIENT, now=0.0)
        self.conn.subscribe(DOC)


steps = st.lists(
    st.tuples(st.sampled_from(["edit", "up", "down", "tick", "join", "forget"]), st.integers(0, 4)),
    max_size=60,
)


@settings(max_examples=150)
@given(count=st.integers(2, 5), plan=steps, seed=st.integers(0, 2**32 - 1))
def test_any_interleaving_of_edits_ticks_and_joins_converges(
    count: int, plan: list[tuple[str, int]], seed: int
) -> None:
    rng = random.Random(seed)
    server = Server()
    clients = [Client(i) for i in range(count)]
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
        check(count=rng.randint(2, 5), plan=plan, seed=rng.randrange(2**32))


def test_a_batch_is_packed_once_for_every_live_subscriber() -> None:
    server = Server()
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
    # the same packed events in every frame (only the per-connection batch number could differ)
    packed = batch.packed(server.conns[0].limits.compress_above)[1]
    assert all(packed in frame for frame in frames)
    assert batch.packed(server.conns[0].limits.compress_above)[1] is packed
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


def _edits(name: str, count: int) -> list[gether.Event]:
    doc = gether.Document(name)
    for k in range(count):
        doc[f"{name}{k}"] = k
    return doc.events_since(None)
