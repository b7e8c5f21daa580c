"""The PostgreSQL store on a real server (the session's throwaway cluster): the
conformance suite, several processes appending to one document, migrations
raced by many openers, a server that goes away and comes back, and the typed
errors."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import psycopg
import pytest

from gether.core.event import Event
from gether.document import Document
from gether.errors import (
    CorruptStoreError,
    StorageError,
    StorageFullError,
    StoreUnavailableError,
    UsageError,
)
from gether.store import open_store
from gether.store.base import event_order
from gether.store.postgres import MIGRATIONS, PostgresStore, storage_error
from gether.testing.histories import edit, fixed_key, history, ticking_clock
from gether.testing.postgres import PostgresCluster
from gether.testing.store_conformance import StoreConformance

DOC = "doc-1"


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    """A blocking handle on a fresh database."""
    store = PostgresStore(postgres_url)
    yield store
    store.close()


# -- several processes, one document ------------------------------------------------------


def shared_history() -> tuple[list[Event], Document]:
    return history(replica_count=4, edits=400, seed=21)


def append_overlapping(url: str, seed: int, start: Barrier, results: Queue[object]) -> None:
    """A server process: sends the shared history in random slices, each
    slice reaching back over events it already sent (so that the processes
    race on the same events)."""
    events, _ = shared_history()
    rng = random.Random(seed)
    try:
        store = PostgresStore(url)
        try:
            start.wait(timeout=60)
            written, done = 0, 0
            while done < len(events):
                size = rng.randint(1, 25)
                written += store.append(
                    DOC, events[max(0, done - rng.randint(0, 15)) : done + size]
                )
                done += size
        finally:
            store.close()
        results.put(written)
    except Exception as exc:  # reported to the test, which fails on it
        results.put(repr(exc))


def test_processes_append_to_one_document_at_once(postgres_url: str) -> None:
    processes = 4
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results: Queue[object] = context.Queue()
    workers = [
        context.Process(target=append_overlapping, args=(postgres_url, seed, start, results))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        written = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
        results.close()
        results.join_thread()
    assert all(type(n) is int for n in written), written
    events, doc = shared_history()
    assert sum(n for n in written if type(n) is int) == len(events)
    store = PostgresStore(postgres_url)
    try:
        assert store.count(DOC) == len(events)
        assert store.version(DOC) == doc.version
        stored = store.events(DOC)
        assert [e.to_bytes() for e in stored] == [
            e.to_bytes() for e in sorted(events, key=event_order)
        ]
    finally:
        store.close()


# -- schema ------------------------------------------------------------------------------


def test_many_openers_of_a_fresh_database_migrate_it_once(postgres_url: str) -> None:
    opened: list[PostgresStore] = []
    failures: list[BaseException] = []
    go = threading.Barrier(8)

    def open_one() -> None:
        go.wait(timeout=30)
        try:
            opened.append(PostgresStore(postgres_url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert failures == []
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT version FROM gether_schema ORDER BY version").fetchall()
    assert [v for (v,) in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_a_database_of_another_application_is_refused_untouched(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
        db.execute("INSERT INTO events VALUES (1, 'theirs')")
    with pytest.raises(CorruptStoreError, match="another application"):
        PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables == [("events",)]
        assert db.execute("SELECT * FROM events").fetchall() == [(1, "theirs")]


def test_a_newer_schema_is_refused(pg_store: PostgresStore, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("INSERT INTO gether_schema (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StorageError, match="schema"):
        PostgresStore(postgres_url)


def test_order_ignores_the_database_collation(postgres_cluster: PostgresCluster) -> None:
    """Replica ids and document names sort by code point, as in Python and
    SQLite, even in a database whose default collation is a linguistic one."""
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as admin:
        admin.execute(
            "CREATE DATABASE gether_icu TEMPLATE template0"
            " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        )
    store = PostgresStore(postgres_cluster.url("gether_icu"))
    try:
        rng = random.Random(34)
        authors = [Document(name, key=fixed_key(name), clock=ticking_clock()) for name in "aB_A"]
        for author in authors:
            edit(author, rng)  # four concurrent events, one lamport time
        events = [e for author in authors for e in author.events_since(None)]
        names = ["a-doc", "B-doc", "_doc", "A-doc"]
        for name in names:
            store.append(name, events)
        assert store.documents() == sorted(names)
        assert [e.id for e in store.events(names[0])] == [
            e.id for e in sorted(events, key=event_order)
        ]
    finally:
        store.close()
        postgres_cluster.drop_database("gether_icu")


def test_a_bad_url() -> None:
    with pytest.raises(UsageError):
        PostgresStore("postgresql://host/db?nonsense=1")


# -- failures ------------------------------------------------------------------------------


def test_a_failed_transaction_leaves_the_store_usable(postgres_url: str) -> None:
    events, doc = history(seed=30)
    store = PostgresStore(postgres_url + "?options=-c%20lock_timeout%3D200")
    try:
        store.append(DOC, events[:5])
        with psycopg.connect(postgres_url) as other:
            other.execute("SELECT * FROM documents FOR UPDATE")  # holds the row
            with pytest.raises(StorageError) as refused:
                store.append(DOC, events)
            assert type(refused.value) is StorageError
        assert store.count(DOC) == 5
        assert store.append(DOC, events) == len(events) - 5
        assert store.version(DOC) == doc.version
    finally:
        store.close()


def test_error_mapping() -> None:
    where = "postgresql://h:1/db"
    assert type(storage_error(psycopg.errors.DiskFull("full"), where)) is StorageFullError
    for gone in (
        psycopg.errors.AdminShutdown("bye"),
        psycopg.errors.CrashShutdown("crash"),
        psycopg.errors.CannotConnectNow("starting"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
    ):
        assert type(storage_error(gone, where)) is StoreUnavailableError
    assert type(storage_error(psycopg.errors.UniqueViolation("dup"), where)) is StorageError


def test_server_gone_and_back(pg_store: PostgresStore, postgres_cluster: PostgresCluster) -> None:
    store = pg_store
    events, doc = history(seed=31)
    half = len(events) // 2
    store.append(DOC, events[:half])
    try:
        postgres_cluster.stop("immediate")
        with pytest.raises(StoreUnavailableError):
            store.count(DOC)
        with pytest.raises(StoreUnavailableError):
            store.append(DOC, events)
    finally:
        postgres_cluster.start()
    assert store.count(DOC) == half
    assert store.append(DOC, events) == len(events) - half
    assert store.version(DOC) == doc.version


def test_a_restart_while_idle_goes_unnoticed(
    pg_store: PostgresStore, postgres_cluster: PostgresCluster
) -> None:
    store = pg_store
    events, _ = history(seed=32)
    store.append(DOC, events[:3])
    postgres_cluster.stop("immediate")
    postgres_cluster.start()
    assert store.append(DOC, events) == len(events) - 3  # reconnects once, by itself
    postgres_cluster.stop("fast")
    postgres_cluster.start()
    assert store.count(DOC) == len(events)


async def test_the_async_store_comes_back(
    postgres_url: str, postgres_cluster: PostgresCluster
) -> None:
    events, doc = history(seed=33)
    async with open_store(postgres_url) as store:
        await store.append(DOC, events[:4])
        try:
            postgres_cluster.stop("immediate")
            with pytest.raises(StoreUnavailableError):
                await store.append(DOC, events)
        finally:
            postgres_cluster.start()
        assert await store.append(DOC, events) == len(events) - 4
        assert await store.version(DOC) == doc.version
