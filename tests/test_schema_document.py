"""Documents with a schema: local edits refused before anything changes, received
events judged on their own causal past and rejected whole, typed models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest

import gether
from gether.core.document import Document as CoreDocument
from gether.core.keys import SigningKey
from gether.core.schema import Schema
from gether.errors import SchemaRejectedError, SchemaViolationError
from gether.models import Merge

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "maxLength": 10, "default": "untitled"},
        "status": {"enum": ["draft", "final"], "x-merge": "mvr"},
        "likes": {"type": "integer", "x-merge": "counter", "minimum": 0, "maximum": 3},
        "notes": {"type": "string", "x-merge": "text", "pattern": "^[a-z ]*$"},
        "tags": {"type": "array", "x-merge": "union", "items": {"enum": ["a", "b", "c"]}},
        "todos": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/todo"}},
        "ids": {"type": "array", "uniqueItems": True},
        "shape": {
            "type": "object",
            "oneOf": [{"required": ["r"]}, {"required": ["side"]}],
        },
        "settings": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
    },
    "$defs": {
        "todo": {
            "type": "object",
            "required": ["text"],
            "additionalProperties": False,
            "properties": {"text": {"type": "string"}, "done": {"type": "boolean"}},
        }
    },
}


def key(name: str) -> SigningKey:
    return SigningKey(name.encode().ljust(32, b"."))


def replica(name: str, schema: Any = SCHEMA) -> gether.Document:
    return gether.Document(name, key=key(name), schema=schema)


def rogue(of: gether.Document, name: str) -> gether.Document:
    """A replica without the schema holding ``of``'s events: it can make any edit."""
    doc = gether.Document(name, key=key(name))
    doc.apply_events(of.events_since(None))
    return doc


def refused(doc: gether.Document, edit: Any, path: tuple[Any, ...], words: str) -> None:
    """``edit`` raises SchemaViolationError at ``path`` and changes nothing."""
    state, version = doc.to_json(), doc.version
    with pytest.raises(SchemaViolationError) as caught:
        edit()
    assert caught.value.path == path, caught.value
    assert words in caught.value.reason, caught.value
    assert doc.to_json() == state and doc.version == version


def rejected(doc: gether.Document, source: gether.Document) -> list[tuple[Any, Any]]:
    """Deliver what ``doc`` lacks of ``source``: every event must be rejected for
    the schema, and nothing change."""
    state, version = doc.to_json(), doc.version
    with pytest.raises(gether.RejectedEventsError) as caught:
        doc.apply_events([e.to_bytes() for e in source.events_since(doc.version)])
    assert doc.to_json() == state and doc.version == version
    assert not doc.pending
    for _, error in caught.value.rejected:
        assert isinstance(error, SchemaRejectedError | gether.InvalidEventError)
    return list(caught.value.rejected)


@pytest.fixture
def doc() -> gether.Document:
    d = replica("alice")
    d["title"] = "groceries"
    return d


# -- local edits ------------------------------------------------------------------


def test_static_violations_are_refused_before_anything_changes(doc: gether.Document) -> None:
    refused(doc, lambda: doc.__setitem__("title", "x" * 11), ("title",), "maximum of 10")
    refused(doc, lambda: doc.__setitem__("title", 1), ("title",), "not of type 'string'")
    refused(doc, lambda: doc.__setitem__("colour", "red"), ("colour",), "additional property")
    refused(doc, lambda: doc.__delitem__("title"), ("title",), "required property")
    refused(doc, lambda: doc.__setitem__("status", "done"), ("status",), "is not one of")
    refused(doc, lambda: doc.__setitem__("tags", ["a", "z"]), ("tags",), "'z' is not one of")
    refused(doc, lambda: doc.__setitem__("likes", "3"), ("likes",), "takes a int")
    refused(doc, lambda: doc.__setitem__("todos", {"text": "x"}), ("todos",), "not of type array")
    refused(
        doc,
        lambda: doc.__setitem__("todos", [{"text": "x", "due": 1}]),
        ("todos", 0, "due"),
        "additional property 'due'",
    )
    refused(doc, lambda: doc.__setitem__("settings", {"Dark": 1}), ("settings", "Dark"), "key")
    refused(doc, lambda: doc.text("title"), ("title",), "needs x-merge 'text'")
    refused(doc, lambda: doc.apply_update("title", 5), ("title",), "not of type")


