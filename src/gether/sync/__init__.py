"""The sans-I/O sync protocol: messages, framing and one state machine per
connection. Bytes and time go in, bytes and typed events come out; servers,
clients and peers only move the bytes (see docs/protocol.md)."""

from gether.sync.connection import (
    Limits,
    ReceivedEvents,
    Role,
    SyncConnection,
    SyncHost,
    Traffic,
)
from gether.sync.messages import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Events,
    Hello,
    Message,
    MessageKind,
    Ping,
    Pong,
    Subscribe,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "Error",
    "Events",
    "Hello",
    "Limits",
    "Message",
    "MessageKind",
    "Ping",
    "Pong",
    "ReceivedEvents",
    "Role",
    "Subscribe",
    "SyncConnection",
    "SyncHost",
    "Traffic",
]
