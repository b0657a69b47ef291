"""One name space for both kinds of agent in a cluster: a node-pinned agent's name is a
row of ``beamish_routes``, a replicated agent's a row of ``beamish_agents``, and a claim
of either kind checks the other table. Read committed alone would let a pinned claim and
a replicated spawn of one name each miss the other's uncommitted row and both succeed
(write skew); so each takes the name's lock (`lock_name`: a transaction-scoped advisory
lock on a hash of the cluster and the name) first, in the transaction that writes the
name, and checks the other table after it: the second waits for the first's commit and
then sees its row (each statement of a read-committed transaction reads the rows
committed before it began)."""

from __future__ import annotations

from typing import Any

from ..protocol import Txn
from .txn import PgTxn

LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def lock_key(cluster: str, name: str) -> str:
    """The text whose hash is the lock of ``name`` in ``cluster`` (pure)."""
    return f"beamish-name:{len(cluster)}:{cluster}:{name}"


def lock_name(cur: Any, cluster: str, name: str) -> None:
    """Take ``name``'s lock on cursor or connection ``cur``, until its transaction ends."""
    cur.execute(LOCK_SQL, (lock_key(cluster, name),))


def pinned_holder(t: Txn, name: str) -> str | None:
    """Lock ``name`` in transaction ``t`` (a `PgStore`'s), then return the node whose
    pinned agent holds it (None: no pinned agent does)."""
    assert isinstance(t, PgTxn), t
    lock_name(t.cur, t.c, name)
    row = t.cur.execute("SELECT node FROM beamish_routes WHERE cluster = %s AND name = %s",
                        (t.c, name)).fetchone()
    return None if row is None else str(row[0])
