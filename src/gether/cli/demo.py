"""``gether demo``: three replicas edit one document concurrently, one of them
offline, then exchange events and end identical."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

import gether


@dataclass
class Traffic:
    """What one replica sent and received."""

    events_out: int = 0
    bytes_out: int = 0
    events_in: int = 0
    bytes_in: int = 0
    peers: set[str] = field(default_factory=set)


def exchange(a: gether.Document, b: gether.Document, traffic: dict[str, Traffic]) -> None:
    """One round of anti-entropy: each side sends exactly what the other lacks."""
    for src, dst in ((a, b), (b, a)):
        frames = [event.to_bytes() for event in src.events_since(dst.version)]
        size = sum(len(frame) for frame in frames)
        dst.apply_events(frames)
        out, into = traffic[src.replica_id], traffic[dst.replica_id]
        out.events_out += len(frames)
        out.bytes_out += size
        into.events_in += len(frames)
        into.bytes_in += size


def run_demo(console: Console, rounds: int = 5) -> dict[str, Any]:
    alice = gether.Document(replica_id="alice")
    bob = gether.Document(replica_id="bob")
    carol = gether.Document(replica_id="carol")
    replicas = (alice, bob, carol)
    traffic = {doc.replica_id: Traffic() for doc in replicas}

    todos = alice.list("todos")
    todos.append({"text": "buy milk", "done": False})
    alice.text("notes").insert(0, "Shopping for the party.")
    alice.counter("likes").increment()
    exchange(alice, bob, traffic)
    exchange(alice, carol, traffic)
    console.print("[bold]alice[/] created the document; bob and carol synced it.")
    console.print("[bold]carol[/] goes offline and keeps editing.\n")

    for i in range(rounds):
        alice.list("todos").append({"text": f"alice's item {i}", "done": False})
        alice.text("notes").insert(len(alice.text("notes")), f" A{i}")
        bob.list("todos")[0]["done"] = i % 2 == 0
        bob.text("notes").insert(0, f"B{i} ")
        bob.counter("likes").increment()
        with carol.transaction():  # one event for three edits
            carol.list("todos").insert(0, {"text": f"carol's item {i}", "done": False})
            carol.text("notes").insert(len(carol.text("notes")), f" [C{i}]")
            carol.counter("likes").increment(2)
        exchange(alice, bob, traffic)  # alice and bob are online

    console.print("[bold]carol[/] reconnects.\n")
    exchange(carol, alice, traffic)
    exchange(alice, bob, traffic)

    states = [doc.to_json() for doc in replicas]
    same = all(state == states[0] for state in states) and len({d.version for d in replicas}) == 1
    console.print_json(json.dumps(states[0]))
    table = Table(title="What each replica exchanged")
    for column in ("replica", "events sent", "bytes sent", "events received", "bytes received"):
        table.add_column(column, justify="right" if column != "replica" else "left")
    for doc in replicas:
        t = traffic[doc.replica_id]
        table.add_row(
            doc.replica_id,
            str(t.events_out),
            f"{t.bytes_out:,}",
            str(t.events_in),
            f"{t.bytes_in:,}",
        )
    console.print(table)
    verdict = "[green]identical[/]" if same else "[red]DIFFERENT[/]"
    console.print(f"All three replicas are {verdict}: {alice.event_count} events, same version.")
    return {"identical": same, "state": states[0], "events": alice.event_count}
