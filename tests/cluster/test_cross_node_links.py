"""Monitors and links across nodes (docs/cluster.md, "Monitors and links across nodes"):
two real node processes of one cluster on a real PostgreSQL; agents of one node monitor
or link to agents of the other with ``self.ctx.monitor(name, node=...)`` /
``self.ctx.link(name, node=...)``. Every Down and Exit is counted: each arrives exactly
once, and none after its monitor or link is gone."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

from beamish.runtime import BeamishError, Node, connect, start_node
from beamish.runtime.cluster.placement import shard_of
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS
from tests.cluster.conftest import Keys, free_port
from tests.conftest import kill_node, shutdown_quietly, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]  # two nodes per test: make test-cluster

WATCHER = "tests.agents.cluster_link_agents:RemoteWatcher"
TRAPPER = "tests.agents.cluster_link_agents:TrappingRemoteWatcher"
QUIET_S = 1.5  # how long a test waits to see that nothing more arrives


def _start(pg_dsn: str, doors: dict[str, str], keys: Keys | None
           ) -> Iterator[dict[str, Node]]:
    """Nodes n1 and n2 of cluster "t" on ``pg_dsn``, both joined (with a front door on
    ``doors[n]`` when given)."""
    base = tempfile.mkdtemp(prefix="bml-", dir="/tmp")
    nodes: dict[str, Node] = {}
    try:
        for n in ("n1", "n2"):
            cfg = os.path.join(base, f"{n}.toml")
            with open(cfg, "w") as fh:
                fh.write(f'[cluster]\nname = "t"\nnode = "{n}"\npostgres = "{pg_dsn}"\n')
                if keys is not None:
                    fh.write(f'listen = "{doors[n]}"\nkeys = "{keys.node}"\n')
            nodes[n] = start_node(os.path.join(base, n), config=cfg)
        for node in nodes.values():
            wait_until(lambda node=node: node.cluster().incarnation is not None,  # type: ignore[misc, union-attr]
                       timeout=30, what="the node to join its cluster")
        yield nodes
    finally:
        for node in nodes.values():
            shutdown_quietly(node)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def two_nodes(pg_dsn: str) -> Iterator[dict[str, Node]]:
    """Nodes n1 and n2 of cluster "t" on ``pg_dsn``, both joined."""
    yield from _start(pg_dsn, {}, None)


def _seen(node: Node, name: str, count: int, timeout: float = 20.0) -> list[list[str]]:
    """What agent ``name`` received, once it has ``count`` messages; then, after a quiet
    while, the same list again (nothing more arrived)."""
    seen = wait_until(lambda: (lambda s: s if len(s) >= count else None)(
        node.call(name, "seen")), timeout=timeout, what=f"{count} Down/Exit at {name!r}")
    time.sleep(QUIET_S)
    again = node.call(name, "seen")
    assert again == seen, "a Down or Exit arrived more than expected"
    return list(seen)


def _pid_changes(node: Node, name: str, pid: int) -> int:
    return wait_until(lambda: (lambda p: p if p not in (None, pid) else None)(
        node.info(name).pid), timeout=20, what=f"{name!r} killed and restarted")


def test_a_remote_monitor_gets_one_down_per_exit_of_the_watched_agent(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    n2.spawn(WATCHER, name="x")
    n1.spawn(WATCHER, name="w")
    assert n1.call("w", ["monitor", "x", "n2"]) == "ok"
    with pytest.raises(BeamishError):
        n2.call("x", "crash")  # os._exit(3): a crash; x's supervisor restarts it
    down = _seen(n1, "w", 1)
    assert [d[:2] for d in down] == [["Down", "x"]] and "abnormal" in down[0][2], down
    # The crashing call was tried three times (max_attempts), in three processes of x: the
    # monitor fired once, with the first, and was gone.
    wait_until(lambda: n2.info("x").restarts >= 3, timeout=20, what="x's three attempts")
    assert _seen(n1, "w", 1) == down
    # A monitor of an agent that is not running there: Down "noproc" (n1 has no "ghost"
    # either); and one of an agent that stops: its reason.
    n1.call("w", ["monitor", "ghost", "n2"])
    n2.spawn(WATCHER, name="x2")
    n1.call("w", ["monitor", "x2", "n2"])
    n2.stop("x2")
    seen = _seen(n1, "w", 3)
    assert seen[1:] == [["Down", "ghost", "noproc"], ["Down", "x2", "normal: normal"]], seen
    # The other way round, and a watcher's own exit ends its remote monitor quietly.
    n2.spawn(WATCHER, name="w2")
    n2.call("w2", ["monitor", "w", "n1"])
    with pytest.raises(BeamishError):
        n1.call("w", "crash")
    assert [d[:2] for d in _seen(n2, "w2", 1)] == [["Down", "w"]]


def test_a_link_across_nodes_carries_exits_both_ways(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    # n1's agent traps exits; n2's dies: Exit on n1.
    n1.spawn(TRAPPER, name="t1")
    n2.spawn(WATCHER, name="v2")
    n1.call("t1", ["link", "v2", "n2"])
    with pytest.raises(BeamishError):
        n2.call("v2", "crash")
    seen = _seen(n1, "t1", 1)
    assert [s[:2] for s in seen] == [["Exit", "v2"]] and "abnormal" in seen[0][2], seen
    # n2's agent traps exits; n1's dies: Exit on n2 (asked from the dying side).
    n2.spawn(TRAPPER, name="t2")
    n1.spawn(WATCHER, name="v1")
    n1.call("v1", ["link", "t2", "n2"])
    with pytest.raises(BeamishError):
        n1.call("v1", "crash")
    seen = _seen(n2, "t2", 1)
    assert [s[:2] for s in seen] == [["Exit", "v1"]], seen
    # Neither traps: an abnormal exit kills the linked agent on the other node, both ways.
    n1.spawn(WATCHER, name="k1")
    n2.spawn(WATCHER, name="k2")
    n1.call("k1", ["link", "k2", "n2"])
    pid1 = n1.info("k1").pid
    assert pid1 is not None
    with pytest.raises(BeamishError):
        n2.call("k2", "crash")
    _pid_changes(n1, "k1", pid1)
    assert "linked agent 'k2'" in str(n1.info("k1").last_failure), n1.info("k1")
    n1.spawn(WATCHER, name="j1")
    n2.spawn(WATCHER, name="j2")
    n2.call("j2", ["link", "j1", "n1"])
    pid2 = n2.info("j2").pid
    assert pid2 is not None
    with pytest.raises(BeamishError):
        n1.call("j1", "crash")
    _pid_changes(n2, "j2", pid2)
    assert "linked agent 'j1'" in str(n2.info("j2").last_failure), n2.info("j2")
    # A normal exit does not kill: the trapping side hears "normal".
    n2.spawn(TRAPPER, name="t3")
    n1.spawn(WATCHER, name="s1")
    n1.call("s1", ["link", "t3", "n2"])
    assert n1.call("s1", "stop-normal") == "bye"
    assert _seen(n2, "t3", 1) == [["Exit", "s1", "normal: normal"]]
    # A link to an agent that does not run there: exit "noproc".
    n1.call("t1", ["link", "ghost", "n2"])
    assert _seen(n1, "t1", 2)[1] == ["Exit", "ghost", "noproc"]


def test_kill_9_of_a_node_gives_noconnection_to_the_watchers_of_its_agents(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    for name in ("x", "y", "z"):
        n2.spawn(WATCHER, name=name)
    n1.spawn(WATCHER, name="w")
    n1.spawn(TRAPPER, name="t")
    n1.spawn(WATCHER, name="k")
    n1.call("w", ["monitor", "x", "n2"])
    n1.call("w", ["monitor", "y", "n2"])
    n1.call("t", ["link", "z", "n2"])
    n1.call("k", ["link", "z", "n2"])
    pid = n1.info("k").pid
    assert pid is not None
    kill_node(n2)  # its daemon, zygote and agents
    gone = time.monotonic()
    seen = _seen(n1, "w", 2, timeout=30)
    took = time.monotonic() - gone
    assert sorted(seen) == [["Down", "x", "noconnection"], ["Down", "y", "noconnection"]]
    assert _seen(n1, "t", 1) == [["Exit", "z", "noconnection"]]
    _pid_changes(n1, "k", pid)
    assert "noconnection" in str(n1.info("k").last_failure)
    # A monitor of an agent of a node that is not there: noconnection at once.
    n1.call("w", ["monitor", "x", "n2"])
    assert _seen(n1, "w", 3)[2] == ["Down", "x", "noconnection"]
    print(f"noconnection {took:.1f} s after the kill -9 (lease ttl 4 s)")


def test_a_node_that_shuts_down_in_order_is_noconnection_too(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    n2.spawn(WATCHER, name="x")
    n1.spawn(WATCHER, name="w")
    n1.call("w", ["monitor", "x", "n2"])
    n2.shutdown(timeout=60)  # it leaves the cluster: its agents' stops are not sent
    assert _seen(n1, "w", 1) == [["Down", "x", "noconnection"]]


@pytest.fixture
def doors() -> dict[str, str]:
    """A front door address for each of n1 and n2."""
    return {n: f"tcp://127.0.0.1:{free_port()}" for n in ("n1", "n2")}


@pytest.fixture
def two_doors(pg_dsn: str, keys: Keys, doors: dict[str, str]) -> Iterator[dict[str, Node]]:
    """Nodes n1 and n2 of cluster "t" on ``pg_dsn``, both joined, with front doors."""
    yield from _start(pg_dsn, doors, keys)


def test_a_monitor_of_a_replicated_agent_holds_across_its_move(two_doors, doors, keys):
    n1, n2 = two_doors["n1"], two_doors["n2"]

    def held() -> set[int] | None:
        shards = [set(n.cluster().shards) for n in (n1, n2)]  # type: ignore[union-attr]
        return shards[1] if sum(map(len, shards)) == DEFAULT_SHARDS and all(
            shards) else None
    on_n2 = wait_until(held, timeout=60, what="both nodes holding shards")
    r = next(f"r{i}" for i in range(1000) if shard_of(f"r{i}", DEFAULT_SHARDS) in on_n2)
    with connect(doors["n1"], keys=keys.client) as client:
        client.spawn(WATCHER, name=r, durability="replicated")
        n1.spawn(WATCHER, name="w")
        assert n1.call("w", ["monitor", r, None]) == "ok"
        pid = client.call(r, "pid")
        kill_node(n2)  # r's owner: r comes back on n1, with its state and mailbox

        def moved() -> bool:
            try:
                return bool(client.call(r, "pid", timeout=1.0) != pid)
            except BeamishError:  # not taken over yet
                return False
        wait_until(moved, timeout=60, what=f"{r} answering from n1")
        # A move is not an exit: no Down; the monitor holds on the new owner.
        time.sleep(QUIET_S)
        assert n1.call("w", "seen") == []
        client.cast(r, "crash")  # every restart crashes again: one Down all the same
        assert _seen(n1, "w", 1) == [["Down", r, "abnormal: exit code 3"]]
        # A replicated agent that does not exist: noproc, as a local one.
        n1.call("w", ["monitor", "nobody", None])
        assert _seen(n1, "w", 2)[1] == ["Down", "nobody", "noproc"]
        # One stopped through the node, by a client of another node: Down normal, once.
        r2 = next(f"q{i}" for i in range(1000) if shard_of(f"q{i}", DEFAULT_SHARDS) in on_n2)
        client.spawn(WATCHER, name=r2, durability="replicated")
        assert n1.call("w", ["monitor", r2, None]) == "ok"
        client.stop(r2)
        assert _seen(n1, "w", 3)[2] == ["Down", r2, "normal: normal"]
