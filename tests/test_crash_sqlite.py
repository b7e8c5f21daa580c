"""Kill -9 a process writing to SQLite at random moments: every event it
reported as written is there exactly once, the file is sound, and the log
still verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack

import gether
from gether.store.sqlite import SQLiteStore
from gether.testing.histories import history

WRITER = Path(__file__).parent / "helpers" / "crash_writer.py"
CYCLES = 50


def run_and_kill(args: list[str], rng: random.Random) -> list[tuple[str, str, int]]:
    """Start the writer, SIGKILL it at a random moment, return what it acknowledged."""
    src = str(Path(gether.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), *args], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    lines = []
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 0.3))  # now and then while it starts up
    else:
        # otherwise once it writes, however slow the machine is to start it
        first = proc.stdout.readline()
        lines.append(first)
        time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the writer ended before it was killed"
    acked = []
    for line in "".join([*lines, out]).splitlines():
        doc_id, replica, seq = line.split()
        acked.append((doc_id, replica, int(seq)))
    return acked


def check_store(path: Path, doc_id: str, acked: set[tuple[str, int]]) -> list[gether.Event]:
    store = SQLiteStore(str(path))
    try:
        assert store.integrity_check() == "ok"
        events = store.events(doc_id)
        ids = [e.id for e in events]
        assert len(ids) == len(set(ids)) == store.count(doc_id)
        assert acked <= set(ids), f"lost: {sorted(acked - set(ids))[:5]}"
        hashes = {e.id: e.hash for e in events}
        for event in events:  # from_bytes re-hashed each body; now the links
            for parent, digest in event.parents:
                assert hashes[parent] == digest
        return events
    finally:
        store.close()


def test_killed_store_writer(tmp_path: Path) -> None:
    events, _ = history(replica_count=4, edits=1500, seed=31)
    events_file = tmp_path / "events.bin"
    events_file.write_bytes(msgpack.packb([e.to_bytes() for e in events]))
    path = tmp_path / "crash.db"
    rng = random.Random(32)
    acked: dict[str, set[tuple[str, int]]] = {}
    killed_mid_write = 0
    for cycle in range(CYCLES):
        got = run_and_kill(
            ["store", f"sqlite:///{path}", "1000", str(events_file), str(cycle)], rng
        )
        killed_mid_write += bool(got)
        for doc_id, replica, seq in got:
            acked.setdefault(doc_id, set()).add((replica, seq))
        last = got[-1][0] if got else "doc-0"
        check_store(path, last, acked.get(last, set()))
    assert killed_mid_write >= CYCLES // 2, killed_mid_write
    for doc_id, ids in acked.items():
        stored = check_store(path, doc_id, ids)
        if doc_id == "doc-0":
            reader = gether.Document("reader")
            assert reader.apply_events(stored) == len(stored) == len(events)


def test_killed_durable_replica(tmp_path: Path) -> None:
    path = tmp_path / "replica.db"
    rng = random.Random(33)
    acked: set[tuple[str, int]] = set()
    for cycle in range(20):
        got = run_and_kill(["document", f"sqlite:///{path}", "notes", str(cycle)], rng)
        acked.update((replica, seq) for _, replica, seq in got)
        with gether.Document.open(f"sqlite:///{path}", "notes") as doc:
            mine = doc.version.get(doc.replica_id, 0)
            assert all(seq <= mine for _, seq in acked)
    assert acked, "the writer never got to write"
    events = check_store(path, "notes", acked)
    reader = gether.Document("reader")
    assert reader.apply_events(events) == len(events)
