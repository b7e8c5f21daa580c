"""Ed25519 keys: signing our events and checking other replicas' keys.

``cryptography`` verifies signatures but accepts public keys that no honest
signer produces: non-canonical encodings, points off the curve, and points of
small order, for which one forged signature verifies against every message.
``check_public_key`` refuses those before a key is ever trusted, using plain
integer arithmetic on the curve (it runs once per key, so speed is no concern).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gether.errors import InvalidKeyError

KEY_ID_SIZE = 8
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def key_id_of(public_key: bytes) -> bytes:
    """The short id an event carries instead of its author's whole key."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_SIZE]


def _decompress(encoded: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= _P:
        return None
    y2 = y * y % _P
    u = (y2 - 1) % _P
    v = (_D * y2 + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _has_small_order(x: int, y: int) -> bool:
    """Is 8·P the identity? Three doublings in projective coordinates (no
    inversions; dbl-2008-hwcd with a = -1)."""
    px, py, pz = x, y, 1
    for _ in range(3):
        a = px * px % _P
        b = py * py % _P
        c = 2 * pz * pz % _P
        e = ((px + py) * (px + py) - a - b) % _P
        g = (b - a) % _P
        f = (g - c) % _P
        h = (-a - b) % _P
        px, py, pz = e * f % _P, g * h % _P, f * g % _P
    return px == 0 and py == pz


def check_public_key(public_key: bytes) -> Ed25519PublicKey:
    """Parse a public key, refusing malformed, non-canonical and small-order ones."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKeyError("a public key is 32 bytes")
    point = _decompress(public_key)
    if point is None:
        raise InvalidKeyError("public key is not a canonical point of Ed25519")
    if _has_small_order(*point):
        raise InvalidKeyError("public key has small order")
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class SigningKey:
    """A replica's private key. Made from 32 secret bytes the caller provides."""

    __slots__ = ("_private", "key_id", "public_bytes")

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_bytes = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id_of(self.public_bytes)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id.hex()})"
