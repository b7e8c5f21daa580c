"""Schemas: compiling (metaschema, x-merge policies), navigating nodes, and the
pure static and state checks edits are validated with."""

from __future__ import annotations

from typing import Any

import pytest

from gether.core.schema import (
    ABSENT,
    NO_DEFAULT,
    Node,
    Schema,
    Violation,
    check_item,
    check_map_delete,
    check_map_set,
    check_state,
    compile_schema,
    violations,
)
from gether.core.values import Kind, NamedRef, NewContainer
from gether.errors import (
    InvalidEventError,
    SchemaError,
    SchemaRejectedError,
    SchemaViolationError,
    UsageError,
)

TODO_APP: dict[str, Any] = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "x-merge": "mvr", "maxLength": 20},
        "notes": {"type": "string", "x-merge": "text", "pattern": "^[a-z ]*$"},
        "likes": {"type": "integer", "x-merge": "counter", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "x-merge": "union", "items": {"type": "string"}},
        "score": {"type": "integer", "x-merge": "custom:max", "minimum": 0},
        "todos": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/todo"}},
        "settings": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z]+$"},
            "additionalProperties": {"type": ["boolean", "number"]},
        },
    },
    "patternProperties": {"^x-": {"type": "string"}},
    "additionalProperties": False,
    "$defs": {
        "todo": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "done": {"type": "boolean", "default": False},
                "priority": {"enum": ["low", "high"]},
            },
            "additionalProperties": False,
        }
    },
}

MAP = NewContainer(Kind.MAP)
LIST = NewContainer(Kind.LIST)
TEXT = NewContainer(Kind.TEXT)
COUNTER = NewContainer(Kind.COUNTER)
SET = NewContainer(Kind.SET)


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(TODO_APP)


def node(schema: Schema, *path: str | int) -> Node:
    found = schema.node_at(path)
    assert found is not None, path
    return found


# -- compiling ----------------------------------------------------------------------


def test_compiles_and_keeps_an_independent_copy() -> None:
    source = {"type": "object", "properties": {"a": {"type": "integer"}}}
    schema = Schema(source)
    source["properties"]["a"]["type"] = "string"
    assert schema.source["properties"]["a"]["type"] == "integer"
    assert compile_schema(schema) is schema
    assert compile_schema(source) == Schema(source)
    assert Schema({"properties": {}}) != schema
    assert len(schema.digest) == 64 and hash(schema) == hash(Schema(schema.source))


@pytest.mark.parametrize(
    ("source", "where", "words"),
    [
        ({"type": "strin"}, "/type", "is not valid"),
        ({"properties": {"a": {"minimum": "x"}}}, "/properties/a/minimum", "not of type"),
        ({"properties": {"a": {"x-merge": "max"}}}, "/properties/a", "unknown merge policy"),
        ({"properties": {"a": {"x-merge": 3}}}, "/properties/a", "must be a string"),
        ({"properties": {"a": {"x-merge": "custom:"}}}, "/properties/a", "function name"),
        (
            {"properties": {"a": {"type": "string", "x-merge": "counter"}}},
            "/properties/a",
            "'integer'",
        ),
        (
            {"properties": {"a": {"type": "number", "x-merge": "counter"}}},
            "/properties/a",
            "'integer'",
        ),
        (
            {"properties": {"a": {"type": "integer", "x-merge": "text"}}},
            "/properties/a",
            "'string'",
        ),
        ({"properties": {"a": {"type": "object", "x-merge": "union"}}}, "/properties/a", "'array'"),
        (
            {"properties": {"a": {"x-merge": "union", "items": {"type": "object"}}}},
            "/properties/a/items",
            "scalars only",
        ),
        (
            {"properties": {"a": {"x-merge": "union:2p", "prefixItems": [{}]}}},
            "/properties/a",
            "no prefixItems",
        ),
        (
            {"properties": {"a": {"x-merge": "union", "items": {"x-merge": "mvr"}}}},
            "/properties/a/items",
            "take no x-merge",
        ),
        ({"anyOf": [{"properties": {"a": {"x-merge": "mvr"}}}]}, "/anyOf/0/properties/a", "anyOf"),
        (
            {"if": {"$ref": "#/$defs/d"}, "$defs": {"d": {"x-merge": "mvr"}}},
            "/$defs/d",
            "only supported where",
        ),
        ({"x-merge": "mvr"}, "", "root"),
        ({"type": "string"}, "", "root's type"),
        ({"properties": {"a": {"$ref": "other.json#/a"}}}, "/properties/a", "only local $ref"),
        ({"properties": {"a": {"$ref": "#anchor"}}}, "/properties/a", "anchors"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "/$defs/missing", "leads nowhere"),
        ({"properties": {"a": {"$anchor": "x"}}}, "/properties/a", "$anchor"),
        ({"properties": {"a": {"$id": "urn:x"}}}, "/properties/a", "$id"),
        (
            {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
            "/$defs/a",
            "loops",
        ),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "", "2020-12"),
    ],
)
def test_refuses_bad_schemas(source: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        Schema(source)
    assert caught.value.path == where
    assert words in str(caught.value)
    assert isinstance(caught.value, UsageError) and caught.value.code == "invalid_schema"


def test_refuses_what_is_not_a_json_object() -> None:
    with pytest.raises(SchemaError, match="dict"):
        Schema(["type", "object"])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="plain JSON"):
        Schema({"default": float("nan")})
    with pytest.raises(SchemaError, match="plain JSON"):
        Schema({"default": object()})


