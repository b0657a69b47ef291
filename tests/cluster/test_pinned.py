"""Node-pinned agents in a cluster (``durability`` process/fsync/memory, LMDB on their
node), through real nodes, a real PostgreSQL and real TCP with CURVE: names are
cluster-wide (a route table in PostgreSQL), a client of any node reaches them in one hop,
and while their node is down calls and casts raise `NodeDown` promptly, back when it
returns (a ledger of acknowledged casts checked exactly)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from beamish.runtime import (
    AgentNotFound,
    BeamishError,
    ConfigError,
    Node,
    NodeDown,
    RemoteNode,
    SpawnError,
    connect,
    start_node,
)
from beamish.runtime.cluster.keys import authorize, generate
from tests.cluster.conftest import PgServer, free_port
from tests.conftest import shutdown_quietly, wait_until

LEDGER = "tests.agents.cluster_agents:Ledger"
# Two nodes started per test: `make test-cluster` (CI runs it), keeping `make test` in its
# 15 minutes.
pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]


@dataclass
class Pair:
    """Two nodes of cluster "t", each with keys of its own that admit the other node's
    and the client's; the client trusts both (by the names "n1", "n2")."""

    base: str
    dsn: str
    addresses: dict[str, str]
    configs: dict[str, str]
    locals: dict[str, Node] = field(default_factory=dict)

    @property
    def client_keys(self) -> str:
        """The client's keys dir."""
        return os.path.join(self.base, "client")

    def client(self, name: str) -> RemoteNode:
        """A remote client of node ``name``."""
        node = connect(self.addresses[name], keys=self.client_keys, server_key=name)
        assert isinstance(node, RemoteNode)
        return node

    def start(self, name: str) -> Node:
        """Start node ``name`` (again) on its dir, and wait for it to join."""
        node = start_node(os.path.join(self.base, name), config=self.configs[name])
        self.locals[name] = node
        wait_until(lambda: (st := node.cluster()) is not None and (st.incarnation or 0) > 0,
                   timeout=30, what=f"{name} joined")
        return node


@pytest.fixture
def pair(pg_dsn: str) -> Iterator[Pair]:
    """Nodes n1 and n2 of one cluster; shut down after the test."""
    base = tempfile.mkdtemp(prefix="bmp-", dir="/tmp")
    names = ["n1", "n2"]
    pub = {n: generate(os.path.join(base, f"{n}-keys")).public for n in names}
    client_pub = generate(os.path.join(base, "client")).public
    for n in names:
        for other in names:
            if other != n:  # node-to-node: each admits the other's key
                authorize(os.path.join(base, f"{n}-keys"), pub[other], other)
        authorize(os.path.join(base, f"{n}-keys"), client_pub, "client")
        authorize(os.path.join(base, "client"), pub[n], n)
    addresses = {n: f"tcp://127.0.0.1:{free_port()}" for n in names}
    configs = {}
    for n in names:
        configs[n] = os.path.join(base, f"{n}.toml")
        with open(configs[n], "w") as fh:
            fh.write(f'[cluster]\nname = "t"\nnode = "{n}"\npostgres = "{pg_dsn}"\n'
                     f'listen = "{addresses[n]}"\nkeys = "{base}/{n}-keys"\n')
    nodes = Pair(base, pg_dsn, addresses, configs)
    try:
        for n in names:
            nodes.start(n)
        yield nodes
    finally:
        for node in nodes.locals.values():
            shutdown_quietly(node)
        shutil.rmtree(base, ignore_errors=True)


