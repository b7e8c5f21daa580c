"""Durable event logs: one protocol, several stores (memory, SQLite, PostgreSQL).

``open_store(url)`` gives the async :class:`EventStore` servers use;
``open_blocking_store(url)`` gives the synchronous one a local replica writes
through (``gether.Document.open``).
"""

from gether.store.base import BlockingStore, EventStore, Identity, Snapshot
from gether.store.url import open_blocking_store, open_store

__all__ = [
    "BlockingStore",
    "EventStore",
    "Identity",
    "Snapshot",
    "open_blocking_store",
    "open_store",
]
