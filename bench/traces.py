"""Replay real editing traces through gether, pycrdt and Loro, and compare.

    PYTHONPATH=src python bench/traces.py [--runs 3] [--traces a,b] [--libs gether,loro]

See bench/README.md for what each column means. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from gether.testing import traces  # noqa: E402
from gether.testing.traces import ConcurrentTrace, SequentialTrace  # noqa: E402

CONCURRENT = ["friendsforever", "clownschool", "node_nodecc"]
LIBS = ["gether", "pycrdt", "loro"]


# -- one adapter per library ------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    name: str
    ascii_only: bool  # replay the ascii_only copies (library does not index by code point)
    replay: Callable[[SequentialTrace], Any]  # -> document
    text: Callable[[Any], str]
    save: Callable[[Any], bytes]
    load: Callable[[bytes], Any]  # -> document
    merge: Callable[[ConcurrentTrace], str]  # -> final text


def gether_adapter() -> Adapter:
    import gether

    def load(data: bytes) -> Any:
        return gether.Document.load(data)

    return Adapter(
        name="gether",
        ascii_only=False,
        replay=traces.replay_sequential,
        text=lambda doc: str(doc.text("text")),
        save=lambda doc: doc.save(),
        load=load,
        merge=lambda trace: str(traces.replay_concurrent(trace).text("text")),
    )


def pycrdt_adapter() -> Adapter:
    from pycrdt import Doc, Text

    def replay(trace: SequentialTrace) -> Any:
        doc: Doc[Any] = Doc()
        text = doc.get("text", type=Text)
        insert = text.insert
        delete = text.__delitem__
        transaction = doc.transaction
        for patches in trace.txns:
            with transaction():
                for pos, deleted, inserted in patches:
                    if deleted:
                        delete(slice(pos, pos + deleted))
                    if inserted:
                        insert(pos, inserted)
        return doc

    def load(data: bytes) -> Any:
        doc: Doc[Any] = Doc()
        doc.apply_update(data)
        return doc

    def merge(trace: ConcurrentTrace) -> str:
        docs: list[Doc[Any]] = [Doc(client_id=i + 1) for i in range(trace.num_agents)]
        done = [bytearray(len(trace.txns)) for _ in docs]
        recorded: list[bytes] = []
        for index, txn in enumerate(trace.txns):
            doc = docs[txn.agent]
            for j in traces.missing_ancestors(trace.txns, txn.parents, done[txn.agent]):
                doc.apply_update(recorded[j])
            before = doc.get_state()
            text = doc.get("text", type=Text)
            with doc.transaction():
                for pos, deleted, inserted in txn.patches:
                    if deleted:
                        del text[pos : pos + deleted]
                    if inserted:
                        text.insert(pos, inserted)
            recorded.append(doc.get_update(before))
            done[txn.agent][index] = 1
        merged: Doc[Any] = Doc(client_id=trace.num_agents + 1)
        for update in recorded:
            merged.apply_update(update)
        return str(merged.get("text", type=Text))

    return Adapter(
        name="pycrdt",
        ascii_only=True,
        replay=replay,
        text=lambda doc: str(doc.get("text", type=Text)),
        save=lambda doc: doc.get_update(),
        load=load,
        merge=merge,
    )


def loro_adapter() -> Adapter:
    from loro import ExportMode, LoroDoc

    def replay(trace: SequentialTrace) -> Any:
        doc = LoroDoc()
        text = doc.get_text("text")
        insert = text.insert  # code point positions (insert_utf8/_utf16 are the others)
        delete = text.delete
        commit = doc.commit
        for patches in trace.txns:
            for pos, deleted, inserted in patches:
                if deleted:
                    delete(pos, deleted)
                if inserted:
                    insert(pos, inserted)
            commit()
        return doc

    def load(data: bytes) -> Any:
        doc = LoroDoc()
        doc.import_(data)
        return doc

    def merge(trace: ConcurrentTrace) -> str:
        docs = [LoroDoc() for _ in range(trace.num_agents)]
        for i, doc in enumerate(docs):
            doc.peer_id = i + 1
        done = [bytearray(len(trace.txns)) for _ in docs]
        recorded: list[bytes] = []
        for index, txn in enumerate(trace.txns):
            doc = docs[txn.agent]
            missing = traces.missing_ancestors(trace.txns, txn.parents, done[txn.agent])
            if missing:
                doc.import_batch([recorded[j] for j in missing])
            before = doc.oplog_vv
            text = doc.get_text("text")
            for pos, deleted, inserted in txn.patches:
                if deleted:
                    text.delete(pos, deleted)
                if inserted:
                    text.insert(pos, inserted)
            doc.commit()
            recorded.append(doc.export(ExportMode.Updates(before)))
            done[txn.agent][index] = 1
        merged = LoroDoc()
        merged.import_batch(recorded)
        return merged.get_text("text").to_string()

    return Adapter(
        name="loro",
        ascii_only=False,
        replay=replay,
        text=lambda doc: doc.get_text("text").to_string(),
        save=lambda doc: doc.export(ExportMode.Snapshot()),
        load=load,
        merge=merge,
    )


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "gether": gether_adapter,
    "pycrdt": pycrdt_adapter,
    "loro": loro_adapter,
}


# -- measurements -----------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall time in seconds over ``runs`` calls, and the last result."""
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bare_loop(trace: SequentialTrace) -> None:
    for patches in trace.txns:
        for _pos, deleted, inserted in patches:
            if deleted:
                pass
            if inserted:
                pass


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def rss_child(lib: str, path: str) -> None:
    """Run in a fresh interpreter: print RSS growth from loading a saved document."""
    adapter = ADAPTERS[lib]()
    data = Path(path).read_bytes()
    gc.collect()
    before = rss_bytes()
    doc = adapter.load(data)
    text = adapter.text(doc)
    gc.collect()
    after = rss_bytes()
    print(after - before, len(text))


