"""Typed models: a dataclass describes a document (or a part of one).

``schema_of(Todo)`` turns a dataclass into the JSON Schema of a document, so
``gether.Document(schema=Todo)`` validates every edit against it, and
``model_view(doc, Todo)`` (``doc.model(Todo)``) reads and writes the document
through attributes::

    @dataclass
    class Todo:
        text: str
        done: bool = False
        votes: Annotated[int, gether.Merge("counter")] = 0

=============================================  =========================================
annotation                                     JSON Schema
=============================================  =========================================
``str`` ``int`` ``float`` ``bool`` ``None``    ``{"type": "string"}`` ... ``"null"``
``X | None``, ``Optional[X]``                  X's schema with ``"null"`` allowed
``Literal["a", 1]``                            ``{"enum": ["a", 1]}``
``list[T]``                                    ``{"type": "array", "items": T}``
``set[T]``, ``frozenset[T]`` (scalar T)        an array with ``"x-merge": "union"``
``dict[str, T]``                               ``{"type": "object", "additionalProperties": T}``
a nested dataclass                             ``{"$ref": "#/$defs/Name", "type": "object"}``
``gether.Text``, ``gether.Counter``            a string with ``text``, an integer with ``counter``
``Annotated[T, gether.Merge("mvr")]``          T's schema with ``"x-merge": "mvr"``
``typing.Any``                                 ``{}``
=============================================  =========================================

A field with a default (or a default factory) gets ``"default"`` and is not
required; every other field is required.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast

from gether.core.proxies import Counter, MapProxy, Set, Text
from gether.core.schema import CONTAINER_POLICIES, DRAFT, check_policy
from gether.errors import SchemaError, UsageError

T = TypeVar("T")

_SCALARS: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    None: "null",
}


_SET_VARIANTS = {
    "union": "or",
    "union:or": "or",
    "union:g": "g",
    "union:2p": "2p",
    "union:lww": "lww",
}


class Merge:
    """The merge policy of a field: ``Annotated[int, gether.Merge("counter")]``."""

    __slots__ = ("policy",)

    def __init__(self, policy: str) -> None:
        self.policy = check_policy(policy, "")

    def __repr__(self) -> str:
        return f"Merge({self.policy!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Merge) and other.policy == self.policy

    def __hash__(self) -> int:
        return hash(self.policy)


def schema_of(cls: type) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12, with ``x-merge``) of a document shaped
    like the dataclass ``cls``."""
    if not _is_dataclass(cls):
        raise SchemaError(f"schema_of takes a dataclass, not {cls!r}")
    builder = _Builder()
    root = builder.object_schema(cls)
    if cls in builder.names:  # it contains itself: one definition, referenced at the root
        root = {"$ref": f"#/$defs/{builder.names[cls]}", "type": "object"}
    schema: dict[str, Any] = {"$schema": DRAFT, "title": cls.__name__, **root}
    if builder.defs:
        schema["$defs"] = dict(sorted(builder.defs.items()))
    return schema


def is_model(value: object) -> bool:
    """Whether ``value`` is a dataclass (a class, not an instance)."""
    return _is_dataclass(value)


