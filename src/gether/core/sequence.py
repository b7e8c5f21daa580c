"""The sequence CRDT under Text and List: ordered elements that every replica
integrates into the same order, whatever order the inserts arrive in.

Each element has an id ``(replica, counter)`` and two origins, the ids of its
neighbours when it was inserted. Concurrent inserts between the same origins
are ordered by the YjsMod / FugueMax rule (Gentle and Kleppmann, "Eg-walker";
Weidner et al., "The Art of the Fugue"), which never interleaves two runs typed
concurrently at the same place.

Storage is run-length encoded: consecutive elements by one replica, with
consecutive counters, inserted left to right, share one ``Run`` whose inner
elements have implicit origins (left = the previous element, right = the run's
right origin). Typing a paragraph costs one run, not one entry per character.
Deleted elements stay as tombstones (their ids are needed to place later
inserts) but no longer count towards the visible length.

Runs live in a list of small blocks, each caching its visible length, and a
cursor remembers the last block visited, so edits near the previous one (the
common case when typing) find their place without scanning from the start.
On top of it, a hint remembers the live run the last local edit touched and
its position: typing on at its end, or deleting back into it, needs no search
at all. Only local edits keep the hint; anything else drops it.
A per-replica index finds the run holding a given id: a dict from run starts
to runs, and the starts in order for ids inside a run. Local edits only add to
the dict and note new starts; the order is brought up to date when a lookup
needs it (a remote edit), so typing never pays for keeping it sorted.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterator
from typing import Any

from gether.core.ids import OpId

_BLOCK_MAX = 48
_FAR = 1 << 62
_START_KEY = (-1, 0, 0)
_END_KEY = (_FAR, 0, 0)

Span = tuple[str, int, int]
"""``(replica, counter, length)``: a range of consecutive element ids."""


class Run:
    """Consecutive elements of one replica stored as one entry."""

    __slots__ = ("block", "content", "counter", "deleted", "left", "length", "replica", "right")

    def __init__(
        self,
        replica: str,
        counter: int,
        length: int,
        content: Any,
        left: OpId | None,
        right: OpId | None,
        deleted: bool,
        block: Block,
    ) -> None:
        self.replica = replica
        self.counter = counter
        self.length = length
        self.content = content
        self.left = left
        self.right = right
        self.deleted = deleted
        self.block = block

    def __repr__(self) -> str:
        state = "deleted" if self.deleted else "live"
        return f"Run({self.replica}:{self.counter}+{self.length} {state} {self.content!r})"


class Block:
    __slots__ = ("runs", "size", "visible")

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.visible = 0
        self.size = 0


class _ReplicaIndex:
    """The runs of one replica by start: ``runs`` is always exact; ``starts``
    is sorted but may lack the starts in ``pending`` and hold ``stale`` ones
    whose run was folded into the run before it (see ``Sequence.find``)."""

    __slots__ = ("pending", "runs", "stale", "starts")

    def __init__(self, runs: dict[int, Run]) -> None:
        self.runs = runs
        self.starts = sorted(runs)
        self.pending: list[int] = []
        self.stale = 0

    def tidy(self) -> None:
        """Bring ``starts`` up to date (few new starts: insert them; else rebuild)."""
        pending = self.pending
        starts = self.starts
        if len(pending) <= 16 and self.stale * 2 <= len(starts):
            for start in pending:
                insort(starts, start)
        else:
            self.starts = sorted(self.runs)
            self.stale = 0
        pending.clear()


class Sequence:
    """An ordered, run-length encoded set of elements with tombstones.

    ``content`` of a run is a ``str`` for text; for lists it is ``None`` (each
    element is its own value slot) or, for a slot made by a move, the id of the
    element that moved there.
    """

    __slots__ = ("_cursor", "_hint", "_hint_pos", "_index", "blocks", "text", "visible")

    def __init__(self, text: bool) -> None:
        self.text = text
        self.blocks: list[Block] = [Block()]
        self.visible = 0
        self._cursor = (0, 0)
        # a live run in the cursor's block, and the position of its first
        # element; only local edits set it, every other change clears it
        self._hint: Run | None = None
        self._hint_pos = 0
        self._index: dict[str, _ReplicaIndex] = {}

    # -- looking things up -------------------------------------------------

    def rebuild_index(self) -> None:
        """Index every run at once (faster than one by one, for loading)."""
        by_replica: dict[str, dict[int, Run]] = {}
        for block in self.blocks:
            for run in block.runs:
                runs = by_replica.get(run.replica)
                if runs is None:
                    runs = by_replica[run.replica] = {}
                runs[run.counter] = run
        self._index = {r: _ReplicaIndex(runs) for r, runs in by_replica.items()}

    def _add_to_index(self, run: Run) -> None:
        entry = self._index.get(run.replica)
        if entry is None:
            entry = self._index[run.replica] = _ReplicaIndex({})
        entry.runs[run.counter] = run
        entry.pending.append(run.counter)

    def find(self, element: OpId) -> tuple[Run, int] | None:
        """The run holding ``element`` and its offset in it, if any."""
        entry = self._index.get(element[0])
        if entry is None:
            return None
        runs = entry.runs
        counter = element[1]
        exact = runs.get(counter)
        if exact is not None:
            return exact, 0
        if entry.pending or entry.stale * 2 > len(entry.starts):
            entry.tidy()
        starts = entry.starts
        i = bisect_right(starts, counter) - 1
        while True:
            if i < 0:
                return None
            found = runs.get(starts[i])
            if found is not None:
                break
            # a stale start: its ids now belong to a run that starts before it
            i -= 1
        run: Run = found
        offset = counter - run.counter
        if offset >= run.length:
            return None
        return run, offset

    def contains_span(self, replica: str, counter: int, length: int) -> bool:
        """True if every id of the span is an element of this sequence."""
        end = counter + length
        while counter < end:
            found = self.find((replica, counter))
            if found is None:
                return False
            run, offset = found
            counter += run.length - offset
        return True

    def _locate(self, pos: int) -> tuple[int, int, int, int]:
        """``(block index, visible count before block, run index, offset)`` of
        the pos-th visible element (0 <= pos < visible)."""
        blocks = self.blocks
        bi, prefix = self._cursor
        if bi >= len(blocks):
            bi, prefix = 0, 0
        if pos >= prefix:
            while pos >= prefix + blocks[bi].visible:
                prefix += blocks[bi].visible
                bi += 1
        else:
            while prefix > pos:
                bi -= 1
                prefix -= blocks[bi].visible
        self._cursor = (bi, prefix)
        rest = pos - prefix
        runs = blocks[bi].runs
        ri = 0
        while True:
            run = runs[ri]
            if not run.deleted:
                if rest < run.length:
                    return bi, prefix, ri, rest
                rest -= run.length
            ri += 1

    def _locate_near(self, pos: int) -> tuple[int, int, int, int]:
        """``_locate``, starting from the hint when ``pos`` is at or after it in
        the same block (the cursor's): a short scan instead of a search."""
        hint = self._hint
        if hint is not None and self._hint_pos <= pos:
            bi, prefix = self._cursor
            blocks = self.blocks
            if bi < len(blocks) and blocks[bi] is hint.block:
                runs = hint.block.runs
                ri = runs.index(hint)
                rest = pos - self._hint_pos
                end = len(runs)
                while ri < end:
                    run = runs[ri]
                    if not run.deleted:
                        if rest < run.length:
                            return bi, prefix, ri, rest
                        rest -= run.length
                    ri += 1
        return self._locate(pos)

    def _key(self, element: OpId | None, start: bool) -> tuple[int, int, int]:
        """A sortable key for an element's place in the sequence."""
        if element is None:
            return _START_KEY if start else _END_KEY
        found = self.find(element)
        if found is None:  # callers check references before integrating
            raise KeyError(element)
        run, offset = found
        block = run.block
        return self.blocks.index(block), block.runs.index(run), offset

    def run_at(self, pos: int) -> tuple[Run, int]:
        bi, _, ri, offset = self._locate(pos)
        return self.blocks[bi].runs[ri], offset

    # -- structure ---------------------------------------------------------

    def _split(self, run: Run, offset: int) -> Run:
        """Cut ``run`` before ``offset``; return the new right part."""
        block = run.block
        content = run.content
        if self.text:
            right_content: Any = content[offset:]
            run.content = content[:offset]
        else:
            right_content = content
        tail = Run(
            run.replica,
            run.counter + offset,
            run.length - offset,
            right_content,
            (run.replica, run.counter + offset - 1),
            run.right,
            run.deleted,
            block,
        )
        run.length = offset
        runs = block.runs
        runs.insert(runs.index(run) + 1, tail)
        self._add_to_index(tail)
        if len(runs) > _BLOCK_MAX:
            self._split_block(block)
        return tail

    def _split_block(self, block: Block) -> None:
        half = len(block.runs) // 2
        new = Block()
        new.runs = block.runs[half:]
        del block.runs[half:]
        for run in new.runs:
            run.block = new
            new.size += run.length
            if not run.deleted:
                new.visible += run.length
        block.size -= new.size
        block.visible -= new.visible
        bi = self.blocks.index(block)
        self.blocks.insert(bi + 1, new)
        if self._cursor[0] > bi:
            self._cursor = (0, 0)

    def _place(self, block: Block, ri: int, run: Run) -> None:
        block.runs.insert(ri, run)
        block.size += run.length
        if not run.deleted:
            block.visible += run.length
            self.visible += run.length
        self._add_to_index(run)
        if len(block.runs) > _BLOCK_MAX:
            self._split_block(block)

    # -- local edits -------------------------------------------------------

    def local_insert(
        self, pos: int, replica: str, counter: int, length: int, content: Any
    ) -> tuple[OpId | None, OpId | None]:
        """Insert new elements before the pos-th visible one (after any tombstones
        that precede it); return their origins ``(left, right)``."""
        blocks = self.blocks
        hint = self._hint
        if (
            hint is not None
            and pos == self._hint_pos + hint.length
            and hint.replica == replica
            and hint.counter + hint.length == counter
            and hint.right is not None
            and (self.text or (content is None and hint.content is None))
        ):
            # typing on at the end of the last run typed: it grows if the
            # element after it is still its right origin, and visible
            runs = hint.block.runs
            ri = runs.index(hint) + 1
            if ri < len(runs):
                following = runs[ri]
                origin = hint.right
                if (
                    not following.deleted
                    and following.counter == origin[1]
                    and following.replica == origin[0]
                    and self._cursor[0] < len(blocks)
                    and blocks[self._cursor[0]] is hint.block
                ):
                    # _extend, inlined: this is the path of most keystrokes
                    if self.text:
                        hint.content += content
                    hint.length += length
                    block = hint.block
                    block.size += length
                    block.visible += length
                    self.visible += length
                    return (replica, counter - 1), origin
        if pos >= self.visible:
            bi = len(blocks) - 1
            while bi > 0 and not blocks[bi].runs:
                bi -= 1
            block = blocks[bi]
            ri = len(block.runs)
            right: OpId | None = None
            if ri:
                prev: Run | None = block.runs[-1]
            else:
                prev = None
            # the blocks after this one are empty: what comes before it
            self._cursor = (bi, self.visible - block.visible)
        else:
            bi, _, ri, offset = self._locate_near(pos)
            block = blocks[bi]
            run = block.runs[ri]
            if offset:
                self._split(run, offset)
                block = run.block
                ri = block.runs.index(run) + 1
                prev = run
                right = (run.replica, run.counter + offset)
                if block is not blocks[bi]:
                    self._cursor = (0, 0)
            else:
                right = (run.replica, run.counter)
                if ri:
                    prev = block.runs[ri - 1]
                elif bi:
                    prev = blocks[bi - 1].runs[-1]
                    # extending it would change the count before the cursor
                    self._cursor = (0, 0)
                else:
                    prev = None
        left: OpId | None
        if prev is None:
            left = None
        else:
            left = (prev.replica, prev.counter + prev.length - 1)
            if (
                not prev.deleted
                and prev.replica == replica
                and prev.counter + prev.length == counter
                and prev.right == right
                and (self.text or (content is None and prev.content is None))
            ):
                self._extend(prev, length, content)
                self._hint = prev
                self._hint_pos = pos + length - prev.length
                return left, right
        new = Run(replica, counter, length, content, left, right, False, block)
        self._place(block, ri, new)
        self._hint = new
        self._hint_pos = pos
        return left, right

    def _extend(self, run: Run, length: int, content: Any) -> None:
        if self.text:
            run.content += content
        run.length += length
        block = run.block
        block.size += length
        block.visible += length
        self.visible += length

    def local_delete(self, pos: int, count: int) -> list[Span]:
        """Delete ``count`` visible elements from ``pos``; return their id spans."""
        spans: list[Span] = []
        hint = self._hint
        hint_pos = self._hint_pos
        bi, prefix, ri, offset = self._locate_near(pos)
        self._hint = None
        run = self.blocks[bi].runs[ri]
        if offset:
            run = self._split(run, offset)
        remaining = count
        while remaining:
            if run.deleted:
                run = self._next_run(run)
                continue
            if run.length > remaining:
                self._split(run, remaining)
            replica, counter, length = run.replica, run.counter, run.length
            run = self._mark_deleted(run)
            remaining -= length
            if spans and spans[-1][0] == replica and spans[-1][1] + spans[-1][2] == counter:
                last = spans[-1]
                spans[-1] = (replica, last[1], last[2] + length)
            else:
                spans.append((replica, counter, length))
            if remaining:
                run = self._next_run(run)
        self._cursor = (0, 0) if bi >= len(self.blocks) else (bi, prefix)
        if hint is not None and hint_pos < pos:
            # it still starts there and is live: the deletion began after its start
            self._hint = hint
            self._hint_pos = hint_pos
        return spans

    def _next_run(self, run: Run) -> Run:
        block = run.block
        runs = block.runs
        ri = runs.index(run) + 1
        if ri < len(runs):
            return runs[ri]
        bi = self.blocks.index(block) + 1
        while not self.blocks[bi].runs:
            bi += 1
        return self.blocks[bi].runs[0]

    def _mark_deleted(self, run: Run) -> Run:
        """Tombstone a run and fold it into equal neighbours; return the run
        that now holds it."""
        run.deleted = True
        block = run.block
        block.visible -= run.length
        self.visible -= run.length
        if self.text:
            run.content = ""  # history keeps the text; the state only needs lengths
        runs = block.runs
        ri = runs.index(run)
        if ri + 1 < len(runs) and self._mergeable(run, runs[ri + 1]):
            self._absorb(run, runs, ri + 1)
        if ri and self._mergeable(runs[ri - 1], run):
            self._absorb(runs[ri - 1], runs, ri)
            return runs[ri - 1]
        return run

    def _mergeable(self, first: Run, second: Run) -> bool:
        return (
            first.deleted is second.deleted
            and first.replica == second.replica
            and first.counter + first.length == second.counter
            and second.right == first.right
            and second.left == (first.replica, second.counter - 1)
            and (self.text or (first.content is None and second.content is None))
        )

    def _absorb(self, first: Run, runs: list[Run], index: int) -> None:
        second = runs.pop(index)
        first.length += second.length
        if self.text:
            first.content += second.content
        entry = self._index[second.replica]
        del entry.runs[second.counter]
        entry.stale += 1  # its start stays in ``starts`` until the next tidy

    # -- remote edits ------------------------------------------------------

    def delete_span(self, replica: str, counter: int, length: int) -> list[Span]:
        """Delete the elements of a span (idempotent); return the spans newly deleted."""
        self._hint = None
        newly: list[Span] = []
        end = counter + length
        while counter < end:
            found = self.find((replica, counter))
            if found is None:
                raise KeyError((replica, counter))
            run, offset = found
            if run.deleted:
                counter += run.length - offset
                continue
            if offset:
                run = self._split(run, offset)
            if run.counter + run.length > end:
                self._split(run, end - run.counter)
            newly.append((run.replica, run.counter, run.length))
            counter = run.counter + run.length
            self._mark_deleted(run)
        if newly:
            self._cursor = (0, 0)
        return newly

    def integrate(
        self,
        replica: str,
        counter: int,
        length: int,
        content: Any,
        left: OpId | None,
        right: OpId | None,
        deleted: bool = False,
    ) -> Run:
        """Place elements received from another replica (or replayed)."""
        self._hint = None
        if left is not None and left[0] == replica and left[1] == counter - 1 and not deleted:
            extended = self._continue_run(counter, length, content, left, right)
            if extended is not None:
                return extended
        left_run: Run | None = None
        if left is not None:
            left_run, offset = self.find(left) or _missing(left)
            if offset + 1 < left_run.length:
                self._split(left_run, offset + 1)
        if right is not None:
            run, offset = self.find(right) or _missing(right)
            if offset:
                self._split(run, offset)
        self._cursor = (0, 0)
        blocks = self.blocks
        # Where scanning starts: the run right after `left`.
        if left_run is None:
            bi, ri = 0, 0
        else:
            block = left_run.block
            bi, ri = blocks.index(block), block.runs.index(left_run) + 1
        # Nothing concurrent between the origins (the usual case): the run
        # after `left` is `right`, or the end, and the new run goes there.
        next_bi, next_ri, following = self._first_from(bi, ri)
        if _ends_at(following, right):
            return self._insert_at(
                next_bi, next_ri, replica, counter, length, content, left, right, deleted
            )
        key_left = self._key(left, True)
        key_right = self._key(right, False)
        dest_bi, dest_ri = bi, ri
        scanning = False
        while True:
            runs = blocks[bi].runs
            if ri >= len(runs):
                if bi + 1 >= len(blocks):
                    break
                bi += 1
                ri = 0
                continue
            if not scanning:
                dest_bi, dest_ri = bi, ri
            other = runs[ri]
            if right is not None and other.replica == right[0] and other.counter == right[1]:
                break
            other_left = self._key(other.left, True)
            if other_left < key_left:
                break
            if other_left == key_left:
                other_right = self._key(other.right, False)
                if other_right < key_right:
                    scanning = True
                elif other_right == key_right:
                    if replica < other.replica:
                        break
                    scanning = False
                else:
                    scanning = False
            ri += 1
        if not scanning:
            dest_bi, dest_ri = bi, ri
        return self._insert_at(
            dest_bi, dest_ri, replica, counter, length, content, left, right, deleted
        )

    def _continue_run(
        self, counter: int, length: int, content: Any, left: OpId, right: OpId | None
    ) -> Run | None:
        """Typing on: extend the run that ends at ``left``, its author's
        previous element, if it has the same right origin and is followed by
        it (nothing concurrent there). What the general path would do, without
        looking ``right`` up or scanning; None if it does not apply."""
        found = self.find(left)
        if found is None:
            return None
        run, offset = found
        if (
            offset + 1 != run.length
            or run.deleted
            or run.right != right
            or not (self.text or (content is None and run.content is None))
        ):
            return None
        block = run.block
        _, _, following = self._first_from(self.blocks.index(block), block.runs.index(run) + 1)
        if not _ends_at(following, right):
            return None
        self._cursor = (0, 0)
        self._extend(run, length, content)
        return run

    def _first_from(self, bi: int, ri: int) -> tuple[int, int, Run | None]:
        """The first run at or after run ``ri`` of block ``bi`` (past empty
        blocks), and where it is; None: the end."""
        blocks = self.blocks
        while ri >= len(blocks[bi].runs) and bi + 1 < len(blocks):
            bi, ri = bi + 1, 0
        runs = blocks[bi].runs
        return bi, ri, runs[ri] if ri < len(runs) else None

    def _insert_at(
        self,
        dest_bi: int,
        dest_ri: int,
        replica: str,
        counter: int,
        length: int,
        content: Any,
        left: OpId | None,
        right: OpId | None,
        deleted: bool,
    ) -> Run:
        """Put integrated elements at their place: extend the run before, or a new run."""
        block = self.blocks[dest_bi]
        prev = self._run_before(dest_bi, dest_ri)
        if (
            prev is not None
            and not deleted
            and not prev.deleted
            and prev.replica == replica
            and prev.counter + prev.length == counter
            and prev.right == right
            and left == (prev.replica, prev.counter + prev.length - 1)
            and (self.text or (content is None and prev.content is None))
        ):
            self._extend(prev, length, content)
            return prev
        new = Run(replica, counter, length, content, left, right, deleted, block)
        self._place(block, dest_ri, new)
        return new

    def _run_before(self, bi: int, ri: int) -> Run | None:
        if ri:
            return self.blocks[bi].runs[ri - 1]
        while bi:
            bi -= 1
            if self.blocks[bi].runs:
                return self.blocks[bi].runs[-1]
        return None

    # -- reading -----------------------------------------------------------

    def runs(self) -> Iterator[Run]:
        for block in self.blocks:
            yield from block.runs

    def visible_runs(self) -> Iterator[Run]:
        for block in self.blocks:
            if block.visible:
                for run in block.runs:
                    if not run.deleted:
                        yield run

    def to_text(self) -> str:
        return "".join(run.content for run in self.visible_runs())

    def element_ids(self) -> Iterator[OpId]:
        """Visible element ids in order (list slots)."""
        for run in self.visible_runs():
            for i in range(run.length):
                yield (run.replica, run.counter + i)

    def __len__(self) -> int:
        return self.visible


def _missing(element: OpId) -> tuple[Run, int]:
    raise KeyError(element)


def _ends_at(following: Run | None, right: OpId | None) -> bool:
    """Is ``following`` (None: the end) the right origin ``right`` (None: the
    end)? Then nothing concurrent lies between an insert's origins."""
    if following is None:
        return right is None
    return right is not None and following.replica == right[0] and following.counter == right[1]
