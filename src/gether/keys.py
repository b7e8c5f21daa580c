"""Identities on disk: Ed25519 key pairs in PEM files (``gether keys new``).

A replica signs its events with the private key
(``gether.Document(replica_id, key=load_private_key(path))``); servers verify
JWTs with a public key. Files are PKCS#8 and SubjectPublicKeyInfo PEM, so
``openssl`` and other implementations read them too. This module is an edge
(it touches the file system), like ``gether.runtime``; the checks on a key's
bytes are the pure ``gether.core.keys``.

Document keys (``new_document_key``) are the other kind: a 32-byte AES-256-GCM
secret that seals a document's ``x-encrypt`` fields (``core/sealed.py``),
shared out of band with the replicas that may read them, as a key file
(mode 0600) that ``load_document_key`` reads, or wrapped for one recipient's
X25519 public key (``wrap_document_key``), so that it can travel in the open.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gether.core.keys import SigningKey, check_public_key, key_id_of
from gether.core.sealed import (
    KEY_SIZE,
    DocumentKey,
    decode_document_key,
    encode_document_key,
)
from gether.errors import DecryptionError, EncryptionKeyError, InvalidKeyError, UsageError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """Where ``new_key_pair`` wrote a pair, and the key id events will carry."""

    private: Path
    public: Path
    key_id: str


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite; the mode is set at creation, so the secret is
    # never readable by others, not even between a create and a chmod
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise UsageError(f"{path} exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def new_key_pair(name: str, directory: str | Path = ".") -> KeyFiles:
    """Create ``DIR/NAME.key`` (private, mode 0600) and ``DIR/NAME.pub``."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"a key name is 1 to 64 of A-Z a-z 0-9 _ . - (got {name!r})")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    private_path = folder / (name + PRIVATE_SUFFIX)
    public_path = folder / (name + PUBLIC_SUFFIX)
    if public_path.exists():
        raise UsageError(f"{public_path} exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    _write_new(
        private_path,
        private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        0o600,
    )
    try:
        _write_new(
            public_path, public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), 0o644
        )
    except BaseException:
        private_path.unlink()  # no half pair left behind
        raise
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyFiles(private_path, public_path, key_id_of(raw).hex())


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc}") from exc


def load_private_key(path: str | Path) -> SigningKey:
    """The signing key in a PEM (PKCS#8) file, for ``Document(key=...)``."""
    try:
        private = load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise InvalidKeyError(f"{path} is not an Ed25519 key")
    key = SigningKey(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    check_public_key(key.public_bytes)  # a generated key always passes; a crafted file might not
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The public key in a PEM file, refusing malformed and small-order points
    (which ``cryptography`` itself accepts)."""
    try:
        public = load_pem_public_key(_read(path))
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"{path} is not a PEM public key") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise InvalidKeyError(f"{path} is not an Ed25519 key")
    return check_public_key(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def new_document_key(doc_id: str, path: str | Path | None = None) -> DocumentKey:
    """A fresh random key for the encrypted fields of ``doc_id``; written to
    ``path`` (mode 0600, never over an existing file) when one is given."""
    key = DocumentKey(doc_id, os.urandom(KEY_SIZE))
    if path is not None:
        _write_new(Path(path), encode_document_key(key), 0o600)
    return key


def load_document_key(path: str | Path) -> DocumentKey:
    """The document key in a key file made by ``new_document_key``."""
    return decode_document_key(_read(path))


WRAP_MAGIC = b"GTk\x01"
_WRAP_HEADER = len(WRAP_MAGIC) + 32 + 12


def wrap_document_key(key: DocumentKey, recipient: X25519PublicKey) -> bytes:
    """``key`` sealed for the holder of ``recipient``'s private key alone
    (ECIES: an ephemeral X25519 key, HKDF-SHA256, AES-256-GCM)."""
    ephemeral = X25519PrivateKey.generate()
    sender = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    nonce = os.urandom(12)
    header = WRAP_MAGIC + sender + nonce
    wrapping = _wrapping_key(ephemeral.exchange(recipient), sender, recipient)
    return header + wrapping.encrypt(nonce, encode_document_key(key), header)


def unwrap_document_key(data: bytes, private: X25519PrivateKey) -> DocumentKey:
    """The document key ``wrap_document_key`` sealed for ``private``'s public key;
    ``DecryptionError`` if it was sealed for another key or altered."""
    if len(data) <= _WRAP_HEADER or not data.startswith(WRAP_MAGIC):
        raise EncryptionKeyError("not a wrapped gether document key")
    sender = data[len(WRAP_MAGIC) : len(WRAP_MAGIC) + 32]
    nonce = data[len(WRAP_MAGIC) + 32 : _WRAP_HEADER]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(sender))
        wrapping = _wrapping_key(shared, sender, private.public_key())
        plain = wrapping.decrypt(nonce, data[_WRAP_HEADER:], data[:_WRAP_HEADER])
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("the document key was wrapped for another key, or altered") from exc
    return decode_document_key(plain)


def _wrapping_key(shared: bytes, sender: bytes, recipient: X25519PublicKey) -> AESGCM:
    receiver = recipient.public_bytes(Encoding.Raw, PublicFormat.Raw)
    info = b"gether document key wrap" + sender + receiver
    return AESGCM(HKDF(SHA256(), 32, salt=None, info=info).derive(shared))


__all__ = [
    "DocumentKey",
    "KeyFiles",
    "SigningKey",
    "load_document_key",
    "load_private_key",
    "load_public_key",
    "new_document_key",
    "new_key_pair",
    "unwrap_document_key",
    "wrap_document_key",
]
