"""Per-document access control: roles held in the document, judged on each
event's causal past.

The policy is the reserved top-level map ``gether:access`` (``ACCESS_NAME``),
written only through ``doc.access`` (:class:`Access`). Each entry grants one
role to one principal at one path::

    "<principal> <pointer>"  ->  "reader" | "writer" | "admin"

``principal`` is ``*`` (everyone) or the hex id of an Ed25519 key
(``Event.key_id``); ``pointer`` is a JSON pointer of map keys (``/`` for the
whole document, ``/todos``). A principal's role at a path is the highest of
its grants and the grants to ``*`` at that path or above it. Writing at a
path needs ``writer`` (or ``admin``) there; changing the policy needs
``admin`` at ``/``. An op writes at its container's path (found from where
the container was created, which never changes), plus the key for map ops.

A document whose access map has no entry at all is *open*: everyone is
admin (the behaviour of documents without a policy). The event that makes
the first entry must grant its own author ``admin`` at ``/``
(``doc.access.grant`` does so). Deleting entries never reopens a document.

Every event is judged on the policy *at its parents*, so every replica
reaches the same verdict whatever else it holds: the present policy when its
parents are the receiver's heads or when every policy event the receiver
holds is in its causal past (the usual cases), else the policy events of its
causal past replayed into a small state (cached per set of such events).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from gether.core.containers import DELETED, MapState
from gether.core.event import Event
from gether.core.ids import ROOT, ContainerId, EventKey, named_container
from gether.core.ops import LIST_INSERT, LIST_SET, MAP_DELETE, MAP_SET, Op, op_length
from gether.core.state import DocState
from gether.core.values import Kind, NamedRef, NewContainer
from gether.errors import AccessDeniedError, AccessRejectedError, UsageError

if TYPE_CHECKING:
    from gether.core.document import Document

ACCESS_NAME: Final = "gether:access"
"""The reserved top-level name of the policy map."""
ACCESS_ID: Final[ContainerId] = named_container(ACCESS_NAME, Kind.MAP)
_ACCESS_PREFIX: Final = ACCESS_ID[0]

ROLES: Final[Mapping[str, int]] = {"reader": 1, "writer": 2, "admin": 3}
"""Each role's rank: a higher role may do what a lower one may."""
READER, WRITER, ADMIN = 1, 2, 3
EVERYONE: Final = "*"

Path = tuple[str | None, ...]
"""Map keys from the root; ``None`` for a list element (no grant names one)."""

_HEX = frozenset("0123456789abcdef")
_CACHE_SIZE = 64


# -- principals, paths, entry keys ---------------------------------------------------


def principal_of(key_id: bytes | str) -> str:
    """The principal a grant names: ``"*"``, or a key id (bytes or hex)."""
    if isinstance(key_id, bytes):
        return key_id.hex()
    if isinstance(key_id, str) and (key_id == EVERYONE or _is_hex(key_id)):
        return key_id.lower()
    raise UsageError(f"a principal is a key id (bytes or hex) or '*', not {key_id!r}")


def _is_hex(text: str) -> bool:
    return 0 < len(text) <= 128 and len(text) % 2 == 0 and set(text.lower()) <= _HEX


def parse_path(path: str | Sequence[str]) -> tuple[str, ...]:
    """``"/todos/a~1b"`` (a JSON pointer) or a sequence of keys: the map keys."""
    if not isinstance(path, str):
        keys = tuple(path)
        if not all(isinstance(k, str) for k in keys):
            raise UsageError(f"an access path is made of map keys, not {path!r}")
        return keys
    if path in ("", "/"):
        return ()
    if not path.startswith("/"):
        raise UsageError(f"an access path is a JSON pointer starting with '/', not {path!r}")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))


def pointer(path: Sequence[str]) -> str:
    """The JSON pointer of map keys (``/`` for the root)."""
    return "/" + "/".join(k.replace("~", "~0").replace("/", "~1") for k in path)


def entry_key(principal: str, path: Sequence[str]) -> str:
    return f"{principal} {pointer(path)}"


