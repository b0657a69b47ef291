"""The Python API: `start_node`, `connect`, `Node`, `AgentRef`, `AsyncNode`, `AsyncAgentRef`.

A `Node` talks to its daemon over the control socket for tree operations (spawn, stop,
info, ...) and sends messages straight into agents' durable mailboxes (`._messenger`): no
hop through the daemon. It is safe to use from several threads at once. For asyncio code
it keeps one `_AsyncLink` per event loop (an `AsyncMessenger` and an `AsyncControlClient`,
on zmq.asyncio): its ``acall``/``acast`` and every `AsyncNode` method wait without a thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import psutil

from .._events import EventFilter, EventPage, SinceArg, check_kinds, since_time
from .._paths import (
    NodeFile,
    NodePaths,
    check_dir_safe,
    default_dir,
    dir_error,
    make_dir,
    open_log,
    read_node_info,
)
from .._types import (
    AgentInfo,
    DeadLetterInfo,
    Event,
    Failure,
    Limits,
    NodeStatus,
    TreeNode,
    UserData,
)
from .._upgrades import UpgradeReport
from .._validation import check_lookup_name, check_name, check_timeout
from ..agent.base import Agent
from ..cluster.drain import DrainPhase, DrainStatus
from ..cluster.forward import pinned_spawn
from ..cluster.frontdoor import TransportStatus
from ..cluster.status import ClusterStatus
from ..errors import (
    ERRORS,
    AgentNotFound,
    BeamishError,
    ConfigError,
    DrainIncomplete,
    NodeAlreadyRunning,
    NodeNotRunning,
    PartialListing,
    SpawnError,
    UpgradeFailed,
    UpgradeImportError,
)
from ..messaging.amessenger import AsyncMessenger, closed_error
from ..messaging.control import AsyncControlClient, ControlClient
from ..messaging.messenger import Messenger, hint_node
from ..messaging.spawnargs import spawn_request
from ..messaging.wire import spawned_hints
from ..node.commands import AgentState, register_lazy
from ..node.config import StartReport, load_config
from ..node.eventlog import PAGE_MAX as EVENTS_PAGE
from ..node.stats import NodeStats
from ..store import open_store
from ..store.protocol import Store
from .drain import REQUEST_TIMEOUT_S as DRAIN_REQUEST_S
from .drain import STOP_WAIT_S as DRAIN_STOP_WAIT_S
from .drain import drain_node
from .logs import follow as follow_log
from .logs import generations, last_lines

START_TIMEOUT_S = 60.0
_stores: dict[str, tuple[Store, int]] = {}
_stores_lock = threading.Lock()
_daemons: dict[int, subprocess.Popen[bytes]] = {}
# How `connect` reaches a node over TCP: client/remote.py's connect_remote, put here when
# that module is imported (the package imports it), as it builds on `Node`.
remote_connect: list[Callable[[str, str | os.PathLike[str] | None, str | None, float],
                              Node]] = []


def _acquire_store(path: str, durability: str) -> Store:
    # py-lmdb refuses to open one environment twice in a process: share it.
    with _stores_lock:
        store, refs = _stores.get(path, (None, 0))
        if store is None:
            store = open_store(path, durability)
        _stores[path] = (store, refs + 1)
        return store


def _release_store(path: str) -> None:
    with _stores_lock:
        store, refs = _stores.get(path, (None, 0))
        if store is None:
            return
        if refs <= 1:
            del _stores[path]
            store.close()
        else:
            _stores[path] = (store, refs - 1)


def _abs_sys_path() -> list[str]:
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def _node_locked(paths: NodePaths) -> bool:
    try:
        fd = os.open(paths.lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise dir_error(paths.dir, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _readable(fd: int, timeout: float) -> bool:
    # poll, not select: a process with many sockets has fds above select's 1024 limit.
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    return bool(poller.poll(int(timeout * 1000) + 1))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _exited(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_node(dir: str | os.PathLike[str] | None = None, *, config: str | None = None,
               durability: str | None = None, strict: bool | None = None,
               timeout: float = START_TIMEOUT_S) -> Node:
    """Start a node daemon in the background on ``dir`` and connect to it.

    The daemon imports agent modules with this process's ``sys.path`` (its current
    directory and ``PYTHONPATH`` included), after the dirs in ``$BEAMISH_SYS_PATH`` if set.
    Its log is ``DIR/node.log``.

    Args:
        dir: the node dir (default ``$BEAMISH_DIR``, else ``./.beamish``).
        config: a ``beamish.toml`` declaring the initial tree.
        durability: "process" (default), "fsync" or "memory"; overrides the config file.
        strict: stop the whole node when the root's intensity is exceeded (OTP's root).
        timeout: seconds to wait for the daemon to serve.

    Agents of the tree that did not start, and config entries the persisted tree overrode,
    are in the returned node's ``start_report`` (a `StartReport`; also in the node log).

    Raises:
        NodeAlreadyRunning: a node already runs on ``dir``.
        ConfigError: a bad config file or dir (nothing was started).
        SpawnError: strict mode, and agents of the tree did not start (the node stopped).
    """
    timeout = check_timeout(timeout)
    paths = NodePaths.of(dir if dir is not None else default_dir())
    paths.check_length()
    deadline = time.monotonic() + 5.0
    while _node_locked(paths):
        pid = 0
        try:
            pid = read_node_info(paths).pid
        except NodeNotRunning:
            pass
        # A node that was just killed can hold its lock a few ms past its death while the
        # kernel tears it down: wait for that, not for a live node.
        if _alive(pid) or time.monotonic() > deadline:
            raise NodeAlreadyRunning(paths.dir, pid)
        time.sleep(0.01)
    make_dir(paths)
    # Before anything is created in it: a dir others can write may hold planted links.
    check_dir_safe(paths.dir)
    cmd = [sys.executable, "-m", "beamish.runtime", "node", "start", "--foreground",
           "--dir", paths.dir]
    if config is not None:
        cmd += ["--config", os.path.abspath(config)]
    if durability is not None:
        cmd += ["--durability", durability]
    if strict:
        cmd += ["--strict"]
    r, w = os.pipe()
    cmd += ["--ready-fd", str(w)]
    # $BEAMISH_SYS_PATH (dirs to import agent classes from) goes before this process's path.
    extra = [os.path.abspath(p) for p in os.environ.get("BEAMISH_SYS_PATH", "").split(os.pathsep)
             if p]
    env = dict(os.environ, BEAMISH_SYS_PATH=os.pathsep.join(extra + _abs_sys_path()))
    try:
        log = open(open_log(paths), "ab")  # noqa: SIM115 - closed below, once Popen has it
    except ConfigError:
        os.close(r)
        os.close(w)
        raise
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(w,), env=env, start_new_session=True)
    finally:
        os.close(w)
        log.close()
    _daemons[proc.pid] = proc
    line = b""
    deadline = time.monotonic() + timeout
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(r, left):
                raise NodeNotRunning(f"the node on {paths.dir!r} did not start within "
                                     f"{timeout:g} s; see {paths.log}")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            line += chunk
    except BaseException:
        # Whatever went wrong while we waited (a timeout, Ctrl-C, a bug), the daemon must not
        # outlive a start_node that did not return it.
        proc.kill()
        proc.wait(10)
        _daemons.pop(proc.pid, None)
        raise
    finally:
        os.close(r)
    text = line.decode(errors="replace").strip()
    kind, _, message = text.partition("\t")
    if kind == "ok":
        node = connect(paths.dir)
        if message:
            node.start_report = StartReport.from_json(message)
        return node
    if kind == "failed":  # strict: agents of the tree did not start; the node stops
        report = StartReport.from_json(message)
        proc.wait(START_TIMEOUT_S)
        _daemons.pop(proc.pid, None)
        names = ", ".join(f.name for f in report.failures)
        raise SpawnError(names, "did not start, so the strict node stopped:\n  "
                         + "\n  ".join(report.lines()))
    proc.wait(10)
    _daemons.pop(proc.pid, None)
    if kind in ERRORS and message:
        if kind == "NodeAlreadyRunning":
            raise NodeAlreadyRunning(paths.dir, 0)
        raise ERRORS[kind](message)
    raise NodeNotRunning(f"the node on {paths.dir!r} failed to start "
                         f"(exit {proc.returncode}); see {paths.log}")


def _open(dir: str | os.PathLike[str] | None) -> Node:
    """A `Node` for the node running on ``dir``, not yet pinged.

    Raises:
        NodeNotRunning: none runs there.
    """
    paths = NodePaths.of(dir if dir is not None else default_dir())
    info = read_node_info(paths)
    pid = info.pid
    if not pid or not psutil.pid_exists(pid) or not _node_locked(paths):
        raise NodeNotRunning(f"no node runs on {paths.dir!r} (a stale node.json names pid "
                             f"{pid}); start one with `beamish node start --dir {paths.dir}`")
    return Node(paths, info)


def connect(dir: str | os.PathLike[str] | None = None, timeout: float = 5.0, *,
            keys: str | os.PathLike[str] | None = None,
            server_key: str | None = None) -> Node:
    """Connect to the node running on ``dir``; or, given ``"tcp://HOST:PORT"``, to a
    node's TCP front door with the CURVE keys in ``keys`` (default ``$BEAMISH_KEYS``),
    trusting the node key ``server_key`` names in ``keys/authorized/`` (default: the only
    one there). The result is the same `Node` API (see docs/remote.md).

    Raises:
        NodeNotRunning: none runs there (or, over TCP, none answered).
        ConfigError: over TCP, a bad address or keys dir.
    """
    if isinstance(dir, str) and dir.startswith("tcp://"):
        if not remote_connect:  # `beamish.runtime` imports it lazily: maybe not yet
            from . import remote  # noqa: F401
        return remote_connect[0](dir, keys, server_key, check_timeout(timeout))
    node = _open(dir)
    try:
        node._control.request("ping", timeout=timeout)
    except BaseException:
        node.close()
        raise
    return node


class AgentRef:
    """A handle on one agent, by name. Cheap; safe to share across threads.

    Attributes:
        name: the agent's name.
        node: its `Node`.
    """

    def __init__(self, node: Node, name: str) -> None:
        self.node = node
        self.name = name

    def call(self, msg: Any, timeout: float = 5.0) -> Any:
        """Send a request and return the agent's reply.

        Raises:
            CallTimeout: no reply within ``timeout`` seconds.
            AgentNotFound: no live or restarting agent has this name.
            RemoteError: the handler failed on this message.
            MessageTooLarge: over the node's ``max_message_bytes``.
        """
        return self.node.call(self.name, msg, timeout)

    def cast(self, msg: Any) -> None:
        """Send ``msg`` without waiting for it to be handled; returns once it is durably in
        the agent's mailbox. Raises as `call` does (except `CallTimeout`/`RemoteError`)."""
        self.node.cast(self.name, msg)

    def cast_many(self, msgs: Iterable[Any]) -> None:
        """Cast each of ``msgs`` to this agent, in list order, in one commit; returns once
        all are durably in its mailbox. Raises as `Node.cast_many` does."""
        self.node.cast_many([(self.name, m) for m in _message_list(msgs)])

    async def acall(self, msg: Any, timeout: float = 5.0) -> Any:
        """`call` for asyncio code: no thread waits for the reply (see `Node.acall`)."""
        return await self.node.acall(self.name, msg, timeout)

    async def acast(self, msg: Any) -> None:
        """`cast` for asyncio code: returns once the message is committed."""
        await self.node.acast(self.name, msg)

    async def acast_many(self, msgs: Iterable[Any]) -> None:
        """`cast_many` for asyncio code."""
        await self.node.acast_many([(self.name, m) for m in _message_list(msgs)])

    def info(self) -> AgentInfo:
        """Return `Node.info` of this agent."""
        return self.node.info(self.name)

    def stop(self) -> None:
        """`Node.stop` this agent."""
        self.node.stop(self.name)

    def sleep(self) -> None:
        """`Node.sleep` this agent."""
        self.node.sleep(self.name)

    def __repr__(self) -> str:
        return f"AgentRef({self.name!r})"


