"""Typed models: dataclasses as JSON Schemas, typed views of documents, and
``gether schema module:Class``."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest
from click.testing import CliRunner

import gether
from gether.cli.main import main
from gether.core.keys import SigningKey
from gether.core.schema import Schema
from gether.errors import SchemaError, UsageError
from gether.models import Merge, model_instance, model_view, schema_of


@dataclass
class Address:
    street: str
    city: str = "Paris"


@dataclass
class Todo:
    text: str
    done: bool = False
    votes: Annotated[int, Merge("counter")] = 0
    notes: Annotated[str, Merge("text")] = ""
    title: Annotated[str, Merge("mvr")] = "untitled"
    tags: set[str] = field(default_factory=set)
    kind: Literal["chore", "errand"] | None = None
    where: Optional[Address] = None  # noqa: UP045 (the old spelling works too)
    scores: dict[str, float] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    extra: Any = None


@dataclass
class Tree:
    label: str
    children: list[Tree] = field(default_factory=list)


def test_scalars_and_containers() -> None:
    schema = schema_of(Todo)
    properties = schema["properties"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Todo" and schema["type"] == "object"
    assert schema["required"] == ["text"] and schema["additionalProperties"] is False
    assert properties["text"] == {"type": "string"}
    assert properties["done"] == {"type": "boolean", "default": False}
    assert properties["votes"] == {"type": "integer", "x-merge": "counter", "default": 0}
    assert properties["notes"] == {"type": "string", "x-merge": "text", "default": ""}
    assert properties["title"] == {"type": "string", "x-merge": "mvr", "default": "untitled"}
    assert properties["tags"] == {
        "type": "array", "items": {"type": "string"}, "x-merge": "union", "default": [],
    }  # fmt: skip
    assert properties["kind"] == {"enum": ["chore", "errand", None], "default": None}
    assert properties["where"] == {
        "$ref": "#/$defs/Address", "type": ["object", "null"], "default": None,
    }  # fmt: skip
    assert properties["scores"] == {
        "type": "object", "additionalProperties": {"type": "number"}, "default": {},
    }  # fmt: skip
    assert properties["steps"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert properties["extra"] == {"default": None}
    assert schema["$defs"]["Address"] == {
        "properties": {
            "street": {"type": "string"},
            "city": {"type": "string", "default": "Paris"},
        },
        "additionalProperties": False,
        "required": ["street"],
    }
    compiled = Schema(schema)
    assert compiled.root.child("votes").policy == "counter"  # type: ignore[union-attr]
    assert compiled.node_at(("where", "city")).default == "Paris"  # type: ignore[union-attr]


def test_nullable_scalars_and_text_counter_types() -> None:
    @dataclass
    class Row:
        n: int | None
        body: gether.Text
        hits: gether.Counter = field(default_factory=lambda: gether.Counter(3))

    schema = schema_of(Row)
    assert schema["properties"] == {
        "n": {"type": ["integer", "null"]},
        "body": {"type": "string", "x-merge": "text"},
        "hits": {"type": "integer", "x-merge": "counter", "default": 3},
    }
    assert schema["required"] == ["n", "body"]


def test_recursive_models_reference_one_definition() -> None:
    schema = schema_of(Tree)
    assert schema["$ref"] == "#/$defs/Tree"
    assert schema["$defs"]["Tree"]["properties"]["children"]["items"]["$ref"] == "#/$defs/Tree"
    compiled = Schema(schema)
    assert compiled.node_at(("children", 3, "children", 0, "label")) is not None


def test_two_models_of_one_name() -> None:
    def make() -> type:
        @dataclass
        class Address:
            zip: str

        return Address

    both = make_dataclass("Both", [("a", Address), ("b", make())])
    schema = schema_of(both)
    assert sorted(schema["$defs"]) == ["Address", "Address2"]
    assert schema["properties"]["b"]["$ref"] == "#/$defs/Address2"


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (tuple[int, int], "cannot describe"),
        (dict[int, str], "keys are strings"),
        (int | str, "only X | None"),
        (Annotated[int, Merge("counter")] | None, "never None"),
        (Literal[b"x"], "JSON scalars"),
        (complex, "cannot describe"),
    ],
)
def test_refuses_what_json_schema_cannot_say(annotation: Any, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        schema_of(make_dataclass("Bad", [("field", annotation)]))


def test_refuses_bad_policies_defaults_and_non_models() -> None:
    with pytest.raises(SchemaError, match="unknown merge policy"):
        Merge("maximum")
    assert Merge("custom:max") == Merge("custom:max") and repr(Merge("mvr")) == "Merge('mvr')"

    @dataclass
    class Bad:
        when: Any = field(default_factory=object)

    with pytest.raises(SchemaError, match="not JSON"):
        schema_of(Bad)
    with pytest.raises(SchemaError, match="dataclass"):
        schema_of(dict)
    with pytest.raises(SchemaError, match="dataclass"):
        schema_of(Address("x"))  # type: ignore[arg-type]

    @dataclass
    class Mismatch:
        n: Annotated[str, Merge("counter")]

    with pytest.raises(SchemaError, match="'integer'"):
        Schema(schema_of(Mismatch))


# -- typed views ---------------------------------------------------------------------


def new_doc() -> gether.Document:
    return gether.Document("alice", key=SigningKey(b"\x01" * 32))


def test_a_view_reads_and_writes_through_the_document() -> None:
    doc = new_doc()
    todo = model_view(doc, Todo)
    with pytest.raises(AttributeError, match=r"Todo\.text is not set"):
        _ = todo.text
    assert todo.done is False and todo.title == "untitled" and todo.steps == []
    todo.text = "milk"
    todo.done = True
    todo.where = Address("1 rue de la Paix")
    todo.steps = ["buy", "drink"]
    assert doc.to_json() == {
        "text": "milk",
        "done": True,
        "where": {"street": "1 rue de la Paix", "city": "Paris"},
        "steps": ["buy", "drink"],
    }
    assert todo.where.city == "Paris"
    todo.where.city = "Lyon"
    assert doc.get("where/city") == "Lyon"
    todo.steps.append("recycle")
    assert doc.get("steps") == ["buy", "drink", "recycle"]
    del todo.done
    assert "done" not in doc and todo.done is False
    with pytest.raises(AttributeError, match="no field 'colour'"):
        todo.colour = "red"
    with pytest.raises(AttributeError, match="no field"):
        _ = todo.colour
    assert "text" in dir(todo)
    assert repr(todo).startswith("<Todo view {")


def test_a_view_writes_text_and_counter_fields_as_containers() -> None:
    doc = new_doc()
    todo = model_view(doc, Todo)
    todo.notes = "hello"
    todo.votes = 2
    assert isinstance(todo.notes, gether.TextProxy)
    todo.notes.insert(5, " world")
    todo.votes.increment(3)
    assert doc.to_json() == {"notes": "hello world", "votes": 5}


def test_a_view_of_a_nested_map() -> None:
    doc = new_doc()
    doc["home"] = {"street": "x"}
    home = model_view(doc["home"], Address)
    assert home.street == "x" and home.city == "Paris"
    home.city = "Nice"
    assert doc.to_json() == {"home": {"street": "x", "city": "Nice"}}
    with pytest.raises(UsageError):
        model_view(doc, dict)


def test_instances_from_json() -> None:
    value = {
        "text": "milk",
        "votes": 3,
        "tags": ["b", "a"],
        "where": {"street": "x"},
        "scores": {"a": 1.5},
        "steps": ["s"],
    }
    todo = model_instance(Todo, value)
    assert todo == Todo(
        "milk", votes=3, tags={"a", "b"}, where=Address("x"), scores={"a": 1.5}, steps=["s"]
    )
    tree = model_instance(Tree, {"label": "r", "children": [{"label": "c"}]})
    assert tree == Tree("r", [Tree("c")])
    with pytest.raises(UsageError, match="missing"):
        model_instance(Todo, {})
    with pytest.raises(UsageError, match="expected an object"):
        model_instance(Todo, {"text": "x", "where": 3})
    with pytest.raises(UsageError):
        model_instance(dict, {})  # type: ignore[type-var]


# -- the command line -------------------------------------------------------------------


@pytest.fixture
def models_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    source = """
        from dataclasses import dataclass
        from typing import Annotated
        import gether
        from gether.models import Merge

        @dataclass
        class Item:
            name: str
            likes: Annotated[int, Merge("counter")] = 0

        RAW = {"type": "object", "properties": {"n": {"type": "integer"}}}
        NOT_A_MODEL = 3
        BROKEN = {"type": "nope"}
    """
    (tmp_path / "cli_models.py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cli_models"
    sys.modules.pop("cli_models", None)


def test_cli_prints_the_schema(models_module: str) -> None:
    result = CliRunner().invoke(main, ["schema", f"{models_module}:Item"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.output) == schema_of(sys.modules[models_module].Item)
    assert result.output.startswith('{\n  "$schema"')  # indented, keys sorted
    raw = CliRunner().invoke(main, ["schema", f"{models_module}:RAW"], catch_exceptions=False)
    assert json.loads(raw.output)["properties"] == {"n": {"type": "integer"}}


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("cli_models", "expected module:Class"),
        ("cli_models:", "expected module:Class"),
        ("no_such_module_here:Item", "cannot import"),
        ("cli_models:Missing", "no attribute"),
        ("cli_models:NOT_A_MODEL", "expected a dataclass"),
        ("cli_models:BROKEN", "invalid_schema"),
    ],
)
def test_cli_explains_a_bad_target(models_module: str, target: str, words: str) -> None:
    result = CliRunner().invoke(main, ["schema", target])
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output
