"""``doc.on_change(path, callback)`` and the ``diff`` under it.

The main property: on every replica of a random concurrent session (2 to 4
replicas, edits of every type, events arriving late, duplicated, split and
reordered), a plain-JSON mirror updated only from the changes a listener
receives equals the document after every step, for a root listener and for
listeners on nested paths (whose value may appear and disappear). Around it:
``diff`` turns any value into any other, and unit tests of each kind of change
and each rule of delivery (one call per transaction and per received batch,
unsubscription, exceptions, callbacks that edit).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import gether
from gether import ChangeSet, Move, PathChange, Replace, Splice
from gether.core.changes import MISSING, Change
from gether.core.listeners import common_prefix, common_suffix, diff
from gether.errors import RejectedEventsError, UsageError
from gether.testing.network import SimulatedNetwork
from gether.testing.strategies import (
    CounterSpec,
    ListAppend,
    MapSet,
    Op,
    Target,
    TextInsert,
    TextSpec,
    apply_op,
    ops,
    primitives,
    texts,
)

BASE = settings().max_examples
"""Examples of the property tests (250 in the default ``ci`` profile)."""


# -- strict comparison, independent of the implementation's ``same`` --------------


def typed(value: Any) -> Any:
    """A form of a JSON value in which ``==`` is strict (types, the sign of zero),
    key order aside."""
    if isinstance(value, dict):
        return ("map", sorted((key, typed(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("list", [typed(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def apply_all(changes: list[Change], value: Any) -> Any:
    for change in changes:
        value = change.apply(value)
    return value


# -- random JSON --------------------------------------------------------------


def json_values(max_leaves: int = 16) -> st.SearchStrategy[Any]:
    """Any JSON, often strings, and often the scalars that only strict equality
    tells apart (``1``, ``1.0``, ``True``; ``0.0``, ``-0.0``)."""
    keys = st.one_of(st.sampled_from(["a", "b", "c"]), texts(1, 3))
    leaves = st.one_of(
        texts(0, 10), st.sampled_from([0, 0.0, -0.0, 1, 1.0, True, False, "", None]), primitives()
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


_CHARS = "ab 😀𝄞🇫🇷e\u0301"
_SCALARS = [0, 0.0, -0.0, 1, 1.0, True, False, None, 2.5, ""]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random() if depth else rng.random() * 0.35
    if depth < 3 and roll < 0.2:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if depth < 3 and roll < 0.35:
        return {rng.choice("abcd"): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if roll < 0.7:
        return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 6)))
    return rng.choice(_SCALARS)


def edited(value: Any, rng: random.Random) -> Any:
    """``value`` with one random edit somewhere inside (a new value; ``value`` is
    left as it was)."""
    if isinstance(value, dict) and value and rng.random() < 0.6:
        key = rng.choice(sorted(value))
        return {**value, key: edited(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.6:
        index = rng.randrange(len(value))
        return [*value[:index], edited(value[index], rng), *value[index + 1 :]]
    if rng.random() < 0.1:
        return random_value(rng)
    if isinstance(value, dict):
        out = dict(value)
        if out and rng.random() < 0.5:
            del out[rng.choice(sorted(out))]
        else:
            out[rng.choice("abcde")] = random_value(rng)
        return out
    if isinstance(value, list):
        items = list(value)
        what = rng.choice(["insert", "delete", "move", "set"]) if items else "insert"
        if what == "insert":
            items.insert(rng.randint(0, len(items)), random_value(rng))
        elif what == "delete":
            del items[rng.randrange(len(items))]
        elif what == "move":
            items.insert(rng.randint(0, len(items) - 1), items.pop(rng.randrange(len(items))))
        else:
            items[rng.randrange(len(items))] = random_value(rng)
        return items
    if isinstance(value, str):
        a = rng.randint(0, len(value))
        b = rng.randint(a, len(value))
        return value[:a] + "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 3))) + value[b:]
    return rng.choice(_SCALARS)


@st.composite
def json_pairs(draw: st.DrawFn) -> tuple[Any, Any]:
    """A value, and another: either any value, or the first with a few random edits."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    before = draw(json_values()) if draw(st.booleans()) else random_value(rng)
    if draw(st.integers(0, 4)) == 0:
        return before, draw(json_values())
    after = before
    for _ in range(draw(st.integers(1, 4))):
        after = edited(after, rng)
    return before, after


