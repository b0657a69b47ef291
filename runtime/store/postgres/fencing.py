"""Fencing's records and its one pure decision (no psycopg here: a node's cluster code
builds fences without the database driver loaded).

A `Fence` is what a node was granted for one shard: ``(shard, node, epoch)``. A fenced
commit reads the shard rows it names ``FOR SHARE`` and goes on only if each row still
says that node owns the shard at that epoch (`first_stale` decides); otherwise it raises
`beamish.runtime.errors.StaleEpoch` and commits nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .. import protocol

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fence:
    """A node's grant of one shard: every commit made under it checks, in the same
    transaction, that the shard's row still has this owner and epoch.

    Attributes:
        shard: the shard's number.
        node: the node that was granted it (the row's ``owner``).
        epoch: the epoch it was granted at (the row's ``epoch``).
    """

    shard: int
    node: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ShardRow:
    """A shard's row as a fenced commit reads it (``beamish_shards``).

    Attributes:
        shard: the shard's number.
        owner: the node that owns it, or None (released).
        epoch: its epoch now.
    """

    shard: int
    owner: str | None
    epoch: int


def first_stale(fences: Sequence[Fence], rows: Sequence[ShardRow]
                ) -> tuple[Fence, ShardRow | None] | None:
    """Return the first fence that the shard rows read in the commit's transaction no
    longer honour (another owner, another epoch, or no row at all), with the row found
    (None if there was none); None if every fence holds."""
    by_shard = {row.shard: row for row in rows}
    for fence in fences:
        row = by_shard.get(fence.shard)
        if row is None or row.owner != fence.node or row.epoch != fence.epoch:
            return fence, row
    return None


@dataclass(frozen=True, slots=True)
class GroupItem(Generic[T]):
    """One write of a group commit (`PgStore.write_group`): ``fn`` runs under its own
    savepoint after ``fences`` were checked.

    Attributes:
        fn: the write function (as `Store.write` takes; it may run more than once).
        fences: the fences its commit needs (none: unfenced).
    """

    fn: Callable[[protocol.Txn], T]
    fences: tuple[Fence, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[T]):
    """What became of one item of a committed group: its function's value if it
    committed, else the error that rolled back this item alone (`StaleEpoch`, the
    exception its function raised, or a `StoreError` for a statement PostgreSQL refused).

    Attributes:
        value: the function's return value (None when it failed).
        error: why this item was rolled back, or None if it committed.
    """

    value: T | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the item committed."""
        return self.error is None

    def get(self) -> T | None:
        """The committed item's value; raise its error if it was rolled back."""
        if self.error is not None:
            raise self.error
        return self.value

