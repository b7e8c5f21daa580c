"""Hypothesis strategies for random edits of every core type, and how to apply them.

Ops are generated without knowing the state of the document they will meet:
by the time an op is applied, concurrent edits may have shortened a list or put
a number where a text was. So an op names its target loosely, and
:func:`apply_op` resolves it against the document at hand: an index is taken
modulo the current length, a path step picks the n-th child of whatever
container is there, and an op whose target is gone or of another type is
skipped. That keeps every generated op meaningful on every replica, and keeps
shrinking effective (an op stays valid when the ops before it are removed).

Ops are frozen dataclasses with readable reprs, so a failing example prints as
a list of edits that can be pasted into a regression test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from hypothesis import strategies as st

import gether

__all__ = [
    "NAMED",
    "ROOT_KEYS",
    "CounterAdd",
    "CounterSpec",
    "ListAppend",
    "ListDelete",
    "ListInsert",
    "ListMove",
    "ListSet",
    "MapDelete",
    "MapSet",
    "Op",
    "PathSet",
    "Target",
    "TextDelete",
    "TextInsert",
    "TextSpec",
    "TextSplice",
    "Transaction",
    "Value",
    "apply_op",
    "kind_of",
    "SetAdd",
    "SetRemove",
    "SetSpec",
    "materialize",
    "ops",
    "primitives",
    "resolve",
    "single_ops",
    "targets",
    "texts",
    "values",
]

# -- values ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextSpec:
    """A ``gether.Text`` to create when the op is applied (a fresh one each time)."""

    initial: str


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """A ``gether.Counter`` to create when the op is applied (a fresh one each time)."""

    initial: int


@dataclass(frozen=True, slots=True)
class SetSpec:
    """A ``gether.Set`` to create when the op is applied (a fresh one each time)."""

    initial: tuple[Any, ...]
    variant: str = "or"


Value: TypeAlias = Any
"""A primitive, a ``list``/``dict`` of values, a :class:`TextSpec` or a :class:`CounterSpec`."""

_INT64 = (-(2**63), 2**63 - 1)
_ASTRAL = "😀🎉𝄞𠜎🇫🇷👩‍👩‍👧"
"""Characters outside the Basic Multilingual Plane (4 bytes in UTF-8, 2 units in UTF-16)."""


def texts(min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """Strings of any valid code points, often with astral characters and combining marks."""
    chars = st.one_of(
        st.sampled_from("abcxyz "),
        st.sampled_from(_ASTRAL),
        st.characters(codec="utf-8"),  # every code point but surrogates
    )
    return st.text(chars, min_size=min_size, max_size=max_size)


def primitives() -> st.SearchStrategy[Value]:
    """Every primitive a document stores: None, bool, signed 64-bit int, finite float, str."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(*_INT64),
        st.integers(-3, 3),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )


_KEYS = st.one_of(st.sampled_from(["x", "y", "z", "done", "text"]), texts(1, 4))
"""Map keys: a few that collide often between replicas, and any other string."""