def test_names_are_cluster_wide_and_one_hop_reaches_them(pair: Pair) -> None:
    with pair.client("n1") as c1, pair.client("n2") as c2:
        c1.spawn(LEDGER, name="p1")
        # Taken on n1: refused on n2, pinned or replicated.
        with pytest.raises(SpawnError, match="node 'n1'"):
            c2.spawn(LEDGER, name="p1")
        with pytest.raises(SpawnError, match="node 'n1'"):
            c2.spawn(LEDGER, name="p1", durability="replicated")
        # Through n2, one hop: call, cast, cast_many, info, state, stop.
        assert c2.call("p1", "ping") == "pong"
        c2.cast("p1", ["a", 1])
        c2.cast_many([("p1", ["a", 2]), ("p1", ["a", 3])])
        assert c2.call("p1", "get") == [["a", 1], ["a", 2], ["a", 3]]
        pid, = [c2.call("p1", "where")]
        assert c2.info("p1").pid == pid == c1.info("p1").pid
        assert c2.state("p1").state == {"applied": [["a", 1], ["a", 2], ["a", 3]]}
        c2.stop("p1")
        assert c1.info("p1").status == "stopped"
        with pytest.raises(SpawnError, match="node 'n1'"):  # a stopped name stays n1's
            c2.spawn(LEDGER, name="p1")
        # Deleted through n2: the name is free in the whole cluster.
        c2.delete("p1")
        with pytest.raises(AgentNotFound):
            c1.info("p1")
        c2.spawn(LEDGER, name="p1")
        assert c1.call("p1", "ping") == "pong"
        assert c2.info("p1").pid != pid
        # An error of the owner comes back as it is.
        with pytest.raises(AgentNotFound):
            c1.call("nobody", "ping")
        # A spawn that fails on n1 leaves no route: the name is free on n2 at once; one
        # refused because the name runs there keeps its route.
        with pytest.raises(SpawnError):
            c1.spawn("tests.agents.no_such_module:Nothing", name="failed")
        c2.spawn(LEDGER, name="failed")
        assert c1.call("failed", "ping") == "pong"
        with pytest.raises(SpawnError, match="node 'n2'"):
            c1.spawn(LEDGER, name="failed")
        with pytest.raises(SpawnError, match="running agent"):
            c2.spawn(LEDGER, name="failed")  # refused on its own node: its route stays
        assert c1.call("failed", "ping") == "pong"


def test_routes_survive_their_connection_being_cut(pair: Pair, pg_server: PgServer) -> None:
    with pair.client("n1") as c1, pair.client("n2") as c2:
        c1.spawn(LEDGER, name="p1")
        assert c2.call("p1", "ping") == "pong"
        db = pair.dsn.rsplit("/", 1)[1]
        pg_server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{db}' AND pid <> pg_backend_pid()")
        # The route lookup's connection is gone: a new one, at once (not an error).
        assert c2.call("p1", "ping") == "pong"
        c2.cast("p1", ["after", 1])
        assert c1.call("p1", "get") == [["after", 1]]


