"""Validating a document's edits and received events against its schema.

The document calls a :class:`SchemaGuard` from a few hooks; the checks
themselves are the pure ones of ``core/schema/rules.py``.

* **Before a local op is made**: static checks of what it writes
  (``map_set``, ``items``, ``map_write``, ``set_write``: a scalar against the
  field's subschema, a container's kind against the field's type and policy,
  keys the map may not have, required keys deleted), so a refused edit changes
  nothing; and ``touch``: the first time a transaction touches a container
  whose state the schema constrains, remember its value before.
* **At commit** (``commit``): the state checks of every container the
  transaction's ops touched or created, and of their ancestors whose
  constraints look into their values (``anyOf``, ``enum``, ``uniqueItems``...),
  each judged against its value before: a violation the transaction made or
  worsened rolls it back whole and raises ``SchemaViolationError``.
* **For a received event** (``integrate``): the same checks on its ops, judged
  on the state *at its parents* plus its ops, so every replica reaches the
  same verdict whatever else it holds. When the parents are the receiver's
  heads (no concurrent events: the usual case) that state is the present one:
  the event is applied, checked, and on a violation the state is rebuilt from
  the log. Otherwise, and only for events that touch containers with state
  constraints, the state at the parents is replayed (``doc.at``) and the
  event is judged there before it touches the real state. A violation raises
  ``SchemaRejectedError``; the event is rejected whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from gether.core.access import ACCESS_NAME, is_policy_op
from gether.core.containers import DELETED, ListState, MapState
from gether.core.event import Event
from gether.core.ids import ROOT, ContainerId, Version, named_container
from gether.core.ops import LIST_INSERT, LIST_SET, MAP_DELETE, MAP_SET, SET_ADD, Op, op_length
from gether.core.proxies import Counter, Proxy, Set, Text
from gether.core.schema import (
    ABSENT,
    CONTAINER_POLICIES,
    SET_POLICIES,
    Node,
    Schema,
    Violation,
    check_item,
    check_map_delete,
    check_map_set,
    check_state,
    violations,
)
from gether.core.sealed import plain_json
from gether.core.state import DocState
from gether.core.values import Kind, NamedRef, NewContainer, Scalar

if TYPE_CHECKING:
    from gether.core.document import Document

Path = tuple[str | int, ...]
Places = Mapping[ContainerId, tuple[ContainerId, str | None]]
Plan = list[tuple[ContainerId, Node, bool]]
_UNKNOWN: Final[Any] = object()
"""Containers to check after an event: id, node, created by the event."""

_EMPTY: Final[dict[int, Any]] = {
    Kind.MAP: {},
    Kind.LIST: [],
    Kind.TEXT: "",
    Kind.COUNTER: 0,
    Kind.SET: [],
    Kind.GSET: [],
    Kind.TWO_PHASE_SET: [],
    Kind.LWW_SET: [],
}
"""The value of a named container nothing has written yet (it exists, empty)."""

_POLICY_VALUES: Final[dict[str, tuple[type, ...]]] = {
    "COUNTER": (int, Counter),
    "TEXT": (str, Text),
}


class SchemaGuard:
    """One document's schema checks, and what the open transaction touched."""

    __slots__ = ("_before", "_nodes", "_touched", "schema")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._before: dict[ContainerId, Any] = {}
        self._touched: set[ContainerId] = set()
        self._nodes: dict[ContainerId, Node | None] = {}

    # -- local edits ------------------------------------------------------------------

    def map_set(self, doc: Document, container_id: ContainerId, key: str, value: Any) -> None:
        """Before ``doc[key] = value`` (with everything nested in it) is written."""
        node = _node(doc, container_id, {})
        if node is not None:
            found = self._plain(node, key, value, (key,))
            if found is not None:
                raise _local(doc, container_id, found)

    def items(self, doc: Document, container_id: ContainerId, pos: int, values: Any) -> None:
        """Before ``values`` are inserted (or set) in a list from index ``pos``."""
        node = _node(doc, container_id, {})
        if node is not None:
            for i, value in enumerate(values):
                found = self._plain(node, pos + i, value, (pos + i,))
                if found is not None:
                    raise _local(doc, container_id, found)

    def map_write(self, doc: Document, container_id: ContainerId, key: str, value: Any) -> None:
        """Before one map op: ``value`` is a scalar, a container op value, or DELETED."""
        if container_id == ROOT and key == ACCESS_NAME:
            return  # the access policy's link: not the schema's business
        node = _node(doc, container_id, {})
        if value is DELETED:
            found = check_map_delete(node, key, ())
        else:
            found = check_map_set(node, key, value, ())
        if found is not None:
            raise _local(doc, container_id, found)
        self.touch(doc, container_id)
        if type(value) is NamedRef:
            # the named container it links: remember its value before, as a
            # receiver will see it at the event's parents (empty if never written)
            named = named_container(value.name, value.kind)
            child = node.child(key) if node is not None else None
            if child is not None and child.checks_state and named not in self._before:
                self._before[named] = _value_of(doc._state, named, child)

    def set_write(self, doc: Document, container_id: ContainerId, value: Scalar, add: bool) -> None:
        """Before an element is added to (or removed from) a set."""
        if add:
            found = check_item(_node(doc, container_id, {}), value, ())
            if found is not None:
                raise _local(doc, container_id, found)
        self.touch(doc, container_id)

    def touch(self, doc: Document, container_id: ContainerId) -> None:
        """Before the transaction first changes a container: remember its value,
        and the values of its ancestors with deep constraints."""
        if container_id in self._touched:
            return
        self._touched.add(container_id)
        state = doc._state
        before = self._before
        node = _node(doc, container_id, {})
        if node is not None and node.checks_state and container_id not in before:
            before[container_id] = _value_of(state, container_id, node)
        for ancestor, ancestor_node in _ancestors(doc, container_id, {}):
            if ancestor_node.deep and ancestor not in before:
                before[ancestor] = _value_of(state, ancestor, ancestor_node)

    def commit(self, doc: Document, ops: Sequence[Op]) -> None:
        """At the end of a transaction: the state checks. On a violation the
        transaction is rolled back and ``SchemaViolationError`` raised."""
        if not self._before and not any(map(_makes_containers, ops)):
            self.reset()  # nothing it touched has constraints on its state
            return
        counter = doc._local_log().next_counter(doc.replica_id)
        try:
            plan = _plan(doc, ops, doc.replica_id, counter, {})
            before = [ABSENT if new else self._before.get(cid, ABSENT) for cid, _, new in plan]
            found = _judge(doc, plan, before)
        finally:
            self.reset()
        if found is not None:
            doc._rollback()
            raise found.local()

    def reset(self) -> None:
        """Forget the transaction (committed or rolled back)."""
        self._before.clear()
        self._touched.clear()

    def forget(self) -> None:
        """The state was rebuilt: forget the transaction, and the nodes found
        (the ids of containers undone may be given to new ones)."""
        self.reset()
        self._nodes.clear()

    def _plain(self, parent: Node, key: str | int, value: Any, path: Path) -> Violation | None:
        """Check a plain value about to be written at ``key`` of ``parent``, and
        everything nested in it, as the ops that will write it would be."""
        if isinstance(value, Proxy):
            value = value.to_json()
        child = parent.child(key)
        if child is not None and child.encrypted:
            return _plaintext(parent, child, key, value, path)  # the document seals it
        if child is not None and child.container_kind is not None:
            return _policy_value(child, value, path)  # the document converts it
        op_value = _op_value(value)
        if isinstance(key, str):
            found = check_map_set(parent, key, op_value, path[:-1])
        else:
            found = check_item(parent, op_value, path)
        if found is not None or child is None:
            return found
        if isinstance(value, dict):
            for name, item in value.items():
                found = self._plain(child, name, item, (*path, name))
                if found is not None:
                    return found
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                found = self._plain(child, i, item, (*path, i))
                if found is not None:
                    return found
        elif isinstance(value, Set):
            for item in value.initial:
                found = check_item(child, item, path)
                if found is not None:
                    return found
        return None

    # -- received events -----------------------------------------------------------------

    def integrate(
        self, doc: Document, event: Event, apply: Callable[[DocState, Event], None]
    ) -> None:
        """Check a received event (its ops already checked as ops) and apply it,
        or raise ``SchemaRejectedError`` with the state unchanged."""
        state = doc._state
        author = event.id[0]
        ops = [op for op in event.ops if not is_policy_op(op)]  # the access policy's
        places = _places(state, event.ops, author, event.counter)
        found = _static(doc, ops, places)
        if found is not None:
            raise found.remote(event.id)
        plan = _plan(doc, event.ops, author, event.counter, places)
        if not plan:
            apply(state, event)
            return
        log = doc._log
        parents = [p for p, _ in event.parents]
        if set(parents) == set(log.heads):
            # its causal past is the present state
            before = [ABSENT if new else _value_of(state, cid, node) for cid, node, new in plan]
            apply(state, event)
            found = _judge(doc, plan, before)
            if found is not None:
                doc._rollback()  # rebuilt from the log, which does not have it
                raise found.remote(event.id)
            return
        past = doc.at(Version(log.full_vector(parents)))
        view = past._state
        before = [ABSENT if new else _value_of(view, cid, node) for cid, node, new in plan]
        apply(view, event)
        found = _judge(past, plan, before)
        if found is not None:
            raise found.remote(event.id)
        apply(state, event)

    # -- the whole document ------------------------------------------------------------

    def violations(self, doc: Document) -> list[Violation]:
        value = doc._lenient_get(())  # a sealed value that does not open: its marker
        value.pop(ACCESS_NAME, None)  # the access policy: not the schema's business
        return violations(self.schema, value)


