"""Gether: offline-first, real-time sync of JSON-like state.

The public surface is this module's ``__all__``; everything else is private or
lives in a subpackage (``gether.testing`` for test kits).
"""

from gether.core.changes import ChangeSet, Move, PathChange, Replace, Splice
from gether.core.event import Event
from gether.core.ids import EventId, Version
from gether.core.keys import SigningKey
from gether.core.proxies import Counter, CounterProxy, ListProxy, MapProxy, Text, TextProxy
from gether.document import Document
from gether.errors import (
    DecodeError,
    EquivocationError,
    GetherError,
    HashMismatchError,
    InvalidEventError,
    InvalidKeyError,
    InvalidPathError,
    InvalidValueError,
    LimitExceededError,
    OutOfRangeError,
    ReadOnlyError,
    RejectedEventsError,
    RemoteError,
    SignatureError,
    TypeMismatchError,
    UnsupportedVersionError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "ChangeSet",
    "Counter",
    "CounterProxy",
    "DecodeError",
    "Document",
    "EquivocationError",
    "Event",
    "EventId",
    "GetherError",
    "HashMismatchError",
    "InvalidEventError",
    "InvalidKeyError",
    "InvalidPathError",
    "InvalidValueError",
    "LimitExceededError",
    "ListProxy",
    "MapProxy",
    "Move",
    "OutOfRangeError",
    "PathChange",
    "ReadOnlyError",
    "RejectedEventsError",
    "RemoteError",
    "Replace",
    "SignatureError",
    "SigningKey",
    "Splice",
    "Text",
    "TextProxy",
    "TypeMismatchError",
    "UnsupportedVersionError",
    "UsageError",
    "Version",
]
