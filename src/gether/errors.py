"""Every error Gether raises, as one tree with stable codes.

::

    GetherError                      code "error"
    ├── UsageError                   local misuse of the API (the caller's bug)
    │   ├── InvalidValueError        a value Gether cannot store (NaN, lone surrogate...)
    │   ├── InvalidPathError         a path that does not name a place in the document
    │   ├── OutOfRangeError          an index or range outside a list or text
    │   ├── TypeMismatchError        a container used as another type
    │   ├── ReadOnlyError            an edit on a read-only view (``doc.at(...)``)
    │   ├── SchemaError              a schema that is not valid, or not usable by Gether
    │   ├── SchemaViolationError     a local edit the document's schema does not allow
    │   ├── AccessDeniedError        a local edit the document's access policy does not allow
    │   ├── IncompleteHistoryError   events given to a store without their causes
    │   └── EncryptionKeyError       no document key to write an encrypted field, or a bad key
    ├── RemoteError                  input from elsewhere that is malformed or forged
    │   ├── DecodeError              bytes that are not a valid encoding
    │   │   └── UnsupportedVersionError   a magic or format version we do not read
    │   ├── InvalidEventError        a well-formed event that breaks a rule
    │   │   ├── HashMismatchError    a parent hash that is not the parent's hash
    │   │   ├── SignatureError       a missing or forged signature
    │   │   │   └── SignatureRequiredError  an unsigned event for a signed document
    │   │   ├── InvalidKeyError      a malformed or small-order public key
    │   │   ├── EquivocationError    one (replica, seq) with two different hashes
    │   │   ├── SchemaRejectedError  an event that breaks the document's schema
    │   │   └── AccessRejectedError  an event its author's roles did not allow
    │   ├── UnknownParentError       a hash-less parent the receiver does not hold
    │   ├── PendingEventsError       events kept waiting for causes not sent first: not acknowledged
    │   ├── LimitExceededError       input over a configured limit
    │   │   ├── RateLimitedError     a connection over its message or byte budget
    │   │   └── SlowConsumerError    a reader too slow: its send queue is full
    │   ├── ProtocolViolationError   a well-formed message that breaks the sync protocol
    │   ├── AuthenticationError      credentials (token, key, certificate) not accepted
    │   └── ForbiddenError           an authenticated connection's roles do not allow it
    │       └── AuthorNotBoundError  an event by a key (author) the connection is not bound to
    ├── StorageError                 the event store failed; nothing was written
    │   ├── StorageFullError         no space left (disk, quota, size limit)
    │   ├── CorruptStoreError        a file or database that is not a sound Gether store
    │   └── StoreUnavailableError    the store cannot be reached (server down, closed)
    ├── GoingAwayError               the server is shutting down; reconnect later
    ├── ConnectionFailedError        a server or peer could not be reached (or was lost)
    │   └── TLSError                 the TLS handshake failed (untrusted or missing certificate)
    ├── RejectedEventsError          a batch in which some events were rejected
    └── DecryptionError              an encrypted value the keys held do not open

Each class carries a ``code`` that never changes once released, so that it can
travel on the wire and be matched by other implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class GetherError(Exception):
    """The root of every error Gether raises."""

    code: ClassVar[str] = "error"


class UsageError(GetherError):
    """The caller used the API in a way it does not allow."""

    code = "usage"


class InvalidValueError(UsageError, ValueError):
    """A value that cannot be stored in a document."""

    code = "invalid_value"


class InvalidPathError(UsageError, KeyError):
    """A path that names nothing in the document."""

    code = "invalid_path"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class OutOfRangeError(UsageError, IndexError):
    """An index or range outside a list or a text."""

    code = "out_of_range"


class TypeMismatchError(UsageError, TypeError):
    """A container used as a type it is not."""

    code = "type_mismatch"


class ReadOnlyError(UsageError):
    """An edit attempted on a read-only document."""

    code = "read_only"


class SchemaError(UsageError):
    """A schema that is not a valid JSON Schema (Draft 2020-12), or that Gether
    cannot use: an unknown ``x-merge`` policy, a policy that does not fit the
    field's type, a ``$ref`` that is not a local JSON pointer.

    ``path`` is where in the schema, as a JSON pointer (``"/properties/tags"``).
    """

    code = "invalid_schema"

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"schema at #{path}: {message}" if path else message)


def _where(path: tuple[str | int, ...]) -> str:
    return "/".join(str(p) for p in path) or "/"


class SchemaViolationError(UsageError):
    """A local edit that the document's schema does not allow; nothing changed.

    ``path`` is where in the document (a tuple of keys and indices) and
    ``reason`` why, in the words of the JSON Schema validator.
    """

    code = "schema_violation"

    def __init__(self, path: Sequence[str | int], reason: str) -> None:
        self.path = tuple(path)
        self.reason = reason
        super().__init__(f"{_where(self.path)}: {reason}")


class AccessDeniedError(UsageError):
    """A local edit that the document's access policy does not allow to this
    replica's key (no ``writer`` role at the path, or a policy change without
    ``admin`` on ``/``); nothing changed.

    ``path`` is where in the document (a tuple of keys, ``"-"`` for a list
    element) and ``reason`` what was missing.
    """

    code = "access_denied"

    def __init__(self, path: Sequence[str | int] | str, reason: str) -> None:
        self.path = tuple(path) if not isinstance(path, str) else ()
        self.reason = reason
        super().__init__(f"access denied at {_where(self.path)}: {reason}")


class IncompleteHistoryError(UsageError):
    """Events appended to a store whose parents are neither stored nor appended with them."""

    code = "incomplete_history"


class EncryptionKeyError(UsageError):
    """An encrypted field written without a document key, or key material that
    is not a document key (wrong size, malformed key file)."""

    code = "encryption_key"


class RemoteError(GetherError):
    """Input that came from outside this process and is not acceptable."""

    code = "remote"


class DecodeError(RemoteError):
    """Bytes that are not a valid Gether encoding."""

    code = "decode"


class UnsupportedVersionError(DecodeError):
    """A magic number or format version this build does not read."""

    code = "unsupported_version"


class InvalidEventError(RemoteError):
    """A well-formed event that breaks a rule of the event graph or of its types."""

    code = "invalid_event"


class HashMismatchError(InvalidEventError):
    """An event names a parent by a hash that is not that parent's hash."""

    code = "hash_mismatch"


