"""The route table of node-pinned agents (``beamish_routes``): which node's LMDB holds
each agent name of the cluster, so that names are cluster-wide and any node can forward
to the owner in one hop; and each node's public key (``beamish_node_keys``), which the
others check against their own authorized keys before they forward to it.

One row per pinned agent, written once at its spawn (one ``INSERT ... ON CONFLICT``
after the name's lock, `.names`: a round trip more) and deleted with the agent; a stop keeps it (a stopped agent's name resumes
on its node). A lookup is one indexed ``SELECT`` joined with the owner's member row and
key, so the forwarder learns in one round trip where the owner listens, whether its lease
is alive by the database's clock, and which key to trust.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from ...errors import StoreUnavailable
from .cluster import _as_store_error, _connect
from .names import lock_name

REPLICATED = "(replicated)"  # the owner `claim` reports for a replicated agent's name


@dataclass(frozen=True, slots=True)
class Route:
    """Where a pinned agent lives, as the database saw it at the lookup.

    Attributes:
        name: the agent's name.
        node: the node whose LMDB holds it.
        address: that node's advertised address ("" when it is not a member now).
        public_key: its public key as it published it ("" if it never did).
        lease_left: seconds until its lease expires by the database's clock (< 0:
            expired; None: it is not a member now, e.g. it left).
        lease_expires: when its lease expires or expired (None: not a member).
    """

    name: str
    node: str
    address: str
    public_key: str
    lease_left: float | None
    lease_expires: dt.datetime | None

    @property
    def alive(self) -> bool:
        """Whether the owner's lease was alive at the lookup."""
        return self.lease_left is not None and self.lease_left > 0