class _Builder:
    __slots__ = ("defs", "names")

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self.names: dict[type, str] = {}

    def object_schema(self, cls: type, typed: bool = True) -> dict[str, Any]:
        hints = _hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            where = f"{cls.__qualname__}.{field.name}"
            prop = self.annotation(hints.get(field.name, Any), where)
            default = _default_of(field, hints.get(field.name, Any), where)
            if default is dataclasses.MISSING:
                required.append(field.name)
            else:
                prop = {**prop, "default": default}
            properties[field.name] = prop
        schema: dict[str, Any] = {"type": "object"} if typed else {}
        schema.update(properties=properties, additionalProperties=False)
        if required:
            schema["required"] = required
        return schema

    def annotation(self, hint: Any, where: str) -> dict[str, Any]:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Annotated:
            schema = self.annotation(args[0], where)
            for extra in args[1:]:
                if isinstance(extra, Merge):
                    schema = {**schema, "x-merge": extra.policy}
            return schema
        if hint is Any:
            return {}
        if hint in _SCALARS:
            return {"type": _SCALARS[hint]}
        if hint is Text:
            return {"type": "string", "x-merge": "text"}
        if hint is Counter:
            return {"type": "integer", "x-merge": "counter"}
        if origin is Literal:
            return self._literal(args, where)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(args, where)
        if origin is list:
            return {"type": "array", "items": self.annotation(args[0] if args else Any, where)}
        if origin in (set, frozenset):
            items = self.annotation(args[0] if args else Any, where)
            return {"type": "array", "items": items, "x-merge": "union"}
        if origin is dict:
            if args and args[0] is not str:
                raise SchemaError(f"{where}: JSON object keys are strings, not {args[0]!r}")
            values = self.annotation(args[1] if args else Any, where)
            return {"type": "object", "additionalProperties": values}
        if _is_dataclass(hint):
            # the definition has no "type", so that a nullable field can add "null"
            return {"$ref": f"#/$defs/{self._define(hint)}", "type": "object"}
        raise SchemaError(f"{where}: cannot describe {hint!r} in JSON Schema")

    def _define(self, cls: type) -> str:
        name = self.names.get(cls)
        if name is None:
            name = cls.__name__
            taken = set(self.names.values())
            suffix = 2
            while name in taken:
                name, suffix = f"{cls.__name__}{suffix}", suffix + 1
            self.names[cls] = name
            self.defs[name] = {}  # taken before recursing: a model may contain itself
            self.defs[name] = self.object_schema(cls, typed=False)
        return name

    def _literal(self, args: tuple[Any, ...], where: str) -> dict[str, Any]:
        for value in args:
            if value is not None and not isinstance(value, str | int | float | bool):
                raise SchemaError(f"{where}: Literal values must be JSON scalars, not {value!r}")
        return {"enum": list(args)}

    def _union(self, args: tuple[Any, ...], where: str) -> dict[str, Any]:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(rest) == len(args):
            raise SchemaError(f"{where}: only X | None unions can be described, not {args!r}")
        schema = self.annotation(rest[0], where)
        return _nullable(schema, where)


def _nullable(schema: dict[str, Any], where: str) -> dict[str, Any]:
    """``schema`` with ``null`` allowed too."""
    policy = schema.get("x-merge", "lww")
    if policy in CONTAINER_POLICIES:
        raise SchemaError(f"{where}: an x-merge {policy!r} field holds a container, never None")
    if "enum" in schema:
        return schema if None in schema["enum"] else {**schema, "enum": [*schema["enum"], None]}
    declared = schema.get("type")
    if declared is None:
        return schema
    allowed = [declared] if isinstance(declared, str) else list(declared)
    return {**schema, "type": [*allowed, "null"] if "null" not in allowed else allowed}


def _initial(value: object) -> Any:
    if isinstance(value, Text | Counter | Set):
        return value.initial
    raise TypeError(f"{type(value).__name__} is not JSON")


def _default_of(field: dataclasses.Field[Any], hint: Any, where: str) -> Any:
    if field.default is not dataclasses.MISSING:
        value: Any = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return dataclasses.MISSING
    try:
        return json.loads(json.dumps(_to_document(value, hint), allow_nan=False, default=_initial))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: the default {value!r} is not JSON") from exc


def _order(value: Any) -> tuple[str, str]:
    return type(value).__name__, json.dumps(value)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError) as exc:
        raise SchemaError(f"{cls.__qualname__}: cannot read its annotations: {exc}") from exc


def _is_dataclass(value: object) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)


# -- typed access ------------------------------------------------------------------


def model_view(target: Any, cls: type[T]) -> T:
    """A live view of ``target`` (a document, or a ``MapProxy`` in one) as a
    ``cls``: reading an attribute reads the document now, assigning one writes
    through it (one edit, validated like any other).

    It is typed as ``cls`` for editors and type checkers; at run time it is a
    view, not an instance. Fields read as: scalars as values; nested models as
    views; lists, dicts, texts, counters and sets as the document's live
    proxies; a missing field as its default, a plain value (``AttributeError``
    if it has none): assign a field before editing it in place. Assigned
    values are converted by the annotation: a dataclass instance becomes a
    map, a ``str`` in a ``text`` field a ``gether.Text``, an ``int`` in a
    ``counter`` field a ``gether.Counter``, a set a ``gether.Set``.
    """
    if not _is_dataclass(cls):
        raise UsageError(f"model_view takes a dataclass, not {cls!r}")
    return cast(T, ModelView(target, cls))


def model_instance(cls: type[T], value: Mapping[str, Any]) -> T:
    """A ``cls`` instance made from plain JSON (``doc.to_json()``, or a part of it)."""
    if not _is_dataclass(cls):
        raise UsageError(f"model_instance takes a dataclass, not {cls!r}")
    built: T = _build(cls, value, cls.__qualname__)
    return built


