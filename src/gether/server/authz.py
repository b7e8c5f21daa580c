"""What an authenticated connection may do on this server: which documents it
may read, which events it may push (docs/architecture.md, "Authorization").

Two sources, both required when configured:

* the **server roles** of its ``Principal`` (a JWT's ``roles`` claim, a hook's
  principal): ``ROLE[:POINTER][@DOCUMENTS]``, e.g. ``reader``, ``writer:/todos``,
  ``admin@team-*``, ``relay``; ROLE is ``reader``, ``writer`` or ``admin`` as in
  the document's policy, POINTER a JSON pointer (``/`` by default), DOCUMENTS
  an ``fnmatch`` glob of document ids (``*`` by default). ``relay`` (a peer)
  is a writer on ``/`` that may push events of any author.
* the **keys it is bound to**: the hex key ids of its principal's ``keys``
  claim (list or space-separated), the keys its subject signs with. Events
  are judged by the document's own policy against their key ids everywhere;
  the binding ties those key ids to the connection, so a token for alice
  cannot push events under bob's key, and a read needs a role in the
  document's policy for one of its keys (or ``*``).

A document is read whole or not at all: its events are hashed and signed
whole, so a connection whose read roles cover only some paths is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gether.core.access import ACCESS_NAME, ADMIN, READER, ROLES, WRITER, Path, parse_path
from gether.core.event import Event
from gether.core.keys import KEY_ID_SIZE
from gether.core.writes import Write, pointer_of
from gether.document import Document
from gether.errors import AuthorNotBoundError, ForbiddenError, UsageError
from gether.server.auth import Principal

RELAY = "relay"
KEYS_CLAIM = "keys"


@dataclass(frozen=True, slots=True)
class Authorization:
    """``HubConfig.authorization``: None (the default) keeps the server open
    to every authenticated connection (only the documents' own policies and,
    on unsigned documents, author binding apply)."""

    roles: bool = True
    """A connection reads and writes only as its server roles allow (a
    principal with no role may do nothing)."""
    bind_keys: bool = True
    """A connection pushes only events of the keys its ``keys`` claim names
    (none without the claim), on signed documents too; a ``relay`` may push any."""


@dataclass(frozen=True, slots=True)
class ServerGrant:
    """One server role: ``rank`` (``ROLES``; 0 for relay) at ``path`` of the
    documents matching ``documents``."""

    rank: int
    path: tuple[str, ...] = ()
    documents: str = "*"
    relay: bool = False

    def covers(self, doc_id: str) -> bool:
        return self.documents == "*" or fnmatchcase(doc_id, self.documents)


def parse_grant(text: str) -> ServerGrant | None:
    """``ROLE[:POINTER][@DOCUMENTS]``, or None for a role that is not ours (a
    token may carry roles of other applications)."""
    head, _, documents = text.partition("@")
    role, colon, where = head.partition(":")
    documents = documents or "*"
    if role == RELAY and not colon:
        return ServerGrant(WRITER, (), documents, relay=True)
    rank = ROLES.get(role)
    if rank is None:
        return None
    try:
        path = parse_path(where) if colon else ()
    except UsageError:
        return None
    return ServerGrant(rank, path, documents)


def keys_claimed(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """The hex key ids of the ``keys`` claim (None without the claim; ids that
    are not key ids are left out)."""
    value = claims.get(KEYS_CLAIM)
    if value is None:
        return None
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return frozenset()
    out = set()
    for item in items:
        if isinstance(item, str) and len(item) == 2 * KEY_ID_SIZE:
            try:
                out.add(bytes.fromhex(item).hex())
            except ValueError:
                continue
    return frozenset(out)


class AuthorBook:
    """Who authors with which key on the unsigned documents of one hub, for
    connections whose credentials name no keys: the first subject to use a key
    on a document owns it there (trust on first use). Loaded per document from
    the audit trail's accepted records, so the binding outlives restarts."""

    def __init__(self) -> None:
        self._owners: dict[str, dict[str, str]] = {}

    def loaded(self, doc_id: str) -> bool:
        return doc_id in self._owners

    def load(self, doc_id: str, stored: Mapping[str, str]) -> None:
        # what the store says came first; claims made while it was read come after
        self._owners[doc_id] = {**self._owners.get(doc_id, {}), **stored}

    def claim(self, doc_id: str, key_id: str, subject: str) -> str:
        """The owner of ``key_id`` on ``doc_id``: ``subject`` if it had none."""
        return self._owners.setdefault(doc_id, {}).setdefault(key_id, subject)