def test_state_violations_roll_the_transaction_back(doc: gether.Document) -> None:
    doc["todos"] = [{"text": "milk"}]
    doc["likes"] = 1
    doc["notes"] = "hello"
    refused(doc, lambda: doc["todos"].append({"done": True}), ("todos", 1), "'text' is a required")
    refused(
        doc,
        lambda: doc["todos"].extend([{"text": "a"}, {"text": "b"}]),
        ("todos",),
        "3 items, more than the maximum of 2",
    )
    refused(doc, lambda: doc["likes"].increment(5), ("likes",), "greater than the maximum")
    refused(doc, lambda: doc["likes"].decrement(2), ("likes",), "less than the minimum")
    refused(doc, lambda: doc["notes"].insert(0, "X"), ("notes",), "does not match")
    refused(doc, lambda: doc.__setitem__("shape", {"r": 1, "side": 2}), ("shape",), "valid under")
    refused(doc, lambda: doc.__setitem__("ids", [1, 1]), ("ids",), "non-unique")

    def several() -> None:
        with doc.transaction():
            doc["title"] = "new title"
            doc["todos"][0]["done"] = True
            doc["likes"].increment(3)  # 4 > 3: the whole transaction goes

    refused(doc, several, ("likes",), "maximum")
    assert doc.get("title") == "groceries"


def test_valid_edits_go_through(doc: gether.Document) -> None:
    with doc.transaction():
        doc["todos"] = [{"text": "milk"}]
        doc["todos"][0]["done"] = True
        doc["likes"] = 3
        doc["notes"] = "some notes"
        doc["tags"] = ["b", "a"]
        doc["shape"] = {"r": 2}
        doc["settings"] = {"dark": True}
        doc["status"] = "final"
    doc["tags"].add("c")
    doc["todos"].append({"text": "eggs"})
    doc["todos"].move(0, 1)
    del doc["todos"][0]
    assert doc.to_json() == {
        "title": "groceries",
        "todos": [{"text": "milk", "done": True}],
        "likes": 3,
        "notes": "some notes",
        "tags": ["a", "b", "c"],
        "shape": {"r": 2},
        "settings": {"dark": True},
        "status": "final",
    }
    assert doc.validate() == []


def test_ids_undone_by_a_rollback_are_placed_anew(doc: gether.Document) -> None:
    refused(doc, lambda: doc.__setitem__("todos", [{"done": True}]), ("todos", 0), "required")
    doc["shape"] = {"r": 1}  # the same counters again: new containers, other places
    doc["shape"]["r"] = 2
    assert doc.get("shape") == {"r": 2}


def test_a_caught_violation_leaves_the_transaction_usable(doc: gether.Document) -> None:
    with doc.transaction():
        doc["likes"] = 1
        with pytest.raises(SchemaViolationError):
            doc["title"] = "far too long a title"
        doc["notes"] = "ok"
    assert doc.get("likes") == 1 and doc.get("notes") == "ok" and doc.get("title") == "groceries"


def test_a_violation_the_edit_did_not_make_is_not_held_against_it() -> None:
    a = replica("alice")
    a["title"] = "t"
    a["todos"] = [{"text": "x"}]
    b = a.fork("bob")
    a["todos"].append({"text": "a"})
    b["todos"].append({"text": "b"})
    a.merge(b)
    assert len(a["todos"]) == 3  # both kept: convergence wins
    assert [(v.path, v.keyword) for v in a.validate()] == [(("todos",), "maxItems")]
    a["todos"][0]["done"] = True  # edits elsewhere go on
    a["todos"].move(0, 2)  # not growing
    refused(a, lambda: a["todos"].append({"text": "c"}), ("todos",), "4 items")
    del a["todos"][0]
    assert a.validate() == []


def test_an_empty_document_may_lack_required_keys() -> None:
    a = replica("alice")
    a["likes"] = 1  # the root still lacks "title": this edit did not make that worse
    assert [v.keyword for v in a.validate()] == ["required"]
    assert a.get("title") is None


# -- received events ------------------------------------------------------------------


