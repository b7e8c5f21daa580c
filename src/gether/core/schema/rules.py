"""Validating edits against a schema: pure functions of nodes and values.

Two kinds of checks, so that an edit is judged by what it writes and by the
state it leaves, never by anything else a replica happens to hold:

* **Static** checks look at one written value and where it goes: a scalar
  against the field's whole subschema, a new container's kind against the
  field's type and policy (object - Map, array - List, or a Set when the
  policy is ``union*``, string with ``text`` - Text, integer with
  ``counter`` - Counter), a key the map may not have, a required key deleted.
  They need no state, so they run before an op is made.
* **State** checks look at a container's value after the edits of one event
  (``required``, ``minItems``/``maxItems``, ``pattern`` on a text, ``maximum``
  on a counter...). A change is refused only for a violation it made: one its
  state before already had is tolerated unless it got worse (a longer list
  over ``maxItems``, a shorter one under ``minItems``), because merging valid
  concurrent events can produce violations no single event made, and nobody
  must be stuck unable to edit, or to fix, such a state.

Each check returns a :class:`Violation` (where in the document, why) or
``None``; the document turns it into a local or a remote error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gether.core.schema.policies import KIND_WORDS, POLICY_OF_KIND
from gether.core.schema.tree import Node, Schema
from gether.core.sealed import Encrypted, is_sealed
from gether.errors import SchemaRejectedError, SchemaViolationError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

Path = tuple[str | int, ...]


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final[Any] = _Absent()
"""The state before of a container an event creates."""

_GROWS: Final = frozenset({"maxItems", "maxProperties", "maxLength"})
_SHRINKS: Final = frozenset({"minItems", "minProperties", "minLength"})
_RISES: Final = frozenset({"maximum", "exclusiveMaximum"})
_FALLS: Final = frozenset({"minimum", "exclusiveMinimum"})
_PER_NAME: Final = frozenset({"required", "dependentRequired"})


@dataclass(frozen=True, slots=True)
class Violation:
    """Where in the document (keys and indices) and why, and the keyword."""

    path: Path
    reason: str
    keyword: str

    def local(self) -> SchemaViolationError:
        return SchemaViolationError(self.path, self.reason)

    def remote(self, event: object = None) -> SchemaRejectedError:
        return SchemaRejectedError(self.path, self.reason, event)

    @classmethod
    def of(cls, error: ValidationError, path: Path) -> Violation:
        return cls(path + tuple(error.absolute_path), _reason(error), str(error.validator))


_SIZES: Final = {
    "maxItems": ("items", "more than the maximum of"),
    "minItems": ("items", "fewer than the minimum of"),
    "maxProperties": ("keys", "more than the maximum of"),
    "minProperties": ("keys", "fewer than the minimum of"),
    "maxLength": ("characters", "more than the maximum of"),
    "minLength": ("characters", "fewer than the minimum of"),
}
_MAX_REASON: Final = 300


def _reason(error: ValidationError) -> str:
    """The validator's message, without quoting a whole big container."""
    size = _SIZES.get(str(error.validator))
    if size is not None and isinstance(error.instance, str | list | dict):
        unit, relation = size
        return f"{len(error.instance)} {unit}, {relation} {error.validator_value}"
    message = error.message
    if len(message) > _MAX_REASON:
        message = message[: _MAX_REASON - 3] + "..."
    return message


# -- static checks -------------------------------------------------------------------


def kind_name(value: object) -> str | None:
    """The container kind an op value creates or links (``Kind`` member name),
    ``None`` for a scalar."""
    kind = getattr(value, "kind", None)
    name = getattr(kind, "name", None)
    return name if isinstance(name, str) else None


def check_map_set(parent: Node | None, key: str, value: object, path: Path) -> Violation | None:
    """May ``value`` (a scalar, or an op value that makes or links a container)
    be written at ``key`` of a map at ``parent``? ``path`` is the map's path."""
    if parent is None:
        return None
    where = (*path, key)
    reason = parent.key_error(key)
    if reason is not None:
        return Violation(where, reason, "additionalProperties")
    return _check_value(parent.child(key), parent.applicable(key), value, where)


def check_map_delete(parent: Node | None, key: str, path: Path) -> Violation | None:
    """May ``key`` be deleted from a map at ``parent``?"""
    if parent is not None and key in parent.required:
        return Violation((*path, key), f"{key!r} is a required property", "required")
    return None


def check_item(parent: Node | None, value: object, path: Path) -> Violation | None:
    """May ``value`` be put in a list (or added to a set) at ``parent``?

    ``path`` is the item's path if known, else the list's. With ``prefixItems``
    an item's constraint depends on its position, which concurrent edits move:
    then this passes and the whole-list state check decides.
    """
    if parent is None:
        return None
    rule = parent.item_rule()
    if rule is None:
        return None
    return _check_value(rule, [rule], value, path)


