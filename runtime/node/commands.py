"""The node's control commands, one function each, registered in `COMMANDS`.

Each docstring gives the wire request (a CALL envelope whose payload is
``{"op": ..., **args}``), the value of the ``{"ok": true, "value": ...}`` reply, and the
CLI form. Errors come back as ``{"ok": false, "error": {"type", "message", "attrs"}}`` and
are raised again, with their type, by the client.

The commands get the node as a `NodeView`: the collaborators and settings they use,
which the daemon builds once (they never see the daemon itself).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

import psutil

from beamish.supervisor import (
    AlreadyPresent,
    ChildKind,
    ChildSpec,
    ChildStatus,
    InvalidSpec,
    NotFound,
    Running,
    StartFailed,
    Supervisor,
    SupervisorError,
    SupervisorSnapshot,
    SupervisorSpec,
)

from .._events import EventFilter, EventPage
from .._paths import NodePaths
from .._types import (
    ACCEPTS_MESSAGES,
    IN_TREE,
    OMIT_NONE,
    STARTED_AT_NODE_START,
    AgentInfo,
    AgentStatus,
    DroppedFrames,
    Failure,
    LimitsMap,
    UserData,
    WireMap,
    agent_status,
)
from .._validation import check_lookup_name, check_name, check_timeout
from ..errors import AgentNotFound, AlreadyRunning, ConfigError, SpawnError, StoreUnavailable
from ..messaging.control import CommandArgs
from ..messaging.spawnargs import SpawnRequest, check_shutdown, spawn_request
from ..messaging.wire import ring_frame
from ..store.protocol import Store, Txn
from ..store.records import (
    AgentRecord,
    ChildTemplate,
    Malformed,
    Message,
    Spawning,
    SupervisorRecord,
)
from .cluster_commands import hidden_counts, is_replicated, merge_pages
from .config import ConfigDrift, NodeConfig, agent_drift, parse_config
from .eventlog import PAGE_MAX, EventLog
from .links import LinkTable
from .registry import ROOT, Emit, Registry
from .sessions import Sessions, child_spec
from .spawner import AgentSpawner, Incarnation, Ring
from .stats import NodeStats
from .upgrade import Upgrader

if TYPE_CHECKING:  # psycopg is loaded only by a node in a cluster
    from .cluster_events import ClusterEvents
    from .cluster_links import ClusterLinks
    from .cluster_node import ClusterNode


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the commands use of the node; the daemon builds it once.

    Attributes:
        paths: the node's files.
        config: the node's validated config.
        started_at: when the node started (``time.time()``).
        store: the node's store.
        registry: the agents' records and status transitions.
        spawner: the agents' processes.
        links: the links and monitors between incarnations.
        events: the node's event log (read by ``events``; written through ``emit``).
        emit: records an event.
        ring: rings an agent's inbox.
        root: the root supervisor shell.
        stopping: set while the node stops.
        dropped_frames: counts the invalid frames dropped so far, by socket.
        sessions: puts agents to sleep and wakes them.
        stats: takes a snapshot of the node's figures (``stats.StatsReader.take``).
        upgrader: runs hot code upgrades (``upgrade.Upgrader``).
        cluster: the node's part in its cluster (None: not in one).
        cluster_links: its monitors and links across nodes (None: not in a cluster).
        cluster_events: the cluster's log of replicated agents' events (None: not in one).
    """

    paths: NodePaths
    config: NodeConfig
    started_at: float
    store: Store
    registry: Registry
    spawner: AgentSpawner
    links: LinkTable[Incarnation]
    events: EventLog
    emit: Emit
    ring: Ring
    root: Supervisor
    stopping: threading.Event
    dropped_frames: Callable[[], DroppedFrames]
    sessions: Sessions
    stats: Callable[[], NodeStats]
    upgrader: Upgrader | None = None
    cluster: ClusterNode | None = None
    cluster_links: ClusterLinks | None = None
    cluster_events: ClusterEvents | None = None

    def shell(self, name: str) -> Supervisor | None:
        """Return the supervisor shell named ``name``, if it exists."""
        return self.root.find(name)


# -- answers: what a command returns; the daemon sends each record as the map of its fields,
# in their order (daemon.to_wire). Info and ps answer with `AgentInfo`, events with an
# `EventPage` of `Event` s.
@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``'s answer (the client reads it as a `NodeStatus`).

    Attributes:
        pid: the daemon's pid.
        dir: the node dir.
        durability: the store's durability.
        uptime: seconds since the node started.
        dropped_frames: the invalid frames dropped so far, in all.
        dropped: the same, by socket.
        strict: whether the root's restart intensity stops the node.
        awake: how many agent processes the node holds (sleeping agents have none).
        held: how many sleeping agents the node keeps a handle for (something links to
            or monitors them).
    """

    pid: int
    dir: str
    durability: str
    uptime: float
    dropped_frames: int
    dropped: DroppedFrames
    strict: bool
    awake: int
    held: int


@dataclass(frozen=True, slots=True)
class Spawned:
    """``spawn``'s answer: the agent's name (generated when none was asked for), its pid."""

    name: str
    pid: int | None


@dataclass(frozen=True, slots=True)
class NameStatus:
    """``stop``'s and ``restart``'s answer: the agent's or supervisor's new status."""

    name: str
    status: str


@dataclass(frozen=True, slots=True)
class Deleted:
    """``delete``'s answer."""

    name: str
    deleted: bool = True


@dataclass(frozen=True, slots=True)
class Named:
    """``add_supervisor``'s answer: the supervisor's name."""

    name: str


@dataclass(frozen=True, slots=True)
class Resent:
    """``resend_dead_letter``'s answer: the message's new seq in the agent's mailbox."""

    name: str
    seq: int


@dataclass(frozen=True, slots=True)
class Watched:
    """``monitor``'s answer (``live``: whether the target runs; if not, the Down is sent)."""

    target: str
    live: bool


@dataclass(frozen=True, slots=True)
class Linked:
    """``link``'s answer."""

    target: str


@dataclass(frozen=True, slots=True)
class ShuttingDown:
    """``shutdown``'s answer: the daemon's pid (the client waits for it to exit)."""

    pid: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of ``dead_letters``' answer.

    Attributes:
        seq: its seq in the agent's dead letters.
        kind: the message's kind (a cast, as `Skip` sets casts aside).
        msg: the user's message, or its raw bytes when it does not decode.
        failure: the failure it was set aside for, or None.
        time: when it was set aside (``time.time()``), if known.
    """

    seq: int
    kind: str
    msg: Any
    failure: Failure | None
    time: float | None


@dataclass(frozen=True, slots=True)
class AgentNode:
    """An agent in ``tree``'s answer: its status, restarts, pid and class."""

    name: str
    kind: str = field(default="agent", init=False)
    status: str
    restarts: int
    pid: int | None
    cls: str


@dataclass(frozen=True, slots=True)
class SupervisorNode:
    """A supervisor in ``tree``'s answer, with its children (``restarts``: how many times it
    was itself restarted; ``child_restarts``: the sum of its direct children's; ``more``:
    how many agents a ``limit`` left out, ``more_by_status``: those by status)."""

    name: str
    kind: str = field(default="supervisor", init=False)
    strategy: str
    status: str
    restarts: int
    child_restarts: int
    children: list[AgentNode | SupervisorNode]
    more: int = 0
    more_by_status: dict[str, int] = field(default_factory=dict)


def _erase_agent(agent_id: int, name: str, t: Txn) -> None:
    """Erase an agent's data and its record, in transaction ``t``."""
    t.erase_agent_data(agent_id)
    t.delete_agent(name)


def _put_agent(rec: AgentRecord, t: Txn) -> None:
    t.put_agent(rec)


