"""Replicated agents through the whole Node API, on two real node processes sharing one
real PostgreSQL: local clients (``connect(DIR)``) and remote ones reach them from either
node; stop, sleep, delete and restart from the node that does not run them; ps and tree
list them with their node; their dead letters are listed and resent; one that keeps
crashing ends failed, with its last failure. Casts are checked against a ledger."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from beamish.runtime import AgentNotFound, AlreadyRunning, Node, connect, start_node
from beamish.runtime.cluster.placement import shard_of
from beamish.runtime.node.cluster_node import DEFAULT_SHARDS
from tests.cluster.conftest import Keys, PgServer, free_port
from tests.conftest import beamish, shutdown_quietly, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]  # two nodes per test: make test-cluster

LEDGER = "tests.agents.cluster_agents:Ledger"
FLAKY = "tests.agents.cluster_agents:Flaky"
CAREFUL = "tests.agents.cluster_agents:Careful"
ALARM = "tests.agents.cluster_agents:Alarm"


@dataclass
class TwoNodes:
    """Nodes n1 and n2 of cluster "t": their local handles and TCP addresses."""

    locals: dict[str, Node]
    addresses: dict[str, str]
    keys: Keys

    def owner(self, agent: str) -> str:
        """The node that owns ``agent``'s shard now."""
        shard = shard_of(agent, DEFAULT_SHARDS)
        for name, node in self.locals.items():
            st = node.cluster()
            if st is not None and shard in st.shards:
                return name
        raise AssertionError(f"no node owns shard {shard}")

    def names_on(self, node: str, count: int, prefix: str) -> list[str]:
        """``count`` agent names whose shard ``node`` owns."""
        out = [f"{prefix}{i}" for i in range(400)]
        picked = [n for n in out if self.owner(n) == node][:count]
        assert len(picked) == count
        return picked

    def other(self, node: str) -> str:
        return "n2" if node == "n1" else "n1"


@pytest.fixture
def two_nodes(pg_server: PgServer, pg_dsn: str, keys: Keys) -> Iterator[TwoNodes]:
    base = tempfile.mkdtemp(prefix="bmr-", dir="/tmp")
    nodes = TwoNodes({}, {n: f"tcp://127.0.0.1:{free_port()}" for n in ("n1", "n2")}, keys)
    try:
        for n in ("n1", "n2"):
            cfg = os.path.join(base, f"{n}.toml")
            with open(cfg, "w") as fh:
                fh.write(f'[node]\nmax_restarts = 3\nmax_seconds = 30.0\n\n[cluster]\n'
                         f'name = "t"\nnode = "{n}"\npostgres = "{pg_dsn}"\n'
                         f'listen = "{nodes.addresses[n]}"\nkeys = "{keys.node}"\n')
            nodes.locals[n] = start_node(os.path.join(base, n), config=cfg)

        last: list[object] = [None, 0.0]

        def settled() -> bool:  # every shard owned, and no hand-off for 3 s
            held = [sorted(nd.cluster().shards) for nd in nodes.locals.values()]  # type: ignore[union-attr]
            if sum(map(len, held)) != DEFAULT_SHARDS or min(map(len, held)) == 0:
                return False
            if held != last[0]:
                last[:] = [held, time.monotonic()]
            return time.monotonic() - float(last[1]) >= 3.0  # type: ignore[arg-type]
        wait_until(settled, timeout=90, interval=0.2)
        yield nodes
    finally:
        for node in nodes.locals.values():
            shutdown_quietly(node)
        shutil.rmtree(base, ignore_errors=True)


def test_local_and_remote_clients_reach_replicated_agents(two_nodes: TwoNodes):
    nodes = two_nodes
    n1, n2 = nodes.locals["n1"], nodes.locals["n2"]
    agents = nodes.names_on("n1", 2, "a") + nodes.names_on("n2", 2, "b")
    for a in agents:
        n2.spawn(LEDGER, name=a, durability="replicated")   # local clients spawn them too
    ledger: dict[str, list[object]] = {a: [] for a in agents}
    with connect(n1.dir) as c1, connect(nodes.addresses["n2"], keys=nodes.keys.client) as r2:
        for i, a in enumerate(agents):
            for client in (n1, c1, n2, r2):
                client.cast(a, ["c", i, len(ledger[a])])
                ledger[a].append(["c", i, len(ledger[a])])
        c1.cast_many([(a, ["m", a]) for a in agents])   # one commit, through the node
        for a in agents:
            ledger[a].append(["m", a])
        for a in agents:
            for client in (n1, c1, n2, r2):
                assert client.call(a, "get") == ledger[a]
            assert c1.info(a).node == nodes.owner(a)
        with pytest.raises(AgentNotFound):
            c1.call("nobody-here", "get")
        with pytest.raises(AgentNotFound):
            c1.cast("nobody-here", "x")