# -- diff: properties ---------------------------------------------------------


@settings(max_examples=max(BASE, 200))
@given(json_pairs())
def test_diff_turns_before_into_after(pair: tuple[Any, Any]) -> None:
    before, after = pair
    before_form, after_form = typed(before), typed(after)
    changes = diff(before, after)
    event(f"changes: {min(len(changes), 4)}")
    assert typed(apply_all(changes, before)) == after_form
    assert typed(ChangeSet(changes).invert().apply(after)) == before_form  # exact befores
    assert (changes == []) == (before_form == after_form)
    assert diff(before, before) == []
    assert typed(before) == before_form and typed(after) == after_form  # nothing mutated
    # the changes share nothing with ``after``: mutating what they insert leaves it alone
    result = apply_all(changes, before)
    for change in changes:
        _scribble(change)
    assert typed(after) == after_form
    assert typed(result) == after_form


def _scribble(change: Change) -> None:
    """Mutate every container a change inserts."""
    inserted: list[Any] = []
    while isinstance(change, PathChange):
        change = change.change
    if isinstance(change, Replace):
        inserted = [change.after]
    elif isinstance(change, Splice) and not change.on_text:
        inserted = list(change.after)
    for value in inserted:
        if isinstance(value, dict):
            value["scribbled"] = True
        elif isinstance(value, list):
            value.append("scribbled")


@settings(max_examples=max(BASE, 200))
@given(texts(0, 12), texts(0, 12), texts(0, 12))
def test_diff_of_strings_is_one_minimal_splice(a: str, b: str, c: str) -> None:
    for x, y in [(a, b), (a + b + c, a + c), (a + c, a + b + c), (a + b + c, a + c + c)]:
        changes = diff(x, y)
        assert apply_all(changes, x) == y
        if x == y:
            assert changes == []
            continue
        [splice] = changes
        assert isinstance(splice, Splice) and splice.on_text
        before, after = str(splice.before), str(splice.after)
        assert not (before and after and before[0] == after[0])  # the prefix is all shared
        assert not (before and after and before[-1] == after[-1])  # so is the suffix


@settings(max_examples=max(BASE, 200))
@given(
    st.one_of(
        st.lists(st.integers(0, 5), max_size=8),
        st.lists(st.integers(0, 20), min_size=2, max_size=8, unique=True),
    ),
    st.integers(0, 2**32),
    st.lists(st.sampled_from(["insert", "delete", "move", "set"]), min_size=1, max_size=3),
)
def test_diff_of_edited_lists(items: list[int], seed: int, edits: list[str]) -> None:
    rng = random.Random(seed)
    before: list[Any] = [[i] if i % 2 else i for i in items]  # repeats, and lists inside
    after = before
    for how in edits:
        after = list_edit(after, how, rng)
    changes = diff(before, after)
    assert typed(apply_all(changes, before)) == typed(after)
    assert typed(ChangeSet(changes).invert().apply(after)) == typed(before)
    moves = [c for c in changes if isinstance(c, Move)]
    event("moves: " + ("none" if not moves else "right" if moves[0].distance > 0 else "left"))
    if moves:
        assert changes == moves and len(moves) == 1
    distinct = len(set(map(repr, before))) == len(before)
    if edits == ["move"] and before and distinct and after != before:
        assert len(moves) == 1  # one element moved: one Move, whatever the distance