def _add_agent(shell: Supervisor, rec: AgentRecord) -> object:
    """Add an agent to its supervisor (and start it there) with the spec it has under
    that supervisor (`sessions.child_spec`)."""
    return shell.add_child(child_spec(shell, rec))


def ping(node: NodeView) -> Ping:
    """``{"op": "ping"}`` -> ``{"pid", "dir", "durability", "uptime", "strict",
    "dropped_frames" (the total), "dropped" (by socket, see `DroppedFrames`), "awake",
    "held"}``. CLI: ``beamish node status``."""
    dropped = node.dropped_frames()
    return Ping(os.getpid(), node.paths.dir, node.config.node.durability,
                time.time() - node.started_at, dropped.total, dropped, node.config.node.strict,
                node.sessions.awake, node.sessions.held)


def spawn(node: NodeView, cls: str, args: UserData, name: str | None,
          supervisor: str = "root", restart: str = "permanent", shutdown: Any = 5.0,
          limits: LimitsMap | None = None, timeout: float = 30.0,
          caller: str | None = None, caller_phase: str | None = None,
          idle_timeout: float | None = None, lazy: bool = False,
          durability: str | None = None) -> Spawned:
    """``{"op": "spawn", "cls", "args", "name", "supervisor", "restart", "shutdown", "limits",
    "caller", "caller_phase", "idle_timeout", "lazy", "durability"}`` -> ``{"name", "pid"}`` once the
    agent's ``init`` ran (or its committed state was loaded). ``caller``/``caller_phase``
    come from ``self.ctx.spawn`` (the spawning agent, and "init"/"recover" while it
    starts). ``lazy``: registered asleep (pid None), its process started by its first
    message; ``idle_timeout``: seconds without a message before it falls asleep.

    A name in use by a live agent is refused; the name of a stopped agent resumes it
    (same state and mailbox). CLI: ``beamish spawn MODULE:CLASS --name N --args JSON``.
    ``durability="replicated"``: registered in the cluster's PostgreSQL and run by the
    owner of its name's shard (``node/cluster_node.py``).
    """
    if caller is not None and caller_phase is not None and not lazy:
        _refuse_deadlocking_spawn(node, caller, caller_phase, supervisor, name or str(cls))
    # Checked again here, as the client checked it: never trusted from a client (a bad
    # limit once killed the node).
    request = spawn_request(cls, args, name, supervisor, restart, shutdown, limits, timeout,
                            idle_timeout, lazy, max_bytes=node.config.node.max_message_bytes,
                            durability=durability)
    if durability == "replicated":
        if node.cluster is None:
            raise ConfigError("durability=\"replicated\" needs a node in a cluster: a "
                              "[cluster] table with name and postgres in its config")
        return Spawned(*node.cluster.spawn(request))
    pinned = node.cluster.pinned if node.cluster is not None else None
    if pinned is not None:  # names are cluster-wide: routed here (node/cluster_routes.py)
        name = request.name or pinned.new_name(request.cls)
        request = replace(request, name=name)
        pinned.claim(name)
        try:
            return _spawn_here(node, request, supervisor, lazy)
        except BaseException:
            # A spawn that failed leaves no route behind, unless the name is still one
            # of this node's (a running agent of that name refused it).
            if node.store.read(lambda t: t.get_agent(name)) is None \
                    and not _is_supervisor(node, name):
                pinned.drop(name)
            raise
    return _spawn_here(node, request, supervisor, lazy)


def _spawn_here(node: NodeView, request: SpawnRequest, supervisor: str,
                  lazy: bool) -> Spawned:
    """Spawn ``request`` on this node (its name routed here already in a cluster)."""
    name = request.name
    shell = node.shell(supervisor)
    if shell is None:
        raise SpawnError(name or request.cls, _no_supervisor(supervisor))
    if name is not None and _is_supervisor(node, name):
        raise SpawnError(name, _SUP_NAME)
    template = shell.spec.template
    if template is not None:  # simple_one_for_one: every child is made from the template
        assert template.shutdown is not None  # a ChildSpec resolves its default shutdown
        request = replace(request, restart=str(template.restart), shutdown=template.shutdown)
    woke: list[bool] = []  # a lazy spawn of a name whose mailbox waits: wake it

    def reserve(t: Txn) -> AgentRecord:
        rec, marked = _reserve(t, request)
        woke[:] = [marked]
        return rec
    rec = node.store.write(reserve)
    agent_name = rec.name
    if lazy:
        node.emit("spawned", agent_name, supervisor, "lazy")
        if woke[0]:
            node.sessions.hint()
        return Spawned(agent_name, None)
    node.spawner.forget_failure(agent_name)
    incn = _start_and_adopt(node, shell, rec)
    node.emit("spawned", agent_name, supervisor, "")
    return Spawned(agent_name, incn.pid)


def _start_and_adopt(node: NodeView, shell: Supervisor, rec: AgentRecord) -> Incarnation:
    """Start a reserved eager spawn's process on this (command) thread, then hand it to
    its supervisor running: spawns into one supervisor start side by side instead of one
    after another on its thread (OTP's ``start_child`` waits on the supervisor for each
    ``init``), and the supervisor's rules are the same from the moment it holds the child.
    A process that could not start, or that no supervisor takes, is undone with its
    reservation.

    Raises:
        SpawnError: it did not start (the failure attached), or its record or supervisor
            changed meanwhile.
    """
    try:
        with node.spawner.detached_start():
            return _started_and_adopted(node, shell, rec)
    except StartFailed as exc:  # refused before anything started: the node is stopping
        _undo_spawn(node, rec)
        raise SpawnError(rec.name, f"it did not start ({exc})") from None


def _started_and_adopted(node: NodeView, shell: Supervisor, rec: AgentRecord) -> Incarnation:
    # Every StartFailed in here becomes a SpawnError: the one `_start_and_adopt` catches
    # is the refusal of `detached_start` alone.
    name = rec.name
    try:
        started = node.spawner.start_detached(name, wake=False)
    except StartFailed as exc:
        _undo_spawn(node, rec)
        failure = node.spawner.take_start_failure(name)
        raise SpawnError(name, f"it did not start ({_start_detail(failure, str(exc))})",
                         failure) from None
    if started is None:
        raise SpawnError(name, "it was stopped or deleted while it started; spawn it again")
    incn, outcome = started
    if outcome is not True:
        _undo_spawn(node, rec)
        reason, failure = outcome
        raise SpawnError(name, f"it did not start ({_start_detail(failure, str(reason))})",
                         failure) from None
    try:
        shell.adopt_child(child_spec(shell, rec), incn)
    except SupervisorError as exc:
        node.spawner.kill_unadopted(incn)
        _undo_spawn(node, rec)
        raise SpawnError(name, f"its supervisor {rec.supervisor!r} cannot take it now "
                         f"({exc}); try again") from None
    with node.spawner.lock:
        incn.waking = False
        # Popped by on_exit: it died between its start and the adoption, and left the
        # report to us (its init ran: a crash like any other for its supervisor).
        exited = node.spawner.by_pid.get(incn.pid) is not incn
    if exited:
        shell.child_exited(name, incn, incn.exited.result()[0])
    return incn


def _start_detail(failure: Failure | None, fallback: str) -> str:
    if failure is None:
        return fallback
    return f"{failure.exc_type}: {failure.message}" if failure.exc_type else failure.message


def _undo_spawn(node: NodeView, rec: AgentRecord) -> None:
    """Roll back a spawn whose process did not start or was not taken: its record as before
    the spawn, and no recover pending for a later spawn of the name."""
    node.spawner.forget_failure(rec.name)
    _roll_back_spawn(node, rec, AgentStatus.STOPPED)


