"""The custom merge functions documents may name (``x-merge: custom:NAME``).

This registry is the one piece of process-wide state in Gether, and it lives
at the edge: the core receives it as a mapping. A merge function must be
pure and give the same result whatever the order of its inputs, or replicas
would disagree; registration tries it on a few samples in every order and
refuses it otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gether.core.policy import MergeFunction, check_merge_function
from gether.errors import UsageError

_registry: dict[str, MergeFunction] = {}

registered: Mapping[str, MergeFunction] = MappingProxyType(_registry)
"""A live, read-only view of the registered functions."""


def register_merge(name: str, function: MergeFunction) -> None:
    """Make ``function`` (concurrent values -> one value) available as
    ``custom:NAME``. Registering another function under a taken name is an
    error; registering the same one again is not."""
    if not isinstance(name, str) or not name or "/" in name:
        raise UsageError(f"a merge function's name is a non-empty string without '/', not {name!r}")
    if _registry.get(name, function) is not function:
        raise UsageError(f"a different merge function is already registered as {name!r}")
    check_merge_function(name, function)
    _registry[name] = function


__all__ = ["register_merge", "registered"]
