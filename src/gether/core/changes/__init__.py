"""Index-based changes to plain JSON (operational transformation).

``Replace``, ``Splice``, ``Move``, ``PathChange`` and ``ChangeSet`` are frozen
values that ``apply`` to plain JSON, ``invert`` without a document (each one
carries what it replaced), ``compose`` and ``merge``:
``b2, a2 = a.merge(b)`` gives ``a2.apply(b.apply(x)) == b2.apply(a.apply(x))`` (TP1).

**Ties: the receiver wins.** ``a.merge(b)`` gives the value in which ``a`` wins
every tie: of two Replaces of one value ``a``'s stays; of two insertions at one
offset ``a``'s comes first; an item both changes moved ends where ``a`` put it.
``b.merge(a)`` is the mirror: it gives the value in which ``b`` wins. The two
give the same value whenever nothing ties. So two sides that must converge
agree on who the receiver is (for example: the change the server ordered
first), and call ``first.merge(second)`` on both sides.

Rules that hold whoever the receiver is: a Replace beats a change at or below
its value (the other change is dropped and folded into the Replace's
``before``); a Splice that deletes a list element beats a change inside that
element (likewise folded into its ``before``); deletions unite; a PathChange
follows its list element through a Splice or a Move. Details in
:mod:`~gether.core.changes.merge` and :mod:`~gether.core.changes.pieces`.

**Map keys.** ``PathChange(("k",), Replace(MISSING, v))`` creates key ``k``,
``PathChange(("k",), Replace(v, MISSING))`` deletes it; ``MISSING`` (also
``Replace.MISSING``) stands for "absent". List elements come and go by Splice.
"""

from gether.core.changes.model import (
    IDENTITY,
    MISSING,
    Change,
    ChangeSet,
    Json,
    Missing,
    Move,
    PathChange,
    Replace,
    Splice,
)

__all__ = [
    "IDENTITY",
    "MISSING",
    "Change",
    "ChangeSet",
    "Json",
    "Missing",
    "Move",
    "PathChange",
    "Replace",
    "Splice",
]
