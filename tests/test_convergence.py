"""Convergence: replicas that saw the same events hold the same state.

Property tests drive 2 to 7 replicas through random concurrent edits of every
type over a simulated network that drops, duplicates, reorders, splits and
partitions, with forks merged back and replicas reloaded from saves along the
way. After the network settles every replica must agree on everything, and a
fresh replica fed the history in any order must agree too. A state machine
checks the structures' invariants after every step, and targeted tests pin the
behaviours a user would notice (no interleaved runs, no duplicated items, every
increment counted).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import gether
from gether.testing.network import SimulatedNetwork
from gether.testing.strategies import NAMED, Op, Transaction, apply_op, kind_of, ops

NAMED_NAMES = {name for names in NAMED.values() for name in names}

BASE = settings().max_examples
"""Examples of the main property test; the others are sized from it (profile-driven)."""


# -- helpers --------------------------------------------------------------


def new_docs(n: int) -> list[gether.Document]:
    return [gether.Document(replica_id=f"r{i}") for i in range(n)]


def sync(a: gether.Document, b: gether.Document) -> None:
    """Both ways, through bytes."""
    b.apply_events([e.to_bytes() for e in a.events_since(b.version)])
    a.apply_events([e.to_bytes() for e in b.events_since(a.version)])


def apply_counted(doc: gether.Document, op: Op) -> int:
    """Apply ``op`` and return how many events it created (checked).

    One edit or transaction is one event; outside a transaction, the first use
    of a named container (``doc.text("T")``) adds one more that links it.
    """
    before_count, before_version = doc.event_count, doc.version
    before_json = doc.to_json()
    applied = apply_op(doc, op)
    event(f"{type(op).__name__}: {'applied' if applied else 'skipped'}")
    created = doc.event_count - before_count
    linked = len((doc.keys() - before_json.keys()) & NAMED_NAMES)
    assert 0 <= created <= 1 + linked, f"{op!r} created {created} events"
    if isinstance(op, Transaction) and op.abort:
        assert created == 0
        assert doc.version == before_version
        assert doc.to_json() == before_json, "an aborted transaction left changes behind"
    return created


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every live container under ``node`` (a document or a proxy), with its kind."""
    kind = kind_of(node)
    if kind is None:
        return
    yield kind, node
    if isinstance(node, gether.Document):
        root = node.to_json()
        assert isinstance(root, dict)
        for key in sorted(root):
            yield from walk(node[key])
    elif kind == "map":
        for key in sorted(node.keys()):
            yield from walk(node[key])
    elif kind == "list":
        for index in range(len(node)):
            yield from walk(node[index])


def check_structures(doc: gether.Document) -> None:
    """Each container agrees with itself and with ``to_json``."""
    for kind, node in walk(doc):
        if kind == "text":
            assert len(node) == len(str(node))
        elif kind == "list":
            assert len(node) == len(list(node))
        elif kind == "map" and not isinstance(node, gether.Document):
            assert len(node) == len(list(node.keys()))
        elif kind == "counter":
            assert isinstance(node.value, int)
        elif kind == "set":
            items = node.to_json()
            assert len(items) == len({(type(v), v) for v in items}) == len(node)
    assert sum(doc.version.values()) == doc.event_count
    for event_id in doc.pending:
        assert not doc.version.includes(event_id)


def check_converged(docs: list[gether.Document], created: int, rng: random.Random) -> None:
    """Everything the design promises once every replica has every event."""
    first = docs[0]
    expected_json = first.to_json()
    for doc in docs:
        assert doc.pending == frozenset()
        assert doc.version == first.version
        assert doc.to_json() == expected_json
        assert doc.event_count == created
        check_structures(doc)
    assert first.at(first.version).to_json() == expected_json
    # a fresh replica fed the whole history in a random order
    source = docs[rng.randrange(len(docs))]
    history = [e.to_bytes() for e in source.events_since(None)]
    assert len(history) == created
    for data in history:
        assert gether.Event.from_bytes(data).to_bytes() == data
    rng.shuffle(history)
    fresh = gether.Document(replica_id="fresh")
    fresh.apply_events(history)
    assert fresh.pending == frozenset()
    assert fresh.version == source.version
    assert fresh.to_json() == expected_json
    assert fresh.event_count == created