def loaded_rss(lib: str, data: bytes) -> int:
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(data)
    try:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
        )
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", lib, f.name],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    finally:
        os.unlink(f.name)
    return int(out.split()[0])


@dataclass
class Row:
    trace: str
    lib: str
    count: int  # patches (sequential) or txns (concurrent)
    us_per_patch: float | None = None
    total_ms: float | None = None
    save_bytes: int | None = None
    load_ms: float | None = None
    rss_bytes: int | None = None
    error: str | None = None


def bench_sequential(adapter: Adapter, name: str, runs: int) -> Row:
    trace = traces.load_sequential(name, ascii_only=adapter.ascii_only)
    row = Row(name, adapter.name, trace.num_patches)
    seconds, doc = timed(lambda: adapter.replay(trace), runs)
    if adapter.text(doc) != trace.end_content:
        row.error = "final text differs from endContent"
        return row
    row.us_per_patch = seconds / trace.num_patches * 1e6
    data = adapter.save(doc)
    row.save_bytes = len(data)
    del doc
    seconds, text = timed(lambda: adapter.text(adapter.load(data)), runs)
    if text != trace.end_content:
        row.error = "loaded text differs from endContent"
        return row
    row.load_ms = seconds * 1e3
    row.rss_bytes = loaded_rss(adapter.name, data)
    return row


def bench_concurrent(adapter: Adapter, name: str, runs: int) -> Row:
    trace = traces.load_concurrent(name)
    row = Row(name, adapter.name, len(trace.txns))
    seconds, text = timed(lambda: adapter.merge(trace), runs)
    if text != trace.end_content:
        row.error = "merged text differs from endContent"
        return row
    row.total_ms = seconds * 1e3
    return row


def guarded(fn: Callable[[], Row], trace: str, lib: str, count: int) -> Row:
    """Run one measurement; a library failure becomes an error row, not a crash."""
    try:
        return fn()
    except Exception as exc:  # reported in the table's notes, never hidden
        return Row(trace, lib, count, error=f"{type(exc).__name__}: {exc}")


# -- table ------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return ""
    return f"{ours / theirs:.2f}"


def kib(row: Row | None) -> float | None:
    return None if row is None or row.rss_bytes is None else row.rss_bytes / 1024