def values(max_leaves: int = 6) -> st.SearchStrategy[Value]:
    """Any value ``doc[k] = v`` accepts: primitives, nested lists and dicts, Text, Counter."""
    leaves = st.one_of(
        primitives(),
        st.builds(TextSpec, texts()),
        st.builds(CounterSpec, st.integers(-100, 100)),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(_KEYS, inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def _todo_lists() -> st.SearchStrategy[Value]:
    """A list of maps of text: the shape of a collaborative TODO list."""
    item = st.fixed_dictionaries({"text": st.builds(TextSpec, texts()), "done": st.booleans()})
    return st.lists(item, max_size=3)


def materialize(value: Value) -> Any:
    """Turn a generated value into what ``doc[k] = v`` takes, with fresh Text/Counter objects."""
    if isinstance(value, TextSpec):
        return gether.Text(value.initial)
    if isinstance(value, CounterSpec):
        return gether.Counter(value.initial)
    if isinstance(value, SetSpec):
        return gether.Set(value.initial, value.variant)
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


# -- targets --------------------------------------------------------------

NAMED: dict[str, tuple[str, ...]] = {
    "text": ("T", "T2"),
    "list": ("L",),
    "map": ("M",),
    "counter": ("C",),
    "set": ("S", "G", "P", "W"),
}
"""Names of the top-level named containers, by kind (``doc.text("T")`` and so on)."""

SET_VARIANTS = {"S": "or", "G": "g", "P": "2p", "W": "lww"}
"""The variant of each named set."""

ELEMENTS = st.sampled_from(["a", "b", "😀", 1, 1.0, True, None])
"""Set elements: few, so that adds and removes meet, and equal in Python but
not in JSON (1, 1.0, True), so that sets keep them apart."""

ROOT_KEYS = ("a", "b", "todos")
"""Top-level keys that plain ``doc[k] = v`` writes; disjoint from the named ones.

``todos`` usually holds a TODO list (maps of ``text`` and ``done``), ``b`` a
kitchen sink (``t`` text, ``l`` list, ``m`` map, ``c`` counter), so that nested
edits find their targets; any of them may be overwritten by any value.
"""


@dataclass(frozen=True, slots=True)
class Target:
    """Where an op applies: a root, then one child per step.

    ``root`` is ``("named", kind, name)`` for ``doc.text(name)`` and friends,
    ``("key", key)`` for ``doc[key]``, or ``("doc",)`` for the document itself
    (the root map). A string step is a map key; an integer step picks child
    ``n % len`` of the container there (a map's children in sorted key order).
    """

    root: tuple[str, ...]
    steps: tuple[int | str, ...] = ()


_DOC = Target(("doc",))
_CHILD = st.integers(0, 7)

_SHAPED: dict[str, list[Target | tuple[str, ...]]] = {
    "text": [("key", "todos", "*", "text"), ("key", "b", "t"), ("key", "b", "m", "*")],
    "list": [("key", "todos"), ("key", "b", "l"), ("key", "b", "l", "*")],
    "map": [("key", "todos", "*"), ("key", "b"), ("key", "b", "m"), ("key", "b", "l", "*")],
    "counter": [("key", "b", "c"), ("key", "b", "m", "*")],
    "set": [("key", "b", "s"), ("key", "b", "m", "*")],
}
"""Paths that often hold a ``kind`` in the shapes :func:`ops` writes (``*`` is any child)."""


def _shaped(path: tuple[str, ...]) -> st.SearchStrategy[Target]:
    steps = [_CHILD if step == "*" else st.just(step) for step in path[2:]]
    return st.tuples(*steps).map(lambda s: Target(path[:2], s))


def targets(kind: str) -> st.SearchStrategy[Target]:
    """Targets likely to hold a container of ``kind`` ("text", "list", "map", "counter").

    Named containers (which always exist), places where the TODO and
    kitchen-sink shapes keep one, and arbitrary paths (which mostly miss, and
    sometimes find a container in an unexpected place).
    """
    named = st.sampled_from([Target(("named", kind, name)) for name in NAMED[kind]])
    shaped = st.one_of(*[_shaped(path) for path in _SHAPED[kind] if isinstance(path, tuple)])
    anywhere = st.builds(
        Target,
        st.sampled_from([("key", k) for k in ROOT_KEYS] + [("named", "list", "L")]),
        st.lists(_CHILD, min_size=1, max_size=3).map(tuple),
    )
    options = [named, named, shaped, anywhere]
    if kind == "map":
        options.append(st.just(_DOC))
    return st.one_of(*options)


# -- ops ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapSet:
    """``m[key] = value`` on a map (or the document root)."""

    target: Target
    key: str
    value: Value

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "map")
        if node is None or not _writable(self.target, self.key):
            return False
        node[self.key] = materialize(self.value)
        return True


@dataclass(frozen=True, slots=True)
class MapDelete:
    """``del m[k]`` for the ``pick % len``-th key in sorted order."""

    target: Target
    pick: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "map")
        keys = _map_keys(node) if node is not None else []
        if not keys:
            return False
        del node[keys[self.pick % len(keys)]]
        return True


@dataclass(frozen=True, slots=True)
class PathSet:
    """``doc.apply_update(path, value)`` with the target's resolved path plus ``key``."""

    target: Target
    key: str
    value: Value
    as_string: bool

    def apply(self, doc: gether.Document) -> bool:
        found = resolve(doc, self.target)
        if found is None or kind_of(found[0]) != "map" or not _writable(self.target, self.key):
            return False
        path = (*found[1], self.key)
        if not self.as_string:
            doc.apply_update(path, materialize(self.value))
            return True
        if any(isinstance(p, str) and ("/" in p or p.isdigit()) for p in path):
            return False  # not expressible as a "a/b/0" string
        doc.apply_update("/".join(str(p) for p in path), materialize(self.value))
        return True


@dataclass(frozen=True, slots=True)
class TextInsert:
    target: Target
    index: int
    content: str

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "text")
        if node is None:
            return False
        node.insert(self.index % (len(node) + 1), self.content)
        return True


