"""A document's JSON Schema, checked once and compiled into a tree of nodes.

``Schema(source)`` checks the source against the Draft 2020-12 metaschema and
against what Gether needs of it: every ``x-merge`` names a known policy that
fits its field's type, every ``$ref`` is a local JSON pointer, no policy hides
where a document path cannot find it (inside ``anyOf`` and the like), and
``x-encrypt`` is a boolean on an object property whose policy is ``lww``. Then
``schema.root`` is the node of the document's root map, and ``node.child(key)``
walks down as a document path does: a map key through ``properties``,
``patternProperties`` and ``additionalProperties``, a list index through
``prefixItems`` and ``items``, following ``$ref`` on the way.

A node knows its merge ``policy`` and what validating edits at it needs: the
full subschema (for a scalar written there), which keys may be written, which
keys are required, and the constraints that depend on the container's current
state (``state_keywords``, and whether they look into the values below it:
``deep``). Nodes are made on first use and cached, so a recursive schema is a
finite graph.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from gether.core.schema.policies import (
    LWW,
    SCALAR_TYPES,
    SET_POLICIES,
    check_fits,
    check_policy,
    container_kind,
)
from gether.errors import SchemaError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

# jsonschema is imported when a schema is first compiled, so that documents
# without one (and ``import gether``) do not pay for it

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"

SubSchema = dict[str, Any] | bool


class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final[Any] = _NoDefault()
"""``node.default`` of a field whose schema gives none."""

# Where subschemas sit. "Navigable" ones are where a document path leads, so a
# policy may be declared there; in the others a policy would depend on the value.
_NAV_MAPS: Final = ("properties", "patternProperties")
_NAV_ONE: Final = ("additionalProperties", "items")
_NAV_LISTS: Final = ("prefixItems",)
_DEFS: Final = ("$defs", "definitions")
_OTHER_MAPS: Final = ("dependentSchemas",)
_OTHER_ONE: Final = (
    "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_OTHER_LISTS: Final = ("allOf", "anyOf", "oneOf")
_UNSUPPORTED: Final = (
    "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
)  # fmt: skip

SHALLOW_KEYWORDS: Final = frozenset({
    "required", "dependentRequired", "minProperties", "maxProperties",
    "minItems", "maxItems", "minLength", "maxLength", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
})  # fmt: skip
"""Constraints on a container's own state, that need only its keys (a map),
its length (a list) or its value (a text, a counter)."""

DEEP_KEYWORDS: Final = frozenset({
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "enum", "const",
    "uniqueItems", "contains", "minContains", "maxContains", "prefixItems",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems",
})  # fmt: skip
"""Constraints whose verdict depends on the values below the container too."""


class Schema:
    """A compiled document schema. Immutable; share one between documents."""

    __slots__ = ("_nodes", "_patterns", "_validator", "deep", "digest", "root", "source")

    def __init__(self, source: Mapping[str, Any]) -> None:
        self.source: dict[str, Any] = _plain_json(source)
        _check_draft(self.source)
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError as JsonSchemaError

        try:
            Draft202012Validator.check_schema(self.source)
        except JsonSchemaError as exc:
            raise SchemaError(exc.message, _pointer(exc.absolute_path)) from exc
        canonical = json.dumps(self.source, sort_keys=True, separators=(",", ":"))
        self.digest = hashlib.sha256(canonical.encode()).hexdigest()
        """SHA-256 of the schema's canonical JSON: equal digests, equal schemas."""
        self._validator = Draft202012Validator(self.source)
        self._nodes: dict[str, Node] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}
        _Walker(self).walk(self.source, "", navigable=True)
        self.deep = any(node.deep for node in self._nodes.values())
        """Whether any node has deep constraints (so edits must look at ancestors)."""
        root = self.node("")
        assert root is not None
        if root.types is not None and "object" not in root.types:
            raise SchemaError("a document is a map: the root's type must be 'object'")
        self.root: Node = root

    def node(self, pointer: str) -> Node | None:
        """The node of the subschema at a JSON pointer (``None`` for a boolean one)."""
        node = self._nodes.get(pointer)
        if node is None:
            target = self.resolve(pointer)
            if not isinstance(target, dict):
                return None
            node = self._nodes[pointer] = Node(self, pointer, self._chain(pointer, target))
        return node

    def node_at(self, path: tuple[str | int, ...]) -> Node | None:
        """The node a document path leads to, or ``None`` where nothing constrains it."""
        node: Node | None = self.root
        for part in path:
            if node is None:
                return None
            node = node.child(part)
        return node

    def resolve(self, pointer: str) -> SubSchema:
        """The subschema at a JSON pointer into the source ("" is the root)."""
        current: Any = self.source
        if pointer:
            for raw in pointer[1:].split("/"):
                part = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(current, dict) and part in current:
                    current = current[part]
                elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                    current = current[int(part)]
                else:
                    raise SchemaError("$ref leads nowhere", pointer)
        if not isinstance(current, dict | bool):
            raise SchemaError("$ref does not lead to a schema", pointer)
        return current

    def pattern(self, regex: str) -> re.Pattern[str]:
        compiled = self._patterns.get(regex)
        if compiled is None:
            compiled = self._patterns[regex] = re.compile(regex)
        return compiled

    def validator(self, subschema: SubSchema) -> Validator:
        """A validator for a subschema of this schema (its ``$ref`` resolve here)."""
        return self._validator.evolve(schema=subschema)

    def errors(self, value: Any) -> Iterator[ValidationError]:
        """Every way ``value`` (a whole document's JSON) breaks the schema."""
        return self._validator.iter_errors(value)

    def _chain(
        self, pointer: str, target: dict[str, Any]
    ) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The subschema at ``pointer`` and those its ``$ref`` leads through."""
        chain = [(pointer, target)]
        seen = {pointer}
        while "$ref" in target:
            pointer = ref_pointer(target["$ref"], pointer)
            if pointer in seen:
                raise SchemaError("$ref loops back to itself", pointer)
            seen.add(pointer)
            resolved = self.resolve(pointer)
            if not isinstance(resolved, dict):
                break
            target = resolved
            chain.append((pointer, target))
        return tuple(chain)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"<Schema {self.digest[:12]}>"


class Node:
    """One place in a document's schema (see the module docstring).

    ``child(key)`` and ``policy`` are the protocol the merge policies use.
    """

    __slots__ = (
        "_chain",
        "_full",
        "_schema",
        "_state",
        "deep",
        "default",
        "encrypted",
        "pointer",
        "policy",
        "required",
        "state_keywords",
        "subschema",
        "types",
    )

    def __init__(
        self, schema: Schema, pointer: str, chain: tuple[tuple[str, dict[str, Any]], ...]
    ) -> None:
        self._schema = schema
        self._chain = chain
        self.pointer = pointer
        """Where this node's subschema sits in the schema, as a JSON pointer."""
        self.subschema: dict[str, Any] = chain[0][1]
        members = [sub for _, sub in chain]
        policy = next((m["x-merge"] for m in members if "x-merge" in m), LWW)
        self.policy: str = policy
        """The merge policy of the field (``"lww"`` when the schema names none)."""
        self.encrypted: bool = any(m.get("x-encrypt") is True for m in members)
        """Whether the field is ``x-encrypt``: it holds one sealed plain value."""
        self.types = _types_of(members)
        """The JSON types the field may hold, or ``None`` if the schema does not say."""
        self.required = frozenset(k for m in members for k in m.get("required", ()))
        self.default: Any = next((m["default"] for m in members if "default" in m), NO_DEFAULT)
        self.state_keywords = frozenset(k for m in members for k in m if k in SHALLOW_KEYWORDS)
        self.deep = any(k in DEEP_KEYWORDS for m in members for k in m)
        self._full: Validator | None = None
        self._state: Validator | None = None

    @property
    def checks_state(self) -> bool:
        """Whether a container here must be checked after edits change it."""
        return bool(self.state_keywords) or self.deep

    @property
    def container_kind(self) -> str | None:
        """The container kind (``Kind`` name) the policy requires, if any."""
        return container_kind(self.policy)

    def child(self, key: str | int) -> Node | None:
        """The node of a map key (``str``) or a list index (``int``); ``None``
        where the schema puts no constraint there (or forbids it)."""
        if isinstance(key, str):
            for pointer in self._key_pointers(key):
                return self._schema.node(pointer)
            return None
        for member_pointer, member in self._chain:
            prefix = member.get("prefixItems")
            if prefix is not None and 0 <= key < len(prefix):
                return self._schema.node(f"{member_pointer}/prefixItems/{key}")
        for member_pointer, member in self._chain:
            if "items" in member:
                return self._schema.node(f"{member_pointer}/items")
        return None

    def applicable(self, key: str) -> list[Node | bool]:
        """Every subschema a value at map key ``key`` must satisfy (``properties``
        and every matching pattern, else ``additionalProperties``)."""
        schema = self._schema
        return [schema.node(p) or bool(schema.resolve(p)) for p in self._key_pointers(key)]

    def _key_pointers(self, key: str) -> Iterator[str]:
        """Pointers of the subschemas that apply to map key ``key``, most specific first."""
        found = False
        for pointer, member in self._chain:
            properties = member.get("properties")
            if properties is not None and key in properties:
                found = True
                yield f"{pointer}/properties/{_escape(key)}"
        for pointer, member in self._chain:
            patterns = member.get("patternProperties")
            for regex in patterns or ():
                if self._schema.pattern(regex).search(key):
                    found = True
                    yield f"{pointer}/patternProperties/{_escape(regex)}"
        if found:
            return
        for pointer, member in self._chain:
            if "additionalProperties" in member:
                yield f"{pointer}/additionalProperties"

    def key_error(self, key: str) -> str | None:
        """Why ``key`` may not be written in a map here, or ``None`` if it may."""
        for pointer, member in self._chain:
            names = member.get("propertyNames")
            if names is not None:
                error = _first_error(self._schema.validator(names), key)
                if error is not None:
                    return f"key {key!r}: {error.message}"
            if member.get("additionalProperties") is False:
                listed = key in member.get("properties", ())
                matched = any(
                    self._schema.pattern(r).search(key) for r in member.get("patternProperties", ())
                )
                if not listed and not matched:
                    return f"additional property {key!r} is not allowed (at {pointer or '#'})"
        if False in self.applicable(key):
            return f"property {key!r} is not allowed"
        return None

    def item_rule(self) -> Node | bool | None:
        """What every list item must satisfy wherever it sits (``True``:
        anything), or ``None`` when the schema has ``prefixItems``: an item's
        constraint then depends on its position, so whole-list checks decide."""
        for _, member in self._chain:
            if "prefixItems" in member:
                return None
        for pointer, member in self._chain:
            if "items" in member:
                return self._schema.node(f"{pointer}/items") or bool(member["items"])
        return True

    def first_error(self, value: Any) -> ValidationError | None:
        """The most relevant way ``value`` breaks this node's whole subschema."""
        validator = self._full
        if validator is None:
            validator = self._full = self._schema.validator(self.subschema)
        return _first_error(validator, value)

    def state_errors(self, value: Any) -> list[ValidationError]:
        """How a container's current value here breaks the constraints on its
        state: the shallow ones, or the whole subschema when ``deep``."""
        if not self.checks_state:
            return []
        validator = self._state
        if validator is None:
            if self.deep:
                validator = self._schema.validator(self.subschema)
            else:
                from jsonschema import Draft202012Validator

                shallow = [
                    {k: v for k, v in m.items() if k in SHALLOW_KEYWORDS} for _, m in self._chain
                ]
                parts = [part for part in shallow if part]
                validator = Draft202012Validator(parts[0] if len(parts) == 1 else {"allOf": parts})
            self._state = validator
        return list(validator.iter_errors(value))

    def __repr__(self) -> str:
        return f"<Node #{self.pointer} {self.policy}>"