def test_node_pins_a_spawn_and_a_supervisors_children_live_with_it(pair: Pair) -> None:
    with pair.client("n1") as c1, pair.client("n2") as c2:
        # node=: forwarded to that node (from a remote client, and from a local one)
        c2.spawn(LEDGER, name="there", node="n1")
        pair.locals["n2"].spawn(LEDGER, name="there2", node="n1")
        pair.locals["n2"].spawn(LEDGER, name="here", node="n2")
        unnamed = c1.spawn(LEDGER, node="n2").name
        assert "n2" in unnamed  # a generated name carries its node's: unique in the cluster
        for name, where in [("there", "n1"), ("there2", "n1"), ("here", "n2"),
                            (unnamed, "n2")]:
            assert name in [a.name for a in pair.locals[where].ps()], (name, where)
            assert c1.call(name, "ping") == c2.call(name, "ping") == "pong"
        # the CLI's --node, on n2's dir: the agent lives on n1
        out = subprocess.run(
            [sys.executable, "-m", "beamish.runtime", "spawn", LEDGER, "--name", "viacli",
             "--node", "n1", "--dir", os.path.join(pair.base, "n2")],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "viacli" in [a.name for a in pair.locals["n1"].ps()]
        assert c2.call("viacli", "ping") == "pong"
        with pytest.raises(ConfigError, match="no node of this cluster"):
            c2.spawn(LEDGER, name="x", node="n9")
        with pytest.raises(ConfigError, match="replicated agent runs on the node"):
            c2.spawn(LEDGER, name="x", node="n1", durability="replicated")
        # a supervisor's children: spawned on its node, from any node
        c1.add_supervisor("team")
        ref = c2.spawn(LEDGER, name="worker", supervisor="team")
        assert ref.call("ping") == "pong"
        assert pair.locals["n1"].info("worker").supervisor == "team"
        assert "worker" in [a.name for a in pair.locals["n1"].ps()]
        assert "worker" not in [a.name for a in pair.locals["n2"].ps()]  # n2's own
        assert pair.locals["n2"].info("worker").supervisor == "team"  # one hop, too


@dataclass
class Caster:
    """Casts ``[seq]`` to one agent through one node; its ledger: acknowledged, in doubt
    (NodeDown after the cast was sent: it may be applied), refused (NodeDown before
    sending: not applied), and when the first NodeDown came."""

    client: RemoteNode
    agent: str
    acked: list[int] = field(default_factory=list)
    doubt: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    downs: list[tuple[float, NodeDown]] = field(default_factory=list)
    others: list[BaseException] = field(default_factory=list)
    seq: int = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.seq += 1
            try:
                self.client.cast(self.agent, [self.seq])
                self.acked.append(self.seq)
            except NodeDown as exc:
                (self.doubt if exc.sent else self.refused).add(self.seq)
                self.downs.append((time.monotonic(), exc))
                time.sleep(0.05)
            except BeamishError as exc:  # anything else is a failure of the test
                self.others.append(exc)
                time.sleep(0.05)
            time.sleep(0.002)


def test_kill9_of_the_owner_gives_node_down_promptly_and_nothing_is_lost(pair: Pair) -> None:
    with pair.client("n1") as c1:
        c1.spawn(LEDGER, name="pinned")
    client = pair.client("n2")
    caster = Caster(client, "pinned")
    stop = threading.Event()
    thread = threading.Thread(target=caster.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(caster.acked) > 100, timeout=60, what="casts acknowledged")
        killed_at = time.monotonic()
        os.kill(pair.locals["n1"].pid, signal.SIGKILL)  # its zygote and agents die too
        pair.locals["n1"].close()
        wait_until(lambda: caster.downs, timeout=30, what="a NodeDown")
        first = caster.downs[0][0] - killed_at
        err = caster.downs[0][1]
        assert err.node == "n1" and err.agent == "pinned", err
        assert "n1" in str(err) and "pinned" in str(err)
        # A call raises it too, at once once the lease has run out; never a timeout.
        # (Before that, its closed port is found by the link's watch: sent=False, no since.)
        wait_until(lambda: any(not e.sent and e.since for _, e in caster.downs), timeout=30,
                   what="NodeDown before sending (the lease ran out)")
        t0 = time.monotonic()
        with pytest.raises(NodeDown) as called:
            client.call("pinned", "get", timeout=30)
        assert called.value.since > 0 and not called.value.sent
        call_took = time.monotonic() - t0
        for op, args in [("info", ()), ("state", ()), ("stop", ())]:
            with pytest.raises(NodeDown):
                getattr(client, op)("pinned", *args)
        with pytest.raises(NodeDown):
            client.spawn(LEDGER, name="later", node="n1")
        print(f"\nNodeDown {first:.2f} s after kill -9 of n1; a call then raised it in "
              f"{call_took * 1000:.0f} ms")
        # Back with its node.
        pair.start("n1")
        acked_then = len(caster.acked)
        wait_until(lambda: len(caster.acked) > acked_then + 100, timeout=60,
                   what="casts acknowledged after n1 returned")
    finally:
        stop.set()
        thread.join(timeout=60)
    try:
        assert not caster.others, caster.others[:3]
        applied = [x[0] for x in client.call("pinned", "get", timeout=30)]
    finally:
        client.close()
    assert applied == sorted(applied) and len(applied) == len(set(applied)), "order, twice"
    missing = set(caster.acked) - set(applied)
    assert not missing, f"acknowledged casts lost: {sorted(missing)[:10]}"
    extra = set(applied) - set(caster.acked) - caster.doubt
    assert not extra, f"casts applied that were refused or never acknowledged: {extra}"
    print(f"ledger: {len(caster.acked)} acknowledged casts applied exactly once, "
          f"{len(caster.doubt)} in doubt ({len(set(applied) & caster.doubt)} applied), "
          f"{len(caster.refused)} refused with NodeDown")


def test_node_is_refused_outside_a_cluster(node: Node) -> None:
    with pytest.raises(ConfigError, match="not in a cluster"):
        node.spawn(LEDGER, name="x", node="n1")
    with pytest.raises(ConfigError, match="not in a cluster"):
        node.spawn(LEDGER, name="x", node="n1", lazy=True)
    node.spawn(LEDGER, name="y", lazy=True)  # a plain node keeps its lazy fast path
    assert node.info("y").status == "sleeping"
