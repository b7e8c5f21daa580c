"""Each applied event's causal past (``oplog.Past``, kept as "the log's first
``at`` events except a few") against the past worked out the slow way, on
random histories applied in random causal orders: the vectors the core asks
about (references to elements, access verdicts, ``at()``) must be exact."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

import gether
from gether.core.event import Event
from gether.core.ids import EventKey
from gether.testing.histories import causal_shuffles, history


def naive_pasts(events: list[Event]) -> dict[EventKey, dict[str, int]]:
    """Per event: for each replica, the highest seq among its strict ancestors."""
    by_id = {e.id: e for e in events}
    out: dict[EventKey, dict[str, int]] = {}

    def past(event_id: EventKey) -> dict[str, int]:
        found = out.get(event_id)
        if found is None:
            found = {}
            for parent, _ in by_id[event_id].parents:
                for replica, seq in {**past(parent), parent[0]: parent[1]}.items():
                    found[replica] = max(found.get(replica, 0), seq)
            out[event_id] = found
        return found

    for event in sorted(events, key=lambda e: e.lamport):
        past(event.id)
    return out


@settings(max_examples=150, deadline=None)
@given(
    replicas=st.integers(2, 7),
    edits=st.integers(5, 80),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_past_is_exact_whatever_the_order(replicas: int, edits: int, seed: int) -> None:
    events, _ = history(replicas, edits, seed)
    expected = naive_pasts(events)
    doc = gether.Document("observer")
    for batch in causal_shuffles(events, seed):
        doc.apply_events(batch)
    log = doc._log
    for event in events:
        author, seq = event.id
        past = log.past_at(author, seq)
        want = expected[event.id]
        for replica in {*log.chains, *want}:
            if replica == author:
                continue  # an event's own chain is checked by seq, not by its past
            assert past.get(replica) == want.get(replica, 0), (event.id, replica)
        assert log.full_vector([p for p, _ in event.parents]) == {
            r: s for r, s in want.items() if s
        }


def test_a_wide_history_keeps_small_pasts() -> None:
    """Many writers, each seeing the others a few events late: a past holds
    at most the few events its writer had not seen, not an entry per writer
    (here none: each writer saw a prefix of the hub's order, and a past is
    taken at its newest parent)."""
    rng = random.Random(7)
    lag = 8
    writers = [gether.Document(f"w{i:03d}", signed=False) for i in range(60)]
    hub = gether.Document("hub", signed=False)
    for w in writers:
        w.counter("c").increment(1)
        hub.apply_events(w.events_since(None))
    versions = [hub.version]
    for _ in range(3):
        order = list(writers)
        rng.shuffle(order)
        for w in order:
            seen = versions[max(0, len(versions) - lag)]
            w.apply_events([e for e in hub.events_since(w.version) if seen.includes(e.id)])
            w.counter("c").increment(1)
            hub.apply_events(w.events_since(hub.version))
            versions.append(hub.version)
    log = hub._log
    newest = [log.past_at(w.replica_id, len(log.chains[w.replica_id])) for w in writers]
    sizes = sorted(len(past.exceptions) for past in newest)
    assert sizes[-1] <= lag, sizes
    assert [p.at for p in newest] != [len(log._order)] * len(
        writers
    )  # taken at their newest parent, not at the end
    for w in writers:
        w.apply_events(hub.events_since(w.version))
        assert w.to_json() == hub.to_json() == {"c": 4 * 60}


@settings(max_examples=40, deadline=None)
@given(replicas=st.integers(1, 5), edits=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_applied_marks_give_the_versions_they_stand_for(
    replicas: int, edits: int, seed: int
) -> None:
    """``applied_count`` / ``applied_since`` / ``version_at`` (a server's
    per-batch bookkeeping) against the versions seen while applying."""
    events, _ = history(replicas, edits, seed)
    doc = gether.Document("observer")
    seen = [(doc.applied_count, doc.version)]
    for batch in causal_shuffles(events, seed):
        mark, before = doc.applied_count, doc.version
        doc.apply_events(batch)  # an unsigned event may wait for its author's next
        fresh = doc.applied_since(mark)
        assert sorted(e.id for e in fresh) == sorted(e.id for e in doc.events_since(before))
        seen.append((doc.applied_count, doc.version))
    for mark, version in seen:
        assert doc.version_at(mark) == version