class SignatureError(InvalidEventError):
    """An event whose signature is missing or does not verify."""

    code = "bad_signature"


class SignatureRequiredError(SignatureError):
    """An event without a signature (and no signed successor to vouch for it)
    for a document that requires per-event signatures."""

    code = "signature_required"


class InvalidKeyError(InvalidEventError):
    """A public key that is malformed or of small order."""

    code = "invalid_key"


class EquivocationError(InvalidEventError):
    """Two different events claim the same (replica, seq)."""

    code = "equivocation"


class SchemaRejectedError(InvalidEventError):
    """A received event that breaks the document's schema, judged on its own
    causal past; it was rejected whole and changed nothing.

    ``path`` and ``reason`` as in ``SchemaViolationError``.
    """

    code = "schema_rejected"

    def __init__(self, path: Sequence[str | int], reason: str, event: object = None) -> None:
        self.path = tuple(path)
        self.reason = reason
        message = f"{_where(self.path)}: {reason}"
        super().__init__(f"{event}: {message}" if event is not None else message)


class AccessRejectedError(InvalidEventError):
    """A received event that its author's roles did not allow, judged on the
    access policy in force at its parents; it was rejected whole and changed
    nothing. ``path`` and ``reason`` as in ``AccessDeniedError``.
    """

    code = "access_rejected"

    def __init__(self, path: Sequence[str | int] | str, reason: str, event: object = None) -> None:
        self.path = tuple(path) if not isinstance(path, str) else ()
        self.reason = reason
        message = f"access denied at {_where(self.path)}: {reason}"
        super().__init__(f"{event}: {message}" if event is not None else message)


class UnknownParentError(RemoteError):
    """A v2 batch names a parent by (replica, seq) alone and the receiver does
    not hold it, so it cannot recompute the event's hash; the sender sends the
    batch again with the parents' hashes (docs/protocol.md)."""

    code = "unknown_parent"


class PendingEventsError(RemoteError):
    """Events of a received batch that can be neither applied nor refused yet:
    they wait for parents (or a signature) that were not sent before them, as
    the protocol requires. They are kept, up to ``Limits.max_parked_events``
    per sender, but not stored, so the batch is answered with this error
    instead of an acknowledgement (which would say they are stored)."""

    code = "events_pending"


