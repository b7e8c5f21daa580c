"""Server snapshots (``server/snapshots.py``): built in a worker process
from the store's last snapshot and tail, never from the live replica."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

import gether
from gether.server.hub import DocumentHub, HubConfig
from gether.server.snapshots import build_snapshot
from gether.store.base import Snapshot
from gether.store.url import open_store


def _edits(count: int) -> gether.Document:
    doc = gether.Document("writer", signed=False)
    for i in range(count):
        doc.text("t").insert(i, "x")
        doc["n"] = i
    return doc


def test_a_snapshot_that_does_not_load_is_not_built_on() -> None:
    """Its tail alone may not apply (its causes are in the lost snapshot):
    None, and the hub builds from the whole history."""
    doc = _edits(5)
    tail = doc.events_since(None)[3:]
    assert build_snapshot(b"garbage", [(e.body, e.signature) for e in tail], False) is None


def test_a_snapshot_plus_its_tail_is_the_document() -> None:
    doc = _edits(40)
    events = doc.events_since(None)
    first = build_snapshot(None, [(e.body, e.signature) for e in events[:30]], False)
    second = build_snapshot(first.data, [(e.body, e.signature) for e in events[30:]], False)
    assert second.version == doc.version
    assert gether.Document.load(second.data, signed=False).to_json() == doc.to_json()


async def test_the_hub_snapshots_in_a_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events received past ``snapshot_every`` give a snapshot that loads to
    the document at its version, built in the worker: in this process,
    saving a document is made to fail."""

    def not_here(*_: object) -> bytes:
        raise AssertionError("a snapshot built in the server's process")

    doc = _edits(30)
    events = doc.events_since(None)
    monkeypatch.setattr(gether.Document, "saved_with", not_here)
    async with open_store("memory://") as store:
        hub = DocumentHub(store, HubConfig(snapshot_every=20, unsigned=("*",)))
        for start in range(0, len(events), 7):
            assert await hub.receive("d", events[start : start + 7], None) is None
        await hub.close()  # waits for the snapshot under way
        assert hub._snapshots._pool is None  # the worker is gone with the hub
        snapshot = await store.load_snapshot("d")
    assert snapshot is not None
    loaded = gether.Document.load(snapshot.data, signed=False)
    assert loaded.version == snapshot.version and loaded.event_count >= 20
    assert loaded.to_json() == doc.at(snapshot.version).to_json()


async def test_the_hub_rebuilds_over_a_snapshot_that_does_not_load() -> None:
    doc = _edits(30)
    events = doc.events_since(None)
    async with open_store("memory://") as store:
        await store.save_snapshot(
            "bad-snapshot", Snapshot(gether.Version({"writer": 5}), b"garbage")
        )
        hub = DocumentHub(store, HubConfig(snapshot_every=20, unsigned=("*",)))
        assert await hub.receive("bad-snapshot", events, None) is None
        await hub.close()
        snapshot = await store.load_snapshot("bad-snapshot")
    assert snapshot is not None and snapshot.version == doc.version
    assert gether.Document.load(snapshot.data, signed=False).to_json() == doc.to_json()


CHILD = """
import asyncio, sys, time
import gether
from gether.server.snapshots import SnapshotWorker

async def main():
    worker = SnapshotWorker()
    doc = gether.Document("w", signed=False)
    doc.text("t").insert(0, "x")
    assert await worker.build(None, doc.events_since(None), False) is not None
    print(*worker._pool._processes, flush=True)
    time.sleep(60)

asyncio.run(main())
"""


def test_the_worker_ends_when_the_server_is_killed() -> None:
    """A server killed outright (SIGKILL: nothing of it runs) leaves no worker."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    with child:
        assert child.stdout is not None
        (worker_pid,) = map(int, child.stdout.readline().split())
        worker = psutil.Process(worker_pid)
        assert worker.is_running()
        child.kill()
        child.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.1)
        else:
            worker.kill()
            raise AssertionError("the snapshot worker outlived its server")
