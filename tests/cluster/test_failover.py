"""Replicated agents on three real node processes sharing one real PostgreSQL: spawned
through any node, they run on the owner of their name's shard; `kill -9` of a whole node
(its daemon, its zygote and its agents) under load brings them back on the other nodes
from their PostgreSQL state and mailbox, with every acknowledged cast applied exactly
once (checked against the senders' ledgers), in each sender's order.

Loopback variant: the three nodes listen on 127.0.0.1, each on its own port."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from beamish.runtime import BeamishError, ConfigError, Node, RemoteNode, connect, start_node
from beamish.runtime.cluster.placement import shard_of
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS
from tests.cluster.conftest import Keys, PgServer, free_port
from tests.cluster.ledger import check_ledgers
from tests.conftest import beamish, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

LEDGER = "tests.agents.cluster_agents:Ledger"


@dataclass
class ClusterNodes:
    """Three nodes of one cluster: their names, addresses and local handles."""

    names: list[str]
    addresses: dict[str, str]
    locals: dict[str, Node]
    keys: Keys
    base: str
    dsn: str
    killed: set[str] = field(default_factory=set)
    roles: dict[str, str] = field(default_factory=dict)

    def owner(self, agent: str) -> str | None:
        """The node that owns ``agent``'s shard now (by the nodes' own view)."""
        shard = shard_of(agent, DEFAULT_SHARDS)
        for name in self.names:
            if name in self.killed:
                continue
            st = self.locals[name].cluster()
            if st is not None and shard in st.shards:
                return name
        return None

    def busiest(self, agents: list[str]) -> tuple[dict[str, str | None], str, list[str]]:
        """Who owns each of ``agents`` now, the node owning the most of them (the victim
        of a fault test), and its agents."""
        owners = {a: self.owner(a) for a in agents}
        victim = max(self.names, key=lambda n: sum(1 for a in agents if owners[a] == n))
        return owners, victim, [a for a in agents if owners[a] == victim]

    def client(self, name: str) -> RemoteNode:
        """A remote client of node ``name``."""
        return connect(self.addresses[name], keys=self.keys.client)


def _config(base: str, node: str, dsn: str, address: str, keys_dir: str) -> str:
    path = os.path.join(base, f"{node}.toml")
    with open(path, "w") as fh:
        fh.write(f'[cluster]\nname = "t"\nnode = "{node}"\npostgres = "{dsn}"\n'
                 f'listen = "{address}"\nkeys = "{keys_dir}"\n')
    return path


@pytest.fixture
def three_nodes(pg_server: PgServer, pg_dsn: str, keys: Keys) -> Iterator[ClusterNodes]:
    """Three nodes n1..n3 in cluster "t" on ``pg_dsn``, all holding shards; each node
    logs in as a role of its own (``roles``: a test can cut one node from the database)."""
    base = tempfile.mkdtemp(prefix="bmf-", dir="/tmp")
    names = ["n1", "n2", "n3"]
    addresses = {n: f"tcp://127.0.0.1:{free_port()}" for n in names}
    nodes = ClusterNodes(names, addresses, {}, keys, base, pg_dsn)
    mark = uuid.uuid4().hex[:8]
    for n in names:  # roles are the server's, not the database's: named for this test
        nodes.roles[n] = f"bm{mark}_{n}"
        pg_server.psql(f'CREATE ROLE "{nodes.roles[n]}" LOGIN SUPERUSER')
    try:
        for n in names:
            dsn = pg_dsn.replace("//postgres@", f"//{nodes.roles[n]}@", 1)
            cfg = _config(base, n, dsn, addresses[n], keys.node)
            nodes.locals[n] = start_node(os.path.join(base, n), config=cfg)

        def balanced() -> bool:
            held = [len(nodes.locals[n].cluster().shards) for n in names]  # type: ignore[union-attr]
            return sum(held) == DEFAULT_SHARDS and min(held) >= DEFAULT_SHARDS // 4
        try:
            wait_until(balanced, timeout=90)
        except pytest.fail.Exception:
            pytest.fail(_not_balanced(nodes, names, base))
        yield nodes
    finally:
        _at_once(shutdown_quietly, list(nodes.locals.values()))
        shutil.rmtree(base, ignore_errors=True)


def _not_balanced(nodes: ClusterNodes, names: list[str], base: str) -> str:
    """Why three nodes did not balance, for the failure message (the fixture deletes their
    directory): the shards each holds, and the tail of each node's cluster log lines."""
    lines = ["three nodes did not balance their shards within 90 s"]
    for n in names:
        try:
            status = nodes.locals[n].cluster()
            held = "?" if status is None else str(len(status.shards))
        except BeamishError as exc:
            held = f"? ({exc})"
        lines.append(f"--- {n}: holds {held} shards; the last cluster lines of its node.log:")
        try:
            with open(os.path.join(base, n, "node.log"), encoding="utf-8",
                      errors="replace") as fh:
                tail = [ln.rstrip() for ln in fh if "cluster" in ln or "shard" in ln][-25:]
        except OSError as exc:
            tail = [f"(cannot read it: {exc})"]
        lines.extend(tail)
    return "\n".join(lines)


