"""The simulated network itself: deterministic, lossless in the end, partitionable.

Convergence tests are only as good as the network under them: it must really
drop, duplicate and delay (or the tests prove little), must never lose an event
for good (or a failure is the network's fault), and a seed must name exactly one
schedule (or a failure cannot be replayed).
"""

from __future__ import annotations

import pytest

import gether
from gether.testing.network import SimulatedNetwork


def _docs(n: int) -> list[gether.Document]:
    return [gether.Document(replica_id=f"r{i}") for i in range(n)]


def _chatter(net: SimulatedNetwork, rounds: int = 6) -> None:
    """Every replica edits, broadcasts, and some batches get through, for a few rounds."""
    for round_ in range(rounds):
        for i, doc in enumerate(net.replicas):
            doc.text("t").insert(0, f"{i}.{round_} ")
            doc.counter("c").increment()
            net.broadcast(i)
        net.deliver_some()


def _run(seed: int) -> tuple[list[tuple[str, int, int, int]], list[object]]:
    net = SimulatedNetwork(_docs(4), seed, drop=0.3, duplicate=0.3, split=0.5)
    _chatter(net)
    before_settle = [doc.to_json() for doc in net.replicas]
    net.settle()
    return net.log, before_settle


def test_same_seed_same_schedule() -> None:
    log_a, states_a = _run(1234)
    log_b, states_b = _run(1234)
    assert log_a == log_b
    assert states_a == states_b


def test_different_seeds_give_different_schedules() -> None:
    logs = {tuple(_run(seed)[0]) for seed in range(5)}
    assert len(logs) > 1


def test_faults_really_happen() -> None:
    net = SimulatedNetwork(_docs(4), 5, drop=0.3, duplicate=0.3, split=0.5, reorder=1.0)
    _chatter(net, rounds=10)
    net.settle()
    assert net.stats.dropped > 0
    assert net.stats.duplicated > 0
    assert net.stats.split > 0


def test_nothing_is_lost_after_settle() -> None:
    net = SimulatedNetwork(_docs(5), 99, drop=0.5, duplicate=0.2, delivery=0.2)
    _chatter(net, rounds=8)
    net.settle()
    assert net.quiet
    first = net[0]
    assert first.counter("c").value == 5 * 8
    assert first.event_count == 5 * (8 * 2 + 2)  # + linking the named "t" and "c"
    for doc in net.replicas:
        assert doc.version == first.version
        assert doc.to_json() == first.to_json()
        assert doc.pending == frozenset()


def test_settle_delivers_without_anti_entropy() -> None:
    """Broadcast plus resend alone must deliver everything; anti-entropy only repairs."""
    net = SimulatedNetwork(_docs(3), 3, drop=0.4, duplicate=0.4)
    _chatter(net)
    net.settle()
    assert net.stats.anti_entropy_events == 0


def test_partitions_block_delivery_until_heal() -> None:
    net = SimulatedNetwork(_docs(3), 11, drop=0.0, duplicate=0.0, delivery=1.0)
    net.partition([[0], [1, 2]])
    net[0]["from0"] = 1
    net[1]["from1"] = 1
    net.broadcast_all()
    for _ in range(10):
        net.deliver_some()
    assert "from0" not in net[1].to_json()
    assert "from0" not in net[2].to_json()
    assert "from1" not in net[0].to_json()
    assert net[2].to_json() == {"from1": 1}
    assert net.stats.blocked > 0
    assert net.in_flight == 3  # 0 -> 1, 0 -> 2 and 1 -> 0 wait; 1 -> 2 went through
    net.heal()
    net.deliver_some()
    for doc in net.replicas:
        assert doc.to_json() == {"from0": 1, "from1": 1}


def test_unlisted_replicas_are_isolated() -> None:
    net = SimulatedNetwork(_docs(3), 0, drop=0.0, duplicate=0.0, delivery=1.0)
    net.partition([[0, 1]])
    net[2]["x"] = 1
    net.broadcast(2)
    net.deliver_some()
    assert net[0].to_json() == {}
    assert not net.connected(2, 0)
    assert net.connected(0, 1)


def test_events_travel_out_of_order_and_wait_for_parents() -> None:
    """A recipient can get an event before its parents; it waits in ``pending``."""
    net = SimulatedNetwork(_docs(2), 0, drop=0.0, duplicate=0.0, delivery=1.0)
    net[0]["a"] = 1
    net.broadcast(0)
    net[0]["a"] = 2
    net.broadcast(0)
    # deliver only the second batch, by hand, through the public pieces
    second = net[0].events_since(None)[1]
    net[1].apply_events([second.to_bytes()])
    assert net[1].pending == frozenset({second.id})
    assert net[1].to_json() == {}
    net.settle()
    assert net[1].pending == frozenset()
    assert net[1].to_json() == {"a": 2}


def test_broadcast_sends_only_new_local_events() -> None:
    net = SimulatedNetwork(_docs(3), 0, drop=0.0, duplicate=0.0, delivery=1.0)
    net[0]["a"] = 1
    assert net.broadcast(0) == 1
    assert net.broadcast(0) == 0
    net.deliver_some()
    assert net.broadcast(1) == 0  # received events are not relayed
    net[1]["b"] = 1
    assert net.broadcast(1) == 1


def test_a_merged_fork_is_broadcast_by_its_host() -> None:
    net = SimulatedNetwork(_docs(2), 0, drop=0.0, duplicate=0.0, delivery=1.0)
    fork = net[0].fork()
    fork["f"] = 1
    net[0].merge(fork)
    assert net.broadcast(0) == 1
    net.deliver_some()
    assert net[1].to_json() == {"f": 1}


def test_replace_keeps_bookkeeping() -> None:
    net = SimulatedNetwork(_docs(2), 0, drop=0.0, duplicate=0.0, delivery=1.0)
    net[0]["a"] = 1
    net.broadcast(0)
    net.replace(0, gether.Document.load(net[0].save(), replica_id="r0", key=net[0].key))
    assert net.broadcast(0) == 0
    net.settle()
    assert net[1].to_json() == {"a": 1}


def test_bad_probabilities_are_refused() -> None:
    with pytest.raises(ValueError):
        SimulatedNetwork(_docs(2), 0, drop=1.0)
    with pytest.raises(ValueError):
        SimulatedNetwork(_docs(2), 0, delivery=1.5)
    with pytest.raises(ValueError):
        SimulatedNetwork(_docs(2), 0).partition([[0], [0, 1]])
