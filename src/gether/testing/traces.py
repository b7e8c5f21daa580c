"""Real-world text-editing traces: loaders and replay through the public API.

The traces (``sequential/*.json.gz`` and ``concurrent/*.json.gz``, format in
the traces folder's README) are benchmark data kept outside the package. This
module finds them, loads them into typed values and replays them through
:class:`gether.Document`, so tests and ``bench/traces.py`` share one driver.

Positions in every trace count Unicode code points, as gether's ``Text`` does;
the ``ascii_only`` copies of the sequential traces exist for libraries that
index by UTF-8 or UTF-16 units.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import gether

__all__ = [
    "ENV_VAR",
    "ConcurrentTrace",
    "ConcurrentTxn",
    "Patch",
    "SequentialTrace",
    "concurrent_names",
    "find_traces_dir",
    "load_concurrent",
    "load_sequential",
    "missing_ancestors",
    "replay_concurrent",
    "replay_sequential",
    "sequential_names",
]

ENV_VAR = "GETHER_TRACES"
"""Environment variable naming the traces folder (overrides the search)."""

Patch: TypeAlias = tuple[int, int, str]
"""``(pos, deleted, inserted)``: at ``pos`` delete ``deleted`` code points, then insert."""

_SUFFIX = ".json.gz"


@dataclass(frozen=True, slots=True)
class SequentialTrace:
    """One author's editing history: transactions of patches, applied in order."""

    name: str
    end_content: str
    txns: list[list[Patch]]

    @property
    def num_patches(self) -> int:
        return sum(len(patches) for patches in self.txns)


@dataclass(frozen=True, slots=True)
class ConcurrentTxn:
    """A transaction made by ``agent`` against the version named by ``parents``."""

    parents: tuple[int, ...]
    agent: int
    patches: list[Patch]


@dataclass(frozen=True, slots=True)
class ConcurrentTrace:
    """An editing history with branches; ``txns[i].parents`` index earlier txns."""

    name: str
    end_content: str
    num_agents: int
    txns: list[ConcurrentTxn]

    @property
    def num_patches(self) -> int:
        return sum(len(txn.patches) for txn in self.txns)


# -- locating and loading ---------------------------------------------------------


def _candidates() -> Iterable[Path]:
    here = Path(__file__).resolve()
    # src/gether/testing/traces.py -> <repo> is parents[3]; data is <repo>/../shared/traces
    if len(here.parents) > 4:
        yield here.parents[4] / "shared" / "traces"
    cwd = Path.cwd().resolve()
    for base in (cwd, *cwd.parents):
        yield base / "shared" / "traces"


def find_traces_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The traces folder: ``path``, else ``$GETHER_TRACES``, else ``<repo>/../shared/traces``.

    The last is looked for next to this source tree and above the working
    directory. Raises :class:`FileNotFoundError` if the folder is missing.
    """
    if path is None:
        path = os.environ.get(ENV_VAR) or None
    if path is not None:
        found = Path(path)
        if not (found / "sequential").is_dir():
            raise FileNotFoundError(f"no traces (sequential/ folder) in {found}")
        return found
    for candidate in _candidates():
        if (candidate / "sequential").is_dir():
            return candidate
    raise FileNotFoundError(f"traces folder not found; set ${ENV_VAR} to it")


def _names(folder: Path) -> list[str]:
    return sorted(p.name[: -len(_SUFFIX)] for p in folder.glob("*" + _SUFFIX))


def sequential_names(traces_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the sequential traces, sorted."""
    return _names(find_traces_dir(traces_dir) / "sequential")


