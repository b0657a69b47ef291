"""``beamish nodes`` against a real PostgreSQL: the members, their leases by the
database's clock, drain flags, agent and shard counts; typed refusals."""

from __future__ import annotations

import json
import time

from beamish.runtime.store.postgres.cluster import connect_cluster
from tests.conftest import beamish


def test_nodes_lists_the_members_from_the_database(pg_dsn):
    t = connect_cluster(pg_dsn, "prod", 8)
    try:
        n1 = t.join("n1", "tcp://10.0.0.1:7700", ttl=600).incarnation
        n2 = t.join("n2", "tcp://10.0.0.2:7700", ttl=0.2).incarnation
        t.renew("n1", n1, ttl=600, agents=12)
        for s in range(3):
            t.claim(s, "n1", n1, None, 0)
        t.set_draining("n2", n2)
        time.sleep(0.5)  # n2's lease expires
        out = beamish("nodes", "--postgres", pg_dsn, "--cluster", "prod", check=True).stdout
        lines = out.splitlines()
        assert lines[0].split() == ["NODE", "ADDRESS", "LEASE", "DRAINING", "AGENTS",
                                    "SHARDS", "INCARNATION"]
        assert lines[1].split()[:2] == ["n1", "tcp://10.0.0.1:7700"]
        assert "left" in lines[1] and lines[1].split()[-4:] == ["no", "12", "3", "1"]
        assert "expired" in lines[2] and lines[2].split()[-4:] == ["yes", "0", "0", "1"]
        env = {"BEAMISH_POSTGRES": pg_dsn}
        js = [json.loads(line) for line in beamish("nodes", "--cluster", "prod", "--json",
                                                   env=env, check=True).stdout.splitlines()]
        assert [(m["node"], m["alive"], m["shards"], m["agents"], m["draining"])
                for m in js] == [("n1", True, 3, 12, False), ("n2", False, 0, 0, True)]
        assert 500 < js[0]["lease_left"] <= 600  # (a loaded machine starts the CLI slowly)
    finally:
        t.close()


def test_nodes_refuses_an_unknown_cluster_and_a_missing_dsn(pg_dsn):
    connect_cluster(pg_dsn, "prod", 8).close()
    proc = beamish("nodes", "--postgres", pg_dsn, "--cluster", "nope")
    assert proc.returncode == 2 and "no cluster named 'nope'" in proc.stderr
    proc = beamish("nodes", "--cluster", "prod", env={"BEAMISH_POSTGRES": ""})
    assert proc.returncode == 2 and "--postgres DSN" in proc.stderr


def test_nodes_says_when_the_database_is_unreachable(pg_server):
    from pgserver import free_port
    proc = beamish("nodes", "--postgres", f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                   "--cluster", "prod")
    assert proc.returncode == 1 and "the cluster's PostgreSQL is unavailable" in proc.stderr
