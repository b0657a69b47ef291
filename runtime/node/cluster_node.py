"""A node in a cluster (``[cluster] postgres``): its membership, and the replicated
agents of the shards it owns.

    Membership (lease, shards) ──on_gained/on_lost/on_fenced──▶ ClusterNode
    any node: append in PostgreSQL (the ack) ─▶ NOTIFY beamish_ring ─▶ the owner's
        listener ─▶ ring the agent's inbox, or start its process
    each agent process: AgentLoop on a PgStore fenced by (shard, node, epoch)

* Messages to a replicated agent are appended to its mailbox in PostgreSQL by whichever
  node the client talks to, and the owner is rung through LISTEN/NOTIFY (no node-to-node
  hop): the acknowledgement is the commit in the store of record, so a cast is accepted
  while the owner is dying or being replaced, and the new owner finds it. A lost
  notification costs latency: the owner re-checks its shards' mailboxes every
  `RECHECK_S`.
* Each awake replicated agent is its own process (a fresh interpreter,
  ``agent/replicated.py``), with its own PostgreSQL connection, committing through a
  `PgStore` fenced by its shard's epoch: a commit after a takeover raises `StaleEpoch`
  and the process exits. The node's own appends share commits (the messenger's group
  appender) and its rings to other nodes leave coalesced (`cluster_rings.RingSender`);
  the agents' commits through the node are designed in docs/cluster.md, not built.
* ``on_gained(shard, epoch)``: the shard's agents that should run (status ``running``),
  or that have mail or a wake, are started from their PostgreSQL state and mailbox.
  ``on_lost``: they are stopped (SIGTERM, then SIGKILL after their shutdown time).
  ``on_fenced``: every replicated process is SIGKILLed at once (it must be quick; the
  epoch fence makes a commit that was already in flight harmless).

Agent ids of replicated agents are `REPLICATED_ID_BASE` plus a cluster-wide counter, so
that they never share an inbox path with the node's own (LMDB) agents.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from beamish.mailbox import pack

from .._paths import NodePaths
from .._types import ACCEPTS_MESSAGES, AgentInfo, AgentStatus
from ..cluster.forward import Owner
from ..cluster.lease import LeaseTiming
from ..cluster.membership import Membership
from ..cluster.placement import shard_of
from ..cluster.status import ClusterStatus
from ..errors import (
    AgentNotFound,
    ConfigError,
    SpawnError,
    StaleEpoch,
    StoreError,
)
from ..messaging.messenger import Messenger
from ..messaging.spawnargs import SpawnRequest
from ..messaging.wire import ring_frame, stop_frame
from ..store import open_postgres_store
from ..store.postgres.agents import PgStore
from ..store.postgres.cluster import connect_cluster
from ..store.postgres.fencing import Fence
from ..store.postgres.recheck import due_agents
from ..store.postgres.ring import PgRinger, PgRingListener
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord, Boot, NodeFields, ReplicaFence
from .cluster_rings import RingSender
from .cluster_routes import PinnedAgents
from .config import ClusterSection

log = logging.getLogger("beamish.cluster")

REPLICATED_ID_BASE = 1 << 40
DEFAULT_SHARDS = 64
RECHECK_S = 0.5  # the owner re-checks its shards' agents and mailboxes this often
# A replicated agent that exited by itself is started again after a delay that doubles
# with each exit in a row (from RESTART_DELAY_S up to RESTART_DELAY_MAX_S); a process that
# ran RESTART_RESET_S resets it.
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
RESTART_RESET_S = 10.0
_SHOULD_RUN = frozenset({AgentStatus.RUNNING, AgentStatus.STARTING, AgentStatus.RESTARTING})


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """A node's resolved ``[cluster]`` table.

    Attributes:
        cluster: the cluster's name.
        node: this node's name in it.
        dsn: the PostgreSQL DSN.
        address: how the others (and clients) reach this node (``advertise``, else
            ``listen``, else "").
        shards: the cluster's fixed shard count.
        timing: the lease's durations.
        max_moves: shards handed off per membership round (a join rebalances in about
            shards / nodes / max_moves rounds of a second).
    """

    cluster: str
    node: str
    dsn: str
    address: str
    shards: int = DEFAULT_SHARDS
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    max_moves: int = 8


def cluster_settings(section: ClusterSection | None,
                     env: dict[str, str] | None = None) -> ClusterSettings | None:
    """The settings of a node whose config has a ``[cluster]`` table with a PostgreSQL
    DSN (``postgres``, or ``$BEAMISH_POSTGRES``); None for a node that only listens, or
    has no ``[cluster]`` table (pure).

    Raises:
        ConfigError: ``postgres`` is set but ``name`` is not.
    """
    if section is None:
        return None
    environ = os.environ if env is None else env
    dsn = section.postgres or environ.get("BEAMISH_POSTGRES")
    if not dsn:
        return None
    if not section.name:
        raise ConfigError("cluster.name is required with cluster.postgres: every node of "
                          "a cluster names it (e.g. name = \"prod\")")
    node = section.node or socket.gethostname()
    return ClusterSettings(section.name, node, dsn,
                           section.advertise or section.listen or "")


def restart_delay(exits_in_a_row: int, ran_for: float) -> tuple[int, float]:
    """How long to wait before starting a replicated agent whose process exited by itself
    after running ``ran_for`` seconds, ``exits_in_a_row`` exits having come before it
    without a long run between them: the new count and the delay (pure)."""
    n = 0 if ran_for >= RESTART_RESET_S else exits_in_a_row
    return n + 1, min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** n)


@dataclass(slots=True)
class _Proc:
    """A replicated agent's process on this node."""

    name: str
    id: int
    shard: int
    epoch: int
    popen: subprocess.Popen[bytes]
    shutdown: float
    started: float = 0.0  # time.monotonic() at its start
    stopping: bool = False


