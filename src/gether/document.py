"""``gether.Document``: the core replica with defaults from the environment
(a random replica id, a fresh Ed25519 key, the wall clock), and durable
replicas opened on a store."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any, Self, TypeVar

from gether.core.document import Document as _CoreDocument
from gether.core.event import Event
from gether.core.hlc import Clock
from gether.core.keys import SigningKey
from gether.core.policy import MergeFunction
from gether.core.schema import Schema
from gether.core.sealed import DocumentKey, NonceSource
from gether.errors import CorruptStoreError, GetherError, UsageError
from gether.merges import registered
from gether.models import is_model, model_view, schema_of
from gether.runtime import new_replica_id, new_seed, new_signing_key, wall_clock
from gether.store import BlockingStore, Identity, Snapshot, open_blocking_store
from gether.store.journal import SnapshotPolicy, StoreJournal

Progress = Callable[[int, int], None]
SchemaLike = Schema | Mapping[str, Any] | type
"""A JSON Schema (dict or compiled ``Schema``) or a dataclass (a typed model)."""
M = TypeVar("M")


class Document(_CoreDocument):
    """A replica of a JSON-like document that merges with any other replica."""

    def __init__(
        self,
        replica_id: str | None = None,
        *,
        key: SigningKey | None = None,
        clock: Clock | None = wall_clock,
        schema: SchemaLike | None = None,
        signed: bool = True,
        keys: DocumentKey | Iterable[DocumentKey] = (),
    ) -> None:
        """``schema``: a JSON Schema (with ``x-merge`` policies) or a dataclass
        that every edit and received event is validated against. ``signed=False``:
        no per-event signatures, for a document a server hosts unsigned
        (``gether serve --unsigned``); see docs/architecture.md. ``keys``: the
        document keys of its ``x-encrypt`` fields (``gether.keys.new_document_key``),
        as ``unlock`` takes them."""
        replica_id, key = self._identity(replica_id, key)
        super().__init__(
            replica_id, key, clock, merges=registered, schema=_schema(schema), signed=signed
        )
        _unlock(self, keys)

    @staticmethod
    def _default_clock() -> Clock | None:
        return wall_clock

    @staticmethod
    def _default_merges() -> Mapping[str, MergeFunction]:
        return registered

    @staticmethod
    def _default_nonces() -> NonceSource | None:
        return os.urandom

    @classmethod
    def load(
        cls,
        data: bytes,
        replica_id: str | None = None,
        key: SigningKey | None = None,
        clock: Clock | None = None,
        *,
        schema: SchemaLike | None = None,
        signed: bool = True,
        keys: DocumentKey | Iterable[DocumentKey] = (),
    ) -> Self:
        doc = super().load(data, replica_id, key, clock, schema=_schema(schema), signed=signed)
        _unlock(doc, keys)
        return doc

    def model(self, cls: type[M]) -> M:
        """A live, typed view of this document as the dataclass ``cls``:
        attributes read the document and assignments write to it (see
        ``gether.models.model_view``)."""
        return model_view(self, cls)

    @classmethod
    def _identity(cls, replica_id: str | None, key: SigningKey | None) -> tuple[str, SigningKey]:
        return replica_id or new_replica_id(), key or new_signing_key()

    # -- durable replicas ----------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        doc_id: str,
        *,
        replica_id: str | None = None,
        key: SigningKey | None = None,
        clock: Clock | None = wall_clock,
        snapshots: SnapshotPolicy | None = None,
        read_only: bool = False,
        progress: Progress | None = None,
        schema: SchemaLike | None = None,
        keys: DocumentKey | Iterable[DocumentKey] = (),
    ) -> Self:
        """A replica of ``doc_id`` kept in the store at ``url`` (``sqlite:///notes.db``,
        ``postgresql://...``, ``memory://name``).

        Every local edit (or transaction) is in the store before it returns;
        events received with ``apply_events`` are stored once applied. The
        replica's id and key are kept in the store on first open and reused
        after (pass both ``replica_id`` and ``key`` to choose them). Opening
        loads the newest snapshot and replays the events after it.

        ``read_only`` opens a view for inspection that writes nothing, not even
        an identity; ``progress(done, total)`` is called as events are replayed.
        ``schema`` validates what happens from now on (the stored events were
        checked when they were stored); ``keys`` open its encrypted fields.
        """
        if (replica_id is None) != (key is None):
            raise UsageError("pass both replica_id and key, or neither")
        compiled = _schema(schema)
        store = open_blocking_store(url)
        try:
            if read_only:
                doc = cls._from_store(
                    store, doc_id, new_replica_id(), new_signing_key(), clock, progress, compiled
                )
                doc._read_only = True
                _unlock(doc, keys)
                return doc
            if replica_id is None or key is None:
                fresh = Identity(new_replica_id(), new_seed())
                identity = store.claim_identity(doc_id, fresh)
                replica_id, key = identity.replica_id, SigningKey(identity.seed)
            doc = cls._from_store(store, doc_id, replica_id, key, clock, progress, compiled)

            def snapshot() -> None:
                cls.refresh_snapshot(url, doc_id)

            doc._journal = StoreJournal(store, doc_id, snapshots or SnapshotPolicy(), snapshot)
            _unlock(doc, keys)
        except BaseException:
            store.close()
            raise
        finally:
            if read_only:
                store.close()
        return doc

    @classmethod
    def _from_store(
        cls,
        store: BlockingStore,
        doc_id: str,
        replica_id: str,
        key: SigningKey,
        clock: Clock | None,
        progress: Progress | None = None,
        schema: Schema | None = None,
    ) -> Self:
        snapshot = store.load_snapshot(doc_id)
        doc: Self | None = None
        if snapshot is not None:
            with suppress(GetherError):  # a bad snapshot costs time, never data
                doc = cls.load(snapshot.data, replica_id, key, clock, schema=schema)
        if doc is None:
            doc = cls(replica_id, key=key, clock=clock, schema=schema)
        tail = store.events(doc_id, doc.version)
        _check_links(doc, tail)
        step = max(1, len(tail) // 100)
        for start in range(0, len(tail), step):
            doc._replay(tail[start : start + step])
            if progress is not None:
                progress(min(start + step, len(tail)), len(tail))
        return doc

    @classmethod
    def refresh_snapshot(cls, url: str, doc_id: str) -> Snapshot | None:
        """Save a new snapshot of ``doc_id`` made from the store alone (its newest
        snapshot and the events after it); ``None`` if there is nothing new."""
        store = open_blocking_store(url)
        try:
            newest = store.load_snapshot(doc_id)
            if newest is not None and store.version(doc_id) == newest.version:
                return None
            doc = cls._from_store(store, doc_id, new_replica_id(), new_signing_key(), None)
            snapshot = Snapshot(doc.version, doc.save())
            store.save_snapshot(doc_id, snapshot)
            return snapshot
        finally:
            store.close()

    def close(self) -> None:
        """Close the store of a replica made by ``open`` (its edits are already safe)."""
        journal = self._journal
        if isinstance(journal, StoreJournal):
            self._journal = None
            self._read_only = True
            journal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _schema(schema: SchemaLike | None) -> Schema | None:
    """A compiled schema from a JSON Schema, a ``Schema`` or a dataclass."""
    if schema is None or isinstance(schema, Schema):
        return schema
    if is_model(schema):
        return Schema(schema_of(schema))  # type: ignore[arg-type]
    if isinstance(schema, Mapping):
        return Schema(schema)
    raise UsageError(f"a schema is a JSON Schema dict or a dataclass, not {schema!r}")


def _unlock(doc: _CoreDocument, keys: DocumentKey | Iterable[DocumentKey]) -> None:
    keys = (keys,) if isinstance(keys, DocumentKey) else tuple(keys)
    if keys:
        doc.unlock(*keys)


def _check_links(doc: _CoreDocument, events: list[Event]) -> None:
    """Stored events were verified when they were stored; check that the file
    still holds what was stored: each event names its causes by their hashes."""
    known = {e.id: e.hash for e in events}
    key_id = doc.key.key_id
    for event in events:
        if event.id[0] == doc.replica_id and event.key_id != key_id:
            raise UsageError(f"replica {doc.replica_id} signs with another key: pass its key")
        for parent, digest in event.parents:
            stored = known.get(parent)
            if stored is None:
                parent_event = doc._log.get(parent)
                stored = parent_event.hash if parent_event is not None else None
            if stored != digest:
                raise CorruptStoreError(f"stored event {event.id} names {parent} by a wrong hash")
