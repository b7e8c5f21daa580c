"""A process for the crash tests: it writes to a SQLite store and prints each
acknowledged event (``doc replica seq``) on stdout as soon as the write returns.

    python crash_writer.py store URL DOCS EVENTS_FILE SEED  # appends stored events
    python crash_writer.py document URL DOC SEED            # edits a durable replica
"""

from __future__ import annotations

import random
import sys

import msgpack

import gether
from gether.store import open_blocking_store
from gether.testing.histories import edit


def append_events(url: str, docs: int, events_file: str, seed: int) -> None:
    """Write the history to documents doc-0, doc-1, ... in turn, going on
    where the last (killed) writer stopped."""
    with open(events_file, "rb") as file:
        events = [gether.Event.from_bytes(b) for b in msgpack.unpackb(file.read())]
    rng = random.Random(seed)
    store = open_blocking_store(url)
    for n in range(docs):
        doc_id = f"doc-{n}"
        version = store.version(doc_id)
        left = [e for e in events if not version.includes(e.id)]
        while left:
            size = rng.randint(1, 40)
            batch, left = left[:size], left[size:]
            store.append(doc_id, batch)
            for event in batch:
                sys.stdout.write(f"{doc_id} {event.id[0]} {event.id[1]}\n")
            sys.stdout.flush()
    store.close()


def edit_document(url: str, doc_id: str, seed: int) -> None:
    rng = random.Random(seed)
    doc = gether.Document.open(url, doc_id)
    while True:
        edit(doc, rng)
        sys.stdout.write(f"{doc_id} {doc.replica_id} {doc.version[doc.replica_id]}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1] == "store":
        append_events(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        edit_document(sys.argv[2], sys.argv[3], int(sys.argv[4]))