def _reserve(t: Txn, f: SpawnRequest, sups_checked: bool = False
             ) -> tuple[AgentRecord, bool]:
    """Write a spawn's record in transaction ``t``: a new name gets an id (or one is
    generated), a stopped or exited one is resumed; a name in the tree is refused. A lazy
    spawn's record is the whole spawn (status sleeping); an eager one is marked
    ``spawning`` until it completes. Returns the record and whether it marked a wake (a
    lazy spawn of a name whose mailbox waits). ``sups_checked``: the caller has checked,
    in ``t``, that no supervisor has ``f.name``."""
    agent_name = f.name
    rec = t.get_agent(agent_name) if agent_name else None
    if rec is not None and rec.status in IN_TREE:
        raise SpawnError(agent_name or "", f"the name is in use by a {rec.status} agent "
                         f"(pid {rec.pid}); pick another name or stop it first")
    # The write is the whole of a lazy spawn: registered asleep; its first message wakes
    # it (a resumed name's waiting mailbox, at once). An eager one is ``spawning`` until
    # it completes (_roll_back_spawn).
    status = AgentStatus.SLEEPING if f.lazy else AgentStatus.STARTING
    if rec is None:
        agent_id = t.next_counter("agent_id")
        if agent_name and not sups_checked and t.get_sup(agent_name) is not None:
            raise SpawnError(agent_name, _SUP_NAME)
        if not agent_name:
            agent_name = f"{f.cls.rpartition(':')[2].lower()}-{agent_id}"
            # A generated name must be free too (someone may have picked it by hand).
            while t.get_sup(agent_name) is not None or t.get_agent(agent_name) is not None:
                agent_id = t.next_counter("agent_id")
                agent_name = f"{f.cls.rpartition(':')[2].lower()}-{agent_id}"
        # Built whole (one record, no copies: 100,000 sessions register through here).
        rec = AgentRecord(agent_name, agent_id, cls=f.cls, args=f.args,
                          supervisor=f.supervisor, restart=f.restart, shutdown=f.shutdown,
                          limits=dict(f.limits), status=status, created=time.time(),
                          order=t.next_counter("order"), fresh=True,
                          spawning=None if f.lazy else Spawning(None),
                          idle_timeout=f.idle_timeout)
        # An id is new here (never reused): no mailbox waits for it.
        t.put_agent(rec)
        return rec, False
    rec = replace(rec, cls=f.cls, args=f.args, supervisor=f.supervisor, restart=f.restart,
                  shutdown=f.shutdown, limits=dict(f.limits), status=status,
                  pid=None, order=t.next_counter("order"), fresh=True,
                  spawning=None if f.lazy else Spawning(rec.status),
                  recover_pending=False,  # a new spawn is not a restart: nothing to recover
                  idle_timeout=f.idle_timeout)
    marked = False
    if f.lazy and t.peek(rec.id, 1):
        t.put_wake(rec.id, rec.name)
        marked = True
    t.put_agent(rec)
    return rec, marked


def register_lazy(store: Store, request: SpawnRequest) -> tuple[str, bool]:
    """A lazy spawn written by the client itself, in one transaction that checks what the
    node's ``spawn`` checks (its supervisor exists, the name is free, a simple_one_for_one
    supervisor's template): the fastest way to register many sessions. ``request`` was
    checked by `spawn_request`. Returns the agent's name and whether a wake was marked
    (the caller then hints the node, which also emits ``spawned`` on a hint).

    Raises:
        SpawnError: no such supervisor, or the name is in use.
    """
    def txn(t: Txn) -> tuple[str, bool]:
        restart, shutdown = request.restart, request.shutdown
        if request.supervisor != ROOT:
            sup = t.get_sup(request.supervisor)
            if sup is None:
                raise SpawnError(request.name or request.cls, _no_supervisor(request.supervisor))
            if sup.strategy == "simple_one_for_one":
                template = sup.template or ChildTemplate()
                restart, shutdown = template.restart, template.shutdown
        if request.name is not None and (request.name == ROOT
                                         or t.get_sup(request.name) is not None):
            raise SpawnError(request.name, _SUP_NAME)
        if (restart, shutdown, request.lazy) != (request.restart, request.shutdown, True):
            req = replace(request, restart=restart, shutdown=shutdown, lazy=True)
        else:
            req = request
        rec, marked = _reserve(t, req, sups_checked=True)
        return rec.name, marked
    return store.write(txn)


def _no_supervisor(supervisor: str) -> str:
    return (f"no supervisor named {supervisor!r}; add it first: "
            f"`beamish add-supervisor {supervisor}` from the shell, or "
            f"node.add_supervisor({supervisor!r}) from Python")


def _spawn_completed(node: NodeView, name: str) -> None:
    def txn(t: Txn) -> None:
        rec = t.get_agent(name)
        if rec is not None and rec.spawning is not None:
            t.put_agent(replace(rec, spawning=None))
    node.store.write(txn)


def _roll_back_spawn(node: NodeView, rec: AgentRecord, resumed_status: AgentStatus
                     ) -> None:
    """Undo a spawn that did not complete: a new name's record and data are erased (the
    name is free again); a resumed agent goes back to ``resumed_status``, its state kept.

    A record still marked ``spawning`` when a node restarts on the dir was never
    acknowledged (the node died first): the restore completes it, or rolls it back with
    this, never leaving a half-made agent."""
    name = rec.name
    if rec.spawning is None or rec.spawning.prev is None:
        node.store.write(functools.partial(_erase_agent, rec.id, name))
        return

    def txn(t: Txn) -> None:
        cur = t.get_agent(name)
        if cur is not None:
            t.put_agent(replace(cur, spawning=None, status=resumed_status, pid=None))
    node.store.write(txn)


def _refuse_deadlocking_spawn(node: NodeView, caller: str, phase: str, supervisor: str,
                              name: str) -> None:
    """Refuse a spawn from ``caller``'s init/recover into a supervisor that is blocked until
    that init/recover returns: its own, and each ancestor that is starting its branch (a
    supervisor's own start, a restart or a node start, takes one child at a time and waits
    for it, as in OTP, where this deadlocks). A spawned agent is started beside its
    supervisor (`_start_and_adopt`): no supervisor waits on its init."""
    child, shell = caller, node.shell(node.registry.supervisor_of(caller))
    path = [caller]
    while shell is not None:
        try:
            status = shell.snapshot().child(child).status
        except NotFound:
            return
        if status is not ChildStatus.STARTING:
            return  # this supervisor is not waiting on our start: the spawn can be served
        path.append(shell.id)
        if shell.id == supervisor:
            how = (f"its supervisor {supervisor!r} waits until that returns" if len(path) == 2
                   else f"supervisor {supervisor!r} is starting "
                        + ", which is starting ".join(repr(p) for p in reversed(path[1:-1]))
                        + ", which waits until that returns")
            raise SpawnError(name, f"agent {caller!r} asked for it from its {phase}, and "
                             f"{how}, so the spawn could never be served; spawn it after "
                             f"{phase} returns (e.g. self.ctx.send_after(0, msg) in {phase}, "
                             "then spawn in handle_info) or into another supervisor")
        child, shell = shell.id, shell.parent


_SUP_NAME = ("a supervisor has that name, and agents and supervisors share one namespace; "
             "pick another name")


def _is_supervisor(node: NodeView, name: str) -> bool:
    return node.shell(name) is not None or node.store.read(lambda t: t.get_sup(name)) is not None


def _replicated_view(node: NodeView, name: str) -> NodeView:
    """``node``, or for a replicated agent's name a view of it on the cluster's store."""
    if node.cluster is None or not is_replicated(node.store, name):
        return node
    return replace(node, store=node.cluster.store)


