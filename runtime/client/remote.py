"""Remote clients: `connect("tcp://HOST:PORT", keys=DIR)` returns a `RemoteNode`, the
`Node` API over the node's TCP front door (CURVE; see ``cluster/frontdoor.py``).

A local `Node` appends messages straight into the agents' mailboxes in the node's LMDB;
a remote one cannot reach that file, so its calls and casts are requests the node carries
out on its behalf (acknowledged once durable there, as a local cast is). Everything else
is the control requests of a local client, over TCP. Its keys dir holds the client's own
pair and, in ``authorized/``, the public key of the node it trusts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Literal, overload

import zmq

from beamish.mailbox import DEFAULT_MAX_MESSAGE_BYTES, CurveClient, Requester

from .._paths import NodePaths
from .._types import UserData
from .._validation import check_lookup_name, check_timeout
from ..agent.base import Agent
from ..cluster.address import tcp_address
from ..cluster.forward import pinned_spawn
from ..cluster.frontdoor import REQUEST_ROOM, TransportStatus
from ..cluster.keys import authorize, authorized_keys, generate, load_pair, pick_server_key
from ..errors import ConfigError, NodeNotRunning
from ..messaging.control import ControlClient
from ..messaging.spawnargs import spawn_request
from ..node.config import StartReport
from .api import AgentRef, Node, remote_connect

# How much longer than a call's own timeout its client waits for the node's answer (the
# node ends the call at the call's timeout and answers CallTimeout).
CALL_MARGIN_S = 5.0


def client_curve(keys: str | os.PathLike[str] | None, server_key: str | None) -> CurveClient:
    """The CURVE keys of a client whose keys dir is ``keys`` (default ``$BEAMISH_KEYS``),
    trusting ``server_key`` (a name in its ``authorized/``, or a key; default
    ``$BEAMISH_SERVER_KEY``, else the only key there).

    Raises:
        ConfigError: no keys dir given, no pair in it, or no server key to pick.
    """
    path = os.fspath(keys) if keys is not None else os.environ.get("BEAMISH_KEYS")
    if not path:
        raise ConfigError("connecting over TCP needs a keys dir: keys=DIR (--keys DIR, "
                          "$BEAMISH_KEYS), made with `beamish keys generate DIR`")
    path = os.path.expanduser(path)
    pair = load_pair(path, "keys")
    server = pick_server_key(authorized_keys(path),
                             server_key or os.environ.get("BEAMISH_SERVER_KEY") or None, path)
    return CurveClient(pair.public.encode(), pair.secret.encode(), server.encode())


class _TcpControl(ControlClient):
    """`ControlClient` over TCP with CURVE: one DEALER per thread to the front door."""

    def __init__(self, address: str, ctx: zmq.Context[Any], curve: CurveClient) -> None:
        super().__init__(NodePaths(address), ctx)
        self.curve = curve
        self.limit = DEFAULT_MAX_MESSAGE_BYTES  # the node's, once known

    def _connect(self) -> Requester:
        # A request is checked against the node's limit here, before it is sent (the node
        # checks the message itself against its limit, naming its agent).
        return Requester(self.ctx, self.paths.dir, self.limit + REQUEST_ROOM, curve=self.curve)


class RemoteNode(Node):
    """A connection to a node over TCP (CURVE): the `Node` API, served by the node's front
    door. Get one from ``connect("tcp://HOST:PORT", keys=DIR)``. Safe from several threads.

    Attributes:
        dir: the address it connects to (``tcp://HOST:PORT``).
        pid: the daemon's pid (on its machine).
    """

    def __init__(self, address: str, curve: CurveClient) -> None:
        # Not Node.__init__: no store, no messenger here; what the methods below and the
        # inherited control methods use is set.
        self.paths = NodePaths(address)
        self.dir = address
        self.pid = 0
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._tcp = self._control = _TcpControl(address, self._ctx, curve)
        self.start_report = StartReport()
        self._closed = False
        self._close_lock = threading.Lock()

    def _message_limit(self) -> int:
        return self._tcp.limit

    # -- messages ------------------------------------------------------------------------------
    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call agent ``name`` (see `AgentRef.call`); the node makes the call for us.

        Raises:
            As `AgentRef.call`; NodeNotRunning: the node did not answer (unreachable).
        """
        timeout = check_timeout(timeout)
        return self._control.request("call", {"name": check_lookup_name(name), "msg": msg,
                                              "timeout": timeout},
                                     timeout=timeout + CALL_MARGIN_S)

    def cast(self, name: str, msg: Any) -> None:
        """Cast to agent ``name``: returns once the node has it durably in its mailbox."""
        self._control.request("cast", {"name": check_lookup_name(name), "msg": msg})

    def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`Node.cast_many` (one commit on the node; all or nothing)."""
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
            raise ConfigError(f"cast_many takes a list of (name, msg) pairs, not "
                              f"{type(items).__name__}")
        pairs = []
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ConfigError(f"cast_many: {item!r:.80} is not a (name, msg) pair")
            pairs.append([check_lookup_name(item[0]), item[1]])
        self._control.request("cast_many", {"items": pairs})

    async def acall(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """`call` for asyncio code (over TCP it waits in a worker thread)."""
        return await asyncio.to_thread(self.call, name, msg, timeout)

    async def acast(self, name: str, msg: Any) -> None:
        """`cast` for asyncio code."""
        await asyncio.to_thread(self.cast, name, msg)

    async def acast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`cast_many` for asyncio code."""
        await asyncio.to_thread(self.cast_many, list(items))

    async def _arequest(self, op: str, args: Any = None, timeout: float = 30.0) -> Any:
        return await asyncio.to_thread(self._control.request, op, args, timeout=timeout)

    # -- the tree ------------------------------------------------------------------------------
    def spawn(self, cls: type[Agent] | str, args: UserData | None = None,
              name: str | None = None, supervisor: str = "root", restart: str = "permanent",
              shutdown: float | str = 5.0, limits: Any = None, timeout: float = 30.0,
              idle_timeout: float | None = None, lazy: bool = False,
              durability: str | None = None, node: str | None = None) -> AgentRef:
        """`Node.spawn` on the remote node (the class is imported there, by its path)."""
        request = spawn_request(cls, args, name, supervisor, restart, shutdown, limits, timeout,
                                idle_timeout, lazy, max_bytes=self._message_limit(),
                                durability=durability)
        value = self._control.request("spawn", pinned_spawn(request, node),
                                      timeout=timeout + 5)
        return AgentRef(self, str(value["name"]))

    @overload
    def logs(self, name: str, n: int = 100, follow: Literal[False] = False) -> list[str]: ...
    @overload
    def logs(self, name: str, n: int = 100, *, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, name: str, n: int = 100, follow: bool = False
             ) -> list[str] | Iterator[str]:
        """Not served over TCP: agents' logs are files on the node's machine.

        Raises:
            ConfigError: always, saying where to read them.
        """
        raise ConfigError(f"agent logs are files on the node's machine, not served over "
                          f"TCP: run `beamish logs {name}` there")

    def _log_path(self, name: str, n: int) -> str:
        return self.logs(name, n)  # type: ignore[return-value]  # raises

    def shutdown(self, timeout: float = 300.0) -> None:
        """Ask the node to stop every agent and exit (it does so on its machine); returns
        once it has begun, and closes this connection."""
        check_timeout(timeout)
        try:
            self._control.request("shutdown", timeout=min(timeout, 10.0))
        except NodeNotRunning:
            pass
        self.close()

    def _wait_gone(self, timeout: float) -> None:
        """Nothing to wait for here: the node exits on its own machine (`Node.drain`)."""

    def transport(self) -> TransportStatus | None:
        """The node's TCP front door (`Node.transport`)."""
        value = self._control.request("transport")
        return None if value is None else TransportStatus.from_wire(value)

    def close(self) -> None:
        """Close this connection (the node keeps running)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._control.close()
        self._ctx.destroy(linger=0)

    def __repr__(self) -> str:
        return f"RemoteNode({self.dir!r}, pid={self.pid})"


def connect_remote(address: str, keys: str | os.PathLike[str] | None,
                   server_key: str | None, timeout: float) -> RemoteNode:
    """Connect to the node listening on ``address`` (see `connect`).

    Raises:
        ConfigError: a bad address, or keys (see `client_curve`).
        NodeNotRunning: it did not answer within ``timeout`` (down, unreachable, or it
            does not admit this client's key: a refused key looks the same, by design).
    """
    try:
        tcp_address(address, "address")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    node = RemoteNode(address, client_curve(keys, server_key))
    try:
        node.pid = int(node._control.request("ping", timeout=timeout)["pid"])
        door = node.transport()
        if door is not None:
            node._tcp.limit = door.max_message_bytes
    except NodeNotRunning:
        node.close()
        raise NodeNotRunning(f"the node at {address} did not answer within {timeout:g} s: "
                             "it is down or unreachable, or it does not admit this key "
                             "(authorize it there: `beamish keys authorize NODE_KEYS_DIR "
                             "CLIENT_PUBLIC_KEY`)") from None
    except BaseException:
        node.close()
        raise
    return node


remote_connect.append(connect_remote)


def keys_command(args: argparse.Namespace) -> int:
    """``beamish keys generate DIR`` / ``beamish keys authorize DIR KEY [--name N]``."""
    if args.keys_command == "generate":
        pair = generate(args.keys_dir)
        print(pair.public)
        return 0
    key, added = authorize(args.keys_dir, args.key, args.name)
    path = os.path.join(args.keys_dir, "authorized", key.name + ".key")
    print(f"authorized {key.key} as {path}" if added
          else f"{key.key} is authorized already, as {path}")
    return 0


