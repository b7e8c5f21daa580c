"""Changes (OT): apply, invert, compose, merge (TP1) and the JSON form.

The properties run on every ordered pair of change kinds, on random JSON with
astral-plane characters, with changes generated to be valid for the value they
meet. Each property runs 36 pairs x 56 examples = 2,016 cases.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gether import ChangeSet, Move, PathChange, Replace, Splice
from gether.core.changes import MISSING, Change
from gether.core.changes.model import at
from gether.errors import (
    DecodeError,
    InvalidPathError,
    InvalidValueError,
    OutOfRangeError,
    TypeMismatchError,
)

# -- strict JSON equality (True != 1, 1 != 1.0) ---------------------------------


def same(x: Any, y: Any) -> bool:
    if type(x) is not type(y):
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return len(x) == len(y) and all(map(same, x, y))
    return bool(x == y)


def get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value.get(key, MISSING) if isinstance(value, dict) else value[key]
    return value


def check_befores(change: Change, value: Any) -> None:
    """Every ``before`` in ``change`` is exactly what it replaces in ``value``."""
    match change:
        case Replace():
            assert same(change.before, value) or change.before is value is MISSING
        case Splice():
            found = value[change.offset : change.end]
            assert same(found if change.on_text else tuple(found), change.before)
        case PathChange():
            check_befores(change.change, get(value, tuple(change.path)))
        case ChangeSet():
            for inner in change.changes:
                check_befores(inner, value)
                value = inner.apply(value)


# -- random values --------------------------------------------------------------

ALPHABET = ("a", "b", "é", "中", "😀", "🎉", "𝄞", "𠜎", "\u200d", "\U0010fffd")
"""Mostly characters outside the Basic Multilingual Plane (4 bytes in UTF-8)."""
KEYS = ("a", "b", "😀")


def texts(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(ALPHABET), min_size=min_size, max_size=5)


scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from((0.5, -1.25, 1e300)) | texts()
)
leaves = st.lists(scalars, max_size=3) | st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2)
values = scalars | leaves | st.lists(scalars | leaves, max_size=3)
list_roots = st.lists(values, min_size=1, max_size=5)
doc_roots = st.fixed_dictionaries({"t": texts(1), "l": list_roots}, optional={"a": values})

# -- random changes valid for a value ---------------------------------------------

REPLACE, TEXT_SPLICE, LIST_SPLICE, MOVE, PATH, SET = KINDS = (
    "replace",
    "text_splice",
    "list_splice",
    "move",
    "path",
    "set",
)
BASIC = (REPLACE, TEXT_SPLICE, LIST_SPLICE, MOVE)
PAIRS = list(itertools.product(KINDS, KINDS))


def places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every place in ``value`` (path, value there), with one missing key per map."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from places(item, (*path, key))
        absent = [key for key in KEYS if key not in value]
        if absent:
            yield (*path, absent[0]), MISSING
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from places(item, (*path, i))


def fits(kind: str, value: Any) -> bool:
    if value is MISSING:
        return kind == REPLACE
    return {
        REPLACE: True,
        TEXT_SPLICE: isinstance(value, str),
        LIST_SPLICE: isinstance(value, list),
        MOVE: isinstance(value, str | list),
    }[kind]


def pick(draw: st.DrawFn, options: Sequence[Any]) -> Any:
    """One of ``options`` (cheaper than a fresh ``sampled_from`` each time)."""
    return options[draw(st.integers(0, len(options) - 1))]


def draw_here(draw: st.DrawFn, value: Any, kind: str, in_map: bool) -> Change:
    """A change of ``kind`` at the root of ``value``."""
    if kind == REPLACE:
        after = draw(values | st.just(MISSING)) if in_map else draw(values)
        return Replace(value, after)
    n = len(value)
    if kind == MOVE:
        offset = draw(st.integers(0, n))
        count = draw(st.integers(0, n - offset))
        return Move(offset, count, draw(st.integers(-offset, n - offset - count)))
    offset = draw(st.integers(0, n))
    end = draw(st.integers(offset, n))
    after = draw(texts() if kind == TEXT_SPLICE else st.lists(values, max_size=3))
    return Splice(offset, value[offset:end], after)


def draw_change(draw: st.DrawFn, value: Any, kind: str) -> Change:
    """A change of ``kind`` that is valid for ``value``."""
    if kind == SET:
        parts: list[Change] = []
        for _ in range(draw(st.integers(0, 3))):
            found = list(places(value))
            usable = [k for k in (*BASIC, PATH) if any(fits_place(k, p, v) for p, v in found)]
            part = draw_change(draw, value, pick(draw, usable))
            parts.append(part)
            value = part.apply(value)
        return ChangeSet(parts)
    path, here = pick(draw, [(p, v) for p, v in places(value) if fits_place(kind, p, v)])
    if kind == PATH:
        kind = pick(draw, [k for k in BASIC if fits(k, here)])
    in_map = bool(path) and isinstance(path[-1], str)
    inner = draw_here(draw, here, kind, in_map)
    return PathChange(path, inner) if path else inner


def fits_place(kind: str, path: tuple[Any, ...], value: Any) -> bool:
    if kind == SET:
        return True
    if kind == PATH:
        return bool(path)
    return fits(kind, value) and (kind == REPLACE or value is not MISSING)


TEXTY = {REPLACE, TEXT_SPLICE, MOVE, SET}
LISTY = {REPLACE, LIST_SPLICE, MOVE, SET, PATH}


@functools.cache
def roots(pair: tuple[str, str]) -> st.SearchStrategy[Any]:
    """Values on which both kinds of ``pair`` have somewhere to apply."""
    options = [doc_roots]
    if set(pair) <= TEXTY:
        options.append(texts(1))
    if set(pair) <= LISTY:
        options.append(list_roots)
    return st.one_of(options)


@st.composite
def concurrent(draw: st.DrawFn, pair: tuple[str, str]) -> tuple[Any, Change, Change]:
    x = draw(roots(pair))
    return x, draw_change(draw, x, pair[0]), draw_change(draw, x, pair[1])


@st.composite
def sequential(draw: st.DrawFn, pair: tuple[str, str]) -> tuple[Any, Change, Change]:
    x = draw(roots(pair))
    a = draw_change(draw, x, pair[0])
    y = a.apply(x)
    kind = pair[1]
    if not any(fits_place(kind, p, v) for p, v in places(y)):
        kind = SET  # a Replace may have left no text, list or child for the second kind
    return x, a, draw_change(draw, y, kind)


CONCURRENT = {pair: concurrent(pair) for pair in PAIRS}
SEQUENTIAL = {pair: sequential(pair) for pair in PAIRS}
PAIR_IDS = [f"{a}-{b}" for a, b in PAIRS]
EXAMPLES_PER_PAIR = 56  # 36 pairs x 56 = 2,016 cases per property

# -- the properties, on every ordered pair of kinds -----------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@settings(max_examples=EXAMPLES_PER_PAIR)
@given(data=st.data())
def test_merge_satisfies_tp1(pair: tuple[str, str], data: st.DataObject) -> None:
    x, a, b = data.draw(CONCURRENT[pair])
    kept = copy.deepcopy(x)
    after_a, after_b = a.apply(x), b.apply(x)
    b2, a2 = a.merge(b)
    converged = b2.apply(after_a)
    assert same(converged, a2.apply(after_b))
    check_befores(b2, after_a)  # the transformed changes carry exact befores,
    check_befores(a2, after_b)
    assert same(b2.invert().apply(converged), after_a)  # so they still invert
    assert same(a2.invert().apply(converged), after_b)
    a3, b3 = b.merge(a)  # the mirror (b wins ties) converges too
    assert same(a3.apply(after_b), b3.apply(after_a))
    assert same(x, kept)  # nothing mutated the value


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@settings(max_examples=EXAMPLES_PER_PAIR)
@given(data=st.data())
def test_invert_undoes(pair: tuple[str, str], data: st.DataObject) -> None:
    x, a, b = data.draw(SEQUENTIAL[pair])
    y = a.apply(x)
    z = b.apply(y)
    assert same(a.invert().apply(y), x)
    assert same(b.invert().apply(z), y)
    assert same(ChangeSet([a, b]).invert().apply(z), x)
    assert a.invert().invert() == a


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@settings(max_examples=EXAMPLES_PER_PAIR)
@given(data=st.data())
def test_compose_applies_both(pair: tuple[str, str], data: st.DataObject) -> None:
    x, a, b = data.draw(SEQUENTIAL[pair])
    z = b.apply(a.apply(x))
    both = a.compose(b)
    assert same(both.apply(x), z)
    check_befores(both, x)
    assert same(both.invert().apply(z), x)


@settings(max_examples=400)
@given(data=st.data())
def test_json_round_trip(data: st.DataObject) -> None:
    _, a, b = data.draw(CONCURRENT[data.draw(st.sampled_from(PAIRS))])
    for change in (a, b, ChangeSet([a, b])):
        wire = json.loads(json.dumps(change.to_json()))
        assert type(change).from_json(wire) == change
        assert Change.from_json(wire) == change


def _same_sequence() -> st.SearchStrategy[tuple[Any, Change, Change]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[Any, Change, Change]:
        x = draw(texts(1) | list_roots)
        splice = TEXT_SPLICE if isinstance(x, str) else LIST_SPLICE
        kinds = pick(draw, [(MOVE, splice), (splice, MOVE), (splice, splice)])
        return x, draw_here(draw, x, kinds[0], False), draw_here(draw, x, kinds[1], False)

    return build()


@settings(max_examples=600)
@given(_same_sequence())
def test_who_receives_matters_only_on_ties(case: tuple[Any, Change, Change]) -> None:
    """Move vs Splice never ties; Splice vs Splice ties only at one offset."""
    x, a, b = case
    if isinstance(a, Splice) and isinstance(b, Splice) and a.offset == b.offset:
        pure_a, pure_b = not a.before, not b.before
        if pure_a == pure_b:
            return  # a real tie: the receiver wins
    b2, _ = a.merge(b)
    _, b3 = b.merge(a)
    assert same(b2.apply(a.apply(x)), b3.apply(a.apply(x)))


# -- the API.md examples and the documented rules -----------------------------------


def test_api_examples() -> None:
    c = Splice(offset=5, before="", after=" world")
    assert c.apply("hello") == "hello world"
    assert c.invert().apply("hello world") == "hello"
    value = {"todos": [{"title": "milk", "done": False}]}
    done = PathChange(("todos", 0, "done"), Replace(before=False, after=True))
    assert done.apply(value) == {"todos": [{"title": "milk", "done": True}]}
    assert value == {"todos": [{"title": "milk", "done": False}]}


def test_strings_count_code_points() -> None:
    assert Splice(1, "😀", "x").apply("a😀b") == "axb"
    assert Move(0, 1, 2).apply("😀ab") == "ab😀"


def test_move_parametrisation() -> None:
    assert Move(1, 2, 1).apply("abcd") == "adbc"
    assert Move(2, 2, -1).apply("abcd") == "acdb"
    assert Move(1, 2, 1).invert() == Move(2, 2, -1)
    assert Move(0, 1, 3).apply([1, 2, 3, 4]) == [2, 3, 4, 1]


def test_inserts_at_one_offset_receiver_first() -> None:
    a, b = Splice(1, "", "A"), Splice(1, "", "B")
    b2, a2 = a.merge(b)
    assert b2.apply(a.apply("xy")) == a2.apply(b.apply("xy")) == "xABy"
    a3, b3 = b.merge(a)
    assert a3.apply(b.apply("xy")) == b3.apply(a.apply("xy")) == "xBAy"


def test_replaces_of_one_value_receiver_wins() -> None:
    a, b = Replace(1, 2), Replace(1, 3)
    b2, a2 = a.merge(b)
    assert b2.apply(2) == a2.apply(3) == 2
    assert a2 == Replace(3, 2)
    assert b2 == ChangeSet()


def test_pure_insert_goes_before_a_range_at_its_offset() -> None:
    insert, replace = Splice(2, "", "I"), Splice(2, "cd", "R")
    for a, b in ((insert, replace), (replace, insert)):
        b2, a2 = a.merge(b)
        assert b2.apply(a.apply("abcdef")) == a2.apply(b.apply("abcdef")) == "abIRef"


def test_overlapping_splices_unite_deletions_and_keep_both_insertions() -> None:
    x = "0123456789"
    a, b = Splice(2, "2345", "A"), Splice(4, "4567", "B")
    b2, a2 = a.merge(b)
    assert b2.apply(a.apply(x)) == a2.apply(b.apply(x)) == "01AB89"
    assert b2 == Splice(3, "67", "B")
    inner = Splice(5, "", "I")  # an insertion inside a deleted range stays, after it
    b2, a2 = a.merge(inner)
    assert b2.apply(a.apply(x)) == a2.apply(inner.apply(x)) == "01AI6789"


def test_splice_deleting_an_element_drops_a_change_inside_it() -> None:
    x = [{"n": 1}, {"n": 2}, {"n": 3}]
    delete = Splice(1, [{"n": 2}], [])
    inside = PathChange((1, "n"), Replace(2, 20))
    for a, b in ((delete, inside), (inside, delete)):
        b2, a2 = a.merge(b)
        assert b2.apply(a.apply(x)) == a2.apply(b.apply(x)) == [{"n": 1}, {"n": 3}]
    b2, a2 = delete.merge(inside)
    assert b2 == ChangeSet()
    assert a2 == Splice(1, [{"n": 20}], [])  # so it still inverts after the edit
    assert a2.invert().apply(a2.apply(inside.apply(x))) == inside.apply(x)


def test_replace_of_a_parent_beats_a_change_of_a_child() -> None:
    x = {"todo": {"done": False}, "other": 1}
    parent = PathChange(("todo",), Replace({"done": False}, MISSING))
    child = PathChange(("todo", "done"), Replace(False, True))
    for a, b in ((parent, child), (child, parent)):
        b2, a2 = a.merge(b)
        assert b2.apply(a.apply(x)) == a2.apply(b.apply(x)) == {"other": 1}
    b2, a2 = parent.merge(child)
    assert a2 == PathChange(("todo",), Replace({"done": True}, MISSING))


def test_index_paths_follow_splices_and_moves() -> None:
    x = {"l": ["a", "b", "c", "d"]}
    edit = PathChange(("l", 2), Replace("c", "C"))
    splice = PathChange(("l",), Splice(0, ["a"], ["x", "y"]))
    b2, a2 = splice.merge(edit)
    assert b2 == PathChange(("l", 3), Replace("c", "C"))
    assert b2.apply(splice.apply(x)) == {"l": ["x", "y", "b", "C", "d"]}
    move = PathChange(("l",), Move(2, 1, -2))
    b2, a2 = move.merge(edit)
    assert b2 == PathChange(("l", 0), Replace("c", "C"))
    assert a2.apply(edit.apply(x)) == {"l": ["C", "a", "b", "d"]}


def test_insert_at_the_boundary_follows_the_moved_block() -> None:
    right, left = Move(0, 1, 2), Move(2, 1, -2)  # "a" to after "c"; "c" to before "a"
    after_a = Splice(1, "", "X")  # between the block and what it passes
    b2, a2 = right.merge(after_a)
    assert b2.apply(right.apply("abcd")) == a2.apply(after_a.apply("abcd")) == "bcaXd"
    assert a2 == Move(0, 2, 2)  # still one move, still to the right
    before_c = Splice(2, "", "X")
    b2, a2 = left.merge(before_c)
    assert b2.apply(left.apply("abcd")) == "Xcabd"
    assert a2 == Move(2, 2, -2)


def test_an_item_both_moved_ends_where_the_receiver_put_it() -> None:
    x = list("abcde")
    a, b = Move(0, 1, 4), Move(0, 1, 2)  # "a" to the end; "a" to after "c"
    b2, a2 = a.merge(b)
    assert b2.apply(a.apply(x)) == a2.apply(b.apply(x)) == list("bcdea")
    a3, b3 = b.merge(a)
    assert a3.apply(b.apply(x)) == b3.apply(a.apply(x)) == list("bcade")


def test_key_creation_and_deletion() -> None:
    create = PathChange(("k",), Replace(MISSING, 1))
    assert create.apply({}) == {"k": 1}
    assert create.invert().apply({"k": 1}) == {}
    assert Replace.MISSING is MISSING
    other = PathChange(("k",), Replace(MISSING, 2))
    b2, a2 = create.merge(other)
    assert b2.apply(create.apply({})) == a2.apply(other.apply({})) == {"k": 1}
    with pytest.raises(InvalidPathError):
        create.apply({"k": 0})
    with pytest.raises(InvalidPathError):
        PathChange(("k",), Replace(1, MISSING)).apply({})
    with pytest.raises(InvalidValueError):
        PathChange((0,), Replace(1, MISSING)).apply([1])


def test_compose_simplifies_the_common_cases() -> None:
    assert Splice(0, "", "ab").compose(Splice(2, "", "c")) == Splice(0, "", "abc")
    assert Splice(3, "d", "").compose(Splice(2, "c", "")) == Splice(2, "cd", "")
    assert Replace(1, 2).compose(Replace(2, 3)) == Replace(1, 3)
    assert Replace("ab", "abc").compose(Splice(0, "a", "")) == Replace("ab", "bc")
    assert Move(0, 2, 3).compose(Move(3, 2, -1)) == Move(0, 2, 2)
    assert Move(0, 2, 3).compose(Move(0, 2, 3).invert()) == ChangeSet()
    insert = Splice(0, [], [{"n": 1}])
    assert insert.compose(PathChange((0, "n"), Replace(1, 2))) == Splice(0, [], [{"n": 2}])
    at_k = PathChange(("k",), Splice(0, "", "a"))
    assert at_k.compose(PathChange(("k",), Splice(1, "", "b"))) == at(("k",), Splice(0, "", "ab"))
    apart = Splice(0, "", "a").compose(Splice(5, "", "b"))
    assert apart == ChangeSet([Splice(0, "", "a"), Splice(5, "", "b")])
    assert ChangeSet().compose(apart) == apart


def test_errors_on_wrong_shapes() -> None:
    with pytest.raises(TypeMismatchError):
        Splice(0, "", "a").apply([1])
    with pytest.raises(TypeMismatchError):
        Splice(0, [], [1]).apply("a")
    with pytest.raises(TypeMismatchError):
        Move(0, 1, 1).apply({"a": 1})
    with pytest.raises(OutOfRangeError):
        Splice(2, "ab", "").apply("abc")
    with pytest.raises(OutOfRangeError):
        Move(1, 1, 5).apply([1, 2, 3])
    with pytest.raises(OutOfRangeError):
        PathChange((3,), Replace(1, 2)).apply([1])
    with pytest.raises(InvalidPathError):
        PathChange(("a", "b"), Replace(1, 2)).apply({"a": 1})
    with pytest.raises(InvalidPathError):
        PathChange((0,), Replace(1, 2)).apply({"a": 1})
    with pytest.raises(InvalidPathError):
        PathChange(("x", "y"), Replace(1, 2)).apply({})
    with pytest.raises(OutOfRangeError):
        Splice(-1, "", "")
    with pytest.raises(OutOfRangeError):
        Move(1, 1, -2)
    with pytest.raises(TypeMismatchError):
        Splice(0, "", [1])
    with pytest.raises(TypeMismatchError):
        PathChange((True,), Replace(1, 2))
    with pytest.raises(TypeMismatchError):
        Splice(0, "a", "").merge(Splice(0, [1], []))


def test_changes_are_frozen_and_results_do_not_alias_them() -> None:
    change = Splice(0, [], [{"n": 1}])
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.offset = 1  # type: ignore[misc]
    result = change.apply([])
    result[0]["n"] = 2
    assert change.after == ({"n": 1},)
    assert Splice(0, [1], [2]) == Splice(0, (1,), (2,))


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        [9, 1, 2, 3],
        [3, 0, 1],
        [3, 0, 1, True],
        [1, 0, float("nan"), 1],
        [1, 1, 0, 1],
        [1, 4, None, None],
        [2, 0, "a", ["a"]],
        [2, -1, "", ""],
        [4, [0.5], [1, 0, 1, 2]],
        [5, [[3, 0, 1]]],
        [1, 0, "\ud800", 1],
        [1, 0, 2**64, 1],
        [1, 0, {1: 2}, 1],
    ],
)
def test_from_json_rejects_malformed_input(data: Any) -> None:
    with pytest.raises(DecodeError):
        Change.from_json(data)


def test_from_json_checks_the_class() -> None:
    assert Move.from_json([3, 0, 1, 1]) == Move(0, 1, 1)
    with pytest.raises(DecodeError):
        Splice.from_json([3, 0, 1, 1])
    deep: Any = [3, 0, 1, 1]
    for _ in range(100):
        deep = [4, [], deep]
    with pytest.raises(DecodeError):
        Change.from_json(deep)