def _require(node: NodeView, name: str) -> AgentRecord:
    check_lookup_name(name)
    rec = node.store.read(lambda t: t.get_agent(name))
    if rec is None:
        raise AgentNotFound(name)
    return rec


def stop(node: NodeView, name: str) -> NameStatus:
    """``{"op": "stop", "name"}`` -> ``{"name", "status": "stopped"}``: an orderly stop
    (``terminate("normal")``, then exit within its shutdown time). The agent leaves the tree;
    its state and mailbox stay, so a later spawn under the name resumes it. A wake or sleep
    of it in progress ends first (a sleeping agent's stop sends its monitors ``Down``).
    CLI: ``beamish stop NAME``.

    Raises:
        AgentNotFound: no such agent, or its wake or sleep did not end within
            `CLAIM_WAIT_S`.
    """
    check_lookup_name(name)
    if node.cluster is not None and is_replicated(node.store, name):  # its shard's owner stops it
        node.cluster.request(name, "stop")
        return NameStatus(name, AgentStatus.STOPPED)
    with node.sessions.transition(name):
        _stop(node, name)
    return NameStatus(name, AgentStatus.STOPPED)


def _stop(node: NodeView, name: str) -> AgentRecord:
    """Stop agent ``name`` (its transition slot held: no wake or sleep of it runs, so the
    status read here is the one it keeps until this ends); return its record."""
    rec = _require(node, name)
    shell = node.shell(rec.supervisor)
    with node.registry.removing(name):
        if rec.status in IN_TREE and shell is not None:
            with node.spawner.stop_reason(name, "normal"):
                try:
                    shell.remove_child(name)
                except SupervisorError:
                    pass  # not a child any more (failed, exited, asleep): nothing to stop
        node.registry.set_status(name, AgentStatus.STOPPED)
    if rec.status == AgentStatus.SLEEPING:
        node.sessions.forget(name, "normal")  # what watched it hears it stopped
    node.emit("stopped", name, rec.supervisor, "normal")
    return rec


def sleep(node: NodeView, name: str) -> NameStatus:
    """``{"op": "sleep", "name"}`` -> ``{"name", "status": "sleeping"}`` once it sleeps:
    ``terminate("sleep", state)`` ran and its process exited; its next message or timer
    wakes it. Not an exit: no restart is counted, no Down/Exit sent. One asleep already is
    left so. CLI: ``beamish sleep NAME``.

    Raises:
        AgentNotFound: no such agent, or it is not running (starting, restarting, failed,
            stopped).
    """
    check_lookup_name(name)
    if node.cluster is not None and is_replicated(node.store, name):
        node.cluster.request(name, "sleep")
        return NameStatus(name, AgentStatus.SLEEPING)
    node.sessions.sleep(name, "requested")
    return NameStatus(name, AgentStatus.SLEEPING)


def upgrade(node: NodeView, modules: list[str] | None = None,
            config: dict[str, Any] | None = None) -> WireMap:
    """``{"op": "upgrade", "modules"?: [str], "config"?: {"supervisor": [...], "agent":
    [...]}}`` -> an `UpgradeReport`'s wire form, once the rollout has ended: the running
    agents of those modules (default: all) moved one at a time onto their current code,
    loaded in a fresh zygote (``node/upgrade.py``), with the changes of their config
    entries (``config``: a config file's tables) applied as they move. A module that fails
    to import stops it before anything moves, and a new code that fails to start stops it
    there: the report says so (the client raises ``UpgradeFailed``). CLI: ``beamish
    upgrade [MODULE...] [--config FILE]``.

    Raises:
        ConfigError: a module name that is not a dotted name, or an invalid config entry.
    """
    asked = list(modules or [])
    for m in asked:
        if not isinstance(m, str) or not all(part.isidentifier() for part in m.split(".")):
            raise ConfigError(f"upgrade: {m!r} is not a module name (a dotted name such "
                              "as app.agents)")
    entries = parse_config(config, "the config given to upgrade").agent \
        if config is not None else []
    if node.upgrader is None:
        raise ConfigError("this node cannot upgrade code")
    return node.upgrader.upgrade(asked, entries).to_wire()


def delete(node: NodeView, name: str) -> Deleted:
    """``{"op": "delete", "name"}`` -> ``{"name", "deleted": true}``: stop it if running and
    erase its state, mailbox and dead letters. CLI: ``beamish delete NAME``."""
    check_lookup_name(name)
    if node.cluster is not None and is_replicated(node.store, name):
        node.cluster.request(name, "delete")
        return Deleted(name)
    with node.sessions.transition(name):
        rec = _stop(node, name)
        node.store.write(functools.partial(_erase_agent, rec.id, name))
    if node.cluster is not None and node.cluster.pinned is not None:
        node.cluster.pinned.drop(name)
    node.emit("deleted", name, rec.supervisor, "")
    return Deleted(name)


def _proc_stats(pid: int | None) -> tuple[int, float]:
    if not pid:
        return 0, 0.0
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return int(proc.memory_info().rss), float(times.user + times.system)
    except psutil.Error:
        return 0, 0.0


def _info_of(node: NodeView, rec: AgentRecord) -> AgentInfo:
    depth, processed = node.store.read(lambda t: (t.depth(rec.id), t.processed(rec.id)))
    return _info_with(rec, depth, processed)


def _info_with(rec: AgentRecord, depth: int, processed: int) -> AgentInfo:
    pid = rec.pid if rec.status == AgentStatus.RUNNING else None
    rss, cpu = _proc_stats(pid)
    return AgentInfo(rec.name, pid, str(rec.status), rec.restarts, depth, processed, rss, cpu,
                     rec.last_failure, rec.supervisor, rec.cls)


def info(node: NodeView, name: str) -> AgentInfo:
    """``{"op": "info", "name"}`` -> the fields of `AgentInfo`. CLI: ``beamish info NAME``.
    On a cluster node, a name that is not one of its own agents is a replicated agent's."""
    if node.cluster is not None and node.store.read(lambda t: t.get_route(name)) is None:
        return node.cluster.info(check_lookup_name(name))
    return _info_of(node, _require(node, name))


@dataclass(frozen=True, slots=True)
class PsPage:
    """``ps_page``'s answer: one page of agents in name order.

    Attributes:
        rows: the agents of the page.
        more: how many more agents match after the page (0: it is the last).
        after: the cursor for the next page (the last row's name) when ``more`` > 0.
        unavailable: on a cluster node, why the cluster's replicated agents are not in
            the page (its PostgreSQL could not be read: this node's own agents only).
    """

    rows: list[AgentInfo]
    more: int
    after: str | None
    # why the cluster's agents are missing; off the wire when None (a complete page)
    unavailable: str | None = field(default=None, metadata={OMIT_NONE: True})


def check_status(status: str | None) -> AgentStatus | None:
    """Return ``status`` as an `AgentStatus` (None stays None).

    Raises:
        ConfigError: it is not one, listing the statuses there are.
    """
    if status is None:
        return None
    try:
        return AgentStatus(status)
    except ValueError:
        raise ConfigError(f"status={status!r}: expected one of "
                          f"{', '.join(s.value for s in AgentStatus)}") from None


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit!r}: expected a count of 1 or more, or None for all")