def test_accepts_every_policy_name() -> None:
    properties = {
        "a": {"x-merge": "lww"},
        "b": {"x-merge": "mvr", "type": "object"},
        "c": {"x-merge": "counter", "type": "integer"},
        "d": {"x-merge": "text"},
        "e": {"x-merge": "union", "items": {"type": ["string", "integer"]}},
        "f": {"x-merge": "union:g"},
        "g": {"x-merge": "union:2p", "type": "array"},
        "h": {"x-merge": "union:lww"},
        "o": {"x-merge": "union:or"},
        "i": {"x-merge": "custom:max", "type": "number"},
        "j": {"type": "array", "items": {"x-merge": "counter"}},
        "k": {"anyOf": [{"x-merge": "lww"}]},
    }
    schema = Schema(
        {"$schema": "https://json-schema.org/draft/2020-12/schema#", "properties": properties}
    )
    policies = {k: node(schema, k).policy for k in properties}
    assert policies == {
        "a": "lww", "b": "mvr", "c": "counter", "d": "text", "e": "union", "f": "union:g",
        "g": "union:2p", "h": "union:lww", "i": "custom:max", "j": "lww", "k": "lww",
        "o": "union:or",
    }  # fmt: skip
    assert node(schema, "j", 0).policy == "counter"
    assert node(schema, "c").container_kind == "COUNTER"
    assert node(schema, "h").container_kind == "LWW_SET"
    assert node(schema, "o").container_kind == "SET"
    assert node(schema, "i").container_kind is None


# -- navigating ---------------------------------------------------------------------


def test_navigates_like_a_document_path(schema: Schema) -> None:
    root = schema.root
    assert root.policy == "lww" and root.pointer == "" and root.required == {"title"}
    assert node(schema, "title").policy == "mvr"
    assert node(schema, "tags").policy == "union"
    assert root.child("x-color") is node(schema, "x-color")
    assert node(schema, "x-color").pointer == "/patternProperties/^x-"
    assert root.child("unknown") is None  # additionalProperties: false
    assert node(schema, "settings", "dark").types == {"boolean", "number"}
    todo = node(schema, "todos", 7)
    assert todo.pointer == "/properties/todos/items"
    assert todo.required == {"text"}
    assert todo.child("done") is not None
    assert node(schema, "todos", 0, "done").default is False
    assert node(schema, "todos", 0, "text").default is NO_DEFAULT
    assert schema.node_at(("title", "deeper")) is None
    assert schema.node_at(("nothing", "at", "all")) is None
    assert todo.child("done") is todo.child("done")  # cached


