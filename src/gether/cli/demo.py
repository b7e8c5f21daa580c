"""``gether demo``: a real server on SQLite and three replicas in their own
processes, each with its own SQLite store. Alice and Bob edit a todo list, a
text and a counter online at the same time; Carol edits offline, then
reconnects; everyone ends identical, and so does the server's log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import gether
from gether.server.process import ServerProcess
from gether.store import open_blocking_store
from gether.sync import Traffic

DOC = "party"


# -- one replica (runs in its own process: ``gether demo-replica``) ---------------------


def _edit(doc: gether.Document, name: str, round_: int) -> None:
    with doc.transaction():  # one event for a few edits
        doc.list("todos").append({"text": f"{name}'s item {round_}", "done": False})
        notes = doc.text("notes")
        notes.insert(len(notes), f" [{name[0].upper()}{round_}]")
        doc.counter("likes").increment()
    todos = doc.list("todos")
    if len(todos) > 1:
        todos[round_ % len(todos)]["done"] = True


async def replica(server: str, store: str, name: str, role: str, rounds: int) -> dict[str, Any]:
    doc = gether.Document.open(store, DOC)
    traffic = Traffic()
    try:
        if role == "offline":
            for i in range(rounds):
                _edit(doc, name, i)
        else:
            async with gether.connect(server, DOC, doc=doc, backoff=(0.05, 0.5)) as session:
                if role == "seed":
                    doc.list("todos").append({"text": "buy milk", "done": False})
                    doc.text("notes").insert(0, "Shopping for the party.")
                    doc.counter("likes").increment()
                elif role == "online":
                    await session.sync()
                    for i in range(rounds):
                        _edit(doc, name, i)
                        await asyncio.sleep(0.01)
                await session.sync()
                traffic = session.traffic
        return {
            "name": name,
            "state": doc.to_json(),
            "version": str(doc.version),
            "events": doc.event_count,
            "traffic": [traffic.events_sent, traffic.bytes_sent,
                        traffic.events_received, traffic.bytes_received],
        }  # fmt: skip
    finally:
        doc.close()


def run_replica(server: str, store: str, name: str, role: str, rounds: int) -> None:
    print(json.dumps(asyncio.run(replica(server, store, name, role, rounds))))


# -- the show -------------------------------------------------------------------------


def _start(
    server: ServerProcess, folder: Path, name: str, role: str, rounds: int
) -> subprocess.Popen[str]:
    src = str(Path(gether.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    url = server.ws_url if name != "bob" else server.tcp_url  # bob speaks raw TCP
    return subprocess.Popen(
        [sys.executable, "-m", "gether", "demo-replica", url, f"sqlite:///{folder}/{name}.db",
         name, role, str(rounds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"a replica process failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_demo(console: Console, rounds: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gether-demo-") as tmp:
        folder = Path(tmp)
        server_store = f"sqlite:///{folder}/server.db"
        with ServerProcess(server_store) as server:
            console.print(f"server: [bold]gether serve[/] on {server.ws_url} and {server.tcp_url}"
                          f" ({folder}/server.db)")  # fmt: skip
            traffic: dict[str, list[int]] = {n: [0, 0, 0, 0] for n in ("alice", "bob", "carol")}

            def tally(result: dict[str, Any]) -> dict[str, Any]:
                totals = traffic[result["name"]]
                for i, value in enumerate(result["traffic"]):
                    totals[i] += value
                return result

            tally(_finish(_start(server, folder, "alice", "seed", rounds)))
            console.print("[bold]alice[/] created the document (todos, notes, likes).")
            tally(_finish(_start(server, folder, "carol", "sync", rounds)))
            console.print("[bold]carol[/] synced it, then went [italic]offline[/].")
            console.print(
                f"alice and bob edit online at the same time; carol edits offline "
                f"({rounds} rounds each, each replica in its own process)..."
            )
            roles = (("alice", "online"), ("bob", "online"), ("carol", "offline"))
            running = [_start(server, folder, name, role, rounds) for name, role in roles]
            for proc in running:
                tally(_finish(proc))
            console.print("[bold]carol[/] reconnects: only what each side lacks crosses.")
            results = {n: tally(_finish(_start(server, folder, n, "sync", rounds)))
                       for n in ("carol", "alice", "bob")}  # fmt: skip
        store = open_blocking_store(server_store)
        try:
            stored_version = str(store.version(DOC))
            stored_events = store.count(DOC)
        finally:
            store.close()

    states = [r["state"] for r in results.values()]
    versions = {r["version"] for r in results.values()} | {stored_version}
    same = all(state == states[0] for state in states) and len(versions) == 1
    console.print_json(json.dumps(states[0]))
    table = Table(title="What each replica exchanged with the server")
    for column in ("replica", "events sent", "bytes sent", "events received", "bytes received"):
        table.add_column(column, justify="right" if column != "replica" else "left")
    for name, (events_out, bytes_out, events_in, bytes_in) in traffic.items():
        table.add_row(name, str(events_out), f"{bytes_out:,}", str(events_in), f"{bytes_in:,}")
    console.print(table)
    verdict = "[green]identical[/]" if same else "[red]DIFFERENT[/]"
    console.print(
        f"All three replicas and the server's log are {verdict}: "
        f"{stored_events} events, version {stored_version}."
    )
    return {"identical": same, "state": states[0], "events": stored_events}