def ps_page(node: NodeView, status: str | None = None, supervisor: str | None = None,
            limit: int | None = None, after: str | None = None) -> PsPage:
    """``{"op": "ps_page", "status", "supervisor", "limit", "after"}`` -> ``{"rows": [AgentInfo
    fields], "more", "after"}``: the agents in name order whose name sorts after ``after``,
    with ``status`` and under ``supervisor`` when given, at most ``limit`` of them (all when
    None); ``more`` counts those left, ``after`` is the next page's cursor. One read
    transaction; a page without filters reads only its own records.
    CLI: ``beamish ps [--status S] [--supervisor S] [--limit N] [--after NAME]``."""
    wanted = check_status(status)
    _check_limit(limit)
    if supervisor is not None and not _is_supervisor(node, supervisor):
        raise ConfigError(f"supervisor={supervisor!r}: no supervisor has that name "
                          "(see `beamish tree`)")
    if after is not None:
        check_lookup_name(after)

    def read(t: Txn) -> tuple[list[tuple[AgentRecord, int, int]], int]:
        recs, more = t.agents_page(after, limit, None if wanted is None else str(wanted),
                                   supervisor)
        return [(r, t.depth(r.id), t.processed(r.id)) for r in recs], more
    rows, more = node.store.read(read)
    infos = [_info_with(rec, depth, processed) for rec, depth, processed in rows]
    unavailable = None
    if node.cluster is not None and supervisor in (None, ROOT):  # and replicated agents
        try:
            others, others_more = node.cluster.ps_rows(
                None if wanted is None else str(wanted), supervisor, limit, after)
        except StoreUnavailable as exc:  # its own agents still listed, the page marked
            unavailable = exc.detail
        else:
            infos, more = merge_pages(infos, more, others, others_more, limit)
    return PsPage(infos, more, infos[-1].name if more and infos else None, unavailable)


def ps(node: NodeView, status: str | None = None, supervisor: str | None = None,
       limit: int | None = None, after: str | None = None) -> list[AgentInfo]:
    """``{"op": "ps", "status", "supervisor", "limit", "after"}`` -> a list of `AgentInfo`
    fields: ``ps_page``'s rows (in name order). CLI: ``beamish ps``."""
    return ps_page(node, status, supervisor, limit, after).rows


HELD_BY_RECORD: frozenset[AgentStatus] = frozenset({AgentStatus.SLEEPING})
"""The statuses of agents that are in the tree but that no supervisor shell holds (no
process: sessions' sleeping agents): ``tree`` lists them from their records, first under
their supervisor."""


def tree(node: NodeView, limit: int | None = None) -> SupervisorNode:
    """``{"op": "tree", "limit"}`` -> nested ``{"name", "kind", "strategy", "status",
    "restarts", "child_restarts", "children", "more", "more_by_status"}`` for each
    supervisor (``restarts``: how many times it was itself restarted, 0 for the root;
    ``child_restarts``: the sum of its direct children's), with each agent's pid, status
    and restarts. With ``limit``, a supervisor lists its first ``limit`` agents (in start
    order; its supervisors always): ``more`` counts the others and ``more_by_status``
    counts them by status. Only the listed agents' records are read (so ``child_restarts``
    counts the agents left out by their supervisor's own count, which starts again at 0
    when the node does). CLI: ``beamish tree [--limit N | --all]``."""
    _check_limit(limit)
    by_record = node.store.read(lambda t: t.agents_by_supervisor(
        [str(s) for s in HELD_BY_RECORD], limit)) if HELD_BY_RECORD else {}
    root = node.root.snapshot()
    shown: list[str] = []

    def pick(snap: SupervisorSnapshot) -> None:
        agents = len(by_record.get(snap.id, ((), {}))[0])
        for child in snap.children:
            if child.kind is ChildKind.SUPERVISOR:
                if child.supervisor is not None:
                    pick(child.supervisor)
            elif limit is None or agents < limit:
                agents += 1
                shown.append(child.id)
    pick(root)
    recs = node.store.read(lambda t: {n: t.get_agent(n) for n in shown})

    def walk(snap: SupervisorSnapshot, status: str, restarts: int) -> SupervisorNode:
        held, held_more = by_record.get(snap.id, ([], {}))
        children: list[AgentNode | SupervisorNode] = [
            AgentNode(r.name, str(r.status), r.restarts, None, r.cls) for r in held]
        hidden = dict(held_more)
        child_restarts = sum(r.restarts for r in held)
        agents = len(held)
        for child in snap.children:
            if child.kind is ChildKind.SUPERVISOR:
                sub = child.supervisor  # None before its first start
                children.append(walk(sub, str(child.status), child.restarts) if sub is not None else
                                SupervisorNode(child.id, "", str(child.status), child.restarts,
                                               0, []))
                child_restarts += child.restarts
                continue
            rec = recs.get(child.id) if limit is None or agents < limit else None
            restarts_of = child.restarts if rec is None else rec.restarts
            child_restarts += restarts_of
            if limit is not None and agents >= limit:
                key = str(agent_status(child.status))
                hidden[key] = hidden.get(key, 0) + 1
                continue
            agents += 1
            children.append(AgentNode(child.id, str(agent_status(child.status)), restarts_of,
                                      None if rec is None else rec.pid,
                                      "" if rec is None else rec.cls))
        return SupervisorNode(snap.id, str(snap.strategy), status, restarts, child_restarts,
                              children, sum(hidden.values()), hidden)
    top = walk(root, str(ChildStatus.RUNNING if root.running else ChildStatus.STOPPED), 0)
    if node.cluster is None:
        return top
    # Replicated agents are the root's children too: the first ``limit`` in name order.
    rows, more = node.cluster.ps_rows(None, ROOT, limit, None)
    hidden = dict(top.more_by_status)
    if more:
        for status, n in hidden_counts(node.cluster.store.read(lambda t: t.status_counts()),
                                       [r.status for r in rows]).items():
            hidden[status] = hidden.get(status, 0) + n
    return replace(top, children=[*top.children, *(
        AgentNode(r.name, r.status, r.restarts, r.pid, r.cls) for r in rows)],
        child_restarts=top.child_restarts + sum(r.restarts for r in rows),
        more=sum(hidden.values()), more_by_status=hidden)


def events(node: NodeView, after: int = 0, since: float | None = None,
           name: str | None = None, kind: str | list[str] | None = None,
           limit: int = PAGE_MAX, wait: float = 0.0) -> EventPage:
    """``{"op": "events", "after": seq, "since": t, "name", "kind", "limit", "wait": s}`` ->
    an `EventPage`: the events with ``seq > after`` that pass the filters (``since``: at
    or after that time, seconds since the epoch; ``name``: about that agent or supervisor;
    ``kind``: of that kind or of one of those), oldest first, at most ``limit`` (and
    `PAGE_MAX`); with ``wait`` > 0, waiting up to that many seconds (at most 30) for one.
    CLI: ``beamish events [--since T] [--name N] [--kind K] [--follow]``.

    The node's main loop runs it itself, never on a command thread: when it finds nothing
    and ``wait`` > 0, the loop parks the request until news or its deadline (a waiting
    follower holds no thread). A request that does not wait first commits the events
    emitted so far, so it sees them all. On a cluster node, a name that is none of the
    node's own agents is read from the cluster's log (``node/cluster_events.py``), on a
    command thread."""
    check_timeout(wait, "wait", allow_zero=True)
    if after < 0:
        raise ConfigError(f"after={after!r}: expected an event seq, 0 or more")
    if limit < 1:
        raise ConfigError(f"limit={limit!r}: expected a count of 1 or more")
    flt = EventFilter.of(since, name, kind)
    if node.cluster_events is not None and node.cluster_events.serves(node.store, name):
        return node.cluster_events.page(after, flt, limit, wait)  # node/cluster_events.py
    if wait == 0:
        node.events.flush_before_read()
    return node.events.page(after, flt, limit)


