"""``ps`` on a cluster node while its PostgreSQL is down lists the node's own agents and
says that the cluster's replicated agents are missing: ``ps_page`` marks the page
(``unavailable``), ``ps`` raises `PartialListing` carrying those rows, and ``beamish
ps`` prints them, says why on stderr and exits 1. Once the server is back, the listing
is whole again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from beamish.runtime import start_node
from beamish.runtime.errors import PartialListing
from tests.cluster.conftest import PgServer, write_config
from tests.conftest import REPO, shutdown_quietly, wait_until

LEDGER = "tests.agents.cluster_agents:Ledger"
pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]  # it stops PostgreSQL


def test_ps_lists_the_nodes_own_agents_while_postgresql_is_down(
        pg_server: PgServer, pg_dsn: str, node_dir: str) -> None:
    config = write_config(os.path.dirname(node_dir), f'[cluster]\nname = "t"\n'
                          f'node = "n1"\npostgres = "{pg_dsn}"\n')
    node = start_node(node_dir, config=config)
    try:
        wait_until(lambda: (st := node.cluster()) is not None and len(st.shards) > 0,
                   timeout=30, what="n1 holding shards")
        node.spawn(LEDGER, name="own", lazy=True)
        node.spawn(LEDGER, name="rep", durability="replicated", lazy=True)
        assert [a.name for a in node.ps()] == ["own", "rep"]
        pg_server.stop("immediate")
        try:
            page = node.ps_page()
            assert [a.name for a in page.rows] == ["own"] and page.unavailable, page
            with pytest.raises(PartialListing) as raised:
                node.ps()
            assert [a.name for a in raised.value.rows] == ["own"]
            assert "replicated agents could not be read" in str(raised.value)
            out = subprocess.run([sys.executable, "-m", "beamish.runtime", "ps", "--dir",
                                  node_dir], cwd=REPO, capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 1, out
            assert "own" in out.stdout and "rep" not in out.stdout, out.stdout
            assert "only this node's own agents are listed" in out.stderr, out.stderr
        finally:
            pg_server.start()
        wait_until(lambda: [a.name for a in node.ps_page().rows] == ["own", "rep"],
                   timeout=60, what="the whole listing back")
    finally:
        shutdown_quietly(node)
