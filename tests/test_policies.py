"""Sets and merge policies: what each promises under concurrency.

Each variant of set and each field policy is pinned by the case that tells it
apart (an add racing a remove, two first writes racing), and a property test
drives replicas with the same policies through random concurrent writes to
policy fields over a network that reorders and duplicates: they must agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.document import Document as CoreDocument
from gether.core.ops import SET_REMOVE
from gether.merges import registered
from gether.testing.network import SimulatedNetwork


@dataclass
class Node:
    """A hand-made schema node: what the policies read of a compiled schema."""

    policy: str = "lww"
    children: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None

    def child(self, key: str | int) -> Node | None:
        if isinstance(key, int):
            return self.items
        return self.children.get(key)


def _max(values: list[Any]) -> Any:
    return max(values)


gether.register_merge("test-max", _max)

SCHEMA = Node(
    children={
        "score": Node("counter"),
        "title": Node("text"),
        "tags": Node("union"),
        "seen": Node("union:g"),
        "banned": Node("union:2p"),
        "flags": Node("union:lww"),
        "status": Node("mvr"),
        "high": Node("custom:test-max"),
        "todos": Node(items=Node(children={"votes": Node("counter"), "who": Node("union")})),
    }
)


def replica(name: str) -> gether.Document:
    doc = gether.Document(name)
    doc._set_policies(SCHEMA, registered)
    return doc


def exchange(*docs: gether.Document) -> None:
    for a in docs:
        for b in docs:
            if a is not b:
                b.apply_events([e.to_bytes() for e in a.events_since(b.version)])


# -- sets ---------------------------------------------------------------------


def two_with_set(variant: str, items: list[Any]) -> tuple[gether.Document, gether.Document]:
    a = gether.Document("a")
    a["s"] = gether.Set(items, variant)
    return a, a.fork("b")


def test_or_set_add_wins_over_concurrent_remove() -> None:
    a, b = two_with_set("or", ["x", "y"])
    a["s"].remove("x")
    b["s"].add("x")  # already there: still an add, which wins
    b["s"].discard("y")
    exchange(a, b)
    assert a.to_json() == b.to_json() == {"s": ["x"]}


def test_lww_set_latest_write_wins() -> None:
    a, b = two_with_set("lww", ["x"])
    b["s"].add("x")
    a["s"].add("z")
    a["s"].remove("x")  # a's clock ran further than b's: a later stamp
    exchange(a, b)
    assert a["s"].to_json() == b["s"].to_json() == ["z"]


def test_two_phase_set_removes_for_good() -> None:
    a, b = two_with_set("2p", ["x"])
    a["s"].remove("x")
    b["s"].add("x")
    exchange(a, b)
    assert a.to_json() == b.to_json() == {"s": []}
    with pytest.raises(gether.UsageError, match="for good"):
        a["s"].add("x")


def test_grow_only_set_refuses_removes_locally_and_remotely() -> None:
    a, b = two_with_set("g", ["x"])
    with pytest.raises(gether.UsageError, match="grow-only"):
        a["s"].remove("x")
    # a forged remove from b (bypassing the local refusal) is rejected whole
    state = b._set_state(b["s"].container_id)
    with b.transaction():
        b._set_write(state, "x", SET_REMOVE)
    before = a.to_json()
    with pytest.raises(gether.RejectedEventsError):
        a.apply_events(b.events_since(a.version))
    assert a.to_json() == before == {"s": ["x"]}


def test_set_keeps_json_types_apart_and_renders_in_order() -> None:
    doc = gether.Document("a")
    tags = doc.set("tags")
    for value in ["b", 2, 1.0, 1, True, None, "a", False]:
        tags.add(value)
    assert doc.to_json()["tags"] == [None, False, True, 1, 1.0, 2, "a", "b"]
    assert 1 in tags and 1.0 in tags and "c" not in tags and [] not in tags
    assert tags.variant == "or" and len(tags) == 8
    tags -= {1}
    assert doc["tags"].to_json() == [None, False, True, 1.0, 2, "a", "b"]


def test_sets_save_and_load() -> None:
    a, b = two_with_set("2p", ["x", "y", 3])
    a["s"].remove("y")
    exchange(a, b)
    loaded = gether.Document.load(a.save())
    assert loaded.to_json() == a.to_json() == {"s": [3, "x"]}
    with pytest.raises(gether.UsageError):
        loaded["s"].add("y")
    assert loaded["s"].variant == "2p"


def test_set_elements_are_scalars() -> None:
    doc = gether.Document("a")
    with pytest.raises(gether.InvalidValueError):
        doc.set("s").add(["no"])  # type: ignore[arg-type]
    with pytest.raises(gether.InvalidValueError):
        doc.set("s").add(float("nan"))
    with pytest.raises(gether.UsageError):
        gether.Set([], "nope")


# -- field policies -------------------------------------------------------------


def test_counter_text_and_union_fields_share_one_container_when_created_concurrently() -> None:
    a, b = replica("a"), replica("b")
    a["score"] = 3
    b["score"] = 5
    a["title"] = "Hello"
    b["title"] = "World"
    a["tags"] = ["x"]
    b["tags"] = ["y"]
    exchange(a, b)
    assert a.to_json() == b.to_json()
    assert a.get("score") == 8  # both writes count, as increments from 0
    assert sorted(a.get("title")) == sorted("HelloWorld")  # both edits survive
    assert a.get("tags") == ["x", "y"]
    assert isinstance(a["score"], gether.CounterProxy)
    assert isinstance(a["title"], gether.TextProxy)
    assert isinstance(a["tags"], gether.SetProxy)


def test_assigning_a_policy_field_edits_it_by_the_difference() -> None:
    a = replica("a")
    a["score"] = 10
    b = a.fork("b")
    a["score"] = 12  # +2
    b["score"] = 7  # -3
    a["title"] = "abc"
    exchange(a, b)
    b["title"] = "abXc"
    a["title"] = "zabc"
    exchange(a, b)
    assert a.get("score") == b.get("score") == 9
    assert a.get("title") == b.get("title") == "zabXc"


def test_policy_fields_inside_list_items() -> None:
    a = replica("a")
    a["todos"] = [{"votes": 1, "who": ["ann"]}]
    b = a.fork("b")
    a["todos"][0]["votes"] = 2
    b["todos"][0]["votes"] = 3
    b["todos"][0]["who"] = ["ann", "bob"]
    a.apply_update("todos/0/who", ["cid"])  # removes ann, adds cid
    exchange(a, b)
    assert a.to_json() == b.to_json()
    assert a.get("todos/0/votes") == 4
    assert a.get("todos/0/who") == ["bob", "cid"]


def test_mvr_keeps_concurrent_values_until_overwritten() -> None:
    a, b = replica("a"), replica("b")
    a["status"] = "draft"
    b["status"] = "final"
    exchange(a, b)
    assert a.get("status") == b.get("status")
    assert sorted(a.conflicts("status")) == ["draft", "final"]
    assert a.conflicts("status") == b.conflicts("status")
    assert a.conflicts("status")[0] == a.get("status")
    a["status"] = "done"
    exchange(a, b)
    assert b.conflicts("status") == ["done"]
    assert a.conflicts("nothing") == []


def test_custom_merge_reads_concurrent_values() -> None:
    a, b, c = replica("a"), replica("b"), replica("c")
    a["high"], b["high"], c["high"] = 7, 42, 3
    exchange(a, b, c)
    assert a.get("high") == b.get("high") == c.get("high") == 42
    assert a.to_json() == c.to_json()
    c["high"] = 1  # a write that saw them all replaces them
    exchange(a, b, c)
    assert a.get("high") == 1


def test_register_merge_refuses_order_dependent_functions() -> None:
    with pytest.raises(gether.UsageError, match="order"):
        gether.register_merge("first", lambda values: values[0])
    with pytest.raises(gether.UsageError, match="already registered"):
        gether.register_merge("test-max", min)
    gether.register_merge("test-max", _max)  # the same one again is fine


def test_policy_state_survives_save_and_load() -> None:
    a = replica("a")
    a["todos"] = [{"votes": 1}]
    data = a.save()
    loaded = CoreDocument.load(data, "a", a.key)
    loaded._set_policies(SCHEMA, registered)
    loaded.apply_update("todos/0/votes", 5)
    assert loaded.get("todos/0/votes") == 5
    assert isinstance(loaded["todos"][0]["votes"], gether.CounterProxy)


def test_policies_never_change_how_events_integrate() -> None:
    """A replica without the schema (a server) reaches the same state."""
    a, b = replica("a"), replica("b")
    a["score"], b["score"] = 1, 2
    a["tags"], b["tags"] = ["x"], ["y"]
    plain = gether.Document("server")
    exchange(a, b)
    plain.apply_events(a.events_since(None))
    assert plain.get("score") == 3 and plain.get("tags") == ["x", "y"]


# -- convergence ------------------------------------------------------------------

FIELDS = ["score", "title", "tags", "seen", "banned", "flags", "status", "high"]
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "score": st.integers(-20, 20),
    "title": st.text("ab😀 ", max_size=5),
    "tags": st.lists(st.sampled_from(["x", "y", 1, True]), max_size=3),
    "seen": st.lists(st.sampled_from(["x", "y", 1]), max_size=3),
    "banned": st.lists(st.sampled_from(["x", "y", 1]), max_size=3),
    "flags": st.lists(st.sampled_from(["x", "y", None]), max_size=3),
    "status": st.sampled_from(["draft", "final", "done"]),
    "high": st.integers(0, 100),
}
WRITES = st.one_of(
    *[st.tuples(st.just(f), strategy) for f, strategy in FIELD_VALUES.items()],
    st.tuples(st.just("todos"), st.lists(st.fixed_dictionaries({"votes": st.integers(0, 5)}))),
    st.tuples(st.just("vote"), st.integers(-3, 3)),
    st.tuples(st.just("delete"), st.sampled_from(FIELDS)),
)


def write(doc: gether.Document, what: tuple[str, Any]) -> None:
    name, value = what
    try:
        if name == "vote":
            if doc.get("todos/0/votes") is not None:
                doc["todos"][0]["votes"].increment(value)
        elif name == "delete":
            if name in doc:
                del doc[value]
        else:
            doc[name] = value
    except gether.UsageError:
        pass  # e.g. removing from a grow-only set, re-adding to a two-phase one


@settings(max_examples=max(50, settings().max_examples // 2))
@given(
    n=st.integers(2, 4),
    steps=st.lists(st.tuples(st.integers(0, 3), WRITES), min_size=1, max_size=25),
    seed=st.integers(0, 2**32 - 1),
)
def test_replicas_with_policies_converge(
    n: int, steps: list[tuple[int, tuple[str, Any]]], seed: int
) -> None:
    rng = random.Random(seed)
    docs = [replica(f"r{i}") for i in range(n)]
    net = SimulatedNetwork(docs, seed=seed)
    for who, what in steps:
        write(docs[who % n], what)
        net.broadcast(who % n)
        if rng.random() < 0.3:
            net.deliver_some()
    net.settle()
    first = docs[0].to_json()
    for doc in docs:
        assert doc.to_json() == first
        assert doc.version == docs[0].version
        for name in FIELDS:
            assert doc.conflicts(name) == docs[0].conflicts(name)
    # a replica rebuilt from the history in another order agrees
    history = docs[rng.randrange(n)].events_since(None)
    rng.shuffle(history)
    fresh = replica("fresh")
    fresh.apply_events(history)
    assert fresh.to_json() == first


def test_named_containers_are_placed_by_their_name_not_by_links() -> None:
    """A link of a named map inside itself (forged: no honest edit makes one)
    neither loops nor moves it: every replica reads the place from the name."""
    from gether.core.ids import named_container
    from gether.core.policy import derived_name, named_place
    from gether.core.values import Kind, NamedRef

    rogue = gether.Document("rogue")
    inner = rogue.map("m")
    state = rogue._state.containers[inner.container_id]
    with rogue.transaction():
        rogue._map_write(state, "k", NamedRef("m", Kind.MAP))  # type: ignore[arg-type]
    a = replica("a")
    a.apply_events(rogue.events_since(None))
    m = named_container("m", Kind.MAP)
    assert a._state.parent_of(m) == (gether.core.ids.ROOT, "m")
    assert a._node_of(m) is None  # the schema has no "m": no loop, no node
    # (a top-level name holding "/" reads as a nested place: documented)
    for parent, key in [
        (gether.core.ids.ROOT, "ab"),
        (named_container("x@1", Kind.MAP), "k/~@"),
        (("r.1", 7), "votes"),
    ]:
        assert named_place(derived_name(parent, key)) == (parent, key)