def stats(node: NodeView) -> NodeStats:
    """``{"op": "stats"}`` -> the fields of `NodeStats` (its ``agents``: the fields of
    `AgentStats`, each ``latency`` as ``{"counts", "sum_seconds"}``): the node's figures,
    counts by status for every agent, and per-agent figures for the awake ones (what
    ``/metrics`` serves). CLI: ``beamish top``."""
    return node.stats()


def dead_letters(node: NodeView, name: str) -> list[DeadLetter]:
    """``{"op": "dead_letters", "name"}`` -> ``[{"seq", "kind", "msg", "failure", "time"}]``
    (``msg`` is the raw bytes of a message refused because it did not decode).
    CLI: ``beamish dead-letters NAME``."""
    node = _replicated_view(node, check_lookup_name(name))
    rec = _require(node, name)
    entries = node.store.read(lambda t: t.dead(rec.id))
    return [DeadLetter(seq, e.message.kind, _dead_msg(e.message), e.failure, e.time)
            for seq, e in entries]


def _dead_msg(record: Message | Malformed) -> Any:
    """A dead letter's message; one refused because it does not decode is shown as its
    raw bytes (so it can still be listed, inspected and deleted)."""
    return _unpacked(record.payload)


def _unpacked(payload: bytes) -> Any:
    """``payload`` decoded, or as it is when it does not decode."""
    from beamish.mailbox import ProtocolError, unpack
    try:
        return unpack(payload)
    except ProtocolError:
        return payload


@dataclass(frozen=True, slots=True)
class AgentState:
    """``state``'s answer: an agent's last committed state.

    Attributes:
        name: the agent.
        version: the class ``version`` the state was committed under (0 before any).
        state: the state as the agent committed it (plain data; a pydantic ``State`` as
            its dict), its raw bytes if it does not decode, None before ``init`` committed.
        processed: messages it handled, over its life.
    """

    name: str
    version: int
    state: Any
    processed: int

    @classmethod
    def from_wire(cls, data: Any) -> AgentState:
        """Rebuild the answer the node sent (its fields by name)."""
        return cls(str(data["name"]), int(data["version"]), data["state"],
                   int(data["processed"]))


def state(node: NodeView, name: str) -> AgentState:
    """``{"op": "state", "name"}`` -> ``{"name", "version", "state", "processed"}``: the
    agent's last committed state, read from the store (read-only: a running agent is not
    disturbed; a sleeping one is not woken). Shown by the dashboard (docs/dashboard.md)."""
    node = _replicated_view(node, check_lookup_name(name))
    rec = _require(node, name)
    raw = node.store.read(lambda t: t.get_state(rec.id))
    if raw is None:
        return AgentState(name, 0, None, 0)
    version, packed, processed = raw
    return AgentState(name, version, _unpacked(packed), processed)


def resend_dead_letter(node: NodeView, name: str, seq: int) -> Resent:
    """``{"op": "resend_dead_letter", "name", "seq"}`` -> ``{"name", "seq"}`` (the new seq):
    move dead letter ``seq`` back to the end of the agent's mailbox, in one transaction.
    CLI: ``beamish dead-letters NAME --resend SEQ``."""
    view = _replicated_view(node, check_lookup_name(name))
    if view is not node and node.cluster is not None:
        resent = resend_dead_letter(view, name, seq)
        node.cluster.appended(name)  # ring its owner
        return resent
    rec = _require(node, name)
    if rec.status not in ACCEPTS_MESSAGES:
        raise AgentNotFound(name, f"it is {rec.status}; spawn or restart it first")

    def txn(t: Txn) -> int | None:
        entry = next((e for s_, e in t.dead(rec.id) if s_ == seq), None)
        if entry is None:
            return None
        t.delete_dead(rec.id, seq)
        route = t.get_route(name)
        if route is not None and route[1] == AgentStatus.SLEEPING:
            t.put_wake(rec.id, name)
        return t.append(rec.id, entry.message)
    new_seq = node.store.write(txn)
    if new_seq is None:
        raise ConfigError(f"agent {name!r} has no dead letter #{seq} "
                          f"(see `beamish dead-letters {name}`)")
    node.ring(node.paths.agent_inbox(rec.id), ring_frame(new_seq))
    node.sessions.hint()
    node.emit("resent", name, rec.supervisor, f"dead letter #{seq} as #{new_seq}")
    return Resent(name, new_seq)


def restart(node: NodeView, name: str) -> NameStatus:
    """``{"op": "restart", "name"}`` -> ``{"name", "status"}``: restart an agent or supervisor
    marked failed (or an agent that is stopped or exited). One that runs, or is about to
    restart, is refused with `AlreadyRunning` and left exactly as it was (pid, restart
    count, intensity history). CLI: ``beamish restart NAME``."""
    check_lookup_name(name)
    rec = node.store.read(lambda t: t.get_agent(name))
    if rec is None and node.cluster is not None and node.store.read(
            lambda t: t.get_sup(name)) is None:
        node.cluster.request(name, "restart")  # a replicated agent: its owner restarts it
        return NameStatus(name, AgentStatus.RUNNING)
    if rec is None:
        sup = node.store.read(lambda t: t.get_sup(name))
        if sup is not None:
            return _restart_supervisor(node, sup)
        raise AgentNotFound(name)
    shell = node.shell(rec.supervisor)
    if shell is None:
        raise AgentNotFound(name, f"its supervisor {rec.supervisor!r} is gone")
    try:
        shell.restart_child(name)
    except Running as exc:
        raise AlreadyRunning(name, exc.status) from None
    except StartFailed as exc:
        raise SpawnError(name, f"it did not start ({exc})") from None
    except NotFound:  # not in the tree any more (stopped, exited): add it back
        def claim(t: Txn) -> AgentRecord:
            # Read and marked in one transaction: of two concurrent restarts, one claims it.
            cur = t.get_agent(name)
            if cur is None:
                raise AgentNotFound(name)
            if cur.status in ACCEPTS_MESSAGES:
                raise AlreadyRunning(name, cur.status)
            t.put_agent(replace(cur, status=AgentStatus.STARTING, fresh=True))
            return cur
        rec = node.store.write(claim)
        try:
            _add_agent(shell, rec)
        except AlreadyPresent:
            raise AlreadyRunning(name, AgentStatus.STARTING) from None  # another restart won the race
        except (StartFailed, SupervisorError) as exc:
            node.registry.set_status(name, rec.status)
            raise SpawnError(name, f"it did not start ({exc})") from None
    return NameStatus(name, AgentStatus.RUNNING)


def _restart_supervisor(node: NodeView, rec: SupervisorRecord) -> NameStatus:
    name = rec.name
    parent = node.shell(rec.parent)
    if parent is None:
        raise AgentNotFound(name, f"it is a supervisor whose parent {rec.parent!r} is gone")
    try:
        parent.restart_child(name)
    except Running as exc:
        raise AlreadyRunning(name, exc.status, what="supervisor") from None
    except (StartFailed, SupervisorError) as exc:
        raise SpawnError(name, f"the supervisor did not start ({exc})") from None
    node.registry.set_sup_status(name, ChildStatus.RUNNING)
    return NameStatus(name, ChildStatus.RUNNING)


def _sup_spec(rec: SupervisorRecord) -> ChildSpec:
    # Strings go in as given: the specs validate them and name the field in the error.
    template = None
    if rec.strategy == "simple_one_for_one":
        t = rec.template or ChildTemplate()
        template = ChildSpec("template", ChildKind.AGENT, t.restart, t.shutdown)  # type: ignore[arg-type]
    spec = SupervisorSpec(rec.name, rec.strategy, rec.max_restarts, rec.max_seconds,  # type: ignore[arg-type]
                          backoff=(rec.backoff[0], rec.backoff[1]) if rec.backoff else None,
                          template=template)
    return ChildSpec.for_supervisor(spec, rec.restart)  # type: ignore[arg-type]


