"""Gether: offline-first, real-time sync of JSON-like state.

The public surface is this module's ``__all__``; everything else is private or
lives in a subpackage (``gether.testing`` for test kits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gether import keys
from gether.core.changes import MISSING, ChangeSet, Move, PathChange, Replace, Splice
from gether.core.event import Event
from gether.core.ids import EventId, Version
from gether.core.keys import SigningKey
from gether.core.proxies import (
    Counter,
    CounterProxy,
    ListProxy,
    MapProxy,
    Set,
    SetProxy,
    Text,
    TextProxy,
)
from gether.core.schema import Schema
from gether.core.sealed import DocumentKey, Encrypted
from gether.document import Document
from gether.errors import (
    AccessDeniedError,
    AccessRejectedError,
    AuthenticationError,
    ConnectionFailedError,
    CorruptStoreError,
    DecodeError,
    DecryptionError,
    EncryptionKeyError,
    EquivocationError,
    GetherError,
    GoingAwayError,
    HashMismatchError,
    IncompleteHistoryError,
    InvalidEventError,
    InvalidKeyError,
    InvalidPathError,
    InvalidValueError,
    LimitExceededError,
    OutOfRangeError,
    PendingEventsError,
    ProtocolViolationError,
    RateLimitedError,
    ReadOnlyError,
    RejectedEventsError,
    RemoteError,
    SchemaError,
    SchemaRejectedError,
    SchemaViolationError,
    SignatureError,
    SignatureRequiredError,
    SlowConsumerError,
    StorageError,
    StorageFullError,
    StoreUnavailableError,
    TLSError,
    TypeMismatchError,
    UnknownParentError,
    UnsupportedVersionError,
    UsageError,
)
from gether.merges import register_merge
from gether.models import Merge, schema_of

if TYPE_CHECKING:
    from gether.client import ClientSession

__version__ = "0.1.0"


def connect(
    url: str, doc_id: str, doc: Document | None = None, token: str | None = None, **options: object
) -> ClientSession:
    """``async with gether.connect("ws://127.0.0.1:8765", "doc-id", doc=doc) as session``:
    keep ``doc`` in sync with a server (see ``gether.client``). Imported on
    first use, so that ``import gether`` stays free of asyncio."""
    from gether.client import connect as _connect

    return _connect(url, doc_id, doc, token, **options)


def __getattr__(name: str) -> object:
    """``gether.Peer`` is imported on first use (it pulls in asyncio and the server)."""
    if name == "Peer":
        from gether.peer import Peer

        return Peer
    raise AttributeError(f"module 'gether' has no attribute {name!r}")


__all__ = [
    "MISSING",
    "AccessDeniedError",
    "AccessRejectedError",
    "AuthenticationError",
    "ChangeSet",
    "ConnectionFailedError",
    "CorruptStoreError",
    "Counter",
    "CounterProxy",
    "DecodeError",
    "DecryptionError",
    "Document",
    "DocumentKey",
    "Encrypted",
    "EncryptionKeyError",
    "EquivocationError",
    "Event",
    "EventId",
    "GetherError",
    "GoingAwayError",
    "HashMismatchError",
    "IncompleteHistoryError",
    "InvalidEventError",
    "InvalidKeyError",
    "InvalidPathError",
    "InvalidValueError",
    "LimitExceededError",
    "ListProxy",
    "MapProxy",
    "Merge",
    "Move",
    "OutOfRangeError",
    "PendingEventsError",
    "PathChange",
    "Peer",
    "ProtocolViolationError",
    "RateLimitedError",
    "ReadOnlyError",
    "RejectedEventsError",
    "RemoteError",
    "Replace",
    "Schema",
    "SchemaError",
    "SchemaRejectedError",
    "SchemaViolationError",
    "Set",
    "SetProxy",
    "SignatureError",
    "SignatureRequiredError",
    "SigningKey",
    "SlowConsumerError",
    "Splice",
    "Text",
    "TextProxy",
    "StorageError",
    "StorageFullError",
    "StoreUnavailableError",
    "TLSError",
    "TypeMismatchError",
    "UnknownParentError",
    "UnsupportedVersionError",
    "UsageError",
    "Version",
    "connect",
    "keys",
    "register_merge",
    "schema_of",
]
