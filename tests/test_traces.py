"""Real editing traces replayed through gether reproduce their final text."""

from __future__ import annotations

from pathlib import Path

import pytest

import gether
from gether.testing import traces

# ../shared/traces is part of every checkout's surroundings (CI included): a
# missing folder is an error here, not a skip.
TRACES_DIR = traces.find_traces_dir()

SEQUENTIAL = traces.sequential_names(TRACES_DIR)
# git-makefile-x2 has concurrent inserts at one position that assume
# diamond-types' tie-break order; no other CRDT can replay it (see its README).
# node_nodecc (204 replicas) is the slowest test of the suite, a few minutes.
CONCURRENT = ["friendsforever", "clownschool", "node_nodecc"]


def _text_creation_events() -> int:
    """Events a fresh document records for ``doc.text("text")`` alone."""
    doc = gether.Document(replica_id="probe")
    doc.text("text")
    return doc.event_count


def test_all_sequential_traces_present() -> None:
    assert len(SEQUENTIAL) >= 8
    assert {"automerge-paper", "seph-blog1", "rustcode"} <= set(SEQUENTIAL)


def test_loaders_parse_the_format() -> None:
    seq = traces.load_sequential("sveltecomponent", traces_dir=TRACES_DIR)
    assert (len(seq.txns), seq.num_patches, len(seq.end_content)) == (18_335, 19_749, 18_451)
    ascii_copy = traces.load_sequential("sveltecomponent", ascii_only=True)
    assert ascii_copy.num_patches == seq.num_patches
    conc = traces.load_concurrent("friendsforever", traces_dir=TRACES_DIR)
    assert (len(conc.txns), conc.num_agents, len(conc.end_content)) == (26_078, 2, 21_362)
    assert conc.txns[0].parents == ()
    assert all(p < i for i, txn in enumerate(conc.txns) for p in txn.parents)


def test_find_traces_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(traces.ENV_VAR, str(TRACES_DIR))
    assert traces.find_traces_dir() == TRACES_DIR
    monkeypatch.setenv(traces.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError):
        traces.find_traces_dir()


@pytest.mark.slow
@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_trace(name: str) -> None:
    trace = traces.load_sequential(name, traces_dir=TRACES_DIR)
    doc = traces.replay_sequential(trace)
    text = doc.text("text")
    assert len(text) == len(trace.end_content)
    assert str(text) == trace.end_content
    assert doc.event_count == len(trace.txns) + _text_creation_events()
    loaded = gether.Document.load(doc.save())
    assert str(loaded.text("text")) == trace.end_content


@pytest.mark.slow
@pytest.mark.parametrize("name", CONCURRENT)
def test_concurrent_trace(name: str) -> None:
    trace = traces.load_concurrent(name, traces_dir=TRACES_DIR)
    doc = traces.replay_concurrent(trace, as_bytes=name == "friendsforever")
    assert str(doc.text("text")) == trace.end_content
    assert doc.event_count >= len(trace.txns)
