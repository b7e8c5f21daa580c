"""The public facade: a small, explicit surface with the names API.md promises."""

from __future__ import annotations

import gether


def test_all_names_exist() -> None:
    for name in gether.__all__:
        assert hasattr(gether, name), name


def test_api_md_names() -> None:
    for name in ("Document", "Text", "Counter", "Event", "Version", "GetherError"):
        assert name in gether.__all__
    for name in ("Replace", "Splice", "Move", "PathChange", "ChangeSet"):
        assert name in gether.__all__
    doc = gether.Document()
    for method in (
        "text", "list", "map", "counter", "apply_update", "get", "to_json", "transaction",
        "events_since", "apply_events", "save", "load", "at", "fork", "merge", "version",
    ):  # fmt: skip
        assert hasattr(doc, method), method


def test_every_error_has_a_stable_code() -> None:
    errors = [getattr(gether, n) for n in gether.__all__ if n.endswith("Error")]
    codes = [e.code for e in errors]
    assert all(issubclass(e, gether.GetherError) for e in errors)
    assert len(set(codes)) == len(codes)


def test_import_is_light() -> None:
    """``import gether`` pulls in no event loop, database driver or test kit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    heavy = ("asyncio", "sqlite3", "psycopg", "redis", "hypothesis", "pytest")
    code = f"import sys, gether; print([m for m in {heavy!r} if m in sys.modules])"
    src = str(Path(gether.__file__).parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert out.stdout.strip() == "[]"
