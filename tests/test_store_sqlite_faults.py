"""SQLite stores and bad files, full disks."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import gether
from gether.errors import CorruptStoreError, StorageError, StorageFullError
from gether.store.base import AuditRecord
from gether.store.sqlite import SQLiteStore
from gether.testing.histories import history

DOC = "doc"


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(CorruptStoreError, match="not a SQLite database"):
        SQLiteStore(str(path))
    with pytest.raises(CorruptStoreError):
        gether.Document.open(f"sqlite:///{path}", DOC)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_another_applications_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.execute("INSERT INTO users VALUES ('ada')")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(CorruptStoreError, match="another application"):
        SQLiteStore(str(path))
    assert path.read_bytes() == before


def test_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(str(path))
    events, _ = history(edits=300, seed=41)
    store.append(DOC, events)
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 6] = random.Random(0).randbytes(page * 4)  # trample on pages
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError):
        damaged = SQLiteStore(str(path))
        try:
            damaged.events(DOC)
            assert damaged.integrity_check() == "ok"
        finally:
            damaged.close()


def test_truncated_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(str(path))
    store.append(DOC, history(edits=300, seed=42)[0])
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptStoreError):
        damaged = SQLiteStore(str(path))
        try:
            damaged.events(DOC)
        finally:
            damaged.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteStore(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StorageError, match="schema 999"):
        SQLiteStore(str(path))


def test_a_schema_1_store_gains_the_audit_table(tmp_path: Path) -> None:
    """A file written before the audit trail (schema 1) migrates on open and
    keeps its events."""
    path = tmp_path / "events.db"
    events, doc = history(seed=8)
    store = SQLiteStore(str(path))
    store.append("d", events)
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE audit")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    try:
        assert store.version("d") == doc.version and store.audit("d") == []
        record = AuditRecord("r", 1, "k", "s", "tcp", 1, 0.0, "set /x", "accepted")
        store.append_audit("d", [record])
        assert store.audit("d") == [record] and store.audit_authors("d") == {"k": "s"}
    finally:
        store.close()


# -- a full disk ---------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def can_mount() -> bool:
    return (
        os.geteuid() == 0
        and subprocess.run(["sh", "-c", "command -v mount"], capture_output=True).returncode == 0
    )


def lift_file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def fill_until_full(
    folder: Path,
    expected: type[StorageError] = StorageFullError,
    make_room: Callable[[], None] | None = None,
) -> None:
    """The scenario, on a folder whose file system (or process) has little room.
    A full file system gives ``StorageFullError``; a process over its file-size
    limit gets EFBIG, which SQLite reports as an I/O error (``StorageError``)."""
    filler = folder / "filler"
    filler.write_bytes(b"\x00" * 256 * 1024)
    url = f"sqlite:///{folder}/events.db"
    store = SQLiteStore(f"{folder}/events.db")
    doc = gether.Document.open(url, "other")  # its identity is stored while there is room
    events, _ = history(replica_count=3, edits=4000, seed=43)
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]
    written = 0
    failed_at = None
    for i, batch in enumerate(batches):
        try:
            store.append(DOC, batch)
            written += len(batch)
        except StorageError as exc:
            assert isinstance(exc, expected), exc
            failed_at = i
            break
    assert failed_at is not None, "the disk never filled up"
    # nothing of the failed batch was acknowledged or written
    assert store.count(DOC) == written
    assert store.integrity_check() == "ok"
    with contextlib.suppress(StorageError):
        for i in range(10_000):
            doc[f"key{i}"] = "x" * 200
    before = doc.to_json()
    with pytest.raises(expected):
        doc["one more"] = "y" * 5000
    assert doc.to_json() == before
    # room again: the same batch goes in, and the replica writes again
    filler.unlink()
    if make_room is not None:
        make_room()
    store.append(DOC, batches[failed_at])
    assert store.count(DOC) == written + len(batches[failed_at])
    doc["one more"] = "y"
    doc.close()
    assert store.integrity_check() == "ok"
    store.close()


def test_disk_full(tmp_path: Path) -> None:
    if can_mount() and not os.environ.get("GETHER_NO_MOUNT"):
        try:
            with tiny_tmpfs(tmp_path / "tiny", "1m") as folder:
                fill_until_full(folder)
            return
        except subprocess.CalledProcessError:
            pass  # no permission to mount here: limit the process's file size instead
    code = (
        "import resource, signal, sys; from pathlib import Path\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_store_sqlite_faults import fill_until_full, lift_file_size_limit\n"
        "from gether.errors import StorageError\n"
        f"fill_until_full(Path({str(tmp_path)!r}), StorageError, lift_file_size_limit)\n"
    )
    src = str(Path(gether.__file__).parents[1])
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": src})