def parse_entry(key: str) -> tuple[str, tuple[str, ...]] | None:
    """``(principal, path)`` of a policy entry's key, or None if malformed."""
    principal, space, where = key.partition(" ")
    if not space or not (principal == EVERYONE or (_is_hex(principal) and principal.islower())):
        return None
    if not where.startswith("/"):
        return None
    return principal, parse_path(where)


# -- the policy ------------------------------------------------------------------------


class Policy:
    """The grants in force at some version: principal -> [(path, rank)]."""

    __slots__ = ("grants",)

    def __init__(self, grants: dict[str, list[tuple[tuple[str, ...], int]]]) -> None:
        self.grants = grants

    def rank(self, principal: str, path: Path) -> int:
        """The highest rank ``principal`` holds at ``path`` (0: none)."""
        best = 0
        for who in (principal, EVERYONE):
            for scope, rank in self.grants.get(who, ()):
                if rank > best and path[: len(scope)] == scope:
                    best = rank
        return best

    def roles(self, principal: str) -> dict[str, str]:
        """Pointer -> role of the grants naming ``principal`` itself."""
        names = {rank: name for name, rank in ROLES.items()}
        return {pointer(scope): names[rank] for scope, rank in self.grants.get(principal, ())}


def policy_of(state: DocState) -> Policy | None:
    """The policy held by a state; None while the document is open."""
    container = state.containers.get(ACCESS_ID)
    if not isinstance(container, MapState) or not container.entries:
        return None
    grants: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for key, register in container.entries.items():
        write = register.winner()
        if write is None or write[3] is DELETED:
            continue
        parsed = parse_entry(key)
        rank = ROLES.get(write[3]) if isinstance(write[3], str) else None
        if parsed is not None and rank is not None:
            grants.setdefault(parsed[0], []).append((parsed[1], rank))
    return Policy(grants)


def is_policy_op(op: Op) -> bool:
    """Whether an op writes the policy map or its link at the root."""
    container: ContainerId = op[1]
    if container == ROOT:
        return op[0] in (MAP_SET, MAP_DELETE) and op[2] == ACCESS_NAME
    return container[0] == _ACCESS_PREFIX


def touches_policy(event: Event) -> bool:
    return any(map(is_policy_op, event.ops))


# -- the guard -------------------------------------------------------------------------


