"""Authentication on connect, on real servers on loopback: JWTs, pre-shared
keys, hooks; and what an unauthenticated connection can and cannot do."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import gether
from gether.core.ids import Version
from gether.peer import Peer
from gether.server.auth import (
    AnyOf,
    ConnectionInfo,
    HookAuthenticator,
    JWTAuthenticator,
    OpenAuthenticator,
    PreSharedKeyAuthenticator,
    Principal,
)
from gether.server.hub import HubConfig
from gether.server.serve import GetherServer, start_server
from gether.store import open_blocking_store
from gether.sync import Error, Events, Hello, Limits, Role, Subscribe, SyncConnection
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import Message, decode, encode
from gether.testing.histories import history
from gether.testing.servers import ServerProcess

SECRET = b"s" * 32
AUDIENCE = "gether-test"
INFO = ConnectionInfo("tcp", "127.0.0.1:1")


def token(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    body = {"sub": "alice", "aud": AUDIENCE, "exp": int(time.time()) + 60, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def serve(tmp_path: Path, authenticator: Any, **limits: Any) -> GetherServer:
    return await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(limits=Limits(**limits)),
        handle_signals=False,
        authenticator=authenticator,
    )


@pytest.fixture
async def jwt_server(tmp_path: Path) -> AsyncIterator[GetherServer]:
    running = await serve(tmp_path, JWTAuthenticator(SECRET, audience=AUDIENCE))
    yield running
    await running.stop()


async def raw(url: str, data: bytes, timeout: float = 10.0) -> tuple[list[Message], float]:
    """Send ``data`` on a raw TCP connection; every message until the server
    closes, and how long that took."""
    host, port = url.removeprefix("tcp://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    received = b""
    try:  # closed even when the server resets the connection (a refusal may)
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    return [decode(p) for p in FrameReader(1 << 24).feed(received)], elapsed


# -- the authenticators ------------------------------------------------------------


async def test_jwt_accepts_a_good_token_and_names_the_principal() -> None:
    auth = JWTAuthenticator(SECRET, audience=AUDIENCE, issuer="https://id.example")
    principal = await auth.authenticate(
        token(iss="https://id.example", roles=["editor", "viewer"]), INFO
    )
    assert principal.subject == "alice"
    assert principal.roles == {"editor", "viewer"}
    assert principal.claims["iss"] == "https://id.example"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"exp": None}, "exp"),
        ({"aud": "another-service"}, "(?i)audience"),
        ({"aud": None}, "aud"),
        ({"sub": None}, "sub"),
        ({"iss": "https://evil.example"}, "(?i)issuer"),
    ],
)
async def test_jwt_claims_are_checked(claims: dict[str, Any], why: str) -> None:
    auth = JWTAuthenticator(SECRET, audience=AUDIENCE, issuer="https://id.example")
    claims = {"iss": "https://id.example", **claims}
    with pytest.raises(gether.AuthenticationError, match=why):
        await auth.authenticate(token(**claims), INFO)


async def test_jwt_with_a_wrong_key_or_no_token_is_refused() -> None:
    auth = JWTAuthenticator(SECRET, audience=AUDIENCE)
    with pytest.raises(gether.AuthenticationError, match="Signature"):
        await auth.authenticate(token(key=b"x" * 32), INFO)
    for nothing in (None, "", "not.a.jwt"):
        with pytest.raises(gether.AuthenticationError):
            await auth.authenticate(nothing, INFO)


async def test_alg_none_is_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = {"sub": "mallory", "aud": AUDIENCE, "exp": int(time.time()) + 60}
    unsigned = f"{header}.{b64(json.dumps(body).encode())}."
    for auth in (
        JWTAuthenticator(SECRET, audience=AUDIENCE),
        JWTAuthenticator(Ed25519PrivateKey.generate().public_key(), audience=AUDIENCE),
    ):
        with pytest.raises(gether.AuthenticationError, match="alg value"):
            await auth.authenticate(unsigned, INFO)


async def test_eddsa_tokens_and_no_algorithm_confusion() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    auth = JWTAuthenticator(public, audience=AUDIENCE)
    assert (await auth.authenticate(token(private, "EdDSA"), INFO)).subject == "alice"
    # an HS256 token "signed" with the public key, which attackers know, as its secret
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for secret in (raw, pem, raw.hex().encode()):
        with pytest.raises(gether.AuthenticationError, match="alg value"):
            await auth.authenticate(_hs256_by_hand(secret), INFO)
    # and an HS256 server does not take an EdDSA token either
    with pytest.raises(gether.AuthenticationError, match="alg value"):
        await JWTAuthenticator(SECRET, audience=AUDIENCE).authenticate(
            token(private, "EdDSA"), INFO
        )


def _hs256_by_hand(secret: bytes) -> str:
    """By hand: PyJWT refuses to HMAC with a PEM key; an attacker would not."""
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(
        json.dumps({"sub": "mallory", "aud": AUDIENCE, "exp": int(time.time()) + 60}).encode()
    )
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_jwt_keys_are_checked_when_configured() -> None:
    with pytest.raises(gether.UsageError, match="32 bytes"):
        JWTAuthenticator(b"short", audience=AUDIENCE)
    with pytest.raises(gether.UsageError, match="audience"):
        JWTAuthenticator(SECRET, audience="")
    small_order = bytes.fromhex("01" + "00" * 31)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    with pytest.raises(gether.InvalidKeyError):
        JWTAuthenticator(Ed25519PublicKey.from_public_bytes(small_order), audience=AUDIENCE)


async def test_pre_shared_keys() -> None:
    auth = PreSharedKeyAuthenticator.from_lines(
        ["# devices", "sensor-1:0123456789abcdef", "", "sensor-2:fedcba9876543210"]
    )
    assert (await auth.authenticate("fedcba9876543210", INFO)).subject == "sensor-2"
    for bad in ("0123456789abcdeX", "0123456789abcde", "", None):
        with pytest.raises(gether.AuthenticationError):
            await auth.authenticate(bad, INFO)
    with pytest.raises(gether.UsageError):
        PreSharedKeyAuthenticator({"weak": "1234"})


async def test_any_of_takes_the_first_that_accepts() -> None:
    auth = AnyOf(
        JWTAuthenticator(SECRET, audience=AUDIENCE),
        PreSharedKeyAuthenticator({"device": "0123456789abcdef"}),
    )
    assert (await auth.authenticate(token(), INFO)).subject == "alice"
    assert (await auth.authenticate("0123456789abcdef", INFO)).subject == "device"
    with pytest.raises(gether.AuthenticationError):
        await auth.authenticate("nope", INFO)


# -- on a server ----------------------------------------------------------------------


async def test_a_good_token_syncs_and_the_session_knows_who(
    jwt_server: GetherServer,
) -> None:
    assert jwt_server.tcp_url is not None
    for url in (jwt_server.ws_url, jwt_server.tcp_url):
        doc = gether.Document("alice-" + url[:2])
        async with gether.connect(url, "notes", doc=doc, token=token()) as session:
            doc[url[:2]] = 1
            await session.sync()
            assert not session.errors
            sessions = [
                *jwt_server.app.sessions,
                *(jwt_server.tcp.sessions if jwt_server.tcp else ()),
            ]
            assert [s.principal.subject for s in sessions if s.principal] == ["alice"]
    hosted = jwt_server.hub.loaded("notes")
    assert hosted is not None and hosted.doc.to_json() == {"ws": 1, "tc": 1}


async def test_after_admission_large_messages_flow_again(jwt_server: GetherServer) -> None:
    """The 8 KiB limit holds only until the hello is admitted (WebSocket too)."""
    doc = gether.Document("writer")
    rng = random.Random(4)
    doc.text("big").insert(0, "".join(rng.choice(string.ascii_letters) for _ in range(60_000)))
    async with gether.connect(jwt_server.ws_url, "big", doc=doc, token=token()) as session:
        await session.sync()
        assert session.traffic.bytes_sent > 3 * (8 << 10)
    hosted = jwt_server.hub.loaded("big")
    assert hosted is not None and hosted.doc.to_json() == doc.to_json()


async def test_a_bad_token_is_refused_and_not_retried(jwt_server: GetherServer) -> None:
    assert jwt_server.tcp_url is not None
    for url in (jwt_server.ws_url, jwt_server.tcp_url):
        doc = gether.Document("mallory")
        doc["x"] = "forged"
        async with gether.connect(
            url, "notes", doc=doc, token=token(exp=int(time.time()) - 5), backoff=(0.01, 0.02)
        ) as session:
            with pytest.raises(gether.AuthenticationError, match="expired"):
                await session.sync(timeout=10)
            assert session.errors[-1].code == "authentication_failed"
            await asyncio.sleep(0.2)
            assert session.connections == 1  # no redialling with credentials known to be bad
    assert jwt_server.hub.loaded("notes") is None


async def test_nothing_sent_with_a_bad_token_is_applied_or_stored(
    jwt_server: GetherServer, tmp_path: Path
) -> None:
    assert jwt_server.tcp_url is not None
    alice = gether.Document("alice")
    async with gether.connect(jwt_server.tcp_url, "d", doc=alice, token=token()) as session:
        alice["good"] = True
        await session.sync()
    stored = open_blocking_store(f"sqlite:///{tmp_path}/server.db")
    before = stored.version("d")
    events, _ = history(replica_count=1, edits=20, seed=3)
    batch = tuple((e.body, e.signature) for e in events)
    attack = b"".join(
        frame(encode(m))
        for m in (Hello("mallory", token(key=b"y" * 32)), Subscribe("d", Version()))
    ) + frame(encode(Events("d", 1, batch)))
    messages, _ = await raw(jwt_server.tcp_url, attack)
    assert [type(m) for m in messages] == [Error]  # no hello back, no subscribe answered
    assert isinstance(messages[0], Error) and messages[0].code == "authentication_failed"
    assert messages[0].doc_id is None
    hosted = jwt_server.hub.loaded("d")
    assert hosted is not None and hosted.doc.version == before
    assert stored.version("d") == before
    assert len(stored.events("d", None)) == len(alice.events_since(None))
    stored.close()


async def test_a_silent_connection_is_closed_within_the_hello_timeout(tmp_path: Path) -> None:
    running = await serve(tmp_path, OpenAuthenticator(), hello_timeout=0.5)
    try:
        assert running.tcp_url is not None
        messages, elapsed = await raw(running.tcp_url, b"")
        assert 0.4 < elapsed < 1.5
        assert isinstance(messages[-1], Error) and messages[-1].code == "authentication_failed"
        # a hello cut short does not buy more time
        messages, elapsed = await raw(running.tcp_url, frame(encode(Hello("slow")))[:6])
        assert elapsed < 1.5
    finally:
        await running.stop()


async def test_a_slow_authenticator_counts_against_the_hello_timeout(tmp_path: Path) -> None:
    async def never(credentials: str | None, peer: ConnectionInfo) -> Principal | None:
        await asyncio.sleep(60)
        return None

    running = await serve(tmp_path, HookAuthenticator(never), hello_timeout=0.5)
    try:
        assert running.tcp_url is not None
        messages, elapsed = await raw(running.tcp_url, frame(encode(Hello("x", "t"))))
        assert elapsed < 1.5
        assert [m.code for m in messages if isinstance(m, Error)] == ["authentication_failed"]
    finally:
        await running.stop()


async def test_a_huge_length_prefix_is_refused_before_any_payload(
    jwt_server: GetherServer,
) -> None:
    assert jwt_server.tcp_url is not None
    # 4 GiB announced, nothing after: a server that waited to buffer it would hang
    messages, elapsed = await raw(jwt_server.tcp_url, b"\xff\xff\xff\xff")
    assert elapsed < 1.0
    assert isinstance(messages[-1], Error) and messages[-1].code == "limit_exceeded"


async def test_frames_before_hello_are_limited_to_8_kib(jwt_server: GetherServer) -> None:
    assert Limits().max_frame_before_hello == 8 << 10
    assert Limits().hello_timeout == 5.0
    assert jwt_server.tcp_url is not None
    big = frame(encode(Hello("big", "x" * 8200)))
    assert len(big) > 8 << 10
    messages, _ = await raw(jwt_server.tcp_url, big)
    assert [m.code for m in messages if isinstance(m, Error)] == ["limit_exceeded"]
    # the same over WebSocket: the message is cut off by the WebSocket layer itself
    async with websockets.connect(jwt_server.ws_url, max_size=None) as ws:
        await ws.send(big)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # a good hello of the same route is answered
    ok = frame(encode(Hello("fine", token())))
    reader, writer = await asyncio.open_connection(*jwt_server.tcp_url[6:].split(":"))
    try:
        writer.write(ok)
        first = FrameReader(1 << 20).feed(await reader.read(65536))
    finally:
        writer.close()
    assert isinstance(decode(first[0]), Hello)


async def test_a_hook_authenticator_sees_credentials_and_transport(tmp_path: Path) -> None:
    seen: list[tuple[str | None, str]] = []

    async def introspect(credentials: str | None, peer: ConnectionInfo) -> Principal | None:
        seen.append((credentials, peer.transport))
        await asyncio.sleep(0)  # as a call to an OAuth2 introspection endpoint would
        return Principal("bob", frozenset({"editor"})) if credentials == "opaque-123" else None

    running = await serve(tmp_path, HookAuthenticator(introspect))
    try:
        doc = gether.Document("bob")
        async with gether.connect(running.ws_url, "d", doc=doc, token="opaque-123") as session:
            doc["x"] = 1
            await session.sync()
            assert [s.principal for s in running.app.sessions] == [
                Principal("bob", frozenset({"editor"}))
            ]
        async with gether.connect(running.ws_url, "d", token="wrong") as session:
            with pytest.raises(gether.AuthenticationError):
                await session.sync(timeout=10)
        assert seen == [("opaque-123", "websocket"), ("wrong", "websocket")]
    finally:
        await running.stop()


async def test_peers_authenticate_the_peers_that_dial_them(tmp_path: Path) -> None:
    auth = PreSharedKeyAuthenticator({"peer-b": "b-secret-0123456789"})
    a = await Peer(f"sqlite:///{tmp_path}/a.db", "a", authenticator=auth).start()
    b = Peer(f"sqlite:///{tmp_path}/b.db", "b", token="b-secret-0123456789")
    c = Peer(f"sqlite:///{tmp_path}/c.db", "c", token="guess-0123456789", backoff=(0.05, 0.1))
    await b.start()
    await c.start()
    try:
        doc_a, doc_b, doc_c = [await p.document("d") for p in (a, b, c)]
        doc_b["from"] = "b"
        doc_c["from_c"] = "c"
        b.link(a.tcp_url)
        c.link(a.ws_url)
        async with asyncio.timeout(20):
            while doc_a.to_json() != {"from": "b"} or doc_b.to_json() != {"from": "b"}:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert "from_c" not in doc_a.to_json()
        assert {s.principal.subject for s in a.server.app.sessions if s.principal} <= {"peer-b"}  # type: ignore[union-attr]
    finally:
        for peer in (a, b, c):
            await peer.stop()


def test_gether_serve_with_jwt_and_psk_options(tmp_path: Path) -> None:
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET + b"\n")
    psk = tmp_path / "devices.psk"
    psk.write_text("thermostat:0123456789abcdef\n")
    extra = [
        "--jwt-secret", str(secret), "--jwt-audience", AUDIENCE,
        "--psk-file", str(psk), "--hello-timeout", "2",
    ]  # fmt: skip
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", extra=extra) as server:

        async def main() -> None:
            for credentials, url in [
                (token(), server.ws_url),
                ("0123456789abcdef", server.tcp_url),
            ]:
                doc = gether.Document()
                async with gether.connect(url, "d", doc=doc, token=credentials) as session:
                    doc[doc.replica_id] = True
                    await session.sync()
            async with gether.connect(server.tcp_url, "d", token="nope") as session:
                with pytest.raises(gether.AuthenticationError):
                    await session.sync(timeout=10)
            # the silent connection is dropped after --hello-timeout
            _, elapsed = await raw(server.tcp_url, b"")
            assert 1.5 < elapsed < 4

        asyncio.run(main())
        assert server.stop() == 0
    stored = open_blocking_store(f"sqlite:///{tmp_path}/s.db")
    assert len(stored.version("d").to_dict()) == 2
    stored.close()


def test_gether_serve_refuses_half_configured_security(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gether.cli.main import main

    store = f"sqlite:///{tmp_path}/s.db"
    secret = tmp_path / "s"
    secret.write_bytes(SECRET)
    for args, why in [
        (["--jwt-secret", str(secret)], "--jwt-audience"),
        (["--jwt-audience", "x"], "--jwt-secret"),
        (["--tls-cert", str(secret)], "--tls-key"),
    ]:
        result = CliRunner().invoke(main, ["serve", "--store", store, "--port", "0", *args])
        assert result.exit_code == 1 and why in result.output, result.output


# -- the sans-I/O admission step ---------------------------------------------------------


class _Empty:
    def version(self, doc_id: str) -> Version:
        return Version()

    def events_since(self, doc_id: str, version: Version) -> list[Any]:
        return []


def _sent(conn: SyncConnection) -> list[Message]:
    return [decode(p) for p in FrameReader(1 << 24).feed(conn.data_to_send())]


def test_admission_holds_back_everything_behind_the_hello() -> None:
    behind = frame(encode(Subscribe("d", Version()))) + b"\x00\x00\x00\x00"  # then an empty frame
    data = frame(encode(Hello("c", "t"))) + behind
    denied = SyncConnection(_Empty(), "s", Role.SERVER, now=0.0, admission=True)
    denied.receive_data(data, now=0.0)
    assert denied.hello_to_admit() == Hello("c", "t")
    assert denied.peer is None and not denied.closed  # the empty frame was not even decoded
    assert _sent(denied) == [] and denied.subscriptions_requested() == []
    denied.deny(gether.AuthenticationError("no"))
    assert denied.closed and denied.subscriptions_requested() == []
    assert _sent(denied) == [Error("authentication_failed", "no")]

    admitted = SyncConnection(_Empty(), "s", Role.SERVER, now=0.0, admission=True)
    admitted.receive_data(data[: len(data) - 4], now=0.0)
    admitted.admit()
    assert admitted.peer == Hello("c", "t") and admitted.subscriptions_requested() == ["d"]
    assert isinstance(_sent(admitted)[0], Hello)

    waiting = SyncConnection(_Empty(), "s", Role.SERVER, now=0.0, admission=True)
    waiting.receive_data(data, now=0.0)
    waiting.tick(Limits().hello_timeout + 0.1)  # an authenticator that never answers
    assert waiting.closed and waiting.hello_to_admit() is None
