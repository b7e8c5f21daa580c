"""The hostile input battery: one named case per attack (issue "Security").

Each case says what to send and which error codes may answer it; the runner
(tests/test_hostile.py) sends it to a server and to a peer and checks that
nothing changed, nothing was acknowledged, and an honest client still syncs.

A case is either ``raw`` (bytes sent as the first thing on a connection,
before any hello) or ``build`` (frames sent once the connection is
introduced and subscribed to the document, made from a ``Scene``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gether
from gether.core.event import Event
from gether.core.ids import ROOT
from gether.core.keys import SigningKey
from gether.sync.framing import frame
from gether.sync.messages import Hello, Ping, encode

from . import forge, wire

MiB = 1 << 20
SILENT_CONNECTIONS = 1_000
MALLORY = "mallory"
"""The attacker's replica: a writer at ``/todos`` only."""
SCHEMA = {
    "type": "object",
    "properties": {
        "todos": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
"""The schema of the case documents on a replica that checks schemas (the peer)."""


@dataclass
class Scene:
    """The attacker's view once introduced and subscribed: ``mallory`` holds
    every event the target holds (one of them its own, stored there)."""

    target: wire.Target
    mallory: gether.Document
    key: SigningKey
    first: Event
    """Mallory's event the target already stored."""

    def next_event(self, value: object = 1, key: str = "x") -> Event:
        """Mallory's next, legitimate, write at /todos (not sent)."""
        self.mallory.map("todos")[key] = value
        return self.mallory.events_since(self.target.version)[-1]


@dataclass(frozen=True)
class Attack:
    frames: Iterable[bytes]
    """Sent in order; may be lazy (the receiver may close long before the end)."""


@dataclass(frozen=True)
class Case:
    name: str
    codes: tuple[str, ...]
    """The error codes that may answer (the first is the usual one);
    empty: the input is accepted (and must change nothing)."""
    enforced: str
    """Where it is refused (docs/architecture.md, "Hostile input")."""
    raw: bytes | None = None
    build: Callable[[Scene], Attack] | None = None
    targets: frozenset[str] = frozenset({"server", "peer"})
    transports: frozenset[str] = frozenset({"tcp", "ws"})
    notes: str = ""
    eof: bool = False
    """Half-close the connection after sending (TCP only)."""
    closes_with: str | None = None
    """The code of the fatal error that ends the attack, after the others."""


def _events(scene: Scene, *events: Event, **how: object) -> Attack:
    return Attack([scene.target.events(events, **how)])  # type: ignore[arg-type]


def _forged_signature(scene: Scene) -> Attack:
    event = scene.next_event()
    forged = forge.remake(event, None)
    signature = bytearray(event.signature or bytes(64))
    signature[-1] ^= 1
    forged.signature = bytes(signature)
    return _events(scene, forged)


def _wrong_hash(scene: Scene) -> Attack:
    event = scene.next_event()
    parents = tuple((parent, bytes(32)) for parent, _ in event.parents)
    return _events(scene, forge.remake(event, scene.key, parents=parents), with_hashes=True)


def _small_order(scene: Scene) -> Attack:
    return _events(scene, forge.small_order_event(scene.next_event()))


def _replay(scene: Scene) -> Attack:
    return _events(scene, scene.first)


def _equivocation(scene: Scene) -> Attack:
    ((kind, container, key, value, pred),) = scene.first.ops
    twin = forge.remake(scene.first, scene.key, ops=((kind, container, key, value + 1, pred),))
    return _events(scene, twin)


def _forbidden_path(scene: Scene) -> Attack:
    event = scene.next_event()
    ((kind, _, _, value, pred),) = event.ops
    return _events(
        scene, forge.remake(event, scene.key, ops=((kind, ROOT, "secret", value, pred),))
    )


def _schema_violation(scene: Scene) -> Attack:
    return _events(scene, scene.next_event("not an integer"))


def _value(value: object) -> Callable[[Scene], Attack]:
    def build(scene: Scene) -> Attack:
        return _events(scene, forge.with_value(scene.next_event(), scene.key, value))

    return build


def _spliced(raw: bytes) -> Callable[[Scene], Attack]:
    def build(scene: Scene) -> Attack:
        event, _ = forge.spliced(scene.next_event(forge.PLACEHOLDER), scene.key, raw)
        return _events(scene, event, splice=raw)

    return build


def _string_100_mib(scene: Scene) -> Attack:
    event = scene.next_event(forge.PLACEHOLDER)
    return Attack([wire.deflated_events(scene.target, event, b"a", 100 * MiB)])


def _many_parents(scene: Scene) -> Attack:
    event = scene.next_event()
    wide = forge.remake(event, scene.key, parents=event.parents + forge.ghost_parents(100_000))
    return _events(scene, wide, with_hashes=True)


_CHAIN: list[Event] = []


def _deep_chain(scene: Scene) -> Attack:
    if not _CHAIN:  # built once: it does not depend on the target
        _CHAIN.extend(forge.orphan_chain(100_000))
    return Attack(scene.target.batches(_CHAIN, 5_000))


def _orphan_flood(scene: Scene) -> Attack:
    return Attack(scene.target.batches(forge.orphan_flood(12_000), 1_000))


def _frames(*frames: bytes) -> Callable[[Scene], Attack]:
    return lambda scene: Attack(frames)


_GARBAGE = frame(b"\xc1" + bytes(range(256)) * 4)
"""A frame of a plausible size whose payload is not msgpack (0xc1 is never used)."""
_HELLO = wire.hello()

CASES: tuple[Case, ...] = (
    Case("garbage_bytes", ("decode",), "sync/messages.py decode", raw=_GARBAGE),
    Case(
        "garbage_after_hello",
        ("decode",),
        "sync/messages.py decode",
        build=_frames(_GARBAGE),
    ),
    Case(
        "truncated_frame",
        ("decode",),
        "SyncConnection.receive_eof",
        raw=_HELLO[:-3],
        eof=True,
        transports=frozenset({"tcp"}),
        notes="a stream that ends inside a frame; over WebSocket the client's close "
        "leaves nothing to answer on, so TCP only",
    ),
    Case(
        "truncated_message",
        ("decode",),
        "sync/messages.py decode",
        build=_frames(frame(encode(Ping(7))[:-1] + b"\xcd")),
    ),
    Case(
        "frame_over_limit",
        ("limit_exceeded",),
        "sync/framing.py FrameReader (on the header)",
        build=_frames(((16 << 20) + 1).to_bytes(4, "big") + b"\x00" * 1024),
    ),
    Case(
        "frame_over_limit_before_hello",
        ("limit_exceeded",),
        "sync/framing.py FrameReader (8 KiB before the hello)",
        raw=(8193).to_bytes(4, "big") + b"\x00" * 1024,
    ),
    Case(
        "unknown_message_kind",
        ("decode",),
        "sync/messages.py decode",
        build=_frames(wire.payload([99, "x"])),
    ),
    Case(
        "wrong_protocol_version",
        ("unsupported_version",),
        "sync/messages.py decode (Hello)",
        raw=frame(encode(Hello("old", None, 99))),
    ),
    Case(
        "wrong_hash",
        ("hash_mismatch",),
        "core EventLog (parent hashes)",
        build=_wrong_hash,
    ),
    Case(
        "forged_signature",
        ("bad_signature",),
        "core EventLog.authenticate",
        build=_forged_signature,
    ),
    Case(
        "small_order_key_signature",
        ("invalid_key",),
        "core/keys.py check_public_key",
        build=_small_order,
    ),
    Case(
        "replayed_event",
        (),
        "core Document.apply_events (a duplicate is a no-op)",
        build=_replay,
    ),
    Case(
        "equivocation",
        ("equivocation",),
        "core EventLog (one (replica, seq), two hashes)",
        build=_equivocation,
    ),
    Case(
        "forbidden_path",
        ("access_rejected",),
        "core/access.py AccessGuard.check_event",
        build=_forbidden_path,
    ),
    Case(
        "schema_violation",
        ("schema_rejected",),
        "core/validation.py SchemaGuard",
        build=_schema_violation,
        targets=frozenset({"peer"}),
        notes="a server holds no application schema (it never needs the application's "
        "code): replicas that have the schema reject the event",
    ),
    Case(
        "nested_1000_deep",
        ("invalid_event", "decode"),
        "core DocState.check (v1: values are scalars); sync/batch.py (v2: depth)",
        build=_spliced(b"\x91" * 1000 + b"\x01"),
    ),
    Case(
        "string_100_mib",
        ("limit_exceeded",),
        "sync/messages.py _inflate (16 MiB)",
        build=_string_100_mib,
    ),
    Case(
        "lone_surrogate",
        ("decode",),
        "msgpack strict UTF-8 (core/event.py unpack, sync/batch.py)",
        build=_spliced(b"\xa3\xed\xa0\x80"),
    ),
    Case("nan", ("invalid_event",), "core/values.py check_scalar", build=_value(float("nan"))),
    Case("infinity", ("invalid_event",), "core/values.py check_scalar", build=_value(float("inf"))),
    Case(
        "negative_infinity",
        ("invalid_event",),
        "core/values.py check_scalar",
        build=_value(float("-inf")),
    ),
    Case("int_2_63", ("invalid_event",), "core/values.py check_int", build=_value(2**63)),
    Case(
        "int_2_64_minus_1", ("invalid_event",), "core/values.py check_int", build=_value(2**64 - 1)
    ),
    Case(
        "parents_100000",
        ("limit_exceeded",),
        "core/event.py decode_body (MAX_PARENTS)",
        build=_many_parents,
    ),
    Case(
        "parent_chain_100000_deep",
        ("events_pending",),
        "server/hub.py: not acknowledged (events_pending), then parked events "
        "over Limits.max_parked_events",
        closes_with="limit_exceeded",
        build=_deep_chain,
    ),
    Case(
        "orphan_flood",
        ("events_pending",),
        "server/hub.py: not acknowledged (events_pending), then parked events "
        "over Limits.max_parked_events",
        closes_with="limit_exceeded",
        build=_orphan_flood,
    ),
    Case(
        "silent_connections",
        ("authentication_failed",),
        "server/session.py hello timeout (Limits.hello_timeout)",
        notes=f"{SILENT_CONNECTIONS} connections that never say hello",
    ),
)

BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES)

__all__ = ["BY_NAME", "CASES", "MALLORY", "SCHEMA", "SILENT_CONNECTIONS", "Attack", "Case", "Scene"]
