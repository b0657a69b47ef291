"""A node listens on an IPv6 address (``tcp://[::1]:PORT``, the form the config's own
error message shows) and a remote client reaches it there."""

from __future__ import annotations

import socket

import pytest

from beamish.runtime import connect, start_node
from tests.cluster.conftest import Keys, write_config
from tests.conftest import shutdown_quietly

pytestmark = pytest.mark.slow

COUNTER = "tests.agents.basic:Counter"


def _free_ipv6_port() -> int:
    """A TCP port free on ::1 now; skips the test where the machine has no IPv6 loopback."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return int(s.getsockname()[1])
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")


def test_a_node_listens_and_is_reached_on_ipv6_loopback(node_dir: str, keys: Keys):
    address = f"tcp://[::1]:{_free_ipv6_port()}"
    config = write_config(keys.base, f'[cluster]\nlisten = "{address}"\nkeys = "nk"\n')
    node = start_node(node_dir, config=config)
    try:
        assert node.transport().listen == address  # type: ignore[union-attr]
        node.spawn(COUNTER, name="c")
        with connect(address, keys=keys.client) as remote:
            assert remote.call("c", "incr") == 1
            remote.cast("c", "incr")
            assert remote.status().pid == node.pid
        assert node.call("c", "incr") == 3  # the cast was applied (mailbox order)
    finally:
        shutdown_quietly(node)
