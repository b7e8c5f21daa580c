"""The bytes of an attack: frames of either protocol version, built for one
target (the document, the number the server gave it, what it holds)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import msgpack

from gether.core.event import Event
from gether.core.ids import Version
from gether.sync.batch import encode_batch
from gether.sync.framing import frame
from gether.sync.messages import Events, EventsV2, Hello, Subscribe, encode

from .forge import PLACEHOLDER_PACKED

EventId = tuple[str, int]


@dataclass
class Target:
    """What a case needs to know of the receiver, as the handshake left it."""

    doc_id: str
    protocol: int
    number: int | None
    """The document's number (protocol 2), from the receiver's Subscribe."""
    held: Callable[[EventId], Event | None]
    """Events the receiver holds (an honest replica's copy of them)."""
    version: Version

    def holds(self, event_id: EventId) -> bool:
        return self.held(event_id) is not None

    def events(
        self,
        events: Iterable[Event],
        *,
        with_hashes: bool = False,
        splice: bytes | None = None,
        batch: int = 1,
    ) -> bytes:
        """One ``Events`` frame. ``with_hashes``: every parent named with its
        hash (v2 leaves out those the receiver holds, and fills them in from
        its own copy). ``splice``: msgpack bytes replacing the placeholder
        value in what is sent (see ``forge.spliced``)."""
        batch_events = list(events)
        if self.protocol == 1:
            return frame(encode(Events(self.doc_id, batch, _v1(batch_events, splice))))
        assert self.number is not None
        holds = (lambda _: False) if with_hashes else self.holds
        records = encode_batch(batch_events, self.held, holds)
        if splice is not None:
            records = records.replace(PLACEHOLDER_PACKED, splice)
        return frame(encode(EventsV2(self.number, records), 4096, 2))

    def batches(self, events: Iterable[Event], size: int) -> Iterator[bytes]:
        """``events`` in frames of ``size``, encoded lazily (the receiver may
        close long before the last)."""
        chunk: list[Event] = []
        sent: dict[EventId, Event] = {}
        number = 1
        for event in events:
            chunk.append(event)
            if len(chunk) == size:
                yield self._chunk(chunk, sent, number)
                chunk, number = [], number + 1
        if chunk:
            yield self._chunk(chunk, sent, number)

    def _chunk(self, chunk: list[Event], sent: dict[EventId, Event], number: int) -> bytes:
        if self.protocol == 1:
            return frame(encode(Events(self.doc_id, number, _v1(chunk, None))))
        assert self.number is not None
        lookup = lambda i: sent.get(i) or self.held(i)  # noqa: E731
        records = encode_batch(chunk, lookup, lambda i: i in sent or self.holds(i))
        sent.update((e.id, e) for e in chunk)
        return frame(encode(EventsV2(self.number, records), 4096, 2))


def _v1(events: list[Event], splice: bytes | None) -> tuple[tuple[bytes, bytes | None], ...]:
    out = []
    for event in events:
        body = event.body
        if splice is not None:
            body = body.replace(PLACEHOLDER_PACKED, splice)
        out.append((body, event.signature))
    return tuple(out)


def hello(peer_id: str = "mallory-conn", versions: tuple[int, ...] = (1, 2)) -> bytes:
    if len(versions) == 1:
        return frame(encode(Hello(peer_id, None, versions[0])))
    return frame(encode(Hello(peer_id, None, max(versions), versions)))


def subscribe(doc_id: str, version: Version) -> bytes:
    return frame(encode(Subscribe(doc_id, version, None, False)))


def payload(fields: list[object]) -> bytes:
    """A frame of any msgpack array (for kinds and shapes we never send)."""
    return frame(msgpack.packb(fields, use_bin_type=True))


def deflated_events(target: Target, event: Event, filler: bytes, size: int) -> bytes:
    """An ``Events`` frame whose one event, once inflated, carries a string of
    ``size`` bytes (a whole number of MiB) of ``filler`` where its placeholder
    value was: compressed
    as it is generated, so neither side of the test holds it whole."""
    header = b"\xdb" + size.to_bytes(4, "big")  # msgpack str 32
    if target.protocol == 1:
        body_head, body_tail = event.body.split(PLACEHOLDER_PACKED)
        body_size = len(body_head) + len(header) + size + len(body_tail)
        head = b"\x91\x92" + b"\xc6" + body_size.to_bytes(4, "big") + body_head + header
        tail = body_tail + b"\xc0"  # no signature: the size alone must stop it
    else:
        records = encode_batch([event], target.held, target.holds)
        records_head, tail = records.split(PLACEHOLDER_PACKED)
        head = records_head + header
    squeeze = zlib.compressobj(1)  # fast: the filler compresses well at any level
    chunk = filler * ((1 << 20) // len(filler))
    parts = [squeeze.compress(head)]
    parts += (squeeze.compress(chunk) for _ in range(size // len(chunk)))
    parts.append(squeeze.compress(tail) + squeeze.flush())
    deflated = b"".join(parts)
    if target.protocol == 1:
        return frame(msgpack.packb([3, target.doc_id, 1, 1, deflated], use_bin_type=True))
    assert target.number is not None
    head_v2: bytes = msgpack.packb([3, target.number]) + msgpack.packb(deflated, use_bin_type=True)
    return frame(head_v2)
