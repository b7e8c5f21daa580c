"""The async ``EventStore`` over any ``BlockingStore``: each call runs on a small
pool of worker threads, each with its own handle (its own database
connection), so the event loop never waits on disk or network.

SQLite gets one worker (it has one writer anyway, and one thread keeps the
connection's transactions simple); PostgreSQL gets several.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gether.core.event import Event
from gether.core.ids import Version
from gether.errors import StoreUnavailableError
from gether.store.base import AuditRecord, BlockingStore, Identity, Snapshot

T = TypeVar("T")


class AsyncStore:
    """An ``EventStore`` running a ``BlockingStore`` on worker threads."""

    def __init__(self, opener: Callable[[], BlockingStore], workers: int = 1) -> None:
        self._opener = opener
        self._local = threading.local()
        self._handles: list[BlockingStore] = []
        self._handles_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gether-store")
        self._closed = False

    def _handle(self) -> BlockingStore:
        handle: BlockingStore | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._opener()
            self._local.handle = handle
            with self._handles_lock:
                self._handles.append(handle)
        return handle

    async def _run(self, call: Callable[[BlockingStore], T]) -> T:
        if self._closed:
            raise StoreUnavailableError("this store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: call(self._handle()))

    async def open(self) -> AsyncStore:
        """Open a first handle now, so that a bad URL or file fails here."""
        await self._run(lambda store: None)
        return self

    async def append(self, doc_id: str, events: Sequence[Event]) -> int:
        return await self._run(lambda store: store.append(doc_id, events))

    async def events(self, doc_id: str, since: Version | None = None) -> list[Event]:
        return await self._run(lambda store: store.events(doc_id, since))

    async def version(self, doc_id: str) -> Version:
        return await self._run(lambda store: store.version(doc_id))

    async def count(self, doc_id: str) -> int:
        return await self._run(lambda store: store.count(doc_id))

    async def size(self, doc_id: str) -> int:
        return await self._run(lambda store: store.size(doc_id))

    async def documents(self) -> list[str]:
        return await self._run(lambda store: store.documents())

    async def save_snapshot(self, doc_id: str, snapshot: Snapshot) -> None:
        await self._run(lambda store: store.save_snapshot(doc_id, snapshot))

    async def load_snapshot(self, doc_id: str) -> Snapshot | None:
        return await self._run(lambda store: store.load_snapshot(doc_id))

    async def delete_snapshots(self, doc_id: str) -> int:
        return await self._run(lambda store: store.delete_snapshots(doc_id))

    async def claim_identity(self, doc_id: str, identity: Identity) -> Identity:
        return await self._run(lambda store: store.claim_identity(doc_id, identity))

    async def append_audit(self, doc_id: str, records: Sequence[AuditRecord]) -> None:
        await self._run(lambda store: store.append_audit(doc_id, records))

    async def audit(self, doc_id: str, limit: int | None = None) -> list[AuditRecord]:
        return await self._run(lambda store: store.audit(doc_id, limit))

    async def audit_authors(self, doc_id: str) -> dict[str, str]:
        return await self._run(lambda store: store.audit_authors(doc_id))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        with self._handles_lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()

    async def __aenter__(self) -> AsyncStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