class LimitExceededError(RemoteError):
    """Input larger than a configured limit."""

    code = "limit_exceeded"


class RateLimitedError(LimitExceededError):
    """A connection sent more messages or bytes than its budget (``Limits``)."""

    code = "rate_limited"


class SlowConsumerError(LimitExceededError):
    """A peer read so slowly that what waits to be sent to it passed
    ``Limits.max_queued_bytes``: it is disconnected rather than buffered."""

    code = "slow_consumer"


class ProtocolViolationError(RemoteError):
    """A well-formed sync message sent when the protocol does not allow it."""

    code = "protocol_violation"


class AuthenticationError(RemoteError):
    """The peer's credentials were refused (or it sent none where some are
    required). A server answers it with ``Error(authentication_failed)`` and
    closes; nothing of the connection was applied."""

    code = "authentication_failed"


class ForbiddenError(RemoteError):
    """The server's roles for the connection (``server/authz.py``) do not allow
    what it asked: to read a document (its subscription is refused) or to write
    an event (the batch is refused whole, nothing of it applied or stored)."""

    code = "forbidden"


class AuthorNotBoundError(ForbiddenError):
    """A connection pushed an event whose author (its key id) is not one the
    connection is bound to: the keys its credentials name, or on an unsigned
    document the keys its subject was the first to author with."""

    code = "author_not_bound"


class StorageError(GetherError):
    """The event store could not do what was asked; it wrote nothing of it."""

    code = "storage"


class StorageFullError(StorageError):
    """No space is left for the store (disk full, quota or size limit)."""

    code = "storage_full"


class CorruptStoreError(StorageError):
    """A file or database that is damaged, or is not a Gether store at all."""

    code = "corrupt_store"


class StoreUnavailableError(StorageError):
    """The store cannot be reached: its server is down, or it was closed."""

    code = "store_unavailable"


class GoingAwayError(GetherError):
    """The other side is shutting down; nothing is lost, reconnect later."""

    code = "going_away"


class ConnectionFailedError(GetherError):
    """A server or peer could not be reached, or the connection was lost."""

    code = "connection_failed"


class TLSError(ConnectionFailedError):
    """The TLS handshake failed: a certificate we do not trust, or one the
    other side required and we did not present."""

    code = "tls"


class RejectedEventsError(GetherError):
    """Some events of a batch were rejected; the others were applied.

    ``rejected`` pairs each rejected event id (or ``None`` when the bytes could
    not even be decoded) with the error that rejected it.
    """

    code = "rejected_events"

    def __init__(self, rejected: Sequence[tuple[object, GetherError]]) -> None:
        self.rejected = tuple(rejected)
        first = self.rejected[0][1] if self.rejected else None
        summary = f"{len(self.rejected)} event(s) rejected"
        if first is not None:
            summary += f"; first: [{first.code}] {first}"
        super().__init__(summary)


class DecryptionError(GetherError):
    """An encrypted value that does not open with the keys this replica holds:
    sealed under a key it lacks, altered, or moved from another field or
    document. Reading it fails; nothing changes."""

    code = "decryption_failed"


__all__ = [
    "AccessDeniedError",
    "AccessRejectedError",
    "AuthenticationError",
    "AuthorNotBoundError",
    "DecodeError",
    "DecryptionError",
    "EncryptionKeyError",
    "EquivocationError",
    "ForbiddenError",
    "GetherError",
    "GoingAwayError",
    "HashMismatchError",
    "ConnectionFailedError",
    "CorruptStoreError",
    "IncompleteHistoryError",
    "InvalidEventError",
    "InvalidKeyError",
    "InvalidPathError",
    "InvalidValueError",
    "LimitExceededError",
    "OutOfRangeError",
    "PendingEventsError",
    "ReadOnlyError",
    "ProtocolViolationError",
    "RejectedEventsError",
    "RemoteError",
    "SchemaError",
    "SchemaRejectedError",
    "SchemaViolationError",
    "SignatureError",
    "SignatureRequiredError",
    "TLSError",
    "StorageError",
    "StorageFullError",
    "StoreUnavailableError",
    "TypeMismatchError",
    "UnknownParentError",
    "UnsupportedVersionError",
    "UsageError",
]