def sequential_line(r: Row, g: Row | None, first: bool) -> str:
    def x(attr: str) -> str:
        if g is None or r is g:
            return ""
        return ratio(getattr(g, attr), getattr(r, attr))

    rss_x = "" if g is None or r is g else ratio(kib(g), kib(r))
    line = (
        f"{r.trace if first else '':<20} {r.count if first else '':>8} {r.lib:<7} "
        f"{fmt(r.us_per_patch, '.2f'):>9} {x('us_per_patch'):>6} "
        f"{fmt(r.save_bytes, ',d'):>10} {x('save_bytes'):>6} "
        f"{fmt(r.load_ms, '.2f'):>9} {x('load_ms'):>6} "
        f"{fmt(kib(r), ',.0f'):>9} {rss_x:>6}"
    )
    return line + (f"  ERROR {r.error}" if r.error else "")


def print_sequential(rows: Sequence[Row], loops: dict[str, float]) -> None:
    head = (
        f"{'trace':<20} {'patches':>8} {'lib':<7} {'us/patch':>9} {'x':>6} "
        f"{'saved B':>10} {'x':>6} {'load ms':>9} {'x':>6} {'RSS KiB':>9} {'x':>6}"
    )
    print("Sequential traces (x = gether / that library: < 1 means gether is faster/smaller)")
    print(head)
    print("-" * len(head))
    for name in dict.fromkeys(r.trace for r in rows):
        group = [r for r in rows if r.trace == name]
        g = next((r for r in group if r.lib == "gether"), None)
        for i, r in enumerate(group):
            print(sequential_line(r, g, i == 0))
        print(f"{'':<20} {'':>8} {'(loop)':<7} {loops[name]:>9.3f}")


def print_concurrent(rows: Sequence[Row]) -> None:
    head = f"{'concurrent trace':<20} {'txns':>8} {'lib':<7} {'total ms':>9} {'x':>6}"
    print("Concurrent traces: one replica per agent, then merged (x = gether / that library)")
    print(head)
    print("-" * len(head))
    for name in dict.fromkeys(r.trace for r in rows):
        group = [r for r in rows if r.trace == name]
        g = next((r for r in group if r.lib == "gether"), None)
        for i, r in enumerate(group):
            x = "" if g is None or r is g else ratio(g.total_ms, r.total_ms)
            line = (
                f"{name if i == 0 else '':<20} {r.count if i == 0 else '':>8} {r.lib:<7} "
                f"{fmt(r.total_ms, '.1f'):>9} {x:>6}"
            )
            print(line + (f"  ERROR {r.error}" if r.error else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--traces", help="comma-separated trace names (default: all)")
    parser.add_argument("--libs", default=",".join(LIBS), help="comma-separated libraries")
    parser.add_argument("--no-concurrent", action="store_true", help="skip the merge traces")
    parser.add_argument("--rss-child", nargs=2, metavar=("LIB", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(*args.rss_child)
        return 0

    adapters = [ADAPTERS[lib.strip()]() for lib in args.libs.split(",") if lib.strip()]
    wanted = set(args.traces.split(",")) if args.traces else None
    sequential = [n for n in traces.sequential_names() if wanted is None or n in wanted]
    concurrent = [n for n in CONCURRENT if wanted is None or n in wanted]
    if args.no_concurrent:
        concurrent = []

    rows: list[Row] = []
    loops: dict[str, float] = {}
    for name in sequential:
        trace = traces.load_sequential(name)
        seconds, _ = timed(partial(bare_loop, trace), args.runs)
        loops[name] = seconds / trace.num_patches * 1e6
        for adapter in adapters:
            progress(f"{name} / {adapter.name}")
            run = partial(bench_sequential, adapter, name, args.runs)
            rows.append(guarded(run, name, adapter.name, trace.num_patches))
    merged: list[Row] = []
    for name in concurrent:
        count = len(traces.load_concurrent(name).txns)
        for adapter in adapters:
            progress(f"{name} / {adapter.name} (merge)")
            run = partial(bench_concurrent, adapter, name, args.runs)
            merged.append(guarded(run, name, adapter.name, count))
    if rows:
        print_sequential(rows, loops)
    if merged:
        if rows:
            print()
        print_concurrent(merged)
    return 0


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
