"""The store of one cluster's replicated agents on PostgreSQL (`PgStore`, implements
`..protocol.Store`; open one with `beamish.runtime.store.open_postgres_store`).

Transactions: ``read`` runs in one REPEATABLE READ, read-only snapshot (as an LMDB read
transaction sees one); a write runs at READ COMMITTED. Writers are not serialised against
each other as LMDB's are: each operation is one atomic statement (a counter, a tail, an
attempt count increment in place), and an agent's rows are written only by its shard's
owner, which fencing makes one node at a time. A write whose transaction PostgreSQL gave
up (deadlock, serialization failure) runs its function again: the store interface's
re-run contract.

Fencing (the package docstring's rule): a fenced write first reads its shards' rows
``FOR SHARE``, holding them until it commits, and raises `StaleEpoch` (committing
nothing) unless each still names the node and epoch of its `Fence`. ``write_group`` runs
many writes in one transaction, each under a savepoint, so that a node's committer
commits many agents' transitions at the cost of one commit.

Failures: psycopg's exceptions never leave this package. A connection that cannot be made
or is lost before the commit is sent raises `StoreUnavailable` (nothing was committed;
the next use reconnects); one lost while the commit is in flight raises
`CommitOutcomeUnknown` with the commit's number, which `commit_outcome` resolves once the
server is back. A write that finds its idle connection dead (the server restarted since)
reconnects and runs once more before it gives up. Nothing waits forever: a link that
stops acknowledging breaks the connection after ``link_timeout`` (TCP user timeout and
keepalives), and the server ends a transaction of this store left idle for
``idle_timeout`` (its node paused or cut off mid-commit), so a takeover waits for a stale
writer that long at most.

How an unknown outcome is resolved: every write transaction of a store also sets the
store's own row of ``beamish_writers`` to the number of that commit (in the statement that
reads its fences: no extra round trip). After a commit cut off in flight, the store's next
transaction first reads that row ``FOR UPDATE`` (so it waits for a commit the server may
still be finishing): it holds the cut-off commit's number exactly if that commit is
durable. Transaction ids would not do: after a crash, the server may hand an id that never
reached its log to a new transaction.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ...errors import (
    CommitOutcomeUnknown,
    StaleEpoch,
    StoreError,
    StoreFullError,
    StoreUnavailable,
)
from ..protocol import Txn
from ..writegate import WriteLane
from .fencing import Fence, GroupItem, ItemResult, ShardRow, first_stale
from .schema import ensure_schema
from .txn import PgTxn

T = TypeVar("T")

# How many times a write runs when PostgreSQL gives its transaction up (deadlock,
# serialization failure), and when its connection turns out to be dead before anything
# was sent.
_RETRIES = 3
_RETRY_STATES = frozenset({"40001", "40P01"})
_IDLE_TIMEOUT_STATE = "25P03"  # the server ended a session idle in its transaction
CONNECT_TIMEOUT = 5.0
# A transaction left open this long between two statements (its node paused, cut off, or
# stuck) is ended by the server: it holds its shards' rows FOR SHARE, and a takeover
# waits for it no longer than this. A store's own transactions never pause that long.
IDLE_IN_TRANSACTION_TIMEOUT = 5.0
# Sent data unacknowledged this long (the link to the server is down): the connection is
# broken, and the write in flight fails (StoreUnavailable or CommitOutcomeUnknown).
TCP_USER_TIMEOUT = 10.0

_MARK = ("INSERT INTO beamish_writers (cluster, writer, commit) VALUES (%s, %s, %s) "
         "ON CONFLICT (cluster, writer) DO UPDATE SET commit = excluded.commit, "
         "updated = now()")
_MARK_AND_FENCES = (
    f"WITH mark AS ({_MARK}) SELECT shard, owner, epoch FROM beamish_shards "
    "WHERE cluster = %s AND shard = ANY(%s) ORDER BY shard FOR SHARE")
_MARKED = ("SELECT commit FROM beamish_writers WHERE cluster = %s AND writer = %s "
           "FOR UPDATE")
# A writer's row not updated for this long belongs to a store long closed: dropped.
_WRITER_ROWS_KEPT = "7 days"


class _Lost(Exception):
    """The connection broke before the commit was sent (nothing committed)."""

    def __init__(self, exc: psycopg.Error) -> None:
        super().__init__(str(exc))
        self.exc = exc


class _ItemFailed(Exception):
    """An item of a group's first pass failed: the pass is rolled back and the group runs
    again, each item under a savepoint."""


class PgStore:
    """An open connection to the cluster's PostgreSQL, holding cluster ``cluster``'s
    replicated agents (implements `..protocol.Store`, plus fencing and group commit).
    Shared by the threads of one process (one connection, one transaction at a time);
    each process opens its own.

    Args:
        dsn: the PostgreSQL DSN.
        cluster: the cluster's name (every row carries it).
        fence: the fence every ``write`` checks (None: unfenced writes).
        connect_timeout: seconds a connection attempt may take.
        idle_timeout: seconds the server lets one of this store's transactions sit idle
            before it ends it (and its session): how long a paused or cut-off node can
            hold up a takeover of its shards.
        link_timeout: seconds of unacknowledged sends after which the connection counts
            as lost (the link to the server is down).

    Raises:
        StoreUnavailable: the server cannot be reached.
        SchemaTooNew: its schema is newer than this beamish (a StoreError).
    """

    def __init__(self, dsn: str, cluster: str, fence: Fence | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 idle_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT,
                 link_timeout: float = TCP_USER_TIMEOUT) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self.fences: tuple[Fence, ...] = () if fence is None else (fence,)
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.link_timeout = link_timeout
        self.lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._writer = uuid.uuid4().bytes  # this store's row of beamish_writers
        self._commits = 0  # the number of the latest write transaction begun
        self._unknown: int | None = None  # a commit cut off in flight, not resolved yet
        self._outcomes: dict[int, bool] = {}  # cut-off commits resolved, not asked yet
        self.reconnects = 0
        with self.lock:
            conn = self._connection()
            try:
                ensure_schema(conn)
                with conn.transaction():
                    conn.execute("DELETE FROM beamish_writers WHERE cluster = %s AND "
                                 f"updated < now() - interval '{_WRITER_ROWS_KEPT}'",
                                 (cluster,))
            except psycopg.Error as exc:
                self._drop()
                raise StoreUnavailable(_detail(exc)) from exc
            except BaseException:  # SchemaTooNew, or anything: no session left behind
                self._drop()
                raise

    # -- connections ------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        try:
            conn = psycopg.connect(
                self.dsn, connect_timeout=max(1, round(self.connect_timeout)),
                options=f"-c idle_in_transaction_session_timeout={_ms(self.idle_timeout)}",
                keepalives=1, keepalives_idle=max(1, round(self.link_timeout / 2)),
                keepalives_interval=1, keepalives_count=3,
                tcp_user_timeout=_ms(self.link_timeout))
        except psycopg.Error as exc:
            raise StoreUnavailable(_detail(exc)) from exc
        self._conn = conn
        self.reconnects += 1
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _lost(self, conn: psycopg.Connection[Any]) -> bool:
        return conn.closed or conn.broken

    def _abort(self, conn: psycopg.Connection[Any]) -> None:
        """Roll back the open transaction; a connection that breaks doing so is dropped
        (the transaction dies with it: nothing was committed)."""
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop()

    # -- transactions -----------------------------------------------------------------
    def _transaction(self, body: Callable[[psycopg.Cursor[Any]], T], write: bool) -> T:
        """Run ``body(cursor)`` in one transaction and commit it (``write``) or roll it
        back; map psycopg's errors to beamish's; run it again when PostgreSQL gave the
        transaction up, or when the connection was found dead before anything committed.
        """
        with self.lock:
            attempt = 0
            while True:
                attempt += 1
                reused = self._conn is not None
                conn = self._connection()
                try:
                    conn.read_only = not write
                    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED if write \
                        else psycopg.IsolationLevel.REPEATABLE_READ
                    result = body(conn.cursor(binary=True))
                except psycopg.Error as exc:
                    if self._lost(conn):
                        self._drop()
                        if reused and attempt == 1:
                            continue  # an idle connection the server closed: nothing sent
                        raise StoreUnavailable(_detail(exc)) from exc
                    self._abort(conn)
                    if exc.sqlstate in _RETRY_STATES and attempt < _RETRIES:
                        continue
                    raise _refused(exc) from exc
                except _Lost as lost:
                    self._drop()
                    raise StoreUnavailable(_detail(lost.exc)) from lost.exc
                except BaseException:
                    self._abort(conn)
                    raise
                if not write:
                    self._end_read(conn)
                    return result
                self._commit(conn, self._commits)
                return result

    def _end_read(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop()  # the read is done; the next use reconnects

    def _commit(self, conn: psycopg.Connection[Any], number: int) -> None:
        try:
            conn.commit()
        except psycopg.Error as exc:
            if self._lost(conn):
                self._drop()
                if exc.sqlstate == _IDLE_TIMEOUT_STATE:  # ended before it got the COMMIT
                    raise StoreUnavailable(_detail(exc)) from exc
                self._unknown = number
                raise CommitOutcomeUnknown(number, _detail(exc)) from exc
            self._abort(conn)
            raise _refused(exc) from exc

    def _open_write(self, cur: psycopg.Cursor[Any], fences: Sequence[Fence]
                    ) -> list[ShardRow]:
        """Begin a write: resolve a commit cut off before, mark this one in the store's
        writer row and read the fences' shard rows FOR SHARE (held until the commit: a
        takeover's update of one waits for this transaction); one statement."""
        if self._unknown is not None:
            self._resolve(cur)
        self._commits += 1
        mark = (self.cluster, self._writer, self._commits)
        if not fences:
            cur.execute(_MARK, mark)
            return []
        rows = cur.execute(_MARK_AND_FENCES, (*mark, self.cluster,
                                              sorted({f.shard for f in fences}))).fetchall()
        return [ShardRow(int(s), o, int(e)) for s, o, e in rows]

    def _resolve(self, cur: psycopg.Cursor[Any]) -> None:
        """Settle the commit that was cut off: it is durable exactly if the writer row
        holds its number (read FOR UPDATE: after the cut-off transaction has ended)."""
        number = self._unknown
        assert number is not None
        row = cur.execute(_MARKED, (self.cluster, self._writer)).fetchone()
        self._outcomes[number] = row is not None and int(row[0]) == number
        self._unknown = None


    # -- the Store interface ----------------------------------------------------------
    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a read-only transaction (one snapshot) and return its
        result."""
        return self._transaction(lambda cur: fn(PgTxn(cur, self.cluster)), write=False)

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn(txn)`` in a write transaction, fenced by the store's fence if it was
        opened with one: committed when ``fn`` returns, rolled back if it raises. ``fn``
        may run more than once.

        Raises:
            StaleEpoch: the store's fence no longer holds (nothing was committed).
            StoreUnavailable: the server could not be reached (nothing was committed).
            CommitOutcomeUnknown: the connection was lost during the commit.
        """
        return self.write_fenced(fn, self.fences)

    def write_in_lane(self, fn: Callable[[Txn], T], lane: WriteLane) -> T:
        """`write` (PostgreSQL has no single writer lock: every lane is the same)."""
        return self.write(fn)

    def write_fenced(self, fn: Callable[[Txn], T], fences: Sequence[Fence]) -> T:
        """`write` under ``fences`` (each checked in the transaction, before ``fn``
        runs) instead of the store's own.

        Raises:
            StaleEpoch: a fence no longer holds (nothing was committed).
            StoreUnavailable: the server could not be reached (nothing was committed).
            CommitOutcomeUnknown: the connection was lost during the commit.
        """
        def body(cur: psycopg.Cursor[Any]) -> T:
            stale = first_stale(fences, self._open_write(cur, fences))
            if stale is not None:
                raise _stale_epoch(*stale)
            return fn(PgTxn(cur, self.cluster))
        return self._transaction(body, write=True)

    def write_group(self, items: Sequence[GroupItem[Any]]) -> list[ItemResult[Any]]:
        """Run many writes in one transaction and one commit (a node's group commit):
        every item's fences are read first (one query, held until the commit); the
        items whose fences hold run, and an item's `StaleEpoch`, its function's
        exception or a statement PostgreSQL refuses rolls back that item alone; the rest
        commit together. Returns, in item order, each item's value or error.

        The items first run back to back, with nothing between them; if one fails, that
        pass is rolled back and the group runs again with each item under a savepoint of
        its own (so the common case pays no savepoint round trips). Functions may thus run
        more than once, as the store interface allows.

        Raises:
            StoreUnavailable: the server could not be reached (no item was committed).
            CommitOutcomeUnknown: the connection was lost during the commit (of every
                item that had no error of its own).
        """
        def body(cur: psycopg.Cursor[Any], guarded: bool) -> list[ItemResult[Any]]:
            every = list({f for item in items for f in item.fences})
            rows = self._open_write(cur, every)
            stale_known: dict[Fence, StaleEpoch] = {}
            for fence in every:
                stale = first_stale([fence], rows)
                if stale is not None:
                    stale_known[fence] = _stale_epoch(*stale)
            results: list[ItemResult[Any]] = []
            for item in items:
                refused = next((stale_known[f] for f in item.fences if f in stale_known),
                               None)
                if refused is not None:
                    results.append(ItemResult(error=refused))
                elif guarded:
                    results.append(self._guarded_item(cur, item))
                else:
                    results.append(ItemResult(value=self._item(cur, item)))
            return results
        try:
            return self._transaction(lambda cur: body(cur, False), write=True)
        except _ItemFailed:
            return self._transaction(lambda cur: body(cur, True), write=True)

    def _item(self, cur: psycopg.Cursor[Any], item: GroupItem[Any]) -> Any:
        """Run one item of a group's first pass: its value; `_ItemFailed` if it fails
        (the pass is then rolled back). A lost connection is not the item's error: it
        ends the group."""
        try:
            return item.fn(PgTxn(cur, self.cluster))
        except psycopg.Error as exc:
            if self._lost(cur.connection) or exc.sqlstate in _RETRY_STATES:
                raise  # the whole transaction: lost, or given up (it runs again)
            raise _ItemFailed() from exc
        except Exception as exc:  # the item's own error: the guarded pass reports it
            raise _ItemFailed() from exc

    def _guarded_item(self, cur: psycopg.Cursor[Any], item: GroupItem[Any]
                      ) -> ItemResult[Any]:
        """Run one item of a group under a savepoint: its value, or its error with the
        item rolled back. A lost connection is not the item's error: it ends the group."""
        cur.execute("SAVEPOINT beamish_item")
        try:
            value = item.fn(PgTxn(cur, self.cluster))
        except psycopg.Error as exc:
            if self._lost(cur.connection):
                raise _Lost(exc) from exc
            if exc.sqlstate in _RETRY_STATES:
                raise  # the whole transaction was given up: the group runs again
            self._rollback_item(cur, exc)
            return ItemResult(error=_refused(exc))
        except Exception as exc:  # the item's own error, reported for it
            self._rollback_item(cur, exc)
            return ItemResult(error=exc)
        cur.execute("RELEASE SAVEPOINT beamish_item")
        return ItemResult(value=value)

    def _rollback_item(self, cur: psycopg.Cursor[Any], cause: BaseException) -> None:
        try:
            cur.execute("ROLLBACK TO SAVEPOINT beamish_item")
        except psycopg.Error as exc:
            if self._lost(cur.connection):
                raise _Lost(exc) from cause
            raise

    def commit_outcome(self, number: int) -> bool | None:
        """Whether commit ``number`` (of a `CommitOutcomeUnknown` this store raised)
        is durable: True, or False (nothing of it was stored); None if this store raised
        no such error for it (or it was asked already). Asks the server if the store has
        not settled it yet (its next write does so first).

        Raises:
            StoreUnavailable: the server cannot be reached yet.
        """
        with self.lock:
            if number == self._unknown:
                self._transaction(self._resolve, write=True)
            return self._outcomes.pop(number, None)

    def shard_owner(self, shard: int) -> str | None:
        """The node that owns ``shard`` now (None: nobody), as the table says.

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        def body(cur: psycopg.Cursor[Any]) -> str | None:
            row = cur.execute("SELECT owner FROM beamish_shards WHERE cluster = %s AND "
                              "shard = %s", (self.cluster, shard)).fetchone()
            return None if row is None else row[0]
        return self._transaction(body, write=False)

    def shard_owners(self) -> dict[int, str]:
        """Every owned shard's owner now, as the table says (unowned ones left out).

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        def body(cur: psycopg.Cursor[Any]) -> dict[int, str]:
            return {int(shard): str(owner) for shard, owner in cur.execute(
                "SELECT shard, owner FROM beamish_shards WHERE cluster = %s AND owner IS "
                "NOT NULL", (self.cluster,)).fetchall()}
        return self._transaction(body, write=False)

    def reader_check(self) -> int:
        """Nothing to release: the server ends a dead client's session itself. Returns 0."""
        return 0

    def close(self) -> None:
        """Close this process's connection (the data stays)."""
        with self.lock:
            self._drop()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _stale_epoch(fence: Fence, row: ShardRow | None) -> StaleEpoch:
    return StaleEpoch(fence.shard, fence.node, fence.epoch,
                      None if row is None else row.owner, None if row is None else row.epoch)


def _detail(exc: psycopg.Error) -> str:
    """What the driver said, on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _refused(exc: psycopg.Error) -> StoreError:
    """A statement or commit PostgreSQL refused on a live connection, as beamish's error."""
    if isinstance(exc, pg_errors.DiskFull):
        return StoreFullError(f"the cluster's PostgreSQL is out of disk space ({_detail(exc)})"
                              "; nothing was committed. What to do: free space on the "
                              "database server")
    return StoreError(f"the cluster's PostgreSQL refused the transaction "
                      f"[{exc.sqlstate}] ({_detail(exc)}); nothing was committed")
