"""Store operations shipped to a node (a replicated agent's reads and commits through its
node: ``agent/nodestore.py`` sends them, ``node/cluster_commits.py`` runs them). No
psycopg here: the agent's side never loads the database driver.

An operation is a `Txn` method's name and its arguments (`Op`). A commit is a `WriteSet`:
the agent's fence and the write operations its transaction function made, in order; the
node replays them on a real transaction (`replay`), in one commit with other agents'
sets. A read is a tuple of read operations, run in one snapshot.

Only the `Txn` methods named in `READ_OPS` and `WRITE_OPS` cross (`check_ops`), and the
wire form (`dumps`/`loads`) is pickle restricted to plain data and beamish's store
records (`_Unpickler`): a peer can name no other callable.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    CommitOutcomeUnknown,
    StaleEpoch,
    StoreError,
    StoreFullError,
    StoreUnavailable,
)
from .protocol import Txn

# Txn methods a shipped read may call (each returns data).
READ_OPS = frozenset({
    "get_agent", "get_route", "peek", "message", "message_packed", "kinds_between", "tail",
    "depth", "attempts", "get_state", "processed", "has_timer", "timers", "dead",
    "dead_count",
})
# Txn methods a shipped commit may call: writes whose value an agent's transaction
# functions do not need before the commit (``delete_timer``'s is given back after it).
WRITE_OPS = frozenset({
    "put_state", "remove", "remove_many", "put_reply", "put_reply_packed", "delete_reply",
    "put_timer", "delete_timer", "put_failure", "put_dead", "put_wake",
})


@dataclass(frozen=True, slots=True)
class Op:
    """One `Txn` call: its method's name and positional arguments.

    Attributes:
        name: the method (one of `READ_OPS` or `WRITE_OPS`).
        args: its arguments.
    """

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WriteSet:
    """A replicated agent's commit, as its node's committer gets it: committed whole, or
    not at all, under the agent's fence.

    Attributes:
        shard: the shard of the agent's fence.
        node: the node that granted it (the fence's owner).
        epoch: the epoch it was granted at.
        ops: the write operations, in the order the agent's transaction made them.
    """

    shard: int
    node: str
    epoch: int
    ops: tuple[Op, ...]


def check_ops(ops: Sequence[Op], allowed: frozenset[str]) -> None:
    """Refuse operations outside ``allowed``.

    Raises:
        StoreError: an operation that is not allowed here (naming it).
    """
    for op in ops:
        if not isinstance(op, Op) or op.name not in allowed:
            name = op.name if isinstance(op, Op) else type(op).__name__
            raise StoreError(f"store operation {name!r} cannot be shipped to the node "
                             "(not a known read or commit operation): nothing was run")


def replay(t: Txn, ops: Sequence[Op]) -> list[Any]:
    """Run ``ops`` on transaction ``t`` in order; return each one's value."""
    return [getattr(t, op.name)(*op.args) for op in ops]


# -- errors on the wire ------------------------------------------------------------------
def error_wire(exc: BaseException) -> tuple[str, tuple[Any, ...]]:
    """An error of a shipped operation, as data (`error_from_wire` rebuilds it)."""
    if isinstance(exc, StaleEpoch):
        return "StaleEpoch", (exc.shard, exc.node, exc.epoch, exc.owner or None,
                              None if exc.current == -1 else exc.current)
    if isinstance(exc, CommitOutcomeUnknown):
        return "CommitOutcomeUnknown", (exc.commit, exc.detail)
    if isinstance(exc, StoreUnavailable):
        return "StoreUnavailable", (exc.detail,)
    if isinstance(exc, StoreFullError):
        return "StoreFullError", (str(exc),)
    if isinstance(exc, StoreError):
        return "StoreError", (str(exc),)
    return "StoreError", (f"the node could not run this store operation: "
                          f"{type(exc).__name__}: {exc}",)


def error_from_wire(kind: str, args: tuple[Any, ...]) -> StoreError:
    """Rebuild an error sent with `error_wire`."""
    if kind == "StaleEpoch":
        return StaleEpoch(*args)
    if kind == "CommitOutcomeUnknown":
        return CommitOutcomeUnknown(*args)
    if kind == "StoreUnavailable":
        return StoreUnavailable(*args)
    if kind == "StoreFullError":
        return StoreFullError(*args)
    return StoreError(*args)


# -- the wire form ---------------------------------------------------------------------
_RECORD_MODULES = frozenset({"beamish.runtime.store.records", "beamish.runtime._types",
                             "beamish.runtime._values", "beamish.runtime.store.shipped"})
_BUILTINS = frozenset({"set", "frozenset", "bytearray", "complex", "slice"})


class _Unpickler(pickle.Unpickler):
    """Pickle that only builds plain data and beamish's store records."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module in _RECORD_MODULES and not name.startswith("_"):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a shipped store operation may not name "
                                     f"{module}.{name}")


def dumps(value: Any) -> bytes:
    """``value`` (plain data, store records, `Op`, `WriteSet`) as bytes."""
    return pickle.dumps(value, protocol=5)


def loads(data: bytes) -> Any:
    """Read bytes made by `dumps`.

    Raises:
        StoreError: the bytes name anything but plain data and store records.
    """
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"a shipped store operation could not be read ({exc})") from exc
