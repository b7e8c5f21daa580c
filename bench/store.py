"""Store benchmark: append throughput and reopen time, memory vs SQLite vs PostgreSQL.

    PYTHONPATH=src python bench/store.py                 # everything, 3 runs each
    PYTHONPATH=src python bench/store.py --events 20000 --stores memory,sqlite
    PYTHONPATH=src python bench/store.py --postgres postgresql://user@host/db

Without ``--postgres`` a throwaway PostgreSQL cluster is started with
``gether.testing.postgres`` (the server binaries must be installed). See
bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

import gether
from gether.core.event import Event
from gether.store import Snapshot, open_blocking_store
from gether.testing.histories import history

err = Console(stderr=True)


def median_time(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Target:
    """One store under test: a way to get a fresh, empty URL."""

    def __init__(self, name: str, fresh_url: Callable[[], str]) -> None:
        self.name = name
        self.fresh_url = fresh_url


def sqlite_floor(events: list[Event], batch: int, folder: Path) -> float:
    """Plain sqlite3 inserts of the same bytes, WAL + synchronous=FULL: the floor
    under our SQLite store (no checks, no index but the primary key)."""
    path = folder / f"floor-{time.perf_counter_ns()}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, data BLOB)")
    rows = [(e.to_bytes(),) for e in events]
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO e (data) VALUES (?)", rows[i : i + batch])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return len(rows) / elapsed


def append_rate(url: str, events: list[Event], batch: int) -> float:
    store = open_blocking_store(url)
    try:
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            store.append("bench", events[i : i + batch])
        return len(events) / (time.perf_counter() - start)
    finally:
        store.close()


def reopen_times(
    url: str, events: list[Event], doc: gether.Document, runs: int
) -> tuple[float, float]:
    store = open_blocking_store(url)
    try:
        for i in range(0, len(events), 5000):
            store.append("big", events[i : i + 5000])

        def reopen() -> None:
            gether.Document.open(url, "big", read_only=True)

        without = median_time(reopen, runs)
        store.save_snapshot("big", Snapshot(doc.version, doc.save()))
        with_snapshot = median_time(reopen, runs)
        return without, with_snapshot
    finally:
        store.close()


@contextmanager
def postgres_target(given: str | None) -> Iterator[Target]:
    import psycopg

    if given is not None:
        base = given
        cluster = None
    else:
        from gether.testing.postgres import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        base = cluster.url()
    counter = iter(range(10**6))

    def fresh_url() -> str:
        name = f"gether_bench_{next(counter)}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return base.rsplit("/", 1)[0] + "/" + name

    try:
        yield Target("postgresql", fresh_url)
    finally:
        if cluster is not None:
            cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the big document")
    parser.add_argument("--one-by-one", type=int, default=2_000, help="events appended singly")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--postgres", default=None, help="use this server instead of a new one")
    args = parser.parse_args()
    wanted = args.stores.split(",")

    err.print(f"making a history of about {args.events} events...")
    events, doc = history(replica_count=4, edits=args.events, seed=1)
    single = events[: args.one_by_one]
    size = sum(len(e.to_bytes()) for e in events) // 1024
    table = Table(title=f"stores: {len(events)} events of 4 replicas ({size} KiB)")
    columns = ("store", "append 1 by 1 (ev/s)", "append x1000 (ev/s)", "reopen (s)",
               "reopen, snapshot (s)")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        counter = iter(range(10**6))
        targets: list[Target] = []
        if "memory" in wanted:
            targets.append(Target("memory", lambda: f"memory://bench-{next(counter)}"))
        if "sqlite" in wanted:
            targets.append(Target("sqlite", lambda: f"sqlite:///{folder}/s{next(counter)}.db"))
        if "postgresql" in wanted:
            targets.append(stack.enter_context(postgres_target(args.postgres)))

        for target in targets:
            err.print(f"{target.name}: one by one...")
            one = statistics.median(
                append_rate(target.fresh_url(), single, 1) for _ in range(args.runs)
            )
            err.print(f"{target.name}: batches of 1000...")
            batched = statistics.median(
                append_rate(target.fresh_url(), events, 1000) for _ in range(args.runs)
            )
            err.print(f"{target.name}: reopening...")
            without, with_snapshot = reopen_times(target.fresh_url(), events, doc, args.runs)
            reopen = (f"{without:.2f}", f"{with_snapshot:.2f}")
            table.add_row(target.name, f"{one:,.0f}", f"{batched:,.0f}", *reopen)
        if "sqlite" in wanted:
            floor1 = sqlite_floor(single, 1, folder)
            floor = sqlite_floor(events, 1000, folder)
            table.add_row("(raw sqlite3 floor)", f"{floor1:,.0f}", f"{floor:,.0f}", "", "")
    Console().print(table)


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
