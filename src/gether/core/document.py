"""A replica of one document: local edits become events, remote events are
checked and integrated, and the state is always a function of the event set.

This is the pure core: the replica id, signing key and clock are given to it
(``gether.Document`` supplies defaults from the environment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol, Self

from gether.core import proxies
from gether.core.access import ACCESS_NAME, Access, AccessGuard
from gether.core.changes.model import MISSING
from gether.core.containers import (
    DELETED,
    CounterState,
    ListState,
    MapState,
    Register,
    SetState,
    TextState,
)
from gether.core.event import Event, Parent
from gether.core.hlc import Clock, HybridClock
from gether.core.ids import ROOT, ContainerId, EventId, EventKey, OpId, Version, check_replica_id
from gether.core.keys import SigningKey
from gether.core.listeners import ChangeCallback, ChangeListeners, raise_first
from gether.core.oplog import EventLog, Past, TipLog, check_first_key
from gether.core.ops import (
    COUNTER_ADD,
    LIST_INSERT,
    LIST_SET,
    MAP_DELETE,
    MAP_SET,
    SEQ_DELETE,
    SET_ADD,
    SET_REMOVE,
    TEXT_INSERT,
    Op,
    op_length,
)
from gether.core.policy import (
    CONTAINER_POLICIES,
    LWW,
    MergeFunction,
    PolicyNode,
    custom_name,
    derived_name,
)
from gether.core.sealed import DocumentKey, Encrypted, KeyRing, NonceSource
from gether.core.snapshot import SavedDocument, decode_document, encode_document, encode_saved
from gether.core.state import DocState, OpContext
from gether.core.values import (
    SET_KINDS,
    Kind,
    NamedRef,
    Scalar,
    check_int,
    check_key,
    check_scalar,
    check_text,
    element_key,
)
from gether.errors import (
    DecodeError,
    EncryptionKeyError,
    GetherError,
    HashMismatchError,
    InvalidEventError,
    InvalidKeyError,
    OutOfRangeError,
    ReadOnlyError,
    RejectedEventsError,
    TypeMismatchError,
    UsageError,
)

if TYPE_CHECKING:
    from gether.core.schema import Schema, Violation
    from gether.core.validation import SchemaGuard

PathLike = str | tuple[str | int, ...] | list[str | int]
EventListener = Callable[[Sequence[Event], bool], None]
"""Called with events just recorded, and whether they are local edits."""


class Journal(Protocol):
    """Where a durable replica writes its events (``gether.Document.open``)."""

    def write_local(self, event: Event) -> None:
        """Make a local event durable; if this raises, the event does not happen."""
        ...

    def write_received(self, events: Sequence[Event]) -> None:
        """Make events just applied from elsewhere durable."""
        ...

    def written(self, doc: Document) -> None:
        """The document now holds what was written (a moment to snapshot it)."""
        ...


VOUCH_EVERY = 256
"""In what a replica exports, one of its events in this many is signed: a
receiver holds events it cannot yet authenticate until a later signed one
of their author vouches for them (through the hash chain), and servers
bound how many they hold per sender (``Limits.max_parked_events``), so a
long offline run sent in batches must not wait for its very last event."""


class Document:
    """One replica of a document (see API.md for the public surface)."""

    def __init__(
        self,
        replica_id: str,
        key: SigningKey,
        clock: Clock | None = None,
        *,
        policies: PolicyNode | None = None,
        merges: Mapping[str, MergeFunction] | None = None,
        schema: Schema | Mapping[str, Any] | None = None,
        signed: bool = True,
    ) -> None:
        self._replica = check_replica_id(replica_id)
        self._signed = signed
        self._key = key
        self._clock_source = clock
        self._clock = HybridClock(clock)
        self._state = DocState()
        self._log_value: EventLog | None = EventLog(self._replica)
        self._log_value.accept_unsigned = not signed
        self._log_value.bind_key(self._replica, key.key_id, None)
        self._saved: SavedDocument | None = None
        self._tips: TipLog | None = None
        self._read_only = False
        self._journal: Journal | None = None
        self._listeners: list[EventListener] = []
        self._changes: ChangeListeners | None = None
        self._unlisten_changes: Callable[[], None] | None = None
        # the open transaction
        self._depth = 0
        self._ops: list[Op] | None = None
        self._counter = 0
        self._txn_hlc = 0
        self._tip: tuple[int, bytes | None, int] = (0, None, 0)
        self._guard: SchemaGuard | None = None
        self._access = AccessGuard(key.key_id)
        self._keyring: KeyRing | None = None
        self._strict_reads = True
        self._set_policies(policies, merges)
        if schema is not None:
            if policies is not None:
                raise UsageError("pass a schema or policies, not both")
            self._use_schema(schema)

    def _use_schema(self, schema: Schema | Mapping[str, Any]) -> None:
        """Validate every edit and received event against ``schema`` (a JSON
        Schema, see ``core/schema``), whose ``x-merge`` keywords give the fields'
        policies."""
        from gether.core.schema import compile_schema
        from gether.core.validation import SchemaGuard

        compiled = compile_schema(schema)
        merges = self._merges or self._default_merges()
        self._set_policies(compiled.root, merges)
        self._guard = SchemaGuard(compiled)

    def unlock(self, *keys: DocumentKey, nonces: NonceSource | None = None) -> None:
        """Hold document keys: encrypted fields then read as their plain values,
        and ``x-encrypt`` fields are written sealed under the key given last.
        ``nonces(n)`` gives fresh random bytes (``gether.Document``: os.urandom).
        See ``core/sealed.py``."""
        ring = self._keyring
        if ring is None:
            ring = KeyRing(nonces if nonces is not None else self._default_nonces())
        elif nonces is not None:
            ring.nonces = nonces
        for key in keys:
            ring.add(key)
        self._keyring = ring

    @property
    def locked(self) -> bool:
        """Does this replica hold no document key (encrypted fields read as
        ``Encrypted`` markers)?"""
        return self._keyring is None or not len(self._keyring)

    def _reveal(self, container_id: ContainerId, key: str, value: bytes) -> Any:
        """An encrypted map value as read: opened with the keys held, or an
        ``Encrypted`` marker without them."""
        marker = Encrypted(value, container_id, key)
        return self._keyring.read(marker, self._strict_reads) if self._keyring else marker

    def _reveal_json(self, value: Any) -> Any:
        return self._keyring.reveal(value, self._strict_reads) if self._keyring else value

    def _lenient_get(self, where: PathLike) -> Any:
        """``get`` for change listeners and ``validate``: a value that does not
        open (a writer's fault, already applied) reads as its ``Encrypted``
        marker rather than failing the ``apply_events`` that brought it."""
        self._strict_reads = False
        try:
            return self.get(where, MISSING)
        finally:
            self._strict_reads = True

    @property
    def access(self) -> Access:
        """The document's access policy: roles per key id and path, held in the
        document (see ``core/access.py`` and docs/architecture.md)."""
        return Access(self)

    @property
    def schema(self) -> Schema | None:
        """The schema every edit and received event is validated against, if any."""
        return self._guard.schema if self._guard is not None else None

    def validate(self) -> list[Violation]:
        """Every way the current state breaks the schema (``[]`` without one).

        Each event was valid on its own causal past, but merging concurrent
        valid events can still break constraints on a container's state
        (``maxItems``, ``uniqueItems``, ``pattern``...); such violations stay
        (convergence wins) until an edit repairs them. See docs/architecture.md.
        """
        return self._guard.violations(self) if self._guard is not None else []

    def _set_policies(
        self, policies: PolicyNode | None, merges: Mapping[str, MergeFunction] | None
    ) -> None:
        """Where fields' merge policies come from (the schema's nodes), and the
        custom merge functions they may name."""
        self._policies = policies
        self._merges: Mapping[str, MergeFunction] = merges if merges is not None else {}
        self._nodes: dict[ContainerId, PolicyNode | None] = {}
        self._state.merge_for = self._merge_for if policies is not None else None

    @property
    def _log(self) -> EventLog:
        log = self._log_value
        if log is None:
            log = self._materialize()
        return log

    def _materialize(self) -> EventLog:
        """Decode the history of a loaded document, the first time it is needed."""
        saved = self._saved
        assert saved is not None
        self._log_value = log = EventLog(self._replica)
        log.accept_unsigned = not self._signed
        log.bind_key(self._replica, self._key.key_id, None)
        self._replay(saved.events(), state=False)
        tips = self._tips
        if tips is not None:
            if not tips.describes(log):
                self._log_value = None
                raise DecodeError("saved summary does not match the saved history")
            self._replay(tips.events, state=False)
        self._saved = None
        self._tips = None
        return log

    def _local_log(self) -> EventLog | TipLog:
        """Where a local event goes: the log, or the tips of a loaded history
        that is still encoded."""
        if self._log_value is None and self._tips is not None:
            return self._tips
        return self._log

    # -- saving and loading -------------------------------------------------------

    def save(self) -> bytes:
        """The whole document (state, history and waiting events) as bytes."""
        self._commit_if_open()
        log = self._log_value
        if log is None and (self._tips is None or not self._tips.events):
            assert self._saved is not None
            return encode_saved(self._saved)
        log = self._log
        staged = [e.to_bytes() for e in log.staged.values()]
        chain = log.chains.get(self._replica)
        if chain and chain[-1].signature is None and self._signed:
            chain[-1].sign(self._key)
        return encode_document(self._state, log.chains, log.heads, staged, self._clock.last)

    def saved_with(self, tail: Sequence[Event]) -> bytes:
        """What ``save()`` gives once ``tail`` is applied: events known valid
        (stored by a server), parents first, that follow what this document
        holds. Their ops go to the state and they join the history, and
        nothing else is worked out (no checks, no causal pasts, no decoding a
        loaded history into a log): a server's snapshot job replayed the whole
        history for that, most of the job. Use the document no further."""
        self._commit_if_open()
        log = self._log_value
        if log is not None:
            history = log.events_since(None)
        else:
            assert self._saved is not None
            history = self._saved.events()
        chains: dict[str, list[Event]] = {}
        heads: dict[EventKey, bytes] = {}
        for events in (history, tail):
            for event in events:
                chains.setdefault(event.id[0], []).append(event)
                for parent, _ in event.parents:
                    heads.pop(parent, None)
                heads[event.id] = event.hash
        state = self._state
        for event in tail:
            _apply_ops(state, event)
            self._clock.observe(event.hlc)
        return encode_document(state, chains, heads, [], self._clock.last)

    @classmethod
    def load(
        cls,
        data: bytes,
        replica_id: str | None = None,
        key: SigningKey | None = None,
        clock: Clock | None = None,
        *,
        schema: Schema | Mapping[str, Any] | None = None,
        signed: bool = True,
    ) -> Self:
        """Open a saved document as a replica (a new one unless ``replica_id`` and
        its ``key`` are given). Only the state is decoded now; history waits
        until something needs it. ``schema`` validates what happens next (the
        saved events are not checked again)."""
        saved = decode_document(data)
        replica_id, key = cls._identity(replica_id, key)
        doc = cls._blank(replica_id, key, clock if clock is not None else cls._default_clock())
        doc.signed = signed
        bound = saved.key_of(check_replica_id(replica_id))
        if bound is not None and bound != key.key_id:
            raise UsageError(f"replica {replica_id} signs with another key: pass its key")
        doc._use_state(saved.state)
        doc._log_value = None
        doc._saved = saved
        doc._tips = saved.tips()
        doc._clock.observe(saved.max_hlc())
        if schema is not None:
            doc._use_schema(schema)
        if saved.staged:
            # they were waiting before the save and may wait again
            with suppress(RejectedEventsError):
                doc.apply_events(saved.staged)
        return doc

    # -- identity -----------------------------------------------------------

    @property
    def replica_id(self) -> str:
        return self._replica

    @property
    def key(self) -> SigningKey:
        return self._key

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def signed(self) -> bool:
        """Are events signed one by one (the default)? An unsigned document
        signs none of its own and accepts received events without signatures:
        the server's authenticated connection vouches for their author instead
        (docs/architecture.md, "Unsigned documents")."""
        return self._signed

    @signed.setter
    def signed(self, value: bool) -> None:
        self._signed = value
        if self._log_value is not None:
            self._log_value.accept_unsigned = not value

    # -- transactions ---------------------------------------------------------

    def transaction(self) -> Transaction:
        """Group edits into one event; if the block raises, none of them happen."""
        if self._read_only:
            self._check_writable()
        return Transaction(self)

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyError("this document is a read-only view")

    def _begin(self) -> tuple[int, int]:
        """The counter and HLC stamp of the next local op."""
        if self._ops is None:
            if self._read_only:
                self._check_writable()
            log: EventLog | TipLog | None = self._log_value
            if log is None:
                log = self._local_log()
            # our newest event, for the commit: only a commit adds to our own
            # chain, and none happens while a transaction is open
            self._tip = tip = log.tip(self._replica)
            self._counter = tip[2]
            self._txn_hlc = self._clock.tick()
            self._ops = []
        return self._counter, self._txn_hlc

    def _push(self, op: Op) -> None:
        assert self._ops is not None
        self._ops.append(op)
        kind = op[0]
        self._counter += len(op[4]) if kind in (TEXT_INSERT, LIST_INSERT) else 1
        if self._depth == 0:
            self._commit()

    def _commit(self) -> None:
        ops = self._ops
        self._ops = None
        if not ops:
            return
        if self._guard is not None:  # raises, rolled back, if the state breaks the schema
            self._guard.commit(self, ops)
        log: EventLog | TipLog | None = self._log_value
        if log is None:
            log = self._local_log()
        me = self._replica
        count, tip_hash, end = self._tip
        seq = count + 1
        heads = log.heads
        if len(heads) == 1:
            # built inside out (not ``tuple(heads.items())``, which makes the
            # outer tuple first): the collector then stops tracking both in
            # one pass, and the event with them (see ``Event``)
            for head, head_hash in heads.items():
                parents: tuple[Parent, ...] = ((head, head_hash),)
            own_parent = head[0] == me
        else:
            parents = tuple(sorted(heads.items()))
            own_parent = False
        prev = None
        if count and not own_parent and (me, seq - 1) not in heads:
            prev = tip_hash
        key = self._key
        event = Event.create(
            (me, seq),
            end,
            log.max_lamport + 1,
            self._txn_hlc,
            key.key_id,
            key.public_bytes if seq == 1 else None,
            parents,
            prev,
            tuple(ops),
            None,
            None,
            self._counter,
        )
        # nothing new seen: its past is the previous one's (None); else it saw all (heads)
        vector = None if own_parent else log.vector_for([p for p, _ in parents], me)
        journal = self._journal
        if journal is not None:
            # every durable event is signed: after a crash, any of them may be
            # the newest of our chain, which must vouch for the rest
            if self._signed:
                event.sign(key)
            try:
                journal.write_local(event)
            except BaseException:
                self._rollback()
                raise
        log.record(event, vector)
        self._access.recorded(event, True)
        if journal is not None:
            journal.written(self)
        if self._listeners:
            self._notify((event,), local=True)

    def _rollback(self) -> None:
        self._ops = None
        self._use_state(self._rebuilt_state(self._log.events_since(None)))
        if self._changes:
            # only a listener added inside the transaction saw its edits
            self._changes.notify()

    def _use_state(self, state: DocState) -> None:
        state.merge_for = self._state.merge_for
        self._state = state
        self._nodes.clear()  # ids of containers undone may be given to new ones
        if self._guard is not None:
            self._guard.forget()
        self._access.forget()

    @staticmethod
    def _rebuilt_state(events: Iterable[Event]) -> DocState:
        state = DocState()
        for event in events:
            _apply_ops(state, event)
        return state

    # -- local edits, called by the proxies --------------------------------------

    def _container(self, container_id: ContainerId, kind: Kind) -> Any:
        container = self._state.containers.get(container_id)
        if container is None:
            if container_id[0].startswith("/"):
                return self._state.named(container_id[0][1:], kind)
            raise UsageError("this container no longer exists")
        if container.kind is not kind:
            raise TypeMismatchError(
                f"expected a {kind.name.lower()}, found a {container.kind.name.lower()}"
            )
        return container

    def _text_insert(self, container_id: ContainerId, pos: int, text: str) -> None:
        container = self._state.containers.get(container_id)
        if type(container) is not TextState:
            container = self._container(container_id, Kind.TEXT)
        if not text:
            return
        if not text.isascii():
            check_text(text)
        seq = container._seq  # ``container.seq``, without the property's call
        if seq is None:
            seq = container.seq
        if not 0 <= pos <= seq.visible:
            raise OutOfRangeError(f"insert at {pos} outside text of length {seq.visible}")
        self._access.check_local(self, container_id, None)
        if self._guard is not None:
            self._guard.touch(self, container_id)
        ops = self._ops
        if ops is None:
            counter = self._begin()[0]
            ops = self._ops
            assert ops is not None
        else:
            counter = self._counter
        length = len(text)
        left, right = seq.local_insert(pos, self._replica, counter, length, text)
        # _push, inlined: this is the path of every keystroke
        ops.append((TEXT_INSERT, container_id, left, right, text))
        self._counter = counter + length
        if not self._depth:
            self._commit()

    def _seq_delete(self, container_id: ContainerId, kind: Kind, pos: int, count: int) -> None:
        container: Any = self._state.containers.get(container_id)
        if container is None or container.kind is not kind:
            container = self._container(container_id, kind)
        if count <= 0:
            return
        seq = container.seq
        if pos < 0 or pos + count > seq.visible:
            raise OutOfRangeError(
                f"delete {count} at {pos} outside sequence of length {seq.visible}"
            )
        self._access.check_local(self, container_id, None)
        if self._guard is not None:
            self._guard.touch(self, container_id)
        if self._ops is None:
            self._begin()
        if kind is Kind.TEXT:
            spans = seq.local_delete(pos, count)
        else:
            elements = [container.element_at(pos + i) for i in range(count)]
            for element in elements:
                self._state._delete_element(container, element)
            spans = _spans_of(elements)
        self._push((SEQ_DELETE, container_id, tuple(spans)))

    def _list_insert(self, container_id: ContainerId, pos: int, values: list[Any]) -> None:
        container: ListState = self._container(container_id, Kind.LIST)
        if not values:
            return
        if not 0 <= pos <= container.seq.visible:
            raise OutOfRangeError(f"insert at {pos} outside list of length {container.seq.visible}")
        self._access.check_local(self, container_id, None)
        if self._policies is not None:
            kind = CONTAINER_POLICIES.get(self._policy_at(container_id, 0))
            if kind is not None:
                values = [_initial_for(kind, v) for v in values]
        op_values = tuple(proxies.check_value(v) for v in values)
        if self._guard is not None:
            self._guard.items(self, container_id, pos, values)
            self._guard.touch(self, container_id)
        with self.transaction():
            counter, hlc = self._begin()
            op = self._state.local_list_insert(
                container, pos, self._replica, counter, tuple(v for v, _ in op_values), hlc
            )
            self._push(op)
            for i, (_, nested) in enumerate(op_values):
                self._fill((self._replica, counter + i), nested)

    def _list_set(self, container_id: ContainerId, index: int, value: Any) -> None:
        container: ListState = self._container(container_id, Kind.LIST)
        if not 0 <= index < container.seq.visible:
            raise OutOfRangeError(f"index {index} outside list of length {container.seq.visible}")
        self._access.check_local(self, container_id, None)
        if self._policies is not None:
            kind = CONTAINER_POLICIES.get(self._policy_at(container_id, index))
            if kind is not None:
                value = _initial_for(kind, value)
        op_value, nested = proxies.check_value(value)
        if self._guard is not None:
            self._guard.items(self, container_id, index, [value])
            self._guard.touch(self, container_id)
        element_id = container.element_at(index)
        with self.transaction():
            counter, hlc = self._begin()
            register = container.elements[element_id].register
            pred = register.live_ids()
            self._state._create(op_value, (self._replica, counter), container_id, None)
            register.apply((hlc, self._replica, counter, op_value), pred)
            self._push((LIST_SET, container_id, element_id, op_value, pred))
            self._fill((self._replica, counter), nested)

    def _list_move(self, container_id: ContainerId, src: int, dst: int) -> None:
        container: ListState = self._container(container_id, Kind.LIST)
        length = container.seq.visible
        if not (0 <= src < length and 0 <= dst < length):
            raise OutOfRangeError(f"move {src} -> {dst} outside list of length {length}")
        if src == dst:
            return
        self._access.check_local(self, container_id, None)
        if self._guard is not None:
            self._guard.touch(self, container_id)
        counter, hlc = self._begin()
        self._push(self._state.local_list_move(container, src, dst, self._replica, counter, hlc))

    def _map_set(self, container_id: ContainerId, key: str, value: Any) -> None:
        container: MapState = self._container(container_id, Kind.MAP)
        check_key(key)
        self._access.check_local(self, container_id, key)
        if self._guard is not None:
            self._guard.map_set(self, container_id, key, value)
        if self._policies is not None:
            kind = CONTAINER_POLICIES.get(self._policy_at(container_id, key))
            if kind is not None:
                self._write_field(container, key, kind, value)
                return
            if self._sealed_at(container_id, key):
                if self._keyring is None:
                    raise EncryptionKeyError(f"{key!r} is an encrypted field: unlock() first")
                sealed = self._keyring.seal(container_id, key, proxies.plain(value))
                with self.transaction():
                    self._map_write(container, key, sealed)
                return
        op_value, nested = proxies.check_value(value)
        with self.transaction():
            op_id = self._map_write(container, key, op_value)
            self._fill(op_id, nested)

    def _write_field(self, container: MapState, key: str, kind: Kind, value: Any) -> None:
        """Write a field whose policy makes it a container: link the field to
        the container named after its place, then edit that towards ``value``."""
        target = _plain_for(kind, value)
        ref = NamedRef(derived_name(container.id, key), kind)
        with self.transaction():
            register = container.entries.get(key)
            winner = register.winner() if register is not None else None
            if winner is None or winner[3] != ref:
                self._map_write(container, key, ref)
            self._assign(self._state.named(ref.name, kind), target)

    def _assign(self, container: Any, target: Any) -> None:
        """Edit a counter, text or set until it holds ``target``."""
        if type(container) is CounterState:
            if target != container.value:
                self._counter_add(container.id, target - container.value)
        elif type(container) is TextState:
            current = container.to_text()
            start, old_end, new_end = _differing_middle(current, target)
            if old_end > start:
                self._seq_delete(container.id, Kind.TEXT, start, old_end - start)
            if new_end > start:
                self._text_insert(container.id, start, target[start:new_end])
        elif type(container) is SetState:
            wanted = {element_key(v): v for v in target}
            for value in container.items():
                if element_key(value) not in wanted:
                    self._set_remove(container.id, value)
            for value in wanted.values():
                if not container.contains(value):  # only what is missing: no extra adds to win
                    self._set_add(container.id, value)

    # -- policies -------------------------------------------------------------------

    def _node_of(self, container_id: ContainerId) -> PolicyNode | None:
        """The schema node of a container: found from where it was created."""
        if container_id == ROOT:
            return self._policies
        nodes = self._nodes
        if container_id in nodes:
            return nodes[container_id]
        node = None
        place = self._state.parent_of(container_id)
        if place is not None:
            parent = self._node_of(place[0])
            if parent is not None:
                # a list's elements share one schema (its items): any index will do
                node = parent.child(place[1] if place[1] is not None else 0)
        nodes[container_id] = node
        return node

    def _policy_at(self, container_id: ContainerId, key: str | int) -> str:
        node = self._node_of(container_id)
        child = node.child(key) if node is not None else None
        return child.policy if child is not None else LWW

    def _sealed_at(self, container_id: ContainerId, key: str) -> bool:
        node = self._node_of(container_id)
        child = node.child(key) if node is not None else None
        return bool(getattr(child, "encrypted", False))

    def _merge_for(self, container_id: ContainerId, key: str) -> MergeFunction | None:
        name = custom_name(self._policy_at(container_id, key))
        return self._merges.get(name) if name is not None else None

    def conflicts(self, path: PathLike) -> list[Any]:
        """Every value the field at ``path`` holds concurrently, the one that
        reads as its value first: two or more after concurrent writes nobody
        has overwritten yet, one otherwise, none if the field is unset."""
        parts = proxies.split_path(path)
        if not parts:
            raise UsageError("conflicts needs the path of a map key or list element")
        parent = proxies.resolve_path(self, parts[:-1]) if len(parts) > 1 else self.root()
        last = parts[-1]
        register: Register | None
        if isinstance(parent, proxies.MapProxy):
            state: MapState = self._container(parent.container_id, Kind.MAP)
            register = state.entries.get(str(last))
        elif isinstance(parent, proxies.ListProxy):
            lst: ListState = self._container(parent.container_id, Kind.LIST)
            if not isinstance(last, int) and not (isinstance(last, str) and last.isdigit()):
                raise proxies.path_error(parts, "is not a list index")
            index = int(last)
            if not 0 <= index < lst.seq.visible:
                raise proxies.path_error(parts, "does not exist")
            register = lst.elements[lst.element_at(index)].register
        else:
            raise proxies.path_error(parts, "does not name a map key or list element")
        if register is None:
            return []
        return [
            self._reveal(parent.container_id, str(last), v)
            if type(v) is bytes  # an encrypted field: as it reads
            else self._state._json_of(v)
            for v in self._state.concurrent_values(register)
        ]

    # -- sets -----------------------------------------------------------------------

    def _set_state(self, container_id: ContainerId) -> SetState:
        container = self._state.containers.get(container_id)
        if container is None and container_id[0].startswith("/"):
            container = self._state.named(container_id[0][1:], Kind(container_id[1]))
        if container is None:
            raise UsageError("this container no longer exists")
        if type(container) is not SetState:
            raise TypeMismatchError(f"expected a set, found a {container.kind.name.lower()}")
        return container

    def _set_add(self, container_id: ContainerId, value: Scalar) -> None:
        container = self._set_state(container_id)
        value = check_scalar(value)
        if container.kind in (Kind.GSET, Kind.TWO_PHASE_SET) and container.contains(value):
            return  # nothing to win against: these never drop an element that is there
        if container.kind is Kind.TWO_PHASE_SET and element_key(value) in container.removed:
            raise UsageError(f"{value!r} was removed from this two-phase set for good")
        self._set_write(container, value, SET_ADD)

    def _set_remove(self, container_id: ContainerId, value: Scalar) -> None:
        container = self._set_state(container_id)
        if container.kind is Kind.GSET:
            raise UsageError("nothing is ever removed from a grow-only set")
        self._set_write(container, check_scalar(value), SET_REMOVE)

    def _set_write(self, container: SetState, value: Scalar, kind: int) -> None:
        self._access.check_local(self, container.id, None)
        if self._guard is not None:
            self._guard.set_write(self, container.id, value, kind == SET_ADD)
        counter, hlc = self._begin()
        register = container.register(value)
        pred = register.live_ids()
        register.apply((hlc, self._replica, counter, True if kind == SET_ADD else DELETED), pred)
        if kind == SET_REMOVE and container.kind is Kind.TWO_PHASE_SET:
            container.removed.add(element_key(value))
        self._push((kind, container.id, value, pred))

    def _map_write(self, container: MapState, key: str, op_value: Any) -> OpId:
        self._access.check_local(self, container.id, key)
        if self._guard is not None:
            self._guard.map_write(self, container.id, key, op_value)
        counter, hlc = self._begin()
        register = container.entries.get(key)
        if register is None:
            register = container.entries[key] = Register()
        pred = register.live_ids()
        value = op_value if op_value is not DELETED else DELETED
        self._state._create(value, (self._replica, counter), container.id, key)
        register.apply((hlc, self._replica, counter, value), pred)
        if op_value is DELETED:
            self._push((MAP_DELETE, container.id, key, pred))
        else:
            self._push((MAP_SET, container.id, key, op_value, pred))
        return (self._replica, counter)

    def _map_delete(self, container_id: ContainerId, key: str) -> None:
        container: MapState = self._container(container_id, Kind.MAP)
        if self._state.map_value(container, key) is DELETED:
            raise KeyError(key)
        self._map_write(container, key, DELETED)

    def _counter_add(self, container_id: ContainerId, delta: int) -> None:
        container = self._container(container_id, Kind.COUNTER)
        if type(delta) is not int:
            raise TypeMismatchError("counters count in integers")
        check_int(delta)
        self._access.check_local(self, container_id, None)
        if self._guard is not None:
            self._guard.touch(self, container_id)
        self._begin()
        container.value += delta
        self._push((COUNTER_ADD, container_id, delta))

    def _fill(self, container_id: OpId, nested: Any) -> None:
        """Populate a container just created by a write, from the plain value."""
        if nested is None:
            return
        kind, content = nested
        if kind is Kind.MAP:
            for key, value in content.items():
                self._map_set(container_id, key, value)
        elif kind is Kind.LIST:
            self._list_insert(container_id, 0, list(content))
        elif kind is Kind.TEXT:
            self._text_insert(container_id, 0, content)
        elif kind is Kind.COUNTER and content:
            self._counter_add(container_id, content)
        elif kind in SET_KINDS:
            for item in content:
                self._set_add(container_id, item)

    def _named(self, name: str, kind: Kind) -> ContainerId:
        """Get or create the named top-level container and link it at the root."""
        check_key(name)
        ref = NamedRef(name, kind)
        root: MapState = self._state.containers[ROOT]  # type: ignore[assignment]
        register = root.entries.get(name)
        winner = register.winner() if register is not None else None
        if (
            (winner is None or winner[3] != ref)
            and not self._read_only
            and (name != ACCESS_NAME or self._access._granting)
            and self._access.allows(self, ROOT, name)
        ):
            with self.transaction():
                self._map_write(root, name, ref)
        return self._state.named(name, kind).id

    # -- reading ------------------------------------------------------------------

    def to_json(self) -> Any:
        return self._reveal_json(self._state.to_json())

    def _wrap(self, value: Any) -> Any:
        return proxies.wrap(self, value)

    # -- events ----------------------------------------------------------------------

    @property
    def version(self) -> Version:
        if self._log_value is None and self._tips is not None:
            return self._tips.version()
        if self._log_value is None and self._saved is not None:
            return Version(self._saved.version())
        return self._log.version()

    @property
    def applied_count(self) -> int:
        """How many events this replica has applied: a mark for
        ``applied_since`` and ``version_at`` (a server's per-batch bookkeeping
        in the number of new events, not of replicas)."""
        return self._log.applied

    def applied_since(self, mark: int) -> list[Event]:
        """The events applied after ``mark`` (an ``applied_count``), parents first."""
        return self._log.applied_since(mark)

    def version_at(self, mark: int) -> Version:
        """The version this replica had when ``applied_count`` was ``mark``."""
        return self._log.version_at(mark)

    @property
    def heads(self) -> tuple[EventKey, ...]:
        return tuple(EventId(*h) for h in sorted(self._log.heads))

    @property
    def event_count(self) -> int:
        if self._log_value is None and self._saved is not None:
            return sum(self.version.values())
        return len(self._log)

    @property
    def pending(self) -> frozenset[EventKey]:
        """Received events still waiting (for their parents or for authentication)."""
        return frozenset(EventId(*e) for e in self._log.staged)

    def drop_pending(self, event_ids: Iterable[tuple[str, int]]) -> None:
        """Forget received events still waiting (a server drops those of a peer
        that sent more parentless events than it allows)."""
        log = self._log
        for event_id in event_ids:
            log.unstage((event_id[0], event_id[1]))

    def events_since(self, version: Version | None = None) -> list[Event]:
        """The events a replica at ``version`` lacks (all if None), parents first.
        The newest event of this replica among them is signed, and every
        ``VOUCH_EVERY``-th before it."""
        if version is not None and not isinstance(version, Version):
            raise UsageError("events_since takes a gether.Version or None")
        self._commit_if_open()
        events = self._log.events_since(version)
        self._sign_tips(events, VOUCH_EVERY)
        return events

    def known_event(self, event_id: tuple[str, int]) -> Event | None:
        """The event ``event_id``, applied or waiting for its parents, if held
        here (the sync protocol resolves hash-less parents with it)."""
        log = self._log
        found = log.get(event_id)
        return found if found is not None else log.staged.get(event_id)

    def _commit_if_open(self) -> None:
        if self._depth:
            raise UsageError("finish the transaction before exchanging events")

    def _sign_tips(self, events: list[Event], every: int | None = None) -> None:
        """Have our newest event among ``events`` signed when read (it vouches
        for the earlier ones through the hash chain), and with ``every``, each
        ``every``-th before it too."""
        if not self._signed:
            return
        me, key, gap = self._replica, self._key, 0
        for event in reversed(events):
            if event.id[0] == me:
                if gap == 0:
                    event.sign_later(key)
                    if every is None:
                        return
                    gap = every
                gap -= 1

    def apply_events(
        self,
        events: Iterable[Event | bytes],
        *,
        callback_error: Callable[[Exception], None] | None = None,
    ) -> int:
        """Take in events from elsewhere, in any order, duplicates included.

        Events whose parents (or signature) have not arrived wait in a buffer.
        Every event is checked before it changes anything; events that fail are
        rejected whole and reported together in a ``RejectedEventsError``, after
        the good ones are applied. Returns the number of events applied.

        An ``on_change`` callback that raises does not undo anything: the
        events are applied and journaled first. Its exception is passed to
        ``callback_error`` if given (sync loops log it and go on), else raised
        (after the rejection, if some events were rejected too, so the caller
        still learns which ones).
        """
        self._check_writable()
        self._commit_if_open()
        log = self._log
        errors: list[tuple[object, GetherError]] = []
        for item in events:
            event_id = getattr(item, "id", None)
            try:
                event = item if isinstance(item, Event) else Event.from_bytes(item)
                event_id = event.id
                log.stage(event)
            except GetherError as exc:
                errors.append((event_id, exc))
        errors.extend(log.authenticate())
        applied: list[Event] = []
        staged = log.staged
        progress = True
        first_pass = True
        while progress and log.trusted:
            # the first pass takes events as they came (a sender sends them
            # parents first); the next ones in causal order, in which a valid
            # event comes after its parents, so one pass applies every ready
            # one (an event whose lamport lies is reached on the pass after,
            # and rejected when checked)
            pending = log.trusted_staged() if first_pass else log.trusted_in_order()
            progress = first_pass = False
            for event in pending:
                event_id = event.id
                if event_id not in staged:
                    continue  # rejected as a dependent meanwhile
                if not log.causes_applied(event):
                    continue
                try:
                    self._integrate(event)
                except GetherError as exc:
                    errors.extend(log.reject(event_id, exc))
                    continue
                log.unstage(event_id)
                applied.append(event)
                progress = True
        if applied and self._journal is not None:
            self._journal.write_received(applied)
            self._journal.written(self)
        if applied and self._listeners:
            try:
                self._notify(applied, local=False)
            except Exception as exc:
                if callback_error is not None:
                    callback_error(exc)
                elif errors:
                    raise RejectedEventsError(errors) from exc
                else:
                    raise
        if errors:
            raise RejectedEventsError(errors)
        return len(applied)

    def _integrate(self, event: Event) -> None:
        """Check a trusted event whose parents are applied (the caller made
        sure), then apply it."""
        log = self._log
        chains = log.chains
        author, seq = event.id
        max_lamport = 0
        max_hlc = 0
        parents = event.parents
        for parent_id, digest in parents:
            parent = chains[parent_id[0]][parent_id[1] - 1]
            if parent.hash != digest:
                raise HashMismatchError(f"{event.id} names {parent_id} by a wrong hash")
            lamport = parent.lamport
            if lamport > max_lamport:
                max_lamport = lamport
            hlc = parent.hlc
            if hlc > max_hlc:
                max_hlc = hlc
        if event.lamport != max_lamport + 1:
            raise InvalidEventError(f"{event.id}: lamport must be {max_lamport + 1}")
        hlc = event.hlc
        if hlc <= max_hlc:
            raise InvalidEventError(f"{event.id}: clock must exceed its parents'")
        counter = event.counter
        if counter != log.next_counter(author):
            raise InvalidEventError(f"{event.id}: counter must be {log.next_counter(author)}")
        vector: Past
        if len(parents) == 1 and parents[0][0][0] == author:
            # it saw nothing new: its past is its previous event's
            if parents[0][0][1] != seq - 1:
                raise InvalidEventError(f"{event.id}: its author's previous event must be a cause")
            vector = log.past_at(author, seq - 1)
            shared = True
        else:
            vector = log.past_of([p for p, _ in parents], author)
            if vector.get(author) != seq - 1:
                raise InvalidEventError(f"{event.id}: its author's previous event must be a cause")
            shared = False
        if seq == 1:
            key = check_first_key(log, event)
        else:
            bound = log.key_of(author)
            if event.public_key is not None or bound is None or bound[0] != event.key_id:
                raise InvalidKeyError(f"{event.id} is not signed with its replica's key")
            key = None
            if event.prev_hash() != chains[author][-1].hash:
                raise HashMismatchError(f"{event.id} does not follow its author's previous event")
        ctx = OpContext(author, counter, vector.holds)
        state = self._state
        check = state.check
        for op in event.ops:
            check(op, ctx, counter)
            counter += op_length(op)
        # judged on the policy at its parents; raises, state unchanged, if refused
        writes_policy = self._access.check_event(self, event, vector)
        if self._guard is None:
            _apply_ops(state, event)
        else:  # judged on the event's causal past; raises, state unchanged, if invalid
            self._guard.integrate(self, event, _apply_ops)
        if seq == 1:
            log.bind_key(author, event.key_id, key)
        log.record(event, None if shared else vector)
        if writes_policy:
            self._access.policy_written(event)
        self._clock.observe(hlc)

    def _listen(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` after every recorded event; returns the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, events: Sequence[Event], local: bool) -> None:
        """Call every listener; if some raise, raise the first once all ran
        (the events are recorded either way)."""
        errors: list[Exception] = []
        for listener in list(self._listeners):
            try:
                listener(events, local)
            except Exception as exc:  # re-raised below, after the others ran
                errors.append(exc)
        raise_first(errors)

    def on_change(self, path: PathLike, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(changes)`` whenever the value at ``path`` changes; return
        the function that unsubscribes.

        ``path`` is as in :meth:`get` (``"todos/0/text"``, a tuple or list,
        ``""`` or ``()`` for the whole document). ``changes`` is a non-empty
        list of :mod:`gether.core.changes` values, relative to ``path``, whose
        application in order turns the value the listener saw last (the value
        at ``path`` when it subscribed, then after each call) into the value
        there now, so ``mirror = ChangeSet(changes).apply(mirror)`` keeps a
        copy equal to ``doc.get(path)``. A path that leads nowhere has the
        value ``MISSING``: the value appearing is ``Replace(MISSING, value)``,
        disappearing ``Replace(value, MISSING)``.

        One call per local transaction (or edit outside one) and one per
        ``apply_events`` (or ``merge``) that applied something, with every
        change of the batch; none if the value at ``path`` did not change.
        Callbacks run after the document's state is committed (and, for a
        durable replica, written). An exception raised by a callback does not
        stop the other callbacks nor undo anything: once all ran, the first
        exception propagates from the edit, ``transaction()`` block or
        ``apply_events`` call that triggered them (and a
        ``RejectedEventsError`` that ``apply_events`` would have raised is not
        raised). An edit made by a callback is delivered after every callback
        of the current notification ran. Treat the values inside the changes
        as read-only: listeners on one path share them.
        """
        parts = proxies.split_path(path)
        if not callable(callback):
            raise UsageError("on_change takes a callable: callback(changes)")
        changes = self._changes
        if changes is None:
            changes = self._changes = ChangeListeners(self._lenient_get)
        if self._unlisten_changes is None:
            self._unlisten_changes = self._listen(lambda _events, _local: changes.notify())
        remove = changes.add(parts, callback)

        def unsubscribe() -> None:
            remove()
            if not changes and self._unlisten_changes is not None:
                self._unlisten_changes()
                self._unlisten_changes = None

        return unsubscribe

    # -- history ---------------------------------------------------------------------

    def at(self, version: Version) -> Self:
        """A read-only document holding exactly the events of ``version``."""
        if not isinstance(version, Version):
            raise UsageError("at() takes a gether.Version")
        self._commit_if_open()
        for replica, seq in version.items():
            if seq > len(self._log.chains.get(replica, ())):
                raise UsageError(f"version names {replica}@{seq}, which this replica lacks")
        events = [e for chain in self._log.chains.values() for e in chain if version.includes(e.id)]
        for event in events:
            if not all(version.includes(p) for p, _ in event.parents):
                raise UsageError("version is not causally closed")
        view = self._spawn(self._replica, self._key)
        view._replay(sorted(events, key=lambda e: (e.lamport, e.id)))
        view._read_only = True
        return view

    def _spawn(self, replica_id: str, key: SigningKey) -> Self:
        doc = self._blank(replica_id, key, self._clock_source)
        doc.signed = self._signed
        doc._set_policies(self._policies, self._merges)
        if self._guard is not None:
            doc._use_schema(self._guard.schema)
        doc._keyring = self._keyring
        return doc

    @classmethod
    def _blank(cls, replica_id: str, key: SigningKey, clock: Clock | None) -> Self:
        doc = object.__new__(cls)
        Document.__init__(doc, replica_id, key, clock)
        return doc

    def _replay(self, events: Iterable[Event], state: bool = True) -> None:
        """Apply events known to be valid (our own history), in causal order."""
        log = self._log
        for event in events:
            if state:
                _apply_ops(self._state, event)
            author = event.id[0]
            if event.id[1] == 1 and author != self._replica:
                log.bind_key(author, event.key_id, check_first_key(log, event))
            parents = [p for p, _ in event.parents]
            log.record(event, log.vector_for(parents, author))
            self._clock.observe(event.hlc)

    def fork(self, replica_id: str | None = None, key: SigningKey | None = None) -> Self:
        """A new replica with the same events, to edit apart and ``merge`` later."""
        replica_id, key = self._identity(replica_id, key)
        self._commit_if_open()
        self._sign_tips(self._log.events_since(None))
        doc = self._spawn(replica_id, key)
        doc._replay(self._log.events_since(None))
        return doc

    def merge(self, other: Document) -> int:
        """Take in every event of ``other`` that this replica lacks."""
        return self.apply_events(other.events_since(self.version))

    @staticmethod
    def _default_clock() -> Clock | None:
        """The clock of documents made without one: none in the pure core."""
        return None

    @staticmethod
    def _default_nonces() -> NonceSource | None:
        return None  # the core draws no randomness: gether.Document gives os.urandom

    @staticmethod
    def _default_merges() -> Mapping[str, MergeFunction]:
        """The custom merges a schema may name, when none were given."""
        return {}

    @classmethod
    def _identity(cls, replica_id: str | None, key: SigningKey | None) -> tuple[str, SigningKey]:
        if replica_id is None or key is None:
            raise UsageError("a core document needs an explicit replica id and key")
        return replica_id, key

    # -- the Pythonic surface ------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        root: MapState = self._state.containers[ROOT]  # type: ignore[assignment]
        value = self._state.map_value(root, key)
        if value is DELETED:
            raise KeyError(key)
        if type(value) is bytes:
            return self._reveal(ROOT, key, value)
        return self._wrap(value)

    def __setitem__(self, key: str, value: Any) -> None:
        self._map_set(ROOT, key, value)

    def __delitem__(self, key: str) -> None:
        self._map_delete(ROOT, key)

    def __contains__(self, key: object) -> bool:
        root: MapState = self._state.containers[ROOT]  # type: ignore[assignment]
        return isinstance(key, str) and self._state.map_value(root, key) is not DELETED

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:
        return list(self.to_json().keys())

    def text(self, name: str) -> proxies.TextProxy:
        return proxies.TextProxy(self, self._named(name, Kind.TEXT))

    def list(self, name: str) -> proxies.ListProxy:
        return proxies.ListProxy(self, self._named(name, Kind.LIST))

    def map(self, name: str) -> proxies.MapProxy:
        return proxies.MapProxy(self, self._named(name, Kind.MAP))

    def counter(self, name: str) -> proxies.CounterProxy:
        return proxies.CounterProxy(self, self._named(name, Kind.COUNTER))

    def set(self, name: str, variant: str = "or") -> proxies.SetProxy:
        """The named top-level set (see ``gether.Set`` for the variants)."""
        kind = proxies.SET_VARIANTS.get(variant)
        if kind is None:
            raise UsageError(f"unknown set variant {variant!r} (or, g, 2p, lww)")
        return proxies.SetProxy(self, self._named(name, kind))

    def root(self) -> proxies.MapProxy:
        return proxies.MapProxy(self, ROOT)

    def get(self, path: PathLike, default: Any = None) -> Any:
        """The plain value at a path (``"todos/0/text"`` or a tuple), or ``default``."""
        try:
            value = proxies.resolve_path(self, proxies.split_path(path))
        except (KeyError, IndexError):
            return default
        return proxies.plain(value)

    def apply_update(self, path: PathLike, value: Any) -> None:
        """Set the value at a path: a map key or a list index."""
        parts = proxies.split_path(path)
        if not parts:
            raise UsageError("apply_update needs a non-empty path")
        parent = proxies.resolve_path(self, parts[:-1]) if len(parts) > 1 else self.root()
        last = parts[-1]
        if isinstance(parent, proxies.MapProxy) and isinstance(last, str):
            parent[last] = value
        elif isinstance(parent, proxies.ListProxy):
            parent[int(last)] = value
        else:
            raise proxies.path_error(parts, "does not name a map key or list index")

    def __repr__(self) -> str:
        return f"<Document {self._replica} {self.event_count} event(s)>"


