"""``gether inspect`` and ``gether replay``: read a document out of a store,
never writing to it (``gether log`` is ``cli/log.py``)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import gether
from gether.store import open_blocking_store

PROGRESS_FROM = 5_000
"""Replays of at least this many events show a progress bar."""


def open_view(console: Console, url: str, doc_id: str) -> gether.Document:
    """The document as stored, read-only, with a progress bar on long replays."""
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=None, visible=False)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, visible=total >= PROGRESS_FROM)

        return gether.Document.open(url, doc_id, read_only=True, progress=report)


def _opaque(value: object) -> object:
    """An encrypted field, which the CLI (holding no key) shows by its key id."""
    if isinstance(value, gether.Encrypted):
        return {"$encrypted": value.key_id.hex()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def show_state(
    console: Console, doc: gether.Document, *, as_json: bool, extra: dict[str, Any]
) -> None:
    state = doc.to_json()
    if as_json:
        click.echo(
            json.dumps({"state": state, **extra}, ensure_ascii=False, indent=2, default=_opaque)
        )
        return
    console.print_json(json.dumps(state, ensure_ascii=False, default=_opaque))
    for key, value in extra.items():
        console.print(f"[bold]{key}[/]: {value}")


def inspect_document(console: Console, url: str, doc_id: str, as_json: bool) -> None:
    store = open_blocking_store(url)
    try:
        count = store.count(doc_id)
        size = store.size(doc_id)
        snapshot = store.load_snapshot(doc_id)
    finally:
        store.close()
    if not count:
        raise click.ClickException(f"no events for document {doc_id!r} in {url}")
    doc = open_view(console, url, doc_id)
    extra = {
        "version": str(doc.version),
        "events": count,
        "bytes of events": size,
        "snapshot covers": sum(snapshot.version.values()) if snapshot else 0,
    }
    show_state(console, doc, as_json=as_json, extra=extra)


def replay_document(console: Console, url: str, doc_id: str, at: str, as_json: bool) -> None:
    doc = open_view(console, url, doc_id)
    if at.isdigit():
        # the first N events in log order (parents first, so a closed set)
        store = open_blocking_store(url)
        try:
            events = store.events(doc_id)[: int(at)]
        finally:
            store.close()
        vector: dict[str, int] = {}
        for event in events:
            vector[event.id[0]] = max(vector.get(event.id[0], 0), event.id[1])
        version = gether.Version(vector)
    else:
        version = gether.Version.parse(at)
    view = doc.at(version)
    show_state(console, view, as_json=as_json, extra={"version": str(version)})