def _at_once(fn: Callable[[Any], None], items: list[Any]) -> None:
    """``fn`` on every item in threads of their own (node stops mostly wait on their
    processes); once all are done, raise the first error."""
    with ThreadPoolExecutor(max(1, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    for f in futures:
        f.result()


@dataclass
class Sender:
    """One client thread casting ``[sender, seq]`` round-robin to the agents, failing over
    to the next node when its node does not answer; its ledger of what was acknowledged
    and what is in doubt (sent, its answer lost with the node)."""

    index: int
    nodes: ClusterNodes
    agents: list[str]
    order: list[str]
    acked: dict[str, list[int]] = field(default_factory=dict)
    doubt: dict[str, set[int]] = field(default_factory=dict)
    failovers: int = 0
    seq: int = 0

    def run(self, stop: threading.Event) -> None:
        at = 0
        client = self.nodes.client(self.order[at])
        try:
            while not stop.is_set():
                agent = self.agents[self.seq % len(self.agents)]
                self.seq += 1
                try:
                    client.cast(agent, [self.index, self.seq])
                    self.acked.setdefault(agent, []).append(self.seq)
                except BeamishError:
                    # Its node died while the cast was out: it may or may not be stored.
                    self.doubt.setdefault(agent, set()).add(self.seq)
                    client.close()
                    at = (at + 1) % len(self.order)
                    self.failovers += 1
                    client = self.nodes.client(self.order[at])
                time.sleep(0.002)
        finally:
            client.close()


def _answer_time(nodes: ClusterNodes, via: str, agents: list[str], since: float,
                 call_timeout: float = 1.0) -> float:
    """Seconds from ``since`` until every one of ``agents`` answered a call through node
    ``via`` (each call waiting up to ``call_timeout``, then sent again)."""
    with nodes.client(via) as client:
        for agent in agents:
            while True:
                try:
                    client.call(agent, "ping", timeout=call_timeout)
                    break
                except BeamishError:
                    if time.monotonic() - since > 120:
                        raise
    return time.monotonic() - since


def test_replicated_agents_answer_from_any_node(three_nodes: ClusterNodes):
    nodes = three_nodes
    agents = [f"r{i}" for i in range(6)]
    with nodes.client("n1") as n1, nodes.client("n2") as n2:
        for a in agents:
            n1.spawn(LEDGER, name=a, durability="replicated")
        with pytest.raises(BeamishError):  # a name is cluster-wide
            n2.spawn(LEDGER, name="r0", durability="replicated")
        with pytest.raises(ConfigError):
            n2.spawn(LEDGER, name="x", durability="nope")
        for i, a in enumerate(agents):
            (n1 if i % 2 else n2).cast(a, ["c", 1])
            (n2 if i % 2 else n1).cast(a, ["c", 2])
        for a in agents:
            assert n2.call(a, "get") == [["c", 1], ["c", 2]]
            assert n1.call(a, "get") == [["c", 1], ["c", 2]]
        owners = {a: nodes.owner(a) for a in agents}
        for a in agents:  # info through any node names the owner
            info = n2.info(a)
            assert (info.node, info.status, info.processed) == (owners[a], "running", 4)
    assert len(set(owners.values())) >= 2, owners  # spread over the nodes by their shards
    running = sum(nodes.locals[n].cluster().replicated for n in nodes.names)  # type: ignore[union-attr]
    assert running == len(agents)
    out = beamish("node", "status", "--dir", nodes.locals["n1"].dir, check=True).stdout
    assert "cluster 't' as node 'n1' (incarnation 1): lease held" in out, out
    listed = beamish("nodes", "--postgres", nodes.dsn, "--cluster", "t", check=True).stdout
    assert all(n in listed for n in nodes.names), listed


def test_kill_9_of_a_node_under_load_loses_no_acknowledged_cast(three_nodes: ClusterNodes):
    nodes = three_nodes
    agents = [f"a{i}" for i in range(9)]
    with nodes.client("n1") as n1:
        for a in agents:
            n1.spawn(LEDGER, name=a, durability="replicated")
    owners, victim, moved = nodes.busiest(agents)
    assert moved, owners
    survivor = next(n for n in nodes.names if n != victim)

    # One sender starts on each node; the victim's sender fails over.
    stop = threading.Event()
    senders = [Sender(i, nodes, agents, nodes.names[i:] + nodes.names[:i])
               for i in range(len(nodes.names))]
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in senders]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(s.seq > 100 for s in senders), timeout=60)
        pid = nodes.locals[victim].pid
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)  # the daemon; its zygote and agents die with it
        nodes.killed.add(victim)
        failover = _answer_time(nodes, survivor, moved, killed_at)
        print(f"\nfailover: {len(moved)} replicated agents of {victim} answering again "
              f"from the others {failover:.2f} s after kill -9")
        sent_then = sum(s.seq for s in senders)
        wait_until(lambda: sum(s.seq for s in senders) > sent_then + 300, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)

    # Every agent now runs on a surviving node; its state against the ledgers, exactly.
    with nodes.client(survivor) as client:
        acked, doubt = check_ledgers(client, agents, senders)
    print(f"ledger: {acked} acknowledged casts applied exactly once, {doubt} in doubt "
          f"(sent to the node as it died), {sum(s.failovers for s in senders)} client "
          "failover(s)")
    assert senders[nodes.names.index(victim)].failovers >= 1
    for a in moved:
        assert nodes.owner(a) not in (None, victim)


