"""A client key rewritten in place in the node's ``authorized/`` (same file name, new
key: how an operator or a config-management tool rotates a leaked key) is refused from
its next connection on, while the new key is admitted, without restarting the node."""

from __future__ import annotations

import os

import pytest

from beamish.runtime import NodeNotRunning, connect
from beamish.runtime.cluster.keys import authorize, generate
from tests.cluster.conftest import TcpNode

pytestmark = pytest.mark.slow


def test_a_key_rewritten_in_place_is_refused_at_its_next_connection(tcp_node: TcpNode):
    k = tcp_node.keys
    with connect(tcp_node.address, keys=k.client) as remote:
        assert remote.ps() == []
    path = os.path.join(k.node, "authorized", "client.key")
    dir_mtime = os.stat(os.path.dirname(path)).st_mtime_ns
    fresh = os.path.join(k.base, "fresh")
    new_public = generate(fresh).public
    authorize(fresh, k.node_public, "node")
    with open(path, "w") as fh:  # in place: the dir itself does not change
        fh.write(new_public + "\n")
    assert os.stat(os.path.dirname(path)).st_mtime_ns == dir_mtime

    with pytest.raises(NodeNotRunning, match="does not admit this key"):
        connect(tcp_node.address, keys=k.client, timeout=1.0)
    with connect(tcp_node.address, keys=fresh) as remote:
        assert remote.ps() == []
    assert tcp_node.local.transport().authorized == 1  # type: ignore[union-attr]
