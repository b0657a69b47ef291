"""Fixtures of the cluster tests: a real PostgreSQL server (one per test session, started
from the binaries ``scripts/system-deps`` installs, ``scripts/pgserver.py``) with a fresh
database per test; the fault tests' networks (``netns.py``); and for the TCP front door,
key dirs that trust each other, free ports, and a node listening on 127.0.0.1 with CURVE."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from beamish.runtime import Node, start_node
from beamish.runtime.cluster.keys import authorize, generate
from tests.conftest import shutdown_quietly

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from pgserver import PgServer  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (stopped and removed at the end)."""
    server = PgServer(tempfile.mkdtemp(prefix="beamish-pg-"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The DSN of an empty database of this test's own."""
    name = "t_" + uuid.uuid4().hex[:12]
    if not pg_server.running():  # a test that stopped the server and failed before restart
        pg_server.start()
    dsn = pg_server.create_database(name)
    try:
        yield dsn
    finally:
        if not pg_server.running():
            pg_server.start()
        pg_server.drop_database(name)


# -- networks for the fault tests (tests/cluster/netns.py) -----------------------------

from tests.cluster import netns as _netns  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_network() -> Iterator[None]:
    """Fail a test that leaves a namespace, link or nft table of this session behind
    (and remove it, so later tests are not disturbed)."""
    before = set(_netns.leftovers())
    yield
    leaked = sorted(set(_netns.leftovers()) - before)
    for item in leaked:
        kind, name = item.split(" ", 1)
        if kind == "netns":
            _netns._ip("netns", "del", name, check=False)
        elif kind == "link":
            _netns._ip("link", "del", name, check=False)
        elif kind == "nft" and name.startswith("table "):
            import subprocess
            subprocess.run(["nft", "delete", *name.split()], capture_output=True, timeout=30)
    assert not leaked, f"network objects outlived the test: {leaked}"


NET_KINDS = ("netns", "loopback")


def _make_net(kind: str, count: int) -> _netns.Netns | _netns.Loopback:
    if kind == "netns":
        reason = _netns.netns_unavailable()
        if reason:
            pytest.skip(reason)
        return _netns.Netns(count).up()
    return _netns.Loopback(count).up()


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``net(count, kind=None)``: ``count`` nodes' networks, torn down after the test
    (a teardown that leaves anything fails it). ``kind``: "netns" or "loopback"; by
    default namespaces where the machine has them, else loopback
    (``BEAMISH_TEST_NET=loopback`` forces it)."""
    made: list[_netns.Netns | _netns.Loopback] = []

    def make(count: int = 3, kind: str | None = None) -> _netns.Netns | _netns.Loopback:
        if kind is None:
            kind = os.environ.get("BEAMISH_TEST_NET") or \
                ("netns" if _netns.netns_unavailable() is None else "loopback")
        harness = _make_net(kind, count)
        made.append(harness)
        return harness

    yield make
    errors = [e for h in made for e in h.teardown()]
    assert not errors, errors


@pytest.fixture
def net_pg(tmp_path: Path) -> Iterator[Callable[..., PgServer]]:
    """``net_pg(harness)``: a PostgreSQL server of this test's own that the harness's
    nodes can reach (listening on their database addresses, trusting their subnet);
    ``server.dsn_for(db, host=node.db_address)`` is a node's DSN."""
    servers: list[PgServer] = []

    def make(harness: _netns.Netns | _netns.Loopback) -> PgServer:
        server = PgServer(tempfile.mkdtemp(prefix="beamish-pgnet-"),
                          listen=("127.0.0.1", *harness.db_listen), trust=(harness.cidr,))
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.destroy()


# -- the TCP front door: keys and a listening node ----------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Keys:
    """A node's keys dir and a client's, each trusting the other; a temp base dir."""

    base: str
    node: str
    client: str
    node_public: str
    client_public: str


@pytest.fixture
def keys() -> Iterator[Keys]:
    """A node keys dir that admits the client's key, and a client keys dir that trusts the
    node's."""
    base = tempfile.mkdtemp(prefix="bmk-", dir="/tmp")
    node_dir, client_dir = os.path.join(base, "nk"), os.path.join(base, "ck")
    node_pub, client_pub = generate(node_dir).public, generate(client_dir).public
    authorize(node_dir, client_pub, "client")
    authorize(client_dir, node_pub, "node")
    yield Keys(base, node_dir, client_dir, node_pub, client_pub)
    shutil.rmtree(base, ignore_errors=True)


def write_config(base: str, text: str) -> str:
    """Write ``text`` as ``base/beamish.toml``; return its path."""
    path = os.path.join(base, "beamish.toml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


@dataclass(frozen=True)
class TcpNode:
    """A running node listening on ``address`` (its local `Node` handle as ``local``)."""

    local: Node
    address: str
    keys: Keys


@pytest.fixture
def tcp_node(node_dir: str, keys: Keys) -> Iterator[TcpNode]:
    """A node listening on a free port of 127.0.0.1 with the ``keys`` fixture's node keys;
    shut down after the test."""
    address = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(keys.base, f'[cluster]\nlisten = "{address}"\nkeys = "nk"\n')
    node = start_node(node_dir, config=config)
    try:
        yield TcpNode(node, address, keys)
    finally:
        shutdown_quietly(node)