# -- helpers ---------------------------------------------------------------------------


def _node(doc: Document, container_id: ContainerId, places: Places) -> Node | None:
    """The schema node of a container, found from where it was created, as
    ``Document._node_of`` does (``places``: where the event being checked puts
    the containers it creates, which the state does not hold yet). ``None``
    where the schema says nothing, or for a container linked inside itself."""
    guard = doc._guard
    assert guard is not None
    cached = guard._nodes.get(container_id, _UNKNOWN)
    if cached is not _UNKNOWN:
        return cast(Node | None, cached)
    found = doc._state.place_keys(container_id, places)
    if found is None:
        return None  # not placed yet, or linked inside itself
    keys, placed = found
    node: Node | None = guard.schema.root
    for key in keys:
        node = node.child(key if key is not None else 0) if node is not None else None
    if placed:
        guard._nodes[container_id] = node
    return node


def _parent(doc: Document, container_id: ContainerId, places: Places) -> tuple[Any, Any] | None:
    return places.get(container_id) or doc._state.parent_of(container_id)


def _ancestors(
    doc: Document, container_id: ContainerId, places: Places
) -> list[tuple[ContainerId, Node]]:
    """The ancestors of a container that have a schema node, nearest first
    (none when no node of the schema has deep constraints: nobody asks)."""
    found: list[tuple[ContainerId, Node]] = []
    guard = doc._guard
    if guard is None or not guard.schema.deep:
        return found
    place = _parent(doc, container_id, places) if container_id != ROOT else None
    while place is not None and len(found) < 1000:
        ancestor = place[0]
        node = _node(doc, ancestor, places)
        if node is not None:
            found.append((ancestor, node))
        place = _parent(doc, ancestor, places) if ancestor != ROOT else None
    return found