class AccessGuard:
    """One document's access checks, and what it caches to make them cheap:
    the present policy, the policy events it holds, containers' paths, and
    policies at past versions."""

    __slots__ = ("_current", "_granting", "_history", "_past", "_paths", "_touched", "me")

    def __init__(self, key_id: bytes) -> None:
        self.me = key_id.hex()
        self._current: Policy | object | None = _STALE
        self._history: list[Event] | None = None
        self._past: dict[tuple[EventKey, ...], Policy | None] = {}
        self._paths: dict[ContainerId, Path] = {}
        self._granting = False
        self._touched = False
        """A local op of the open transaction wrote the policy (a rolled-back
        one leaves it set: the next local event is then looked at, no harm)."""

    # -- the present ------------------------------------------------------------------

    def current(self, doc: Document) -> Policy | None:
        """The policy of the present state (during a transaction: as it began,
        which is the causal past of the event it will make)."""
        found = self._current
        if found is _STALE:
            found = self._current = policy_of(doc._state)
        return found  # type: ignore[return-value]

    def forget(self) -> None:
        """The state was rebuilt or the policy changed."""
        self._current = _STALE
        self._paths.clear()

    def recorded(self, event: Event, local: bool = False) -> None:
        """An event entered the log (local or received)."""
        if local:  # only ``doc.access`` writes the policy here: no need to look
            if not self._touched:
                return
            self._touched = False
        if touches_policy(event):
            self.policy_written(event)

    def policy_written(self, event: Event) -> None:
        """A recorded event wrote the policy."""
        self._current = _STALE
        if self._history is not None:
            self._history.append(event)

    # -- local edits ------------------------------------------------------------------

    def allows(self, doc: Document, container_id: ContainerId, key: str | None) -> bool:
        policy = self.current(doc)
        if policy is None:
            return True
        return policy.rank(self.me, self._written(doc, container_id, key, {})) >= WRITER

    def check_local(self, doc: Document, container_id: ContainerId, key: str | None) -> None:
        """Before a local op writes ``key`` of a container (``None``: not a map
        op): raise ``AccessDeniedError`` if this replica's key may not."""
        if self._current is None and key is None and container_id[0] != _ACCESS_PREFIX:
            return  # open, and not the policy (the test every keystroke makes)
        reserved = (container_id == ROOT and key == ACCESS_NAME) or (
            container_id[0] == _ACCESS_PREFIX
        )
        if self._current is None and not reserved:
            return  # open
        if reserved:
            if not self._granting:
                raise UsageError(f"{ACCESS_NAME!r} is reserved: change it through doc.access")
            policy = self.current(doc)
            if policy is not None and policy.rank(self.me, ()) < ADMIN:
                raise AccessDeniedError("/", "changing the access policy needs admin on /")
            self._touched = True
            return
        policy = self.current(doc)
        if policy is None:
            return
        path = self._written(doc, container_id, key, {})
        if policy.rank(self.me, path) < WRITER:
            raise AccessDeniedError(_shown(path), "needs writer")

    # -- received events --------------------------------------------------------------

    def check_event(self, doc: Document, event: Event, vector: Mapping[str, int]) -> bool:
        """Judge a received event (its ops already checked as ops) on the policy
        at its parents; raise ``AccessRejectedError`` if it may not be applied.
        ``vector``: its causal past on replicas other than its author.
        Returns whether it writes the policy (then call ``policy_written``
        once it is recorded)."""
        policy_ops: list[Op] = []
        for op in event.ops:
            if is_policy_op(op):
                bad = _malformed(op)
                if bad is not None:
                    raise AccessRejectedError("/", bad, event.id)
                policy_ops.append(op)
            elif op[0] in _LINKING and _links_policy(op):
                raise AccessRejectedError("/", f"links {ACCESS_NAME!r} elsewhere", event.id)
        if not policy_ops and self._history is not None and not self._history:
            return False  # never closed: open in every past
        principal = event.key_id.hex()
        policy = self._at_parents(doc, event, vector)
        if policy is None:  # open: everyone is admin
            if policy_ops and not _grants_itself_admin(policy_ops, principal):
                reason = "the first policy event must grant its author admin on /"
                raise AccessRejectedError("/", reason, event.id)
            return bool(policy_ops)
        if policy_ops and policy.rank(principal, ()) < ADMIN:
            reason = "changing the access policy needs admin on /"
            raise AccessRejectedError("/", reason, event.id)
        if policy.rank(principal, ()) >= WRITER:
            return bool(policy_ops)  # may write everywhere
        places = _places(event)
        for op in event.ops:
            if not is_policy_op(op):
                path = self._written(doc, op[1], _key_of(op), places)
                if policy.rank(principal, path) < WRITER:
                    raise AccessRejectedError(_shown(path), "needs writer", event.id)
        return False

    def _at_parents(self, doc: Document, event: Event, vector: Mapping[str, int]) -> Policy | None:
        history = self._history
        if history is None:
            history = self._history = [e for e in doc._log.events_since(None) if touches_policy(e)]
        if not history:
            return None  # never closed: open in every past
        log = doc._log
        if len(event.parents) == len(log.heads) and all(p in log.heads for p, _ in event.parents):
            return self.current(doc)
        author, seq = event.id
        included = tuple(
            e.id
            for e in history
            if (e.id[0] == author and e.id[1] < seq) or vector.get(e.id[0], 0) >= e.id[1]
        )
        if len(included) == len(history):
            return self.current(doc)
        if included in self._past:
            return self._past[included]
        wanted = set(included)
        found = policy_of(_replayed(e for e in history if e.id in wanted))
        if len(self._past) >= _CACHE_SIZE:
            self._past.clear()
        self._past[included] = found
        return found

    # -- paths -------------------------------------------------------------------------

    def _written(
        self,
        doc: Document,
        container_id: ContainerId,
        key: str | None,
        places: Mapping[ContainerId, tuple[ContainerId, str | None]],
    ) -> Path:
        path = self._path(doc, container_id, places)
        return (*path, key) if key is not None else path

    def _path(
        self,
        doc: Document,
        container_id: ContainerId,
        places: Mapping[ContainerId, tuple[ContainerId, str | None]],
    ) -> Path:
        """Where a container sits: from where it was created, which never
        changes (``places``: containers the event being judged creates)."""
        cached = self._paths.get(container_id)
        if cached is not None:
            return cached
        found = doc._state.place_keys(container_id, places)
        if found is None:
            return ()  # unreachable for valid states: judge it as the root
        path, placed = found
        if placed:
            self._paths[container_id] = path
        return path

    # -- granting ---------------------------------------------------------------------

    def granting(self) -> _Granting:
        return _Granting(self)


