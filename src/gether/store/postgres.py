"""The server store: one PostgreSQL database, shared by any number of processes.

The schema mirrors the SQLite store's. Migrations are numbered and recorded in
``gether_schema``; they run under an advisory lock, so several processes
opening a fresh database at once apply each of them exactly once.

Every ``append`` is one transaction that first locks its document's row
(``SELECT ... FOR NO KEY UPDATE``, creating the row if needed): appends to one
document from any number of connections and processes take turns, so the
lookups of ``plan_append`` see a state that cannot change before the commit.
Appends to different documents do not wait for each other, and neither do
snapshots (their row locks do not conflict with an append's).

An append is acknowledged once PostgreSQL has committed it (``synchronous_commit``
is raised to ``on`` if the server turned it off). If the connection dies before
the commit is sent, the call fails with ``StoreUnavailableError`` and nothing is
written; if it dies while committing, the outcome is unknown, and appending the
same batch again (appends are idempotent) settles it. A handle whose connection
was lost reconnects on its next call; a call that finds its idle connection
dead (a server restart) runs once more on a new one.

Each handle holds one connection (``AsyncStore`` gives each worker thread its
own handle).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from typing import Any, LiteralString, TypeVar

import msgpack
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import (
    CorruptStoreError,
    StorageError,
    StorageFullError,
    StoreUnavailableError,
    UsageError,
)
from gether.store.base import (
    AuditRecord,
    EventKey,
    Identity,
    Snapshot,
    check_doc_id,
    plan_append,
)

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATION_LOCK = 0x47746872_00000001  # "Gthr", 1: one migrating process at a time
SNAPSHOTS_KEPT = 2
CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "gether"}
TABLES = ("documents", "events", "tips", "snapshots", "identities", "audit")

SCHEMA_TABLE = """
    CREATE TABLE gether_schema (
        version INTEGER PRIMARY KEY,
        applied TIMESTAMPTZ NOT NULL DEFAULT now()
    )
"""

# Names and replica ids sort by code point, as in Python and SQLite: COLLATE "C".
MIGRATIONS: tuple[str, ...] = (
    # 1: documents, events, per-replica tips, snapshots, local identities
    """
    CREATE TABLE documents (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name    TEXT COLLATE "C" NOT NULL UNIQUE,
        events  BIGINT NOT NULL DEFAULT 0,
        bytes   BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        doc     BIGINT NOT NULL REFERENCES documents(id),
        replica TEXT COLLATE "C" NOT NULL,
        seq     BIGINT NOT NULL,
        lamport BIGINT NOT NULL,
        hash    BYTEA NOT NULL,
        data    BYTEA NOT NULL,
        UNIQUE (doc, replica, seq),
        UNIQUE (doc, hash)
    );
    CREATE INDEX events_order ON events (doc, lamport, replica, seq);
    CREATE TABLE tips (
        doc     BIGINT NOT NULL REFERENCES documents(id),
        replica TEXT COLLATE "C" NOT NULL,
        seq     BIGINT NOT NULL,
        PRIMARY KEY (doc, replica)
    );
    CREATE TABLE snapshots (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc     BIGINT NOT NULL REFERENCES documents(id),
        events  BIGINT NOT NULL,
        version BYTEA NOT NULL,
        data    BYTEA NOT NULL
    );
    CREATE INDEX snapshots_doc ON snapshots (doc, events);
    CREATE TABLE identities (
        doc     BIGINT PRIMARY KEY REFERENCES documents(id),
        replica TEXT NOT NULL,
        seed    BYTEA NOT NULL
    );
    """,
    # 2: the audit trail of a server (server/audit.py), kept beside the events
    """
    CREATE TABLE audit (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc         BIGINT NOT NULL REFERENCES documents(id),
        replica     TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        key_id      TEXT NOT NULL,
        subject     TEXT NOT NULL,
        connection  TEXT NOT NULL,
        hlc         BIGINT NOT NULL,
        received    DOUBLE PRECISION NOT NULL,
        summary     TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        code        TEXT
    );
    CREATE INDEX audit_doc ON audit (doc, id);
    """,
)

# SQLSTATEs of a server that is gone, going or not accepting us right now.
UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "53300"}


def storage_error(exc: psycopg.Error, where: str) -> StorageError:
    """The typed error for a PostgreSQL failure."""
    state = exc.sqlstate or ""
    if state == "53100":
        return StorageFullError(f"{where}: no space left ({exc})")
    if state.startswith("08") or state in UNAVAILABLE_STATES:
        return StoreUnavailableError(f"{where} is unavailable: {exc}")
    if not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailableError(f"{where} is unavailable: {exc}")
    return StorageError(f"{where}: {exc}")


def connect_error(exc: psycopg.Error, where: str) -> StorageError:
    """The typed error for a failed connection attempt: refused credentials or
    a missing database are a configuration error, anything else means the
    server cannot be reached."""
    state = exc.sqlstate or ""
    if state.startswith("28") or state == "3D000":
        return StorageError(f"cannot open {where}: {exc}")
    if state == "53100":
        return StorageFullError(f"cannot open {where}: {exc}")
    return StoreUnavailableError(f"cannot connect to {where}: {exc}")


def parse_url(url: str) -> tuple[dict[str, Any], str]:
    """libpq parameters for ``url`` (with our defaults where it sets none), and
    a description of it without the password, for messages."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise UsageError(f"not a PostgreSQL URL: {exc}") from exc
    for key, value in CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    return params, f"postgresql://{host}:{port}/{params.get('dbname', '')}"