def list_edit(items: list[Any], how: str, rng: random.Random) -> list[Any]:
    out = list(items)
    if how == "insert" or not out:
        out.insert(rng.randint(0, len(out)), rng.choice([0, 1, [1], "x"]))
    elif how == "delete":
        del out[rng.randrange(len(out))]
    elif how == "move":
        out.insert(rng.randrange(len(out)), out.pop(rng.randrange(len(out))))
    else:
        out[rng.randrange(len(out))] = rng.choice([0, 1.0, True, [1], ["x"]])
    return out


@settings(max_examples=max(BASE, 200))
@given(texts(0, 12), texts(0, 12), texts(0, 6))
def test_common_prefix_and_suffix(a: str, b: str, middle: str) -> None:
    for x, y in [(a, b), (a + middle + b, a + b), (a + b, a + middle + b), (a, a)]:
        p = common_prefix(x, y)
        assert x[:p] == y[:p] and (p == min(len(x), len(y)) or x[p] != y[p])
        limit = min(len(x), len(y)) - p
        s = common_suffix(x, y, limit)
        assert s <= limit
        assert x[len(x) - s :] == y[len(y) - s :]
        assert s == limit or x[len(x) - s - 1] != y[len(y) - s - 1]


# -- diff: each kind -------------------------------------------------------------


def test_diff_of_maps() -> None:
    before = {"keep": 1, "gone": [1], "changed": "abc", "typed": 1}
    after = {"keep": 1, "changed": "abXc", "typed": True, "new": {"x": None}}
    assert diff(before, after) == [
        PathChange(("gone",), Replace([1], MISSING)),
        PathChange(("changed",), Splice(2, "", "X")),
        PathChange(("typed",), Replace(1, True)),
        PathChange(("new",), Replace(MISSING, {"x": None})),
    ]


def test_diff_of_strings_counts_code_points() -> None:
    assert diff("a😀b", "a😀c𝄞b") == [Splice(2, "", "c𝄞")]
    assert diff("😀🎉😀", "😀😀") == [Splice(1, "🎉", "")]
    assert diff("aa", "aaa") == [Splice(2, "", "a")]
    assert diff("abc", "xyz") == [Splice(0, "abc", "xyz")]
    assert diff("", "👩‍👩‍👧") == [Splice(0, "", "👩‍👩‍👧")]
    long = "x" * 10_000
    assert diff(long + "a" + long, long + "b" + long) == [Splice(10_000, "a", "b")]


def test_diff_of_lists() -> None:
    # one length: index by index, inside the elements
    assert diff([1, {"a": "xy"}, 3], [1, {"a": "xz"}, 4]) == [
        PathChange((1, "a"), Splice(1, "y", "z")),
        PathChange((2,), Replace(3, 4)),
    ]
    # other lengths: one splice between the common ends
    assert diff([1, 2, 3, 4], [1, 9, 4]) == [Splice(1, (2, 3), (9,))]
    assert diff([1, 2], [1, 2, 3]) == [Splice(2, (), (3,))]
    assert diff([1, 1], [1]) == [Splice(1, (1,), ())]
    assert diff([], [[]]) == [Splice(0, (), ([],))]


def test_diff_of_a_moved_element_is_a_move() -> None:
    assert diff(["a", "b", "c", "d"], ["b", "c", "a", "d"]) == [Move(0, 1, 2)]
    assert diff(["a", "b", "c", "d"], ["a", "d", "b", "c"]) == [Move(3, 1, -2)]
    assert diff([{"k": 1}, 2], [2, {"k": 1}]) == [Move(0, 1, 1)]
    # a swap of two blocks is no single move: index by index
    assert diff([1, 2, 3, 4], [3, 4, 1, 2]) == [
        PathChange((i,), Replace(i + 1, (i + 2) % 4 + 1)) for i in range(4)
    ]