def add_supervisor(node: NodeView, name: str, strategy: str = "one_for_one",
                   max_restarts: int = 3, max_seconds: float = 5.0, parent: str = "root",
                   restart: str = "permanent", backoff: list[float] | None = None,
                   child_restart: str = "permanent", child_shutdown: Any = 5.0
                   ) -> Named:
    """``{"op": "add_supervisor", "name", "strategy", "max_restarts", "max_seconds", "parent",
    "restart", "backoff", "child_restart", "child_shutdown"}`` -> ``{"name"}``: a nested
    supervisor, persisted with the tree. For ``simple_one_for_one``, ``child_restart`` and
    ``child_shutdown`` are the template every agent spawned into it gets.
    CLI: ``beamish add-supervisor NAME --strategy S --parent P``."""
    check_name(name)
    check_name(parent, "parent")
    rec = SupervisorRecord(name, strategy, max_restarts, max_seconds, parent, restart,
                           tuple(backoff) if backoff else None,
                           ChildTemplate(child_restart, check_shutdown(child_shutdown)),
                           ChildStatus.RUNNING)
    try:
        spec = _sup_spec(rec)
    except (InvalidSpec, ValueError) as exc:
        raise ConfigError(f"supervisor {name!r}: {exc}") from None
    shell = node.shell(parent)
    if shell is None:
        raise ConfigError(f"parent={parent!r}: no such supervisor (root or one added before)")
    taken = ConfigError(f"name={name!r}: already used by a supervisor or an agent")
    if node.shell(name) is not None:
        raise taken
    if node.cluster is not None and node.cluster.pinned is not None:
        node.cluster.pinned.claim(name)  # cluster-wide; its children are spawned here
    mine: list[int] = []  # the order of the record this call wrote

    def txn(t: Txn) -> None:
        # Checked in the writing transaction: a concurrent spawn or add_supervisor of the
        # same name checks in its own, so only one of them can hold the name.
        if t.get_agent(name) is not None or t.get_sup(name) is not None:
            raise taken
        order = t.next_counter("order")  # unique: which record is ours, should one race us
        mine.append(order)
        t.put_sup(replace(rec, order=order))
    node.store.write(txn)
    try:
        shell.add_child(spec)
    except (StartFailed, SupervisorError) as exc:
        def undo(t: Txn) -> None:
            cur = t.get_sup(name)
            if cur is not None and mine and cur.order == mine[-1]:
                t.delete_sup(name)
        node.store.write(undo)
        raise ConfigError(f"supervisor {name!r} did not start: {exc}") from None
    return Named(name)


def add_config_entries(node: NodeView, config: NodeConfig) -> list[ConfigDrift]:
    """Persist the config file's supervisors and agents that the store does not hold yet
    (a restarted node keeps what it had: the store wins over the file). Returns the agents
    whose entry differs from their persisted record (logged as warnings)."""
    drift: list[ConfigDrift] = []

    def txn(t: Txn) -> None:
        drift.clear()
        for sup in config.supervisor:
            if t.get_agent(sup.name) is not None:
                raise ConfigError(f"supervisor {sup.name!r}: an agent has that name in the "
                                  "node's store, and agents and supervisors share one "
                                  "namespace; rename one (or `beamish delete` the agent)")
        for agent in config.agent:
            if t.get_sup(agent.name) is not None:
                raise ConfigError(f"agent {agent.name!r}: a supervisor has that name in the "
                                  "node's store, and agents and supervisors share one "
                                  "namespace; rename it")
        for sup in config.supervisor:
            if t.get_sup(sup.name) is None:
                t.put_sup(SupervisorRecord(
                    sup.name, sup.strategy, sup.max_restarts, sup.max_seconds, sup.parent,
                    sup.restart, tuple(sup.backoff) if sup.backoff else None,
                    ChildTemplate(sup.child_restart, sup.child_shutdown), ChildStatus.RUNNING,
                    t.next_counter("order")))
        for agent in config.agent:
            rec = t.get_agent(agent.name)
            if rec is not None:
                found = agent_drift(rec, agent, node.paths.dir)
                if found is not None:
                    drift.append(found)
            if rec is None:
                t.put_agent(AgentRecord(
                    agent.name, t.next_counter("agent_id"), created=time.time(),
                    cls=agent.cls, args=agent.args, supervisor=agent.supervisor,
                    restart=agent.restart, shutdown=agent.shutdown,
                    limits=agent.limits.model_dump(),
                    status=AgentStatus.SLEEPING if agent.lazy else AgentStatus.STARTING,
                    fresh=True, order=t.next_counter("order"),
                    idle_timeout=agent.idle_timeout))
    node.store.write(txn)
    return drift


def start_persisted(node: NodeView) -> dict[str, str]:
    """Start the persisted tree in start order: supervisors, and every agent that was live
    (stopped, exited, failed and sleeping agents stay as they were). Returns why each
    agent that failed to start did, by name."""
    failures: dict[str, str] = {}
    sups, agents = node.store.read(lambda t: (t.sups(), t.agents()))
    items: list[AgentRecord | SupervisorRecord] = [*sups, *agents]
    for rec in sorted(items, key=lambda item: item.order):
        if isinstance(rec, SupervisorRecord):
            parent = node.shell(rec.parent)
            if parent is None:
                continue
            try:
                parent.add_child(_sup_spec(rec))
            except (StartFailed, SupervisorError) as exc:
                node.emit("failed", rec.name, rec.parent, f"did not start: {exc}")
            continue
        if rec.status not in STARTED_AT_NODE_START:
            continue  # (a sleeping agent stays asleep; a pending wake wakes it)
        shell = node.shell(rec.supervisor)
        try:
            if shell is None:
                raise StartFailed(f"its supervisor {rec.supervisor!r} did not start")
            node.store.write(functools.partial(_put_agent, replace(rec, fresh=True)))
            _add_agent(shell, rec)
        except (StartFailed, SupervisorError, ConfigError) as exc:
            failure = node.spawner.take_start_failure(rec.name)
            reason = _start_detail(failure, str(exc))
            if rec.spawning is not None:  # never acknowledged: the spawn is undone, not failed
                _roll_back_spawn(node, rec, rec.spawning.prev or AgentStatus.STOPPED)
                node.emit("removed", rec.name, rec.supervisor,
                          f"a spawn the node never acknowledged (it stopped first) did not "
                          f"complete on restart, so it was rolled back: {reason}")
                continue
            failures[rec.name] = reason
            node.registry.set_status(rec.name, AgentStatus.FAILED, failure=failure)
            node.emit("failed", rec.name, rec.supervisor, f"did not start: {reason}")
            continue
        if rec.spawning is not None:
            _spawn_completed(node, rec.name)
    return failures


def shutdown(node: NodeView) -> ShuttingDown:
    """``{"op": "shutdown"}`` -> ``{"pid"}`` at once; the node then stops every agent in reverse
    start order and exits (the client waits for the pid). CLI: ``beamish node stop``."""
    node.stopping.set()
    return ShuttingDown(os.getpid())


# How long a monitor or link request from an agent's init waits for the node to register
# that agent's process (its request can beat the zygote's answer to the fork).
REGISTER_WAIT_S = 10.0


def _watcher_incarnation(node: NodeView, name: str, inc: int, what: str) -> Incarnation:
    me = node.spawner.incarnation(name, inc, wait=REGISTER_WAIT_S)
    if me is None:
        raise AgentNotFound(name, f"the {what} agent itself is not running")
    return me


