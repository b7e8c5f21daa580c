"""Between a session and its hub: each pushed batch is judged against the
connection's rights (``authz.py``) before the hub sees it, and every fresh
event of it gets an audit record (``audit.py``) with its verdict.

A batch the connection may not push is refused whole: nothing of it is
applied or stored, and the sender gets the ``ForbiddenError`` (as it would a
rejection by the document's own policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gether.core.access import touches_policy
from gether.core.event import Event
from gether.core.writes import Write, batch_writes
from gether.errors import ForbiddenError, GetherError, RejectedEventsError
from gether.server.hub import DocumentHub, HostedDocument

if TYPE_CHECKING:
    from gether.server.session import Session


def read_refusal(session: Session, hosted: HostedDocument) -> ForbiddenError | None:
    """Why ``session`` may not subscribe to ``hosted`` (None: it may)."""
    rights = session.rights
    return None if rights is None else rights.read_refusal(hosted.doc_id, hosted.doc)


async def receive(session: Session, doc_id: str, events: Sequence[Event]) -> GetherError | None:
    """``DocumentHub.receive`` for a batch ``session`` pushed, judged and audited."""
    hub = session.hub
    hosted = await hub.open(doc_id)
    doc = hosted.doc
    fresh = [e for e in events if not _held(doc.known_event(e.id), e)]  # resent: nothing new
    rights = session.rights
    signed = hub.signed(doc_id)
    if rights is not None and rights.needs_authors(doc_id, signed):
        await _load_authors(hub, doc_id)
    writes: list[list[Write]] | None = None  # the audit works them out later
    if rights is not None and rights.scopes_writes and fresh:
        writes = batch_writes(doc._state, fresh)
    if rights is not None:
        refusal = rights.write_refusal(doc_id, fresh, writes or [], signed, hub.authors)
        if refusal is not None:
            verdict = ("rejected", refusal.code)
            _audit(session, hosted, fresh, writes, dict.fromkeys((e.id for e in fresh), verdict))
            return refusal
    rejected = await hub.receive(doc_id, events, session)
    if fresh:
        verdicts = _verdicts(hosted, fresh, rejected)
        _audit(session, hosted, fresh, writes, verdicts)
        if any(touches_policy(e) and verdicts[e.id][0] == "accepted" for e in fresh):
            recheck_readers(hosted)
    return rejected


def recheck_readers(hosted: HostedDocument) -> None:
    """The document's policy changed: close the subscribers that may no
    longer read it (before the fan-out sends them what comes next)."""
    from gether.server.session import Session  # it imports this module

    for subscriber in list(hosted.subscribers):
        if isinstance(subscriber, Session):
            refusal = read_refusal(subscriber, hosted)
            if refusal is not None:
                subscriber.forbid(refusal)


def _held(known: Event | None, event: Event) -> bool:
    return known is not None and known.hash == event.hash


async def _load_authors(hub: DocumentHub, doc_id: str) -> None:
    if not hub.authors.loaded(doc_id):
        hub.authors.load(doc_id, await hub.store.audit_authors(doc_id))


def _verdicts(
    hosted: HostedDocument, fresh: Sequence[Event], rejected: GetherError | None
) -> dict[tuple[str, int], tuple[str, str | None]]:
    refused: dict[object, str] = {}
    if isinstance(rejected, RejectedEventsError):
        refused = {event_id: error.code for event_id, error in rejected.rejected}
    doc = hosted.doc
    pending = doc.pending
    verdicts: dict[tuple[str, int], tuple[str, str | None]] = {}
    for event in fresh:
        code = refused.get(event.id)
        known = doc.known_event(event.id)
        if code is None and known is not None and known.hash == event.hash:
            verdicts[event.id] = ("accepted", None)
        elif code is None and event.id in pending:
            verdicts[event.id] = ("pending", None)
        else:
            fallback = rejected.code if rejected is not None else "rejected_events"
            verdicts[event.id] = ("rejected", code or fallback)
    return verdicts


def _audit(
    session: Session,
    hosted: HostedDocument,
    events: Sequence[Event],
    writes: Sequence[Sequence[Write]] | None,
    verdicts: dict[tuple[str, int], tuple[str, str | None]],
) -> None:
    principal = session.principal
    subject = principal.subject if principal is not None else f"({session.name})"
    connection = f"{session.info.transport} {session.info.remote}"
    state = hosted.doc._state
    session.hub.audit.record(hosted.doc_id, events, writes, state, verdicts, subject, connection)