def test_every_single_move_is_one_move() -> None:
    for n in range(1, 9):
        for i in range(n):
            for j in range(n):
                before: list[Any] = [[k] for k in range(n)]
                after = list(before)
                after.insert(j, after.pop(i))
                changes = diff(before, after)
                assert apply_all(changes, before) == after
                if i == j:
                    assert changes == []
                elif abs(i - j) == 1:  # a swap: the left one moves right
                    assert changes == [Move(min(i, j), 1, 1)]
                else:
                    assert changes == [Move(i, 1, j - i)]


def test_diff_of_nested_values() -> None:
    before = {"todos": [{"text": "milk", "done": False}, {"text": "eggs", "done": False}]}
    after = {"todos": [{"text": "oat milk", "done": True}, {"text": "eggs", "done": False}]}
    assert diff(before, after) == [
        PathChange(("todos", 0, "text"), Splice(0, "", "oat ")),
        PathChange(("todos", 0, "done"), Replace(False, True)),
    ]


def test_diff_is_strict_about_types() -> None:
    assert diff(1, True) == [Replace(1, True)]
    assert diff(1, 1.0) == [Replace(1, 1.0)]
    assert diff(0.0, -0.0) == [Replace(0.0, -0.0)]
    assert diff([0, 1], [False, 1]) == [PathChange((0,), Replace(0, False))]
    assert diff([0, 1, 2], [0, True]) == [Splice(1, (1, 2), (True,))]
    assert diff({"a": [1]}, {"a": [1.0]}) == [PathChange(("a", 0), Replace(1, 1.0))]
    assert diff("1", 1) == [Replace("1", 1)]
    assert diff({}, []) == [Replace({}, [])]
    assert diff(None, None) == [] and diff(math.pi, math.pi) == []


def test_diff_with_missing() -> None:
    assert diff(MISSING, MISSING) == []
    assert diff(MISSING, {"a": 1}) == [Replace(MISSING, {"a": 1})]
    assert diff("x", MISSING) == [Replace("x", MISSING)]
    assert Replace(MISSING, 3).apply(MISSING) == 3


# -- on_change: the mirror property ---------------------------------------------------


PATHS: list[str | tuple[str | int, ...]] = [
    "",
    "todos",
    "todos/0",
    "todos/0/text",
    ("todos", 1, "done"),
    "b",
    "b/t",
    "b/l",
    "b/l/0",
    "b/m",
    "b/c",
    "a",
    "T",
    "L",
    "L/0",
    "M",
    "C",
    "nothing/here",
]
"""Paths that the strategies' edits often create, change, replace and delete."""


@dataclass
class Mirror:
    """A copy of the value at ``path``, kept only from the changes received."""

    doc: gether.Document
    path: str | tuple[str | int, ...]
    value: Any = None
    calls: int = 0
    unsubscribe: Callable[[], None] = field(default=lambda: None)

    def __post_init__(self) -> None:
        self.value = self.doc.get(self.path, MISSING)
        self.unsubscribe = self.doc.on_change(self.path, self.received)

    def received(self, changes: list[Change]) -> None:
        assert changes and all(isinstance(c, Change) for c in changes)
        self.calls += 1
        for change in changes:
            self.value = change.apply(self.value)

    def check(self) -> None:
        assert typed(self.value) == typed(self.doc.get(self.path, MISSING)), self.path


@dataclass(frozen=True)
class Edit:
    replica: int
    op: Op


@dataclass(frozen=True)
class Send:
    replica: int


@dataclass(frozen=True)
class Deliver:
    everything: bool


@dataclass(frozen=True)
class Merge:
    """``doc.merge(other)``: one ``apply_events`` of everything it lacks."""

    target: int
    source: int


@dataclass(frozen=True)
class Rewatch:
    """Stop a nested listener and start one elsewhere, from the value there now."""

    replica: int
    path: str | tuple[str | int, ...]


def steps() -> st.SearchStrategy[Any]:
    replica = st.integers(0, 3)
    edit = st.builds(Edit, replica, ops())
    return st.one_of(
        edit,
        edit,
        edit,
        st.builds(Send, replica),
        st.builds(Deliver, st.booleans()),
        st.builds(Merge, replica, replica),
        st.builds(Rewatch, replica, st.sampled_from(PATHS)),
    )