def _places(state: DocState, ops: Sequence[Op], author: str, counter: int) -> dict[Any, Any]:
    """Where an event's ops put the containers they create or first link."""
    places: dict[Any, Any] = {}
    for op in ops:
        kind = op[0]
        if kind in (MAP_SET, LIST_SET):
            key = op[2] if kind == MAP_SET else None
            _place(state, places, op[3], (author, counter), (op[1], key))
        elif kind == LIST_INSERT:
            for i, value in enumerate(op[4]):
                _place(state, places, value, (author, counter + i), (op[1], None))
        counter += op_length(op)
    return places


def _place(
    state: DocState, places: dict[Any, Any], value: Any, op_id: Any, where: tuple[Any, Any]
) -> None:
    if type(value) is NewContainer:
        places[op_id] = where
    # a named container is placed by its name (DocState.parent_of)


def _static(doc: Document, ops: Sequence[Op], places: Places) -> Violation | None:
    """The static checks of a received event's ops."""
    for op in ops:
        kind = op[0]
        found: Violation | None = None
        if kind == MAP_SET:
            found = check_map_set(_node(doc, op[1], places), op[2], op[3], ())
        elif kind == MAP_DELETE:
            found = check_map_delete(_node(doc, op[1], places), op[2], ())
        elif kind == LIST_INSERT:
            node = _node(doc, op[1], places)
            for value in op[4]:
                found = found or check_item(node, value, ())
        elif kind == LIST_SET:
            found = check_item(_node(doc, op[1], places), op[3], ())
        elif kind == SET_ADD:
            found = check_item(_node(doc, op[1], places), op[2], ())
        if found is not None:
            return _at(doc, op[1], found, places)
    return None


