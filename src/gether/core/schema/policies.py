"""The names ``x-merge`` accepts, and which field types each fits.

A policy names how concurrent writes to one field merge. Register policies
(``lww``, ``mvr``, ``custom:NAME``) read the writes a map key or list element
holds, so they fit any type. Container policies make the field hold one
container whose own CRDT merges: ``counter`` a Counter (an integer field),
``text`` a Text (a string field), ``union`` and its variants a Set (an array of
scalars).
"""

from __future__ import annotations

from gether.errors import SchemaError

LWW = "lww"
REGISTER_POLICIES = frozenset({"lww", "mvr"})
SET_POLICIES = frozenset({"union", "union:g", "union:2p", "union:lww"})
CUSTOM_PREFIX = "custom:"

CONTAINER_POLICIES: dict[str, tuple[str, str]] = {
    "counter": ("COUNTER", "integer"),
    "text": ("TEXT", "string"),
    **{name: ("SET", "array") for name in SET_POLICIES},
}
"""Policy -> (the container kind the field holds, the JSON type it renders as)."""

SCALAR_TYPES = frozenset({"null", "boolean", "integer", "number", "string"})


def check_policy(name: object, where: str) -> str:
    """``name`` if it is a policy Gether knows, else SchemaError."""
    if not isinstance(name, str):
        raise SchemaError(f"x-merge must be a string, got {type(name).__name__}", where)
    if name in REGISTER_POLICIES or name in CONTAINER_POLICIES:
        return name
    if name.startswith(CUSTOM_PREFIX):
        function = name[len(CUSTOM_PREFIX) :]
        if function and function.isprintable() and not any(c.isspace() for c in function):
            return name
        raise SchemaError(f"x-merge {name!r}: custom:NAME needs a function name", where)
    known = sorted(REGISTER_POLICIES | CONTAINER_POLICIES.keys())
    raise SchemaError(
        f"unknown x-merge policy {name!r} (known: {', '.join(known)}, custom:NAME)", where
    )


def container_kind(policy: str) -> str | None:
    """The container kind (``Kind`` member name) a field of ``policy`` holds, if any."""
    entry = CONTAINER_POLICIES.get(policy)
    return entry[0] if entry is not None else None


def check_fits(policy: str, types: frozenset[str] | None, where: str) -> None:
    """SchemaError unless a field of declared JSON ``types`` may use ``policy``."""
    entry = CONTAINER_POLICIES.get(policy)
    if entry is None or types is None:
        return
    kind, json_type = entry
    if types != {json_type}:
        declared = ", ".join(sorted(types))
        raise SchemaError(
            f"x-merge {policy!r} holds a {kind.lower()}: the field's type must be "
            f"{json_type!r}, not {declared!r}",
            where,
        )


__all__ = [
    "CONTAINER_POLICIES",
    "CUSTOM_PREFIX",
    "LWW",
    "REGISTER_POLICIES",
    "SCALAR_TYPES",
    "SET_POLICIES",
    "check_fits",
    "check_policy",
    "container_kind",
]