DOC = Target(("doc",))
SHAPES = (
    MapSet(DOC, "todos", [{"text": TextSpec("milk 😀"), "done": False}, {"text": TextSpec("")}]),
    MapSet(DOC, "b", {"t": TextSpec("ab"), "l": [1, [2], "3"], "m": {"x": 1}, "c": CounterSpec(1)}),
    TextInsert(Target(("named", "text", "T")), 0, "hello"),
    ListAppend(Target(("named", "list", "L")), {"x": 1}),
    ListAppend(Target(("named", "list", "L")), "two"),
    ListAppend(Target(("named", "list", "L")), [3]),
    ListAppend(Target(("named", "list", "L")), TextSpec("four")),
)
"""Shapes that the edits of ``ops()`` often aim at."""


class Session:
    def __init__(self, n: int, seed: int, paths: list[Any], setup: str) -> None:
        self.docs = [gether.Document(replica_id=f"r{i}") for i in range(n)]
        self.net = SimulatedNetwork(
            self.docs, seed, drop=0.2, duplicate=0.2, split=0.3, reorder=0.5, delivery=0.5
        )
        if setup == "before":  # the nested paths exist when the listeners start
            self.setup()
        self.roots = [Mirror(doc, "") for doc in self.docs]
        self.nested = [[Mirror(doc, p) for p in paths] for doc in self.docs]
        if setup == "after":  # they appear under the listeners
            self.setup()

    def setup(self) -> None:
        first = self.docs[0]
        for op in SHAPES:
            apply_op(first, op)
        for doc in self.docs[1:]:
            doc.merge(first)

    def play(self, step: Any) -> None:
        n = len(self.docs)
        match step:
            case Edit(replica, op):
                doc, root = self.docs[replica % n], self.roots[replica % n]
                events, calls, before = doc.event_count, root.calls, doc.to_json()
                apply_op(doc, op)
                made, called = doc.event_count - events, root.calls - calls
                assert called <= made  # one call per transaction (per event) at most
                assert (called > 0) == (typed(doc.to_json()) != typed(before))
            case Send(replica):
                self.net.broadcast(replica % n)
            case Deliver(everything):
                if everything:
                    self.net.deliver_all()
                else:
                    self.net.deliver_some()
            case Merge(target, source):
                doc, root = self.docs[target % n], self.roots[target % n]
                calls, before = root.calls, doc.to_json()
                if doc is not self.docs[source % n]:
                    doc.merge(self.docs[source % n])
                changed = typed(doc.to_json()) != typed(before)
                assert root.calls - calls == (1 if changed else 0)  # one call per batch
            case Rewatch(replica, path):
                mirrors = self.nested[replica % n]
                mirrors.pop(0).unsubscribe()
                mirrors.append(Mirror(self.docs[replica % n], path))

    def check(self) -> None:
        for mirror in self.roots:
            mirror.check()
            assert mirror.value == mirror.doc.to_json()
        for mirrors in self.nested:
            for mirror in mirrors:
                mirror.check()


@settings(max_examples=max(BASE, 200))
@given(
    n=st.integers(2, 4),
    seed=st.integers(0, 2**32),
    paths=st.lists(st.sampled_from(PATHS), min_size=2, max_size=3),
    setup=st.sampled_from(["before", "after", "none"]),
    schedule=st.lists(steps(), min_size=10, max_size=50),
)
def test_mirrors_from_changes_equal_the_document(
    n: int, seed: int, paths: list[Any], setup: str, schedule: list[Any]
) -> None:
    session = Session(n, seed, paths, setup)
    for step in schedule:
        session.play(step)
        session.check()
    session.net.settle()
    session.check()
    assert all(d.to_json() == session.docs[0].to_json() for d in session.docs)
    event(f"root calls: {_bucket(sum(m.calls for m in session.roots))}")
    event(f"nested calls: {_bucket(sum(m.calls for ms in session.nested for m in ms))}")


