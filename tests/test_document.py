"""The document API of API.md: proxies, paths, transactions, history."""

from __future__ import annotations

import math

import pytest

import gether


def doc(name: str = "a") -> gether.Document:
    return gether.Document(replica_id=name)


def sync(*docs: gether.Document) -> None:
    for a in docs:
        for b in docs:
            if a is not b:
                b.merge(a)


def test_api_md_walkthrough() -> None:
    d = gether.Document(replica_id="alice")
    d["title"] = "Groceries"
    d["todos"] = [{"text": "milk", "done": False}]
    d["notes"] = gether.Text("hello")
    d["likes"] = gether.Counter()
    d["tags"] = ["x"]
    notes = d["notes"]
    notes.insert(5, " world")
    notes.delete(0, 1)
    assert str(notes) == "ello world" and len(notes) == 10
    notes[0:4] = "Hi"
    assert str(notes) == "Hi world"
    todos = d["todos"]
    todos.append({"text": "eggs", "done": False})
    todos.insert(0, {"text": "jam", "done": True})
    del todos[1]
    todos.move(0, 1)
    todos[0]["done"] = True
    d["likes"].increment(2)
    assert d["likes"].value == 2
    d.apply_update("todos/0/done", False)
    d.apply_update(("todos", 1, "text"), "bread")
    assert d.get("todos/0/text") == "eggs"
    assert d.get("todos/9/text", "none") == "none"
    assert d.to_json() == {
        "title": "Groceries",
        "todos": [{"text": "eggs", "done": False}, {"text": "bread", "done": True}],
        "notes": "Hi world",
        "likes": 2,
        "tags": ["x"],
    }


def test_transaction_is_one_event_and_rolls_back() -> None:
    d = doc()
    d["n"] = 1
    count = d.event_count
    with d.transaction():
        d["n"] = 2
        d.text("t").insert(0, "abc")
        d.list("l").extend([1, 2])
    assert d.event_count == count + 1
    before = d.to_json()
    with pytest.raises(ZeroDivisionError), d.transaction():
        d["n"] = 3
        d.text("t").insert(1, "zzz")
        del d.list("l")[0]
        _ = 1 / 0
    assert d.to_json() == before
    assert d.event_count == count + 1
    d.text("t").insert(0, "!")  # still usable, counters consistent
    other = doc("b")
    other.merge(d)
    assert other.to_json() == d.to_json()


def test_bad_values_change_nothing() -> None:
    d = doc()
    d["x"] = {"a": [1, 2]}
    before = (d.to_json(), d.version)
    for bad in (math.nan, math.inf, 2**63, -(2**63) - 1, "\ud800", {"k": object()}, {1: 2}):
        with pytest.raises(gether.InvalidValueError):
            d["y"] = bad
        with pytest.raises(gether.InvalidValueError):
            d["x"]["a"].append({"deep": [bad]})
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(gether.InvalidValueError):
        d["deep"] = deep
    assert (d.to_json(), d.version) == before


def test_ranges_and_types_are_checked() -> None:
    d = doc()
    t = d.text("t")
    t.insert(0, "abc")
    with pytest.raises(gether.OutOfRangeError):
        t.insert(4, "x")
    with pytest.raises(IndexError):
        t.delete(2, 5)
    lst = d.list("l")
    with pytest.raises(IndexError):
        lst[0] = 1
    with pytest.raises(gether.OutOfRangeError):
        lst.move(0, 0)
    with pytest.raises(KeyError):
        del d["missing"]
    with pytest.raises(gether.InvalidPathError):
        d.apply_update("l/0/x", 1)
    d["s"] = "scalar"
    with pytest.raises(gether.InvalidPathError):
        d.apply_update("s/x", 1)
    assert str(t) == "abc"


def test_unicode_positions_are_code_points() -> None:
    d = doc()
    t = d.text("t")
    t.insert(0, "a😀b")
    assert len(t) == 3
    t.insert(2, "é")
    t.delete(1, 1)
    assert str(t) == "aéb"


def test_named_containers_created_concurrently_keep_both_sides() -> None:
    a, b = doc("a"), doc("b")
    a.text("notes").insert(0, "from a. ")
    b.text("notes").insert(0, "from b. ")
    a.counter("likes").increment(1)
    b.counter("likes").increment(2)
    a.list("todos").append("a")
    b.list("todos").append("b")
    sync(a, b)
    assert a.to_json() == b.to_json()
    assert sorted(str(a.text("notes")).split(". ")) == ["", "from a", "from b"]
    assert a["likes"].value == 3
    assert sorted(a.list("todos")) == ["a", "b"]


