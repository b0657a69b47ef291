"""A delete whose route removal failed in PostgreSQL (its agent gone from LMDB) has the
route removed again by the node, without another delete; a node starting with routes
its LMDB no longer holds (a removal lost with the node) removes them once it joined; a
name spawned here again keeps its route. The failure is real: a trigger of the test's
database refuses the DELETE."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from beamish.runtime import Node, SpawnError, start_node
from tests.cluster.conftest import write_config
from tests.conftest import shutdown_quietly, wait_until

LEDGER = "tests.agents.cluster_agents:Ledger"

REFUSE = """
CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'route removal refused by the test'; END $$;
CREATE TRIGGER refuse BEFORE DELETE ON beamish_routes
  FOR EACH ROW EXECUTE FUNCTION refuse_delete();"""


def _sql(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description is not None else []


def _routes(dsn: str) -> set[str]:
    return {str(r[0]) for r in _sql(dsn, "SELECT name FROM beamish_routes")}


@pytest.fixture
def config(pg_dsn: str, node_dir: str) -> Iterator[str]:
    """Node n1 of cluster "t" (no front door: no other node here)."""
    import os
    base = os.path.dirname(node_dir)
    yield write_config(base, f'[cluster]\nname = "t"\nnode = "n1"\npostgres = "{pg_dsn}"\n')


def _start(node_dir: str, config: str) -> Node:
    node = start_node(node_dir, config=config)
    wait_until(lambda: (st := node.cluster()) is not None and (st.incarnation or 0) > 0,
               timeout=30, what="n1 joined")
    return node


def test_a_route_left_by_a_failed_removal_is_removed_again(
        pg_dsn: str, node_dir: str, config: str) -> None:
    node = _start(node_dir, config)
    try:
        for name in ("gone", "back", "kept"):
            node.spawn(LEDGER, name=name, lazy=True)
        assert _routes(pg_dsn) == {"gone", "back", "kept"}
        _sql(pg_dsn, REFUSE)
        node.delete("gone")  # done in LMDB; its route stays (logged)
        node.delete("back")
        assert _routes(pg_dsn) == {"gone", "back", "kept"}
        node.spawn(LEDGER, name="back", lazy=True)  # this node's again: keeps its route
        _sql(pg_dsn, "DROP TRIGGER refuse ON beamish_routes")
        wait_until(lambda: _routes(pg_dsn) == {"back", "kept"}, timeout=30,
                   what="the deleted agent's route removed without another delete")
        # the node's own table agrees: the name is free in the cluster
        node.spawn(LEDGER, name="gone", lazy=True)
        assert node.info("back").status == "sleeping"
    finally:
        shutdown_quietly(node)
    # A route this node's LMDB no longer holds (its removal lost with the node): removed
    # after its next start; another node's route is not touched.
    _sql(pg_dsn, "INSERT INTO beamish_routes (cluster, name, node) VALUES "
                 "('t', 'ghost', 'n1'), ('t', 'theirs', 'n2')")
    node = _start(node_dir, config)
    try:
        wait_until(lambda: "ghost" not in _routes(pg_dsn), timeout=30,
                   what="the stale route removed after the start")
        assert _routes(pg_dsn) == {"gone", "back", "kept", "theirs"}
        with pytest.raises(SpawnError, match="node 'n2'"):
            node.spawn(LEDGER, name="theirs", lazy=True)
    finally:
        shutdown_quietly(node)