def _bucket(count: int) -> str:
    return next(label for bound, label in _BUCKETS if count < bound)


_BUCKETS = [(1, "0"), (5, "1-4"), (20, "5-19"), (10**9, "20+")]


# -- on_change: delivery rules -----------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Change]] = []

    def __call__(self, changes: list[Change]) -> None:
        self.calls.append(changes)


def new_doc(name: str = "alice") -> gether.Document:
    return gether.Document(replica_id=name)


def test_a_transaction_is_one_call() -> None:
    doc = new_doc()
    doc["todos"] = [{"text": "milk", "done": False}]
    heard = Recorder()
    doc.on_change("", heard)
    with doc.transaction():
        doc["todos"][0]["done"] = True
        doc["todos"].append({"text": "eggs", "done": False})
        doc["title"] = "Groceries"
        assert heard.calls == []  # nothing before the commit
    assert len(heard.calls) == 1
    milk = {"text": "milk", "done": False}
    assert heard.calls[0] == [
        PathChange(
            ("todos",),
            Splice(0, (milk,), ({"text": "milk", "done": True}, {"text": "eggs", "done": False})),
        ),
        PathChange(("title",), Replace(MISSING, "Groceries")),
    ]
    assert apply_all(heard.calls[0], {"todos": [milk]}) == doc.to_json()
    doc["title"] = "Shopping"  # an edit outside a transaction: one call
    assert heard.calls[1] == [PathChange(("title",), Splice(0, "Groceries", "Shopping"))]


def test_unsubscribe() -> None:
    doc = new_doc()
    heard = Recorder()
    unsubscribe = doc.on_change("", heard)
    doc["a"] = 1
    unsubscribe()
    unsubscribe()  # twice is fine
    doc["a"] = 2
    assert heard.calls == [[PathChange(("a",), Replace(MISSING, 1))]]
    assert doc._listeners == []  # the document's hook is gone with the last listener
    again = Recorder()
    doc.on_change("a", again)
    doc["a"] = 3
    assert again.calls == [[Replace(2, 3)]]


def test_nested_path_changes_are_relative_to_it() -> None:
    doc = new_doc()
    doc["todos"] = [{"text": gether.Text("milk"), "done": False}]
    text, item = Recorder(), Recorder()
    doc.on_change("todos/0/text", text)
    doc.on_change(("todos", 0), item)
    doc["todos"][0]["text"].insert(0, "oat ")
    doc["todos"][0]["done"] = True
    assert text.calls == [[Splice(0, "", "oat ")]]
    assert item.calls == [
        [PathChange(("text",), Splice(0, "", "oat "))],
        [PathChange(("done",), Replace(False, True))],
    ]


def test_edits_elsewhere_call_nothing() -> None:
    doc = new_doc()
    doc["a"], doc["b"] = {"x": 1}, 2
    heard = Recorder()
    doc.on_change(["a"], heard)
    doc["b"] = 3
    doc.counter("likes").increment()
    assert heard.calls == []


def test_path_created_later_and_deleted() -> None:
    doc = new_doc()
    heard = Recorder()
    doc.on_change("settings/theme", heard)
    doc["settings"] = {"lang": "en"}
    doc["settings"]["theme"] = "dark"
    doc["settings"]["theme"] = "light"
    del doc["settings"]["theme"]
    doc["settings"] = {"theme": "dark"}
    del doc["settings"]
    assert heard.calls == [
        [Replace(MISSING, "dark")],
        [Splice(0, "dark", "light")],
        [Replace("light", MISSING)],
        [Replace(MISSING, "dark")],
        [Replace("dark", MISSING)],
    ]