def test_nodes_follow_refs_and_recursion() -> None:
    schema = Schema(
        {
            "properties": {"tree": {"$ref": "#/$defs/tree"}},
            "$defs": {
                "tree": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string", "x-merge": "text"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/tree"}},
                    },
                }
            },
        }
    )
    deep = node(schema, "tree", "children", 0, "children", 5)
    assert deep.pointer == "/$defs/tree/properties/children/items"
    assert node(schema, "tree", "children", 0, "children", 5, "label").policy == "text"
    assert deep.child("children") is node(schema, "tree", "children")  # a finite graph
    ref_site = Schema(
        {
            "properties": {"n": {"$ref": "#/$defs/n", "x-merge": "counter", "maximum": 5}},
            "$defs": {"n": {"type": "integer", "minimum": 0}},
        }
    )
    n = node(ref_site, "n")
    assert n.policy == "counter" and n.types == {"integer"}
    assert n.state_keywords == {"minimum", "maximum"}
    assert check_state(n, 1, 6, ("n",)) is not None
    assert check_state(n, 1, -1, ("n",)) is not None


def test_list_positions() -> None:
    schema = Schema(
        {
            "properties": {
                "pair": {
                    "type": "array",
                    "prefixItems": [{"type": "string"}],
                    "items": {"x-merge": "mvr"},
                },
                "free": {"type": "array"},
            }
        }
    )
    pair = node(schema, "pair")
    assert pair.child(0) is not None and pair.child(0).pointer == "/properties/pair/prefixItems/0"
    assert node(schema, "pair", 1).policy == "mvr"
    assert node(schema, "free").child(0) is None
    assert pair.deep  # positions move under concurrent edits: the whole list is checked


def test_state_constraints_are_known(schema: Schema) -> None:
    assert node(schema, "todos").state_keywords == {"maxItems"}
    assert not node(schema, "todos").deep
    assert node(schema, "todos", 0).state_keywords == {"required"}
    assert node(schema, "todos", 0, "priority").deep  # enum
    assert node(schema, "notes").state_keywords == {"pattern"}
    assert not node(schema, "tags").checks_state
    assert schema.root.checks_state


# -- static checks ----------------------------------------------------------------


def test_scalars_against_the_whole_subschema(schema: Schema) -> None:
    root = schema.root
    assert check_map_set(root, "title", "short", ()) is None
    long = check_map_set(root, "title", "x" * 30, ())
    assert long is not None and long.path == ("title",) and long.keyword == "maxLength"
    wrong = check_map_set(root, "title", 3, ())
    assert wrong is not None and "not of type 'string'" in wrong.reason
    todo = node(schema, "todos", 0)
    assert check_map_set(todo, "priority", "low", ("todos", 0)) is None
    bad = check_map_set(todo, "priority", "urgent", ("todos", 0))
    assert bad == Violation(("todos", 0, "priority"), bad.reason, "enum")
    assert check_map_set(root, "score", -1, ()) is not None
    assert check_map_set(root, "score", 4, ()) is None
    assert check_map_set(root, "x-color", "red", ()) is None
    assert check_map_set(root, "x-color", 1, ()) is not None


def test_keys_a_map_may_not_have(schema: Schema) -> None:
    root = schema.root
    extra = check_map_set(root, "colour", "red", ())
    assert extra is not None and "additional property 'colour'" in extra.reason
    settings = node(schema, "settings")
    assert check_map_set(settings, "dark", True, ("settings",)) is None
    named = check_map_set(settings, "Dark", True, ("settings",))
    assert named is not None and named.path == ("settings", "Dark") and "key 'Dark'" in named.reason
    assert check_map_set(settings, "dark", "yes", ("settings",)) is not None
    assert check_map_set(None, "anything", object(), ()) is None  # unconstrained
    forbidden = Schema({"properties": {"a": False}})
    assert check_map_set(forbidden.root, "a", 1, ()) is not None


def test_every_applicable_subschema_is_checked() -> None:
    schema = Schema(
        {
            "properties": {"id-top": {"type": "string"}},
            "patternProperties": {"^id-": {"maxLength": 3}, "n$": {"pattern": "^[0-9]+$"}},
        }
    )
    root = schema.root
    assert check_map_set(root, "id-top", "abc", ()) is None
    assert check_map_set(root, "id-top", "abcd", ()) is not None  # the pattern applies too
    assert check_map_set(root, "id-mn", "12", ()) is None
    assert check_map_set(root, "id-mn", "ab", ()) is not None


