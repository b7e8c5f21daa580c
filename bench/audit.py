"""What authorization and the audit trail cost the server, per received event.

    PYTHONPATH=src python bench/audit.py [--events 20000] [--batch 1]

Measures, on one-op keystroke events of one author (the common case), the
server-side work ``server/gate.py`` adds to ``DocumentHub.receive``: the
paths an event writes, the connection's rights (key binding and path-scoped
server roles), the audit record, and storing records in SQLite in groups.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import gether
from gether.core.keys import SigningKey
from gether.core.writes import batch_writes
from gether.server.audit import audit_records
from gether.server.auth import Principal
from gether.server.authz import AuthorBook, Authorization, Rights
from gether.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1, help="Events per received batch.")
    args = parser.parse_args()
    key = SigningKey(b"k" * 32)
    doc = gether.Document("writer", key=key)
    todos = doc.list("todos")
    todos.append({"text": ""})
    for i in range(args.events):
        todos[0]["text"] = f"edit {i}"
    history = doc.events_since(None)
    head, events = history[: -args.events], history[-args.events :]
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    principal = Principal(
        "alice", frozenset({"writer:/todos", "reader"}), {"keys": [key.key_id.hex()]}
    )
    rights = Rights(principal, Authorization())
    book = AuthorBook()

    started = time.perf_counter()
    all_writes = [batch_writes(doc._state, batch) for batch in batches]
    paths = time.perf_counter() - started

    started = time.perf_counter()
    for batch, writes in zip(batches, all_writes, strict=True):
        assert rights.write_refusal("d", batch, writes, True, book) is None
    judged = time.perf_counter() - started

    started = time.perf_counter()
    records = []
    for batch, writes in zip(batches, all_writes, strict=True):
        verdicts = {e.id: ("accepted", None) for e in batch}
        records.extend(audit_records(batch, writes, verdicts, "alice", "tcp 1.2.3.4:5", 0.0))
    recorded = time.perf_counter() - started

    async def store_them() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as folder:
            async with open_store(f"sqlite:///{folder}/audit.db") as store:
                began = time.perf_counter()
                for i in range(0, len(records), 100):  # the trail's groups under load
                    await store.append_audit("d", records[i : i + 100])
                audited = time.perf_counter() - began
                await store.append("d", head)
                began = time.perf_counter()
                for i in range(0, len(events), 100):  # the hub's group commits, alike
                    await store.append("d", events[i : i + 100])
                return audited, time.perf_counter() - began

    stored, appended = asyncio.run(store_them())
    n = len(events)
    print(f"{n} events, {args.batch} per batch (us per event):")
    print(f"  paths written       {paths / n * 1e6:7.2f}  (after it, without server roles)")
    print(f"  rights (bound key, writer:/todos) {judged / n * 1e6:7.2f}  (before the ack)")
    print(f"  audit record        {recorded / n * 1e6:7.2f}  (after the acknowledgement)")
    print(f"  SQLite, groups of 100 {stored / n * 1e6:7.2f}  (on the store's worker thread)")
    print(f"  (the events themselves, stored alike: {appended / n * 1e6:.2f})")


if __name__ == "__main__":
    main()
