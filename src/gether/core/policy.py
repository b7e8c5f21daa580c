"""Merge policies: how a field combines concurrent writes.

A policy never changes how ops integrate: every replica, schema or not,
reaches the same state from the same events. It decides two things only:

* what a local write to the field becomes. ``counter``, ``text`` and
  ``union*`` fields hold a container whose identity is derived from the
  field's place (like ``doc.text("notes")`` at the root), so replicas that
  first write the field concurrently share one container and both sides'
  increments, edits or elements survive; assigning a plain value to such a
  field edits the container towards it (a counter by the difference, a text
  by one splice, a set by adds and removes);
* how the field reads: ``lww`` the last writer's value, ``mvr`` the same,
  with every concurrent value kept readable through ``doc.conflicts(path)``
  until someone writes again (as Automerge does), ``custom:NAME`` a
  registered function of the concurrent values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from gether.core.ids import ROOT, ContainerId
from gether.core.values import Kind
from gether.errors import UsageError

LWW = "lww"
MVR = "mvr"
COUNTER = "counter"
TEXT = "text"
UNION = "union"
CUSTOM_PREFIX = "custom:"

CONTAINER_POLICIES: dict[str, Kind] = {
    COUNTER: Kind.COUNTER,
    TEXT: Kind.TEXT,
    UNION: Kind.SET,
    "union:or": Kind.SET,
    "union:g": Kind.GSET,
    "union:2p": Kind.TWO_PHASE_SET,
    "union:lww": Kind.LWW_SET,
}
"""Policies whose field holds a container, and its kind."""

POLICIES = frozenset({LWW, MVR, *CONTAINER_POLICIES})

MergeFunction = Callable[[list[Any]], Any]


class PolicyNode(Protocol):
    """The part of a compiled schema that policies read: one node per field."""

    @property
    def policy(self) -> str: ...

    def child(self, key: str | int) -> PolicyNode | None: ...


def check_policy(name: object) -> str:
    """``name`` if it names a policy, else a UsageError."""
    if isinstance(name, str) and (
        name in POLICIES or (name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX))
    ):
        return name
    known = ", ".join(sorted(POLICIES))
    raise UsageError(f"unknown merge policy {name!r} (known: {known}, custom:NAME)")


def custom_name(policy: str) -> str | None:
    return policy[len(CUSTOM_PREFIX) :] if policy.startswith(CUSTOM_PREFIX) else None


def derived_name(parent: ContainerId, key: str) -> str:
    """The name of the container a policy field holds: from the field's place,
    so the same on every replica. At the root it is the key itself, the name
    ``doc.text(key)`` uses; below, the parent and the escaped key, where the
    parent is ``replica@counter`` for a container made by an op (replica ids
    never contain ``@`` or ``/``) or the escaped name of a named map."""
    if parent == ROOT:
        return key
    if parent[0].startswith("/"):
        return f"{_escape(parent[0][1:])}/{_escape(key)}"
    return f"{parent[0]}@{parent[1]}/{_escape(key)}"


def named_place(name: str) -> tuple[ContainerId, str]:
    """The inverse of ``derived_name``: where a named container sits (its
    parent and key), read from the name alone, so that every replica places
    it the same way whatever writes link it. A top-level name holding ``/``
    reads as a nested place."""
    prefix, slash, escaped = name.partition("/")
    if not slash:
        return ROOT, name
    key = _unescape(escaped)
    replica, at, counter = prefix.rpartition("@")
    if at and counter.isdigit() and replica:
        return (replica, int(counter)), key
    return ("/" + _unescape(prefix), int(Kind.MAP)), key


def _escape(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1").replace("@", "~2")


def _unescape(text: str) -> str:
    return text.replace("~2", "@").replace("~1", "/").replace("~0", "~")


def check_merge_function(name: str, function: MergeFunction) -> None:
    """Refuse a merge function whose result depends on the order of its
    inputs (tried on a few samples and all their orders) or that fails."""
    if not callable(function):
        raise UsageError(f"merge function {name!r} is not callable")
    samples: list[list[Any]] = [
        [1, 2, 3],
        [3, -1, 2.5],
        ["b", "a", "c"],
        [True, False, True],
        [0, 10, 5, 7],
    ]
    for sample in samples:
        try:
            results = {repr(function(list(order))) for order in itertools.permutations(sample)}
        except (TypeError, ValueError, ArithmeticError):
            continue  # not meant for this type of value
        if len(results) > 1:
            raise UsageError(
                f"merge function {name!r} depends on the order of its inputs "
                f"(on {sample!r} it gives {sorted(results)}): it must not"
            )


__all__ = [
    "CONTAINER_POLICIES",
    "POLICIES",
    "MergeFunction",
    "PolicyNode",
    "check_merge_function",
    "check_policy",
    "custom_name",
    "derived_name",
    "named_place",
]
