"""Snapshots built in a worker process.

Building one decodes the last snapshot, adds the stored tail and encodes the
whole document again: hundreds of thousands of short-lived objects. On a
thread of the server's process that work took the GIL from the event loop
and set off collections that stopped every connection: with 200 writers a
snapshot was due every 5 s, and each made the writer keystrokes then in
flight 50-200 ms late (`bench/latency.py`: every tenth writer keystroke,
with a 20-26 ms young collection just before each). In a process of its own
it costs the loop only the bytes it sends and gets back.

The worker is spawned (not forked: the server has threads) when the first
snapshot is due, and lives until the hub closes, or its parent dies: a
server killed outright must not leave it behind (holding the server's
output open, and its memory)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gether.core.event import Event, decode_body
from gether.document import Document
from gether.errors import GetherError, StorageError
from gether.store.base import Snapshot
from gether.sync.tracker import VersionTracker

log = logging.getLogger(__name__)

Stored = tuple[bytes, bytes | None]
"""An event as the worker gets it: body and signature."""


def _loaded(data: bytes, signed: bool) -> Document | None:
    try:
        return Document.load(data, signed=signed)
    except GetherError as exc:  # a bad snapshot costs time, never data
        log.warning("ignoring a snapshot that does not load: [%s] %s", exc.code, exc)
        return None


def replica_from(data: bytes | None, signed: bool = True) -> Document:
    """A replica that only checks and relays (it never edits), from a
    snapshot's bytes (None, or bytes that do not load: an empty one)."""
    doc = _loaded(data, signed) if data is not None else None
    return doc if doc is not None else Document(signed=signed)


def build_snapshot(newest: bytes | None, tail: list[Stored], signed: bool) -> Snapshot | None:
    """The document of snapshot ``newest`` (None: empty) with the events of
    ``tail``, saved, and the version it covers; None if ``newest`` does not
    load (the tail alone may not apply: build from the whole history)."""
    doc = Document(signed=signed) if newest is None else _loaded(newest, signed)
    if doc is None:
        return None
    events = [decode_body(body, signature) for body, signature in tail]
    reached = VersionTracker(doc.version)
    reached.add(events)
    return Snapshot(reached.version(), doc.saved_with(events))


def _end_with(parent: int) -> None:
    """In the worker: exit once ``parent`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="gether-parent-watch", daemon=True).start()


class SnapshotWorker:
    """One worker process, started when first needed."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def build(
        self, newest: Snapshot | None, tail: Sequence[Event], signed: bool
    ) -> Snapshot | None:
        """``build_snapshot`` in the worker (sent the events' bodies and
        signatures); ``StorageError`` if the worker died."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_end_with,
                initargs=(os.getpid(),),
            )
        data = newest.data if newest is not None else None
        stored = [(event.body, event.signature) for event in tail]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, build_snapshot, data, stored, signed)
        except BrokenProcessPool as exc:
            self._pool = None  # the next snapshot starts another
            raise StorageError(f"the snapshot worker died: {exc}") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
