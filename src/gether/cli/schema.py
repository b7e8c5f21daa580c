"""``gether schema module:Class``: print the JSON Schema of a typed model."""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from gether.core.schema import Schema
from gether.errors import UsageError
from gether.models import is_model, schema_of


def schema_json(target: str) -> str:
    """The JSON Schema named by ``module:Class`` (a dataclass, or a schema dict),
    checked, as indented JSON with sorted keys."""
    value = load_target(target)
    if is_model(value):
        source = schema_of(value)
    elif isinstance(value, dict):
        source = value
    else:
        raise UsageError(f"{target} is a {type(value).__name__}: expected a dataclass or a dict")
    Schema(source)  # refuse what a document would refuse
    return json.dumps(source, indent=2, sort_keys=True, ensure_ascii=False)


def load_target(target: str) -> Any:
    """The object ``module:attribute`` names (the current folder is importable)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"{target!r}: expected module:Class (e.g. myapp.models:Todo)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}") from exc
    return value
