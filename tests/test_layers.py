"""The layers of docs/architecture.md, checked on the source: the pure core
never does I/O, reads the clock or draws randomness, and imports only below it."""

from __future__ import annotations

import ast
from pathlib import Path

import gether

SRC = Path(gether.__file__).parent
FORBIDDEN_IN_CORE = {"asyncio", "socket", "sqlite3", "time", "random", "secrets", "os", "threading"}
# each package may import only itself and the ones listed (and the standard library)
_BELOW_EDGES = {
    "errors", "core", "document", "keys", "merges", "models", "runtime", "store", "sync",
    "transport",
}  # fmt: skip
ALLOWED = {
    "errors": set(),
    "core": {"errors"},
    "store": {"errors", "core"},
    "sync": {"errors", "core"},
    "transport": {"errors"},
    "document": {"errors", "core", "merges", "models", "runtime", "store"},
    "merges": {"errors", "core"},
    "keys": {"errors", "core"},
    "models": {"errors", "core"},
    "runtime": {"core"},
    "server": _BELOW_EDGES,
    "client": _BELOW_EDGES,
    "peer": _BELOW_EDGES | {"server", "client"},
    "cli": _BELOW_EDGES | {"server", "client", "peer"},
    "testing": _BELOW_EDGES | {"server"},
    "__main__": {"cli"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_core_is_pure() -> None:
    for path in [*(SRC / "core").rglob("*.py"), *(SRC / "sync").rglob("*.py")]:
        bad = {m.split(".")[0] for m in imports(path)} & FORBIDDEN_IN_CORE
        assert not bad, f"{path.name} imports {bad}"


def test_layers_import_only_below() -> None:
    for path in SRC.rglob("*.py"):
        layer = layer_of(path)
        if layer == "__init__":
            continue
        for module in imports(path):
            parts = module.split(".")
            if parts[0] != "gether" or len(parts) == 1:
                continue
            target = parts[1]
            if target in ("__init__",) or target == layer:
                continue
            if target == "gether" or (layer in ("cli", "testing") and target == "errors"):
                continue
            assert target in ALLOWED[layer], f"{path.relative_to(SRC)} imports gether.{target}"