def _message_list(msgs: Iterable[Any]) -> Iterable[Any]:
    """``msgs`` of `AgentRef.cast_many`, checked to be a list of messages."""
    if isinstance(msgs, (str, bytes, dict)) or not isinstance(msgs, Iterable):
        raise ConfigError(f"cast_many takes a list of messages, not {type(msgs).__name__}")
    return msgs


class Node:
    """A connection to a running node. Get one from `start_node` or `connect`.

    Attributes:
        dir: the node dir.
        pid: the daemon's pid.
    """

    def __init__(self, paths: NodePaths, info: NodeFile) -> None:
        self.paths = paths
        self.dir = paths.dir
        self.pid = info.pid
        self._store_path = info.store
        self._store = _acquire_store(self._store_path, info.durability)
        self._messenger = Messenger(paths, self._store, info.max_message_bytes)
        pid = self.pid
        self._control = ControlClient(paths, self._messenger.ctx, alive=lambda: _alive(pid))
        self._clustered: bool | None = None  # whether the node is in a cluster (asked once)
        # What `start_node` did not apply as the tree declares it (set by start_node).
        self.start_report = StartReport()
        self._closed = False
        # Lazy agents this client registered whose `spawned` hint the node has not taken
        # yet (its queue was full): sent with the next one, in one datagram.
        self._unannounced: list[str] = []
        self._announce_lock = threading.Lock()
        self._hint_sock: socket.socket | None = None  # their datagrams' socket, kept
        # What asyncio code uses, one per event loop (a zmq.asyncio socket serves one loop).
        self._links: dict[asyncio.AbstractEventLoop, _AsyncLink] = {}
        self._links_lock = threading.Lock()

    # -- messages ------------------------------------------------------------------------------
    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call agent ``name`` (see `AgentRef.call`)."""
        try:
            return self._messenger.call(name, msg, timeout)
        except AgentNotFound:
            if not self._replicated(name):
                raise
        return self._control.request("call", {"name": name, "msg": msg, "timeout": timeout},
                                     timeout=timeout + 5.0)

    def cast(self, name: str, msg: Any) -> None:
        """Cast to agent ``name`` (see `AgentRef.cast`)."""
        try:
            self._messenger.cast(name, msg)
        except AgentNotFound:
            if not self._replicated(name):
                raise
            self._control.request("cast", {"name": name, "msg": msg})

    def _replicated(self, name: str) -> bool:
        """Whether ``name``, which is none of this node's own agents, may be a replicated
        one: the node is in a cluster (asked once), and it has no record of ``name``.
        Their messages go through the node, to the cluster's PostgreSQL."""
        try:
            clustered = self._in_cluster()
        except NodeNotRunning:
            return False  # the node is gone: the lookup's own AgentNotFound stands
        return clustered and self._store.read(lambda t: t.get_agent(name)) is None

    def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """Cast each ``(name, msg)`` of ``items`` in one commit: each agent gets its
        messages in list order (and one doorbell for them all); returns once all are
        durable. All or nothing: every item is checked before anything is written.

        Raises:
            AgentNotFound: a name that is not a live or restarting agent (none is sent).
            MessageTooLarge, BadMessage: a message that cannot be sent, naming its item
                (none is sent).
            ConfigError: not a list of ``(name, msg)`` pairs, or a name is not valid.
        """
        items = list(items)
        try:
            self._messenger.cast_many(items)
        except AgentNotFound as exc:
            if not self._replicated(exc.name):
                raise
            self._control.request("cast_many", {"items": [list(i) for i in items]})

    async def acall(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """`call` for asyncio code. The message is committed to the agent's mailbox (with
        the other messages this event loop sends in the same turn) before the agent is
        rung; the reply is awaited without a thread, so any number of calls may wait at
        once. Cancelled before the commit, the message is not sent; after it, the agent
        still handles it (its reply is dropped).

        Raises:
            As `call`; NodeNotRunning: this connection was closed (before or meanwhile).
        """
        try:
            return await self._link().messenger.call(name, msg, timeout)
        except AgentNotFound:
            if not self._replicated(name):
                raise
        return await self._arequest("call", {"name": name, "msg": msg, "timeout": timeout},
                                    timeout + 5.0)

    async def acast(self, name: str, msg: Any) -> None:
        """`cast` for asyncio code: returns once the message is committed."""
        try:
            await self._link().messenger.cast(name, msg)
        except AgentNotFound:
            if not self._replicated(name):
                raise
            await self._arequest("cast", {"name": name, "msg": msg})

    async def acast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`cast_many` for asyncio code (its one commit runs inline)."""
        items = list(items)
        try:
            await self._link().messenger.cast_many(items)
        except AgentNotFound as exc:
            if not self._replicated(exc.name):
                raise
            await self._arequest("cast_many", {"items": [list(i) for i in items]})

    def _link(self) -> _AsyncLink:
        """The running event loop's `_AsyncLink` (made on first use)."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is not None:
            return link
        with self._links_lock:
            if self._closed:
                raise closed_error(self.dir)
            for old in [lp for lp in self._links if lp.is_closed()]:
                self._links.pop(old).close()  # asyncio.run() of an earlier call ended
            pid = self.pid
            link = self._links[loop] = _AsyncLink(self._messenger, self.paths,
                                                  lambda: _alive(pid))
        return link

    def ref(self, name: str) -> AgentRef:
        """Return an `AgentRef` for ``name`` (not checked until used)."""
        return AgentRef(self, name)

    def _message_limit(self) -> int:
        """The node's ``max_message_bytes``."""
        limit: int = self._messenger.limit
        return limit

    async def _arequest(self, op: str, args: Any = None, timeout: float = 30.0) -> Any:
        """A control request from asyncio code (`AsyncNode`'s)."""
        return await self._link().control.request(op, args, timeout=timeout)

    def transport(self) -> TransportStatus | None:
        """The node's TCP front door (``[cluster] listen``): its address, public key and
        counts of connections, refusals and requests; None if it does not listen."""
        value = self._control.request("transport")
        return None if value is None else TransportStatus.from_wire(value)

    def _in_cluster(self) -> bool:
        """Whether the node is in a cluster (asked once: it stays so until it restarts);
        a spawn there goes through the node, which routes its name cluster-wide."""
        if self._clustered is None:
            self._clustered = self.cluster() is not None
        return self._clustered

    def cluster(self) -> ClusterStatus | None:
        """The node's cluster state (``[cluster] postgres``): its name in the cluster, its
        incarnation, whether it is fenced, the shards it owns with their epochs, and how
        many replicated agents run on it; None if it is not in a cluster."""
        value = self._control.request("cluster")
        return None if value is None else ClusterStatus.from_wire(value)

    # -- the tree ------------------------------------------------------------------------------
    def spawn(self, cls: type[Agent] | str, args: UserData | None = None,
              name: str | None = None, supervisor: str = "root", restart: str = "permanent",
              shutdown: float | str = 5.0, limits: Limits | None = None,
              timeout: float = 30.0, idle_timeout: float | None = None,
              lazy: bool = False, durability: str | None = None,
              node: str | None = None) -> AgentRef:
        """Start an agent in its own process and return once its ``init`` ran (with
        ``lazy=True``: once it is registered, asleep; see docs/sessions.md).

        Args:
            cls: the Agent class, or its path ``"package.module:Class"``.
            args: passed to ``init`` (msgpack data).
            name: a unique name (default: derived from the class).
            supervisor: the supervisor to start it under.
            restart: "permanent", "transient" or "temporary".
            shutdown: seconds to wait for an orderly stop, "brutal_kill" or "infinity".
            limits: resource `Limits`.
            timeout: seconds to wait for the node.
            idle_timeout: seconds without a message after which it falls asleep (its
                process exits; its next message wakes it); None: never.
            lazy: register it asleep (status ``sleeping``, no process, ``init`` not run
                yet): its first message starts it.
            durability: None (the node's own store, ``[node] durability``) or
                ``"replicated"``: its state and mailbox in the cluster's PostgreSQL, run by
                the node that owns its name's shard, taken over when that node dies (a
                node in a cluster; see docs/cluster.md).
            node: in a cluster, the node to run it on (its LMDB there; the spawn is
                forwarded to that node). None: this node, or its supervisor's node.

        Raises:
            SpawnError: the name is in use, the class cannot be imported, or init failed.
            ConfigError: an argument is invalid.
            BadMessage, MessageTooLarge: ``args`` cannot be sent (named in the error).
        """
        request = spawn_request(cls, args, name, supervisor, restart, shutdown, limits, timeout,
                                idle_timeout, lazy, max_bytes=self._messenger.limit,
                                durability=durability)
        if lazy and durability is None and node is None and not self._in_cluster():
            # A record write, done here in one transaction that checks what the node's
            # spawn checks: no round trip (the node hears of it to emit `spawned`).
            registered, marked = register_lazy(self._messenger.store, request)
            self._announce(registered)
            if marked:
                hint_node(self.paths)
            return AgentRef(self, registered)
        value = self._control.request("spawn", pinned_spawn(request, node),
                                      timeout=timeout + 5)
        return AgentRef(self, str(value["name"]))

    def add_supervisor(self, name: str, strategy: str = "one_for_one", max_restarts: int = 3,
                       max_seconds: float = 5.0, parent: str = "root",
                       restart: str = "permanent",
                       backoff: tuple[float, float] | None = None,
                       child_restart: str = "permanent",
                       child_shutdown: float | str = 5.0) -> None:
        """Add a supervisor under ``parent``; spawn agents into it with ``supervisor=name``.

        Args:
            strategy: one_for_one, one_for_all, rest_for_one or simple_one_for_one (many
                children of one template, added at run time with `spawn`).
            max_restarts, max_seconds: the restart intensity.
            restart: this supervisor's own restart type under its parent.
            backoff: ``(min_s, max_s)``: delay restarts exponentially, with jitter.
            child_restart, child_shutdown: for simple_one_for_one, the template every
                child gets (a spawn's own restart/shutdown are then ignored).

        Raises:
            ConfigError: a bad argument (named), or a name in use.
        """
        self._control.request("add_supervisor", _supervisor_args(
            name, strategy, max_restarts, max_seconds, parent, restart, backoff,
            child_restart, child_shutdown))

    def stop(self, name: str, timeout: float = 120.0) -> None:
        """Stop an agent in order (``terminate``, then exit within its shutdown time). It
        leaves the tree; its state and mailbox stay, so spawning the name again resumes it.

        Raises:
            AgentNotFound: no agent has this name.
        """
        self._control.request("stop", {"name": check_lookup_name(name)}, timeout=timeout)

    def sleep(self, name: str, timeout: float = 120.0) -> None:
        """Put agent ``name`` to sleep: ``terminate("sleep", state)`` runs, its process
        exits, its status is ``sleeping``; its next message or timer wakes it (no
        ``init``, no ``recover``). Not an exit: nothing counted, no Down/Exit. Returns once
        it sleeps (at once if it sleeps already).

        Raises:
            AgentNotFound: no such agent, or it is not running; or its process exited
                (a crash, a kill) before it fell asleep, which its supervisor handles as
                any crash; or it was stopped meanwhile.
        """
        self._control.request("sleep", {"name": check_lookup_name(name)}, timeout=timeout)

    def upgrade(self, modules: Iterable[str] | None = None,
                config: str | os.PathLike[str] | None = None,
                timeout: float = 600.0) -> UpgradeReport:
        """Hot code upgrade: load the current code of the agents' modules in a fresh zygote
        and move the running agents of ``modules`` (default: every agent) onto it, one at
        a time, per supervisor in start order: each finishes its current message, stops,
        and starts again from its committed state on the new code, running
        ``code_change(old_version, state)`` when its class's ``version`` changed. No
        message is lost and no call fails (callers wait). Sleeping agents wake on the
        new code, and new spawns use it. ``config``: a config file whose ``[[agent]]``
        entries' changes (args, limits, restart, shutdown, idle_timeout) are applied to
        their agents as they move (those agents move whatever their module). See
        docs/upgrade.md.

        Returns:
            the `UpgradeReport` (moved, failed, skipped).

        Raises:
            UpgradeImportError: a module fails to import: nothing moved.
            UpgradeFailed: an agent's new code failed to start (its ``code_change`` or
                ``init`` raised): it is back on its old code, state untouched, and the
                agents not reached stay on the old code (``.report`` says which).
        """
        return _upgrade_report(self._control.request(
            "upgrade", _upgrade_args(modules, config), timeout=timeout))

    def delete(self, name: str, timeout: float = 120.0) -> None:
        """Stop the agent if it runs, and erase its state, mailbox and dead letters."""
        self._control.request("delete", {"name": check_lookup_name(name)}, timeout=timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Restart an agent (or supervisor) marked failed."""
        self._control.request("restart", {"name": check_lookup_name(name)}, timeout=timeout)

    def info(self, name: str) -> AgentInfo:
        """Return an `AgentInfo` snapshot of agent ``name``.

        Raises:
            AgentNotFound: no agent has this name.
        """
        return AgentInfo.from_wire(
            self._control.request("info", {"name": check_lookup_name(name)}))

    def ps(self, status: str | None = None, supervisor: str | None = None,
           limit: int | None = None, after: str | None = None) -> list[AgentInfo]:
        """Return `AgentInfo` for the agents, in name order: those with ``status`` (an
        `AgentStatus` value, e.g. ``"running"``) and under ``supervisor`` when given, whose
        name sorts after ``after``, at most ``limit`` of them (all when None). The node
        filters and pages: a page costs its own rows, not the whole registry.
        `ps_page` also says how many more there are.

        Raises:
            ConfigError: an unknown status (the message lists the valid ones) or supervisor,
                or a ``limit`` below 1.
            PartialListing: on a cluster node, its PostgreSQL could not be read: its own
                agents are in the error's ``rows`` (``ps_page`` marks the page instead).
        """
        return self.ps_page(status, supervisor, limit, after).complete()

    def ps_page(self, status: str | None = None, supervisor: str | None = None,
                limit: int | None = None, after: str | None = None) -> PsPage:
        """`ps`, with how many more agents match after the page and the cursor for the
        next one: ``page = node.ps_page(limit=1000)``, then
        ``node.ps_page(limit=1000, after=page.after)`` while ``page.more``.

        Raises:
            ConfigError: as `ps`.
        """
        return PsPage.from_wire(self._control.request(
            "ps_page", _ps_args(status, supervisor, limit, after)))

    def tree(self, limit: int | None = None) -> TreeNode:
        """Return the supervision tree: nested dicts with name, kind, status, pid, restarts
        (`TreeNode`). With ``limit``, each supervisor lists at most ``limit`` agents (its
        child supervisors always); ``more`` and ``more_by_status`` count the rest.

        Raises:
            ConfigError: a ``limit`` below 1.
        """
        value: TreeNode = self._control.request("tree", {"limit": limit})
        return value

    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: Literal[False] = False) -> list[Event]: ...
    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: Literal[True]) -> Iterator[Event]: ...
    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: bool) -> list[Event] | Iterator[Event]: ...

    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: bool = False
               ) -> list[Event] | Iterator[Event]:
        """Return the `Event` s of the node's log that pass the filters, oldest first (the
        log survives node restarts and keeps the latest ``[node] events_kept``); with
        ``follow=True``, an iterator that yields them and then waits for new ones.

        Args:
            since: only the events at or after this time: a ``datetime`` (naive: local
                time), a ``timedelta`` (that long ago), or a string: an ISO time
                (``"2026-12-07T16:05"``), a time of day (``"16:05"``) or a duration ago
                (``"10m"``, ``"2h"``, ``"1d"``, ``"1h30m"``).
            name: only the events about this agent or supervisor (`Event.name`).
            kind: only the events of this kind, or of one of these kinds (``"exited"``,
                ``["exited", "restarted"]``, ``"exited,restarted"``).
            after: only the events after this ``seq`` (to continue from the last one
                read; `events_page` pages).
            limit: at most this many, the earliest that match (None: all; not with
                ``follow``).
            follow: yield the matching events, then wait for new ones, until the node
                stops (`NodeNotRunning`).

        Raises:
            ConfigError: a bad filter (an unknown kind, a time none of those forms), say
                which and what is expected.
        """
        request = self._events_request(since, name, kind, after)
        if follow:
            if limit is not None:
                raise ConfigError(f"limit={limit!r}: a follower takes every event; pass "
                                  "limit=None with follow=True")
            return self._follow(request, after)
        if limit is not None:
            _check_page_limit(limit)
        found: list[Event] = []
        while True:
            size = EVENTS_PAGE if limit is None else min(EVENTS_PAGE, limit - len(found))
            page = EventPage.from_wire(self._control.request(
                "events", {**request, "after": after, "limit": size}))
            found += page.events
            if not page.more or (limit is not None and len(found) >= limit):
                return found
            after = page.after

    def events_page(self, *, since: SinceArg | None = None, name: str | None = None,
                    kind: str | Iterable[str] | None = None, after: int = 0,
                    limit: int = EVENTS_PAGE) -> EventPage:
        """Return one page of `events`: at most ``limit`` (and 1000) matching events
        after seq ``after``, oldest first, whether ``more`` follow, and the ``after`` of
        the next page (`EventPage`). The filters are those of `events`.

        Raises:
            ConfigError: as `events`, or a ``limit`` below 1.
        """
        request = self._events_request(since, name, kind, after)
        _check_page_limit(limit)
        return EventPage.from_wire(self._control.request(
            "events", {**request, "after": after, "limit": limit}))

    def _events_request(self, since: SinceArg | None, name: str | None,
                        kind: str | Iterable[str] | None, after: int) -> dict[str, Any]:
        """The filters of an ``events`` request, checked here (the node checks them too)."""
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ConfigError(f"after={after!r}: expected an event seq, 0 or more (the "
                              "seq of the last event read)")
        if kind is not None and not isinstance(kind, str):
            kind = list(kind) if isinstance(kind, Iterable) else kind
        flt = EventFilter(None if since is None else since_time(since, time.time()),
                          None if name is None else check_lookup_name(name),
                          check_kinds(kind))
        return flt.to_wire()

    def _follow(self, request: dict[str, Any], after: int) -> Iterator[Event]:
        while True:
            page = EventPage.from_wire(self._control.request(
                "events", {**request, "after": after, "limit": EVENTS_PAGE, "wait": 25.0},
                timeout=40.0))
            after = max(after, page.after)
            yield from page.events

    @overload
    def logs(self, name: str, n: int = 100, follow: Literal[False] = False) -> list[str]: ...
    @overload
    def logs(self, name: str, n: int = 100, *, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, name: str, n: int = 100, follow: bool = False
             ) -> list[str] | Iterator[str]:
        """The last ``n`` lines of agent ``name``'s log (``DIR/logs/NAME.log``: its stdout,
        stderr and ``logging`` records, each line timestamped), oldest first; with
        ``follow=True`` an iterator of those lines and then of each new one as it is
        written, across the agent's restarts and the log's rotations (until you stop).

        Raises:
            AgentNotFound: no log and no agent has this name.
            ConfigError: ``n`` is not a count >= 0.
        """
        path = self._log_path(name, n)
        return follow_log(path, n) if follow else last_lines(path, n)

    def _log_path(self, name: str, n: int) -> str:
        """The path of agent ``name``'s log, the arguments of `logs` checked."""
        name = check_lookup_name(name)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"n={n!r}: expected a number of lines >= 0")
        path = self.paths.agent_log(name)
        if not generations(path):
            self.info(name)  # AgentNotFound for a name never seen; else it has no log yet
        return path

    def dead_letters(self, name: str) -> list[DeadLetterInfo]:
        """Return the casts set aside by `Skip` for agent ``name``, with their failures
        (`DeadLetterInfo` dicts)."""
        return _dead_letters(
            self._control.request("dead_letters", {"name": check_lookup_name(name)}))

    def resend_dead_letter(self, name: str, seq: int) -> int:
        """Put dead letter ``seq`` of agent ``name`` back at the end of its mailbox (after
        fixing what made it fail); return its new sequence number.

        Raises:
            AgentNotFound: the agent is not running; ConfigError: no such dead letter.
        """
        return int(self._control.request("resend_dead_letter", {"name": check_lookup_name(name),
                                                                 "seq": seq})["seq"])

    def state(self, name: str) -> AgentState:
        """Agent ``name``'s last committed state (`AgentState`: the state, the class
        version it was committed under, messages handled), read without disturbing the
        agent (a sleeping one stays asleep).

        Raises:
            AgentNotFound: no agent has this name.
        """
        return AgentState.from_wire(
            self._control.request("state", {"name": check_lookup_name(name)}))

    def status(self) -> NodeStatus:
        """The node's pid, dir, uptime and the invalid frames it and its agents dropped."""
        return NodeStatus.from_wire(self._control.request("ping"))

    def stats(self) -> NodeStats:
        """A snapshot of the node's figures (`NodeStats`): its own (memory, uptime,
        dropped frames, events), how many agents have each status (sleeping ones
        included), and per awake agent its mailbox depth, messages handled, handler latency
        histogram, restarts by failure kind, memory (RSS, USS), CPU seconds and dead
        letters: what ``beamish top`` shows and ``/metrics`` serves (docs/metrics.md)."""
        return NodeStats.from_wire(self._control.request("stats"))

    def shutdown(self, timeout: float = 300.0) -> None:
        """Stop every agent in reverse start order, then the daemon; return once it exited.

        The tree, states and mailboxes persist: `start_node` on the dir brings them back.

        Raises:
            ConfigError: ``timeout`` is not a finite number > 0 (nothing was stopped).
        """
        timeout = check_timeout(timeout)
        try:
            self._control.request("shutdown", timeout=10.0)
        except NodeNotRunning:
            pass
        self._wait_gone(timeout)
        self.close()

    def drain(self, timeout: float = 120.0,
              on_progress: Callable[[DrainStatus], None] | None = None) -> DrainStatus:
        """Hand this cluster node's replicated agents to the others, shard by shard, then
        stop it (``beamish node drain``; docs/cluster.md): no acknowledged message is lost
        and calls in flight are answered by the new owners. Blocks until the node stopped;
        ``on_progress`` is called with each change of its `DrainStatus`; closes this
        connection.

        Raises:
            ConfigError: the node is not in a cluster, or ``timeout`` is not > 0.
            DrainIncomplete: shards were left after ``timeout`` s, or no other node could
                take them for 10 s (the node stopped all the same, releasing them as it
                left).
        """
        st = drain_node(lambda t: self._control.request("drain", {"timeout": t},
                                                        timeout=DRAIN_REQUEST_S),
                        self.dir, timeout, on_progress)
        self._wait_gone(DRAIN_STOP_WAIT_S)
        self.close()
        if st.phase is DrainPhase.INCOMPLETE:
            raise DrainIncomplete(st.node, st.shards_left, st.timeout, st.stalled)
        return st

    def _wait_gone(self, timeout: float) -> None:
        proc = _daemons.pop(self.pid, None)
        if proc is not None:
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                raise NodeNotRunning(f"the node (pid {self.pid}) did not exit within "
                                     f"{timeout:g} s") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _exited(self.pid):
                return
            time.sleep(0.02)
        raise NodeNotRunning(f"the node (pid {self.pid}) did not exit within {timeout:g} s")

    def _announce(self, name: str | None, wait: float = 0.0) -> None:
        """Hint the node of lazy agents registered here, so it emits their ``spawned``
        events: batched in one datagram while the node is behind (best effort)."""
        with self._announce_lock:
            if name is not None:
                self._unannounced.append(name)
            if self._hint_sock is None:
                self._hint_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            while self._unannounced:
                batch = spawned_hints(self._unannounced)
                if not hint_node(self.paths, batch[0], wait=wait, sock=self._hint_sock):
                    return  # its queue is full: sent with the next registration
                del self._unannounced[:batch[1]]

    def close(self) -> None:
        """Close this connection (the node keeps running)."""
        if self._closed:
            return
        self._announce(None, wait=1.0)
        with self._announce_lock:
            if self._hint_sock is not None:
                self._hint_sock.close()
                self._hint_sock = None
        with self._links_lock:
            self._closed = True
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()  # before the messenger's context ends: it waits for their sockets
        self._control.close()
        self._messenger.close()
        _release_store(self._store_path)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Node(dir={self.dir!r}, pid={self.pid})"


