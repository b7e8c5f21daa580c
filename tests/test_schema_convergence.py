"""Convergence with a schema: replicas that received the same events agree on
the state and on which events were rejected.

Replicas share a schema with constraints of every kind (static ones, ones on
a container's state that concurrent edits can break, deep ones that look into
values). They make random edits, some of which the schema refuses; other
edits are crafted by "rogue" replicas that apply the policies but skip the
checks, and broadcast whatever they made, valid or not. The simulated network
drops, duplicates, splits and reorders. After it settles, every replica with
the schema must hold the same state and version, have rejected exactly the
same events, and a fresh replica fed every event in a random order must agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

import gether
from gether.core.document import Document as CoreDocument
from gether.core.keys import SigningKey
from gether.core.schema import Schema
from gether.merges import registered
from gether.testing.network import SimulatedNetwork

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "maxLength": 6},
        "status": {"enum": ["draft", "final"], "x-merge": "mvr"},
        "likes": {"type": "integer", "x-merge": "counter", "minimum": 0, "maximum": 5},
        "notes": {"type": "string", "x-merge": "text", "pattern": "^[a-z ]*$", "maxLength": 8},
        "tags": {
            "type": "array",
            "x-merge": "union",
            "items": {"enum": ["x", "y", "z"]},
            "maxItems": 2,
        },
        "todos": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/todo"}},
        "ids": {"type": "array", "uniqueItems": True, "items": {"type": "integer", "minimum": 0}},
        "shape": {
            "type": "object",
            "oneOf": [{"required": ["r"]}, {"required": ["side"]}],
            "properties": {"r": {"type": "integer"}, "side": {"type": "integer"}},
        },
    },
    "$defs": {
        "todo": {
            "type": "object",
            "required": ["text"],
            "additionalProperties": False,
            "properties": {"text": {"type": "string", "minLength": 1}, "done": {"type": "boolean"}},
        }
    },
}
COMPILED = Schema(SCHEMA)
FIELDS = list(SCHEMA["properties"])


@dataclass(frozen=True)
class Edit:
    """One edit, named loosely: indices are taken modulo the current length."""

    what: str
    arg: Any


EDITS = st.one_of(
    st.builds(Edit, st.just("title"), st.text("ab", max_size=8)),
    st.builds(Edit, st.just("status"), st.sampled_from(["draft", "final", "done"])),
    st.builds(Edit, st.just("likes"), st.integers(-1, 7)),
    st.builds(Edit, st.just("like"), st.integers(-3, 3)),
    st.builds(Edit, st.just("notes"), st.text("ab Z", max_size=6)),
    st.builds(Edit, st.just("type"), st.tuples(st.integers(0, 9), st.sampled_from("abZ "))),
    st.builds(Edit, st.just("tags"), st.lists(st.sampled_from("xyzw"), max_size=3)),
    st.builds(Edit, st.just("tag"), st.tuples(st.booleans(), st.sampled_from("xyzw"))),
    st.builds(
        Edit,
        st.just("todo"),
        st.one_of(st.fixed_dictionaries({"text": st.text("ab", max_size=2)}), st.just({})),
    ),
    st.builds(Edit, st.just("done"), st.tuples(st.integers(0, 5), st.booleans())),
    st.builds(Edit, st.just("untodo"), st.integers(0, 5)),
    st.builds(Edit, st.just("move"), st.tuples(st.integers(0, 5), st.integers(0, 5))),
    st.builds(Edit, st.just("id"), st.integers(-1, 2)),
    st.builds(
        Edit, st.just("shape"), st.sampled_from([{"r": 1}, {"side": 2}, {"r": 1, "side": 2}, {}])
    ),
    st.builds(Edit, st.just("corner"), st.sampled_from(["r", "side"])),
    st.builds(Edit, st.just("delete"), st.sampled_from(FIELDS)),
    st.builds(Edit, st.just("extra"), st.integers(0, 1)),
)

Step = tuple[int, bool, list[Edit]]
"""Who edits, whether as a rogue (its event skips the checks), and what."""

GROWING = st.one_of(
    st.builds(Edit, st.just("id"), st.integers(0, 2)),
    st.builds(Edit, st.just("todo"), st.just({"text": "t"})),
    st.builds(Edit, st.just("like"), st.integers(1, 3)),
    st.builds(Edit, st.just("tag"), st.tuples(st.just(True), st.sampled_from("xyz"))),
)
"""Edits that are valid alone but whose concurrent merges break a maximum."""

STEPS = st.tuples(
    st.integers(0, 4),
    st.sampled_from([False, False, False, True]),
    st.lists(st.one_of(EDITS, GROWING), min_size=1, max_size=3),
)


def key(name: str) -> SigningKey:
    return SigningKey(name.encode().ljust(32, b"."))


def perform(doc: Any, edit: Edit) -> None:
    """Make one edit; the ones that do not apply to the state at hand are skipped."""
    what, arg = edit.what, edit.arg
    todos = doc["todos"] if "todos" in doc else None  # noqa: SIM401 (get copies)
    if what in ("title", "status", "likes", "notes", "tags", "shape"):
        doc[what] = arg
    elif what == "like" and "likes" in doc:
        doc["likes"].increment(arg)
    elif what == "type" and "notes" in doc:
        notes = doc["notes"]
        notes.insert(arg[0] % (len(notes) + 1), arg[1])
    elif what == "tag" and "tags" in doc:
        add, value = arg
        doc["tags"].add(value) if add else doc["tags"].discard(value)
    elif what == "todo":
        if todos is None:
            doc["todos"] = [arg]
        else:
            todos.append(arg)
    elif what == "done" and todos:
        todos[arg[0] % len(todos)]["done"] = arg[1]
    elif what == "untodo" and todos:
        del todos[arg % len(todos)]
    elif what == "move" and todos:
        todos.move(arg[0] % len(todos), arg[1] % len(todos))
    elif what == "id":
        if "ids" in doc:
            doc["ids"].append(arg)
        else:
            doc["ids"] = [arg]
    elif what == "corner" and "shape" in doc:
        doc["shape"][arg] = 3
    elif what == "delete" and arg in doc:
        del doc[arg]
    elif what == "extra":
        doc[f"extra{arg}"] = arg


def attempt(doc: Any, edits: list[Edit]) -> None:
    """Make the edits (one transaction if several): a refused one changes nothing."""
    before, version = doc.to_json(), doc.version
    try:
        with doc.transaction():
            for edit in edits:
                try:
                    perform(doc, edit)
                except gether.SchemaViolationError:
                    event("refused at once")
                except (gether.UsageError, KeyError, IndexError):
                    pass  # e.g. re-adding to a removed element of a two-phase set
    except gether.SchemaViolationError:
        event("refused at commit")
        assert doc.to_json() == before and doc.version == version


def rogue(of: gether.Document, name: str) -> CoreDocument:
    """A replica with the schema's policies but no checks, holding ``of``'s events."""
    doc = CoreDocument(name, key(name), policies=COMPILED.root, merges=registered)
    doc.apply_events(of.events_since(None))
    return doc


def run(net: SimulatedNetwork, docs: list[Any], rogues: list[Any], steps: list[Step]) -> None:
    """Make the steps, delivering some of what is in flight now and then."""
    rng = random.Random(len(steps))
    n = len(docs)
    for who, crafted, edits in steps:
        who %= n
        if crafted:
            bad = rogue(docs[who], f"rogue{len(rogues)}")
            attempt(bad, edits)
            rogues.append(bad)
            net.broadcast(net.add(bad))  # type: ignore[arg-type]
        else:
            attempt(docs[who], edits)
            net.broadcast(who)
        if rng.random() < 0.3:
            net.deliver_some()


@settings(max_examples=max(30, settings().max_examples // 3))
@given(
    n=st.integers(3, 5),
    steps=st.lists(STEPS, min_size=1, max_size=16),
    more=st.lists(STEPS, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_replicas_with_a_schema_converge(
    n: int, steps: list[Step], more: list[Step], seed: int
) -> None:
    docs = [gether.Document(f"r{i}", key=key(f"r{i}"), schema=SCHEMA) for i in range(n)]
    net = SimulatedNetwork(docs, seed=seed, keep_rejections=True)
    rogues: list[CoreDocument] = []
    run(net, docs, rogues, steps)
    net.settle()
    # merges of valid concurrent edits may have broken constraints (maxItems,
    # uniqueItems...): edits go on from there
    event(f"violations after merging: {min(len(docs[0].validate()), 2)}+")
    run(net, docs, rogues, more)
    net.settle()

    first = docs[0]
    rejected = net.rejected.get(0, set())
    event(f"rejected: {min(len(rejected), 3)}+")
    for i, doc in enumerate(docs):
        assert doc.to_json() == first.to_json()
        assert doc.version == first.version
        assert net.rejected.get(i, set()) == rejected
        assert not doc.pending
        assert doc.validate() == first.validate()
    for event_id in rejected:
        assert event_id is not None and event_id[0].startswith("rogue")
        assert first.version.get(event_id[0]) < event_id[1]

    # a fresh replica fed every event made anywhere, in any order, agrees
    history = {e.id: e for d in [*docs, *rogues] for e in d.events_since(None)}
    shuffled = [e.to_bytes() for e in history.values()]
    random.Random(seed).shuffle(shuffled)
    fresh = gether.Document("fresh", key=key("fresh"), schema=SCHEMA)
    try:
        fresh.apply_events(shuffled)
        refused: set[Any] = set()
    except gether.RejectedEventsError as exc:
        refused = {event_id for event_id, _ in exc.rejected}
    assert fresh.to_json() == first.to_json()
    assert fresh.version == first.version
    assert refused == rejected