class ModelView:
    """See :func:`model_view`."""

    __slots__ = ("_gether_cls", "_gether_fields", "_gether_target")

    def __init__(self, target: Any, cls: type) -> None:
        hints = _hints(cls)
        fields = {f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init}
        object.__setattr__(self, "_gether_target", target)
        object.__setattr__(self, "_gether_cls", cls)
        object.__setattr__(self, "_gether_fields", fields)

    def __getattr__(self, name: str) -> Any:
        hint, field = self._field(name)
        try:
            value = self._gether_target[name]
        except KeyError:
            default = _default_value(field)
            if default is dataclasses.MISSING:
                raise AttributeError(f"{self._gether_cls.__name__}.{name} is not set") from None
            return default
        model = _model_in(hint)
        if model is not None and isinstance(value, MapProxy):
            return ModelView(value, model)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        hint, _ = self._field(name)
        self._gether_target[name] = _to_document(value, hint)

    def __delattr__(self, name: str) -> None:
        self._field(name)
        del self._gether_target[name]

    def _field(self, name: str) -> tuple[Any, dataclasses.Field[Any]]:
        fields: dict[str, tuple[Any, dataclasses.Field[Any]]] = self._gether_fields
        found = fields.get(name)
        if found is None:
            raise AttributeError(f"{self._gether_cls.__name__} has no field {name!r}")
        return found

    def __dir__(self) -> list[str]:
        return sorted(self._gether_fields)

    def __repr__(self) -> str:
        target = self._gether_target
        value = target.to_json() if hasattr(target, "to_json") else target
        return f"<{self._gether_cls.__name__} view {value!r}>"


def _default_value(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _unwrap(hint: Any) -> tuple[Any, str]:
    """The annotation without ``Annotated`` and ``| None``, and its policy."""
    policy = "lww"
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            args = typing.get_args(hint)
            policy = next((m.policy for m in args[1:] if isinstance(m, Merge)), policy)
            hint = args[0]
        elif origin is typing.Union or origin is types.UnionType:
            rest = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(rest) != 1:
                return hint, policy
            hint = rest[0]
        else:
            return hint, policy


def _model_in(hint: Any) -> type | None:
    inner, _ = _unwrap(hint)
    return inner if _is_dataclass(inner) else None


def _to_document(value: Any, hint: Any) -> Any:
    """What to write for ``value`` in a field annotated ``hint``."""
    if value is None or isinstance(value, Text | Counter):
        return value
    inner, policy = _unwrap(hint)
    if (policy == "text" or inner is Text) and isinstance(value, str):
        return Text(value)
    if (policy == "counter" or inner is Counter) and type(value) is int:
        return Counter(value)
    if _is_dataclass(type(value)):
        hints = _hints(type(value))
        return {
            f.name: _to_document(getattr(value, f.name), hints.get(f.name, Any))
            for f in dataclasses.fields(value)
        }
    args = typing.get_args(inner)
    origin = typing.get_origin(inner)
    if isinstance(value, set | frozenset):
        variant = _SET_VARIANTS.get(policy, "or")
        return Set(sorted(value, key=_order), variant)
    if origin is list and isinstance(value, list | tuple):
        return [_to_document(v, args[0] if args else Any) for v in value]
    if origin is dict and isinstance(value, Mapping):
        return {k: _to_document(v, args[1] if args else Any) for k, v in value.items()}
    return value


def _build(hint: Any, value: Any, where: str) -> Any:
    """A Python value of annotation ``hint`` from plain JSON."""
    inner, _ = _unwrap(hint)
    if value is None:
        return None
    if _is_dataclass(inner):
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected an object for {inner.__name__}, got {value!r}")
        hints = _hints(inner)
        kwargs = {
            f.name: _build(hints.get(f.name, Any), value[f.name], f"{where}.{f.name}")
            for f in dataclasses.fields(inner)
            if f.init and f.name in value
        }
        try:
            return inner(**kwargs)
        except TypeError as exc:
            raise UsageError(f"{where}: {exc}") from exc
    if inner is Text:
        return Text(value)
    if inner is Counter:
        return Counter(value)
    origin = typing.get_origin(inner)
    args = typing.get_args(inner)
    item = args[0] if args else Any
    if origin is list:
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (set, frozenset):
        return origin(_build(item, v, where) for v in value)
    if origin is dict:
        return {k: _build(args[1] if args else Any, v, f"{where}[{k!r}]") for k, v in value.items()}
    return value


__all__ = ["Merge", "ModelView", "is_model", "model_instance", "model_view", "schema_of"]