class Rights:
    """What one authenticated connection may do (``Session.rights``)."""

    def __init__(self, principal: Principal, authorization: Authorization | None) -> None:
        self.subject = principal.subject
        self.authorization = authorization
        grants = (parse_grant(role) for role in sorted(principal.roles))
        self.grants = tuple(g for g in grants if g is not None)
        self.keys = keys_claimed(principal.claims)

    @property
    def scopes_writes(self) -> bool:
        """Are its writes judged by server roles (so their paths are needed)?"""
        return self.authorization is not None and self.authorization.roles

    def relays(self, doc_id: str) -> bool:
        return any(g.relay and g.covers(doc_id) for g in self.grants)

    def needs_authors(self, doc_id: str, signed: bool) -> bool:
        """Does judging its events need the ``AuthorBook`` of ``doc_id``?"""
        config = self.authorization
        bound = self.keys is not None or (config is not None and config.bind_keys)
        return not signed and not bound and not self.relays(doc_id)

    # -- reading -----------------------------------------------------------------------

    def read_refusal(self, doc_id: str, doc: Document) -> ForbiddenError | None:
        """Why the connection may not read ``doc_id`` (None: it may)."""
        config = self.authorization
        if config is None:
            return None
        if config.roles and self._rank(doc_id, ()) < READER:
            partial = sorted(pointer_of(g.path) for g in self.grants if g.covers(doc_id))
            if partial:
                return ForbiddenError(
                    f"{self.subject} may read only {', '.join(partial)} of {doc_id!r},"
                    " and a document is sent whole"
                )
            return ForbiddenError(f"{self.subject} has no role on {doc_id!r}")
        if self.keys is None or self.relays(doc_id) or doc.access.is_open:
            return None
        if not any(doc.access.role(k, "/") for k in (*sorted(self.keys), "*")):
            return ForbiddenError(
                f"no key of {self.subject} may read {doc_id!r} (its policy grants none on /)"
            )
        return None

    # -- writing -----------------------------------------------------------------------

    def write_refusal(
        self,
        doc_id: str,
        events: Sequence[Event],
        writes: Sequence[Sequence[Write]],
        signed: bool,
        authors: AuthorBook,
    ) -> ForbiddenError | None:
        """Why the batch may not be pushed by this connection (None: it may, as
        far as the server goes; the document's policy judges it next)."""
        for event in events:
            refusal = self._author_refusal(doc_id, event, signed, authors)
            if refusal is not None:
                return refusal
        if self.scopes_writes:
            for event, written in zip(events, writes, strict=True):
                for _, path in written:
                    needed = ADMIN if path[:1] == (ACCESS_NAME,) else WRITER
                    at: Path = () if needed == ADMIN else path
                    if self._rank(doc_id, at) < needed:
                        role = "admin on /" if needed == ADMIN else f"writer on {pointer_of(path)}"
                        return ForbiddenError(
                            f"{event.id}: {self.subject} is not {role} of {doc_id!r}"
                        )
        return None

    def _author_refusal(
        self, doc_id: str, event: Event, signed: bool, authors: AuthorBook
    ) -> AuthorNotBoundError | None:
        if self.relays(doc_id):
            return None
        key = event.key_id.hex()
        config = self.authorization
        bind = config is not None and config.bind_keys
        if self.keys is not None:
            if (bind or not signed) and key not in self.keys:
                return AuthorNotBoundError(f"{event.id}: key {key} is not one of {self.subject}'s")
        elif bind:
            return AuthorNotBoundError(f"{event.id}: {self.subject}'s credentials name no keys")
        elif not signed:
            owner = authors.claim(doc_id, key, self.subject)
            if owner != self.subject:
                return AuthorNotBoundError(
                    f"{event.id}: key {key} authors for another subject on {doc_id!r}"
                )
        return None

    def _rank(self, doc_id: str, path: Path) -> int:
        best = 0
        for grant in self.grants:
            scope = grant.path
            if grant.rank > best and grant.covers(doc_id) and path[: len(scope)] == scope:
                best = grant.rank
        return best


__all__ = [
    "AuthorBook",
    "Authorization",
    "RELAY",
    "Rights",
    "ServerGrant",
    "keys_claimed",
    "parse_grant",
]