def _check_value(
    node: Node | bool | None, rules: list[Node | bool], value: object, path: Path
) -> Violation | None:
    """Check ``value`` against the field's ``node`` (policy and kind) and every
    rule that applies there (the whole subschema, for a scalar)."""
    if False in rules:
        return Violation(path, "nothing may be written here (its schema is false)", "false")
    if type(value) is bytes or (isinstance(node, Node) and node.encrypted):
        return _sealed_problem(node, value, path)
    kind = kind_name(value)
    if isinstance(node, Node):
        problem = _kind_problem(node, kind)
        if problem is not None:
            return Violation(path, problem, "x-merge" if node.container_kind else "type")
    if kind is not None:
        return None
    for rule in rules:
        if isinstance(rule, Node):
            error = rule.first_error(value)
            if error is not None:
                return Violation.of(error, path)
    return None


def _sealed_problem(node: Node | bool | None, value: object, path: Path) -> Violation | None:
    """An encrypted field takes a well-formed sealed value, and nothing else
    does. Its plaintext was checked by its writer, who held the key; no one
    else can (see ``core/sealed.py``)."""
    encrypted = isinstance(node, Node) and node.encrypted
    if encrypted and not is_sealed(value):
        return Violation(path, "an x-encrypt field holds an encrypted value only", "x-encrypt")
    if not encrypted:
        return Violation(path, "only an x-encrypt field holds an encrypted value", "x-encrypt")
    return None


def _kind_problem(node: Node, kind: str | None) -> str | None:
    """Why a value of container ``kind`` (``None``: a scalar) does not fit
    ``node``'s policy and type, or ``None``."""
    needed = node.container_kind
    if needed is not None:
        if kind == needed:
            return None
        what = f"a {KIND_WORDS.get(kind, kind)}" if kind is not None else "a plain value"
        return f"an x-merge {node.policy!r} field holds a {KIND_WORDS[needed]}, not {what}"
    if kind is None:
        return None
    policy = POLICY_OF_KIND.get(kind)
    if policy is not None:
        return (
            f"a {KIND_WORDS[kind]} needs x-merge {policy!r} in the schema "
            f"(this field's is {node.policy!r})"
        )
    json_type = {"MAP": "object", "LIST": "array"}.get(kind)
    types = node.types
    if json_type is not None and types is not None and json_type not in types:
        return f"a {KIND_WORDS[kind]} is not of type {' or '.join(sorted(types))}"
    return None


# -- state checks -------------------------------------------------------------------------


def check_state(node: Node | None, before: Any, after: Any, path: Path) -> Violation | None:
    """Does a container's change from ``before`` (its JSON value, or
    ``ABSENT`` if the change created it) to ``after`` make a violation of the
    constraints on its state, or worsen one it had?"""
    if node is None or not node.checks_state:
        return None
    errors = _readable(node.state_errors(after))
    if not errors:
        return None
    tolerated = (
        {} if before is ABSENT else {_key(e): e for e in _readable(node.state_errors(before))}
    )
    for error in errors:
        old = tolerated.get(_key(error))
        if old is None or _worse(error, old):
            return Violation.of(error, path)
    return None


def _readable(errors: list[ValidationError]) -> list[ValidationError]:
    """Errors about values every replica can read: an encrypted field's value
    is an opaque ``Encrypted`` in the state (its writer checked it)."""
    return [e for e in errors if type(e.instance) is not Encrypted]


def _key(error: ValidationError) -> tuple[object, ...]:
    name = error.message if error.validator in _PER_NAME else ""
    return tuple(error.absolute_path), tuple(error.absolute_schema_path), name


def _worse(now: ValidationError, then: ValidationError) -> bool:
    keyword = now.validator
    new: Any = now.instance
    old: Any = then.instance
    try:
        if keyword in _GROWS:
            return len(new) > len(old)
        if keyword in _SHRINKS:
            return len(new) < len(old)
        if keyword in _RISES:
            return bool(new > old)
        if keyword in _FALLS:
            return bool(new < old)
    except TypeError:
        return True
    return False


def violations(schema: Schema, value: Any) -> list[Violation]:
    """Every way a document's JSON ``value`` breaks ``schema``, in a stable order."""
    found = [Violation.of(error, ()) for error in _readable(list(schema.errors(value)))]
    return sorted(found, key=lambda v: (tuple(map(str, v.path)), v.keyword, v.reason))


__all__ = [
    "ABSENT",
    "Violation",
    "check_item",
    "check_map_delete",
    "check_map_set",
    "check_state",
    "kind_name",
    "violations",
]
