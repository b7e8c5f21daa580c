"""``gether log URL DOC``: who (key id, token subject) did what, when, and
whether the server accepted it.

Accepted events come from the event log itself (so a store written without
audit records still lists them: key id, time and what they wrote); the
server's audit records add the subject and connection that sent each one,
and the events it refused (never stored, so known only from the audit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

import gether
from gether.core.event import Event
from gether.core.writes import describe_events
from gether.store import open_blocking_store
from gether.store.base import AuditRecord


@dataclass(frozen=True, slots=True)
class LogRow:
    event: str
    key_id: str
    subject: str | None
    connection: str | None
    hlc: int
    received: float | None
    what: str
    verdict: str
    code: str | None

    @property
    def when(self) -> str:
        return _time(self.hlc)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "key_id": self.key_id,
            "subject": self.subject,
            "connection": self.connection,
            "when": self.when,
            "hlc": self.hlc,
            "received": self.received,
            "what": self.what,
            "verdict": self.verdict,
            "code": self.code,
        }


def _time(hlc: int) -> str:
    try:
        moment = datetime.fromtimestamp((hlc >> 16) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def log_rows(url: str, doc_id: str) -> list[LogRow]:
    """Every accepted event (log order) and every audited refusal or event
    still waiting for its parents, by time."""
    store = open_blocking_store(url)
    try:
        events = store.events(doc_id)
        audit = store.audit(doc_id)
    finally:
        store.close()
    if not events and not audit:
        raise click.ClickException(f"no events for document {doc_id!r} in {url}")
    senders: dict[tuple[str, int], AuditRecord] = {}
    for record in audit:
        if record.verdict != "rejected":
            senders.setdefault((record.replica, record.seq), record)
    rows = [_accepted(event, what, senders.get(event.id)) for event, what in _described(events)]
    stored = {e.id for e in events}
    for record in audit:
        if record.verdict == "rejected" or (record.replica, record.seq) not in stored:
            rows.append(_audited(record))
    rows.sort(key=lambda row: row.hlc)  # stable: the log's causal order among equals
    return rows


def _described(events: list[Event]) -> list[tuple[Event, str]]:
    if not events:
        return []
    doc = gether.Document(signed=False)
    doc._replay(events)  # stored events were checked when stored
    return list(zip(events, describe_events(doc, events), strict=True))


def _accepted(event: Event, what: str, sender: AuditRecord | None) -> LogRow:
    return LogRow(
        f"{event.id[0]}@{event.id[1]}",
        event.key_id.hex(),
        sender.subject if sender else None,
        sender.connection if sender else None,
        event.hlc,
        sender.received if sender else None,
        what,
        "accepted",
        None,
    )


def _audited(record: AuditRecord) -> LogRow:
    return LogRow(
        f"{record.replica}@{record.seq}",
        record.key_id,
        record.subject,
        record.connection,
        record.hlc,
        record.received,
        record.summary,
        record.verdict,
        record.code,
    )


def show_log(console: Console, url: str, doc_id: str, limit: int | None, as_json: bool) -> None:
    rows = log_rows(url, doc_id)
    shown = rows if limit is None else rows[max(0, len(rows) - limit) :]
    if as_json:
        click.echo(json.dumps([row.to_json() for row in shown], ensure_ascii=False, indent=2))
        return
    accepted = sum(row.verdict == "accepted" for row in rows)
    title = (
        f"{doc_id}: {accepted} event(s), {len(rows) - accepted} refused or waiting, oldest first"
    )
    table = Table(title=title)
    for column in ("#", "time (UTC)", "event", "key id", "subject", "what", "verdict"):
        table.add_column(column)
    first = len(rows) - len(shown) + 1
    for number, row in enumerate(shown, start=first):
        verdict = row.verdict if row.code is None else f"{row.verdict} [{row.code}]"
        style = {"accepted": "green", "rejected": "red"}.get(row.verdict, "yellow")
        # as Text, never markup: subjects and ids come from clients
        cells = (str(number), row.when, row.event, row.key_id, row.subject or "-", row.what)
        table.add_row(*(Text(cell) for cell in cells), Text(verdict, style=style))
    console.print(table)