def _check_page_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"limit={limit!r}: expected a count of 1 or more")


@dataclass(frozen=True, slots=True)
class PsPage:
    """One page of `Node.ps_page`.

    Attributes:
        rows: the agents of the page, in name order.
        more: how many more agents match after it (0: it is the last page).
        after: the next page's cursor (pass it as ``after``), None on the last page.
        unavailable: on a cluster node whose PostgreSQL could not be read, why the
            cluster's replicated agents are missing: the page holds the node's own
            agents only (None: the page is complete).
    """

    rows: list[AgentInfo]
    more: int
    after: str | None
    unavailable: str | None = None

    @classmethod
    def from_wire(cls, value: Any) -> PsPage:
        """Read the node's answer to ``ps_page``."""
        return cls([AgentInfo.from_wire(d) for d in value["rows"]], int(value["more"]),
                   value["after"], value.get("unavailable"))

    def complete(self) -> list[AgentInfo]:
        """The rows, if the page is complete.

        Raises:
            PartialListing: the cluster's replicated agents could not be read (the
                node's own agents are in its ``rows``).
        """
        if self.unavailable is not None:
            raise PartialListing(self.rows, self.unavailable)
        return self.rows


def _ps_args(status: str | None, supervisor: str | None, limit: int | None,
             after: str | None) -> dict[str, object]:
    """The arguments of the ``ps_page`` request."""
    return {"status": None if status is None else str(status), "supervisor": supervisor,
            "limit": limit, "after": after}


