"""Table tests of a cluster node's pure rules: which config makes a cluster node
(`cluster_settings`), the ``cluster`` answer's wire form and its status line, and a
spawn's durability."""

from __future__ import annotations

import pytest

from beamish.runtime import ConfigError
from beamish.runtime.client.cli import cluster_line
from beamish.runtime.cluster.status import ClusterStatus
from beamish.runtime.messaging.spawnargs import spawn_request
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS, cluster_settings
from beamish.runtime.node.config import ClusterSection

DSN = "postgresql://db/beamish"


@pytest.mark.parametrize(("section", "env", "expected"), [
    # no [cluster] table, or one that only listens: not a cluster node
    (None, {}, None),
    (ClusterSection(name="t"), {}, None),
    # postgres from the table or from $BEAMISH_POSTGRES
    (ClusterSection(name="t", node="n1", postgres=DSN), {}, ("t", "n1", DSN, "")),
    (ClusterSection(name="t", node="n1"), {"BEAMISH_POSTGRES": DSN}, ("t", "n1", DSN, "")),
    # the table's DSN wins over the environment's
    (ClusterSection(name="t", node="n1", postgres=DSN), {"BEAMISH_POSTGRES": "other"},
     ("t", "n1", DSN, "")),
    # the address others reach: advertise, else listen
    (ClusterSection(name="t", node="n1", postgres=DSN, listen="tcp://0.0.0.0:7700",
                    keys="/k"), {}, ("t", "n1", DSN, "tcp://0.0.0.0:7700")),
    (ClusterSection(name="t", node="n1", postgres=DSN, listen="tcp://0.0.0.0:7700",
                    advertise="tcp://10.0.0.2:7700", keys="/k"), {},
     ("t", "n1", DSN, "tcp://10.0.0.2:7700")),
])
def test_cluster_settings(section, env, expected):
    got = cluster_settings(section, env)
    if expected is None:
        assert got is None
    else:
        assert (got.cluster, got.node, got.dsn, got.address) == expected
        assert got.shards == DEFAULT_SHARDS


def test_a_cluster_needs_its_name():
    with pytest.raises(ConfigError, match="cluster.name"):
        cluster_settings(ClusterSection(node="n1", postgres=DSN), {})


def test_the_node_name_defaults_to_the_host_name():
    import socket
    got = cluster_settings(ClusterSection(name="t", postgres=DSN), {})
    assert got is not None and got.node == socket.gethostname()


@pytest.mark.parametrize("status", [
    ClusterStatus("t", "n1", None, True, {}, 0, 4.0),
    ClusterStatus("t", "n2", 3, False, {0: 1, 7: 12}, 5, 4.0),
])
def test_cluster_status_round_trip(status):
    assert ClusterStatus.from_wire(status.to_wire()) == status


@pytest.mark.parametrize(("status", "words"), [
    (ClusterStatus("t", "n1", None, True, {}, 0, 4.0), ["not joined yet", "FENCED", "0 shard"]),
    (ClusterStatus("t", "n2", 3, False, {0: 1, 7: 12}, 5, 4.0),
     ["incarnation 3", "lease held (ttl 4 s)", "2 shard(s)", "5 replicated"]),
])
def test_cluster_line(status, words):
    line = cluster_line(status)
    assert all(w in line for w in words), line


@pytest.mark.parametrize(("durability", "ok"), [
    (None, True), ("replicated", True), ("fsync", False), ("REPLICATED", False), (1, False),
])
def test_spawn_durability(durability, ok):
    if ok:
        req = spawn_request("m:C", name="a", durability=durability)
        assert req.durability == durability
        assert ("durability" in req.to_wire()) == (durability is not None)
    else:
        with pytest.raises(ConfigError, match="durability"):
            spawn_request("m:C", name="a", durability=durability)


def test_name_locks_are_per_name_and_kept_only_while_used():
    from beamish.runtime.node.cluster_node import _NameLocks
    locks = _NameLocks()
    assert locks.acquire("a", blocking=False)
    assert not locks.acquire("a", blocking=False)  # held: a start gives way
    assert locks.acquire("b", blocking=False)      # another name of the same shard: free
    locks.release("a")
    locks.release("b")
    with locks.held("a"):
        assert not locks.acquire("a", blocking=False)
    assert locks._locks == {}  # nothing kept for names nobody uses
