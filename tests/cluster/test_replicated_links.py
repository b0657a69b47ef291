"""Monitors held by replicated agents, and monitors and links found without ``node=``
(docs/cluster.md, "Monitors and links across nodes"): two real node processes of one
cluster on a real PostgreSQL. A replicated agent's monitor is kept by the two names in
PostgreSQL: it holds across both agents' moves (a ``kill -9`` of their node), its Down
lands in the watcher's mailbox once, and the watcher's own exit ends it. Every Down is
counted: each arrives exactly once, and none after its monitor is gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from beamish.runtime import BeamishError, Node, RemoteError
from beamish.runtime.cluster.placement import shard_of
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS
from tests.cluster.test_cross_node_links import QUIET_S, TRAPPER, WATCHER, _seen, _start
from tests.conftest import kill_node, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]  # two nodes per test: make test-cluster


@pytest.fixture
def two_nodes(pg_dsn: str) -> Iterator[dict[str, Node]]:
    """Nodes n1 and n2 of cluster "t" on ``pg_dsn``, both joined."""
    yield from _start(pg_dsn, {}, None)


def _names_on(nodes: dict[str, Node], node: str, n: int, prefix: str) -> list[str]:
    """``n`` names whose shards ``node`` owns, once both nodes hold shards."""
    def held() -> set[int] | None:
        shards = {k: set(v.cluster().shards) for k, v in nodes.items()}  # type: ignore[union-attr]
        return shards[node] if sum(map(len, shards.values())) == DEFAULT_SHARDS and all(
            shards.values()) else None
    mine = wait_until(held, timeout=60, what="both nodes holding shards")
    return [f"{prefix}{i}" for i in range(10_000)
            if shard_of(f"{prefix}{i}", DEFAULT_SHARDS) in mine][:n]


def test_monitor_and_link_without_node_find_the_pinned_agent_in_the_route_table(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    n2.spawn(WATCHER, name="x")
    n1.spawn(WATCHER, name="w")
    assert n1.call("w", ["monitor", "x", None]) == "ok"  # no node=: x's route says n2
    with pytest.raises(BeamishError):
        n2.call("x", "crash")
    down = _seen(n1, "w", 1)
    assert [d[:2] for d in down] == [["Down", "x"]] and "abnormal" in down[0][2], down
    n2.spawn(WATCHER, name="v")
    n1.spawn(TRAPPER, name="t")
    n1.call("t", ["link", "v", None])
    n2.stop("v")
    assert _seen(n1, "t", 1) == [["Exit", "v", "normal: normal"]]


def test_a_replicated_watcher_gets_each_down_once_across_moves(two_nodes):
    n1, n2 = two_nodes["n1"], two_nodes["n2"]
    w, t, t2, w2, t3, e = _names_on(two_nodes, "n2", 6, "r")
    for name in (w, t, t2, w2, t3, e):
        n1.spawn(WATCHER, name=name, durability="replicated")
    with pytest.raises(BeamishError):
        n1.call(e, "crash")  # e's exits on n2, its owner: events in n2's log
    assert n1.call(w, ["monitor", t, None]) == "ok"
    assert n1.call(w, ["monitor", t2, None]) == "ok"
    assert n1.call(w2, ["monitor", t3, None]) == "ok"
    pid = n1.call(w, "pid")
    kill_node(n2)  # the owner of all six: they come back on n1, state and mailbox kept

    def moved() -> bool:
        try:
            return bool(n1.call(w, "pid", timeout=1.0) != pid)
        except BeamishError:  # not taken over yet
            return False
    wait_until(moved, timeout=60, what=f"{w} answering from n1")
    time.sleep(QUIET_S)
    assert n1.call(w, "seen") == []  # a move is not an exit
    # The target crashes (a real process exit) after both moved: one Down, in w's mailbox.
    n1.cast(t, "crash")
    assert _seen(n1, w, 1) == [["Down", t, "abnormal: exit code 3"]]
    # A watcher asleep is woken by its Down; a stop is an exit with reason normal.
    n1.sleep(w)
    n1.stop(t2)
    assert _seen(n1, w, 2)[1] == ["Down", t2, "normal: normal"]
    # A target that does not exist: noproc at once.
    n1.call(w, ["monitor", "nobody", None])
    assert _seen(n1, w, 3)[2] == ["Down", "nobody", "noproc"]
    # The watcher's own exit (a SIGKILL of its process) ends its monitors: t3's stop
    # reaches no one.
    pid2 = n1.info(w2).pid
    assert pid2 is not None
    os.kill(pid2, signal.SIGKILL)
    wait_until(lambda: (i := n1.info(w2)).status == "running" and i.pid not in (None, pid2),
               timeout=30, what=f"{w2} restarted after its kill")
    n1.stop(t3)
    time.sleep(QUIET_S)
    assert n1.call(w2, "seen") == []
    # e's events, asked on n1 by name, are its events across its owners: n2's (its
    # crashes, before n2 was killed) and n1's (its stop).
    n1.stop(e)
    events = wait_until(lambda: (lambda ev: ev if "stopped" in [x.kind for x in ev] else None)(
        n1.events(name=e)), timeout=10, what=f"{e}'s stop in the events")
    kinds = [x.kind for x in events]
    assert "exited" in kinds and kinds.index("exited") < kinds.index("stopped"), kinds
    assert [x.seq for x in events] == sorted({x.seq for x in events})
    assert [x.kind for x in n1.events(name=e, after=events[-2].seq)] == [kinds[-1]]
    # A pinned target is refused (not built for replicated watchers), saying so; and so
    # are links with a replicated party, either way.
    n1.spawn(WATCHER, name="p")
    with pytest.raises(RemoteError, match="cannot monitor node-pinned agent 'p'"):
        n1.call(w2, ["monitor", "p", None])
    with pytest.raises(RemoteError, match="cannot link to replicated agent"):
        n1.call("p", ["link", w2, None])
    with pytest.raises(RemoteError, match="cannot link"):  # (w2 restarts after its
        n1.call(w2, ["link", w, None], timeout=60)      # failed call: a fresh process)
