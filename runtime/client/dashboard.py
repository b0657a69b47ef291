"""``beamish dashboard``: the node's web view served from this process, reading a running
node through the client API (the page and its JSON are those of ``node/dashboard.py``,
which the daemon serves itself with ``[node] dashboard``)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AgentNotFound
from ..node.config import listen_address
from ..node.dashboard import DashboardServer
from .remote import RemoteNode

if TYPE_CHECKING:
    from .api import Node

TOKEN_MIN = 16
"""The shortest token ``--token`` takes (as ``[node] dashboard_token``)."""
DEFAULT_BIND = "127.0.0.1:8470"
"""Where ``beamish dashboard`` listens unless ``--bind`` says otherwise."""


class NodeSource:
    """A `DashboardSource` over a `Node` connection: its control requests and its agents'
    logs (read from the node dir, as ``beamish logs`` does; not over TCP, where they are
    files on the node's machine)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def request(self, op: str, args: Mapping[str, object]) -> Any:
        """Run control command ``op`` on the node; its value in wire form."""
        return self.node._control.request(op, dict(args))

    def log_tail(self, name: str, n: int) -> list[str] | None:
        """The last ``n`` lines of the agent's log ([] when it has none yet); None for a
        node reached over TCP (``--connect``), whose logs are not served."""
        if isinstance(self.node, RemoteNode):
            return None
        try:
            return self.node.logs(name, n)
        except AgentNotFound:
            return []


def serve_dashboard(node: Node, bind: str = DEFAULT_BIND, token: str | None = None,
                    stop: threading.Event | None = None) -> int:
    """Serve the dashboard for ``node`` on ``bind`` until ``stop`` is set (or Ctrl-C);
    print its address first, with its token (made when none is given). Returns the exit status.

    Raises:
        ConfigError: ``bind`` is not ``HOST:PORT`` or cannot be listened on.
    """
    from ..errors import ConfigError
    try:
        address = listen_address(bind)
    except ValueError as exc:
        raise ConfigError(f"--bind: {exc}") from None
    if token is not None and len(token) < TOKEN_MIN:
        raise ConfigError(f"--token: {len(token)} characters; a token needs at least "
                          f"{TOKEN_MIN} (leave it out to have one made)")
    # The server logs a failed request (with its traceback) rather than printing it bare.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="beamish dashboard: %(levelname)s %(message)s")
    server = DashboardServer(address, NodeSource(node), token, what="--bind")
    try:
        print(f"dashboard for the node on {node.dir}: {server.url}", flush=True)
        print("the link carries the dashboard's token (after #token=): whoever has it can "
              "read every agent's state and resend its dead letters; keep it secret",
              file=sys.stderr, flush=True)
        (stop or threading.Event()).wait()
    finally:
        server.close()
    return 0