def _plan(doc: Document, ops: Sequence[Op], author: str, counter: int, places: Places) -> Plan:
    """The containers whose state an event may have changed in a way the schema
    constrains: those its ops edit, create or link, and their ancestors with
    deep constraints. The same on every replica: it depends on the event alone."""
    created: set[Any] = set()
    order: dict[Any, None] = {}
    for op in ops:
        kind = op[0]
        if is_policy_op(op):  # the access policy's: not the schema's business
            counter += op_length(op)
            continue
        order[op[1]] = None
        if kind in (MAP_SET, LIST_SET):
            _note(op[3], (author, counter), created, order)
        elif kind == LIST_INSERT:
            for i, value in enumerate(op[4]):
                _note(value, (author, counter + i), created, order)
        counter += op_length(op)
    plan: Plan = []
    seen: set[Any] = set()
    for container_id in order:
        node = _node(doc, container_id, places)
        if node is not None and node.checks_state and container_id not in seen:
            seen.add(container_id)
            plan.append((container_id, node, container_id in created))
        for ancestor, ancestor_node in _ancestors(doc, container_id, places):
            if ancestor_node.deep and ancestor not in seen:
                seen.add(ancestor)
                plan.append((ancestor, ancestor_node, ancestor in created))
    return plan


def _makes_containers(op: Op) -> bool:
    """Whether an op creates or links a container."""
    kind = op[0]
    if kind in (MAP_SET, LIST_SET):
        return type(op[3]) is NewContainer or type(op[3]) is NamedRef
    if kind == LIST_INSERT:
        return any(type(v) is NewContainer or type(v) is NamedRef for v in op[4])
    return False


def _note(value: Any, op_id: Any, created: set[Any], order: dict[Any, None]) -> None:
    if type(value) is NewContainer:
        created.add(op_id)
        order[op_id] = None
    elif type(value) is NamedRef:
        order[named_container(value.name, value.kind)] = None


def _judge(doc: Document, plan: Plan, before: list[Any]) -> Violation | None:
    """The first container of ``plan`` whose change from ``before`` breaks or
    worsens a constraint on its state, in ``doc``'s state."""
    state = doc._state
    for (container_id, node, _), old in zip(plan, before, strict=True):
        found = check_state(node, old, _value_of(state, container_id, node), ())
        if found is not None:
            return _at(doc, container_id, found, {})
    return None