def _dead_letters(entries: Any) -> list[DeadLetterInfo]:
    """Read the node's answer to ``dead_letters``."""
    return [DeadLetterInfo(seq=e["seq"], kind=e["kind"], msg=e["msg"],
                           failure=Failure.from_dict(e["failure"]), time=e["time"])
            for e in entries]


def _upgrade_args(modules: Iterable[str] | None,
                  config: str | os.PathLike[str] | None) -> dict[str, Any]:
    """An upgrade request's arguments; a config file is read and checked here (its
    errors name the file), and its tree sent."""
    args: dict[str, Any] = {"modules": list(modules or [])}
    if config is not None:
        cfg = load_config(os.fspath(config))
        args["config"] = {
            "supervisor": [s.model_dump(by_alias=True, mode="json") for s in cfg.supervisor],
            "agent": [a.model_dump(by_alias=True, mode="json") for a in cfg.agent]}
    return args


def _upgrade_report(value: Any) -> UpgradeReport:
    """Read an upgrade's answer; raise when its rollout stopped (`Node.upgrade`)."""
    report = UpgradeReport.from_wire(value)
    if report.import_failures:
        raise UpgradeImportError(report)
    if report.failed:
        raise UpgradeFailed(report)
    return report


def _supervisor_args(name: str, strategy: str, max_restarts: int, max_seconds: float,
                     parent: str, restart: str, backoff: tuple[float, float] | None,
                     child_restart: str, child_shutdown: float | str) -> dict[str, object]:
    """The arguments of the ``add_supervisor`` request (names checked)."""
    check_name(name)
    check_name(parent, "parent")
    return {"name": name, "strategy": strategy, "max_restarts": max_restarts,
            "max_seconds": max_seconds, "parent": parent, "restart": restart,
            "backoff": list(backoff) if backoff else None, "child_restart": child_restart,
            "child_shutdown": child_shutdown}


