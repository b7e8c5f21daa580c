"""The embedded default store: one SQLite file in WAL mode.

Every append is one ``BEGIN IMMEDIATE`` transaction committed with
``synchronous=FULL``, so an append that returned survives a crash or power
loss. The schema is versioned by ``PRAGMA user_version`` with numbered
migrations, and marked by ``PRAGMA application_id`` so that a file of another
application is refused before anything is written to it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from urllib.parse import quote

import msgpack

from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import (
    CorruptStoreError,
    GetherError,
    StorageError,
    StorageFullError,
    StoreUnavailableError,
)
from gether.store.base import (
    AuditRecord,
    EventKey,
    Identity,
    Snapshot,
    check_doc_id,
    event_order,
    plan_append,
)

APPLICATION_ID = 0x47746872  # "Gthr"
SQLITE_MAGIC = b"SQLite format 3\x00"
SNAPSHOTS_KEPT = 2

MIGRATIONS: tuple[str, ...] = (
    # 1: documents, events, per-replica tips, snapshots, local identities
    """
    CREATE TABLE documents (
        id      INTEGER PRIMARY KEY,
        name    TEXT NOT NULL UNIQUE,
        events  INTEGER NOT NULL DEFAULT 0,
        bytes   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        doc     INTEGER NOT NULL REFERENCES documents(id),
        replica TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        lamport INTEGER NOT NULL,
        hash    BLOB NOT NULL,
        data    BLOB NOT NULL,
        UNIQUE (doc, replica, seq),
        UNIQUE (doc, hash)
    );
    CREATE INDEX events_order ON events (doc, lamport, replica, seq);
    CREATE TABLE tips (
        doc     INTEGER NOT NULL REFERENCES documents(id),
        replica TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        PRIMARY KEY (doc, replica)
    ) WITHOUT ROWID;
    CREATE TABLE snapshots (
        id      INTEGER PRIMARY KEY,
        doc     INTEGER NOT NULL REFERENCES documents(id),
        events  INTEGER NOT NULL,
        version BLOB NOT NULL,
        data    BLOB NOT NULL
    );
    CREATE INDEX snapshots_doc ON snapshots (doc, events);
    CREATE TABLE identities (
        doc     INTEGER PRIMARY KEY REFERENCES documents(id),
        replica TEXT NOT NULL,
        seed    BLOB NOT NULL
    );
    """,
    # 2: the audit trail of a server (server/audit.py), kept beside the events
    """
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        doc         INTEGER NOT NULL REFERENCES documents(id),
        replica     TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        key_id      TEXT NOT NULL,
        subject     TEXT NOT NULL,
        connection  TEXT NOT NULL,
        hlc         INTEGER NOT NULL,
        received    REAL NOT NULL,
        summary     TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        code        TEXT
    );
    CREATE INDEX audit_doc ON audit (doc, id);
    """,
)

AUDIT_COLUMNS = "replica, seq, key_id, subject, connection, hlc, received, summary, verdict, code"


def storage_error(exc: sqlite3.Error, path: str) -> GetherError:
    """The typed error for a SQLite failure."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return StorageFullError(f"{path}: no space left ({exc})")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptStoreError(f"{path} is damaged or not a database ({exc})")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return StoreUnavailableError("this store is closed")
    return StorageError(f"{path}: {exc}")


