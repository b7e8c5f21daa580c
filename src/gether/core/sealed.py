"""Encrypted fields: values sealed with AES-256-GCM under a document key.

A field marked ``x-encrypt`` in the schema holds one *sealed* value: the
plaintext is the field's whole JSON value (canonical UTF-8 JSON), and what
the event carries is the bytes::

    version (1) | key_id (8) | nonce (12) | ciphertext | tag (16)

``key_id`` names the document key (the first 8 bytes of a SHA-256 of it), so
a key can be rotated and old values still opened. The associated data is the
header and the field's place: the document id (which a document key is
issued for), the id of the map that holds the field and its key. A sealed
value moved to another field or document, or altered, does not open.

Bytes are never a value a user can store (``check_scalar`` refuses them), so
a ``bytes`` write in a map is a sealed value wherever it is found, with or
without a schema. Every replica checks only that it is well formed
(``is_sealed``); the verdict on an event never depends on the keys a replica
holds. Nonces come from an injected source (``gether.Document`` gives
``os.urandom``): this module draws no randomness itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gether.core.ids import ContainerId
from gether.core.values import MAX_DEPTH, check_key, check_scalar, check_text
from gether.errors import DecryptionError, EncryptionKeyError, InvalidValueError

SEALED_VERSION: Final = 1
KEY_SIZE: Final = 32
KEY_ID_SIZE: Final = 8
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
HEADER_SIZE: Final = 1 + KEY_ID_SIZE + NONCE_SIZE
MIN_SEALED_SIZE: Final = HEADER_SIZE + TAG_SIZE
KEY_FILE_FORMAT: Final = "gether-document-key"

NonceSource = Callable[[int], bytes]
"""``nonces(n)``: ``n`` fresh random bytes (``os.urandom`` at the edge)."""


class DocumentKey:
    """A 32-byte AES-256-GCM key for the encrypted fields of one document."""

    __slots__ = ("_aead", "_secret", "doc_id", "key_id")

    def __init__(self, doc_id: str, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != KEY_SIZE:
            raise EncryptionKeyError(f"a document key is {KEY_SIZE} bytes")
        self.doc_id = check_text(doc_id)
        self._secret = secret
        self._aead = AESGCM(secret)
        self.key_id = hashlib.sha256(b"gether document key\x00" + secret).digest()[:KEY_ID_SIZE]

    @property
    def secret(self) -> bytes:
        return self._secret

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DocumentKey)
            and other.doc_id == self.doc_id
            and other._secret == self._secret
        )

    def __hash__(self) -> int:
        return hash((self.doc_id, self.key_id))

    def __repr__(self) -> str:  # never the secret
        return f"<DocumentKey {self.key_id.hex()} for {self.doc_id!r}>"


@dataclass(frozen=True, slots=True)
class Encrypted:
    """What a replica without the key reads in an encrypted field: the sealed
    bytes and where they sit (which the key also needs to open them)."""

    data: bytes
    container: ContainerId
    key: str

    @property
    def key_id(self) -> bytes:
        """The id of the document key the value is sealed under."""
        return self.data[1 : 1 + KEY_ID_SIZE]

    def __repr__(self) -> str:
        return f"<Encrypted {len(self.data)} bytes, key {self.key_id.hex()}>"


def is_sealed(value: object) -> bool:
    """Is ``value`` a well-formed sealed value (all a replica without the key
    can check)?"""
    return type(value) is bytes and len(value) >= MIN_SEALED_SIZE and value[0] == SEALED_VERSION


class KeyRing:
    """The document keys a replica holds: it seals with the newest, and opens
    a value with the key its ``key_id`` names."""

    __slots__ = ("_keys", "_newest", "nonces")

    def __init__(self, nonces: NonceSource | None) -> None:
        self._keys: dict[bytes, DocumentKey] = {}
        self._newest: DocumentKey | None = None
        self.nonces = nonces

    def add(self, key: DocumentKey) -> None:
        if not isinstance(key, DocumentKey):
            raise EncryptionKeyError(f"expected a DocumentKey, got {type(key).__name__}")
        self._keys[key.key_id] = key
        self._newest = key

    def __len__(self) -> int:
        return len(self._keys)

    def seal(self, container: ContainerId, field: str, value: Any) -> bytes:
        """The sealed bytes of a plain JSON ``value`` for ``field`` of a map."""
        key = self._newest
        if key is None:
            raise EncryptionKeyError(f"{field!r} is an encrypted field: unlock the document first")
        if self.nonces is None:
            raise EncryptionKeyError("no nonce source: pass nonces to unlock()")
        nonce = self.nonces(NONCE_SIZE)
        if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
            raise EncryptionKeyError(f"a nonce source must give {NONCE_SIZE} bytes")
        plaintext = json.dumps(
            plain_json(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        header = bytes((SEALED_VERSION,)) + key.key_id + nonce
        sealed = key._aead.encrypt(nonce, plaintext, _associated(header, key, container, field))
        return header + sealed

    def open(self, marker: Encrypted) -> Any:
        """The plain value of a sealed one, or ``DecryptionError``."""
        data = marker.data
        key = self._keys.get(marker.key_id)
        if key is None:
            raise DecryptionError(
                f"{marker.key!r} is sealed under key {marker.key_id.hex()}, "
                "which this replica does not hold"
            )
        header = data[:HEADER_SIZE]
        nonce = data[1 + KEY_ID_SIZE : HEADER_SIZE]
        try:
            plaintext = key._aead.decrypt(
                nonce, data[HEADER_SIZE:], _associated(header, key, marker.container, marker.key)
            )
        except InvalidTag:
            raise DecryptionError(
                f"{marker.key!r} does not open: altered, moved from another field, "
                "or sealed for another document"
            ) from None
        try:
            return plain_json(_DECODER.decode(plaintext.decode()))
        except (ValueError, RecursionError) as exc:  # sealed by a key holder, not by us
            raise DecryptionError(f"{marker.key!r} opens, but holds no plain JSON value") from exc

    def read(self, marker: Encrypted, strict: bool) -> Any:
        """``open``, or (not ``strict``) the marker itself where it fails."""
        if strict:
            return self.open(marker)
        try:
            return self.open(marker)
        except DecryptionError:
            return marker

    def reveal(self, value: Any, strict: bool = True) -> Any:
        """``value`` (plain JSON) with every ``Encrypted`` in it opened (or,
        not ``strict``, left as it is where it does not open)."""
        if type(value) is Encrypted:
            return self.read(value, strict)
        if type(value) is dict:
            return {k: self.reveal(v, strict) for k, v in value.items()}
        if type(value) is list:
            return [self.reveal(v, strict) for v in value]
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)
"""Strict JSON (no NaN or infinities), made once: a decoder per read costs."""


def _associated(header: bytes, key: DocumentKey, container: ContainerId, field: str) -> bytes:
    place: bytes = msgpack.packb(
        ["gether sealed field", key.doc_id, container[0], container[1], field]
    )
    return header + place


def plain_json(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON (dicts, lists, storable scalars), or InvalidValueError:
    an encrypted field holds one plain value, never a container that merges."""
    if depth > MAX_DEPTH:
        raise InvalidValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {check_key(k): plain_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v, depth + 1) for v in value]
    try:
        return check_scalar(value)
    except InvalidValueError:
        raise InvalidValueError(
            f"an encrypted field holds plain JSON, not a {type(value).__name__}"
        ) from None


