"""TLS on real listeners: wss:// and tls://, mutual TLS, and clients that do
not trust the server. Certificates are made by a CA created per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gether
from gether.server.auth import CertificateAuthenticator
from gether.server.serve import GetherServer, start_server
from gether.store import open_blocking_store
from gether.testing.servers import ServerProcess, free_port, wait_for_port
from gether.testing.tls import CertificateAuthority


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


async def tls_server(
    tmp_path: Path, ca: CertificateAuthority, mutual: bool = False
) -> GetherServer:
    return await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        handle_signals=False,
        tls=ca.server_tls(client_ca=mutual),
        authenticator=CertificateAuthenticator() if mutual else None,
    )


@pytest.fixture
async def server(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[GetherServer]:
    running = await tls_server(tmp_path, ca)
    yield running
    await running.stop()


@pytest.fixture
async def mutual(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[GetherServer]:
    running = await tls_server(tmp_path, ca, mutual=True)
    yield running
    await running.stop()


async def test_sync_over_wss_and_tls(server: GetherServer, ca: CertificateAuthority) -> None:
    assert server.ws_url.startswith("wss://")
    assert server.tcp_url is not None and server.tcp_url.startswith("tls://")
    docs = [gether.Document("over-wss"), gether.Document("over-tls")]
    trust = ca.client_context()
    sessions = [
        gether.connect(url, "notes", doc=doc, ssl_context=trust)
        for url, doc in zip([server.ws_url, server.tcp_url], docs, strict=True)
    ]
    for session in sessions:
        await session.__aenter__()
    try:
        docs[0].text("t").insert(0, "secret ")
        docs[1]["n"] = 1
        for _ in range(2):
            for session in sessions:
                await session.sync()
        assert docs[0].to_json() == docs[1].to_json() == {"t": "secret ", "n": 1}
    finally:
        for session in sessions:
            await session.close()


@pytest.mark.parametrize("scheme", ["wss", "tls"])
async def test_a_client_that_does_not_trust_the_ca_fails_with_a_typed_error(
    server: GetherServer, tmp_path: Path, scheme: str
) -> None:
    assert server.tcp_url is not None
    url = server.ws_url if scheme == "wss" else server.tcp_url
    other = CertificateAuthority(tmp_path / "other", "Another CA")
    for context in (None, other.client_context()):  # the system's roots; another CA
        with pytest.raises(gether.TLSError, match="certificate verify failed"):
            async with gether.connect(url, "notes", ssl_context=context):
                pass
    assert server.hub.loaded("notes") is None


async def test_plain_clients_cannot_talk_to_a_tls_listener(server: GetherServer) -> None:
    assert server.tcp_url is not None
    with pytest.raises(gether.ConnectionFailedError):
        async with gether.connect(server.ws_url.replace("wss://", "ws://"), "d"):
            pass
    plain = server.tcp_url.replace("tls://", "tcp://")
    async with gether.connect(plain, "d", backoff=(0.05, 0.1)) as session:
        with pytest.raises(TimeoutError):
            await session.sync(timeout=1)
    assert server.hub.loaded("d") is None


async def test_mutual_tls_names_the_principal_by_certificate(
    mutual: GetherServer, ca: CertificateAuthority
) -> None:
    assert mutual.tcp_url is not None
    for url, name in [(mutual.ws_url, "alice"), (mutual.tcp_url, "bob")]:
        doc = gether.Document(name)
        async with gether.connect(
            url, "d", doc=doc, ssl_context=ca.client_context(name)
        ) as session:
            doc[name] = True
            await session.sync()
            sessions = [*mutual.app.sessions, *(mutual.tcp.sessions if mutual.tcp else ())]
            principals = [s.principal for s in sessions if s.principal is not None]
            assert [p.subject for p in principals] == [name]
            assert principals[0].claims["certificate_subject"] == f"CN={name},O=Gether tests"
    hosted = mutual.hub.loaded("d")
    assert hosted is not None and hosted.doc.to_json() == {"alice": True, "bob": True}


async def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(
    mutual: GetherServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    assert mutual.tcp_url is not None
    other = CertificateAuthority(tmp_path / "other", "Another CA")
    foreign = other.client_context("mallory")
    foreign.load_verify_locations(ca.cert_path)  # trusts the server, but its cert is foreign
    for context in (ca.client_context(), foreign):
        # WebSocket: the refusal arrives during the upgrade, so the dial fails (under
        # TLS 1.3 the client reads it as the connection closing: not always a TLSError)
        with pytest.raises(gether.ConnectionFailedError):
            async with gether.connect(mutual.ws_url, "d", ssl_context=context):
                pass
        # raw TLS 1.3: the handshake looks done to the client; the server's
        # alert then ends the connection before a hello can be answered
        doc = gether.Document("mallory")
        doc["x"] = "forged"
        try:
            async with gether.connect(
                mutual.tcp_url, "d", doc=doc, ssl_context=context, backoff=(0.05, 0.1)
            ) as session:
                with pytest.raises(TimeoutError):
                    await session.sync(timeout=1)
        except gether.TLSError:
            pass  # under TLS 1.2 the dial itself fails
    assert mutual.hub.loaded("d") is None


def test_gether_serve_with_tls_options(tmp_path: Path, ca: CertificateAuthority) -> None:
    extra = [
        "--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key),
        "--tls-client-ca", str(ca.cert_path),
    ]  # fmt: skip
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", extra=extra) as server:
        assert server.ws_url.startswith("wss://") and server.tcp_url.startswith("tls://")

        async def main() -> None:
            for url in (server.ws_url, server.tcp_url):
                doc = gether.Document()
                context = ca.client_context(doc.replica_id)
                async with gether.connect(url, "d", doc=doc, ssl_context=context) as session:
                    doc[doc.replica_id] = True
                    await session.sync()
            with pytest.raises(gether.ConnectionFailedError):  # no client certificate
                async with gether.connect(server.ws_url, "d", ssl_context=ca.client_context()):
                    pass

        asyncio.run(main())
        assert server.stop() == 0
    stored = open_blocking_store(f"sqlite:///{tmp_path}/s.db")
    assert len(stored.version("d").to_dict()) == 2
    stored.close()


def _peer_process(tmp_path: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    src = str(Path(gether.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "gether", "peer", "--store", f"sqlite:///{tmp_path}/{name}.db",
               "--id", name, "--doc", "d", "--anti-entropy", "0.3", *args]  # fmt: skip
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


def test_gether_peer_dials_with_a_token_over_tls(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Peer a accepts only a pre-shared key over TLS; peer b dials it with one."""
    (tmp_path / "a.psk").write_text("peer-b:b-0123456789abcdef\n")
    (tmp_path / "b.token").write_text("b-0123456789abcdef\n")
    ports = [free_port() for _ in range(4)]
    a = _peer_process(tmp_path, "a", [
        "--port", str(ports[0]), "--tcp-port", str(ports[1]), "--psk-file", str(tmp_path / "a.psk"),
        "--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key),
    ])  # fmt: skip
    b = _peer_process(tmp_path, "b", [
        "--port", str(ports[2]), "--tcp-port", str(ports[3]),
        "--link", f"tls://127.0.0.1:{ports[1]}",
        "--token-file", str(tmp_path / "b.token"), "--tls-ca", str(ca.cert_path),
    ])  # fmt: skip
    try:
        for port in ports:
            wait_for_port(port)

        async def main() -> None:
            writer = gether.Document("writer")
            async with gether.connect(f"ws://127.0.0.1:{ports[2]}", "d", doc=writer) as session:
                writer["via"] = "b"
                await session.sync()
            reader = gether.Document("reader")
            async with gether.connect(
                f"wss://127.0.0.1:{ports[0]}",
                "d",
                doc=reader,
                token="b-0123456789abcdef",
                ssl_context=ca.client_context(),
            ) as session:
                async with asyncio.timeout(20):
                    while reader.to_json() != {"via": "b"}:
                        await session.sync()
                        await asyncio.sleep(0.1)
            async with gether.connect(
                f"wss://127.0.0.1:{ports[0]}", "d", token="wrong", ssl_context=ca.client_context()
            ) as session:
                with pytest.raises(gether.AuthenticationError):
                    await session.sync(timeout=10)

        asyncio.run(main())
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(15)
