"""The sweep of the link rows left for node incarnations that are gone
(store/postgres/sweep.py `sweep`, which every node runs), on a real PostgreSQL: the
signals addressed to them and the monitors of replicated agents their agents held go; a
live incarnation's rows stay, whoever sweeps, and a monitor held by a replicated agent
(node '') is never swept: it follows its agent."""

from __future__ import annotations

import psycopg
import pytest

from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.links import REPLICATED_WATCHER, LinkSignal, PgLinks, SignalOp
from beamish.runtime.store.postgres.sweep import sweep

CLUSTER = "sw"


def _member(conn: psycopg.Connection, node: str, incarnation: int, alive: bool) -> None:
    conn.execute("INSERT INTO beamish_members (cluster, node, address, incarnation, "
                 "lease_expires) VALUES (%s, %s, '', %s, clock_timestamp() + %s * "
                 "interval '1 minute')", (CLUSTER, node, incarnation, 1 if alive else -1))


def _exit(to: str, inc: int) -> LinkSignal:
    return LinkSignal(SignalOp.EXIT, 7, to, inc, "live", 1, "a", "", "killed", True)


@pytest.mark.parametrize(("to", "inc", "kept"), [
    ("live", 2, True),       # the current incarnation of a live node
    ("live", 3, True),       # a later one (a node joining again): kept for it
    ("live", 1, False),      # an earlier incarnation of a live node
    ("expired", 1, False),   # a node whose lease ran out (kill -9, a cut)
    ("left", 4, False),      # a node that left (its row deleted)
])
def test_the_sweep_removes_the_rows_of_gone_incarnations_only(pg_dsn, to, inc, kept):
    store = open_postgres_store(pg_dsn, CLUSTER)  # the schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for table in ("beamish_members", "beamish_link_signals", "beamish_link_watches"):
            conn.execute(f"DELETE FROM {table} WHERE cluster = %s", (CLUSTER,))
        _member(conn, "live", 2, alive=True)
        _member(conn, "expired", 1, alive=False)
        conn.execute("INSERT INTO beamish_agents (cluster, name, id, status, supervisor, "
                     "record) VALUES (%s, 'r', 1, 'running', 'root', '') "
                     "ON CONFLICT DO NOTHING", (CLUSTER,))
    links = PgLinks(pg_dsn, CLUSTER)
    try:
        links.send([_exit(to, inc)])
        assert links.watch("r", ["running"], to, inc, "w") is not None
        # a replicated agent's monitor: held by its name, whatever node it runs on
        assert links.watch("r", ["running"], REPLICATED_WATCHER, 0, "rw") is not None
        first = store.write(sweep)
        assert (first.signals, first.watches) == ((0, 0) if kept else (1, 1))
        again = store.write(sweep)
        assert (again.signals, again.watches) == (0, 0)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            left = [conn.execute(f"SELECT count(*) FROM {table} WHERE cluster = %s",
                                 (CLUSTER,)).fetchone()[0]
                    for table in ("beamish_link_signals", "beamish_link_watches")]
        assert left == ([1, 2] if kept else [0, 1])
    finally:
        links.close()
        store.close()