@dataclass(frozen=True, slots=True)
class TextDelete:
    target: Target
    index: int
    length: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "text")
        if node is None or len(node) == 0:
            return False
        start = self.index % len(node)
        node.delete(start, min(self.length, len(node) - start))
        return True


@dataclass(frozen=True, slots=True)
class TextSplice:
    """``t[start:stop] = content``."""

    target: Target
    start: int
    stop: int
    content: str

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "text")
        if node is None:
            return False
        a, b = sorted((self.start % (len(node) + 1), self.stop % (len(node) + 1)))
        if a == b and not self.content:
            return False
        node[a:b] = self.content
        return True


@dataclass(frozen=True, slots=True)
class ListAppend:
    target: Target
    value: Value

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "list")
        if node is None:
            return False
        node.append(materialize(self.value))
        return True


@dataclass(frozen=True, slots=True)
class ListInsert:
    target: Target
    index: int
    value: Value

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "list")
        if node is None:
            return False
        node.insert(self.index % (len(node) + 1), materialize(self.value))
        return True


@dataclass(frozen=True, slots=True)
class ListDelete:
    target: Target
    index: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "list")
        if node is None or len(node) == 0:
            return False
        del node[self.index % len(node)]
        return True


@dataclass(frozen=True, slots=True)
class ListSet:
    target: Target
    index: int
    value: Value

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "list")
        if node is None or len(node) == 0:
            return False
        node[self.index % len(node)] = materialize(self.value)
        return True


@dataclass(frozen=True, slots=True)
class ListMove:
    target: Target
    src: int
    dst: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "list")
        if node is None or len(node) < 2:
            return False
        node.move(self.src % len(node), self.dst % len(node))
        return True


@dataclass(frozen=True, slots=True)
class CounterAdd:
    """``increment(amount)`` if positive, ``decrement(-amount)`` if negative."""

    target: Target
    amount: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "counter")
        if node is None:
            return False
        if self.amount > 0:
            node.increment(self.amount)
        else:
            node.decrement(-self.amount)
        return True


@dataclass(frozen=True, slots=True)
class SetAdd:
    """``s.add(element)`` (skipped for an element a two-phase set removed for good)."""

    target: Target
    element: Any

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "set")
        if node is None:
            return False
        try:
            node.add(self.element)
        except gether.UsageError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SetRemove:
    """Remove the element ``n % len`` (in rendered order); skipped on grow-only sets."""

    target: Target
    index: int

    def apply(self, doc: gether.Document) -> bool:
        node = _container(doc, self.target, "set")
        items = list(node) if node is not None else []
        if not items or node.variant == "g":
            return False
        node.remove(items[self.index % len(items)])
        return True


@dataclass(frozen=True, slots=True)
class Transaction:
    """Several ops in one ``doc.transaction()``; ``abort`` raises at the end to roll back."""

    ops: tuple[Op, ...]
    abort: bool = False

    def apply(self, doc: gether.Document) -> bool:
        """Return True if the transaction committed (even if some ops were skipped)."""
        try:
            with doc.transaction():
                for op in self.ops:
                    op.apply(doc)
                if self.abort:
                    raise _Abort
        except _Abort:
            return False
        return True


Op: TypeAlias = (
    MapSet
    | MapDelete
    | PathSet
    | TextInsert
    | TextDelete
    | TextSplice
    | ListAppend
    | ListInsert
    | ListDelete
    | ListSet
    | ListMove
    | CounterAdd
    | SetAdd
    | SetRemove
    | Transaction
)

_INDEX = st.integers(0, 40)


def _kitchen_sinks() -> st.SearchStrategy[Value]:
    """A map holding one of each container type, under fixed keys."""
    return st.fixed_dictionaries(
        {
            "t": st.builds(TextSpec, texts()),
            "l": st.lists(values(3), max_size=3),
            "m": st.dictionaries(_KEYS, values(3), max_size=3),
            "c": st.builds(CounterSpec, st.integers(-100, 100)),
            "s": st.builds(SetSpec, st.lists(ELEMENTS, max_size=3).map(tuple)),
        }
    )


def _root_key_set() -> st.SearchStrategy[Op]:
    """Writes at the top level: the usual shapes, or any value at any root key."""
    return st.one_of(
        st.builds(MapSet, st.just(_DOC), st.just("todos"), _todo_lists()),
        st.builds(MapSet, st.just(_DOC), st.just("b"), _kitchen_sinks()),
        st.builds(MapSet, st.just(_DOC), st.sampled_from(ROOT_KEYS), values()),
    )


