"""Frozen samples of every released format, decoded forever (STYLE.md §5).

The files in ``tests/compat/`` were written once by format 1 and must never be
regenerated: a change that breaks them breaks every saved document out there.
"""

from __future__ import annotations

import json
from pathlib import Path

import gether

HERE = Path(__file__).parent / "compat"


def frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        size = int.from_bytes(data[:4], "big")
        out.append(data[4 : 4 + size])
        data = data[4 + size :]
    return out


def test_document_format_1_loads() -> None:
    expected = json.loads((HERE / "expected-v1.json").read_text(encoding="utf-8"))
    doc = gether.Document.load((HERE / "document-v1.gether").read_bytes())
    assert doc.to_json() == expected
    assert len(doc.events_since(None)) == doc.event_count


def test_event_format_1_decodes_and_applies() -> None:
    expected = json.loads((HERE / "expected-v1.json").read_text(encoding="utf-8"))
    data = frames((HERE / "events-v1.bin").read_bytes())
    for frame in data:
        assert gether.Event.from_bytes(frame).to_bytes() == frame
    doc = gether.Document(replica_id="reader")
    doc.apply_events(data)
    assert doc.to_json() == expected


def test_encrypted_fields_format_1_opens() -> None:
    """Sealed values (core/sealed.py) and document key files, version 1."""
    from gether.keys import load_document_key

    sample = json.loads((HERE / "encrypted-v1.json").read_text(encoding="utf-8"))
    key = load_document_key(HERE / "document-key-v1.json")
    assert key.doc_id == "compat" and key.secret == bytes(range(32))
    data = [bytes.fromhex(e) for e in sample["events"]]
    reader = gether.Document("reader", schema=sample["schema"], keys=key)
    reader.apply_events(data)
    assert reader.to_json() == sample["expected"]
    blind = gether.Document("blind", schema=sample["schema"])
    blind.apply_events(data)
    assert all(isinstance(v, gether.Encrypted) for v in blind.to_json().values())