def check_existing_file(path: str) -> None:
    """Refuse, without writing to it, a file that is not a Gether SQLite store."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    if not header:
        return
    if header != SQLITE_MAGIC:
        raise CorruptStoreError(f"{path} is not a SQLite database")
    try:
        probe = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            app_id = probe.execute("PRAGMA application_id").fetchone()[0]
            version = probe.execute("PRAGMA user_version").fetchone()[0]
            tables = probe.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise CorruptStoreError(f"{path} is damaged or not a database ({exc})") from exc
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise CorruptStoreError(f"{path} is a SQLite database of another application")
    if version > len(MIGRATIONS):
        raise StorageError(
            f"{path} has schema {version}; this Gether reads up to {len(MIGRATIONS)}"
        )


class SQLiteStore:
    """A ``BlockingStore`` on one SQLite file (one handle per thread)."""

    def __init__(self, path: str) -> None:
        self.path = path
        check_existing_file(path)
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise storage_error(exc, path) from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise storage_error(exc, path) from exc
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._write():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
            if version == 0:
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; on any failure it is rolled back whole."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                # the failed statement may have rolled back already
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, self.path) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from exc

    def _doc_row(self, db: sqlite3.Connection, doc_id: str) -> int | None:
        row = db.execute("SELECT id FROM documents WHERE name = ?", (check_doc_id(doc_id),))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def _ensure_doc(self, db: sqlite3.Connection, doc_id: str) -> int:
        row = self._doc_row(db, doc_id)
        if row is not None:
            return row
        cursor = db.execute("INSERT INTO documents (name) VALUES (?)", (doc_id,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- events ------------------------------------------------------------------

    def append(self, doc_id: str, events: Sequence[Event]) -> int:
        check_doc_id(doc_id)
        with self._write() as db:
            doc = self._doc_row(db, doc_id)

            def lookup(ids: Collection[EventKey]) -> dict[EventKey, bytes]:
                if doc is None:
                    return {}
                tips = self._tips(db, doc, {replica for replica, _ in ids})
                found: dict[EventKey, bytes] = {}
                for replica, seq in ids:
                    if seq <= tips.get(replica, 0):
                        row = db.execute(
                            "SELECT hash FROM events WHERE doc = ? AND replica = ? AND seq = ?",
                            (doc, replica, seq),
                        ).fetchone()
                        if row is not None:
                            found[(replica, seq)] = row[0]
                return found

            fresh = plan_append(events, lookup)
            if not fresh:
                return 0
            if doc is None:
                doc = self._ensure_doc(db, doc_id)
            rows = [(doc, *e.id, e.lamport, e.hash, e.to_bytes()) for e in fresh]
            db.executemany(
                "INSERT INTO events (doc, replica, seq, lamport, hash, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            tips: dict[str, int] = {}
            for event in fresh:
                replica, seq = event.id
                tips[replica] = max(seq, tips.get(replica, 0))
            db.executemany(
                "INSERT INTO tips (doc, replica, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (doc, replica) DO UPDATE SET seq = max(seq, excluded.seq)",
                [(doc, replica, seq) for replica, seq in tips.items()],
            )
            db.execute(
                "UPDATE documents SET events = events + ?, bytes = bytes + ? WHERE id = ?",
                (len(rows), sum(len(r[-1]) for r in rows), doc),
            )
            return len(fresh)

    @staticmethod
    def _tips(db: sqlite3.Connection, doc: int, replicas: Collection[str]) -> dict[str, int]:
        if not replicas:
            return {}
        tips: dict[str, int] = {}
        for replica in replicas:
            row = db.execute(
                "SELECT seq FROM tips WHERE doc = ? AND replica = ?", (doc, replica)
            ).fetchone()
            if row is not None:
                tips[replica] = row[0]
        return tips

    def events(self, doc_id: str, since: Version | None = None) -> list[Event]:
        with self._read() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return []
            if since is None or not since:
                rows = db.execute(
                    "SELECT data FROM events WHERE doc = ? ORDER BY lamport, replica, seq", (doc,)
                ).fetchall()
                return [Event.from_bytes(data) for (data,) in rows]
            found: list[Event] = []
            for replica, tip in db.execute(
                "SELECT replica, seq FROM tips WHERE doc = ?", (doc,)
            ).fetchall():
                have = since.get(replica, 0)
                if tip > have:
                    found.extend(
                        Event.from_bytes(data)
                        for (data,) in db.execute(
                            "SELECT data FROM events WHERE doc = ? AND replica = ? AND seq > ?",
                            (doc, replica, have),
                        )
                    )
            found.sort(key=event_order)
            return found

    def version(self, doc_id: str) -> Version:
        with self._read() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return Version({})
            rows = db.execute("SELECT replica, seq FROM tips WHERE doc = ?", (doc,))
            return Version(dict(rows.fetchall()))

    def count(self, doc_id: str) -> int:
        with self._read() as db:
            row = db.execute(
                "SELECT events FROM documents WHERE name = ?", (check_doc_id(doc_id),)
            ).fetchone()
            return 0 if row is None else int(row[0])

    def size(self, doc_id: str) -> int:
        """Bytes of the stored events of a document."""
        with self._read() as db:
            row = db.execute(
                "SELECT bytes FROM documents WHERE name = ?", (check_doc_id(doc_id),)
            ).fetchone()
            return 0 if row is None else int(row[0])

    def documents(self) -> list[str]:
        with self._read() as db:
            rows = db.execute("SELECT name FROM documents WHERE events > 0 ORDER BY name")
            return [name for (name,) in rows.fetchall()]

    # -- snapshots and identity --------------------------------------------------------

    def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None:
        check_doc_id(doc_id)
        version = msgpack.packb(dict(snapshot.version))
        with self._write() as db:
            doc = self._ensure_doc(db, doc_id)
            db.execute(
                "INSERT INTO snapshots (doc, events, version, data) VALUES (?, ?, ?, ?)",
                (doc, sum(snapshot.version.values()), version, snapshot.data),
            )
            db.execute(
                "DELETE FROM snapshots WHERE doc = ? AND id NOT IN"
                " (SELECT id FROM snapshots WHERE doc = ? ORDER BY events DESC, id DESC LIMIT ?)",
                (doc, doc, SNAPSHOTS_KEPT),
            )

    def load_snapshot(self, doc_id: str) -> Snapshot | None:
        with self._read() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return None
            row = db.execute(
                "SELECT version, data FROM snapshots WHERE doc = ?"
                " ORDER BY events DESC, id DESC LIMIT 1",
                (doc,),
            ).fetchone()
        if row is None:
            return None
        return Snapshot(Version(msgpack.unpackb(row[0])), bytes(row[1]))

    def delete_snapshots(self, doc_id: str) -> int:
        with self._write() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return 0
            return db.execute("DELETE FROM snapshots WHERE doc = ?", (doc,)).rowcount

    def claim_identity(self, doc_id: str, identity: Identity) -> Identity:
        check_doc_id(doc_id)
        with self._write() as db:
            doc = self._ensure_doc(db, doc_id)
            db.execute(
                "INSERT OR IGNORE INTO identities (doc, replica, seed) VALUES (?, ?, ?)",
                (doc, identity.replica_id, identity.seed),
            )
            replica, seed = db.execute(
                "SELECT replica, seed FROM identities WHERE doc = ?", (doc,)
            ).fetchone()
            return Identity(replica, bytes(seed))

    # -- the audit trail -----------------------------------------------------------------

    def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None:
        check_doc_id(doc_id)
        if not records:
            return
        with self._write() as db:
            doc = self._ensure_doc(db, doc_id)
            db.executemany(
                f"INSERT INTO audit (doc, {AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(doc, *_audit_row(r)) for r in records],
            )

    def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]:
        with self._read() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return []
            rows = db.execute(
                f"SELECT {AUDIT_COLUMNS} FROM (SELECT * FROM audit WHERE doc = ?"
                " ORDER BY id DESC LIMIT ?) ORDER BY id",
                (doc, -1 if limit is None else limit),
            ).fetchall()
        return [AuditRecord(*row) for row in rows]

    def audit_authors(self, doc_id: str) -> dict[str, str]:
        with self._read() as db:
            doc = self._doc_row(db, doc_id)
            if doc is None:
                return {}
            # SQLite takes the bare column from the row of min(id)
            rows = db.execute(
                "SELECT key_id, subject, min(id) FROM audit"
                " WHERE doc = ? AND verdict = 'accepted' GROUP BY key_id",
                (doc,),
            ).fetchall()
        return {key_id: subject for key_id, subject, _ in rows}

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: "ok" for a sound file."""
        with self._read() as db:
            return "\n".join(row[0] for row in db.execute("PRAGMA integrity_check").fetchall())

    def close(self) -> None:
        self._db.close()


def _audit_row(record: AuditRecord) -> tuple[object, ...]:
    return (
        record.replica,
        record.seq,
        record.key_id,
        record.subject,
        record.connection,
        record.hlc,
        record.received,
        record.summary,
        record.verdict,
        record.code,
    )