class ClusterNode:
    """This node's part in its cluster (see the module docstring).

    Args:
        settings: the resolved ``[cluster]`` table.
        paths: the node's files (agents' inboxes and logs live under its dir).
        node_fields: the node's boot fields (its dir, message limit, log settings).
        sys_path: the module search path agents import with.
        local_store: the node's own (LMDB) store: names found there are its own agents.
    """

    def __init__(self, settings: ClusterSettings, paths: NodePaths, node_fields: NodeFields,
                 sys_path: list[str], local_store: Store) -> None:
        self.settings = settings
        self.paths = paths
        self.fields = replace(node_fields, store=settings.dsn, durability="replicated")
        self.sys_path = sys_path
        self.local_store = local_store
        self._lock = threading.RLock()
        self._epochs: dict[int, int] = {}  # shard -> epoch, as granted
        self._procs: dict[str, _Proc] = {}
        self._rings: set[str] = set()
        self._delays: dict[str, tuple[int, float]] = {}  # name -> (exits in a row, not before)
        self._rescan = False
        # ``on_exit(name, returncode, shard, epoch)``: a replicated agent's process exited
        # by itself while this node owned it (its watchers' Down: node/cluster_links.py).
        self.on_exit: Callable[[str, int, int, int], None] | None = None
        self._kick = threading.Event()
        self._stop = threading.Event()
        self.store: PgStore = open_postgres_store(settings.dsn, settings.cluster)
        self.ringer = PgRinger(settings.dsn, settings.cluster)
        self.rings = RingSender(self.ringer.ring_many)
        self.messenger = Messenger(paths, self.store, node_fields.max_message_bytes,
                                   on_append=self._appended)
        self.listener = PgRingListener(settings.dsn, settings.cluster, self._rung)
        self.membership = Membership(
            lambda: connect_cluster(settings.dsn, settings.cluster, settings.shards),
            settings.node, settings.address, self, timing=settings.timing,
            max_moves=settings.max_moves, agents=lambda: len(self._procs))
        self._worker = threading.Thread(target=self._work, name="beamish-cluster",
                                        daemon=True)
        self.pinned: PinnedAgents | None = None  # set by the daemon (cluster_routes.py)

    def start(self) -> None:
        """Listen for wake-ups, join the cluster and start taking shards."""
        self.listener.start()
        self.rings.start()
        self._worker.start()
        self.membership.start()
        log.info("node %s joins cluster %s (%s)", self.settings.node, self.settings.cluster,
                 self.settings.address or "no address")

    def close(self) -> None:
        """Stop the replicated agents (each shard handed back), leave the cluster, close."""
        self.membership.stop()
        self._stop.set()
        self._kick.set()
        self._worker.join(timeout=10.0)
        self.listener.stop()
        with self._lock:
            procs = list(self._procs.values())
        self._stop_procs(procs)
        self.messenger.close()
        self.rings.close()
        self.ringer.close()
        self.store.close()
        if self.pinned is not None:
            self.pinned.close()

    # -- the membership's listener --------------------------------------------------------------
    def on_gained(self, shard: int, epoch: int) -> None:
        """Own ``shard`` at ``epoch``: its agents are started by the worker (quick)."""
        with self._lock:
            self._epochs[shard] = epoch
            self._rescan = True
        self._kick.set()

    def on_lost(self, shard: int) -> None:
        """Stop ``shard``'s agents before returning (a hand-off follows)."""
        with self._lock:
            self._epochs.pop(shard, None)
            procs = [p for p in self._procs.values() if p.shard == shard]
            for p in procs:
                p.stopping = True
        self._stop_procs(procs)

    def on_fenced(self) -> None:
        """The lease may run out: SIGKILL every replicated process now (quick)."""
        with self._lock:
            self._epochs.clear()
            for p in self._procs.values():
                p.stopping = True
                _signal(p.popen, signal.SIGKILL)
        log.warning("node %s fenced itself: its replicated agents were killed",
                    self.settings.node)

    # -- asked by the node ------------------------------------------------------------------------
    def status(self) -> ClusterStatus:
        """This node's cluster state now."""
        with self._lock:
            running = sum(1 for p in self._procs.values() if p.popen.poll() is None)
        return ClusterStatus(self.settings.cluster, self.settings.node,
                             self.membership.incarnation, self.membership.fenced,
                             self.membership.held, running, self.settings.timing.ttl)

    def shard(self, name: str) -> int:
        """Agent ``name``'s shard."""
        return shard_of(name, self.settings.shards)

    def spawn(self, request: SpawnRequest) -> tuple[str, int | None]:
        """Register a replicated agent in PostgreSQL and have its owner start it; return
        its name and, when it runs on this node, its pid. Waits for its ``init`` (unless
        ``request.lazy``: registered asleep, started by its first message).

        Raises:
            ConfigError: no name given (a replicated agent's name is its address).
            SpawnError: the name is in use, or its init did not complete in time.
        """
        name = request.name
        if name is None:
            raise ConfigError("a replicated agent needs a name (spawn(..., name=...)): its "
                              "shard, and so its node, is computed from it")
        if request.supervisor != "root":
            raise ConfigError("supervisor=: replicated agents are not in a node's tree yet "
                              "(they run under their shard's owner, restarted while it "
                              "owns them)")

        def reserve(t: Txn) -> AgentRecord:
            old = t.get_agent(name)
            if old is not None and old.status in ACCEPTS_MESSAGES:
                raise SpawnError(name, f"the name is in use by a {old.status} replicated "
                                       "agent")
            if old is None and self.pinned is not None:
                self.pinned.refuse_pinned(name)
            agent_id = old.id if old is not None else \
                REPLICATED_ID_BASE + t.next_counter("agent_id")
            rec = AgentRecord(
                name, agent_id, request.cls, request.args, "root", request.restart,
                request.shutdown, request.limits,
                AgentStatus.SLEEPING if request.lazy else AgentStatus.RUNNING,
                created=time.time(), order=t.next_counter("order"),
                idle_timeout=request.idle_timeout)
            t.put_agent(rec)
            return rec
        rec = self.store.write(reserve)
        if request.lazy:
            return name, None
        self._appended(name)
        deadline = time.monotonic() + request.timeout
        while time.monotonic() < deadline:
            if self.store.read(lambda t: t.get_state(rec.id)) is not None:
                with self._lock:
                    proc = self._procs.get(name)
                return name, None if proc is None else proc.popen.pid
            time.sleep(0.02)
        raise SpawnError(name, f"its init did not complete within {request.timeout:g} s "
                               "on the node that owns its shard (see that node's log and "
                               f"logs/{name}.log there)")

    def info(self, name: str) -> AgentInfo:
        """Replicated agent ``name``'s snapshot: its record, mailbox and progress in
        PostgreSQL, and the node that owns its shard (its pid when it runs here).

        Raises:
            AgentNotFound: no replicated agent has that name.
        """
        def read(t: Txn) -> tuple[AgentRecord | None, int, int]:
            rec = t.get_agent(name)
            if rec is None:
                return None, 0, 0
            return rec, t.depth(rec.id), t.processed(rec.id)
        rec, depth, processed = self.store.read(read)
        if rec is None:
            raise AgentNotFound(name, "no agent of this node and no replicated agent of its "
                                      "cluster has that name")
        with self._lock:
            proc = self._procs.get(name)
        pid = proc.popen.pid if proc is not None and proc.popen.poll() is None else None
        return AgentInfo(name, pid, str(rec.status), rec.restarts, depth, processed, 0, 0.0,
                         rec.last_failure, rec.supervisor, rec.cls,
                         node=self.store.shard_owner(self.shard(name)))

    # -- rings ---------------------------------------------------------------------------------
    def _appended(self, name: str) -> None:
        """A message for ``name`` was committed here: ring its owner."""
        with self._lock:
            proc = self._procs.get(name)
            if proc is not None and proc.popen.poll() is None:
                return  # it runs here: the messenger rang its inbox already
            if self.shard(name) in self._epochs:
                self._rings.add(name)
                self._kick.set()
                return
        self.rings.ring(name)  # sent by its thread, coalesced: the ack does not wait

    def _rung(self, name: str | None) -> None:
        """A notification: ``name`` has mail (None: the listener reconnected)."""
        with self._lock:
            if name is None:
                self._rescan = True
            elif self.shard(name) in self._epochs:
                self._rings.add(name)
            else:
                return
        self._kick.set()

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            self._kick.wait(RECHECK_S)
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                self._reap()
                with self._lock:
                    rings, self._rings = self._rings, set()
                    rescan, self._rescan = self._rescan, False
                now = time.monotonic()
                if rescan or now >= next_check:
                    next_check = now + RECHECK_S
                    self._check_all()
                for name in rings:
                    self._wake(name)
            except StoreError as exc:
                log.warning("cluster worker: %s (retrying)", exc)
                self._stop.wait(RECHECK_S)

    def _reap(self) -> None:
        with self._lock:
            done = [p for p in self._procs.values() if p.popen.poll() is not None]
            for p in done:
                del self._procs[p.name]
        now = time.monotonic()
        for p in done:
            if not p.stopping:
                if self.on_exit is not None and self._epochs.get(p.shard) == p.epoch:
                    self.on_exit(p.name, p.popen.returncode, p.shard, p.epoch)
                n, _ = self._delays.get(p.name, (0, 0.0))
                n, delay = restart_delay(n, now - p.started)
                self._delays[p.name] = (n, now + delay)
                log.info("replicated agent %r (pid %d) exited with %s; started again in "
                         "%.1f s if this node still owns it", p.name, p.popen.pid,
                         p.popen.returncode, delay)

    def _check_all(self) -> None:
        """Start the agents of owned shards that should run or have mail or a wake; ring
        those that run and have mail (a lost ring). Reads only those agents (indexed:
        `due_agents`), so idle registered agents cost nothing."""
        with self._lock:
            owned = dict(self._epochs)
        if not owned:
            return
        shards = self.settings.shards
        for due in due_agents(self.store):
            rec = due.record
            if shard_of(rec.name, shards) not in owned:
                continue
            with self._lock:
                proc = self._procs.get(rec.name)
            if proc is not None:
                if due.has_mail and proc.popen.poll() is None:
                    self.messenger.ring(self.paths.agent_inbox(rec.id), ring_frame(0))
                continue
            if rec.status in _SHOULD_RUN or due.woken or (
                    rec.status in ACCEPTS_MESSAGES and due.has_mail):
                self._start(rec)

    def _wake(self, name: str) -> None:
        with self._lock:
            proc = self._procs.get(name)
        if proc is not None and proc.popen.poll() is None:
            self.messenger.ring(self.paths.agent_inbox(proc.id), ring_frame(0))
            return
        rec = self.store.read(lambda t: t.get_agent(name))
        if rec is not None and rec.status in ACCEPTS_MESSAGES:
            self._start(rec)

    def _start(self, rec: AgentRecord) -> None:
        """Start ``rec``'s process under this node's grant of its shard (marked running,
        a wake cleared, in a commit fenced by that grant)."""
        shard = self.shard(rec.name)
        with self._lock:
            epoch = self._epochs.get(shard)
            if epoch is None or rec.name in self._procs:
                return
        _, not_before = self._delays.get(rec.name, (0, 0.0))
        if time.monotonic() < not_before:
            return  # exited by itself lately: the re-check starts it when the delay is over
        fence = Fence(shard, self.settings.node, epoch)
        name = rec.name

        def mark(t: Txn) -> AgentRecord | None:
            cur = t.get_agent(name)
            if cur is None or cur.id != rec.id or cur.status not in ACCEPTS_MESSAGES:
                return None
            new = replace(cur, status=AgentStatus.RUNNING, incarnation=cur.incarnation + 1,
                          pid=None)
            t.put_agent(new)
            t.delete_wake(cur.id)
            return new
        try:
            cur = self.store.write_fenced(mark, [fence])
        except StaleEpoch as exc:
            log.info("agent %r not started: %s", name, exc)
            return
        if cur is None:
            return
        boot = Boot(self.fields, cur.id, name, cur.cls, cur.args, cur.incarnation,
                    sys_path=self.sys_path, limits=cur.limits, idle_timeout=None,
                    fence=ReplicaFence(self.settings.cluster, self.settings.node, shard,
                                       epoch))
        env = {**os.environ, "BEAMISH_NODE_PID": str(os.getpid())}
        popen = subprocess.Popen([sys.executable, "-m", "beamish.runtime.agent.replicated"],
                                 stdin=subprocess.PIPE, env=env, close_fds=True)
        assert popen.stdin is not None
        popen.stdin.write(pack(boot.to_wire()))
        popen.stdin.close()
        shutdown = cur.shutdown if isinstance(cur.shutdown, (int, float)) else 5.0
        with self._lock:
            self._procs[name] = _Proc(name, cur.id, shard, epoch, popen, float(shutdown),
                                      time.monotonic())
            lost = self._epochs.get(shard) != epoch
        if lost:  # lost or fenced while it started
            _signal(popen, signal.SIGKILL)
        log.info("replicated agent %r started (pid %d, shard %d, epoch %d)", name,
                 popen.pid, shard, epoch)

    def _stop_procs(self, procs: list[_Proc]) -> None:
        """Stop ``procs`` (a stop request, SIGTERM, then SIGKILL after their shutdown
        time) and wait for them."""
        for p in procs:
            p.stopping = True
            if p.popen.poll() is None:
                self.messenger.ring(self.paths.agent_inbox(p.id), stop_frame("shutdown"))
                _signal(p.popen, signal.SIGTERM)
        for p in procs:
            try:
                p.popen.wait(timeout=p.shutdown)
            except subprocess.TimeoutExpired:
                _signal(p.popen, signal.SIGKILL)
                p.popen.wait()
        with self._lock:
            for p in procs:
                if self._procs.get(p.name) is p:
                    del self._procs[p.name]