def _bucket(n: int) -> str:
    return next(f"<= {b}" for b in (0, 5, 20, 50, 10**9) if n <= b)


# -- schedules ------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    replica: int
    op: Op


@dataclass(frozen=True)
class Broadcast:
    replica: int


@dataclass(frozen=True)
class Deliver:
    pass


@dataclass(frozen=True)
class Partition:
    groups: tuple[int, ...]
    """Group number of each replica (taken modulo the replica count)."""


@dataclass(frozen=True)
class Heal:
    pass


@dataclass(frozen=True)
class ForkMerge:
    """Fork a replica, edit both sides concurrently, merge the fork back."""

    replica: int
    on_fork: tuple[Op, ...]
    on_original: tuple[Op, ...]


@dataclass(frozen=True)
class SaveLoad:
    replica: int


Step = Edit | Broadcast | Deliver | Partition | Heal | ForkMerge | SaveLoad

_REPLICA = st.integers(0, 6)


def steps() -> st.SearchStrategy[Step]:
    short_ops = st.lists(ops(), max_size=3).map(tuple)
    return st.one_of(
        st.builds(Edit, _REPLICA, ops()),
        st.builds(Edit, _REPLICA, ops()),
        st.builds(Edit, _REPLICA, ops()),
        st.builds(Broadcast, _REPLICA),
        st.just(Deliver()),
        st.builds(Partition, st.lists(st.integers(0, 2), min_size=7, max_size=7).map(tuple)),
        st.just(Heal()),
        st.builds(ForkMerge, _REPLICA, short_ops, short_ops),
        st.builds(SaveLoad, _REPLICA),
    )


@dataclass(frozen=True)
class Faults:
    drop: float
    duplicate: float
    split: float
    reorder: float
    delivery: float


faults = st.builds(
    Faults,
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([0.0, 0.3]),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([0.3, 0.7, 1.0]),
)


class Run:
    """Plays a schedule on a network and counts the events it creates."""

    def __init__(self, n: int, seed: int, f: Faults) -> None:
        self.net = SimulatedNetwork(
            new_docs(n),
            seed,
            drop=f.drop,
            duplicate=f.duplicate,
            split=f.split,
            reorder=f.reorder,
            delivery=f.delivery,
        )
        self.n = n
        self.created = 0
        self.forks = 0

    def play(self, step: Step) -> None:
        n, net = self.n, self.net
        match step:
            case Edit(replica, op):
                self.created += apply_counted(net[replica % n], op)
            case Broadcast(replica):
                net.broadcast(replica % n)
            case Deliver():
                net.deliver_some()
            case Partition(groups):
                net.partition(
                    [[i for i in range(n) if groups[i] == g] for g in sorted(set(groups[:n]))]
                )
            case Heal():
                net.heal()
            case ForkMerge(replica, on_fork, on_original):
                self.fork_merge(replica % n, on_fork, on_original)
            case SaveLoad(replica):
                self.save_load(replica % n)

    def fork_merge(self, index: int, on_fork: tuple[Op, ...], on_original: tuple[Op, ...]) -> None:
        doc = self.net[index]
        fork = doc.fork()
        self.forks += 1
        assert fork.to_json() == doc.to_json()
        assert fork.version == doc.version
        assert fork.replica_id != doc.replica_id
        for op in on_fork:
            self.created += apply_counted(fork, op)
        for op in on_original:
            self.created += apply_counted(doc, op)
        expected = doc.version.merged(fork.version)
        doc.merge(fork)
        assert doc.version == expected

    def save_load(self, index: int) -> None:
        doc = self.net[index]
        loaded = gether.Document.load(doc.save(), replica_id=doc.replica_id, key=doc.key)
        assert loaded.replica_id == doc.replica_id
        assert loaded.version == doc.version
        assert loaded.event_count == doc.event_count
        assert loaded.to_json() == doc.to_json()
        self.net.replace(index, loaded)

    def finish(self, seed: int) -> None:
        self.net.settle()
        event(f"events created: {_bucket(self.created)}")
        event(f"forks: {min(self.forks, 2)}")
        check_converged(self.net.replicas, self.created, random.Random(seed))