def single_ops() -> st.SearchStrategy[Op]:
    """One edit of any kind, on any type, at any depth."""
    text = targets("text")
    lst = targets("list")
    mp = targets("map")
    # hypothesis leans towards the first branches: put the cheap, common edits there
    return st.one_of(
        st.builds(TextInsert, text, _INDEX, texts(1)),
        st.builds(ListInsert, lst, _INDEX, values(4)),
        st.builds(CounterAdd, targets("counter"), st.integers(-50, 50).filter(bool)),
        st.builds(TextDelete, text, _INDEX, st.integers(1, 5)),
        st.builds(ListMove, lst, _INDEX, _INDEX),
        st.builds(MapSet, mp, _KEYS, values()),
        st.builds(ListDelete, lst, _INDEX),
        st.builds(TextSplice, text, _INDEX, _INDEX, texts()),
        st.builds(MapDelete, mp, _INDEX),
        st.builds(SetAdd, targets("set"), ELEMENTS),
        st.builds(SetRemove, targets("set"), _INDEX),
        st.builds(ListAppend, lst, values(4)),
        st.builds(ListSet, lst, _INDEX, values(4)),
        st.builds(PathSet, mp, st.sampled_from(["x", "y", "done"]), values(3), st.booleans()),
        _root_key_set(),
    )


def ops() -> st.SearchStrategy[Op]:
    """One edit, or a transaction of a few (sometimes rolled back)."""
    one = single_ops()
    return st.one_of(
        one,
        one,
        one,
        st.builds(Transaction, st.lists(one, min_size=1, max_size=4).map(tuple), st.booleans()),
    )


# -- applying -------------------------------------------------------------


class _Abort(Exception):
    """Raised inside a transaction to test that everything rolls back."""


def kind_of(node: object) -> str | None:
    """The kind of a live proxy ("map", "list", "text", "counter"); None for a primitive."""
    if isinstance(node, gether.Document | gether.MapProxy):
        return "map"
    if isinstance(node, gether.ListProxy):
        return "list"
    if isinstance(node, gether.TextProxy):
        return "text"
    if isinstance(node, gether.CounterProxy):
        return "counter"
    if isinstance(node, gether.SetProxy):
        return "set"
    return None


_NAMED_NAMES = frozenset(name for names in NAMED.values() for name in names)


def _map_keys(node: Any) -> list[str]:
    """A map's keys in sorted order; for the document, the keys that plain writes own."""
    if isinstance(node, gether.Document):
        return sorted(k for k in node.keys() if k not in _NAMED_NAMES)  # noqa: SIM118
    return sorted(node.keys())


def _writable(target: Target, key: str) -> bool:
    """False for a top-level key that belongs to a named container (kept apart on purpose)."""
    return not (target.root == ("doc",) and key in _NAMED_NAMES)


def resolve(doc: gether.Document, target: Target) -> tuple[Any, tuple[str | int, ...]] | None:
    """The live container ``target`` names in ``doc`` and its path, or None if there is none."""
    path: tuple[str | int, ...]
    node: Any
    match target.root:
        case ("doc",):
            node, path = doc, ()
        case ("named", "set", name):
            node, path = doc.set(name, SET_VARIANTS[name]), (name,)
        case ("named", kind, name):
            node = getattr(doc, kind)(name)
            path = (name,)
        case ("key", key):
            if key not in _map_keys(doc):
                return None
            node, path = doc[key], (key,)
        case _:
            raise ValueError(f"bad target root {target.root!r}")
    for step in target.steps:
        match kind_of(node), step:
            case "map", str():
                if step not in node:
                    return None
                node, path = node[step], (*path, step)
            case "map", int():
                keys = _map_keys(node)
                if not keys:
                    return None
                key = keys[step % len(keys)]
                node, path = node[key], (*path, key)
            case "list", int():
                if len(node) == 0:
                    return None
                index = step % len(node)
                node, path = node[index], (*path, index)
            case _:
                return None
    return node, path


def _container(doc: gether.Document, target: Target, kind: str) -> Any:
    found = resolve(doc, target)
    if found is None or kind_of(found[0]) != kind:
        return None
    return found[0]


def apply_op(doc: gether.Document, op: Op) -> bool:
    """Apply ``op`` to ``doc`` if it applies to the current state; return whether it did.

    Indices are taken modulo the current length (plus one where the end is a
    valid position); an op whose target is missing or of another type, or that
    would delete from an empty sequence, is skipped. A transaction returns True
    if it committed.
    """
    return op.apply(doc)