def concurrent_names(traces_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the concurrent traces, sorted (``git-makefile-x2`` included)."""
    return _names(find_traces_dir(traces_dir) / "concurrent")


def _read(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rb") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("txns"), list):
        raise ValueError(f"{path}: not a trace (no txns list)")
    return data


def _patches(raw: Sequence[Sequence[Any]]) -> list[Patch]:
    return [(int(pos), int(deleted), str(inserted)) for pos, deleted, inserted in raw]


def load_sequential(
    name: str, ascii_only: bool = False, traces_dir: str | os.PathLike[str] | None = None
) -> SequentialTrace:
    """Load ``sequential/<name>.json.gz`` (or its ``ascii_only/`` copy)."""
    folder = find_traces_dir(traces_dir) / "sequential"
    if ascii_only:
        folder = folder / "ascii_only"
    data = _read(folder / (name + _SUFFIX))
    if data.get("startContent", ""):
        raise ValueError(f"{name}: non-empty startContent is not supported")
    txns = [_patches(txn["patches"]) for txn in data["txns"]]
    return SequentialTrace(name=name, end_content=str(data["endContent"]), txns=txns)


def load_concurrent(name: str, traces_dir: str | os.PathLike[str] | None = None) -> ConcurrentTrace:
    """Load ``concurrent/<name>.json.gz``."""
    data = _read(find_traces_dir(traces_dir) / "concurrent" / (name + _SUFFIX))
    txns: list[ConcurrentTxn] = []
    for index, raw in enumerate(data["txns"]):
        parents = tuple(int(p) for p in raw["parents"])
        if any(not 0 <= p < index for p in parents):
            raise ValueError(f"{name}: txn {index} has a parent that is not an earlier txn")
        txns.append(ConcurrentTxn(parents, int(raw["agent"]), _patches(raw["patches"])))
    return ConcurrentTrace(
        name=name,
        end_content=str(data["endContent"]),
        num_agents=int(data["numAgents"]),
        txns=txns,
    )


# -- replay through gether ----------------------------------------------------------


def replay_sequential(trace: SequentialTrace, replica_id: str = "a0") -> gether.Document:
    """Replay on one replica: one transaction (one event) per trace transaction."""
    doc = gether.Document(replica_id=replica_id)
    text = doc.text("text")
    insert = text.insert
    delete = text.delete
    transaction = doc.transaction
    for patches in trace.txns:
        with transaction():
            for pos, deleted, inserted in patches:
                if deleted:
                    delete(pos, deleted)
                if inserted:
                    insert(pos, inserted)
    return doc


def missing_ancestors(
    txns: Sequence[ConcurrentTxn], parents: Iterable[int], done: bytearray
) -> list[int]:
    """Ancestors of ``parents`` (themselves included) not in ``done``, in index order.

    ``done[i]`` is 1 for the txns a replica already holds (a causally closed
    set); the ones returned are marked in ``done`` as well, so the caller must
    apply them.
    """
    missing: list[int] = []
    stack = [p for p in parents if not done[p]]
    while stack:
        index = stack.pop()
        if done[index]:
            continue
        done[index] = 1
        missing.append(index)
        stack.extend(p for p in txns[index].parents if not done[p])
    missing.sort()
    return missing


def replay_concurrent(trace: ConcurrentTrace, as_bytes: bool = False) -> gether.Document:
    """Replay with one replica per agent, then merge every transaction's events.

    Before each transaction its agent's replica is brought to exactly the
    transaction's parents by applying the events of the missing ancestors (the
    set a replica holds is causally closed, so the search stops early). With
    ``as_bytes`` events travel as ``Event.to_bytes()``.
    """
    txns = trace.txns
    docs = [gether.Document(replica_id=f"agent{i}") for i in range(trace.num_agents)]
    done = [bytearray(len(txns)) for _ in docs]
    recorded: list[list[gether.Event]] = []
    for index, txn in enumerate(txns):
        doc = docs[txn.agent]
        missing = missing_ancestors(txns, txn.parents, done[txn.agent])
        if missing:
            events = [event for j in missing for event in recorded[j]]
            doc.apply_events([e.to_bytes() for e in events] if as_bytes else events)
        before = doc.version
        text = doc.text("text")
        with doc.transaction():
            for pos, deleted, inserted in txn.patches:
                if deleted:
                    text.delete(pos, deleted)
                if inserted:
                    text.insert(pos, inserted)
        recorded.append(doc.events_since(before))
        done[txn.agent][index] = 1
    merged = gether.Document(replica_id="merged")
    everything = [event for events in recorded for event in events]
    merged.apply_events([e.to_bytes() for e in everything] if as_bytes else everything)
    return merged
