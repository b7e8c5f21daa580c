"""Access control: roles per key id and path, held in the document, judged on
each event's causal past so that every replica reaches the same verdict.

Unit tests of each role, scope, revocation and the admin-only policy, local
and received; forged events (made by a replica whose local checks are
switched off, signing with a real key) are rejected everywhere; a property
test runs five replicas with distinct keys through concurrent grants,
revocations, writes and forgeries over a simulated network that reorders and
duplicates, and checks that all agree on the state and on the rejected ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import gether
from gether.core.access import ACCESS_ID, ACCESS_NAME, AccessGuard
from gether.core.document import Document as CoreDocument
from gether.core.ids import ContainerId
from gether.core.keys import SigningKey
from gether.core.values import Kind, NamedRef
from gether.testing.network import SimulatedNetwork


def key(name: str) -> SigningKey:
    return SigningKey(name.encode().ljust(32, b"."))


K = [key(f"r{i}") for i in range(5)]
ID = [k.key_id for k in K]


def replica(i: int) -> gether.Document:
    return gether.Document(f"r{i}", key=K[i])


class _Unchecked(AccessGuard):
    """Local checks switched off: what a patched client could send."""

    __slots__ = ()

    def check_local(self, doc: Any, container_id: ContainerId, key: str | None) -> None:
        return None

    def allows(self, doc: Any, container_id: ContainerId, key: str | None) -> bool:
        return True


def rogue(name: str, signer: SigningKey, of: CoreDocument | None = None) -> CoreDocument:
    """A replica signing with ``signer`` that skips its local access checks."""
    doc = CoreDocument(name, signer)
    doc._access = _Unchecked(signer.key_id)
    if of is not None:
        doc.apply_events(of.events_since(None))
    return doc


def rejected_ids(doc: Any, events: list[Any]) -> set[Any]:
    try:
        doc.apply_events(events)
    except gether.RejectedEventsError as exc:
        return {event_id for event_id, _ in exc.rejected}
    return set()


def codes(doc: Any, events: list[Any]) -> list[str]:
    try:
        doc.apply_events(events)
    except gether.RejectedEventsError as exc:
        return [error.code for _, error in exc.rejected]
    return []


@pytest.fixture
def owned() -> gether.Document:
    """r0 admin, r1 writer everywhere, r2 writer on /todos, r3 reader."""
    doc = replica(0)
    doc["title"] = "t"
    doc["todos"] = [{"text": "a"}]
    with doc.transaction():
        doc.access.grant(ID[1], "writer")
        doc.access.grant(ID[2], "writer", "/todos")
        doc.access.grant(ID[3], "reader")
    return doc


def joined(doc: gether.Document, i: int) -> gether.Document:
    other = replica(i)
    other.merge(doc)
    return other


# -- bootstrapping -----------------------------------------------------------------------


def test_a_document_without_a_policy_is_open() -> None:
    doc = replica(0)
    doc["x"] = 1
    assert doc.access.is_open
    assert doc.access.roles(ID[4]) == {"/": "admin"}
    assert doc.access.can_write(ID[4], "/anything")
    assert doc.access.grants() == []
    assert ACCESS_NAME not in doc.to_json()


def test_the_first_grant_makes_its_author_admin(owned: gether.Document) -> None:
    assert not owned.access.is_open
    assert owned.access.roles(ID[0]) == {"/": "admin"}
    assert owned.access.grants() == sorted(
        [
            (ID[0].hex(), "/", "admin"),
            (ID[1].hex(), "/", "writer"),
            (ID[2].hex(), "/todos", "writer"),
            (ID[3].hex(), "/", "reader"),
        ]
    )
    assert owned.event_count == 3  # the grants were one event


def test_a_genesis_that_does_not_make_its_author_admin_is_rejected() -> None:
    bad = rogue("bad", K[1])
    with bad.transaction(), bad._access.granting():
        container = bad._container(bad._named(ACCESS_NAME, Kind.MAP), Kind.MAP)
        bad._map_write(container, f"{ID[1].hex()} /", "writer")
    assert codes(replica(0), bad.events_since(None)) == ["access_rejected"]


def test_concurrent_geneses_make_both_authors_admin() -> None:
    a, b = replica(0), replica(1)
    a.access.grant(ID[2], "writer")
    b.access.grant(ID[3], "reader")
    a.merge(b)
    b.merge(a)
    assert a.to_json() == b.to_json()
    assert a.access.is_admin(ID[0]) and a.access.is_admin(ID[1])
    assert b.access.grants() == a.access.grants()


def test_revoking_everything_does_not_reopen(owned: gether.Document) -> None:
    for i in (1, 2, 3, 0):
        owned.access.revoke(ID[i])
    assert not owned.access.is_open
    assert owned.access.grants() == []
    with pytest.raises(gether.AccessDeniedError):
        owned["x"] = 1


# -- roles and scopes, local edits ----------------------------------------------------------


def test_a_reader_cannot_write(owned: gether.Document) -> None:
    doc = joined(owned, 3)
    before, version = doc.to_json(), doc.version
    for edit in (
        lambda: doc.__setitem__("title", "u"),
        lambda: doc["todos"].append({"text": "b"}),
        lambda: doc["todos"][0].__setitem__("done", True),
        lambda: doc.__delitem__("title"),
        lambda: doc.text("notes").insert(0, "x"),
        lambda: doc.counter("n").increment(1),
    ):
        with pytest.raises(gether.AccessDeniedError) as info:
            edit()
        assert info.value.code == "access_denied"
    assert doc.to_json() == before and doc.version == version
    assert doc.access.roles(ID[3]) == {"/": "reader"}
    assert not doc.access.can_write(ID[3], "/title")


def test_a_writer_writes_everywhere_but_the_policy(owned: gether.Document) -> None:
    doc = joined(owned, 1)
    doc["title"] = "u"
    doc["todos"][0]["done"] = True
    doc.text("notes").insert(0, "hi")
    with pytest.raises(gether.AccessDeniedError):
        doc.access.grant(ID[4], "writer")
    with pytest.raises(gether.AccessDeniedError):
        doc.access.revoke(ID[3])
    assert owned.merge(doc) == 4  # notes are linked, then written
    assert owned.to_json() == doc.to_json()


def test_a_scoped_writer_writes_only_under_its_path(owned: gether.Document) -> None:
    doc = joined(owned, 2)
    doc["todos"].append({"text": "b"})
    doc["todos"][0]["text"] = "A"
    doc["todos"] = [{"text": "fresh"}]  # the key itself is under /todos
    with pytest.raises(gether.AccessDeniedError) as info:
        doc["title"] = "u"
    assert info.value.path == ("title",)
    with pytest.raises(gether.AccessDeniedError):
        doc["todo"] = 1  # a prefix of the name is not the path
    with pytest.raises(gether.AccessDeniedError), doc.transaction():
        doc["todos"].append({"text": "c"})
        doc["title"] = "u"  # the whole transaction is refused
    assert doc["todos"].to_json() == [{"text": "fresh"}]
    assert owned.merge(doc) == 3 and owned.to_json() == doc.to_json()


def test_grants_to_everyone() -> None:
    doc = replica(0)
    doc.access.grant("*", "writer", "/wiki")
    other = joined(doc, 4)
    other["wiki"] = {"home": "hello"}
    with pytest.raises(gether.AccessDeniedError):
        other["secret"] = 1
    assert other.access.role(ID[4], "/wiki/home") == "writer"
    assert other.access.roles(ID[4]) == {}  # "*"'s grants are not its own
    doc.access.grant(ID[4], "reader")
    other.merge(doc)
    assert other.access.role(ID[4], "/wiki") == "writer"  # the highest role wins
    other["wiki"]["more"] = "x"


def test_an_admin_on_a_path_writes_there_but_cannot_change_the_policy(
    owned: gether.Document,
) -> None:
    owned.access.grant(ID[4], "admin", "/todos")
    doc = joined(owned, 4)
    doc["todos"].append({"text": "b"})
    with pytest.raises(gether.AccessDeniedError):
        doc.access.grant(ID[3], "writer", "/todos")


def test_revocation_and_regrant(owned: gether.Document) -> None:
    owned.access.revoke(ID[2], "/todos")
    doc = joined(owned, 2)
    with pytest.raises(gether.AccessDeniedError):
        doc["todos"].append({"text": "b"})
    owned.access.grant(ID[2], "writer", "/todos")
    doc.merge(owned)
    doc["todos"].append({"text": "b"})
    owned.access.grant(ID[2], "reader", "/todos")  # replaces its role there
    doc.merge(owned)
    assert doc.access.roles(ID[2]) == {"/todos": "reader"}
    with pytest.raises(gether.AccessDeniedError):
        doc["todos"].append({"text": "c"})


def test_the_reserved_map_is_written_only_through_doc_access(owned: gether.Document) -> None:
    for doc in (replica(0), owned):
        with pytest.raises(gether.UsageError):
            doc[ACCESS_NAME] = {"x": "admin"}
        with pytest.raises(gether.UsageError):
            doc.map(ACCESS_NAME)[f"{ID[4].hex()} /"] = "admin"
    with pytest.raises(gether.UsageError):
        del owned[ACCESS_NAME]
    with pytest.raises(gether.UsageError):
        owned.access.grant(ID[1], "owner")
    with pytest.raises(gether.UsageError):
        owned.access.grant("not hex", "writer")


def test_a_reader_may_read_named_containers_nobody_linked() -> None:
    doc = replica(0)
    doc.access.grant(ID[3], "reader")
    other = joined(doc, 3)
    assert str(other.text("notes")) == ""
    assert other.version == doc.version


# -- received events ---------------------------------------------------------------------


def test_forged_writes_are_rejected(owned: gether.Document) -> None:
    reader = rogue("r3b", K[3], owned)
    reader["title"] = "forged"
    scoped = rogue("r2b", K[2], owned)
    scoped["todos"].append({"text": "ok"})
    scoped["title"] = "forged"
    stranger = rogue("r4", K[4], owned)
    stranger.text("notes").insert(0, "x")
    doc = joined(owned, 1)
    events = [*reader.events_since(owned.version), *scoped.events_since(owned.version)]
    events += stranger.events_since(owned.version)
    before = doc.to_json()
    assert rejected_ids(doc, events) == {("r3b", 1), ("r2b", 2), ("r4", 1), ("r4", 2)}
    before["todos"].append({"text": "ok"})
    assert doc.to_json() == before


def test_a_forged_policy_change_is_rejected_on_every_replica(owned: gether.Document) -> None:
    docs = [owned, *(joined(owned, i) for i in range(1, 5))]
    forgers = [rogue(f"f{i}", K[i], owned) for i in (1, 2, 3, 4)]
    for forger in forgers:
        forger.access.grant(forger.key.key_id, "admin")
    net = SimulatedNetwork([*docs, *forgers], seed=7, keep_rejections=True)  # type: ignore[list-item]
    for i in range(len(docs), len(docs) + len(forgers)):
        net.broadcast(i)
    net.settle()
    forged = {(f"f{i}", 1) for i in (1, 2, 3, 4)}
    for i, doc in enumerate(docs):
        assert net.rejected[i] == forged
        assert doc.to_json() == owned.to_json()
        assert not doc.access.is_admin(ID[1])


def test_a_forged_edit_of_the_reserved_map_is_rejected(owned: gether.Document) -> None:
    admin = rogue("a2", K[0], owned)
    with admin.transaction(), admin._access.granting():
        admin._map_write(admin._container(ACCESS_ID, Kind.MAP), "bad key", "admin")
    assert codes(joined(owned, 1), admin.events_since(owned.version)) == ["access_rejected"]
    linker = rogue("a3", K[0], owned)
    root = linker._container(("", 0), Kind.MAP)
    linker._map_write(root, "elsewhere", NamedRef(ACCESS_NAME, Kind.MAP))
    assert codes(joined(owned, 1), linker.events_since(owned.version)) == ["access_rejected"]


def test_writes_are_judged_on_their_causal_past_not_the_receivers_present(
    owned: gether.Document,
) -> None:
    writer = joined(owned, 1)
    owned.access.revoke(ID[1])  # concurrent with the write below
    writer["title"] = "mine"
    assert owned.merge(writer) == 1  # its past still had the grant
    writer.merge(owned)
    assert writer.to_json() == owned.to_json()
    with pytest.raises(gether.AccessDeniedError):
        writer["title"] = "again"  # now it has seen the revocation
    late = rogue("r1b", K[1], writer)
    late["title"] = "forged"
    assert codes(owned, late.events_since(owned.version)) == ["access_rejected"]


def test_a_grant_is_judged_on_its_past_too(owned: gether.Document) -> None:
    """A write made after receiving a grant is accepted by a replica that
    holds concurrent events (the replay path) and by one that does not."""
    owned.access.grant(ID[4], "writer", "/todos")
    user = joined(owned, 4)
    user["todos"].append({"text": "mine"})
    other = joined(owned, 3)
    busy = joined(owned, 1)
    busy["title"] = "concurrent"
    owned.merge(busy)
    for doc in (owned, other, busy):
        assert doc.merge(user) == 1
    stale = replica(2)
    stale.apply_events(owned.events_since(None)[:1])
    assert rejected_ids(stale, user.events_since(None)) == set()
    assert stale.to_json()["todos"] == owned.to_json()["todos"]


def test_concurrent_revoke_and_write_give_one_verdict_in_every_order() -> None:
    admin = replica(0)
    admin["doc"] = {"v": 0}
    admin.access.grant(ID[1], "writer", "/doc")
    admin.access.grant(ID[2], "admin")
    writer, other_admin = joined(admin, 1), joined(admin, 2)
    admin.access.revoke(ID[1])  # revokes ...
    writer["doc"]["v"] = 1  # ... concurrently with this write
    other_admin.access.grant(ID[1], "reader", "/doc")  # and a concurrent downgrade
    writer["doc"]["w"] = 2  # still judged on the grant
    writer.merge(admin)
    forged = rogue("r1f", K[1], writer)
    forged["doc"]["v"] = 3  # after seeing the revocation: refused
    history = {e.id: e for d in (admin, writer, other_admin, forged) for e in d.events_since(None)}
    events = list(history.values())
    outcomes = set()
    rng = random.Random(5)
    for n in range(40):
        docs = [gether.Document(f"v{i}", key=key(f"v{i}")) for i in range(5)]
        for doc in docs:
            batch = list(events)
            rng.shuffle(batch)
            batch += rng.sample(batch, k=len(batch) // 3)  # duplicates
            refused: set[Any] = set()
            for start in range(0, len(batch), 1 + n % 4):  # in pieces
                refused |= rejected_ids(doc, batch[start : start + 1 + n % 4])
            outcomes.add((repr(doc.to_json()), frozenset(refused), doc.version))
    assert len(outcomes) == 1
    ((state, refused, _),) = outcomes
    assert refused == {("r1f", 1)}
    assert "'v': 1" in state and "'w': 2" in state


# -- saving, loading, history ----------------------------------------------------------------


def test_save_load_and_at_keep_the_policy(owned: gether.Document) -> None:
    before = owned.version
    owned.access.revoke(ID[3])
    loaded = gether.Document.load(owned.save(), "r0", K[0])
    assert loaded.access.grants() == owned.access.grants()
    reader = gether.Document.load(owned.save(), "r3", K[3])
    with pytest.raises(gether.AccessDeniedError):
        reader["title"] = "x"
    past = owned.at(before)
    assert past.access.roles(ID[3]) == {"/": "reader"}
    assert owned.at(gether.Version({"r0": 2})).access.is_open
    # a loaded replica still judges received events on their past
    writer = joined(owned, 1)
    writer["title"] = "w"
    forged = rogue("r3f", K[3], owned)
    forged["title"] = "forged"
    assert rejected_ids(loaded, [*writer.events_since(None), *forged.events_since(None)]) == {
        ("r3f", 1)
    }
    assert loaded.to_json()["title"] == "w"
    forked = loaded.fork("r9", key("r9"))
    assert forked.access.grants() == loaded.access.grants()
    with pytest.raises(gether.AccessDeniedError):
        forked["title"] = "x"


def test_a_schema_does_not_see_the_policy() -> None:
    schema = {"type": "object", "additionalProperties": False, "properties": {"a": {}}}
    doc = gether.Document("r0", key=K[0], schema=schema)
    doc.access.grant(ID[1], "writer")
    other = gether.Document("r1", key=K[1], schema=schema)
    other.merge(doc)
    other["a"] = 1
    assert doc.merge(other) == 1
    assert doc.validate() == []


# -- convergence ---------------------------------------------------------------------------

PATHS = ["/", "/todos", "/notes"]


@dataclass(frozen=True)
class Act:
    what: str
    arg: Any


ACTS = st.one_of(
    st.builds(
        Act,
        st.just("grant"),
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 4, "*"]),
            st.sampled_from(["reader", "writer", "writer", "admin"]),
            st.sampled_from(PATHS),
        ),
    ),
    st.builds(
        Act,
        st.just("revoke"),
        st.tuples(st.sampled_from([0, 1, 2, 3, 4, "*"]), st.sampled_from([None, *PATHS])),
    ),
    st.builds(Act, st.just("title"), st.text("ab", max_size=3)),
    st.builds(Act, st.just("todo"), st.text("ab", max_size=3)),
    st.builds(Act, st.just("note"), st.text("ab", min_size=1, max_size=3)),
)

Step = tuple[int, bool, Act]
STEPS = st.tuples(st.integers(0, 4), st.sampled_from([False, False, True]), ACTS)


def perform(doc: Any, act: Act) -> None:
    what, arg = act.what, act.arg
    if what in ("grant", "revoke"):
        who = arg[0] if arg[0] == "*" else ID[arg[0]]
        if what == "grant":
            doc.access.grant(who, arg[1], arg[2])
        else:
            doc.access.revoke(who, arg[1])
    elif what == "title":
        doc["title"] = arg
    elif what == "todo":
        if "todos" in doc:
            doc["todos"].append({"text": arg})
        else:
            doc["todos"] = [{"text": arg}]
    elif what == "note":
        doc.text("notes").insert(0, arg)


def attempt(doc: Any, act: Act) -> None:
    before, version = doc.to_json(), doc.version
    try:
        perform(doc, act)
        event(f"{act.what}: made")
    except gether.AccessDeniedError:
        event(f"{act.what}: refused")
        assert doc.to_json() == before and doc.version == version


def run(net: SimulatedNetwork, docs: list[Any], rogues: list[Any], steps: list[Step]) -> None:
    rng = random.Random(len(steps))
    for who, forged, act in steps:
        if forged:  # mostly by keys with little or no role
            signer = 2 + who % 3 if who else 1
            bad = rogue(f"rogue{len(rogues)}", K[signer], docs[who])
            perform(bad, act)
            rogues.append(bad)
            net.broadcast(net.add(bad))  # type: ignore[arg-type]
        else:
            attempt(docs[who], act)
            net.broadcast(who)
        if rng.random() < 0.3:
            net.deliver_some()


@settings(max_examples=max(30, settings().max_examples // 2))
@given(
    genesis=st.sampled_from(["writers", "scoped", "scoped", "everyone"]),
    steps=st.lists(STEPS, min_size=4, max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_replicas_agree_on_the_state_and_the_rejections(
    genesis: str, steps: list[Step], seed: int
) -> None:
    docs = [replica(i) for i in range(5)]
    with docs[0].transaction():
        if genesis == "everyone":
            docs[0].access.grant("*", "writer")
        else:
            docs[0].access.grant(ID[1], "admin")
            docs[0].access.grant(ID[2], "writer", "/" if genesis == "writers" else "/todos")
            docs[0].access.grant(ID[3], "writer", "/notes")
            docs[0].access.grant(ID[4], "reader")
    net = SimulatedNetwork(docs, seed=seed, keep_rejections=True)
    net.broadcast(0)
    rogues: list[CoreDocument] = []
    run(net, docs, rogues, steps)
    net.settle()

    first = docs[0]
    rejected = net.rejected.get(0, set())
    event(f"rejected: {min(len(rejected), 3)}+")
    for i, doc in enumerate(docs):
        assert doc.to_json() == first.to_json()
        assert doc.version == first.version
        assert net.rejected.get(i, set()) == rejected
        assert doc.access.grants() == first.access.grants()
        assert not doc.pending
    for event_id in rejected:
        assert event_id is not None and event_id[0].startswith("rogue")

    # a fresh replica fed every event, shuffled, with duplicates, agrees
    history = {e.id: e for d in [*docs, *rogues] for e in d.events_since(None)}
    shuffled = [e.to_bytes() for e in history.values()]
    rng = random.Random(seed)
    rng.shuffle(shuffled)
    shuffled += rng.sample(shuffled, k=len(shuffled) // 4)
    fresh = gether.Document("fresh", key=key("fresh"))
    refused = rejected_ids(fresh, shuffled)
    assert fresh.to_json() == first.to_json()
    assert fresh.version == first.version
    assert refused == rejected


def test_a_durable_replica_keeps_and_enforces_the_policy(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/acl.db"
    with gether.Document.open(url, "doc", replica_id="r3", key=K[3]) as doc:
        doc.access.grant(ID[1], "writer", "/todos")
        doc.access.grant(ID[4], "reader")
        doc["todos"] = []
    with gether.Document.open(url, "doc") as doc:
        assert doc.access.roles(ID[3]) == {"/": "admin"}
        assert doc.access.can_write(ID[1], "/todos/x") and not doc.access.can_write(ID[1], "/")
        forged = rogue("r1f", K[1], doc)
        forged["title"] = "forged"
        assert codes(doc, forged.events_since(None)) == ["access_rejected"]
    with gether.Document.open(url, "doc") as doc:
        assert "title" not in doc