# -- key files -------------------------------------------------------------------------


def encode_document_key(key: DocumentKey) -> bytes:
    """A key file's bytes (JSON: the document id and the key in base64url)."""
    secret = base64.urlsafe_b64encode(key.secret).decode()
    body = {"format": KEY_FILE_FORMAT, "version": 1, "doc": key.doc_id, "key": secret}
    return (json.dumps(body, indent=2) + "\n").encode()


def decode_document_key(data: bytes) -> DocumentKey:
    try:
        body = json.loads(data)
        if body.get("format") != KEY_FILE_FORMAT or body.get("version") != 1:
            raise EncryptionKeyError("not a gether document key file (version 1)")
        secret = base64.urlsafe_b64decode(body["key"].encode())
        return DocumentKey(body["doc"], secret)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise EncryptionKeyError(f"malformed document key file: {exc}") from exc


def key_ring(keys: Iterable[DocumentKey], nonces: NonceSource | None) -> KeyRing:
    ring = KeyRing(nonces)
    for key in keys:
        ring.add(key)
    return ring


__all__ = [
    "DocumentKey",
    "Encrypted",
    "KeyRing",
    "NonceSource",
    "decode_document_key",
    "encode_document_key",
    "is_sealed",
    "key_ring",
    "plain_json",
]
