"""``beamish node drain`` on real nodes sharing a real PostgreSQL, under load: senders
call and cast through the nodes that are in service (as a Kubernetes Service would route
them: a node leaves it as its drain begins), each keeping a ledger; a drained node hands
its shards off one by one and stops, and every call is answered (by the agents' new
owners, within the caller's timeout: `CALL_TIMEOUT`), every acknowledged message applied
exactly once, in each sender's order.

The short test drains one node (``make test``); the rolling drain of all three, each
restarted after it, is a ``cluster_long`` test (``make test-cluster``)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import pytest

from beamish.runtime import BeamishError, Node, RemoteNode, start_node
from beamish.runtime.cluster.placement import owner_for
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS
from tests.cluster.ledger import check_ledgers
from tests.cluster.test_failover import ClusterNodes, three_nodes  # noqa: F401 - fixture
from tests.conftest import beamish, wait_until

pytestmark = pytest.mark.slow

AGENT = "tests.agents.drain_agents:CallLedger"
# A call across a hand-off waits for the old owner to stop its agent, the new owner's next
# membership round (up to 1 s) and a fresh agent process: about a second on an idle
# machine; up to 4.5 s was seen here with the machine's 2 cores at a load of 15-20.
CALL_TIMEOUT = 10.0


class Rotation:
    """The nodes in service (what a Service's endpoints would hold); ``gen`` counts the
    changes, so that the test knows when every sender has moved on from a node."""

    def __init__(self, names: list[str]) -> None:
        self.phase = "start"  # what the test does now (said with a failure)
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.names = list(names)
        self.gen = 0

    def remove(self, name: str) -> int:
        with self.lock:
            self.names.remove(name)
            self.gen += 1
            return self.gen

    def add(self, name: str) -> None:
        with self.lock:
            self.names.append(name)
            self.gen += 1


@dataclass
class Sender:
    """One client thread: calls (every third message) and casts ``[kind, index, seq]``
    round-robin to the agents through the nodes in service, with its ledger."""

    index: int
    nodes: ClusterNodes
    rotation: Rotation
    agents: list[str]
    acked: dict[str, list[int]] = field(default_factory=dict)
    # Never filled: a message that raised is a failure (the test asserts there is none).
    doubt: dict[str, set[int]] = field(default_factory=dict)
    calls: int = 0
    latencies: list[float] = field(default_factory=list)  # each call's, in s
    failures: list[str] = field(default_factory=list)
    seq: int = 0
    gen_done: int = 0  # the rotation's generation its last finished request was sent in

    def run(self, stop: threading.Event) -> None:
        clients: dict[str, RemoteNode] = {}
        try:
            while not stop.is_set():
                with self.rotation.lock:
                    names, gen = list(self.rotation.names), self.rotation.gen
                via = names[(self.seq + self.index) % len(names)]
                client = clients.get(via)
                if client is None:
                    client = clients[via] = self.nodes.client(via)
                agent = self.agents[self.seq % len(self.agents)]
                self.seq += 1
                try:
                    if self.seq % 3 == 0:
                        sent = time.monotonic()
                        got = client.call(agent, ["call", self.index, self.seq],
                                          timeout=CALL_TIMEOUT)
                        self.latencies.append(time.monotonic() - sent)
                        assert got == self.seq, (agent, got, self.seq)
                        self.calls += 1
                    else:
                        client.cast(agent, ["cast", self.index, self.seq])
                    self.acked.setdefault(agent, []).append(self.seq)
                except BeamishError as exc:
                    self.failures.append(
                        f"{time.monotonic() - self.rotation.t0:.1f} s, during "
                        f"{self.rotation.phase}: {agent} via {via}, #{self.seq}: {exc!r:.90}")
                self.gen_done = gen
                time.sleep(0.003)
        finally:
            for client in clients.values():
                client.close()


def _start_senders(nodes: ClusterNodes, rotation: Rotation, agents: list[str], count: int
                   ) -> tuple[list[Sender], list[threading.Thread], threading.Event]:
    stop = threading.Event()
    senders = [Sender(i, nodes, rotation, agents) for i in range(count)]
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in senders]
    for t in threads:
        t.start()
    return senders, threads, stop


def _out_of_service(rotation: Rotation, senders: list[Sender], name: str) -> None:
    """Take node ``name`` out of rotation and wait until every sender's requests go
    elsewhere (a Service's endpoints updated)."""
    gen = rotation.remove(name)
    wait_until(lambda: all(s.gen_done >= gen for s in senders), timeout=60,
               what=f"senders moved off {name}")


def _latencies(senders: list[Sender]) -> str:
    calls = sorted(x for s in senders for x in s.latencies)
    if not calls:
        return "no call"
    return (f"{len(calls)} calls: p50 {calls[len(calls) // 2] * 1000:.0f} ms, p99 "
            f"{calls[int(len(calls) * 0.99)] * 1000:.0f} ms, max {calls[-1] * 1000:.0f} ms")


def _check_ledgers(client: Node, agents: list[str], senders: list[Sender]) -> int:
    """Every agent's applied messages against the senders' ledgers, exactly; return how
    many acknowledged messages were checked."""
    print(f"\ncall latency through the drains: {_latencies(senders)}")
    failures = [f for s in senders for f in s.failures]
    assert not failures, "\n".join(failures[:20])
    checked, doubt = check_ledgers(client, agents, senders)
    assert doubt == 0  # a failed call or cast is a failure above, never in doubt
    return checked


def _balanced(nodes: ClusterNodes) -> bool:
    """Whether every node owns exactly the shards the placement gives it."""
    want = {n: {s for s in range(DEFAULT_SHARDS) if owner_for(s, nodes.names) == n}
            for n in nodes.names}
    return all(set(nodes.locals[n].cluster().shards) == want[n]  # type: ignore[union-attr]
               for n in nodes.names)


def _config_of(nodes: ClusterNodes, name: str) -> str:
    return os.path.join(nodes.base, f"{name}.toml")


def test_draining_a_node_under_load_fails_no_call_and_loses_nothing(
        three_nodes: ClusterNodes):  # noqa: F811 - the fixture
    nodes = three_nodes
    agents = [f"d{i}" for i in range(9)]
    with nodes.client("n1") as n1:
        for a in agents:
            n1.spawn(AGENT, name=a, durability="replicated")
    owners, victim, moved = nodes.busiest(agents)
    assert moved, owners
    rotation = Rotation(nodes.names)
    senders, threads, stop = _start_senders(nodes, rotation, agents, 3)
    pid = nodes.locals[victim].pid
    try:
        wait_until(lambda: all(s.seq > 60 for s in senders), timeout=60)
        _out_of_service(rotation, senders, victim)
        sent = sum(s.seq for s in senders)
        out = beamish("node", "drain", "--dir", nodes.locals[victim].dir, "--timeout", "60",
                      check=True, timeout=120).stdout
        nodes.locals.pop(victim).close()
        assert f"node '{victim}' of cluster 't' drained" in out, out
        assert "shard(s) left" in out and "stopped" in out, out
        print(f"\n{out}")
        assert sum(s.seq for s in senders) > sent  # the load went on through the drain
        wait_until(lambda: sum(s.seq for s in senders) > sent + 150, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), "the drained node still runs"
    nodes.killed.add(victim)
    survivor = next(n for n in nodes.names if n != victim)
    with nodes.client(survivor) as client:
        checked = _check_ledgers(client, agents, senders)
    print(f"ledger: {checked} acknowledged messages ({sum(s.calls for s in senders)} calls) "
          "applied exactly once, 0 failed")
    for a in moved:
        assert nodes.owner(a) not in (None, victim)
    listed = beamish("nodes", "--postgres", nodes.dsn, "--cluster", "t", check=True).stdout
    assert victim not in listed, listed  # it left the cluster


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.mark.cluster_long
@pytest.mark.timeout(900)
def test_a_rolling_drain_of_every_node_under_load_fails_no_call_and_loses_nothing(
        three_nodes: ClusterNodes):  # noqa: F811 - the fixture
    """Each node in turn leaves the rotation, is drained (through the CLI on its dir,
    the CLI over TCP with --connect, and `Node.drain`) and started again; the load runs
    throughout, through the nodes in service."""
    nodes = three_nodes
    agents = [f"g{i}" for i in range(12)]
    with nodes.client("n1") as n1:
        for a in agents:
            n1.spawn(AGENT, name=a, durability="replicated")
    rotation = Rotation(nodes.names)
    senders, threads, stop = _start_senders(nodes, rotation, agents, 3)
    timings = []
    try:
        wait_until(lambda: all(s.seq > 60 for s in senders), timeout=60)
        for i, victim in enumerate(nodes.names):
            _out_of_service(rotation, senders, victim)
            rotation.phase = f"drain of {victim}"
            began = time.monotonic()
            local = nodes.locals[victim]
            if i == 0:
                out = beamish("node", "drain", "--dir", local.dir, check=True,
                              timeout=150).stdout
                assert "drained" in out, out
                local.close()
            elif i == 1:
                out = beamish("node", "drain", "--connect", nodes.addresses[victim],
                              "--keys", nodes.keys.client, "--json", check=True,
                              timeout=150).stdout
                assert '"phase": "drained"' in out, out
                wait_until(lambda pid=local.pid: _zombie(pid), timeout=60, what="node exit")
                local.close()
            else:
                st = local.drain(timeout=60)
                assert st.shards_left == 0 and st.shards_at_start > 0, st
            drained = time.monotonic() - began
            rotation.phase = f"restart of {victim}"
            nodes.locals[victim] = start_node(os.path.join(nodes.base, victim),
                                              config=_config_of(nodes, victim))
            rotation.phase = f"rebalance to {victim}"
            try:
                wait_until(lambda: _balanced(nodes), timeout=90, what="shards back")
            except BaseException:
                print({n: nodes.locals[n].cluster() for n in nodes.names})
                print(beamish("nodes", "--postgres", nodes.dsn, "--cluster", "t").stdout)
                raise
            rotation.add(victim)
            rotation.phase = f"load after {victim}"
            timings.append((victim, drained, time.monotonic() - began))
            sent = sum(s.seq for s in senders)
            wait_until(lambda n=sent: sum(s.seq for s in senders) > n + 60, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    with nodes.client("n1") as client:
        checked = _check_ledgers(client, agents, senders)
    print("\n" + "; ".join(f"{v}: drained in {d:.1f} s, back and balanced after {b:.1f} s"
                           for v, d, b in timings))
    print(f"ledger: {checked} acknowledged messages ({sum(s.calls for s in senders)} calls) "
          "applied exactly once, 0 failed, through 3 drains and restarts")


def test_a_stopping_node_answers_the_calls_its_front_door_is_running(
        three_nodes: ClusterNodes):  # noqa: F811 - the fixture
    """A call through a node's front door to a replicated agent on another node, still
    waiting as that node is stopped (the end of a drain): answered before the node's
    cluster part closes."""
    nodes = three_nodes
    with nodes.client("n1") as n1:
        n1.spawn(AGENT, name="slow", durability="replicated")
    via = next(n for n in nodes.names if n != nodes.owner("slow"))
    got: list[object] = []
    with nodes.client(via) as client:
        caller = threading.Thread(target=lambda: got.append(
            _outcome(lambda: client.call("slow", ["sleep", 2.0], timeout=10))))
        caller.start()
        time.sleep(0.7)  # the call is in the agent's handler now
        nodes.locals.pop(via).shutdown()
        caller.join(timeout=30)
    assert got == ["slept"], got


def _outcome(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except BeamishError as exc:
        return exc


def test_drain_refuses_a_node_that_is_not_in_a_cluster(node: Node):
    proc = beamish("node", "drain", "--dir", node.dir)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "not in a cluster" in proc.stderr, proc.stderr
    assert node.status().pid == node.pid  # still running
