"""Typed operations on a cluster's membership and shard tables (``beamish_cluster``,
``beamish_members``, ``beamish_shards``; the package docstring has their columns).

Every time that matters is the database's: a lease expires at ``now() + ttl`` as the
server computed it at the renewal, and a lease is judged alive or expired by the
server's ``clock_timestamp()``, never by a node's clock.

A takeover and a renewal of the same member cannot pass each other: ``claim`` locks the
shard row, then writes the old owner's member row (unchanged) before it judges that
lease; ``renew`` updates the member row only while its lease is alive when the update
applies (a renewal that waited for a claim re-reads the row then). Whichever commits
first wins and the other sees it (a renewal that lost fails with `LeaseLost`).

psycopg errors that mean the server is unreachable (``OperationalError``) are raised as
`StoreUnavailable` (a `StoreError`), so that code outside this package never sees psycopg.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from ...errors import ConfigError, LeaseLost, NodeNameInUse, ShardCountMismatch, StoreUnavailable
from .schema import ensure_schema

# libpq options for a node's own connection: a cut link must not block a renewal for
# minutes (tcp_user_timeout bounds an unacknowledged send, keepalives an idle wait).
LINK_OPTIONS: dict[str, Any] = {"connect_timeout": 2, "keepalives": 1, "keepalives_idle": 1,
                                "keepalives_interval": 1, "keepalives_count": 2,
                                "tcp_user_timeout": 2000}


@dataclass(frozen=True, slots=True)
class Member:
    """A row of the membership table, with what the database computed about it.

    Attributes:
        node: the node's name.
        address: how the other nodes reach it (its advertised address).
        incarnation: bumped by every join under this name.
        lease_expires: when its lease expires (the database's clock).
        lease_left: seconds from the database's clock now until then (< 0: expired).
        joined: when this incarnation joined (the database's clock).
        draining: whether it is handing its shards off.
        agents: how many agents it reported running at its last renewal.
        shards: how many shards it owns now.
    """

    node: str
    address: str
    incarnation: int
    lease_expires: dt.datetime
    lease_left: float
    joined: dt.datetime
    draining: bool
    agents: int
    shards: int

    @property
    def alive(self) -> bool:
        """Whether its lease had not expired when the database was asked."""
        return self.lease_left > 0


@dataclass(frozen=True, slots=True)
class ShardRow:
    """A row of the shard table: its owner (None: unowned or released), its epoch
    (bumped by every claim) and when it last changed hands."""

    shard: int
    owner: str | None
    epoch: int
    moved: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Joined:
    """What a join (or a renewal) granted: the incarnation and the lease's expiry."""

    incarnation: int
    lease_expires: dt.datetime


@contextmanager
def _unreachable_as_store_error(what: str) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"{what}: {e}; a node keeps trying, and fences itself if "
                               "its lease runs out meanwhile") from e


class ClusterTable:
    """One cluster's rows, through one connection (autocommit; each method is one
    transaction). Create with `open_cluster`, which checks the shard count."""

    def __init__(self, conn: psycopg.Connection[Any], cluster: str, shards: int) -> None:
        self.conn = conn
        self.cluster = cluster
        self.shards = shards

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # -- membership -------------------------------------------------------------------
    def join(self, node: str, address: str, ttl: float,
             previous: int | None = None) -> Joined:
        """Add ``node`` as a member with a fresh lease and a new incarnation. A member row
        of that name whose lease is alive is replaced only if it is this node's own
        ``previous`` incarnation; otherwise `NodeNameInUse`."""
        with _unreachable_as_store_error(f"join of {node!r}"):
            row = self.conn.execute(
                """INSERT INTO beamish_members AS m
                       (cluster, node, address, incarnation, lease_expires)
                   VALUES (%(c)s, %(n)s, %(a)s, 1, now() + make_interval(secs => %(ttl)s))
                   ON CONFLICT (cluster, node) DO UPDATE
                       SET address = EXCLUDED.address, incarnation = m.incarnation + 1,
                           lease_expires = EXCLUDED.lease_expires, joined = now(),
                           draining = false, agents = 0
                       WHERE m.lease_expires <= clock_timestamp()
                          OR m.incarnation = %(prev)s
                   RETURNING incarnation, lease_expires""",
                {"c": self.cluster, "n": node, "a": address, "ttl": ttl,
                 "prev": previous}).fetchone()
        if row is None:
            raise NodeNameInUse(node, self.cluster, "its lease is alive")
        return Joined(int(row[0]), row[1])

    def renew(self, node: str, incarnation: int, ttl: float,
              agents: int | None = None) -> Joined:
        """Extend ``node``'s lease to the database's ``now() + ttl`` (and record its
        agent count); `LeaseLost` if this incarnation was superseded, left, or its lease
        expired (a renewal never revives an expired lease: the shards may be gone)."""
        with _unreachable_as_store_error(f"lease renewal of {node!r}"):
            row = self.conn.execute(
                """UPDATE beamish_members
                      SET lease_expires = now() + make_interval(secs => %(ttl)s),
                          agents = COALESCE(%(agents)s, agents)
                    WHERE cluster = %(c)s AND node = %(n)s AND incarnation = %(i)s
                      AND lease_expires > clock_timestamp()
                RETURNING incarnation, lease_expires""",
                {"c": self.cluster, "n": node, "i": incarnation, "ttl": ttl,
                 "agents": agents}).fetchone()
            if row is not None:
                return Joined(int(row[0]), row[1])
            now = self.conn.execute(
                "SELECT incarnation FROM beamish_members WHERE cluster = %s AND node = %s",
                (self.cluster, node)).fetchone()
        if now is None:
            detail = "it is no member (it left, or was removed)"
        elif int(now[0]) != incarnation:
            detail = f"incarnation {incarnation} was superseded by {now[0]}"
        else:
            detail = f"incarnation {incarnation}'s lease expired before this renewal"
        raise LeaseLost(node, self.cluster, detail)

    def set_draining(self, node: str, incarnation: int, draining: bool = True) -> None:
        """Mark ``node`` draining (its shards are handed off, it claims none) or not;
        `LeaseLost` if this incarnation is no longer the member."""
        with _unreachable_as_store_error(f"drain of {node!r}"):
            row = self.conn.execute(
                """UPDATE beamish_members SET draining = %s
                    WHERE cluster = %s AND node = %s AND incarnation = %s RETURNING node""",
                (draining, self.cluster, node, incarnation)).fetchone()
        if row is None:
            raise LeaseLost(node, self.cluster, f"incarnation {incarnation} is no member")

    def leave(self, node: str, incarnation: int) -> None:
        """Remove ``node``'s member row and release the shards it still owns, in one
        transaction (call it after stopping their agents). A superseded incarnation
        removes nothing."""
        with _unreachable_as_store_error(f"leave of {node!r}"), self.conn.transaction():
            gone = self.conn.execute(
                """DELETE FROM beamish_members
                    WHERE cluster = %s AND node = %s AND incarnation = %s RETURNING node""",
                (self.cluster, node, incarnation)).fetchone()
            if gone is not None:
                self.conn.execute(
                    """UPDATE beamish_shards SET owner = NULL, moved = now()
                        WHERE cluster = %s AND owner = %s""", (self.cluster, node))

    def members(self) -> list[Member]:
        """Every member of the cluster, by name, with its lease judged by the database's
        clock now and the count of shards it owns."""
        with _unreachable_as_store_error("members"):
            rows = self.conn.execute(
                """SELECT m.node, m.address, m.incarnation, m.lease_expires,
                          EXTRACT(EPOCH FROM m.lease_expires - clock_timestamp())::float8,
                          m.joined, m.draining, m.agents,
                          (SELECT count(*) FROM beamish_shards s
                            WHERE s.cluster = m.cluster AND s.owner = m.node)
                     FROM beamish_members m WHERE m.cluster = %s ORDER BY m.node""",
                (self.cluster,)).fetchall()
        return [Member(r[0], r[1], int(r[2]), r[3], float(r[4]), r[5], bool(r[6]),
                       int(r[7]), int(r[8])) for r in rows]

    # -- shards -----------------------------------------------------------------------
    def shard_rows(self) -> list[ShardRow]:
        """The whole shard table, by shard."""
        return self._shards("", ())

    def shards_of(self, node: str) -> list[ShardRow]:
        """The shards ``node`` owns, by shard."""
        return self._shards(" AND owner = %s", (node,))

    def _shards(self, where: str, args: Sequence[object]) -> list[ShardRow]:
        with _unreachable_as_store_error("shards"):
            rows = self.conn.execute(
                "SELECT shard, owner, epoch, moved FROM beamish_shards WHERE cluster = %s"
                + where + " ORDER BY shard", (self.cluster, *args)).fetchall()
        return [ShardRow(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    def claim(self, shard: int, node: str, incarnation: int, owner: str | None,
              epoch: int) -> int | None:
        """Make ``node`` (at ``incarnation``, alive and not draining) the owner of
        ``shard``, bumping its epoch; return the new epoch. Only if the row still has
        ``owner`` at ``epoch``, and that owner is nobody, ``node`` itself, or a member
        whose lease expired (or that left). Otherwise nothing changes and None is
        returned."""
        with _unreachable_as_store_error(f"claim of shard {shard}"), self.conn.transaction():
            row = self.conn.execute(
                """SELECT owner, epoch FROM beamish_shards
                    WHERE cluster = %s AND shard = %s FOR UPDATE""",
                (self.cluster, shard)).fetchone()
            if row is None or (row[0], int(row[1])) != (owner, epoch):
                return None
            me = self.conn.execute(
                """SELECT 1 FROM beamish_members
                    WHERE cluster = %s AND node = %s AND incarnation = %s AND NOT draining
                      AND lease_expires > clock_timestamp()""",
                (self.cluster, node, incarnation)).fetchone()
            if me is None:
                return None
            if owner is not None and owner != node:
                # A no-op update, not a mere lock: a renewal of that member waiting on it
                # then re-reads the row and re-judges the lease after this commits (and
                # finds it expired); one that committed first is seen here. Only the old
                # owner's row is locked, so two claims never wait for each other.
                theirs = self.conn.execute(
                    """UPDATE beamish_members SET lease_expires = lease_expires
                        WHERE cluster = %s AND node = %s
                    RETURNING lease_expires > clock_timestamp()""",
                    (self.cluster, owner)).fetchone()
                if theirs is not None and theirs[0]:
                    return None
            new = self.conn.execute(
                """UPDATE beamish_shards SET owner = %s, epoch = epoch + 1, moved = now()
                    WHERE cluster = %s AND shard = %s RETURNING epoch""",
                (node, self.cluster, shard)).fetchone()
        return None if new is None else int(new[0])

    def release(self, shard: int, node: str, epoch: int) -> bool:
        """Give ``shard`` up (owner NULL; its epoch stays, the next claim bumps it), if
        ``node`` still owns it at ``epoch``; return whether it did. Call it after the
        shard's agents stopped and flushed: the successor may claim it at once."""
        with _unreachable_as_store_error(f"release of shard {shard}"):
            row = self.conn.execute(
                """UPDATE beamish_shards SET owner = NULL, moved = now()
                    WHERE cluster = %s AND shard = %s AND owner = %s AND epoch = %s
                RETURNING shard""", (self.cluster, shard, node, epoch)).fetchone()
        return row is not None


def open_cluster(conn: psycopg.Connection[Any], cluster: str, shards: int) -> ClusterTable:
    """Create the schema, the cluster's row and its ``shards`` shard rows if they do not
    exist, or check them: a cluster created with another shard count is refused with
    `ShardCountMismatch`. ``conn`` must be in autocommit mode."""
    if shards <= 0:
        raise ConfigError(f"a cluster has at least one shard, not {shards}")
    with _unreachable_as_store_error(f"opening cluster {cluster!r}"):
        ensure_schema(conn)
        with conn.transaction():
            conn.execute("""INSERT INTO beamish_cluster (cluster, shards) VALUES (%s, %s)
                            ON CONFLICT (cluster) DO NOTHING""", (cluster, shards))
            have = conn.execute(
                "SELECT shards FROM beamish_cluster WHERE cluster = %s FOR SHARE",
                (cluster,)).fetchone()
            if have is not None and int(have[0]) != shards:
                raise ShardCountMismatch(cluster, int(have[0]), shards)
            conn.execute("""INSERT INTO beamish_shards (cluster, shard)
                            SELECT %s, g FROM generate_series(0, %s - 1) AS g
                            ON CONFLICT (cluster, shard) DO NOTHING""", (cluster, shards))
    return ClusterTable(conn, cluster, shards)


def existing_cluster(conn: psycopg.Connection[Any], cluster: str) -> ClusterTable:
    """The table of cluster ``cluster`` as it exists (nothing is created); `ConfigError`
    if the database holds no such cluster."""
    with _unreachable_as_store_error(f"reading cluster {cluster!r}"):
        have = conn.execute(
            """SELECT shards FROM beamish_cluster WHERE cluster = %s""", (cluster,)
        ).fetchone() if _has_schema(conn) else None
    if have is None:
        raise ConfigError(f"this database holds no cluster named {cluster!r} (a cluster "
                          "is created when its first node starts)")
    return ClusterTable(conn, cluster, int(have[0]))


def _has_schema(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('beamish_cluster') IS NOT NULL").fetchone()
    return bool(row and row[0])


def connect_cluster(dsn: str, cluster: str, shards: int) -> ClusterTable:
    """A new autocommit connection to ``dsn`` with the link options a node needs
    (`LINK_OPTIONS`), opened on ``cluster`` (`open_cluster`)."""
    with _unreachable_as_store_error(f"connecting to {_redacted(dsn)}"):
        conn = psycopg.connect(dsn, autocommit=True, **LINK_OPTIONS)
    try:
        return open_cluster(conn, cluster, shards)
    except BaseException:
        conn.close()
        raise


def read_members(dsn: str, cluster: str) -> list[Member]:
    """The members of cluster ``cluster`` in the database at ``dsn``, read over a
    connection of their own (what ``beamish nodes`` shows)."""
    with _unreachable_as_store_error(f"connecting to {_redacted(dsn)}"):
        conn = psycopg.connect(dsn, autocommit=True, **LINK_OPTIONS)
    with conn:
        return existing_cluster(conn, cluster).members()


def _redacted(dsn: str) -> str:
    """``dsn`` without a password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured PostgreSQL"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items()
                                             if v is not None})
