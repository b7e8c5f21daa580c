"""The names ``x-merge`` accepts, and which field types each fits.

The policies themselves live in ``core/policy.py``; this is what a schema
needs of them. Register policies (``lww``, ``mvr``, ``custom:NAME``) read the
writes a map key or list element holds, so they fit any type. Container
policies make the field hold one container whose own CRDT merges: ``counter``
a Counter (an integer field), ``text`` a Text (a string field), ``union`` and
its variants a Set (an array of scalars).
"""

from __future__ import annotations

from gether.core import policy
from gether.core.values import SET_KINDS, Kind
from gether.errors import SchemaError, UsageError

LWW = policy.LWW
CUSTOM_PREFIX = policy.CUSTOM_PREFIX

CONTAINER_POLICIES: dict[str, str] = {
    name: kind.name for name, kind in policy.CONTAINER_POLICIES.items()
}
"""Policy -> the ``Kind`` name of the container the field holds."""

SET_POLICIES = frozenset(n for n, k in policy.CONTAINER_POLICIES.items() if k in SET_KINDS)
SET_KIND_NAMES = frozenset(kind.name for kind in SET_KINDS)

JSON_TYPES: dict[str, str] = {
    Kind.COUNTER.name: "integer",
    Kind.TEXT.name: "string",
    **dict.fromkeys(SET_KIND_NAMES, "array"),
}
"""The JSON type each policy container renders as."""

KIND_WORDS: dict[str, str] = {
    Kind.MAP.name: "map",
    Kind.LIST.name: "list",
    Kind.TEXT.name: "text",
    Kind.COUNTER.name: "counter",
    Kind.SET.name: "set",
    Kind.GSET.name: "grow-only set",
    Kind.TWO_PHASE_SET.name: "two-phase set",
    Kind.LWW_SET.name: "LWW set",
}

POLICY_OF_KIND: dict[str, str] = {
    Kind.TEXT.name: "text",
    Kind.COUNTER.name: "counter",
    Kind.SET.name: "union",
    Kind.GSET.name: "union:g",
    Kind.TWO_PHASE_SET.name: "union:2p",
    Kind.LWW_SET.name: "union:lww",
}
"""The policy a field needs to hold a container of each kind that has one."""

SCALAR_TYPES = frozenset({"null", "boolean", "integer", "number", "string"})


def check_policy(name: object, where: str) -> str:
    """``name`` if it is a policy Gether knows, else SchemaError."""
    if not isinstance(name, str):
        raise SchemaError(f"x-merge must be a string, got {type(name).__name__}", where)
    if name.startswith(CUSTOM_PREFIX):
        function = name[len(CUSTOM_PREFIX) :]
        if not function or "/" in function or not function.isprintable():
            raise SchemaError(f"x-merge {name!r}: custom:NAME needs a function name", where)
    try:
        return policy.check_policy(name)
    except UsageError as exc:
        raise SchemaError(str(exc), where) from exc


def container_kind(name: str) -> str | None:
    """The container kind (``Kind`` member name) a field of policy ``name`` holds."""
    return CONTAINER_POLICIES.get(name)


def check_fits(name: str, types: frozenset[str] | None, where: str) -> None:
    """SchemaError unless a field of declared JSON ``types`` may use policy ``name``."""
    kind = CONTAINER_POLICIES.get(name)
    if kind is None or types is None:
        return
    json_type = JSON_TYPES[kind]
    if types != {json_type}:
        declared = ", ".join(sorted(types))
        raise SchemaError(
            f"x-merge {name!r} holds a {KIND_WORDS[kind]}: the field's type must be "
            f"{json_type!r}, not {declared!r}",
            where,
        )


__all__ = [
    "CONTAINER_POLICIES",
    "CUSTOM_PREFIX",
    "JSON_TYPES",
    "KIND_WORDS",
    "LWW",
    "POLICY_OF_KIND",
    "SCALAR_TYPES",
    "SET_KIND_NAMES",
    "SET_POLICIES",
    "check_fits",
    "check_policy",
    "container_kind",
]