def _ring_all(node_dir: str) -> int:
    """Ring every agent inbox under ``node_dir`` (as a lost ring would be re-sent): an
    agent rung reads its mailbox now instead of at its idle re-check."""
    import glob

    import zmq

    from beamish.runtime.messaging.wire import ring_frame
    ctx = zmq.Context()
    try:
        paths = glob.glob(os.path.join(node_dir, "run", "a*.sock"))
        for path in paths:
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDTIMEO, 200)
            sock.setsockopt(zmq.LINGER, 200)
            sock.connect("ipc://" + path)
            try:
                sock.send(ring_frame(0))
            except zmq.Again:
                pass  # nobody reads there any more
            sock.close()
        return len(paths)
    finally:
        ctx.term()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ")[1].startswith("Z")  # exited, not reaped yet


@pytest.mark.cluster_long
def test_a_node_paused_past_its_lease_commits_nothing_stale(three_nodes: ClusterNodes):
    """SIGSTOP of a node's daemon (its agents keep running): once its lease has run out
    the others take its shards at new epochs and run its agents; the paused node's own
    agent processes, rung, handle a message and try to commit it: refused (StaleEpoch),
    they stop, while their node is still paused. Resumed, the node fences itself and
    rejoins. States match the ledgers exactly."""
    nodes = three_nodes
    agents = [f"p{i}" for i in range(9)]
    with nodes.client("n1") as n1:
        for a in agents:
            n1.spawn(LEDGER, name=a, durability="replicated")
    owners, victim, moved = nodes.busiest(agents)
    assert moved, owners
    zombies = {a: nodes.locals[victim].info(a).pid for a in moved}
    assert all(zombies.values()), zombies
    others = [n for n in nodes.names if n != victim]

    stop = threading.Event()
    senders = [Sender(i, nodes, agents, others[i:] + others[:i]) for i in range(2)]
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in senders]
    for t in threads:
        t.start()
    pid = nodes.locals[victim].pid
    try:
        wait_until(lambda: all(s.seq > 50 for s in senders), timeout=60)
        os.kill(pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        nodes.killed.add(victim)  # not asked while paused
        failover = _answer_time(nodes, others[0], moved, paused_at)
        print(f"\ntakeover of a paused node's {len(moved)} agents: {failover:.2f} s")
        # Its own processes still run: rung, each handles a message and its commit is
        # refused; they stop while their node is still paused.
        deadline = time.monotonic() + 60
        while not all(_gone(p) for p in zombies.values()):
            assert time.monotonic() < deadline, "stale agents still running"
            _ring_all(nodes.locals[victim].dir)
            time.sleep(0.5)
        for a in moved:
            with open(os.path.join(nodes.locals[victim].dir, "logs", f"{a}.log")) as fh:
                assert "StaleEpoch" in fh.read(), a
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        nodes.killed.discard(victim)
        # Resumed: it fenced itself, joins again and takes shards back at new epochs.
        wait_until(lambda: (st := nodes.locals[victim].cluster()) is not None
                   and st.incarnation == 2 and st.shards, timeout=60)
        sent = sum(s.seq for s in senders)
        wait_until(lambda: sum(s.seq for s in senders) > sent + 200, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    with nodes.client(others[0]) as client:
        check_ledgers(client, agents, senders)


@pytest.mark.cluster_long
def test_a_node_cut_from_the_database_stops_its_agents_before_its_lease_expires(
        three_nodes: ClusterNodes, pg_server: PgServer):
    """A node whose role may no longer log in, its connections cut: it cannot renew its
    lease, so it fences itself and kills its replicated agents (idle: only the fence can
    stop them) before the database lets its lease expire; the others take them over with
    their state; when it may log in again it rejoins."""
    nodes = three_nodes
    agents = [f"f{i}" for i in range(9)]
    with nodes.client("n1") as n1:
        for a in agents:
            n1.spawn(LEDGER, name=a, durability="replicated")
        for i in range(5):
            n1.cast_many([(a, ["c", i]) for a in agents])
        for a in agents:
            assert n1.call(a, "get") == [["c", i] for i in range(5)]
    owners, victim, moved = nodes.busiest(agents)
    assert moved, owners
    pids = [nodes.locals[victim].info(a).pid for a in moved]
    assert all(pids), pids
    survivor = next(n for n in nodes.names if n != victim)
    role = nodes.roles[victim]
    pg_server.psql(f'ALTER ROLE "{role}" NOLOGIN')
    try:
        cut_at = time.monotonic()
        pg_server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE usename = '{role}'")
        wait_until(lambda: all(_gone(p) for p in pids), timeout=30, what="agents killed")
        stopped_at = time.time()
        expires = float(pg_server.psql(
            "SELECT extract(epoch FROM lease_expires) FROM beamish_members WHERE node = "
            f"'{victim}'", database=nodes.dsn.rsplit("/", 1)[1]).strip())
        assert stopped_at < expires, "its agents ran past its lease"
        status = nodes.locals[victim].cluster()
        assert status is not None and status.fenced and status.replicated == 0
        took = _answer_time(nodes, survivor, moved, cut_at)
        print(f"\nfenced {victim} stopped its {len(moved)} agents "
              f"{expires - stopped_at:.2f} s before its lease expired; the others answered "
              f"for them {took:.2f} s after the cut")
    finally:
        pg_server.psql(f'ALTER ROLE "{role}" LOGIN')
    wait_until(lambda: (st := nodes.locals[victim].cluster()) is not None
               and st.incarnation == 2 and not st.fenced and st.shards, timeout=60)
    with nodes.client(victim) as client:
        for a in agents:
            assert client.call(a, "get", timeout=30) == [["c", i] for i in range(5)]
