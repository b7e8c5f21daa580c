"""Merging a Move with a Splice or another Move, by replaying both on pieces.

Neither change knows the whole sequence, but together they cut it at a few
offsets (where each one starts and ends). Items between two neighbouring cuts
travel together, so a merge replays both changes on a handful of *pieces*
(the ranges between cuts, plus one piece per non-empty insertion), builds the
merged order of the pieces, and gives each side the difference between what it
holds and that order: moves of pieces, then one left-to-right pass of splices.
That makes TP1 hold by construction; the rules below only choose the order.

* **Move and Splice** (no tie: the same result whichever is the receiver). The
  splice's deletions win: deleted items are gone, from the moved range too. Its
  insertion goes where its offset goes: inside one of the move's two blocks it
  travels with that block; at the boundary between them it follows the moved
  block (after it for a move right, before it for a move left); at either end
  of the move's range it stays outside.
* **Move and Move** (the receiver wins). The receiver's block is taken out of
  the other's result, keeping the order the items have there, and put back next
  to the item the receiver moved it next to: after the last item it passed
  going right, before the first one it passed going left. Items both changes
  moved end where the receiver put them.

The differences keep the shape of the original change where they can: the
items a move moved are preferred as the ones moved again, so a Move usually
stays a single Move with the same direction, and a Splice becomes at most a
ChangeSet of splices (its deleted range may be cut in two by the move).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TypeAlias

from gether.core.changes.model import Change, Items, Move, Splice, join

Edit: TypeAlias = Splice | Move


def merge_moves(a: Edit, b: Edit) -> tuple[Change, Change]:
    """``(b', a')`` for a Move and a Splice or Move of the same sequence (``a`` wins ties)."""
    pieces = _Pieces(a, b)
    if isinstance(a, Move) and isinstance(b, Move):
        final = pieces.moves_merged(a, b)
        hint_a, hint_b = pieces.block(a), pieces.block(b)
    elif isinstance(a, Move):
        assert isinstance(b, Splice)
        final, hint_a = pieces.move_splice_merged(a, b, "b")
        hint_b = set()
    else:
        assert isinstance(b, Move)
        final, hint_b = pieces.move_splice_merged(b, a, "a")
        hint_a = set()
    after_a, after_b = pieces.replay(a, "a"), pieces.replay(b, "b")
    return pieces.diff(after_a, final, hint_b), pieces.diff(after_b, final, hint_a)


def _cuts(change: Edit) -> tuple[int, ...]:
    if isinstance(change, Splice):
        return change.offset, change.end
    return change.bounds()


class _Pieces:
    """The pieces two changes cut a sequence into; a piece is an int."""

    def __init__(self, a: Edit, b: Edit) -> None:
        self.changes = {"a": a, "b": b}
        cuts = sorted({0, *_cuts(a), *_cuts(b)})
        self.spans = list(pairwise(cuts))
        self.at = {cut: i for i, cut in enumerate(cuts)}  # the piece starting at a cut
        self.lengths = [end - start for start, end in self.spans]
        self.inserted: dict[str, int] = {}
        self.empty: Items = ()
        for role, change in self.changes.items():
            if isinstance(change, Splice):
                self.empty = change.before[:0]  # type: ignore[assignment]  # str or tuple
                if change.after:
                    self.inserted[role] = len(self.lengths)
                    self.lengths.append(len(change.after))

    # -- replaying --------------------------------------------------------

    def replay(self, change: Edit, role: str) -> list[int]:
        """The pieces in the order ``change`` leaves them."""
        base = list(range(len(self.spans)))
        if isinstance(change, Splice):
            middle = [self.inserted[role]] if role in self.inserted else []
            return base[: self.at[change.offset]] + middle + base[self.at[change.end] :]
        p, q, r = (self.at[cut] for cut in change.bounds())
        return base[:p] + base[q:r] + base[p:q] + base[r:]

    def block(self, move: Move) -> set[int]:
        """The pieces ``move`` moves."""
        return set(range(self.at[move.offset], self.at[move.offset + move.count]))

    def move_splice_merged(
        self, move: Move, splice: Splice, role: str
    ) -> tuple[list[int], set[int]]:
        """The merged order of a move and a splice, and the pieces the move moves in it."""
        spliced = self.replay(splice, role)
        start, end = self.at[splice.offset], self.at[splice.end]
        grown = 1 if role in self.inserted else 0

        def gap(cut: int, after_insertion: bool) -> int:
            if cut < splice.offset:
                return self.at[cut]
            if cut == splice.offset:
                return start + (grown if after_insertion else 0)
            if cut < splice.end:
                return start + grown
            return start + grown + self.at[cut] - end

        p, q, r = move.bounds()
        gp, gq, gr = gap(p, True), gap(q, move.distance > 0), gap(r, False)
        final = spliced[:gp] + spliced[gq:gr] + spliced[gp:gq] + spliced[gr:]
        moved = spliced[gp:gq] if move.distance > 0 else spliced[gq:gr]
        return final, set(moved)

    def moves_merged(self, winner: Move, other: Move) -> list[int]:
        """The merged order of two moves, ``winner``'s block where ``winner`` put it."""
        block = self.block(winner)
        moved = self.replay(other, "b")
        rest = [piece for piece in moved if piece not in block]
        taken = [piece for piece in moved if piece in block]
        if winner.distance > 0:  # after the last piece it passed
            anchor = self.at[winner.offset + winner.count + winner.distance] - 1
            place = rest.index(anchor) + 1
        else:  # before the first piece it passed
            place = rest.index(self.at[winner.offset + winner.distance])
        return rest[:place] + taken + rest[place:]

    # -- differences ------------------------------------------------------

    def diff(self, start: list[int], goal: list[int], hint: set[int]) -> Change:
        """Changes that turn ``start`` into ``goal``: moves, then splices."""
        common = set(start) & set(goal)
        order = [piece for piece in goal if piece in common]
        kept = self._kept([piece for piece in start if piece in common], order, hint)
        current, changes = list(start), list[Change]()
        k = 0
        while k < len(order):
            if order[k] in kept:
                k += 1
                continue
            first = current.index(order[k])
            size = 1  # a run of pieces to move that are already together, in order
            while (
                k + size < len(order)
                and order[k + size] not in kept
                and first + size < len(current)
                and current[first + size] == order[k + size]
            ):
                size += 1
            if k:
                target = current.index(order[k - 1]) + 1
            else:
                target = current.index(next(piece for piece in order if piece in kept))
            current = self._move(current, first, size, target, common, changes)
            k += size
        changes.extend(self._splices(current, goal, common))
        return join(changes)

    def _move(
        self,
        current: list[int],
        first: int,
        size: int,
        target: int,
        common: set[int],
        changes: list[Change],
    ) -> list[int]:
        """Move ``current[first:first + size]`` to the gap before ``current[target]``."""
        between = current[first + size : target] if target > first else current[target:first]
        if all(piece not in common for piece in between):
            return current  # only pieces about to be deleted lie between
        block = current[first : first + size]
        offset, count = self._width(current[:first]), self._width(block)
        gap = self._width(current[:target])
        distance = gap - offset - count if target > first else gap - offset
        changes.append(Move(offset, count, distance))
        rest = current[:first] + current[first + size :]
        place = target - size if target > first else target
        return rest[:place] + block + rest[place:]

    def _splices(self, current: list[int], goal: list[int], common: set[int]) -> list[Change]:
        """Left to right: delete what ``goal`` lacks, insert what ``current`` lacks."""
        changes: list[Change] = []
        i = j = position = 0
        while i < len(current) or j < len(goal):
            deleted, inserted = [], []
            while i < len(current) and current[i] not in common:
                deleted.append(current[i])
                i += 1
            while j < len(goal) and goal[j] not in common:
                inserted.append(goal[j])
                j += 1
            if deleted or inserted:
                after = self._content(inserted)
                changes.append(Splice(position, self._content(deleted), after))
                position += len(after)
            if i < len(current) and j < len(goal):
                position += self.lengths[current[i]]
                i += 1
                j += 1
        return changes

    def _kept(self, start: list[int], order: list[int], hint: set[int]) -> set[int]:
        """The pieces that stay put: a heaviest increasing subsequence of ``start``.

        Pieces outside ``hint`` weigh more than any number of pieces in it, so the
        pieces a move moved are the ones chosen to move again.
        """
        rank = {piece: i for i, piece in enumerate(order)}
        heavy = sum(self.lengths) + 1
        weights = [self.lengths[p] + (0 if p in hint else heavy) for p in start]
        best, back = list(weights), [-1] * len(start)
        for i in range(len(start)):
            for j in range(i):
                if rank[start[j]] < rank[start[i]] and best[j] + weights[i] > best[i]:
                    best[i], back[i] = best[j] + weights[i], j
        kept: set[int] = set()
        i = max(range(len(start)), key=best.__getitem__, default=-1)
        while i >= 0:
            kept.add(start[i])
            i = back[i]
        return kept

    def _width(self, pieces: Iterable[int]) -> int:
        return sum(self.lengths[piece] for piece in pieces)

    def _content(self, pieces: Sequence[int]) -> Items:
        parts = [self._piece_content(piece) for piece in pieces]
        if isinstance(self.empty, str):
            return "".join(parts)  # type: ignore[arg-type]  # text pieces are strings
        return tuple(item for part in parts for item in part)

    def _piece_content(self, piece: int) -> Items:
        for role, change in self.changes.items():
            if not isinstance(change, Splice):
                continue
            if self.inserted.get(role) == piece:
                return change.after  # type: ignore[return-value]  # str or tuple
            if piece < len(self.spans):
                start, end = self.spans[piece]
                if change.offset <= start and end <= change.end:
                    return change.before[start - change.offset : end - change.offset]  # type: ignore[return-value]
        raise AssertionError(f"piece {piece} has no known content")  # pragma: no cover