class _AsyncLink:
    """What one event loop uses to reach the node: messages (`AsyncMessenger`) and control
    requests (`AsyncControlClient`), both on zmq.asyncio over the `Node`'s context."""

    def __init__(self, messenger: Messenger, paths: NodePaths,
                 alive: Callable[[], bool]) -> None:
        self.messenger = AsyncMessenger(messenger)
        self.control = AsyncControlClient(paths, self.messenger.ctx, alive=alive)

    def close(self) -> None:
        self.control.close()
        self.messenger.close()


class AsyncAgentRef:
    """`AgentRef` for asyncio code: a handle on one agent, by name, whose methods are
    coroutines. Get one from `AsyncNode.spawn` or `AsyncNode.ref`.

    Attributes:
        name: the agent's name.
        node: its `AsyncNode`.
    """

    def __init__(self, node: AsyncNode, name: str) -> None:
        self.node = node
        self.name = name

    async def call(self, msg: Any, timeout: float = 5.0) -> Any:
        """Send a request and return the agent's reply (see `Node.acall`).

        Raises:
            CallTimeout, AgentNotFound, RemoteError, MessageTooLarge, as `AgentRef.call`.
        """
        return await self.node.call(self.name, msg, timeout)

    async def cast(self, msg: Any) -> None:
        """Cast ``msg``; returns once it is durably in the agent's mailbox."""
        await self.node.cast(self.name, msg)

    async def cast_many(self, msgs: Iterable[Any]) -> None:
        """`AgentRef.cast_many` as a coroutine."""
        await self.node.cast_many([(self.name, m) for m in _message_list(msgs)])

    async def info(self) -> AgentInfo:
        """`AsyncNode.info` of this agent."""
        return await self.node.info(self.name)

    async def stop(self) -> None:
        """`AsyncNode.stop` this agent."""
        await self.node.stop(self.name)

    async def sleep(self) -> None:
        """`AsyncNode.sleep` this agent."""
        await self.node.sleep(self.name)

    def __repr__(self) -> str:
        return f"AsyncAgentRef({self.name!r})"