def test_remote_events_that_break_the_schema_are_rejected_whole(doc: gether.Document) -> None:
    doc["todos"] = [{"text": "milk"}]
    doc["likes"] = 1
    doc["notes"] = "ok"
    edits = [
        lambda r: r.__setitem__("title", "x" * 20),
        lambda r: r.__setitem__("colour", 1),
        lambda r: r.__delitem__("title"),
        lambda r: r["todos"].append({"text": 1}),
        lambda r: r["todos"].extend([{"text": "a"}, {"text": "b"}]),
        lambda r: r["todos"][0].__delitem__("text"),
        lambda r: r["likes"].increment(9),
        lambda r: r["notes"].insert(0, "BAD"),
        lambda r: r.__setitem__("likes", 2),  # a plain number where a counter goes
        lambda r: r.__setitem__("tags", ["z"]),
        lambda r: r.__setitem__("shape", {}),
    ]
    for i, edit in enumerate(edits):
        bad = rogue(doc, f"rogue{i}")
        with bad.transaction():
            bad["status"] = "draft"  # a valid change rejected with the rest
            edit(bad)
        found = rejected(doc, bad)
        assert len(found) == 1 and isinstance(found[0][1], SchemaRejectedError), i
        assert found[0][0] == (f"rogue{i}", bad.version[f"rogue{i}"])
    assert doc.validate() == []


def test_a_rejected_event_takes_its_descendants_with_it(doc: gether.Document) -> None:
    bad = rogue(doc, "mallory")
    bad["title"] = "x" * 20
    bad["status"] = "draft"  # valid, but after an event nobody accepts
    found = rejected(doc, bad)
    assert [event_id for event_id, _ in found] == [("mallory", 1), ("mallory", 2)]


def test_verdicts_depend_on_the_causal_past_only() -> None:
    a = replica("alice")
    a["title"] = "t"
    a["todos"] = [{"text": "x"}]
    b, c = a.fork("bob"), a.fork("carol")
    b["todos"].append({"text": "b"})  # 2 items: fine where bob made it
    c["todos"].append({"text": "c"})
    # alice takes carol's first: bob's event is concurrent, and judged at its
    # parents (where it made 2 items), not on alice's present (3 items)
    a.merge(c)
    a.merge(b)
    assert len(a["todos"]) == 3
    d = replica("dave")
    d.apply_events([e.to_bytes() for e in reversed(a.events_since(None))])
    assert d.to_json() == a.to_json()
    # and an event that was invalid at its parents stays rejected wherever it goes
    bad = rogue(b, "mallory")
    bad["todos"].append({"text": "m"})  # 3 items where it was made
    rejected(a, bad)
    rejected(b, bad)


def test_concurrent_events_are_judged_on_their_own_past() -> None:
    a = replica("alice")
    a["title"] = "t"
    a["likes"] = 2
    b = a.fork("bob")
    bad = rogue(a, "mallory")
    bad["likes"].increment(2)  # 4 > 3 at its parents
    b["likes"].decrement(2)  # concurrent: 0
    a.merge(b)  # in alice's present the rogue's +2 would give 2: still rejected
    rejected(a, bad)
    ok = rogue(a, "trent")
    a["likes"].increment(1)  # 1
    ok["likes"].decrement(1)  # at its parents (0) it breaks the minimum: rejected
    rejected(a, ok)


def test_schema_less_replicas_reach_the_same_state_on_valid_events() -> None:
    a = replica("alice")
    a["title"] = "t"
    a["likes"] = 2
    a["tags"] = ["a"]
    plain = gether.Document("server", key=key("server"))
    plain.apply_events(a.events_since(None))
    assert plain.to_json() == a.to_json()


# -- documents, saves and forks ----------------------------------------------------------


def test_forks_views_and_loads_keep_the_schema(doc: gether.Document) -> None:
    fork = doc.fork("bob")
    assert fork.schema == doc.schema
    with pytest.raises(SchemaViolationError):
        fork["title"] = "x" * 20
    assert doc.at(doc.version).schema == doc.schema
    loaded = gether.Document.load(doc.save(), schema=SCHEMA)
    assert loaded.schema == Schema(SCHEMA)
    with pytest.raises(SchemaViolationError):
        loaded["likes"] = 9
    assert gether.Document.load(doc.save()).schema is None
    compiled = Schema(SCHEMA)
    assert gether.Document(schema=compiled).schema is compiled
    assert gether.Document().validate() == []


