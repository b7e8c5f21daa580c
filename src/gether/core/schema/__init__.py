"""Document schemas: JSON Schema (Draft 2020-12) with an ``x-merge`` policy per
field (and ``x-encrypt`` on fields sealed under a document key, see
``core/sealed.py``), compiled into a tree of nodes, and the pure checks that
validate edits.

``tree``      Schema (checked, compiled), Node (policy, child(key), constraints)
``policies``  the x-merge names and the field types each fits
``rules``     static checks of written values, state checks of containers
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gether.core.schema.policies import CONTAINER_POLICIES, LWW, SET_POLICIES, check_policy
from gether.core.schema.rules import (
    ABSENT,
    Violation,
    check_item,
    check_map_delete,
    check_map_set,
    check_state,
    kind_name,
    violations,
)
from gether.core.schema.tree import DRAFT, NO_DEFAULT, Node, Schema


def compile_schema(source: Schema | Mapping[str, Any]) -> Schema:
    """A ``Schema`` from a JSON Schema dict (or the schema itself); ``SchemaError``
    if it is not valid or not usable by Gether."""
    return source if isinstance(source, Schema) else Schema(source)


__all__ = [
    "ABSENT",
    "CONTAINER_POLICIES",
    "DRAFT",
    "LWW",
    "NO_DEFAULT",
    "SET_POLICIES",
    "Node",
    "Schema",
    "Violation",
    "check_item",
    "check_map_delete",
    "check_map_set",
    "check_policy",
    "check_state",
    "compile_schema",
    "kind_name",
    "violations",
]
