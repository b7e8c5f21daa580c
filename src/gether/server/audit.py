"""The server's audit trail: for each event a connection pushes, who sent it
(key id, authenticated subject, connection), what it wrote, when its author
made it, and whether it was accepted; stored beside the events
(``EventStore.append_audit``) and shown by ``gether log``.

Records are written after the events they describe, in groups (one store
write for all the records gathered while the previous one ran), off the path
of acknowledgements: a crash may lose the last records, never an event, and
accepted events stay listable from the event log alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gether.core.event import Event
from gether.core.state import DocState
from gether.core.writes import Write, batch_writes, summarize
from gether.errors import GetherError
from gether.store.base import AuditRecord, EventStore

log = logging.getLogger(__name__)

MAX_HLC = (1 << 63) - 1
"""Stores keep signed 64-bit integers; a forged stamp above is clamped."""
MAX_TEXT = 1_000
MAX_WAITING = 10_000
"""Batches waiting for the audit writer, at most: past it (a store far slower
than the clients) records are dropped and counted, not kept in memory."""


def audit_records(
    events: Sequence[Event],
    writes: Sequence[Sequence[Write]],
    verdicts: Mapping[tuple[str, int], tuple[str, str | None]],
    subject: str,
    connection: str,
    received: float,
) -> list[AuditRecord]:
    """One record per event: ``verdicts`` maps its id to ``(verdict, code)``."""
    out = []
    for event, written in zip(events, writes, strict=True):
        verdict, code = verdicts[event.id]
        out.append(
            AuditRecord(
                event.id[0][:MAX_TEXT],
                event.id[1],
                event.key_id.hex(),
                subject[:MAX_TEXT],
                connection[:MAX_TEXT],
                min(event.hlc, MAX_HLC),
                received,
                summarize(written)[:MAX_TEXT],
                verdict,
                code,
            )
        )
    return out


Verdicts = Mapping[tuple[str, int], tuple[str, str | None]]
Writes = Sequence[Sequence[Write]]


@dataclass(frozen=True, slots=True)
class _Received:
    events: Sequence[Event]
    writes: Writes | None
    state: DocState
    verdicts: Verdicts
    subject: str
    connection: str
    received: float

    def records(self) -> list[AuditRecord]:
        # places never change, so the state may have moved on since
        writes = self.writes if self.writes is not None else batch_writes(self.state, self.events)
        return audit_records(
            self.events, writes, self.verdicts, self.subject, self.connection, self.received
        )


class AuditTrail:
    """The records a hub has to write, made and written in the background in
    groups (so that neither delays the acknowledgement of their events)."""

    def __init__(self, store: EventStore, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self._waiting: dict[str, list[_Received]] = {}
        self._count = 0
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0
        """Records dropped because the writer fell too far behind."""

    def record(
        self,
        doc_id: str,
        events: Sequence[Event],
        writes: Writes | None,
        state: DocState,
        verdicts: Verdicts,
        subject: str,
        connection: str,
    ) -> None:
        """Audit a received batch: ``verdicts`` maps each event's id to
        ``(verdict, error code)``; ``writes`` are worked out from ``state``
        (the document's) later if not given."""
        if not self.enabled or not events:
            return
        if self._count >= MAX_WAITING:
            if not self.dropped:
                log.error("the audit writer is behind: dropping records (see .dropped)")
            self.dropped += len(events)
            return
        received = _Received(events, writes, state, verdicts, subject, connection, time.time())
        self._waiting.setdefault(doc_id, []).append(received)
        self._count += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        await asyncio.sleep(0)  # let the acknowledgements go first
        while self._waiting:
            waiting, self._waiting, self._count = self._waiting, {}, 0
            for doc_id, batches in waiting.items():
                records = [r for batch in batches for r in batch.records()]
                try:
                    await self.store.append_audit(doc_id, records)
                except GetherError as exc:
                    # serving goes on; the events themselves are stored
                    log.error(
                        "lost %d audit record(s) of %s: [%s] %s",
                        len(records),
                        doc_id,
                        exc.code,
                        exc,
                    )

    async def flush(self) -> None:
        """Return once every record given so far is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        await self.flush()