def test_concurrent_container_creation_at_same_key_converges() -> None:
    a, b = doc("a"), doc("b")
    a["cfg"] = {"x": 1}
    b["cfg"] = {"y": 2}
    a["cfg"]["x2"] = 3
    sync(a, b)
    assert a.to_json() == b.to_json()
    assert a.to_json()["cfg"] in ({"x": 1, "x2": 3}, {"y": 2})


def test_lww_is_highest_clock_then_replica() -> None:
    clock_a = iter(range(1000, 2000))
    a = gether.Document(replica_id="a", clock=lambda: next(clock_a))
    b = gether.Document(replica_id="b", clock=lambda: 10)
    a["k"] = "a"
    b["k"] = "b"
    sync(a, b)
    assert a["k"] == b["k"] == "a"  # later wall clock wins
    b["k"] = "b2"  # b has seen a's write: its clock moved past it
    sync(a, b)
    assert a["k"] == "b2"


def test_move_keeps_identity_and_concurrent_moves_do_not_duplicate() -> None:
    a = doc("a")
    a["l"] = ["x", "y", "z"]
    b = a.fork()
    a["l"].move(0, 2)
    b["l"].move(0, 1)
    b["l"][1] = "X"
    sync(a, b)
    assert a.to_json() == b.to_json()
    assert sorted(a["l"].to_json()) == ["X", "y", "z"]


def test_concurrent_delete_and_move() -> None:
    a = doc("a")
    a["l"] = [1, 2, 3]
    b = a.fork()
    del a["l"][0]
    b["l"].move(0, 2)
    sync(a, b)
    assert a["l"].to_json() == b["l"].to_json() == [2, 3]


def test_replacing_a_subtree_hides_concurrent_edits_inside_it() -> None:
    a = doc("a")
    a["cfg"] = {"inner": {"v": 1}}
    b = a.fork()
    a["cfg"] = "gone"
    b["cfg"]["inner"]["v"] = 2
    sync(a, b)
    assert a.to_json() == b.to_json() == {"cfg": "gone"} or a.to_json() == b.to_json()


def test_at_version_is_read_only_history() -> None:
    d = doc()
    d.text("t").insert(0, "one")
    v1 = d.version
    d.text("t").insert(3, " two")
    old = d.at(v1)
    assert str(old.text("t")) == "one"
    assert old.version == v1
    with pytest.raises(gether.ReadOnlyError):
        old.text("t").insert(0, "x")
    with pytest.raises(gether.UsageError):
        d.at(gether.Version({"nobody": 3}))


def test_fork_and_merge_are_git_like() -> None:
    d = doc()
    d["x"] = 1
    branch = d.fork()
    assert branch.replica_id != d.replica_id
    branch["y"] = 2
    d["z"] = 3
    assert "y" not in d
    d.merge(branch)
    assert d.to_json() == {"x": 1, "y": 2, "z": 3}


def test_events_since_is_what_the_other_lacks() -> None:
    a, b = doc("a"), doc("b")
    a["x"] = 1
    b.merge(a)
    a["y"] = 2
    a["z"] = 3
    assert [e.seq for e in a.events_since(b.version)] == [2, 3]
    assert a.events_since(a.version) == []


def test_version_is_hashable_and_ordered() -> None:
    a = doc()
    v0 = a.version
    a["x"] = 1
    assert v0 <= a.version and not a.version <= v0
    assert len({v0, a.version, gether.Version({"a": 1})}) == 2


def test_counter_total_may_pass_64_bits_and_still_saves() -> None:
    docs = [doc(r) for r in "abc"]
    for d in docs:
        d.counter("c").increment(2**63 - 1)
    sync(*docs)
    assert docs[0]["c"].value == 3 * (2**63 - 1)
    docs[0]["c"].decrement(2**63 - 1)
    loaded = gether.Document.load(docs[0].save())
    assert loaded["c"].value == 2 * (2**63 - 1)


def test_document_iterates_its_keys() -> None:
    d = doc()
    d["b"] = 1
    d["a"] = 2
    assert list(d) == ["a", "b"] and len(d) == 2


def test_transaction_deleting_what_it_inserted_syncs() -> None:
    a, b = doc("a"), doc("b")
    t = a.text("t")
    with a.transaction():
        t.insert(0, "x")
        t.insert(1, "y")
        t.insert(2, "z")
        t.delete(0, 3)
        t.insert(0, "ok")
    lst = a.list("l")
    with a.transaction():
        lst.append(1)
        lst.append(2)
        del lst[0:2]
    b.merge(a)
    assert b.to_json() == a.to_json() == {"l": [], "t": "ok"}