def test_path_forms() -> None:
    doc = new_doc()
    doc["a"] = [{"b": 1}]
    forms: list[Any] = ["a/0/b", ("a", 0, "b"), ["a", "0", "b"], "/a/0/b/"]
    recorders = [Recorder() for _ in forms]
    for form, recorder in zip(forms, recorders, strict=True):
        doc.on_change(form, recorder)
    roots = [Recorder() for _ in range(3)]
    for form, recorder in zip(["", (), []], roots, strict=True):
        doc.on_change(form, recorder)
    doc["a"][0]["b"] = 2
    for recorder in recorders:
        assert recorder.calls == [[Replace(1, 2)]]
    for recorder in roots:
        assert recorder.calls == [[PathChange(("a", 0, "b"), Replace(1, 2))]]
    with pytest.raises(UsageError):
        doc.on_change(3, Recorder())  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        doc.on_change("a", "not callable")  # type: ignore[arg-type]


def test_a_received_batch_is_one_call() -> None:
    alice, bob = new_doc("alice"), new_doc("bob")
    bob["todos"] = ["milk"]
    bob["todos"].append("eggs")
    bob.text("notes").insert(0, "hi")
    heard = Recorder()
    alice.on_change("", heard)
    events = bob.events_since(None)
    assert len(events) == 4
    alice.apply_events(reversed(events))  # out of order, in one call
    assert len(heard.calls) == 1
    assert apply_all(heard.calls[0], {}) == alice.to_json() == bob.to_json()
    alice.apply_events(events)  # nothing new: no call
    assert len(heard.calls) == 1


def test_remote_edits_of_text_and_lists_arrive_as_splices_and_moves() -> None:
    alice = new_doc("alice")
    alice["todos"] = ["a", "b", "c"]
    alice.text("notes").insert(0, "hello 😀")
    alice.counter("likes").increment(2)
    bob = alice.fork("bob")
    heard = Recorder()
    alice.on_change("", heard)
    bob["todos"].move(0, 2)
    alice.merge(bob)
    bob.text("notes").insert(6, "big ")
    alice.merge(bob)
    bob.counter("likes").increment(3)
    alice.merge(bob)
    assert heard.calls == [
        [PathChange(("todos",), Move(0, 1, 2))],
        [PathChange(("notes",), Splice(6, "", "big "))],
        [PathChange(("likes",), Replace(2, 5))],
    ]


def test_a_raising_callback_stops_nothing() -> None:
    doc = new_doc()
    heard, pushed = Recorder(), []

    def broken(changes: list[Change]) -> None:
        raise ValueError("app bug")

    doc.on_change("", broken)
    doc.on_change("", heard)
    doc._listen(lambda events, local: pushed.append(len(events)))  # e.g. a sync client
    with pytest.raises(ValueError, match="app bug"):
        doc["a"] = 1
    assert doc.to_json() == {"a": 1}  # committed
    assert heard.calls == [[PathChange(("a",), Replace(MISSING, 1))]]
    assert pushed == [1]
    # two raise: the first propagates, with a note about the other
    doc.on_change("", broken)
    with pytest.raises(ValueError, match="app bug") as raised, doc.transaction():
        doc["a"] = 2
    assert any("1 more callback" in note for note in raised.value.__notes__)
    assert doc.to_json() == {"a": 2} and len(heard.calls) == 2 and pushed == [1, 1]


def test_a_raising_callback_on_received_events() -> None:
    alice, bob = new_doc("alice"), new_doc("bob")
    bob["a"] = 1
    heard = Recorder()
    alice.on_change("", lambda changes: 1 / 0)
    alice.on_change("", heard)
    with pytest.raises(ZeroDivisionError):
        alice.apply_events(bob.events_since(None))
    assert alice.to_json() == {"a": 1} and alice.version == bob.version
    assert len(heard.calls) == 1