def _value_of(state: DocState, container_id: ContainerId, node: Node) -> Any:
    """What the state checks of ``node`` need of a container's value: all of it
    when the constraints are deep, else a map's keys, a list's length, or the
    value of a text, counter or set."""
    container = state.containers.get(container_id)
    if container is None:
        if container_id[0].startswith("/"):
            return _EMPTY[container_id[1]]
        return ABSENT
    if node.deep:
        return state.to_json(container)
    if isinstance(container, MapState):
        return {
            key: None
            for key in container.entries
            if state.map_value(container, key) is not DELETED
            and (container_id != ROOT or key != ACCESS_NAME)
        }
    if isinstance(container, ListState):
        return [None] * container.seq.visible
    return state.to_json(container)


def _at(doc: Document, container_id: ContainerId, found: Violation, places: Places) -> Violation:
    """``found`` (relative to a container) with the container's document path."""
    return Violation(_path_of(doc, container_id, places) + found.path, found.reason, found.keyword)


def _path_of(doc: Document, container_id: ContainerId, places: Places) -> Path:
    """Where a container sits, for messages: keys, and indices where the
    element can be found ("-" where it cannot)."""
    parts: list[str | int] = []
    state = doc._state
    while container_id != ROOT and len(parts) < 1000:
        place = _parent(doc, container_id, places)
        if place is None:
            parts.append(f"<{container_id[0]}>")
            break
        parent, key = place
        parts.append(key if key is not None else _index_in(state, parent, container_id))
        container_id = parent
    return tuple(reversed(parts))


def _index_in(state: DocState, list_id: ContainerId, container_id: ContainerId) -> int | str:
    container = state.containers.get(list_id)
    if isinstance(container, ListState):
        for index, element in enumerate(container.element_ids()):
            write = container.elements[element].register.winner()
            if write is not None and (write[1], write[2]) == container_id:
                return index
    return "-"


def _local(doc: Document, container_id: ContainerId, found: Violation) -> Exception:
    return _at(doc, container_id, found, {}).local()


def _op_value(value: Any) -> Any:
    """The op value a plain value to write becomes (see ``proxies.check_value``)."""
    if isinstance(value, dict):
        return NewContainer(Kind.MAP)
    if isinstance(value, list | tuple):
        return NewContainer(Kind.LIST)
    if isinstance(value, Text):
        return NewContainer(Kind.TEXT)
    if isinstance(value, Counter):
        return NewContainer(Kind.COUNTER)
    if isinstance(value, Set):
        return NewContainer(value.kind)
    return value


def _plaintext(
    parent: Node, child: Node, key: str | int, value: Any, path: Path
) -> Violation | None:
    """The plain value of an encrypted field, checked whole against its
    subschema by its writer: the only replica that can read it."""
    reason = parent.key_error(key) if isinstance(key, str) else None
    if reason is not None:
        return Violation(path, reason, "additionalProperties")
    error = child.first_error(plain_json(value))
    return Violation.of(error, path) if error is not None else None


def _policy_value(node: Node, value: Any, path: Path) -> Violation | None:
    """A value written to a counter, text or set field, which the document
    turns into edits of the field's container: what it may be."""
    kind = node.container_kind
    allowed = _POLICY_VALUES.get(kind or "")
    if allowed is not None:
        if isinstance(value, allowed) and not isinstance(value, bool):
            return None
        reason = f"an x-merge {node.policy!r} field takes a {allowed[0].__name__}, not {value!r}"
        return Violation(path, reason, "x-merge")
    assert node.policy in SET_POLICIES and node.policy in CONTAINER_POLICIES
    items = value.initial if isinstance(value, Set) else value
    if not isinstance(items, list | tuple | set | frozenset):
        reason = f"an x-merge {node.policy!r} field takes a list of scalars, not {value!r}"
        return Violation(path, reason, "x-merge")
    for item in items:
        found = check_item(node, item, path)
        if found is not None:
            return found
    return None


__all__ = ["SchemaGuard"]
