"""What the pure core is not allowed to do itself: read the clock and draw
randomness. ``gether.Document`` takes its defaults from here."""

from __future__ import annotations

import secrets
import time

from gether.core.keys import SigningKey


def wall_clock() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def new_replica_id() -> str:
    return secrets.token_hex(8)


def new_signing_key() -> SigningKey:
    return SigningKey(new_seed())


def new_seed() -> bytes:
    """32 random bytes: the seed of an Ed25519 key."""
    return secrets.token_bytes(32)