def test_container_kinds_fit_types_and_policies(schema: Schema) -> None:
    root = schema.root
    ok = [("todos", LIST), ("settings", MAP), ("notes", TEXT), ("likes", COUNTER), ("tags", SET)]
    for key, value in ok:
        assert check_map_set(root, key, value, ()) is None, key
    assert check_map_set(root, "notes", NamedRef("notes", Kind.TEXT), ()) is None
    bad = [
        ("todos", MAP, "not of type array"),
        ("settings", LIST, "not of type object"),
        ("title", TEXT, "needs x-merge 'text'"),
        ("score", COUNTER, "needs x-merge 'counter'"),
        ("todos", SET, "needs x-merge 'union'"),
        ("tags", NewContainer(Kind.GSET), "holds a set, not a grow-only set"),
        ("notes", "plain", "holds a text, not a plain value"),
        ("likes", 3, "holds a counter, not a plain value"),
        ("likes", TEXT, "holds a counter, not a text"),
        ("tags", LIST, "holds a set, not a list"),
        ("tags", ["a"], "holds a set"),
    ]
    for key, value, words in bad:
        found = check_map_set(root, key, value, ())
        assert found is not None and words in found.reason, (key, value, found)
    unconstrained = Schema({"properties": {"any": {}}})
    for value in (MAP, LIST):
        assert check_map_set(unconstrained.root, "any", value, ()) is None
    assert check_map_set(unconstrained.root, "any", TEXT, ()) is not None
    assert check_map_set(unconstrained.root, "other", TEXT, ()) is None  # no node at all


def test_deleting_a_required_key(schema: Schema) -> None:
    found = check_map_delete(schema.root, "title", ())
    assert found == Violation(("title",), "'title' is a required property", "required")
    assert check_map_delete(schema.root, "notes", ()) is None
    assert check_map_delete(node(schema, "todos", 0), "text", ("todos", 2)) is not None
    assert check_map_delete(None, "title", ()) is None


def test_list_items(schema: Schema) -> None:
    todos = node(schema, "todos")
    assert check_item(todos, MAP, ("todos", 0)) is None
    wrong = check_item(todos, "milk", ("todos", 0))
    assert (
        wrong is not None and wrong.path == ("todos", 0) and "not of type 'object'" in wrong.reason
    )
    assert check_item(todos, LIST, ("todos",)) is not None
    tags = node(schema, "tags")
    assert check_item(tags, "x", ("tags",)) is None
    assert check_item(tags, 3, ("tags",)) is not None
    closed = Schema(
        {"properties": {"none": {"items": False}, "pos": {"prefixItems": [{"type": "string"}]}}}
    )
    assert check_item(node(closed, "none"), 1, ("none", 0)) is not None
    assert check_item(node(closed, "pos"), 1, ("pos", 0)) is None  # position-dependent: state check
    assert check_state(node(closed, "pos"), ABSENT, [1], ("pos",)) is not None
    assert check_item(None, 1, ()) is None


# -- state checks -----------------------------------------------------------------


def test_new_containers_must_be_complete(schema: Schema) -> None:
    todo = node(schema, "todos", 0)
    missing = check_state(todo, ABSENT, {"done": True}, ("todos", 0))
    assert missing == Violation(("todos", 0), "'text' is a required property", "required")
    assert check_state(todo, ABSENT, {"text": "milk"}, ("todos", 0)) is None
    short = check_state(node(schema, "todos", 0, "text"), ABSENT, "", ("todos", 0, "text"))
    assert short is not None and short.keyword == "minLength"


def test_a_violation_an_edit_did_not_make_is_tolerated(schema: Schema) -> None:
    todos = node(schema, "todos")
    # a merge of concurrent inserts left 5 items where 3 are allowed
    assert check_state(todos, [1, 2, 3], [1, 2, 3, 4], ("todos",)) is not None
    assert check_state(todos, [1, 2, 3, 4, 5], [1, 2, 3, 4], ("todos",)) is None
    assert check_state(todos, [1, 2, 3, 4, 5], [5, 4, 3, 2, 1], ("todos",)) is None
    grew = check_state(todos, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], ("todos",))
    assert grew is not None and grew.reason == "6 items, more than the maximum of 3"
    likes = node(schema, "likes")
    assert check_state(likes, 12, 11, ("likes",)) is None
    assert check_state(likes, 12, 13, ("likes",)) is not None
    assert check_state(likes, -2, -3, ("likes",)) is not None
    assert check_state(likes, -2, 0, ("likes",)) is None
    notes = node(schema, "notes")
    assert check_state(notes, "ab", "abc", ("notes",)) is None
    assert check_state(notes, "ab", "aB", ("notes",)) is not None
    assert check_state(notes, "aB", "aBc", ("notes",)) is None  # already broken, not by this
    root = schema.root
    assert check_state(root, {}, {"tags": []}, ()) is None  # the empty document lacks a title
    assert check_state(root, ABSENT, {"tags": []}, ()) is not None


