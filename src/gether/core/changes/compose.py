"""Composition: one change for "this, then that", simplified where a simpler form exists.

The simplifications, tried at each junction of the two sequences:

* anything next to a Replace of the same value folds into one Replace (a
  Replace carries the whole value, so the other change is applied to it);
* splices that touch or overlap fold into one splice;
* a move of the block another move just moved folds into one move;
* a PathChange into an element a splice just inserted folds into the
  splice's ``after``; a splice deleting an element a PathChange just changed
  folds it into the splice's ``before``;
* PathChanges at the same place, or one inside the other, compose inside.

Anything else stays a ChangeSet of the two.
"""

from __future__ import annotations

from gether.core.changes.model import (
    Change,
    ChangeSet,
    Move,
    PathChange,
    Replace,
    Splice,
    at,
    flatten,
    is_identity,
    join,
    unwrap,
)


def compose(first: Change, second: Change) -> Change:
    """One change equivalent to ``first`` then ``second``."""
    done = flatten([first])
    for change in flatten([second]):
        current: Change | None = change
        while done and current is not None:
            folded = _fold(done[-1], current)
            if folded is None:
                break
            done.pop()
            current = None if is_identity(folded) else folded
        if current is not None:
            done.append(current)
    return join(done)


def _fold(first: Change, second: Change) -> Change | None:
    """``first`` then ``second`` as one change that is not a ChangeSet, if there is one."""
    match first, second:
        case Replace(), Replace():
            return Replace(first.before, second.after)
        case Replace(), _:
            return Replace(first.before, second.apply(first.after))
        case _, Replace():
            return Replace(first.invert().apply(second.before), second.after)
        case Splice(), Splice():
            return _fold_splices(first, second)
        case Move(), Move():
            return _fold_moves(first, second)
        case PathChange(), PathChange():
            return _fold_paths(first, second)
        case Splice(), PathChange():
            return _fold_into_insert(first, second)
        case PathChange(), Splice():
            return _fold_into_delete(first, second)
    return None


def _fold_splices(first: Splice, second: Splice) -> Splice | None:
    if first.on_text != second.on_text:
        return None
    o1, o2 = first.offset, second.offset
    out_end = o1 + len(first.after)  # the end of first's insertion, in first's result
    if o2 > out_end or second.end < o1:
        return None  # apart: neither touches the other
    start = min(o1, o2)
    b2 = second.before
    prefix = b2[: o1 - o2] if o2 < o1 else b2[:0]
    suffix = b2[out_end - o2 :] if second.end > out_end else b2[:0]
    region = prefix + first.after + suffix  # type: ignore[operator]  # same kind, checked
    before = prefix + first.before + suffix  # type: ignore[operator]
    after = region[: o2 - start] + second.after + region[second.end - start :]  # type: ignore[operator]
    return Splice(start, before, after)


def _fold_moves(first: Move, second: Move) -> Change | None:
    if second.offset != first.offset + first.distance or second.count != first.count:
        return None
    return join([Move(first.offset, first.count, first.distance + second.distance)])


def _fold_paths(first: PathChange, second: PathChange) -> Change | None:
    p, q = tuple(first.path), tuple(second.path)
    n = min(len(p), len(q))
    if p[:n] != q[:n]:
        return None
    common = p[:n]
    inner = compose(at(p[n:], first.change), at(q[n:], second.change))
    if isinstance(unwrap(inner), ChangeSet):
        return None
    return at(common, inner)


def _fold_into_insert(first: Splice, second: PathChange) -> Splice | None:
    path = tuple(second.path)
    index = path[0]
    if first.on_text or not isinstance(index, int):
        return None
    i = index - first.offset
    if not 0 <= i < len(first.after):
        return None
    after = list(first.after)
    after[i] = at(path[1:], second.change).apply(after[i])
    return Splice(first.offset, first.before, after)


def _fold_into_delete(first: PathChange, second: Splice) -> Splice | None:
    path = tuple(first.path)
    index = path[0]
    if second.on_text or not isinstance(index, int):
        return None
    i = index - second.offset
    if not 0 <= i < len(second.before):
        return None
    before = list(second.before)
    before[i] = at(path[1:], first.change).invert().apply(before[i])
    return Splice(second.offset, before, second.after)
