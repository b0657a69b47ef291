"""The fault tests' networks themselves (tests/cluster/netns.py), in both variants: TCP
between two nodes works, a cut stops it, a restore brings it back; PostgreSQL is
reachable from a node's network; a teardown leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cluster import netns
from tests.cluster.netns import NetNode, python_in
from tests.conftest import wait_until

PORT = 7761

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100).upper()); c.close()
"""

CLIENT = """
import socket, sys
try:
    s = socket.create_connection(("{addr}", {port}), timeout=1.5,
                                 source_address=("{src}", 0))
    s.sendall(b"ping"); print(s.recv(100).decode())
except OSError as e:
    print("failed", type(e).__name__)
"""


def _serve(node: NetNode) -> subprocess.Popen[str]:
    proc = subprocess.Popen(node.argv([sys.executable, "-c", SERVER, node.address,
                                       str(PORT)]), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _ping(src: NetNode, dst: NetNode) -> str:
    return python_in(src, CLIENT.format(addr=dst.address, port=PORT,
                                        src=src.address)).stdout.strip()


@pytest.mark.parametrize("kind", ["netns", "loopback"])
def test_tcp_between_nodes_a_cut_stops_it_and_a_restore_brings_it_back(net, kind):
    h = net(3, kind)
    a, b, c = h.nodes
    server = _serve(a)
    try:
        assert _ping(b, a) == "PING"
        assert _ping(c, a) == "PING"
        h.cut(1)
        assert _ping(b, a).startswith("failed")
        assert _ping(c, a) == "PING"  # only the cut node is cut off
        h.restore(1)
        wait_until(lambda: _ping(b, a) == "PING", 10, "traffic after the restore")
        h.cut(0)  # the server's own node: nobody reaches it
        assert _ping(c, a).startswith("failed")
        h.restore(0)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("kind", ["netns", "loopback"])
def test_postgres_is_reachable_from_a_nodes_network_and_a_cut_stops_it(net, net_pg, kind):
    h = net(2, kind)
    server = net_pg(h)
    node = h.nodes[1]
    code = ("import psycopg\n"
            "try:\n"
            f"    c = psycopg.connect({server.dsn_for('postgres', host=node.db_address)!r},"
            " connect_timeout=2)\n"
            "    print(c.execute('select inet_client_addr()').fetchone()[0])\n"
            "except psycopg.OperationalError as e:\n"
            "    print('failed')\n")
    out = python_in(node, code)
    assert out.returncode == 0, out.stderr
    if kind == "netns":
        assert out.stdout.strip() == node.address  # it came from inside the namespace
    else:
        assert out.stdout.strip().startswith("127.")
    h.cut(1)
    assert python_in(node, code).stdout.strip() == "failed"
    h.restore(1)


def test_leftovers_sees_what_a_harness_made_and_teardown_removes_it_all(net):
    if netns.netns_unavailable():
        pytest.skip(netns.netns_unavailable() or "")
    h = netns.Netns(2).up()
    made = netns.leftovers()
    assert {f"netns {n.netns}" for n in h.nodes} <= set(made)
    assert f"link {h.bridge}" in made
    assert h.teardown() == []
    assert netns.leftovers() == []
    assert h.teardown() == []  # twice is harmless


def test_a_loopback_cut_is_skipped_with_its_reason_where_nft_is_missing(net, monkeypatch):
    monkeypatch.setattr(netns.shutil, "which",
                        lambda name: None if name == "nft" else "/usr/bin/" + name)
    h = net(1, "loopback")
    with pytest.raises(pytest.skip.Exception, match="nftables"):
        h.cut(0)