class _ConnectionLost(Exception):
    """A reused connection turned out dead before the call committed anything."""


class PostgresStore:
    """A ``BlockingStore`` on one PostgreSQL database (one connection per handle)."""

    def __init__(self, url: str) -> None:
        self._params, self.where = parse_url(url)
        self._db: Connection | None = None
        self._closed = False
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- connection and transactions -------------------------------------------------

    def _connection(self) -> Connection:
        if self._closed:
            raise StoreUnavailableError("this store is closed")
        if self._db is None or self._db.closed:
            self._drop()
            try:
                db = psycopg.connect(make_conninfo("", **self._params), autocommit=True)
            except psycopg.Error as exc:
                raise connect_error(exc, self.where) from exc
            try:
                setting = db.execute("SELECT current_setting('synchronous_commit')").fetchone()
                if setting is not None and setting[0] == "off":
                    db.execute("SET synchronous_commit = on")
            except psycopg.Error as exc:
                db.close()
                raise storage_error(exc, self.where) from exc
            self._db = db
        return self._db

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _run(self, work: Callable[[Connection], T], write: bool = False) -> T:
        """``work`` on the connection (in one transaction if ``write``), with
        psycopg's errors translated; once more on a new connection if the
        one it found had died while idle."""
        try:
            return self._once(work, write, retry=True)
        except _ConnectionLost:
            return self._once(work, write, retry=False)

    def _once(self, work: Callable[[Connection], T], write: bool, retry: bool) -> T:
        reused = self._db is not None and not self._db.closed
        db = self._connection()
        committing = False
        try:
            if not write:
                return work(db)
            db.execute("BEGIN")
            try:
                result = work(db)
            except BaseException:
                if not db.closed:
                    # the failed statement may have ended the connection too
                    with suppress(psycopg.Error):
                        db.execute("ROLLBACK")
                raise
            committing = True
            db.execute("COMMIT")
            return result
        except psycopg.Error as exc:
            if not db.closed:
                raise storage_error(exc, self.where) from exc
            self._drop()
            if retry and reused and not committing:
                raise _ConnectionLost from exc
            raise storage_error(exc, self.where) from exc

    def _migrate(self) -> None:
        if self._run(self._schema_version) != len(MIGRATIONS):
            self._run(self._migrate_locked)

    def _migrate_locked(self, db: Connection) -> None:
        """Migrate holding the advisory lock, in a transaction begun after it was
        granted: so it sees the tables that the previous holder created."""
        db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            with db.transaction():
                self._apply_migrations(db)
        finally:
            if not db.closed:
                db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    @staticmethod
    def _has_schema_table(db: Connection) -> bool:
        found = db.execute("SELECT to_regclass('gether_schema') IS NOT NULL").fetchone()
        return found is not None and bool(found[0])

    def _schema_version(self, db: Connection) -> int:
        if not self._has_schema_table(db):
            return 0
        row = db.execute("SELECT coalesce(max(version), 0) FROM gether_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > len(MIGRATIONS):
            raise StorageError(
                f"{self.where} has schema {version}; this Gether reads up to {len(MIGRATIONS)}"
            )
        return version

    def _apply_migrations(self, db: Connection) -> None:
        version = self._schema_version(db)  # another process may have migrated meanwhile
        if version == 0:
            foreign = db.execute(
                "SELECT string_agg(table_name, ', ') FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                (list(TABLES),),
            ).fetchone()
            if foreign is not None and foreign[0]:
                raise CorruptStoreError(
                    f"{self.where} holds tables of another application ({foreign[0]})"
                )
            if not self._has_schema_table(db):
                db.execute(SCHEMA_TABLE)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO gether_schema (version) VALUES (%s)", (number,))

    @staticmethod
    def _doc_row(db: Connection, doc_id: str, lock: bool = False) -> int | None:
        query: LiteralString = "SELECT id FROM documents WHERE name = %s"
        if lock:
            query = "SELECT id FROM documents WHERE name = %s FOR NO KEY UPDATE"
        found = db.execute(query, (doc_id,)).fetchone()
        return None if found is None else int(found[0])

    def _ensure_doc(self, db: Connection, doc_id: str, lock: bool = False) -> int:
        """The document's row id, the row created if missing (and locked if ``lock``)."""
        doc = self._doc_row(db, doc_id, lock)
        if doc is None:
            db.execute(
                "INSERT INTO documents (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (doc_id,),
            )
            doc = self._doc_row(db, doc_id, lock)
            assert doc is not None
        return doc

    # -- events ------------------------------------------------------------------

    def append(self, doc_id: str, events: Sequence[Event]) -> int:
        check_doc_id(doc_id)
        if not events:
            return 0

        def work(db: Connection) -> int:
            doc = self._ensure_doc(db, doc_id, lock=True)

            def lookup(ids: Collection[EventKey]) -> dict[EventKey, bytes]:
                keys = list(ids)
                rows = db.execute(
                    "SELECT e.replica, e.seq, e.hash"
                    " FROM unnest(%s::text[], %s::bigint[]) AS k(replica, seq)"
                    " JOIN events e ON e.doc = %s AND e.replica = k.replica AND e.seq = k.seq",
                    ([r for r, _ in keys], [s for _, s in keys], doc),
                ).fetchall()
                return {(replica, seq): bytes(digest) for replica, seq, digest in rows}

            fresh = plan_append(events, lookup)
            if fresh:
                self._insert(db, doc, fresh)
            return len(fresh)

        return self._run(work, write=True)

    @staticmethod
    def _insert(db: Connection, doc: int, fresh: list[Event]) -> None:
        data = [event.to_bytes() for event in fresh]
        db.execute(
            "INSERT INTO events (doc, replica, seq, lamport, hash, data) SELECT %s, *"
            " FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bytea[], %s::bytea[])",
            (
                doc,
                [e.id[0] for e in fresh],
                [e.id[1] for e in fresh],
                [e.lamport for e in fresh],
                [e.hash for e in fresh],
                data,
            ),
        )
        tips: dict[str, int] = {}
        for event in fresh:
            replica, seq = event.id
            tips[replica] = max(seq, tips.get(replica, 0))
        db.execute(
            "INSERT INTO tips (doc, replica, seq)"
            " SELECT %s, * FROM unnest(%s::text[], %s::bigint[])"
            " ON CONFLICT (doc, replica) DO UPDATE SET seq = greatest(tips.seq, excluded.seq)",
            (doc, list(tips), list(tips.values())),
        )
        db.execute(
            "UPDATE documents SET events = events + %s, bytes = bytes + %s WHERE id = %s",
            (len(fresh), sum(len(d) for d in data), doc),
        )

    def events(self, doc_id: str, since: Version | None = None) -> list[Event]:
        check_doc_id(doc_id)

        def work(db: Connection) -> list[tuple[Any, ...]]:
            if not since:
                return db.execute(
                    "SELECT e.data FROM events e JOIN documents d ON d.id = e.doc"
                    " WHERE d.name = %s ORDER BY e.lamport, e.replica, e.seq",
                    (doc_id,),
                    binary=True,
                ).fetchall()
            # one statement, so one snapshot: the result is causally closed
            return db.execute(
                "SELECT e.data FROM documents d"
                " JOIN tips t ON t.doc = d.id"
                " LEFT JOIN unnest(%s::text[], %s::bigint[]) AS v(replica, seq)"
                "   ON v.replica = t.replica"
                " JOIN events e ON e.doc = d.id AND e.replica = t.replica"
                "   AND e.seq > coalesce(v.seq, 0)"
                " WHERE d.name = %s AND t.seq > coalesce(v.seq, 0)"
                " ORDER BY e.lamport, e.replica, e.seq",
                (list(since), list(since.values()), doc_id),
                binary=True,
            ).fetchall()

        return [Event.from_bytes(data) for (data,) in self._run(work)]

    def version(self, doc_id: str) -> Version:
        check_doc_id(doc_id)
        rows = self._run(
            lambda db: db.execute(
                "SELECT t.replica, t.seq FROM tips t JOIN documents d ON d.id = t.doc"
                " WHERE d.name = %s",
                (doc_id,),
            ).fetchall()
        )
        return Version({replica: int(seq) for replica, seq in rows})

    def _document_column(self, doc_id: str, query: LiteralString) -> int:
        check_doc_id(doc_id)
        row = self._run(lambda db: db.execute(query, (doc_id,)).fetchone())
        return 0 if row is None else int(row[0])

    def count(self, doc_id: str) -> int:
        return self._document_column(doc_id, "SELECT events FROM documents WHERE name = %s")

    def size(self, doc_id: str) -> int:
        """Bytes of the stored events of a document."""
        return self._document_column(doc_id, "SELECT bytes FROM documents WHERE name = %s")

    def documents(self) -> list[str]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT name FROM documents WHERE events > 0 ORDER BY name"
            ).fetchall()
        )
        return [name for (name,) in rows]

    # -- snapshots and identity --------------------------------------------------------

    def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None:
        check_doc_id(doc_id)
        version = msgpack.packb(dict(snapshot.version))

        def work(db: Connection) -> None:
            doc = self._ensure_doc(db, doc_id)
            db.execute(
                "INSERT INTO snapshots (doc, events, version, data) VALUES (%s, %s, %s, %s)",
                (doc, sum(snapshot.version.values()), version, snapshot.data),
            )
            db.execute(
                "DELETE FROM snapshots WHERE doc = %s AND id NOT IN (SELECT id FROM snapshots"
                " WHERE doc = %s ORDER BY events DESC, id DESC LIMIT %s)",
                (doc, doc, SNAPSHOTS_KEPT),
            )

        self._run(work, write=True)

    def load_snapshot(self, doc_id: str) -> Snapshot | None:
        check_doc_id(doc_id)
        row = self._run(
            lambda db: db.execute(
                "SELECT s.version, s.data FROM snapshots s JOIN documents d ON d.id = s.doc"
                " WHERE d.name = %s ORDER BY s.events DESC, s.id DESC LIMIT 1",
                (doc_id,),
                binary=True,
            ).fetchone()
        )
        if row is None:
            return None
        return Snapshot(Version(msgpack.unpackb(row[0])), bytes(row[1]))

    def delete_snapshots(self, doc_id: str) -> int:
        check_doc_id(doc_id)
        return self._run(
            lambda db: (
                db.execute(
                    "DELETE FROM snapshots s USING documents d WHERE s.doc = d.id AND d.name = %s",
                    (doc_id,),
                ).rowcount
            )
        )

    def claim_identity(self, doc_id: str, identity: Identity) -> Identity:
        check_doc_id(doc_id)

        def work(db: Connection) -> Identity:
            doc = self._ensure_doc(db, doc_id)
            db.execute(
                "INSERT INTO identities (doc, replica, seed) VALUES (%s, %s, %s)"
                " ON CONFLICT (doc) DO NOTHING",
                (doc, identity.replica_id, identity.seed),
            )
            row = db.execute(
                "SELECT replica, seed FROM identities WHERE doc = %s", (doc,)
            ).fetchone()
            assert row is not None
            return Identity(row[0], bytes(row[1]))

        return self._run(work, write=True)

    # -- the audit trail -----------------------------------------------------------------

    def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None:
        check_doc_id(doc_id)
        if not records:
            return

        def work(db: Connection) -> None:
            doc = self._ensure_doc(db, doc_id)
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO audit (doc, replica, seq, key_id, subject, connection, hlc,"
                    " received, summary, verdict, code)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            doc,
                            r.replica,
                            r.seq,
                            r.key_id,
                            r.subject,
                            r.connection,
                            r.hlc,
                            r.received,
                            r.summary,
                            r.verdict,
                            r.code,
                        )
                        for r in records
                    ],
                )

        self._run(work, write=True)

    def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]:
        check_doc_id(doc_id)
        rows = self._run(
            lambda db: db.execute(
                "SELECT replica, seq, key_id, subject, connection, hlc, received, summary,"
                " verdict, code FROM (SELECT a.* FROM audit a JOIN documents d ON d.id = a.doc"
                " WHERE d.name = %s ORDER BY a.id DESC LIMIT %s) newest ORDER BY id",
                (doc_id, limit),
            ).fetchall()
        )
        return [AuditRecord(r[0], int(r[1]), r[2], r[3], r[4], int(r[5]), *r[6:]) for r in rows]

    def audit_authors(self, doc_id: str) -> dict[str, str]:
        check_doc_id(doc_id)
        rows = self._run(
            lambda db: db.execute(
                "SELECT DISTINCT ON (a.key_id) a.key_id, a.subject FROM audit a"
                " JOIN documents d ON d.id = a.doc WHERE d.name = %s AND a.verdict = 'accepted'"
                " ORDER BY a.key_id, a.id",
                (doc_id,),
            ).fetchall()
        )
        return {key_id: subject for key_id, subject in rows}

    def close(self) -> None:
        self._closed = True
        self._drop()
