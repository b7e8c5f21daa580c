"""``gether.Document``: the core replica with defaults from the environment
(a random replica id, a fresh Ed25519 key, the wall clock)."""

from __future__ import annotations

from gether.core.document import Document as _CoreDocument
from gether.core.hlc import Clock
from gether.core.keys import SigningKey
from gether.runtime import new_replica_id, new_signing_key, wall_clock


class Document(_CoreDocument):
    """A replica of a JSON-like document that merges with any other replica."""

    def __init__(
        self,
        replica_id: str | None = None,
        *,
        key: SigningKey | None = None,
        clock: Clock | None = wall_clock,
    ) -> None:
        replica_id, key = self._identity(replica_id, key)
        super().__init__(replica_id, key, clock)

    @staticmethod
    def _default_clock() -> Clock | None:
        return wall_clock

    @classmethod
    def _identity(cls, replica_id: str | None, key: SigningKey | None) -> tuple[str, SigningKey]:
        return replica_id or new_replica_id(), key or new_signing_key()