def test_minimums_are_checked_on_shrinking() -> None:
    schema = Schema({"properties": {"l": {"minItems": 2}, "m": {"minProperties": 1}}})
    items = node(schema, "l")
    assert check_state(items, [1, 2], [1], ("l",)) is not None
    assert check_state(items, [1], [1, 2], ("l",)) is None
    assert check_state(items, [], [1], ("l",)) is None
    assert check_state(items, [1], [], ("l",)) is not None
    keys = node(schema, "m")
    assert check_state(keys, {"a": 1}, {}, ("m",)) is not None


def test_required_keys_are_told_apart() -> None:
    schema = Schema(
        {"properties": {"m": {"required": ["a", "b"], "dependentRequired": {"c": ["d"]}}}}
    )
    m = node(schema, "m")
    assert check_state(m, {"b": 1}, {"b": 1, "x": 1}, ("m",)) is None
    lost = check_state(m, {"b": 1}, {"x": 1}, ("m",))
    assert lost is not None and "'b' is a required property" in lost.reason
    assert check_state(m, {"a": 1, "b": 1}, {"a": 1, "b": 1, "c": 1}, ("m",)) is not None


def test_deep_constraints_see_the_values_below() -> None:
    schema = Schema(
        {
            "properties": {
                "shape": {
                    "type": "object",
                    "oneOf": [
                        {"properties": {"kind": {"const": "circle"}}, "required": ["r"]},
                        {"properties": {"kind": {"const": "square"}}, "required": ["side"]},
                    ],
                },
                "ids": {"type": "array", "uniqueItems": True},
            }
        }
    )
    shape = node(schema, "shape")
    assert shape.deep
    assert check_state(shape, ABSENT, {"kind": "circle", "r": 1}, ("shape",)) is None
    assert check_state(shape, ABSENT, {"kind": "circle", "side": 1}, ("shape",)) is not None
    ids = node(schema, "ids")
    assert check_state(ids, [], [{"a": 1}, {"a": 2}], ("ids",)) is None
    assert check_state(ids, [], [{"a": 1}, {"a": 1}], ("ids",)) is not None
    assert check_state(None, ABSENT, 1, ()) is None


def test_reasons_do_not_quote_big_containers() -> None:
    schema = Schema({"properties": {"l": {"maxItems": 1, "uniqueItems": True}}})
    found = check_state(node(schema, "l"), ABSENT, list(range(10_000)), ("l",))
    assert found is not None and found.reason == "10000 items, more than the maximum of 1"
    found = check_state(node(schema, "l"), ABSENT, ["x" * 1000] * 2, ("l",))
    assert found is not None and len(found.reason) <= 300


def test_whole_document_violations(schema: Schema) -> None:
    document = {
        "title": "groceries",
        "todos": [{"text": "milk"}, {"done": True}],
        "likes": 11,
        "colour": 1,
    }
    found = violations(schema, document)
    assert [(v.path, v.keyword) for v in found] == [
        ((), "additionalProperties"),
        (("likes",), "maximum"),
        (("todos", 1), "required"),
    ]
    assert violations(schema, {"title": "t"}) == []


def test_violations_become_typed_errors() -> None:
    violation = Violation(("todos", 0, "text"), "'' is too short", "minLength")
    local = violation.local()
    assert isinstance(local, SchemaViolationError) and isinstance(local, UsageError)
    assert local.code == "schema_violation" and local.path == ("todos", 0, "text")
    assert local.reason == "'' is too short"
    assert str(local) == "todos/0/text: '' is too short"
    remote = violation.remote(("bob", 3))
    assert isinstance(remote, SchemaRejectedError) and isinstance(remote, InvalidEventError)
    assert remote.code == "schema_rejected" and remote.path == violation.path
    assert str(remote) == "('bob', 3): todos/0/text: '' is too short"
    assert str(Violation((), "x", "required").local()) == "/: x"