def test_a_raising_callback_with_rejections_or_a_handler() -> None:
    alice, bob, twin = new_doc("alice"), new_doc("bob"), new_doc("bob")
    bob["a"] = 1
    twin["a"] = 2  # the same (replica, seq) with other contents: an equivocation
    alice.on_change("", lambda changes: 1 / 0)
    # the rejection is what a caller must learn; the callback's error is its cause
    with pytest.raises(RejectedEventsError) as raised:
        alice.apply_events([*bob.events_since(None), *twin.events_since(None)])
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert alice.to_json() == {"a": 1}
    # with a handler, the callback's error goes there and nothing is raised
    bob["b"] = 2
    seen: list[Exception] = []
    assert alice.apply_events(bob.events_since(alice.version), callback_error=seen.append) == 1
    assert alice.to_json() == bob.to_json()
    assert [type(exc) for exc in seen] == [ZeroDivisionError]


def test_a_callback_that_edits_is_not_reentered() -> None:
    doc = new_doc()
    order: list[str] = []
    mirror = Mirror(doc, "")

    def first(changes: list[Change]) -> None:
        order.append(f"first {len(changes)}")
        if doc.get("count", 0) < 3:
            doc["count"] = doc.get("count", 0) + 1  # a reaction: delivered after this round
        order.append("first done")

    def second(changes: list[Change]) -> None:
        order.append(f"second {changes}")

    doc.on_change("", first)
    doc.on_change("count", second)
    doc["count"] = 0
    assert order[:4] == [
        "first 1",
        "first done",
        f"second {[Replace(MISSING, 0)]}",
        "first 1",
    ]
    assert doc["count"] == 3
    mirror.check()


def test_listeners_added_or_removed_by_a_callback() -> None:
    doc = new_doc()
    late = Recorder()
    removed = Recorder()
    stop: list[Callable[[], None]] = []

    def manager(changes: list[Change]) -> None:
        if not stop:
            stop.append(doc.on_change("", late))  # starts from the value now
        stop_removed()

    doc.on_change("", manager)
    stop_removed = doc.on_change("", removed)
    doc["a"] = 1
    assert removed.calls == []  # removed before its turn came
    assert late.calls == []
    doc["a"] = 2
    assert late.calls == [[PathChange(("a",), Replace(1, 2))]]


def test_subscribing_inside_a_transaction_then_rolling_back() -> None:
    doc = new_doc()
    doc["a"] = 1
    heard = Recorder()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), doc.transaction():
        doc["a"] = 2
        doc.on_change("a", heard)  # sees the uncommitted 2
        raise Abort
    assert heard.calls == [[Replace(2, 1)]]  # told of the rollback


def test_listeners_on_one_path_that_saw_different_values() -> None:
    doc = new_doc()
    doc["a"] = 1
    early, late = Recorder(), Recorder()
    doc.on_change("a", early)
    with doc.transaction():
        doc["a"] = 2
        doc.on_change("a", late)  # subscribed inside the transaction: sees 2 already
    assert early.calls == [[Replace(1, 2)]]
    assert late.calls == []
    doc["a"] = 3
    assert early.calls[1:] == late.calls == [[Replace(2, 3)]]


def test_changes_do_not_alias_what_listeners_remember() -> None:
    doc = new_doc()
    heard: list[list[Change]] = []

    def scribbler(changes: list[Change]) -> None:
        heard.append(changes)
        for change in changes:
            _scribble(change)
        changes.clear()

    mirror = Mirror(doc, "")  # called first, so it copies the values before they are scribbled on
    doc.on_change("", scribbler)
    doc["todos"] = [{"text": "milk"}]
    doc["todos"].append({"text": "eggs"})
    doc["todos"][1]["text"] = "bread"
    mirror.check()
    assert len(heard) == 3


def test_types_are_strict() -> None:
    doc = new_doc()
    doc["v"] = 1
    heard = Recorder()
    doc.on_change("v", heard)
    doc["v"] = True
    doc["v"] = 1.0
    doc["v"] = 1.0
    doc["v"] = -0.0
    assert heard.calls == [[Replace(1, True)], [Replace(True, 1.0)], [Replace(1.0, -0.0)]]