@settings(max_examples=BASE * 3)
@given(
    n=st.integers(2, 7),
    seed=st.integers(0, 2**32),
    f=faults,
    schedule=st.lists(steps(), min_size=10, max_size=60),
)
def test_random_schedules_converge(n: int, seed: int, f: Faults, schedule: list[Step]) -> None:
    run = Run(n, seed, f)
    for step in schedule:
        run.play(step)
    run.finish(seed)


@settings(max_examples=BASE * 2)
@given(
    seed=st.integers(0, 2**32),
    rounds=st.lists(st.tuples(ops(), ops()), min_size=3, max_size=12),
)
def test_two_replicas_every_op_concurrent(seed: int, rounds: list[tuple[Op, Op]]) -> None:
    """Each round both replicas edit before hearing of the other: maximal concurrency."""
    run = Run(2, seed, Faults(0.2, 0.2, 0.3, 0.5, 0.5))
    for op_a, op_b in rounds:
        run.play(Edit(0, op_a))
        run.play(Edit(1, op_b))
        run.net.broadcast_all()
        run.net.deliver_some()
    run.finish(seed)


# -- state machine --------------------------------------------------------


class ThreeReplicas(RuleBasedStateMachine):
    """Three replicas on a faulty network; invariants hold after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = SimulatedNetwork(new_docs(3), 0)
        self.created = 0
        self.snapshots: list[Any] = [doc.to_json() for doc in self.net.replicas]
        self.counts = [0, 0, 0]
        self.may_change: frozenset[int] = frozenset()
        self.history: list[dict[gether.Version, Any]] = [{}, {}, {}]

    @initialize(seed=st.integers(0, 2**32))
    def seeded(self, seed: int) -> None:
        self.net = SimulatedNetwork(new_docs(3), seed, drop=0.2, duplicate=0.2, split=0.3)

    @rule(replica=st.integers(0, 2), op=ops())
    def edit(self, replica: int, op: Op) -> None:
        self.created += apply_counted(self.net[replica], op)
        self.may_change = frozenset({replica})

    @rule(replica=st.integers(0, 2), op=ops())
    def edit_and_broadcast(self, replica: int, op: Op) -> None:
        self.edit(replica, op)
        self.net.broadcast(replica)

    @rule(replica=st.integers(0, 2))
    def broadcast(self, replica: int) -> None:
        self.net.broadcast(replica)
        self.may_change = frozenset()

    @rule()
    def deliver(self) -> None:
        self.net.deliver_some()
        self.may_change = self.net.last_recipients

    @rule(alone=st.integers(0, 2))
    def partition(self, alone: int) -> None:
        self.net.partition([[alone], [i for i in range(3) if i != alone]])
        self.may_change = frozenset()

    @rule()
    def heal(self) -> None:
        self.net.heal()
        self.may_change = frozenset()

    @rule(a=st.integers(0, 2), b=st.integers(0, 2))
    def direct_sync(self, a: int, b: int) -> None:
        if a != b:
            source, target = self.net[a], self.net[b]
            target.apply_events([e.to_bytes() for e in source.events_since(target.version)])
        self.may_change = frozenset({b})

    @rule(replica=st.integers(0, 2))
    def save_load(self, replica: int) -> None:
        doc = self.net[replica]
        self.net.replace(
            replica, gether.Document.load(doc.save(), replica_id=doc.replica_id, key=doc.key)
        )
        self.may_change = frozenset()

    @rule(replica=st.integers(0, 2), pick=st.integers(0, 1000))
    def time_travel(self, replica: int, pick: int) -> None:
        """A past version of a replica reads as the replica did back then."""
        past = list(self.history[replica].items())
        if past:
            version, json = past[pick % len(past)]
            assert self.net[replica].at(version).to_json() == json
        self.may_change = frozenset()

    @rule()
    def settle(self) -> None:
        self.net.settle()
        check_converged(self.net.replicas, self.created, random.Random(self.created))
        self.may_change = frozenset(range(3))

    @invariant()
    def only_own_ops_or_deliveries_change_a_replica(self) -> None:
        for i, doc in enumerate(self.net.replicas):
            now = doc.to_json()
            if i not in self.may_change:
                assert now == self.snapshots[i], f"replica {i} changed on its own"
            self.snapshots[i] = now
            self.history[i].setdefault(doc.version, now)

    @invariant()
    def event_counts_only_grow(self) -> None:
        for i, doc in enumerate(self.net.replicas):
            assert doc.event_count >= self.counts[i]
            self.counts[i] = doc.event_count

    @invariant()
    def structures_are_consistent(self) -> None:
        for doc in self.net.replicas:
            check_structures(doc)

    def teardown(self) -> None:
        self.net.settle()
        check_converged(self.net.replicas, self.created, random.Random(0))


ThreeReplicas.TestCase.settings = settings(max_examples=BASE, stateful_step_count=40)
TestThreeReplicas = ThreeReplicas.TestCase


# -- targeted behaviours --------------------------------------------------


def test_concurrent_inserts_at_one_spot_do_not_interleave() -> None:
    for typed_char_by_char in (False, True):
        r1, r2 = new_docs(2)
        r1.text("t").insert(0, "[]")
        sync(r1, r2)
        if typed_char_by_char:
            for i, c in enumerate("abc"):
                r1.text("t").insert(1 + i, c)
            for i, c in enumerate("xyz"):
                r2.text("t").insert(1 + i, c)
        else:
            r1.text("t").insert(1, "abc")
            r2.text("t").insert(1, "xyz")
        sync(r1, r2)
        assert str(r1.text("t")) == str(r2.text("t"))
        assert str(r1.text("t")) in ("[abcxyz]", "[xyzabc]")


_MAKERS: list[Callable[[], Any]] = [
    lambda: [1, 2],
    lambda: {"a": 1},
    lambda: gether.Text("hi"),
    lambda: gether.Counter(3),
    lambda: "plain",
    lambda: None,
]


def test_concurrent_container_creation_at_one_key_converges() -> None:
    for i, left in enumerate(_MAKERS):
        for right in _MAKERS[i:]:
            r1, r2 = new_docs(2)
            r1["k"] = left()
            r2["k"] = right()
            sync(r1, r2)
            assert r1.to_json() == r2.to_json()
            assert r1.version == r2.version
            # and edits inside the winner still merge afterwards
            sync(r1, r2)


def test_named_containers_created_concurrently_keep_both_sides() -> None:
    r1, r2 = new_docs(2)
    r1.text("notes").insert(0, "abc")
    r2.text("notes").insert(0, "xyz")
    r1.list("items").append(1)
    r2.list("items").append(2)
    r1.map("settings")["a"] = 1
    r2.map("settings")["b"] = 2
    r1.counter("likes").increment(2)
    r2.counter("likes").increment(3)
    sync(r1, r2)
    assert r1.to_json() == r2.to_json()
    assert str(r1.text("notes")) in ("abcxyz", "xyzabc")
    assert sorted(r1.list("items")) == [1, 2]
    assert dict(r1.map("settings")) == {"a": 1, "b": 2}
    assert r1.counter("likes").value == 5


def _list_with(items: list[str]) -> tuple[gether.Document, gether.Document]:
    r1, r2 = new_docs(2)
    lst = r1.list("l")
    for item in items:
        lst.append(item)
    sync(r1, r2)
    return r1, r2


def test_concurrent_moves_of_one_item_do_not_duplicate_it() -> None:
    for dst1 in range(4):
        for dst2 in range(4):
            r1, r2 = _list_with(["a", "b", "c", "d"])
            r1.list("l").move(0, dst1)
            r2.list("l").move(0, dst2)
            sync(r1, r2)
            assert r1.to_json() == r2.to_json()
            result = list(r1.list("l"))
            assert sorted(result) == ["a", "b", "c", "d"], (dst1, dst2, result)


def test_move_matches_pop_then_insert() -> None:
    for src in range(4):
        for dst in range(4):
            (r1, _) = _list_with(["a", "b", "c", "d"])
            expected = ["a", "b", "c", "d"]
            expected.insert(dst, expected.pop(src))
            r1.list("l").move(src, dst)
            assert list(r1.list("l")) == expected, (src, dst)


def test_concurrent_delete_and_move_converge_without_duplicates() -> None:
    for dst in range(4):
        r1, r2 = _list_with(["a", "b", "c", "d"])
        del r1.list("l")[0]
        r2.list("l").move(0, dst)
        sync(r1, r2)
        assert r1.to_json() == r2.to_json()
        result = list(r1.list("l"))
        assert len(result) == len(set(result))
        assert {"b", "c", "d"} <= set(result) <= {"a", "b", "c", "d"}


def test_edits_inside_an_item_follow_a_concurrent_move() -> None:
    r1, r2 = new_docs(2)
    r1["todos"] = [{"text": gether.Text(name), "done": False} for name in ("milk", "eggs", "jam")]
    sync(r1, r2)
    r1["todos"].move(0, 2)
    r2["todos"][0]["done"] = True
    r2["todos"][0]["text"].insert(4, "!")
    sync(r1, r2)
    assert r1.to_json() == r2.to_json()
    assert r1.to_json()["todos"] == [
        {"text": "eggs", "done": False},
        {"text": "jam", "done": False},
        {"text": "milk!", "done": True},
    ]


def test_concurrent_moves_of_different_items_keep_every_item() -> None:
    r1, r2 = _list_with(["a", "b", "c", "d", "e"])
    r1.list("l").move(0, 4)
    r2.list("l").move(4, 0)
    sync(r1, r2)
    assert r1.to_json() == r2.to_json()
    assert sorted(r1.list("l")) == ["a", "b", "c", "d", "e"]


def test_counter_increments_from_every_replica_all_count() -> None:
    docs = new_docs(5)
    net = SimulatedNetwork(docs, seed=7, drop=0.3, duplicate=0.3)
    expected = 0
    for round_ in range(4):
        for i, doc in enumerate(net.replicas):
            counter = doc.counter("hits")
            if (i + round_) % 3 == 0:
                counter.decrement(i + 1)
                expected -= i + 1
            else:
                counter.increment(i + 1)
                expected += i + 1
            net.broadcast(i)
        net.deliver_some()
    net.settle()
    assert {doc.counter("hits").value for doc in net.replicas} == {expected}


def test_aborted_transaction_rolls_back_everything() -> None:
    (doc,) = new_docs(1)
    doc["a"] = 1
    doc.text("t").insert(0, "hello")
    before_json, before_version = doc.to_json(), doc.version
    try:
        with doc.transaction():
            doc["a"] = 2
            doc.text("t").insert(5, " world")
            doc["new"] = [1, {"x": gether.Text("y")}]
            raise KeyError("abort")
    except KeyError:
        pass
    assert doc.to_json() == before_json
    assert doc.version == before_version


def test_transaction_is_one_event() -> None:
    r1, r2 = new_docs(2)
    with r1.transaction():
        r1["a"] = 1
        r1.text("t").insert(0, "xy")
        r1.list("l").append({"done": False})
    assert r1.event_count == 1
    sync(r1, r2)
    assert r2.to_json() == r1.to_json()


def test_time_travel_reads_old_versions() -> None:
    (doc,) = new_docs(1)
    doc.text("t").insert(0, "one")
    v1, json1 = doc.version, doc.to_json()
    doc.text("t").insert(3, " two")
    doc["n"] = 5
    assert doc.at(v1).to_json() == json1
    assert doc.at(doc.version).to_json() == doc.to_json()