def _remote(node: NodeView, at: str | None) -> ClusterLinks | None:
    """The cluster links that reach node ``at`` (None: ``at`` is this node, or not given).

    Raises:
        ConfigError: ``at`` names another node and this node is not in a cluster.
    """
    if at is None:
        return None
    check_name(at, "node")
    links = node.cluster_links
    if links is None:
        raise ConfigError(f"node={at!r}: this node is not in a cluster ([cluster] name and "
                          "postgres in its config), so it reaches no other node")
    return None if at == links.node else links


def _routed_elsewhere(node: NodeView, target: str) -> tuple[ClusterLinks, str] | None:
    """The cluster links and the node that the route table puts ``target`` on, when it is
    another node's pinned agent (monitored or linked without ``node=``); else None (this
    node's, a replicated agent's or nobody's)."""
    links = node.cluster_links
    pinned = node.cluster.pinned if node.cluster is not None else None
    owner = None if links is None or pinned is None else pinned.remote(target)
    return None if links is None or owner is None else (links, owner.node)


def _monitor_as_replicated(node: NodeView, watcher: str, target: str,
                           at: str | None) -> Watched:
    """Replicated agent ``watcher`` monitors replicated agent ``target`` (kept by their
    names in PostgreSQL: ``node/cluster_links.py``).

    Raises:
        ConfigError: ``target`` is a node-pinned agent (not built yet).
    """
    assert node.cluster_links is not None
    if at is not None or node.store.read(lambda t: t.get_route(target)) is not None or \
            _routed_elsewhere(node, target) is not None:
        raise ConfigError(f"replicated agent {watcher!r} cannot monitor node-pinned agent "
                          f"{target!r}: a replicated agent monitors replicated agents "
                          "only (yet); monitor it from a node-pinned agent")
    return Watched(target, node.cluster_links.monitor_as_replicated(watcher, target))


def monitor(node: NodeView, watcher: str, inc: int, target: str,
            at: str | None = None) -> Watched:
    """``{"op": "monitor", "watcher", "inc", "target", "at"?}`` -> ``{"target", "live"}``:
    the watcher's ``handle_info`` gets ``Down(target, reason)`` when that agent's process
    exits (at once, with reason "noproc", if it is not running). From ``self.ctx.monitor``,
    in a handler, ``init`` or ``recover`` (a process still in its ``init`` counts as
    running, the watcher's and the target's alike). ``at``: the target is an agent of that
    node of the cluster (``node/cluster_links.py``; ``live`` is then not known yet);
    without it, a name the cluster's route table puts on another node is watched there."""
    check_name(watcher, "watcher")
    check_name(target, "target")
    remote = _remote(node, at)
    if node.cluster is not None and node.cluster.runs(watcher, inc):
        return _monitor_as_replicated(node, watcher, target, at)
    me = _watcher_incarnation(node, watcher, inc, "monitoring")
    if remote is not None and at is not None:
        remote.monitor(me, target, at)
        return Watched(target, True)
    if not node.sessions.watch(target, lambda other: node.links.monitor(me, other)):
        if (routed := _routed_elsewhere(node, target)) is not None:
            routed[0].monitor(me, target, routed[1])
            return Watched(target, True)  # another node's pinned agent (its route)
        if node.cluster_links is not None and node.cluster_links.monitor_replicated(me, target):
            return Watched(target, True)  # not one of this node's: a replicated agent
        from .links import NOPROC, down_message
        node.spawner.deliver_info(me, down_message(target, NOPROC))
        return Watched(target, False)
    return Watched(target, True)


def link(node: NodeView, watcher: str, inc: int, target: str,
         trap_exits: bool = False, at: str | None = None) -> Linked:
    """``{"op": "link", "watcher", "inc", "target", "trap_exits"}`` -> ``{"target"}``: link
    the two agents' processes both ways. An abnormal exit of one kills the other, unless it
    sets ``trap_exits = True``: then it gets ``Exit(name, reason)`` in ``handle_info``.
    Normal exits do not propagate. From ``self.ctx.link``, in a handler, ``init`` or
    ``recover`` (``trap_exits`` is the watcher's class attribute: from ``init`` it comes
    before its ready report does); a target not running raises `AgentNotFound` (where
    Erlang would send exit ``noproc``). ``at``: the target is an agent of that node of the
    cluster; as in Erlang, a remote target that does not run answers with exit ``noproc``
    (an `Exit` to a watcher that traps exits, else its death); without ``at``, a name the
    cluster's route table puts on another node is linked there."""
    check_name(watcher, "watcher")
    check_name(target, "target")
    remote = _remote(node, at)
    if node.cluster is not None and node.cluster.runs(watcher, inc):
        raise ConfigError(f"replicated agent {watcher!r} cannot link (not built yet): "
                          "monitor replicated agents instead (self.ctx.monitor)")
    me = _watcher_incarnation(node, watcher, inc, "linking")
    if trap_exits:
        me.trap_exits = True
    if remote is not None and at is not None:
        remote.link(me, target, at)
        return Linked(target)
    if not node.sessions.watch(target, lambda other: node.links.link(me, other)):
        if (routed := _routed_elsewhere(node, target)) is not None:
            routed[0].link(me, target, routed[1])
            return Linked(target)  # another node's pinned agent (its route)
        if node.cluster is not None and \
                node.cluster.store.read(lambda t: t.get_route(target)) is not None:
            raise ConfigError(f"agent {watcher!r} cannot link to replicated agent "
                              f"{target!r}: links with replicated agents are not built yet; "
                              "monitor it instead (self.ctx.monitor)")
        raise AgentNotFound(target, "cannot link to it")
    return Linked(target)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    tp = get_origin(tp) or tp
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    if get_origin(tp) in (Union, types.UnionType):
        return any(_matches(value, a) for a in get_args(tp))
    if tp is type(None):
        return value is None
    tp = get_origin(tp) or tp
    if isinstance(value, bool) and tp in (int, float):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


@functools.cache
def _params(handler: Callable[..., Any]) -> tuple[dict[str, object], frozenset[str]]:
    """The argument types of a command (after ``node``) and which are required."""
    hints = get_type_hints(handler)
    params = list(inspect.signature(handler).parameters.values())[1:]
    return ({p.name: hints.get(p.name, Any) for p in params},
            frozenset(p.name for p in params if p.default is inspect.Parameter.empty))


def check_args(op: str, handler: Callable[..., Any], args: CommandArgs) -> None:
    """Check a request's arguments against command ``handler``'s signature and types, so a
    caller's mistake is a `ConfigError` and a TypeError inside a command stays a bug.

    Raises:
        ConfigError: naming the missing, unexpected or mistyped argument.
    """
    types_, required = _params(handler)
    problems = [f"missing argument {name!r}" for name in sorted(required - set(args))]
    unexpected = sorted(set(args) - set(types_))
    if unexpected:
        problems.append(f"unexpected argument {unexpected[0]!r} (it takes: "
                        f"{', '.join(types_) or 'no arguments'})")
    problems += [f"{name}={value!r}: expected {_type_name(types_[name])}"
                 for name, value in args.items()
                 if name in types_ and not _matches(value, types_[name])]
    if problems:
        raise ConfigError(f"bad arguments to {op!r}: {'; '.join(problems)}")


COMMANDS: dict[str, Callable[..., Any]] = {
    "monitor": monitor, "link": link, "resend_dead_letter": resend_dead_letter,
    "ping": ping, "spawn": spawn, "stop": stop, "delete": delete, "info": info, "ps": ps,
    "tree": tree, "events": events, "dead_letters": dead_letters, "restart": restart,
    "shutdown": shutdown, "add_supervisor": add_supervisor, "ps_page": ps_page,
    "sleep": sleep, "stats": stats, "state": state, "upgrade": upgrade,
}