class Transaction:
    """``with doc.transaction():`` (a plain class: entering one is on the hot
    path of every batch of edits, and a generator context manager costs more)."""

    __slots__ = ("_doc",)

    def __init__(self, doc: Document) -> None:
        self._doc = doc

    def __enter__(self) -> Document:
        doc = self._doc
        doc._depth += 1
        return doc

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        doc = self._doc
        doc._depth -= 1
        if not doc._depth:
            if kind is None:
                doc._commit()
            else:
                doc._rollback()


def _apply_ops(state: DocState, event: Event) -> None:
    counter = event.counter
    author = event.id[0]
    hlc = event.hlc
    for op in event.ops:
        state.apply(op, author, counter, hlc)
        counter += op_length(op)


def _plain_for(kind: Kind, value: Any) -> Any:
    """The plain value a counter, text or set field is asked to hold."""
    if isinstance(value, proxies.Proxy):
        value = value.to_json()
    if isinstance(value, proxies.Counter | proxies.Text):
        value = value.initial
    elif isinstance(value, proxies.Set):
        value = list(value.initial)
    if kind is Kind.COUNTER:
        if type(value) is not int:
            raise TypeMismatchError(f"a counter field holds an integer, not {value!r}")
        return check_int(value)
    if kind is Kind.TEXT:
        if type(value) is not str:
            raise TypeMismatchError(f"a text field holds a string, not {value!r}")
        return check_text(value)
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeMismatchError(f"a set field holds a list of scalars, not {value!r}")
    return [check_scalar(v) for v in value]


def _initial_for(kind: Kind, value: Any) -> Any:
    """A list element under a counter, text or set policy: a new container."""
    plain = _plain_for(kind, value)
    if kind is Kind.COUNTER:
        return proxies.Counter(plain)
    if kind is Kind.TEXT:
        return proxies.Text(plain)
    variant = next(v for v, k in proxies.SET_VARIANTS.items() if k is kind)
    return proxies.Set(plain, variant)


def _differing_middle(old: str, new: str) -> tuple[int, int, int]:
    """``(start, old_end, new_end)``: old[start:old_end] becomes new[start:new_end]."""
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    old_end, new_end = len(old), len(new)
    while old_end > start and new_end > start and old[old_end - 1] == new[new_end - 1]:
        old_end -= 1
        new_end -= 1
    return start, old_end, new_end


def _spans_of(elements: list[OpId]) -> list[tuple[str, int, int]]:
    spans: list[tuple[str, int, int]] = []
    for replica, counter in sorted(elements):
        if spans and spans[-1][0] == replica and spans[-1][1] + spans[-1][2] == counter:
            spans[-1] = (replica, spans[-1][1], spans[-1][2] + 1)
        else:
            spans.append((replica, counter, 1))
    return spans


__all__ = ["Document"]