class _Granting:
    """While open, local writes to the policy map pass the reserved-name check."""

    __slots__ = ("_guard",)

    def __init__(self, guard: AccessGuard) -> None:
        self._guard = guard

    def __enter__(self) -> None:
        self._guard._granting = True

    def __exit__(self, *_: object) -> None:
        self._guard._granting = False


_STALE: Final = object()


def _shown(path: Path) -> tuple[str | int, ...]:
    return tuple(k if k is not None else "-" for k in path)


def _key_of(op: Op) -> str | None:
    return op[2] if op[0] in (MAP_SET, MAP_DELETE) else None


def _places(event: Event) -> dict[ContainerId, tuple[ContainerId, str | None]]:
    """Where an event's ops put the containers they create."""
    places: dict[ContainerId, tuple[ContainerId, str | None]] = {}
    author, counter = event.id[0], event.counter
    for op in event.ops:
        kind = op[0]
        if kind in (MAP_SET, LIST_SET) and type(op[3]) is NewContainer:
            places[(author, counter)] = (op[1], op[2] if kind == MAP_SET else None)
        elif kind == LIST_INSERT:
            for i, value in enumerate(op[4]):
                if type(value) is NewContainer:
                    places[(author, counter + i)] = (op[1], None)
        counter += op_length(op)
    return places


_LINKING: Final = frozenset((MAP_SET, LIST_SET, LIST_INSERT))
"""The op kinds that write a value, which could link the policy elsewhere."""


def _links_policy(op: Op) -> bool:
    kind = op[0]
    if kind in (MAP_SET, LIST_SET):
        value = op[3]
        return type(value) is NamedRef and value.name == ACCESS_NAME
    if kind == LIST_INSERT:
        return any(type(v) is NamedRef and v.name == ACCESS_NAME for v in op[4])
    return False


def _malformed(op: Op) -> str | None:
    """Why a policy op is not one ``doc.access`` could have made, if it is not."""
    kind, container = op[0], op[1]
    if container == ROOT:
        if kind == MAP_SET and op[3] == NamedRef(ACCESS_NAME, Kind.MAP):
            return None
        return f"the root key {ACCESS_NAME!r} only links the policy map"
    if container != ACCESS_ID:
        return f"{ACCESS_NAME!r} is a map"
    if kind not in (MAP_SET, MAP_DELETE) or parse_entry(op[2]) is None:
        return f"malformed policy entry {op[2] if kind in (MAP_SET, MAP_DELETE) else op!r}"
    if kind == MAP_SET and (not isinstance(op[3], str) or op[3] not in ROLES):
        return f"a policy entry holds a role (reader, writer, admin), not {op[3]!r}"
    return None


def _grants_itself_admin(ops: Sequence[Op], principal: str) -> bool:
    """Whether the ops leave ``principal`` admin on ``/`` (the last write wins)."""
    key = entry_key(principal, ())
    last: Any = None
    for op in ops:
        if op[1] == ACCESS_ID and op[2] == key:
            last = op[3] if op[0] == MAP_SET else None
    return bool(last == "admin")