class AsyncNode:
    """A connection to a running node for asyncio code: the `Node` API as coroutines, on
    zmq.asyncio, without a thread per call (any number of calls and requests may wait at
    once). Use it from one event loop; `Node.acall` and friends serve any loop.

    ``await AsyncNode.connect(dir)`` connects (`close` then closes the connection);
    ``AsyncNode(node)`` wraps a `Node` you hold (`close` closes that `Node`).

    Attributes:
        node: the underlying `Node` (its synchronous methods work too).
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    @classmethod
    async def connect(cls, dir: str | os.PathLike[str] | None = None,
                      timeout: float = 5.0, *, keys: str | os.PathLike[str] | None = None,
                      server_key: str | None = None) -> AsyncNode:
        """Connect to the node running on ``dir``, or at ``"tcp://HOST:PORT"`` with
        ``keys`` (see `connect`).

        Raises:
            NodeNotRunning: none runs there.
        """
        if isinstance(dir, str) and dir.startswith("tcp://"):
            return cls(await asyncio.to_thread(connect, dir, timeout, keys=keys,
                                               server_key=server_key))
        node = _open(dir)
        try:
            await node._link().control.request("ping", timeout=timeout)
        except BaseException:
            node.close()
            raise
        return cls(node)

    @property
    def dir(self) -> str:
        """The node dir."""
        return self.node.dir

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        return self.node.pid

    async def _request(self, op: str, args: Any = None, timeout: float = 30.0) -> Any:
        return await self.node._arequest(op, args, timeout)

    # -- messages ------------------------------------------------------------------------------
    async def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call agent ``name`` (see `Node.acall`)."""
        return await self.node.acall(name, msg, timeout)

    async def cast(self, name: str, msg: Any) -> None:
        """Cast to agent ``name``; returns once the message is committed."""
        await self.node.acast(name, msg)

    async def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`Node.cast_many` as a coroutine."""
        await self.node.acast_many(items)

    def ref(self, name: str) -> AsyncAgentRef:
        """Return an `AsyncAgentRef` for ``name`` (not checked until used)."""
        return AsyncAgentRef(self, name)

    # -- the tree ------------------------------------------------------------------------------
    async def spawn(self, cls: type[Agent] | str, args: UserData | None = None,
                    name: str | None = None, supervisor: str = "root",
                    restart: str = "permanent", shutdown: float | str = 5.0,
                    limits: Limits | None = None, timeout: float = 30.0,
                    idle_timeout: float | None = None, lazy: bool = False,
                    durability: str | None = None,
                    node: str | None = None) -> AsyncAgentRef:
        """`Node.spawn` as a coroutine (same arguments and errors); returns an
        `AsyncAgentRef`."""
        if lazy and durability is None and node is None:  # one short transaction, a datagram
            ref = self.node.spawn(cls, args, name, supervisor, restart, shutdown, limits,
                                  timeout, idle_timeout, lazy=True)
            return AsyncAgentRef(self, ref.name)
        request = spawn_request(cls, args, name, supervisor, restart, shutdown, limits, timeout,
                                idle_timeout, lazy, max_bytes=self.node._message_limit(),
                                durability=durability)
        value = await self._request("spawn", pinned_spawn(request, node), timeout=timeout + 5)
        return AsyncAgentRef(self, str(value["name"]))

    async def add_supervisor(self, name: str, strategy: str = "one_for_one",
                             max_restarts: int = 3, max_seconds: float = 5.0,
                             parent: str = "root", restart: str = "permanent",
                             backoff: tuple[float, float] | None = None,
                             child_restart: str = "permanent",
                             child_shutdown: float | str = 5.0) -> None:
        """`Node.add_supervisor` as a coroutine."""
        await self._request("add_supervisor", _supervisor_args(
            name, strategy, max_restarts, max_seconds, parent, restart, backoff,
            child_restart, child_shutdown))

    async def stop(self, name: str, timeout: float = 120.0) -> None:
        """`Node.stop` as a coroutine."""
        await self._request("stop", {"name": check_lookup_name(name)}, timeout)

    async def sleep(self, name: str, timeout: float = 120.0) -> None:
        """`Node.sleep` as a coroutine."""
        await self._request("sleep", {"name": check_lookup_name(name)}, timeout)

    async def upgrade(self, modules: Iterable[str] | None = None,
                      config: str | os.PathLike[str] | None = None,
                      timeout: float = 600.0) -> UpgradeReport:
        """`Node.upgrade` as a coroutine."""
        return _upgrade_report(await self._request(
            "upgrade", _upgrade_args(modules, config), timeout))

    async def delete(self, name: str, timeout: float = 120.0) -> None:
        """`Node.delete` as a coroutine."""
        await self._request("delete", {"name": check_lookup_name(name)}, timeout)

    async def restart(self, name: str, timeout: float = 60.0) -> None:
        """`Node.restart` as a coroutine."""
        await self._request("restart", {"name": check_lookup_name(name)}, timeout)

    async def info(self, name: str) -> AgentInfo:
        """`Node.info` as a coroutine."""
        return AgentInfo.from_wire(await self._request("info",
                                                       {"name": check_lookup_name(name)}))

    async def ps(self, status: str | None = None, supervisor: str | None = None,
                 limit: int | None = None, after: str | None = None) -> list[AgentInfo]:
        """`Node.ps` as a coroutine."""
        return (await self.ps_page(status, supervisor, limit, after)).complete()

    async def ps_page(self, status: str | None = None, supervisor: str | None = None,
                      limit: int | None = None, after: str | None = None) -> PsPage:
        """`Node.ps_page` as a coroutine."""
        return PsPage.from_wire(await self._request(
            "ps_page", _ps_args(status, supervisor, limit, after)))

    async def tree(self, limit: int | None = None) -> TreeNode:
        """`Node.tree` as a coroutine."""
        value: TreeNode = await self._request("tree", {"limit": limit})
        return value

    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None,
               follow: Literal[False] = False) -> Coroutine[Any, Any, list[Event]]: ...
    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: Literal[True]) -> AsyncIterator[Event]: ...
    @overload
    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: bool
               ) -> Coroutine[Any, Any, list[Event]] | AsyncIterator[Event]: ...

    def events(self, *, since: SinceArg | None = None, name: str | None = None,
               kind: str | Iterable[str] | None = None, after: int = 0,
               limit: int | None = None, follow: bool = False
               ) -> Coroutine[Any, Any, list[Event]] | AsyncIterator[Event]:
        """`Node.events`: ``await node.events(...)`` returns the matching `Event` s;
        ``async for event in node.events(follow=True)`` waits for new ones. The filters
        are checked here, before anything is sent (`ConfigError`)."""
        request = self.node._events_request(since, name, kind, after)
        if follow:
            if limit is not None:
                raise ConfigError(f"limit={limit!r}: a follower takes every event; pass "
                                  "limit=None with follow=True")
            return self._follow(request, after)
        if limit is not None:
            _check_page_limit(limit)
        return self._events(request, after, limit)

    async def _events(self, request: dict[str, Any], after: int,
                      limit: int | None) -> list[Event]:
        found: list[Event] = []
        while True:
            size = EVENTS_PAGE if limit is None else min(EVENTS_PAGE, limit - len(found))
            page = EventPage.from_wire(await self._request(
                "events", {**request, "after": after, "limit": size}))
            found += page.events
            if not page.more or (limit is not None and len(found) >= limit):
                return found
            after = page.after

    async def _follow(self, request: dict[str, Any], after: int) -> AsyncIterator[Event]:
        while True:
            page = EventPage.from_wire(await self._request(
                "events", {**request, "after": after, "limit": EVENTS_PAGE, "wait": 25.0},
                40.0))
            after = max(after, page.after)
            for event in page.events:
                yield event

    async def events_page(self, *, since: SinceArg | None = None, name: str | None = None,
                          kind: str | Iterable[str] | None = None, after: int = 0,
                          limit: int = EVENTS_PAGE) -> EventPage:
        """`Node.events_page` as a coroutine."""
        request = self.node._events_request(since, name, kind, after)
        _check_page_limit(limit)
        return EventPage.from_wire(await self._request(
            "events", {**request, "after": after, "limit": limit}))

    @overload
    def logs(self, name: str, n: int = 100,
             follow: Literal[False] = False) -> Coroutine[Any, Any, list[str]]: ...
    @overload
    def logs(self, name: str, n: int = 100, *, follow: Literal[True]) -> AsyncIterator[str]: ...

    def logs(self, name: str, n: int = 100, follow: bool = False
             ) -> Coroutine[Any, Any, list[str]] | AsyncIterator[str]:
        """`Node.logs`: ``await node.logs(name, n)`` returns the last lines;
        ``async for line in node.logs(name, follow=True)`` then waits for new ones. The log
        is a file on this machine, read (and, when following, polled) in a worker thread."""
        if follow:
            return self._follow_log(name, n)
        return asyncio.to_thread(self.node.logs, name, n)

    async def _follow_log(self, name: str, n: int) -> AsyncIterator[str]:
        path = await asyncio.to_thread(self.node._log_path, name, n)
        stop = threading.Event()
        lines = follow_log(path, n, stop=stop)
        try:
            while True:
                # A thread waits for the next line; closing this iterator sets ``stop``,
                # which ends that wait within a poll.
                line = await asyncio.to_thread(next, lines, None)
                if line is None:
                    return
                yield line
        finally:
            stop.set()

    async def stats(self) -> NodeStats:
        """`Node.stats` as a coroutine."""
        return NodeStats.from_wire(await self._request("stats"))

    async def cluster(self) -> ClusterStatus | None:
        """`Node.cluster` as a coroutine."""
        value = await self._request("cluster")
        return None if value is None else ClusterStatus.from_wire(value)

    async def dead_letters(self, name: str) -> list[DeadLetterInfo]:
        """`Node.dead_letters` as a coroutine."""
        return _dead_letters(await self._request("dead_letters",
                                                 {"name": check_lookup_name(name)}))

    async def resend_dead_letter(self, name: str, seq: int) -> int:
        """`Node.resend_dead_letter` as a coroutine."""
        value = await self._request("resend_dead_letter",
                                    {"name": check_lookup_name(name), "seq": seq})
        return int(value["seq"])

    async def state(self, name: str) -> AgentState:
        """`Node.state` as a coroutine."""
        return AgentState.from_wire(await self._request("state",
                                                        {"name": check_lookup_name(name)}))

    async def status(self) -> NodeStatus:
        """`Node.status` as a coroutine."""
        return NodeStatus.from_wire(await self._request("ping"))

    async def transport(self) -> TransportStatus | None:
        """`Node.transport` as a coroutine."""
        value = await self._request("transport")
        return None if value is None else TransportStatus.from_wire(value)

    async def drain(self, timeout: float = 120.0,
                    on_progress: Callable[[DrainStatus], None] | None = None) -> DrainStatus:
        """`Node.drain` as a coroutine (it polls the node from a worker thread)."""
        return await asyncio.to_thread(self.node.drain, timeout, on_progress)

    async def shutdown(self, timeout: float = 300.0) -> None:
        """`Node.shutdown` as a coroutine: stops every agent, then the daemon; returns once
        the daemon has exited, and closes this connection.

        Raises:
            ConfigError: ``timeout`` is not a finite number > 0 (nothing was stopped).
            NodeNotRunning: the daemon did not exit within ``timeout``.
        """
        timeout = check_timeout(timeout)
        try:
            await self._request("shutdown", timeout=10.0)
        except NodeNotRunning:
            pass  # gone already, or going: what follows waits for its exit either way
        pid = self.node.pid
        proc = _daemons.pop(pid, None)
        deadline = time.monotonic() + timeout
        while not (proc.poll() is not None if proc is not None else _exited(pid)):
            if time.monotonic() >= deadline:
                raise NodeNotRunning(f"the node (pid {pid}) did not exit within {timeout:g} s")
            await asyncio.sleep(0.02)
        self.close()

    def close(self) -> None:
        """Close the connection (the node keeps running); calls still waiting end with
        `NodeNotRunning` (their messages stay in the mailboxes)."""
        self.node.close()

    async def __aenter__(self) -> AsyncNode:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncNode(dir={self.dir!r}, pid={self.pid})"


__all__ = ["AgentRef", "AsyncAgentRef", "AsyncNode", "BeamishError", "ConfigError", "Node",
           "connect", "start_node"]