def test_stop_sleep_delete_restart_from_the_other_node(two_nodes: TwoNodes):
    nodes = two_nodes
    a, b = nodes.names_on("n1", 1, "s") + nodes.names_on("n2", 1, "t")
    for name in (a, b):
        owner = nodes.owner(name)
        asker = nodes.locals[nodes.other(owner)]   # never the node that runs it
        asker.spawn(LEDGER, name=name, durability="replicated")
        asker.cast(name, 1)
        pid = asker.call(name, "where")

        asker.sleep(name)    # its owner stops its process after its group, marks it asleep
        info = asker.info(name)
        assert (info.status, info.pid, info.node) == ("sleeping", None, owner)
        wait_until(lambda pid=pid: not _alive(pid), what="the sleeping agent's process gone")
        asker.cast(name, 2)  # a message wakes it on its owner, from its committed state
        assert asker.call(name, "get") == [1, 2]
        assert asker.info(name).status == "running"

        asker.stop(name)
        assert asker.info(name).status == "stopped"
        with pytest.raises(AgentNotFound):
            asker.cast(name, 3)
        asker.restart(name)
        assert asker.call(name, "get") == [1, 2]    # its state kept through the stop
        with pytest.raises(AlreadyRunning):
            asker.restart(name)

        asker.delete(name)
        with pytest.raises(AgentNotFound):
            asker.info(name)
        asker.spawn(LEDGER, name=name, durability="replicated")  # a fresh one
        assert asker.call(name, "get") == []


def test_cli_verbs_on_replicated_agents_locally_and_with_connect(two_nodes: TwoNodes):
    nodes = two_nodes
    name = nodes.names_on("n2", 1, "cli")[0]
    n1 = nodes.locals["n1"]
    n1.spawn(LEDGER, name=name, durability="replicated")
    remote = ("--connect", nodes.addresses["n1"], "--keys", nodes.keys.client)
    out = beamish("sleep", name, "--dir", n1.dir, check=True)
    assert n1.info(name).status == "sleeping", out
    beamish("cast", name, "7", *remote, check=True)
    assert n1.call(name, "get") == [7]
    beamish("stop", name, *remote, check=True)
    assert n1.info(name).status == "stopped"
    beamish("restart", name, "--dir", n1.dir, check=True)
    assert n1.info(name).status == "running"
    table = beamish("ps", *remote, check=True).stdout.splitlines()
    assert table[0].split()[-1] == "NODE" and table[1].split()[0] == name, table
    assert table[1].split()[-1] == nodes.owner(name), table
    beamish("delete", name, *remote, check=True)
    with pytest.raises(AgentNotFound):
        n1.info(name)


def test_ps_and_tree_list_replicated_agents_with_their_node(two_nodes: TwoNodes):
    nodes = two_nodes
    n1, n2 = nodes.locals["n1"], nodes.locals["n2"]
    n1.spawn(LEDGER, name="own-1")   # one of n1's own (LMDB) agents
    names = [f"p{i:02d}" for i in range(12)]
    for name in names:
        n2.spawn(LEDGER, name=name, durability="replicated")
    n2.sleep("p03")
    rows = n1.ps()
    assert [r.name for r in rows] == ["own-1", *names]
    assert {r.name: r.node for r in rows if r.name != "own-1"} == \
        {n: nodes.owner(n) for n in names}
    assert [r.name for r in n1.ps(status="sleeping")] == ["p03"]
    pages, after = [], None   # pages of 5, the two stores merged by name
    while True:
        page = n1.ps_page(limit=5, after=after)
        pages.append([r.name for r in page.rows])
        if not page.more:
            break
        after = page.after
    assert pages == [["own-1", *names[:4]], names[4:9], names[9:]]
    listed = json.loads(beamish("ps", "--json", "--dir", n2.dir, check=True).stdout)
    assert [r["name"] for r in listed] == names  # n2 has no agent of its own
    tree = n1.tree(limit=4)
    assert [c["name"] for c in tree["children"]] == ["own-1", *names[:4]]
    assert tree["more"] == 8 and tree["more_by_status"] == {"running": 8}  # type: ignore[typeddict-item]


