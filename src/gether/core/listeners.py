"""Change listeners: what turns one plain JSON value into another, and who hears it.

:func:`diff` compares two plain JSON values and gives the changes (the
vocabulary of :mod:`gether.core.changes`) whose application in order turns
the first into the second. :class:`ChangeListeners` keeps, for each listener,
the value it saw last at its path, and on every notification hands it the
diff from that to the value now there. So a listener always gets exactly
what turns its previous view into the current one, whatever happened in
between (local edits, remote batches, rollbacks), and a mirror kept only from
those changes always equals the document.

Pure: no document, no I/O. ``gether.core.document.Document.on_change`` wires
it to a document.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gether.core.changes.model import (
    MISSING,
    Change,
    Json,
    Move,
    Path,
    PathChange,
    Replace,
    Splice,
    copy_json,
)

ChangeCallback = Callable[[list[Change]], object]
"""Called with the changes (relative to the listener's path), in order."""
Render = Callable[[Path], Json]
"""The plain JSON value at a path now, or :data:`MISSING` if there is none."""

__all__ = ["ChangeCallback", "ChangeListeners", "Render", "diff", "raise_first", "same"]


# -- diff ------------------------------------------------------------------------


def diff(before: Json, after: Json) -> list[Change]:
    """Changes whose application in order turns ``before`` into ``after``.

    Plain JSON on both sides (``dict``, ``list``, ``str``, ``int``, ``float``,
    ``bool``, ``None``), or :data:`MISSING` for "no value". Equality is strict:
    ``True``, ``1`` and ``1.0`` are three values, and so are ``0.0`` and ``-0.0``.

    * maps: one ``PathChange((key,), ...)`` per key that changed; an added or
      removed key is a ``Replace`` from or to ``MISSING``; a key whose value is
      a map, list or string on both sides is compared inside;
    * strings: one ``Splice`` of the part between the common prefix and suffix
      (offsets in code points);
    * lists of one length: a single element moved becomes one ``Move``;
      otherwise the elements are compared index by index;
    * lists of different lengths: one ``Splice`` between the common prefix and
      suffix;
    * anything else that differs (a type change, a scalar): one ``Replace``.

    ``before`` and ``after`` are not modified. The changes carry copies of
    what they insert (they share nothing with ``after``), and may share parts
    of ``before`` (as the ``before`` of a Replace or Splice).
    """
    out: list[Change] = []
    _diff(before, after, (), out)
    return out


def _at(path: Path, change: Change) -> Change:
    return PathChange(path, change) if path else change


def _diff(a: Json, b: Json, path: Path, out: list[Change]) -> None:
    if a is b:
        return
    kind = type(a)
    if kind is type(b):
        if kind is dict:
            _diff_maps(a, b, path, out)
            return
        if kind is list:
            _diff_lists(a, b, path, out)
            return
        if kind is str:
            if a != b:
                out.append(_at(path, _splice_text(a, b)))
            return
        if same(a, b):
            return
    out.append(_at(path, Replace(a, copy_json(b))))


def _splice_text(a: str, b: str) -> Splice:
    start = common_prefix(a, b)
    end = common_suffix(a, b, min(len(a), len(b)) - start)
    return Splice(start, a[start : len(a) - end], b[start : len(b) - end])


def _diff_maps(a: dict[str, Json], b: dict[str, Json], path: Path, out: list[Change]) -> None:
    for key, old in a.items():
        if key in b:
            _diff(old, b[key], (*path, key), out)
        else:
            out.append(PathChange((*path, key), Replace(old, MISSING)))
    for key, new in b.items():
        if key not in a:
            out.append(PathChange((*path, key), Replace(MISSING, copy_json(new))))


def _diff_lists(a: list[Json], b: list[Json], path: Path, out: list[Change]) -> None:
    n, m = len(a), len(b)
    limit = min(n, m)
    start = 0
    while start < limit and same(a[start], b[start]):
        start += 1
    end = 0  # elements equal at the end, after the common prefix
    while end < limit - start and same(a[n - 1 - end], b[m - 1 - end]):
        end += 1
    if n != m:
        inserted = [copy_json(item) for item in b[start : m - end]]
        out.append(_at(path, Splice(start, a[start : n - end], inserted)))
        return
    stop = n - end
    move = _single_move(a, b, start, stop)
    if move is not None:
        out.append(_at(path, move))
        return
    for index in range(start, stop):
        _diff(a[index], b[index], (*path, index), out)


def _single_move(a: list[Json], b: list[Json], start: int, stop: int) -> Move | None:
    """The Move of one element that turns ``a[start:stop]`` into ``b[start:stop]``, if any
    (both ends of the range differ, so the element moves across the whole range)."""
    count = stop - start
    if count < 2:
        return None
    if same(a[start], b[stop - 1]) and all(same(a[i + 1], b[i]) for i in range(start, stop - 1)):
        return Move(start, 1, count - 1)
    if same(a[stop - 1], b[start]) and all(same(a[i], b[i + 1]) for i in range(start, stop - 1)):
        return Move(stop - 1, 1, 1 - count)
    return None


def common_prefix(a: str, b: str) -> int:
    """How many code points ``a`` and ``b`` share at the start.

    A binary search comparing slices (C speed): each step compares half of
    what is still unknown, so the work is linear, in C, with log n Python steps.
    """
    low, high = 0, min(len(a), len(b))  # a[:low] == b[:low], and the answer <= high
    while low < high:
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def common_suffix(a: str, b: str, limit: int) -> int:
    """How many code points ``a`` and ``b`` share at the end, at most ``limit``."""
    n, m = len(a), len(b)
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if a[n - mid : n - low] == b[m - mid : m - low]:
            low = mid
        else:
            high = mid - 1
    return low


def same(a: Json, b: Json) -> bool:
    """Strict JSON equality: the same types all the way down (``True != 1 != 1.0``,
    ``0.0 != -0.0``)."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return a == b and all(same(v, b[k]) for k, v in a.items())
    if kind is list:
        return a == b and all(map(same, a, b))
    if kind is float:
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


# -- listeners --------------------------------------------------------------------


class _Entry:
    __slots__ = ("active", "callback", "path", "view")

    def __init__(self, path: Path, callback: ChangeCallback, view: Json) -> None:
        self.path = path
        self.callback = callback
        self.view = view
        self.active = True


class ChangeListeners:
    """Callbacks on paths, each called with what changed there since it last heard.

    ``render(path)`` reads the value at a path now. :meth:`notify` renders each
    watched path once, diffs it against each listener's previous view, and
    calls every listener whose view changed, once, with the non-empty list of
    changes (paths in the changes are relative to the listener's path).

    * A callback that raises does not stop the others: every callback runs,
      then the first exception is raised (with a note counting the others).
    * A callback that changes the document (so that :meth:`notify` is called
      again while callbacks run) is not re-entered: the new notification is
      delivered after every callback of the current one ran, so each listener
      gets its changes in order.
    * A listener added or removed by a callback takes effect at once: a new
      one starts from the value at its path when it was added; a removed one
      is not called any more, even later in the same notification.
    """

    def __init__(self, render: Render) -> None:
        self._render = render
        self._entries: list[_Entry] = []
        self._busy = False
        self._again = False

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, path: Sequence[str | int], callback: ChangeCallback) -> Callable[[], None]:
        """Listen at ``path`` from its value now; return the function that stops it."""
        entry = _Entry(tuple(path), callback, self._render(tuple(path)))
        self._entries.append(entry)

        def remove() -> None:
            if entry.active:
                entry.active = False
                self._entries.remove(entry)

        return remove

    def notify(self) -> None:
        """Tell every listener what changed at its path since it last heard."""
        if self._busy:
            self._again = True
            return
        self._busy = True
        errors: list[Exception] = []
        try:
            again = True
            while again:
                self._again = False
                for entry, view, changes in self._collect():
                    if not entry.active:
                        continue
                    entry.view = view
                    if changes:
                        try:
                            entry.callback(list(changes))
                        except Exception as exc:  # re-raised below, after the others ran
                            errors.append(exc)
                again = self._again
        finally:
            self._busy = False
        raise_first(errors)

    def _collect(self) -> list[tuple[_Entry, Json, list[Change]]]:
        """Each listener with the new value at its path and the changes to it;
        each path is rendered once, and each distinct previous view diffed once."""
        by_path: dict[Path, list[_Entry]] = {}
        for entry in self._entries:
            by_path.setdefault(entry.path, []).append(entry)
        found: dict[int, tuple[Json, list[Change]]] = {}
        for path, entries in by_path.items():
            view = self._render(path)
            diffs: dict[int, list[Change]] = {}
            for entry in entries:
                old = entry.view
                changes = diffs.get(id(old))
                if changes is None:
                    changes = diffs[id(old)] = diff(old, view)
                found[id(entry)] = (view, changes)
        return [(entry, *found[id(entry)]) for entry in self._entries]


def raise_first(errors: Sequence[Exception]) -> None:
    """Raise the first of ``errors`` (if any), noting how many more there were."""
    if not errors:
        return
    first = errors[0]
    if len(errors) > 1:
        first.add_note(f"{len(errors) - 1} more callback(s) raised too; this was the first")
    raise first