class _Walker:
    """Checks the whole source once: refs, unsupported keywords, policies."""

    __slots__ = ("_schema", "_walked")

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._walked: set[tuple[str, bool]] = set()

    def walk(self, subschema: Any, pointer: str, navigable: bool) -> None:
        if not isinstance(subschema, dict) or (pointer, navigable) in self._walked:
            return
        self._walked.add((pointer, navigable))
        for keyword in _UNSUPPORTED:
            if keyword in subschema:
                raise SchemaError(f"{keyword} is not supported: use $defs and $ref", pointer)
        if "$id" in subschema and pointer:
            raise SchemaError("$id is only supported at the root", pointer)
        if "$ref" in subschema:
            target = ref_pointer(subschema["$ref"], pointer)
            node_target = self._schema.resolve(target)
            if not navigable:  # a policy it leads to would be hidden too
                self.walk(node_target, target, navigable=False)
        if "x-merge" in subschema:
            policy = check_policy(subschema["x-merge"], pointer)
            if not navigable and policy != LWW:
                raise SchemaError(
                    "x-merge is only supported where a document path leads (properties, "
                    "patternProperties, additionalProperties, items, prefixItems, $defs), "
                    "not inside allOf, anyOf, oneOf, not, if/then/else or the like",
                    pointer,
                )
        if "x-encrypt" in subschema:
            _check_encrypt(subschema["x-encrypt"], pointer, navigable)
        if navigable:
            self._check_node(pointer)
        for keyword, child, child_pointer in _subschemas(subschema, pointer):
            if keyword in _DEFS:
                self.walk(child, child_pointer, navigable=True)
            elif keyword in ("items", "prefixItems") and _encrypts(child):
                raise SchemaError(
                    "x-encrypt is only supported on object properties, not list items",
                    child_pointer,
                )
            elif keyword in _NAV_MAPS or keyword in _NAV_ONE or keyword in _NAV_LISTS:
                self.walk(child, child_pointer, navigable)
            else:
                self.walk(child, child_pointer, navigable=False)

    def _check_node(self, pointer: str) -> None:
        node = self._schema.node(pointer)
        if node is None:
            return
        if pointer == "" and node.policy != LWW:
            raise SchemaError("the root is a map: it takes no x-merge policy", pointer)
        check_fits(node.policy, node.types, pointer)
        if node.encrypted and node.policy != LWW:
            raise SchemaError(
                f"an x-encrypt field holds one sealed value (last writer wins): it cannot "
                f"be merged as x-merge {node.policy!r} (a text, counter or set cannot be "
                "encrypted)",
                pointer,
            )
        if node.policy in SET_POLICIES:
            if node.item_rule() is None:
                raise SchemaError("a set has no positions: no prefixItems", pointer)
            item = node.child(0)
            if item is not None and item.types is not None and not item.types <= SCALAR_TYPES:
                raise SchemaError(f"a set ({node.policy}) holds scalars only", item.pointer)
            if item is not None and item.policy != LWW:
                raise SchemaError("the items of a set take no x-merge policy", item.pointer)