def _signal(popen: subprocess.Popen[bytes], signum: int) -> None:
    if popen.poll() is None:
        try:
            popen.send_signal(signum)
        except ProcessLookupError:
            pass  # it exited meanwhile: nothing left to stop


class ClusterMessenger(Messenger):
    """The front door's messenger on a cluster node: a name of this node's own (LMDB)
    agents goes to it as before; any other goes to the replicated agents' mailboxes in
    PostgreSQL, and their owner is rung.

    Args:
        paths: the node's files.
        store: the node's own store.
        max_message_bytes: the node's message size limit.
        cluster: the node's cluster part.
    """

    def __init__(self, paths: NodePaths, store: Store, max_message_bytes: int,
                 cluster: ClusterNode) -> None:
        super().__init__(paths, store, max_message_bytes)
        self.cluster = cluster

    def _is_local(self, name: str) -> bool:
        return self.store.read(lambda t: t.get_route(name)) is not None

    def _pinned_elsewhere(self, name: str) -> Owner | None:
        pinned = self.cluster.pinned
        return None if pinned is None else pinned.remote(name)

    def cast(self, name: str, msg: Any) -> None:
        """`Messenger.cast`, to the node's own agent, another node's (one hop) or a
        replicated one."""
        if self._is_local(name):
            super().cast(name, msg)
        elif (owner := self._pinned_elsewhere(name)) is not None:
            assert self.cluster.pinned is not None
            self.cluster.pinned.value(owner, name, {"op": "cast", "name": name, "msg": msg})
        else:
            self.cluster.messenger.cast(name, msg)

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """`Messenger.call`, to the node's own agent, another node's (one hop) or a
        replicated one."""
        if self._is_local(name):
            return super().call(name, msg, timeout)
        if (owner := self._pinned_elsewhere(name)) is not None:
            assert self.cluster.pinned is not None
            return self.cluster.pinned.value(owner, name, {"op": "call", "name": name,
                                                           "msg": msg, "timeout": timeout})
        return self.cluster.messenger.call(name, msg, timeout)

    def cast_many(self, items: Any) -> None:
        """`Messenger.cast_many`: all to the node's own agents, or all to replicated
        ones (one commit either way).

        Raises:
            ConfigError: the items mix the two.
        """
        items = list(items) if not isinstance(items, (str, bytes, dict)) else items
        names = {i[0] for i in items if isinstance(i, (tuple, list)) and len(i) == 2
                 and isinstance(i[0], str)}
        local = {n for n in names if self._is_local(n)}
        owners = {n: self._pinned_elsewhere(n) for n in names - local}
        nodes = {o.node for o in owners.values() if o is not None}
        if len(nodes) == 1 and not local and all(owners.values()):
            owner = next(iter(owners.values()))
            assert owner is not None and self.cluster.pinned is not None
            self.cluster.pinned.value(owner, ", ".join(sorted(names)), {
                "op": "cast_many", "items": [list(i) for i in items]})
        elif nodes:
            raise ConfigError("cast_many cannot mix agents of several nodes (one commit "
                              f"per node's store): these live on {sorted(nodes)} and "
                              "here; send one cast_many per node")
        elif not local and names:
            self.cluster.messenger.cast_many(items)
        elif local == names:
            super().cast_many(items)
        else:
            raise ConfigError("cast_many cannot mix this node's own agents with replicated "
                              "ones (one commit cannot span LMDB and PostgreSQL): send two")


def start_cluster_node(settings: ClusterSettings, paths: NodePaths, node_fields: NodeFields,
                       sys_path: list[str], local_store: Store) -> ClusterNode:
    """Open the cluster's store and start this node's membership.

    Raises:
        StoreUnavailable: PostgreSQL cannot be reached.
    """
    node = ClusterNode(settings, paths, node_fields, sys_path, local_store)
    node.start()
    return node