class RouteTable:
    """A cluster's pinned routes through one connection of its own (autocommit, one
    statement per method, serialised by a lock: safe from several threads).

    Args:
        dsn: the cluster's PostgreSQL.
        cluster: the cluster's name.
    """

    def __init__(self, dsn: str, cluster: str) -> None:
        self.dsn = dsn
        self.cluster = cluster
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def _exec(self, what: str, sql: str, args: Any,
              locked: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (after taking name ``locked``'s lock, in one transaction,
        when given: `.names`). Every statement here is idempotent, so one that failed
        on a connection found lost (the server restarted, the backend was terminated)
        is run once more on a new one."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = _connect(self.dsn, "the request failed; try again")
                conn = self._conn
                try:
                    with _as_store_error(what, "the request failed; try again", conn):
                        if locked is None:
                            cur = conn.execute(sql, args)
                            return cur.fetchall() if cur.description is not None else []
                        with conn.transaction():
                            lock_name(conn, self.cluster, locked)
                            cur = conn.execute(sql, args)
                            return cur.fetchall() if cur.description is not None else []
                except StoreUnavailable:
                    if attempt == 2 or not (conn.closed or conn.broken):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def claim(self, name: str, node: str) -> str | None:
        """Route ``name`` to ``node``: None when done (or it was routed there already),
        else who holds the name (another node, or `REPLICATED`)."""
        rows = self._exec(
            f"routing agent {name!r} to node {node!r}",
            """INSERT INTO beamish_routes (cluster, name, node)
                 SELECT %(c)s, %(n)s, %(node)s
                  WHERE NOT EXISTS (SELECT 1 FROM beamish_agents
                                     WHERE cluster = %(c)s AND name = %(n)s)
               ON CONFLICT (cluster, name) DO UPDATE SET node = EXCLUDED.node
                 WHERE beamish_routes.node = EXCLUDED.node
               RETURNING node""",
            {"c": self.cluster, "n": name, "node": node}, locked=name)
        if rows:
            return None
        owner = self._exec(f"looking up agent {name!r}",
                           "SELECT node FROM beamish_routes WHERE cluster = %s AND name = %s",
                           (self.cluster, name))
        return str(owner[0][0]) if owner else REPLICATED

    def claim_all(self, names: Iterable[str], node: str) -> dict[str, str]:
        """Route every name of ``names`` to ``node`` in one statement (a node's agents at
        its start); return the names held elsewhere, with their holder."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        rows = self._exec(
            f"routing node {node!r}'s agents",
            """WITH mine AS (
                 INSERT INTO beamish_routes (cluster, name, node)
                   SELECT %s, n, %s FROM unnest(%s::text[]) AS n
                 ON CONFLICT (cluster, name) DO NOTHING RETURNING name)
               SELECT r.name, r.node FROM beamish_routes r
                WHERE r.cluster = %s AND r.name = ANY(%s::text[]) AND r.node <> %s
                  AND r.name NOT IN (SELECT name FROM mine)""",
            (self.cluster, node, wanted, self.cluster, wanted, node))
        return {str(r[0]): str(r[1]) for r in rows}

    def drop(self, name: str, node: str) -> None:
        """Remove ``name``'s route, if it is ``node``'s (a deleted agent)."""
        self._exec(f"removing agent {name!r}'s route",
                   "DELETE FROM beamish_routes WHERE cluster = %s AND name = %s AND node = %s",
                   (self.cluster, name, node))

    def names_of(self, node: str) -> set[str]:
        """Every name routed to ``node``."""
        return {str(r[0]) for r in self._exec(
            f"listing node {node!r}'s routes",
            "SELECT name FROM beamish_routes WHERE cluster = %s AND node = %s",
            (self.cluster, node))}

    def lookup(self, name: str) -> Route | None:
        """``name``'s route with its owner's address, key and lease (None: not pinned)."""
        rows = self._exec(
            f"looking up agent {name!r}",
            """SELECT r.node, coalesce(m.address, ''), coalesce(k.public_key, ''),
                      EXTRACT(EPOCH FROM m.lease_expires - clock_timestamp())::float8,
                      m.lease_expires
                 FROM beamish_routes r
                 LEFT JOIN beamish_members m ON m.cluster = r.cluster AND m.node = r.node
                 LEFT JOIN beamish_node_keys k ON k.cluster = r.cluster AND k.node = r.node
                WHERE r.cluster = %s AND r.name = %s""",
            (self.cluster, name))
        if not rows:
            return None
        node, address, key, left, expires = rows[0]
        return Route(name, str(node), str(address), str(key),
                     None if left is None else float(left), expires)

    def member(self, node: str) -> Route | None:
        """Member ``node`` as a route (``name`` empty): its address, key and lease (None:
        no such member now)."""
        rows = self._exec(
            f"looking up node {node!r}",
            """SELECT m.address, coalesce(k.public_key, ''),
                      EXTRACT(EPOCH FROM m.lease_expires - clock_timestamp())::float8,
                      m.lease_expires
                 FROM beamish_members m
                 LEFT JOIN beamish_node_keys k ON k.cluster = m.cluster AND k.node = m.node
                WHERE m.cluster = %s AND m.node = %s""",
            (self.cluster, node))
        if not rows:
            return None
        address, key, left, expires = rows[0]
        return Route("", node, str(address), str(key), float(left), expires)

    def lease_left(self, node: str) -> float | None:
        """Seconds left on ``node``'s lease by the database's clock (None: no member)."""
        rows = self._exec(
            f"reading node {node!r}'s lease",
            """SELECT EXTRACT(EPOCH FROM lease_expires - clock_timestamp())::float8
                 FROM beamish_members WHERE cluster = %s AND node = %s""",
            (self.cluster, node))
        return float(rows[0][0]) if rows else None

    def publish_key(self, node: str, public_key: str) -> None:
        """Record ``node``'s public key (what the others connect to it with)."""
        self._exec(f"publishing node {node!r}'s key",
                   """INSERT INTO beamish_node_keys (cluster, node, public_key)
                      VALUES (%s, %s, %s) ON CONFLICT (cluster, node)
                      DO UPDATE SET public_key = EXCLUDED.public_key""",
                   (self.cluster, node, public_key))
