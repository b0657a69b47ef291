"""A node that still renews its lease but cannot be reached from the asking node (a cut
between two nodes only, the database reachable from both): requests forwarded to its
node-pinned agent end with `NodeDown` by the link's heartbeats (``cluster/reach.py``),
not when the forward's wait runs out, with ``sent`` telling the truth: a ledger of the
casts checks that nothing acknowledged is lost, nothing is applied twice, and nothing
refused with ``sent=False`` is ever applied. Both nodes in network namespaces (or on
loopback addresses), one PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from beamish.runtime import Node, NodeDown
from beamish.runtime.cluster.keys import authorize
from tests.cluster import netns
from tests.cluster.conftest import NET_KINDS, Keys, PgServer, free_port
from tests.cluster.test_failover import LEDGER, _config
from tests.cluster.test_faults_net import _start_in
from tests.cluster.test_pinned import Caster
from tests.conftest import shutdown_quietly, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]

DB = "r"


@dataclass
class Two:
    """Nodes n1 (network index 0) and n2 (index 1), started by their dirs."""

    harness: netns.Netns | netns.Loopback
    server: PgServer
    addresses: dict[str, str]
    locals: dict[str, Node]

    def leases_alive(self) -> bool:
        """Whether both nodes' leases are alive by the database's clock."""
        out = self.server.psql("SELECT count(*) FROM beamish_members WHERE lease_expires "
                               "> clock_timestamp()", database=DB).strip()
        return out == "2"


class PairCut:
    """Drops the packets between node 0 and node 1's front door only (the database and
    every other path stay up): nft rules in node 0's namespace, or on loopback rules for
    node 1's front door's port (a loopback connection's source address is not the
    node's)."""

    def __init__(self, harness: netns.Netns | netns.Loopback, address: str) -> None:
        self.harness = harness
        host_port = address.removeprefix("tcp://")
        self.host, self.port = host_port.rsplit(":", 1)
        self.table = f"{netns.MARK}pair"
        self.made = False

    def _nft(self, *commands: str) -> None:
        for command in commands:
            argv = ["nft", command]
            if isinstance(self.harness, netns.Netns):
                argv = self.harness.nodes[0].argv(argv)
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, f"nft {command}: {out.stderr}"

    def cut(self) -> None:
        """Drop them."""
        t = f"inet {self.table}"
        if isinstance(self.harness, netns.Netns):
            rules = [f"add rule {t} out ip daddr {self.host} drop",
                     f"add rule {t} in ip saddr {self.host} drop"]
        else:
            rules = [f"add rule {t} out ip daddr {self.host} tcp dport {self.port} drop",
                     f"add rule {t} out ip saddr {self.host} tcp sport {self.port} drop"]
        self._nft(f"add table {t}",
                  f"add chain {t} out {{ type filter hook output priority 0 ; }}",
                  f"add chain {t} in {{ type filter hook input priority 0 ; }}", *rules)
        self.made = True

    def restore(self) -> None:
        """Let them through again."""
        if self.made:
            self._nft(f"delete table inet {self.table}")
            self.made = False


@pytest.fixture(params=NET_KINDS)
def two(request: pytest.FixtureRequest, net, net_pg, keys: Keys) -> Iterator[Two]:
    """Two nodes of cluster "t", each in its own network (the nodes share a key pair,
    which each admits: node-to-node forwarding)."""
    harness = net(2, request.param)
    if isinstance(harness, netns.Loopback) and netns.cut_unavailable():
        pytest.skip(netns.cut_unavailable() or "")
    server = net_pg(harness)
    server.create_database(DB)
    authorize(keys.node, keys.node_public, "nodes")
    base = tempfile.mkdtemp(prefix="bmr-", dir="/tmp")
    names = ["n1", "n2"]
    addresses = {n: f"tcp://{harness.nodes[i].address}:{free_port()}"
                 for i, n in enumerate(names)}
    nodes = Two(harness, server, addresses, {})
    try:
        for i, n in enumerate(names):
            where = harness.nodes[i]
            cfg = _config(base, n, server.dsn_for(DB, host=where.db_address), addresses[n],
                          keys.node)
            nodes.locals[n] = _start_in(where, os.path.join(base, n), cfg)
        wait_until(nodes.leases_alive, timeout=60, what="both nodes members")
        yield nodes
    finally:
        for node in nodes.locals.values():
            shutdown_quietly(node)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_cut_between_two_nodes_gives_node_down_within_seconds(two: Two) -> None:
    n1, n2 = two.locals["n1"], two.locals["n2"]
    n2.spawn(LEDGER, name="far")  # pinned on n2: n1 forwards to n2's front door
    assert n1.call("far", "ping") == "pong"
    caster = Caster(n1, "far")  # type: ignore[arg-type]  # a local client: same API
    stop = threading.Event()
    thread = threading.Thread(target=caster.run, args=(stop,))
    thread.start()
    cut = PairCut(two.harness, two.addresses["n2"])
    try:
        wait_until(lambda: len(caster.acked) > 50, timeout=60, what="casts acknowledged")
        cut.cut()
        cut_at = time.monotonic()
        wait_until(lambda: caster.downs, timeout=60, what="a NodeDown")
        first_at, first = caster.downs[0]
        assert two.leases_alive(), "a lease ran out: this is not a cut between two nodes"
        assert first.node == "n2" and first.agent == "far", first
        assert "cannot be reached from node 'n1'" in str(first), first
        # Found by the link, not by the wait: the cast's wait (CAST_WAIT_S) is 10 s.
        # The next requests are refused before they leave n1: sent=False.
        wait_until(lambda: any(not e.sent for _, e in caster.downs), timeout=60,
                   what="NodeDown with sent=False")
        t0 = time.monotonic()
        with pytest.raises(NodeDown) as called:
            n1.call("far", "get", timeout=30)
        call_took = time.monotonic() - t0
        assert called.value.node == "n2" and not called.value.sent, called.value
        assert "cannot be reached" in str(called.value)
        assert two.leases_alive()
        print(f"\n{two.harness.kind}: first NodeDown {first_at - cut_at:.2f} s after the "
              f"cut (sent={first.sent}); a call with a 30 s timeout raised it in "
              f"{call_took:.2f} s; both leases alive")
        cut.restore()
        acked_then = len(caster.acked)
        wait_until(lambda: len(caster.acked) > acked_then + 50, timeout=60,
                   what="casts acknowledged after the cut ended")
    finally:
        stop.set()
        thread.join(timeout=60)
        cut.restore()
    assert not caster.others, caster.others[:3]
    applied = [x[0] for x in n2.call("far", "get", timeout=30)]
    assert applied == sorted(applied) and len(applied) == len(set(applied)), "order, twice"
    missing = set(caster.acked) - set(applied)
    assert not missing, f"acknowledged casts lost: {sorted(missing)[:10]}"
    refused = set(applied) & caster.refused
    assert not refused, f"casts refused with sent=False were applied: {refused}"
    extra = set(applied) - set(caster.acked) - caster.doubt
    assert not extra, f"casts applied that were never acknowledged: {extra}"
    print(f"ledger: {len(caster.acked)} acknowledged casts applied once, "
          f"{len(caster.doubt)} in doubt ({len(set(applied) & caster.doubt)} applied), "
          f"{len(caster.refused)} refused (sent=False, none applied)")
