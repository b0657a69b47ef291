"""Fixtures for the TCP front door: key dirs that trust each other, free ports, and a node
listening on 127.0.0.1 with CURVE."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from beamish.runtime import Node, start_node
from beamish.runtime.cluster.keys import authorize, generate
from tests.conftest import shutdown_quietly


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
