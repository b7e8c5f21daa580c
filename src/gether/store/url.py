"""A URL picks the store: ``memory://name``, ``sqlite:///path.db``,
``postgresql://user@host:port/db``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from gether.errors import UsageError
from gether.store.base import BlockingStore
from gether.store.memory import MemoryData, MemoryStore

if TYPE_CHECKING:
    from gether.store.asyncstore import AsyncStore

_memory: dict[str, MemoryData] = {}
_memory_lock = threading.Lock()


def _opener(url: str) -> tuple[Callable[[], BlockingStore], int]:
    """How to open one handle on the store at ``url``, and how many worker
    threads its async face should use."""
    if not isinstance(url, str):
        raise UsageError("a store URL is a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        name = parts.netloc + parts.path
        with _memory_lock:
            data = _memory.setdefault(name, MemoryData())
        return (lambda: MemoryStore(data)), 1
    if scheme == "sqlite":
        from gether.store.sqlite import SQLiteStore

        # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy
        if parts.netloc:
            raise UsageError("a SQLite URL has no host: sqlite:///path/to/file.db")
        path = unquote(parts.path[1:])
        if not path:
            raise UsageError("a SQLite URL names a file: sqlite:///path/to/file.db")
        return (lambda: SQLiteStore(path)), 1
    if scheme in ("postgresql", "postgres"):
        from gether.store.postgres import PostgresStore

        return (lambda: PostgresStore(url)), 4
    raise UsageError(
        f"unknown store URL scheme {scheme!r}: use memory://, sqlite:///, postgresql://"
    )


def open_blocking_store(url: str) -> BlockingStore:
    """A synchronous handle on the store at ``url`` (one thread at a time)."""
    opener, _ = _opener(url)
    return opener()


def open_store(url: str) -> AsyncStore:
    """The async ``EventStore`` at ``url``; ``async with open_store(url) as store``
    opens it (a bad URL or file fails there) and closes it."""
    from gether.store.asyncstore import AsyncStore  # asyncio only where it is used

    opener, workers = _opener(url)
    return AsyncStore(opener, workers)
