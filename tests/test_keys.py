"""Key pairs on disk: ``gether keys new``, loading, signing with a loaded key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import gether
from gether.cli.main import main
from gether.core.keys import key_id_of
from gether.keys import load_private_key, load_public_key, new_key_pair

# small-order points of Ed25519 (the identity, and a point of order 4 and 8)
SMALL_ORDER = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
]


def test_cli_creates_a_pair_and_prints_the_key_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "new", "alice", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "alice.key", tmp_path / "alice.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_private_key(private)
    assert load_public_key(public).public_bytes(Encoding.Raw, PublicFormat.Raw) == key.public_bytes
    assert result.stdout.splitlines()[0] == key.key_id.hex() == key_id_of(key.public_bytes).hex()


def test_the_private_key_is_never_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask: the mode is set at creation
    try:
        made = new_key_pair("k", tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.private.stat().st_mode) == 0o600


def test_existing_keys_are_never_overwritten(tmp_path: Path) -> None:
    first = new_key_pair("bob", tmp_path)
    before = first.private.read_bytes()
    with pytest.raises(gether.UsageError, match="refusing to overwrite"):
        new_key_pair("bob", tmp_path)
    result = CliRunner().invoke(main, ["keys", "new", "bob", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert first.private.read_bytes() == before
    # a stray public key alone also blocks, and leaves no private key behind
    (tmp_path / "carol.pub").write_text("x")
    with pytest.raises(gether.UsageError):
        new_key_pair("carol", tmp_path)
    assert not (tmp_path / "carol.key").exists()


def test_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(gether.UsageError):
            new_key_pair(bad, tmp_path)


def test_a_loaded_key_signs_a_documents_events(tmp_path: Path) -> None:
    made = new_key_pair("writer", tmp_path)
    key = load_private_key(made.private)
    doc = gether.Document("writer", key=key)
    doc["x"] = 1
    events = doc.events_since(None)
    assert events[0].key_id == key.key_id
    other = gether.Document("reader")
    other.apply_events(events)
    assert other.to_json() == {"x": 1}
    # a durable replica continues its chain with the key loaded again from the file
    url = f"sqlite:///{tmp_path}/w.db"
    durable = gether.Document.open(url, "d", replica_id="writer", key=key)
    durable["y"] = 2
    durable.close()
    again = gether.Document.open(url, "d", replica_id="writer", key=load_private_key(made.private))
    again["z"] = 3
    assert [e.key_id for e in again.events_since(None)] == [key.key_id] * 2
    again.close()


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_small_order_public_keys_are_refused(tmp_path: Path, point: bytes) -> None:
    # cryptography parses these happily; one forged signature would verify for all messages
    pem = Ed25519PublicKey.from_public_bytes(point).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "evil.pub"
    path.write_bytes(pem)
    with pytest.raises(gether.InvalidKeyError, match="small order"):
        load_public_key(path)


def test_malformed_key_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(gether.InvalidKeyError):
        load_public_key(junk)
    with pytest.raises(gether.InvalidKeyError):
        load_private_key(junk)
    made = new_key_pair("pair", tmp_path)
    with pytest.raises(gether.InvalidKeyError):  # a public key is not a private key
        load_private_key(made.public)
    with pytest.raises(gether.UsageError):
        load_public_key(tmp_path / "missing.pub")