def _replayed(events: Iterator[Event] | Sequence[Event]) -> DocState:
    """A state holding the policy ops of ``events`` (a causally closed set)."""
    state = DocState()
    for event in events:
        counter = event.counter
        for op in event.ops:
            if is_policy_op(op):
                state.apply(op, event.id[0], counter, event.hlc)
            counter += op_length(op)
    return state


# -- the public facade ----------------------------------------------------------------


class Access:
    """``doc.access``: read and change the document's access policy."""

    __slots__ = ("_doc",)

    def __init__(self, doc: Document) -> None:
        self._doc = doc

    @property
    def is_open(self) -> bool:
        """True while the document has no policy (everyone is admin)."""
        return self._doc._access.current(self._doc) is None

    def grant(self, key_id: bytes | str, role: str, path: str | Sequence[str] = "/") -> None:
        """Give ``key_id`` (or ``"*"``) ``role`` at ``path`` (replacing its
        role there). Needs admin on ``/``; on an open document, this replica's
        key is made admin on ``/`` in the same event."""
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r} (reader, writer, admin)")
        self._write({entry_key(principal_of(key_id), parse_path(path)): role})

    def revoke(self, key_id: bytes | str, path: str | Sequence[str] | None = None) -> None:
        """Take back ``key_id``'s grant at ``path`` (every grant if None)."""
        principal = principal_of(key_id)
        keys = self._keys(principal)
        if path is not None:
            wanted = entry_key(principal, parse_path(path))
            keys = [k for k in keys if k == wanted]
        if keys:
            self._write(dict.fromkeys(keys, DELETED))

    def roles(self, key_id: bytes | str) -> dict[str, str]:
        """``{pointer: role}`` of the grants naming ``key_id`` (not ``"*"``)."""
        policy = self._doc._access.current(self._doc)
        if policy is None:
            return {"/": "admin"}
        return policy.roles(principal_of(key_id))

    def role(self, key_id: bytes | str, path: str | Sequence[str] = "/") -> str | None:
        """The role ``key_id`` holds at ``path`` (its grants and ``"*"``'s)."""
        policy = self._doc._access.current(self._doc)
        if policy is None:
            return "admin"
        rank = policy.rank(principal_of(key_id), parse_path(path))
        return next((name for name, r in ROLES.items() if r == rank), None)

    def can_write(self, key_id: bytes | str, path: str | Sequence[str] = "/") -> bool:
        return ROLES.get(self.role(key_id, path) or "", 0) >= WRITER

    def is_admin(self, key_id: bytes | str) -> bool:
        return self.role(key_id, "/") == "admin"

    def grants(self) -> list[tuple[str, str, str]]:
        """Every grant in force: ``(principal, pointer, role)``, sorted."""
        policy = self._doc._access.current(self._doc)
        if policy is None:
            return []
        names = {rank: name for name, rank in ROLES.items()}
        return sorted(
            (who, pointer(scope), names[rank])
            for who, scoped in policy.grants.items()
            for scope, rank in scoped
        )

    def _keys(self, principal: str) -> list[str]:
        container = self._doc._state.containers.get(ACCESS_ID)
        if not isinstance(container, MapState):
            return []
        state = self._doc._state
        return [
            k
            for k in container.entries
            if k.partition(" ")[0] == principal and state.map_value(container, k) is not DELETED
        ]

    def _write(self, entries: Mapping[str, Any]) -> None:
        doc = self._doc
        guard = doc._access
        with doc.transaction(), guard.granting():
            if guard.current(doc) is None:
                # the event that closes an open document makes its author admin
                entries = {**entries, entry_key(guard.me, ()): "admin"}
            container_id = doc._named(ACCESS_NAME, Kind.MAP)
            container = doc._container(container_id, Kind.MAP)
            for key, value in entries.items():
                doc._map_write(container, key, value)


__all__ = [
    "ACCESS_NAME",
    "ROLES",
    "Access",
    "AccessGuard",
    "Policy",
    "is_policy_op",
    "policy_of",
]