def test_loading_with_a_schema_checks_waiting_events(doc: gether.Document) -> None:
    bad = rogue(doc, "mallory")
    bad["status"] = "draft"
    bad["title"] = "x" * 20
    first, second = bad.events_since(doc.version)
    plain = rogue(doc, "plain")
    plain.apply_events([second.to_bytes()])  # waits for its parent
    assert plain.pending == {("mallory", 2)}
    loaded = gether.Document.load(plain.save(), schema=SCHEMA)
    with pytest.raises(gether.RejectedEventsError) as caught:
        loaded.apply_events([first.to_bytes()])
    assert [event_id for event_id, _ in caught.value.rejected] == [("mallory", 2)]
    assert loaded.get("status") == "draft" and loaded.get("title") == "groceries"
    assert not loaded.pending


def test_durable_replicas_take_a_schema(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'notes.db'}"
    with gether.Document.open(url, "doc", schema=SCHEMA) as first:
        first["title"] = "t"
        with pytest.raises(SchemaViolationError):
            first["likes"] = 10
    with gether.Document.open(url, "doc", schema=SCHEMA) as again:
        assert again.to_json() == {"title": "t"}
        assert again.schema == Schema(SCHEMA)
        with pytest.raises(SchemaViolationError):
            again["title"] = 3
    with gether.Document.open(url, "doc", read_only=True, schema=SCHEMA) as view:
        assert view.get("title") == "t"


def test_core_documents_take_a_schema_or_policies() -> None:
    doc = CoreDocument("alice", key("alice"), schema=SCHEMA)
    doc["title"] = "t"
    with pytest.raises(SchemaViolationError):
        doc["title"] = 1
    with pytest.raises(gether.UsageError, match="not both"):
        CoreDocument("alice", key("alice"), schema=SCHEMA, policies=Schema(SCHEMA).root)
    with pytest.raises(gether.SchemaError):
        CoreDocument("alice", key("alice"), schema={"type": "nope"})
    with pytest.raises(gether.UsageError, match="dataclass"):
        gether.Document(schema=3)  # type: ignore[arg-type]


def test_custom_merges_named_by_the_schema() -> None:
    gether.register_merge("schema-test-max", max)
    schema = {"properties": {"high": {"type": "integer", "x-merge": "custom:schema-test-max"}}}
    a, b = replica("alice", schema), replica("bob", schema)
    a["high"], b["high"] = 3, 9
    a.merge(b)
    b.merge(a)
    assert a.get("high") == b.get("high") == 9
    loaded = gether.Document.load(a.save(), schema=schema)
    assert loaded.get("high") == 9


# -- typed models ------------------------------------------------------------------------


@dataclass
class Item:
    text: str
    done: bool = False


@dataclass
class Board:
    title: str
    likes: Annotated[int, Merge("counter")] = 0
    notes: Annotated[str, Merge("text")] = ""
    labels: set[str] = field(default_factory=set)
    items: list[Item] = field(default_factory=list)
    owner: Item | None = None


def test_a_dataclass_is_a_schema_and_a_typed_view() -> None:
    doc = gether.Document("alice", key=key("alice"), schema=Board)
    board = doc.model(Board)
    board.title = "plans"
    board.likes = 2
    board.notes = "draft"
    board.labels = {"x", "y"}
    board.items = [Item("milk")]
    board.owner = Item("ann", done=True)
    assert doc.to_json() == {
        "title": "plans",
        "likes": 2,
        "notes": "draft",
        "labels": ["x", "y"],
        "items": [{"text": "milk", "done": False}],
        "owner": {"text": "ann", "done": True},
    }
    board.likes.increment()
    board.labels.add("z")
    board.notes.insert(0, "a ")
    board.items.append({"text": "eggs", "done": False})
    assert board.owner.text == "ann"
    board.owner.done = False
    board.owner = None
    assert doc.get("owner") is None
    with pytest.raises(SchemaViolationError):
        board.title = 3  # type: ignore[assignment]
    with pytest.raises(SchemaViolationError):
        board.items.append({"done": True})
    board2 = gether.models.model_instance(Board, doc.to_json())
    assert board2.items == [Item("milk"), Item("eggs")] and board2.labels == {"x", "y", "z"}
    assert board2.likes == 3 and board2.notes == "a draft"