def _check_encrypt(flag: object, pointer: str, navigable: bool) -> None:
    if not isinstance(flag, bool):
        raise SchemaError(f"x-encrypt must be true or false, got {flag!r}", pointer)
    if flag and not navigable:
        raise SchemaError(
            "x-encrypt is only supported where a document path leads (properties, "
            "patternProperties, additionalProperties, $defs), not inside allOf, anyOf, "
            "oneOf, not, if/then/else or the like",
            pointer,
        )
    if flag and pointer == "":
        raise SchemaError("the root is a map: it cannot be encrypted", pointer)


def _encrypts(subschema: object) -> bool:
    return isinstance(subschema, dict) and subschema.get("x-encrypt") is True


def ref_pointer(ref: object, where: str) -> str:
    """The JSON pointer a local ``$ref`` ("#", "#/$defs/x") names."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise SchemaError(f"only local $ref ('#/...') are supported, not {ref!r}", where)
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise SchemaError(f"$ref {ref!r}: anchors are not supported, use '#/$defs/...'", where)
    return pointer


def _subschemas(subschema: dict[str, Any], pointer: str) -> Iterator[tuple[str, Any, str]]:
    for keyword, value in subschema.items():
        if keyword in _NAV_MAPS or keyword in _DEFS or keyword in _OTHER_MAPS:
            if isinstance(value, dict):
                for name, child in value.items():
                    yield keyword, child, f"{pointer}/{keyword}/{_escape(name)}"
        elif keyword in _NAV_ONE or keyword in _OTHER_ONE:
            yield keyword, value, f"{pointer}/{keyword}"
        elif (keyword in _NAV_LISTS or keyword in _OTHER_LISTS) and isinstance(value, list):
            for i, child in enumerate(value):
                yield keyword, child, f"{pointer}/{keyword}/{i}"


def _types_of(members: list[dict[str, Any]]) -> frozenset[str] | None:
    """The JSON types every member allows (``integer`` is a ``number``)."""
    result: frozenset[str] | None = None
    for member in members:
        declared = member.get("type")
        if declared is None:
            continue
        types = frozenset([declared] if isinstance(declared, str) else declared)
        if result is None:
            result = types
        else:
            both = {t for t in result if t in types or (t == "integer" and "number" in types)}
            both |= {t for t in types if t == "integer" and "number" in result}
            result = frozenset(both)
    return result


def _first_error(validator: Validator, value: Any) -> ValidationError | None:
    from jsonschema.exceptions import best_match

    error: ValidationError | None = best_match(validator.iter_errors(value))
    return error


def _check_draft(source: dict[str, Any]) -> None:
    declared = source.get("$schema")
    if declared is not None and str(declared).rstrip("#") != DRAFT:
        raise SchemaError(f"Gether reads JSON Schema Draft 2020-12 ({DRAFT}), not {declared!r}")


def _plain_json(source: Mapping[str, Any]) -> dict[str, Any]:
    """An independent copy of ``source`` as plain JSON (dicts, lists, scalars)."""
    if not isinstance(source, Mapping):
        raise SchemaError(f"a schema is a JSON object (a dict), not {type(source).__name__}")
    try:
        copy = json.loads(json.dumps(source, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"a schema must be plain JSON: {exc}") from exc
    assert isinstance(copy, dict)
    return copy


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer(path: Iterator[Any] | Any) -> str:
    return "".join(f"/{_escape(str(part))}" for part in path)


__all__ = ["DEEP_KEYWORDS", "DRAFT", "NO_DEFAULT", "SHALLOW_KEYWORDS", "Node", "Schema"]
