"""Authorization on a real server on loopback: server roles from JWT claims,
connections bound to keys, authors bound to connections on unsigned documents,
and the audit trail ``gether log`` shows."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import gether
from gether.cli.main import main
from gether.client import ClientSession
from gether.core.access import ROLES, Policy, pointer
from gether.core.ids import Version
from gether.core.keys import SigningKey
from gether.server.auth import JWTAuthenticator, Principal
from gether.server.authz import Authorization, Rights, keys_claimed, parse_grant
from gether.server.hub import HubConfig
from gether.server.serve import GetherServer, start_server
from gether.store import open_blocking_store
from gether.sync import Error, Hello, Subscribe
from gether.sync.framing import FrameReader, frame
from gether.sync.messages import decode, encode
from gether.testing.servers import ServerProcess

SECRET = b"z" * 32
AUDIENCE = "gether-authz"
ALICE = SigningKey(b"a" * 32)
BOB = SigningKey(b"b" * 32)


def token(sub: str, roles: list[str] | None = None, keys: list[SigningKey] | None = None) -> str:
    claims: dict[str, Any] = {"sub": sub, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    if roles is not None:
        claims["roles"] = roles
    if keys is not None:
        claims["keys"] = [k.key_id.hex() for k in keys]
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def serve(tmp_path: Path, **config: Any) -> GetherServer:
    return await start_server(
        f"sqlite:///{tmp_path}/server.db",
        port=0,
        tcp_port=0,
        config=HubConfig(**config),
        handle_signals=False,
        authenticator=JWTAuthenticator(SECRET, audience=AUDIENCE),
    )


async def error_of(session: ClientSession, timeout: float = 5.0) -> Error:
    """The first document-level error the server sent this client."""
    async with asyncio.timeout(timeout):
        while not session.errors:
            await asyncio.sleep(0.02)
    return session.errors[0]


def stored_count(tmp_path: Path, doc_id: str) -> int:
    store = open_blocking_store(f"sqlite:///{tmp_path}/server.db")
    try:
        return store.count(doc_id)
    finally:
        store.close()


def log_rows(tmp_path: Path, doc_id: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["log", f"sqlite:///{tmp_path}/server.db", doc_id, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_server_roles_parse() -> None:
    assert parse_grant("reader") is not None and parse_grant("reader").path == ()  # type: ignore[union-attr]
    grant = parse_grant("writer:/todos@team-*")
    assert grant is not None and grant.path == ("todos",) and grant.documents == "team-*"
    assert grant.covers("team-a") and not grant.covers("other")
    assert parse_grant("superuser") is None and parse_grant("writer:todos") is None
    relay = parse_grant("relay")
    assert relay is not None and relay.relay


def test_keys_claims() -> None:
    a, b = ALICE.key_id.hex(), BOB.key_id.hex()
    assert keys_claimed({}) is None
    assert keys_claimed({"keys": [a, b.upper()]}) == {a, b}
    assert keys_claimed({"keys": f"{a} {b}"}) == {a, b}
    # what is not a key id binds nothing: never an error, never a wildcard
    assert keys_claimed({"keys": ["*", "zz" * 8, a + "00", 7]}) == frozenset()
    assert keys_claimed({"keys": {"a": 1}}) == frozenset()


PATHS = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map(tuple)


@given(
    grants=st.lists(st.tuples(st.sampled_from(sorted(ROLES)), PATHS), max_size=5),
    path=PATHS,
)
def test_server_roles_rank_paths_as_the_document_policy_does(
    grants: list[tuple[str, tuple[str, ...]]], path: tuple[str, ...]
) -> None:
    roles = frozenset(f"{role}:{pointer(scope)}" for role, scope in grants)
    rights = Rights(Principal("p", roles), Authorization())
    policy = Policy({"k": [(scope, ROLES[role]) for role, scope in grants]})
    assert rights._rank("doc", path) == policy.rank("k", path)
    assert rights._rank("doc", (*path, None)) == policy.rank("k", (*path, None))


# -- reading ----------------------------------------------------------------------------


async def test_without_a_read_role_a_client_cannot_subscribe(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization())
    try:
        assert running.tcp_url is not None
        seed = gether.Document("seed", key=ALICE)
        seed["secret"] = "the plans"
        async with gether.connect(
            running.ws_url, "notes", doc=seed, token=token("alice", ["admin"], [ALICE])
        ) as session:
            await session.sync()
        for url in (running.ws_url, running.tcp_url):
            for roles in ([], ["writer@other-*"], ["reader:/public"]):
                doc = gether.Document("eve")
                async with gether.connect(
                    url, "notes", doc=doc, token=token("eve", roles)
                ) as session:
                    error = await error_of(session)
                    assert error.code == "forbidden" and error.doc_id == "notes"
                    if roles == ["reader:/public"]:
                        assert "sent whole" in error.message
                    await asyncio.sleep(0.1)
                    assert doc.to_json() == {}  # nothing of the document was sent
        # a reader role for this document lets it in
        doc = gether.Document("reader")
        async with gether.connect(
            running.ws_url, "notes", doc=doc, token=token("rita", ["reader@notes"])
        ) as session:
            await session.sync()
            assert not session.errors and doc.to_json() == {"secret": "the plans"}
    finally:
        await running.stop()


async def test_a_refused_subscription_on_the_wire(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization())
    try:
        assert running.tcp_url is not None
        host, port = running.tcp_url.removeprefix("tcp://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            frame(encode(Hello("eve", token("eve", ["reader@public-*"]))))
            + frame(encode(Subscribe("notes", Version())))
        )
        frames = FrameReader(1 << 24)
        messages: list[Any] = []
        async with asyncio.timeout(5):
            while not any(isinstance(m, Error) for m in messages):
                messages += [decode(p) for p in frames.feed(await reader.read(65536))]
        writer.close()
        errors = [m for m in messages if isinstance(m, Error)]
        assert [(e.code, e.doc_id) for e in errors] == [("forbidden", "notes")]
    finally:
        await running.stop()


async def test_the_documents_policy_decides_what_bound_keys_may_read(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization())
    try:
        admin = gether.Document("alice", key=ALICE)
        admin.access.grant(ALICE.key_id, "admin")
        admin["x"] = 1
        alice_token = token("alice", ["admin"], [ALICE])
        async with gether.connect(running.ws_url, "d", doc=admin, token=alice_token) as session:
            await session.sync()
            bob = gether.Document("bob", key=BOB)
            bob_token = token("bob", ["writer"], [BOB])
            async with gether.connect(running.ws_url, "d", doc=bob, token=bob_token) as refused:
                error = await error_of(refused)
                assert error.code == "forbidden" and "policy" in error.message
            admin.access.grant(BOB.key_id, "reader")
            await session.sync()
            bob = gether.Document("bob2", key=BOB)
            async with gether.connect(running.ws_url, "d", doc=bob, token=bob_token) as admitted:
                await admitted.sync()
                assert bob["x"] == 1
                assert not admitted.errors
    finally:
        await running.stop()


async def test_a_reader_whose_key_loses_its_role_is_cut_off(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization())
    try:
        admin = gether.Document("alice", key=ALICE)
        admin.access.grant(ALICE.key_id, "admin")
        admin.access.grant(BOB.key_id, "reader")
        admin["news"] = 1
        alice_token = token("alice", ["admin"], [ALICE])
        bob_token = token("bob", ["reader"], [BOB])
        async with gether.connect(running.ws_url, "d", doc=admin, token=alice_token) as session:
            await session.sync()
            bob = gether.Document("bob", key=BOB)
            async with gether.connect(
                running.ws_url, "d", doc=bob, token=bob_token, backoff=(0.05, 0.1)
            ) as reader:
                await reader.sync()
                assert bob["news"] == 1
                admin.access.revoke(BOB.key_id)
                await session.sync()
                error = await error_of(reader)
                assert error.code == "forbidden"
                admin["news"] = 2
                await session.sync()
                await asyncio.sleep(0.5)  # it redials, and is refused
                assert bob["news"] == 1
                assert [e.code for e in reader.errors if e.code != "forbidden"] == []
                assert len(reader.errors) >= 2
    finally:
        await running.stop()


# -- writing ----------------------------------------------------------------------------


@pytest.mark.parametrize("versions", [(1, 2), (1,)], ids=["v2", "v1"])
async def test_a_client_bound_to_key_a_cannot_push_events_signed_by_key_b(
    tmp_path: Path, versions: tuple[int, ...]
) -> None:
    running = await serve(tmp_path, authorization=Authorization(), versions=versions)
    try:
        assert running.tcp_url is not None
        for url in (running.ws_url, running.tcp_url):
            doc_id = f"notes-{url[:2]}"
            mallory = gether.Document("mallory", key=BOB)
            mallory["forged"] = True
            bound_to_alice = token("alice", ["writer"], [ALICE])
            async with gether.connect(url, doc_id, doc=mallory, token=bound_to_alice) as session:
                error = await error_of(session)
                assert error.code == "author_not_bound"
            hosted = running.hub.loaded(doc_id)
            assert hosted is not None and hosted.doc.version == Version()
            assert stored_count(tmp_path, doc_id) == 0
            alice = gether.Document("alice", key=ALICE)
            alice["mine"] = True
            async with gether.connect(url, doc_id, doc=alice, token=bound_to_alice) as session:
                await session.sync()
                assert not session.errors
            assert stored_count(tmp_path, doc_id) == 1
    finally:
        await running.stop()
    rows = log_rows(tmp_path, "notes-ws")
    assert [(r["subject"], r["key_id"], r["verdict"], r["code"]) for r in rows] == [
        ("alice", BOB.key_id.hex(), "rejected", "author_not_bound"),
        ("alice", ALICE.key_id.hex(), "accepted", None),
    ]
    assert rows[0]["what"] == "set /forged" and rows[1]["what"] == "set /mine"


async def test_path_scoped_server_roles(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization(bind_keys=False))
    try:
        owner = gether.Document("owner")
        owner.list("todos").append({"text": "milk"})
        owner["title"] = "Groceries"
        async with gether.connect(
            running.ws_url, "shop", doc=owner, token=token("olga", ["admin"])
        ) as session:
            await session.sync()
        helper = gether.Document("helper")
        helper_token = token("hans", ["reader", "writer:/todos"])
        async with gether.connect(
            running.ws_url, "shop", doc=helper, token=helper_token
        ) as session:
            await session.sync()
            helper.list("todos")[0]["done"] = True
            await session.sync()
            assert not session.errors
            helper["title"] = "Mine now"
            error = await error_of(session)
            assert error.code == "forbidden" and "writer on /title" in error.message
        hosted = running.hub.loaded("shop")
        assert hosted is not None
        assert hosted.doc.to_json() == {
            "todos": [{"text": "milk", "done": True}],
            "title": "Groceries",
        }
    finally:
        await running.stop()


# -- unsigned documents -----------------------------------------------------------------


async def test_on_an_unsigned_document_a_connection_cannot_author_as_another(
    tmp_path: Path,
) -> None:
    running = await serve(tmp_path, unsigned=("open-*",))
    try:
        alice = gether.Document("alice", key=ALICE, signed=False)
        alice["by"] = "alice"
        async with gether.connect(
            running.ws_url, "open-notes", doc=alice, token=token("alice")
        ) as session:
            await session.sync()
        # bob claims alice's key: nothing checks a signature here, the server binds authors
        impostor = gether.Document("impostor", key=ALICE, signed=False)
        impostor["by"] = "bob pretending"
        async with gether.connect(
            running.ws_url, "open-notes", doc=impostor, token=token("bob")
        ) as session:
            error = await error_of(session)
            assert error.code == "author_not_bound"
        # with his own key bob writes as himself
        bob = gether.Document("bob", key=BOB, signed=False)
        async with gether.connect(
            running.ws_url, "open-notes", doc=bob, token=token("bob")
        ) as session:
            await session.sync()
            bob["by"] = "bob"
            await session.sync()
            assert not session.errors
        # credentials naming keys bind them on unsigned documents, whatever came first
        named = gether.Document("named", key=ALICE, signed=False)
        named["x"] = 1
        async with gether.connect(
            running.ws_url, "open-other", doc=named, token=token("carol", keys=[BOB])
        ) as session:
            assert (await error_of(session)).code == "author_not_bound"
    finally:
        await running.stop()
    # the binding outlives a restart: it is read back from the audit trail
    again = await serve(tmp_path, unsigned=("open-*",))
    try:
        impostor = gether.Document("impostor2", key=ALICE, signed=False)
        impostor["by"] = "bob again"
        async with gether.connect(
            again.ws_url, "open-notes", doc=impostor, token=token("bob")
        ) as session:
            assert (await error_of(session)).code == "author_not_bound"
        hosted = again.hub.loaded("open-notes")
        assert hosted is not None and hosted.doc["by"] == "bob"
    finally:
        await again.stop()
    rows = log_rows(tmp_path, "open-notes")
    seen = [(r["subject"], r["verdict"], r["code"], r["what"]) for r in rows]
    assert seen == [
        ("alice", "accepted", None, "set /by"),
        ("bob", "rejected", "author_not_bound", "set /by"),
        ("bob", "accepted", None, "set /by"),
        ("bob", "rejected", "author_not_bound", "set /by"),
    ]


async def test_gether_log_as_a_table(tmp_path: Path) -> None:
    running = await serve(tmp_path, authorization=Authorization())
    try:
        alice = gether.Document("alice", key=ALICE)
        alice.text("body").insert(0, "hello")
        async with gether.connect(
            running.ws_url, "t", doc=alice, token=token("alice", ["writer"], [ALICE])
        ) as session:
            await session.sync()
        mallory = gether.Document("mallory", key=BOB)
        mallory["x"] = 1
        async with gether.connect(
            running.ws_url, "t", doc=mallory, token=token("mallory", ["reader"], [BOB])
        ) as session:
            assert (await error_of(session)).code == "forbidden"  # a reader writes nothing
    finally:
        await running.stop()
    out = (
        CliRunner()
        .invoke(main, ["log", f"sqlite:///{tmp_path}/server.db", "t"], env={"COLUMNS": "250"})
        .output
    )
    assert "2 event(s), 1 refused or waiting" in out
    assert "alice" in out and "mallory" in out and "forbidden" in out
    assert "type /body" in out and ALICE.key_id.hex() in out


@pytest.mark.parametrize("audit", [True, False])
async def test_accepted_events_are_listed_without_audit_records(
    tmp_path: Path, audit: bool
) -> None:
    running = await serve(tmp_path, audit=audit)
    try:
        doc = gether.Document("w")
        doc["a"] = 1
        async with gether.connect(running.ws_url, "n", doc=doc, token=token("w")) as session:
            await session.sync()
    finally:
        await running.stop()
    rows = log_rows(tmp_path, "n")
    assert [(r["verdict"], r["what"]) for r in rows] == [("accepted", "set /a")]
    assert rows[0]["subject"] == ("w" if audit else None)
    assert rows[0]["key_id"] == doc.key.key_id.hex()


def test_gether_serve_authorize(tmp_path: Path) -> None:
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    extra = ["--jwt-secret", str(secret), "--jwt-audience", AUDIENCE, "--authorize"]
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", extra=extra) as server:

        async def scenario() -> None:
            alice = gether.Document("alice", key=ALICE)
            alice["a"] = 1
            alice_token = token("alice", ["writer@d"], [ALICE])
            async with gether.connect(server.ws_url, "d", doc=alice, token=alice_token) as s:
                await s.sync()
            async with gether.connect(server.tcp_url, "d", token=token("eve")) as s:
                assert (await error_of(s)).code == "forbidden"

        asyncio.run(scenario())
        assert server.stop() == 0
    result = CliRunner().invoke(main, ["log", f"sqlite:///{tmp_path}/s.db", "d", "--json"])
    rows = json.loads(result.output)
    assert [(r["subject"], r["verdict"]) for r in rows] == [("alice", "accepted")]


async def test_gether_log_on_postgresql(postgres_url: str) -> None:
    running = await start_server(
        postgres_url,
        port=0,
        config=HubConfig(authorization=Authorization()),
        handle_signals=False,
        authenticator=JWTAuthenticator(SECRET, audience=AUDIENCE),
    )
    try:
        alice = gether.Document("alice", key=ALICE)
        alice["a"] = 1
        async with gether.connect(
            running.ws_url, "pg", doc=alice, token=token("alice", ["writer"], [ALICE])
        ) as session:
            await session.sync()
        mallory = gether.Document("mallory", key=BOB)
        mallory["a"] = 2
        async with gether.connect(
            running.ws_url, "pg", doc=mallory, token=token("mallory", ["writer"], [ALICE])
        ) as session:
            assert (await error_of(session)).code == "author_not_bound"
    finally:
        await running.stop()
    result = CliRunner().invoke(main, ["log", postgres_url, "pg", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["subject"], r["key_id"], r["verdict"], r["code"]) for r in rows] == [
        ("alice", ALICE.key_id.hex(), "accepted", None),
        ("mallory", BOB.key_id.hex(), "rejected", "author_not_bound"),
    ]