def test_dead_letters_of_a_replicated_agent_listed_and_resent(two_nodes: TwoNodes):
    nodes = two_nodes
    name = nodes.names_on("n2", 1, "d")[0]
    n1 = nodes.locals["n1"]
    n1.spawn(CAREFUL, name=name, durability="replicated")
    n1.cast(name, 1)
    n1.cast(name, "bad")   # raises three times, then is set aside
    n1.cast(name, 2)
    wait_until(lambda: n1.call(name, "get", timeout=10) == [1, 2], timeout=60,
               what="the bad cast set aside and the next one handled")
    dead = n1.dead_letters(name)
    assert [(d["msg"], d["failure"].exc_type) for d in dead] == [("bad", "ValueError")]  # type: ignore[union-attr]
    n1.cast(name, "fix")
    seq = n1.resend_dead_letter(name, dead[0]["seq"])
    assert seq > 0
    wait_until(lambda: n1.call(name, "get", timeout=10) == [1, 2, "fix", "bad"], timeout=30,
               what="the resent dead letter handled")
    assert n1.dead_letters(name) == []
    out = beamish("dead-letters", name, "--connect", nodes.addresses["n1"], "--keys",
                  nodes.keys.client, check=True).stdout
    assert "bad" not in out


def test_a_replicated_agent_that_keeps_crashing_ends_failed(two_nodes: TwoNodes):
    nodes = two_nodes
    name = nodes.names_on("n1", 1, "f")[0]
    n2 = nodes.locals["n2"]
    n2.spawn(FLAKY, name=name, durability="replicated")
    n2.cast(name, 1)
    n2.cast(name, "die")   # exits the process each time it is tried: 3 restarts in 30 s
    wait_until(lambda: n2.info(name).status == "failed", timeout=60,
               what="the crash-looping agent marked failed")
    info = n2.info(name)
    assert info.pid is None and info.restarts == 3
    assert info.last_failure is not None and info.last_failure.exit_code == 3
    time.sleep(2.0)   # it stays failed: nobody restarts it
    assert n2.info(name).status == "failed"
    with pytest.raises(AgentNotFound):
        n2.cast(name, 2)
    kinds = [e.kind for e in nodes.locals["n1"].events(name=name)]
    assert "failed" in kinds and "backoff" in kinds, kinds
    n2.stop(name)    # the way out: stop it, then delete it (or restart it)
    n2.delete(name)


def test_a_replicated_agent_killed_with_an_empty_mailbox_is_restarted(two_nodes: TwoNodes):
    # Its restart waits in backoff with no message to wake it: the owner's re-check must
    # find it (it once read only running agents, so the agent stayed down).
    nodes = two_nodes
    name = nodes.names_on("n1", 1, "k")[0]
    n1 = nodes.locals["n1"]
    n1.spawn(LEDGER, name=name, durability="replicated")
    n1.cast(name, ["a", 1])
    assert n1.call(name, "get") == [["a", 1]]
    pid = n1.info(name).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (i := n1.info(name)).status == "running" and i.pid not in (None, pid),
               timeout=30, what="the killed agent running again, by itself")
    assert n1.call(name, "get") == [["a", 1]]
    assert n1.info(name).restarts == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timers_of_replicated_agents_fire_once_and_idle_ones_fall_asleep(two_nodes: TwoNodes):
    nodes = two_nodes
    name, sleeper = nodes.names_on("n1", 2, "tm")
    n2 = nodes.locals["n2"]
    n2.spawn(ALARM, name=name, durability="replicated")
    n2.call(name, ["after", 0.5, "t1"])
    gone = n2.call(name, ["after", 1.0, "cancelled"])
    assert n2.call(name, ["cancel", gone]) is True
    n2.call(name, ["after", 1.5, "t2"])
    n2.sleep(name)        # asleep: its timer wakes it
    wait_until(lambda: n2.call(name, "get", timeout=15) == ["t1", "t2"], timeout=60,
               what="both timers fired, once each")
    time.sleep(1.5)
    assert n2.call(name, "get") == ["t1", "t2"]   # the cancelled one never fires

    n2.spawn(LEDGER, name=sleeper, durability="replicated", idle_timeout=1.0)
    n2.cast(sleeper, 1)
    wait_until(lambda: n2.info(sleeper).status == "sleeping", timeout=30,
               what="the idle replicated agent asleep")
    assert n2.info(sleeper).pid is None
    assert n2.call(sleeper, "get") == [1]          # a message wakes it on its owner
    kinds = [(e.kind, e.reason) for e in nodes.locals["n1"].events(name=sleeper)]
    assert ("slept", "idle") in kinds, kinds
