"""Merging concurrent changes: ``merge(a, b) -> (b', a')`` with TP1.

``a.apply`` then ``b'`` gives the same value as ``b.apply`` then ``a'``. The rules,
from the outside in (the receiver ``a`` wins every tie):

* a ChangeSet merges one change at a time (the usual OT grid);
* PathChanges at unrelated paths commute; when one path is inside the other,
  the outer change meets the inner one as a PathChange relative to it;
* Replace beats everything else at or below its value: the other change is
  dropped and the Replace's ``before`` takes it in. Of two Replaces of the
  same value, ``a``'s stays;
* a PathChange into a list element follows the element through a Splice or a
  Move; if the Splice deletes the element, the PathChange is dropped and the
  Splice's ``before`` takes it in;
* two Splices: deletions unite; insertions keep their order by offset, a pure
  insertion goes before a range that starts at the same offset, and of two
  insertions at the same offset (or ranges starting together) ``a``'s goes first;
* Moves: see :mod:`gether.core.changes.pieces`.
"""

from __future__ import annotations

from gether.core.changes.model import (
    IDENTITY,
    Change,
    ChangeSet,
    Move,
    PathChange,
    Replace,
    Splice,
    at,
    is_identity,
    join,
    unwrap,
)
from gether.errors import TypeMismatchError


def merge(a: Change, b: Change) -> tuple[Change, Change]:
    """Return ``(b', a')``: ``b`` after ``a``, and ``a`` after ``b``; ``a`` wins ties."""
    a, b = unwrap(a), unwrap(b)
    if is_identity(a) or is_identity(b):  # a no-op may not even apply after the other
        return (IDENTITY if is_identity(b) else b), (IDENTITY if is_identity(a) else a)
    if isinstance(a, ChangeSet):
        done: list[Change] = []
        for change in a.changes:
            b, change = merge(change, b)
            done.append(change)
        return b, join(done)
    if isinstance(b, ChangeSet):
        done = []
        for change in b.changes:
            change, a = merge(a, change)
            done.append(change)
        return join(done), a
    match a, b:
        case Replace(), Replace():
            return IDENTITY, Replace(b.after, a.after)
        case Replace(), _:
            return IDENTITY, Replace(b.apply(a.before), a.after)
        case _, Replace():
            return Replace(a.apply(b.before), b.after), IDENTITY
        case PathChange(), PathChange():
            return _merge_paths(a, b)
        case PathChange(), Splice() | Move():
            a2, b2 = _path_after(a, b)
            return b2, a2
        case Splice() | Move(), PathChange():
            return _path_after(b, a)
        case Splice(), Splice():
            return merge_splices(a, b)
        case Splice() | Move(), Splice() | Move():
            from gether.core.changes.pieces import merge_moves

            return merge_moves(a, b)
    raise TypeMismatchError(f"cannot merge {type(a).__name__} with {type(b).__name__}")


def _merge_paths(a: PathChange, b: PathChange) -> tuple[Change, Change]:
    p, q = tuple(a.path), tuple(b.path)
    n = min(len(p), len(q))
    if p[:n] != q[:n]:
        return b, a  # different places: neither contains the other
    b2, a2 = merge(at(p[n:], a.change), at(q[n:], b.change))
    return at(p[:n], b2), at(p[:n], a2)


def _path_after(change: PathChange, seq: Splice | Move) -> tuple[Change, Change]:
    """``(change', seq')`` for a PathChange into an element of the list ``seq`` edits."""
    path = tuple(change.path)
    index = path[0]
    if not isinstance(index, int) or (isinstance(seq, Splice) and seq.on_text):
        raise TypeMismatchError("a list index and a text edit cannot apply to the same value")
    moved = seq.map_index(index)
    if moved is not None:
        return PathChange((moved, *path[1:]), change.change), seq
    assert isinstance(seq, Splice)  # only a splice deletes
    i = index - seq.offset
    before = list(seq.before)
    before[i] = at(path[1:], change.change).apply(before[i])
    return IDENTITY, Splice(seq.offset, before, seq.after)


def merge_splices(a: Splice, b: Splice) -> tuple[Change, Change]:
    """``(b', a')`` for two splices of one string or list."""
    if a.on_text != b.on_text:
        raise TypeMismatchError("a text splice and a list splice cannot apply to the same value")
    o1, e1, o2, e2 = a.offset, a.end, b.offset, b.end
    shares = max(o1, o2) < min(e1, e2)
    inside = (o1 == e1 and o2 < o1 < e2) or (o2 == e2 and o1 < o2 < e1)
    if not (shares or inside):
        if e1 <= o2:  # a wholly before b (or both only insert, at one offset: a wins)
            return _shifted(b, a), a
        return b, _shifted(a, b)
    a_first = o1 <= o2  # ranges that start together: a wins
    return _overlapped(b, a, second_first=a_first), _overlapped(a, b, second_first=not a_first)


def _shifted(right: Splice, left: Splice) -> Splice:
    """``right`` after ``left``, which is wholly before it."""
    return Splice(right.offset + len(left.after) - len(left.before), right.before, right.after)


def _overlapped(mine: Splice, theirs: Splice, *, second_first: bool) -> Change:
    """``mine`` after ``theirs``, for overlapping splices.

    The merged value deletes both ranges and inserts both ``after``s at the start
    of the union; ``second_first`` says whether ``theirs.after`` comes first there.
    """
    empty = mine.before[:0]
    if second_first:  # theirs starts first: mine keeps what is past theirs' range
        rest = mine.before[theirs.end - mine.offset :] if mine.end > theirs.end else empty
        return Splice(theirs.offset + len(theirs.after), rest, mine.after)
    # mine starts first (or ties and wins): delete up to theirs' start, insert, and
    # delete what of mine lies past theirs' range, after theirs' insertion
    head = Splice(mine.offset, mine.before[: theirs.offset - mine.offset], mine.after)
    if mine.end <= theirs.end:
        return join([head])
    tail_at = mine.offset + len(mine.after) + len(theirs.after)
    tail = Splice(tail_at, mine.before[theirs.end - mine.offset :], empty)
    return join([head, tail])
