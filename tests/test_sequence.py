"""The sequence's shortcuts for local edits (the hint at the run last edited, the
block cursor) change how fast a place is found, never which place: the same
edits on a sequence whose shortcuts are dropped before every edit give the same
origins, the same deleted spans, the same runs and the same text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gether.core.sequence import Sequence

# (kind, position fraction, length): positions land near the previous edit
# often, as in typing, and anywhere otherwise
edits = st.lists(
    st.tuples(
        st.sampled_from(["type", "type", "type", "back", "insert", "delete", "remote"]),
        st.floats(0, 1),
        st.integers(1, 4),
    ),
    max_size=120,
)


def shape(seq: Sequence) -> list[tuple[object, ...]]:
    return [
        (run.replica, run.counter, run.length, run.content, run.left, run.right, run.deleted)
        for run in seq.runs()
    ]


def element(seq: Sequence, pos: int) -> tuple[str, int]:
    run, offset = seq.run_at(pos)
    return run.replica, run.counter + offset


def check_index(seq: Sequence) -> None:
    """Every id is found in the run that holds it."""
    for run in list(seq.runs()):
        for offset in range(run.length):
            assert seq.find((run.replica, run.counter + offset)) == (run, offset)
        assert seq.find((run.replica, run.counter + run.length + 10**6)) is None


def replay(steps: list[tuple[str, float, int]], shortcuts: bool) -> tuple[list[object], Sequence]:
    seq = Sequence(text=True)
    seen: list[object] = []
    counter = 0
    remote = 0
    here = 0
    for kind, where, length in steps:
        if not shortcuts:
            seq._hint = None
            seq._cursor = (0, 0)
        size = len(seq)
        if kind in ("type", "insert"):
            pos = here if kind == "type" and here <= size else round(where * size)
            text = "abcd"[:length]
            seen.append(seq.local_insert(pos, "a", counter, length, text))
            counter += length + 1  # as a document does: the next op takes a counter too
            here = pos + length
        elif kind in ("back", "delete") and size:
            if kind == "back" and 0 < here <= size:
                pos = here - 1
                count = 1
            else:
                pos = min(round(where * size), size - 1)
                count = min(length, size - pos)
            seen.append(seq.local_delete(pos, count))
            counter += 1
            here = pos
        elif kind == "remote":
            # another replica's insert between two visible elements: positions
            # after it move, and its origins are found through the index
            pos = round(where * size)
            left = element(seq, pos - 1) if pos else None
            right = element(seq, pos) if pos < size else None
            seq.integrate("b", remote, length, "xyzw"[:length], left, right)
            remote += length
            seen.append(("remote", remote))
        if seq.visible != sum(r.length for r in seq.runs() if not r.deleted):
            raise AssertionError("visible length out of step")
    return seen, seq


@settings(max_examples=300, deadline=None)
@given(edits)
def test_shortcuts_never_change_the_result(steps: list[tuple[str, float, int]]) -> None:
    fast_seen, fast = replay(steps, shortcuts=True)
    slow_seen, slow = replay(steps, shortcuts=False)
    assert fast_seen == slow_seen
    assert shape(fast) == shape(slow)
    assert fast.to_text() == slow.to_text()
    check_index(fast)
    assert [b.visible for b in fast.blocks] == [
        sum(r.length for r in b.runs if not r.deleted) for b in fast.blocks
    ]


def test_long_typing_spans_many_blocks() -> None:
    """Enough runs to split blocks many times, typing and deleting back and forth."""
    steps: list[tuple[str, float, int]] = []
    for i in range(3000):
        steps.append(("type" if i % 7 else "insert", (i * 37 % 101) / 100, 1 + i % 3))
        if i % 5 == 0:
            steps.append(("back", 0.0, 1))
        if i % 11 == 0:
            steps.append(("delete", (i * 13 % 97) / 96, 2))
        if i % 97 == 0:
            steps.append(("remote", 0.0, 2))
    fast_seen, fast = replay(steps, shortcuts=True)
    slow_seen, slow = replay(steps, shortcuts=False)
    assert len(fast.blocks) > 10
    assert fast_seen == slow_seen
    assert shape(fast) == shape(slow)
    check_index(fast)
