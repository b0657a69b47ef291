"""A node in a cluster (``[cluster] postgres``): its membership, and the replicated
agents of the shards it owns.

    Membership (lease, shards) ──on_gained/on_lost/on_fenced──▶ ClusterNode
    any node: append in PostgreSQL (the ack) ─▶ NOTIFY beamish_ring ─▶ the owner's
        listener ─▶ ring the agent's inbox, or start its process
    each agent process: AgentLoop on a NodeStore fenced by (shard, node, epoch): its
        reads and commits go to the node's committer (cluster_commits.py)

* Messages to a replicated agent are appended to its mailbox in PostgreSQL by whichever
  node the client talks to, and the owner is rung through LISTEN/NOTIFY (no node-to-node
  hop): the acknowledgement is the commit in the store of record, so a cast is accepted
  while the owner is dying or being replaced, and the new owner finds it. A lost
  notification costs latency: the owner re-checks its shards' mailboxes every
  `RECHECK_S`.
* Each awake replicated agent is its own process (a fresh interpreter,
  ``agent/replicated.py``) without a PostgreSQL connection: it reads and commits through
  the node's committer (`cluster_commits.NodeCommitter`: two connections for all the
  node's agents, every set queued meanwhile in one transaction), each commit fenced by
  its shard's epoch: a commit after a takeover raises `StaleEpoch` and the process
  exits. The node's own appends share commits (the messenger's group appender) and its
  rings to other nodes leave coalesced (`cluster_rings.RingSender`).
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
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from beamish.mailbox import pack

from .._paths import NodePaths
from .._types import ACCEPTS_MESSAGES, AgentInfo, AgentStatus
from ..cluster.forward import Owner
from ..cluster.lease import LeaseTiming
from ..cluster.membership import Membership
from ..cluster.placement import shard_of
from ..cluster.restarts import RestartIntensity, Verdict, after_exit
from ..cluster.rounds import run_rounds
from ..cluster.status import ClusterStatus
from ..errors import (
    AgentNotFound,
    AlreadyRunning,
    ConfigError,
    NodeDown,
    SpawnError,
    StaleEpoch,
    StoreError,
)
from ..messaging.messenger import Messenger
from ..messaging.spawnargs import SpawnRequest
from ..messaging.wire import ring_frame, stop_frame
from ..store import open_postgres_store
from ..store.postgres.agents import PgStore
from ..store.postgres.append import PgAppender
from ..store.postgres.cluster import connect_cluster
from ..store.postgres.fencing import Fence
from ..store.postgres.names import pinned_holder
from ..store.postgres.recheck import due_agents
from ..store.postgres.ring import PgRinger, PgRingListener
from ..store.postgres.sweep import Sweeper, sweep
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord, Boot, NodeFields, ReplicaFence, Reply, ReplyError
from .classify import ExitEvidence, classify
from .cluster_append import ACCEPTING, SLEEPING, NotReplicated, ReplicatedMessenger
from .cluster_commits import NodeCommitter
from .cluster_rings import RingSender
from .cluster_routes import PinnedAgents
from .config import ClusterSection
from .timers import FIRE_BATCH

log = logging.getLogger("beamish.cluster")

REPLICATED_ID_BASE = 1 << 40
DEFAULT_SHARDS = 64
RECHECK_S = 0.5  # the owner re-checks its shards' agents and mailboxes this often
_SHOULD_RUN = frozenset({AgentStatus.RUNNING, AgentStatus.STARTING, AgentStatus.RESTARTING,
                         AgentStatus.BACKOFF})
# A notification that asks the owner to stop, sleep, delete or restart an agent:
# MARK op MARK request-id MARK name (a name never holds the mark: `check_name`).
OP_MARK = "\x1e"
OPS = ("stop", "sleep", "delete", "restart")
OP_RERING_S = 1.0  # a request not answered yet is notified again this often
# The owner notifies the asking node once a request's answer is committed (ANSWERED in
# the op's place); the asker looks for it at least this often anyway (a lost notification).
ANSWERED = "answered"
ANSWER_RECHECK_S = 0.25


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
        intensity: how often a replicated agent may restart before it is left failed.
    """

    cluster: str
    node: str
    dsn: str
    address: str
    shards: int = DEFAULT_SHARDS
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    max_moves: int = 8
    intensity: RestartIntensity = field(default_factory=RestartIntensity)


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
    incarnation: int = 0
    idle_timeout: float | None = None
    idle_since: tuple[int, float] = (-1, 0.0)  # (messages handled, since when) unchanged


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
        self._releasing: dict[int, int] = {}  # shard -> epoch, its agents being stopped
        self._procs: dict[str, _Proc] = {}
        self._rings: set[str] = set()
        # name -> (its restarts within the intensity window, not restarted before)
        self._delays: dict[str, tuple[tuple[float, ...], float]] = {}
        self._held: dict[str, str] = {}  # name -> the request (stop, ...) the owner runs
        self._asked: dict[bytes, threading.Event] = {}  # request id -> set when answered
        self.emit: Callable[[str, str, str, str], None] = lambda *event: None
        self._names = _NameLocks()  # orders a start of an agent and a request about it
        self._rescan = False
        self._next_check = 0.0  # when the worker re-checks its shards next
        # ``on_exit(name, returncode, shard, epoch)``: a replicated agent's process exited
        # by itself while this node owned it (its watchers' Down: node/cluster_links.py).
        self.on_exit: Callable[[str, int, int, int], None] | None = None
        # ``on_stopped(name, shard, epoch)``: stopped or deleted through the node, as owner.
        self.on_stopped: Callable[[str, int, int], None] | None = None
        self._kick = threading.Event()
        self._sweeper = Sweeper()
        self._stop = threading.Event()
        self.store: PgStore = open_postgres_store(settings.dsn, settings.cluster)
        self.ringer = PgRinger(settings.dsn, settings.cluster)
        self.rings = RingSender(self.ringer.ring_many)
        self.appender = PgAppender(settings.dsn, settings.cluster, ACCEPTING, SLEEPING)
        self.messenger = ReplicatedMessenger(
            paths, self.store, node_fields.max_message_bytes, self.appender,
            lambda name: self.shard(name) not in self._epochs,
            on_append=lambda name: self._appended(name, notified=True))
        self.listener = PgRingListener(settings.dsn, settings.cluster, self._rung)
        # The agents' reads and commits, on two connections for all (cluster_commits.py).
        self.commits = NodeCommitter(
            os.path.join(paths.run, "commits.sock"),
            lambda: open_postgres_store(settings.dsn, settings.cluster), settings.node,
            self._granted, lambda: self.membership.fenced)
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
        self.commits.start()
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
        self.commits.close()
        self.messenger.close()
        self.appender.close()
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
            epoch = self._epochs.pop(shard, None)
            if epoch is not None:  # still held in the table: their last commits land
                self._releasing[shard] = epoch
            procs = [p for p in self._procs.values() if p.shard == shard]
            for p in procs:
                p.stopping = True
        try:
            self._stop_procs(procs)
        finally:
            with self._lock:
                self._releasing.pop(shard, None)

    def on_fenced(self) -> None:
        """The lease may run out: SIGKILL every replicated process now (quick)."""
        with self._lock:
            self._epochs.clear()
            self._releasing.clear()
            for p in self._procs.values():
                p.stopping = True
                _signal(p.popen, signal.SIGKILL)
        self.commits.fence()  # their queued commits: dropped, unanswered
        log.warning("node %s fenced itself: its replicated agents were killed",
                    self.settings.node)

    def _granted(self, shard: int) -> int | None:
        """The epoch at which this node holds ``shard`` now, or is handing it off (its
        agents' last commits before they stop); None: not held."""
        with self._lock:
            epoch = self._epochs.get(shard)
            return self._releasing.get(shard) if epoch is None else epoch

    # -- asked by the node ------------------------------------------------------------------------
    def status(self) -> ClusterStatus:
        """This node's cluster state now."""
        with self._lock:
            running = sum(1 for p in self._procs.values() if p.popen.poll() is None)
        return ClusterStatus(self.settings.cluster, self.settings.node,
                             self.membership.incarnation, self.membership.fenced,
                             self.membership.held, running, self.settings.timing.ttl)

    def runs(self, name: str, incarnation: int) -> bool:
        """Whether replicated agent ``name``'s process of ``incarnation`` runs here (a
        request from its process: node/cluster_links.py)."""
        with self._lock:
            proc = self._procs.get(name)
        return proc is not None and proc.incarnation == incarnation

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
            holder = pinned_holder(t, name) if old is None else None  # after its lock
            if holder is not None:
                raise SpawnError(name, f"the name is in use by an agent on node {holder!r} "
                                       "(names are cluster-wide)")
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

    def ps_rows(self, status: str | None, supervisor: str | None, limit: int | None,
                after: str | None) -> tuple[list[AgentInfo], int]:
        """A page of replicated agents in name order after ``after`` (with ``status``,
        under ``supervisor``), at most ``limit``, and how many more match: one read of
        their records, mailbox depths and progress, and one of the shard owners."""
        def read(t: Txn) -> tuple[list[tuple[AgentRecord, int, int]], int]:
            recs, more = t.agents_page(after, limit, status, supervisor)
            return [(r, t.depth(r.id), t.processed(r.id)) for r in recs], more
        rows, more = self.store.read(read)
        owners = self.store.shard_owners() if rows else {}
        with self._lock:
            pids = {n: p.popen.pid for n, p in self._procs.items() if p.popen.poll() is None}
        return [AgentInfo(rec.name, pids.get(rec.name), str(rec.status), rec.restarts, depth,
                          processed, 0, 0.0, rec.last_failure, rec.supervisor, rec.cls,
                          node=owners.get(self.shard(rec.name)))
                for rec, depth, processed in rows], more

    # -- rings ---------------------------------------------------------------------------------
    def appended(self, name: str) -> None:
        """A message for ``name`` was committed in PostgreSQL outside the messenger (a
        resent dead letter): ring it if it runs here, else its owner."""
        with self._lock:
            proc = self._procs.get(name)
        if proc is not None and proc.popen.poll() is None:
            self.messenger.ring(self.paths.agent_inbox(proc.id), ring_frame(0))
            return
        self._appended(name)

    def _appended(self, name: str, notified: bool = False) -> None:
        """A message for ``name`` was committed here: ring its owner (``notified``: the
        commit notified it already if another node owns it)."""
        with self._lock:
            proc = self._procs.get(name)
            if proc is not None and proc.popen.poll() is None:
                return  # it runs here: the messenger rang its inbox already
            if self.shard(name) in self._epochs:
                self._rings.add(name)
                self._kick.set()
                return
        if not notified:
            self.rings.ring(name)  # sent by its thread, coalesced: the ack does not wait

    def _rung(self, name: str | None) -> None:
        """A notification: ``name`` has mail (None: the listener reconnected), or a
        request to stop, sleep, delete or restart an agent (`OP_MARK`)."""
        if name is not None and name.startswith(OP_MARK):
            self._requested(name)
            return
        with self._lock:
            proc = None if name is None else self._procs.get(name)
            if name is None:
                self._rescan = True
            elif self.shard(name) not in self._epochs:
                return
            elif proc is None or proc.popen.poll() is not None:
                self._rings.add(name)
        if proc is not None and proc.popen.poll() is None:
            # It runs here: rung from this thread, without the worker's hop.
            self.messenger.ring(self.paths.agent_inbox(proc.id), ring_frame(0))
            return
        self._kick.set()

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        run_rounds(self._stop, self._kick, RECHECK_S, self._round, "cluster worker")

    def _round(self) -> None:
        self._reap()
        with self._lock:
            rings, self._rings = self._rings, set()
            rescan, self._rescan = self._rescan, False
        now = time.monotonic()
        if rescan or now >= self._next_check:
            self._next_check = now + RECHECK_S
            self._check_all()
            self._fire_timers()
        for name in rings:
            self._wake(name)
        # A fenced or unjoined node may not judge the others' leases: it does not sweep.
        if self._sweeper.due(now) and self.membership.incarnation is not None \
                and not self.membership.fenced:
            self._sweep(now)
        if self.pinned is not None:  # routes of deleted agents left behind
            self.pinned.retry_drops(self.membership.incarnation is not None
                                    and not self.membership.fenced)

    def _sweep(self, now: float) -> None:
        """Remove the rows nobody will take any more (``store/postgres/sweep.py``)."""
        try:
            swept = self.store.write(lambda t: sweep(t, self._sweeper.limit))
        except StoreError as exc:
            log.warning("cluster sweep failed (%s): tried again in %g s", exc,
                        self._sweeper.every)
            self._sweeper.done(None, now)
            return
        self._sweeper.done(swept, now)
        if swept.replies or swept.signals or swept.watches:
            log.info("cluster sweep: %d expired replies, %d link signals and %d monitors "
                     "of gone node incarnations removed", swept.replies, swept.signals,
                     swept.watches)

    def _reap(self) -> None:
        with self._lock:
            done = [p for p in self._procs.values() if p.popen.poll() is not None]
            for p in done:
                del self._procs[p.name]
        for p in done:
            if not p.stopping:
                if self.on_exit is not None and self._epochs.get(p.shard) == p.epoch:
                    self.on_exit(p.name, p.popen.returncode, p.shard, p.epoch)
                self._exited(p)

    def _exited(self, p: _Proc) -> None:
        """``p`` exited by itself: classify the exit from its report (OS first, as on one
        node) and restart it, or leave it exited or failed (`restarts.after_exit`), in a
        commit fenced by the grant it ran under."""
        now = time.monotonic()
        history, _ = self._delays.get(p.name, ((), 0.0))
        decided: list[Any] = []

        def record(t: Txn) -> AgentRecord | None:
            report = t.pop_failure(p.id)
            cur = t.get_agent(p.name)
            if cur is None or cur.id != p.id or cur.status not in _SHOULD_RUN:
                return None  # stopped, deleted or re-spawned meanwhile
            verdict = classify(ExitEvidence(p.popen.returncode, p.incarnation, report))
            failure = verdict.failure
            if failure is not None and verdict.charge is not None:
                attempt = t.bump_attempts(p.id, verdict.charge)
                for seq in verdict.also_charge:
                    t.bump_attempts(p.id, seq)
                failure = replace(failure, attempt=attempt)
            after = after_exit(cur.restart, verdict.reason.is_normal, history, now,
                               now - p.started, self.settings.intensity)
            status = {Verdict.RESTART: AgentStatus.BACKOFF, Verdict.FAILED: AgentStatus.FAILED,
                      Verdict.EXITED: AgentStatus.EXITED}[after.verdict]
            new = replace(cur, status=status, pid=None,
                          restarts=cur.restarts + (after.verdict is Verdict.RESTART),
                          last_failure=failure or cur.last_failure,
                          recover_pending=failure is not None
                          and after.verdict is Verdict.RESTART)
            t.put_agent(new)
            decided[:] = [after, verdict.reason]
            return new
        try:
            new = self.store.write_fenced(record, [Fence(p.shard, self.settings.node,
                                                         p.epoch)])
        except StaleEpoch:
            return  # no longer this node's: its new owner decides
        if new is None or not decided:
            return
        after, reason = decided
        self._delays[p.name] = (after.history, now + after.delay)
        self.emit("exited", p.name, "root", str(reason))
        if after.verdict is Verdict.RESTART:
            self.emit("backoff", p.name, "root", f"{after.delay:g}s")
        else:
            self.emit(str(after.verdict), p.name, "root",
                      f"{len(after.history)} restarts within "
                      f"{self.settings.intensity.max_seconds:g}s"
                      if after.verdict is Verdict.FAILED else str(reason))
        log.info("replicated agent %r (pid %d) exited (%s): %s%s", p.name, p.popen.pid,
                 reason, after.verdict, f" in {after.delay:.1f} s"
                 if after.verdict is Verdict.RESTART else "")

    def _check_all(self) -> None:
        """Start the agents of owned shards that should run or have mail or a wake; ring
        those that run and have mail (a lost ring). Reads only those agents (indexed:
        `due_agents`), so idle registered agents cost nothing."""
        with self._lock:
            owned = dict(self._epochs)
        if not owned:
            return
        shards = self.settings.shards
        with self._lock:
            idle_watch = {p.id: n for n, p in self._procs.items() if p.idle_timeout is not None}
        progress: dict[str, int] = {}
        if idle_watch:  # the processed counts of the few agents whose idleness is watched
            progress = self.store.read(
                lambda t: {n: t.processed(i) for i, n in idle_watch.items()})
        now = time.monotonic()
        for due in due_agents(self.store):
            rec = due.record
            if shard_of(rec.name, shards) not in owned:
                continue
            with self._lock:
                proc = self._procs.get(rec.name)
            if proc is not None:
                if due.has_mail and proc.popen.poll() is None:
                    self.messenger.ring(self.paths.agent_inbox(rec.id), ring_frame(0))
                elif rec.name in progress and proc.idle_timeout is not None:
                    self._watch_idle(proc, progress[rec.name], now)
                continue
            if rec.status in _SHOULD_RUN or due.woken or (
                    rec.status in ACCEPTS_MESSAGES and due.has_mail):
                self._start(rec)

    def _watch_idle(self, p: _Proc, processed: int, now: float) -> None:
        """``p`` has no mail and has handled ``processed`` messages: put it to sleep once
        that count stayed the same for its ``idle_timeout`` (judged by its owner at each
        re-check, from PostgreSQL: no hint from the agent)."""
        assert p.idle_timeout is not None
        if p.idle_since[0] != processed:
            p.idle_since = (processed, now)
        elif now - p.idle_since[1] >= p.idle_timeout and not p.stopping:
            p.idle_since = (processed, math.inf)  # once
            threading.Thread(target=self._apply, args=("sleep", None, p.name, "idle"),
                             name="beamish-cluster-op", daemon=True).start()

    def _fire_timers(self) -> None:
        """Fire the cluster's due durable timers of replicated agents (any node may: each
        is taken and its message appended in one transaction, so it fires once), then
        ring their owners."""
        now_ns = time.time_ns()
        due = self.store.read(lambda t: t.next_timer_due())
        while due is not None and due <= now_ns:
            fired = self.store.write(fire_timers_txn(now_ns))
            for name in fired:
                self.appended(name)  # the timer's commit rang nothing: ring it here too
            if len(fired) < FIRE_BATCH:
                return

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
        if not self._names.acquire(rec.name, blocking=False):
            return  # a stop, sleep, delete or restart of it runs: the re-check sees after
        try:
            self._start_locked(rec)
        finally:
            self._names.release(rec.name)

    def _start_locked(self, rec: AgentRecord) -> None:
        shard = self.shard(rec.name)
        with self._lock:
            epoch = self._epochs.get(shard)
            if epoch is None or rec.name in self._procs or rec.name in self._held:
                return
        _, not_before = self._delays.get(rec.name, ((), 0.0))
        if time.monotonic() < not_before:
            return  # exited by itself lately: the re-check starts it when the delay is over
        fence = Fence(shard, self.settings.node, epoch)
        name = rec.name

        def mark(t: Txn) -> AgentRecord | None:
            cur = t.get_agent(name)
            if cur is None or cur.id != rec.id or cur.status not in ACCEPTS_MESSAGES:
                return None
            new = replace(cur, status=AgentStatus.RUNNING, incarnation=cur.incarnation + 1,
                          pid=None, recover_pending=False)
            t.put_agent(new)
            t.delete_wake(cur.id)
            return replace(new, recover_pending=cur.recover_pending)
        try:
            cur = self.store.write_fenced(mark, [fence])
        except StaleEpoch as exc:
            log.info("agent %r not started: %s", name, exc)
            return
        if cur is None:
            return
        boot = Boot(self.fields, cur.id, name, cur.cls, cur.args, cur.incarnation,
                    failure=cur.last_failure if cur.recover_pending else None,
                    sys_path=self.sys_path, limits=cur.limits, idle_timeout=None,
                    fence=ReplicaFence(self.settings.cluster, self.settings.node, shard,
                                       epoch, self.commits.address.removeprefix("ipc://")))
        env = {**os.environ, "BEAMISH_NODE_PID": str(os.getpid())}
        popen = subprocess.Popen([sys.executable, "-m", "beamish.runtime.agent.replicated"],
                                 stdin=subprocess.PIPE, env=env, close_fds=True)
        assert popen.stdin is not None
        popen.stdin.write(pack(boot.to_wire()))
        popen.stdin.close()
        shutdown = cur.shutdown if isinstance(cur.shutdown, (int, float)) else 5.0
        with self._lock:
            self._procs[name] = _Proc(name, cur.id, shard, epoch, popen, float(shutdown),
                                      time.monotonic(), incarnation=cur.incarnation,
                                      idle_timeout=cur.idle_timeout)
            lost = self._epochs.get(shard) != epoch
            if lost:  # a move, not an exit: no classification, no Down (see _reap)
                self._procs[name].stopping = True
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


    # -- stop, sleep, delete and restart, asked on any node ---------------------------------------
    def request(self, name: str, op: str, timeout: float = 60.0) -> AgentRecord:
        """Have the owner of replicated agent ``name``'s shard ``op`` it ("stop",
        "sleep", "delete" or "restart": see `refusal` and `_apply`) and wait until it did;
        return the agent's record as it was asked. On the owner it runs here; from another
        node the owner is notified (again every `OP_RERING_S` until it answers), and its
        answer is a reply in PostgreSQL, committed with the change.

        Raises:
            AgentNotFound: no replicated agent has that name, or it cannot be put to
                sleep (not running).
            AlreadyRunning: a restart of one that runs or sleeps.
            NodeDown: no owner answered within ``timeout`` (its shard being taken over);
                the request may still be carried out.
        """
        rec = self.store.read(lambda t: t.get_agent(name))
        if rec is None:
            raise AgentNotFound(name, "no agent of this node and no replicated agent of its "
                                      "cluster has that name")
        request_id = uuid.uuid4().bytes
        deadline = time.monotonic() + timeout
        answered = self._asked[request_id] = threading.Event()
        try:
            return self._request(rec, name, op, request_id, answered, deadline, timeout)
        finally:
            self._asked.pop(request_id, None)

    def _request(self, rec: AgentRecord, name: str, op: str, request_id: bytes,
                 answered: threading.Event, deadline: float, timeout: float) -> AgentRecord:
        while True:
            if self.shard(name) in self._epochs:
                self._apply(op, request_id, name)
            else:
                try:
                    self.ringer.ring(OP_MARK.join(("", op, request_id.hex(), name)))
                except StoreError as exc:
                    log.warning("cannot ask the owner to %s agent %r yet: %s", op, name, exc)
            until = min(deadline, time.monotonic() + OP_RERING_S)
            while True:
                answered.clear()
                reply = self.store.write(lambda t: t.pop_reply(request_id))
                if reply is not None:
                    if reply.ok:
                        return rec
                    error = reply.error or ReplyError("AgentNotFound", "")
                    if error.type == "AlreadyRunning":
                        raise AlreadyRunning(name, error.message)
                    raise AgentNotFound(name, error.message)
                if time.monotonic() >= until:
                    break
                # Woken by the owner's notification, else a look now and then.
                answered.wait(min(ANSWER_RECHECK_S, max(0.0, until - time.monotonic())))
            if time.monotonic() >= deadline:
                owner = self.store.shard_owner(self.shard(name))
                raise NodeDown(owner or "(none)", f"the owner of replicated agent {name!r}'s "
                               f"shard did not {op} it within {timeout:g} s (it may still "
                               "do it: check `beamish info`)")

    def _requested(self, payload: str) -> None:
        """A notification asking this node to run a request (if it owns the agent)."""
        parts = payload.split(OP_MARK, 3)
        if len(parts) != 4 or parts[1] not in (*OPS, ANSWERED):
            return
        _, op, hex_id, name = parts
        if op == ANSWERED:  # the answer to one of this node's requests is committed
            event = self._asked.get(bytes.fromhex(hex_id))
            if event is not None:
                event.set()
            return
        with self._lock:
            if self.shard(name) not in self._epochs:
                return
        threading.Thread(target=self._apply, args=(op, bytes.fromhex(hex_id), name),
                         name="beamish-cluster-op", daemon=True).start()

    def _apply(self, op: str, request_id: bytes | None, name: str,
               reason: str = "requested") -> None:
        """Run request ``op`` on agent ``name`` as its owner: its process stopped after its
        current group (``terminate("normal")``, or ``("sleep", state)``), then its record
        changed and the answer put in one commit fenced by this node's grant. Nothing if
        this node does not own it (any more)."""
        shard = self.shard(name)
        with self._names.held(name):
            with self._lock:
                epoch = self._epochs.get(shard)
                if epoch is None:
                    return
                self._held[name] = op
                proc = self._procs.get(name)
                if proc is not None:
                    proc.stopping = True
            try:
                rec = self.store.read(lambda t: t.get_agent(name))
                problem = refusal(op, rec)
                if problem is None and proc is not None:
                    self._stop_one(proc, "sleep" if op == "sleep" else "normal")
                elif proc is not None:
                    proc.stopping = False
                error = None if problem is None else ReplyError(*problem)

                def commit(t: Txn) -> bool:
                    cur = t.get_agent(name)
                    changed = error is None and cur is not None and rec is not None \
                        and cur.id == rec.id
                    if changed and cur is not None:
                        if op == "delete":
                            t.erase_agent_data(cur.id)
                            t.delete_agent(name)
                        else:
                            t.pop_failure(cur.id)
                            t.put_agent(replace(cur, status=OP_STATUS[op], pid=None,
                                                recover_pending=False))
                    if request_id is not None:
                        t.put_reply(request_id, Reply(error is None, time.time() + 60.0,
                                                      pack(None), error))
                    return changed
                changed = self.store.write_fenced(commit, [Fence(shard, self.settings.node,
                                                                 epoch)])
            except StaleEpoch:
                return  # no longer ours: the requester asks again, its new owner answers
            finally:
                with self._lock:
                    self._held.pop(name, None)
        if request_id is not None and (mine := self._asked.get(request_id)) is not None:
            mine.set()  # asked here
        elif request_id is not None:
            try:  # asked by another node: wake its wait
                self.ringer.ring(OP_MARK.join(("", ANSWERED, request_id.hex(), name)))
            except StoreError as exc:
                log.warning("cannot tell the asking node that %s of %r is done (it looks "
                            "again within %g s): %s", op, name, ANSWER_RECHECK_S, exc)
        if changed:
            self._delays.pop(name, None)
            if op in ("stop", "delete") and self.on_stopped is not None:
                self.on_stopped(name, shard, epoch)  # its watchers' Down (cluster_links.py)
            self.emit(OP_EVENT[op], name, "root", reason if op == "sleep" else "normal")
            log.info("replicated agent %r: %s done", name, op)
            if op == "restart":
                self._wake(name)

    def _stop_one(self, p: _Proc, reason: str) -> None:
        """Stop ``p`` after its current group with ``reason`` (SIGKILL after its shutdown
        time) and wait for it."""
        if p.popen.poll() is None:
            self.messenger.ring(self.paths.agent_inbox(p.id), stop_frame(reason))
        try:
            p.popen.wait(timeout=p.shutdown)
        except subprocess.TimeoutExpired:
            _signal(p.popen, signal.SIGKILL)
            p.popen.wait()
            self.emit("killed", p.name, "root", f"did not stop within {p.shutdown:g}s")
        with self._lock:
            if self._procs.get(p.name) is p:
                del self._procs[p.name]


def fire_timers_txn(now_ns: int) -> Callable[[Txn], list[str]]:
    """The transaction that fires up to `FIRE_BATCH` durable timers due at ``now_ns``
    (each removed and its message appended together; a sleeping agent marked to be woken)
    and returns the names of their agents."""
    def txn(t: Txn) -> list[str]:
        names = []
        timers, _ = t.take_due_timers(now_ns, FIRE_BATCH)
        for timer in timers:
            t.append_packed(timer.agent_id, pack(timer.message(now_ns / 1e9).to_wire()))
            rec = t.get_agent(timer.name) if timer.name else None
            if rec is not None and rec.id == timer.agent_id:
                if rec.status == AgentStatus.SLEEPING:
                    t.put_wake(rec.id, rec.name)
                names.append(rec.name)
        return names
    return txn


OP_STATUS = {"stop": AgentStatus.STOPPED, "sleep": AgentStatus.SLEEPING,
             "restart": AgentStatus.RUNNING}
OP_EVENT = {"stop": "stopped", "sleep": "slept", "delete": "deleted", "restart": "restarted"}


def refusal(op: str, rec: AgentRecord | None) -> tuple[str, str] | None:
    """Why the owner refuses request ``op`` about an agent whose record is ``rec`` (the
    error's type and message), or None: it goes ahead (pure). A stop, sleep or delete of
    an agent gone meanwhile is done already; a sleep is only for a running agent (one
    asleep is left so); a restart only for a failed, stopped or exited one."""
    if rec is None:
        return None if op != "restart" else ("AgentNotFound", "it was deleted meanwhile")
    if op == "sleep" and rec.status not in _SHOULD_RUN | {AgentStatus.SLEEPING}:
        return ("AgentNotFound", f"it is {rec.status}: only a running agent can be put to "
                                 "sleep")
    if op == "restart" and rec.status in ACCEPTS_MESSAGES:
        return ("AlreadyRunning", str(rec.status))
    return None


class _NameLocks:
    """One lock per agent name, kept only while a thread holds or waits for it (a stop of
    one agent must not hold up the starts of the others of its shard)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # name -> (lock, users)

    def acquire(self, name: str, blocking: bool = True) -> bool:
        """Take ``name``'s lock (False: not taken, as ``blocking`` was False)."""
        with self._lock:
            lock, users = self._locks.get(name) or (threading.Lock(), 0)
            self._locks[name] = (lock, users + 1)
        if lock.acquire(blocking):
            return True
        self._leave(name)
        return False

    def release(self, name: str) -> None:
        """Give ``name``'s lock back."""
        with self._lock:
            lock, _ = self._locks[name]
        lock.release()
        self._leave(name)

    @contextmanager
    def held(self, name: str) -> Iterator[None]:
        """``name``'s lock, held for the block."""
        self.acquire(name)
        try:
            yield
        finally:
            self.release(name)

    def _leave(self, name: str) -> None:
        with self._lock:
            lock, users = self._locks[name]
            if users <= 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)


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
        """`Messenger.cast`, to the node's own agent, a replicated one or another node's
        (one hop). A name is tried as a replicated agent's first: the append looks it up
        in the statement that appends, and only a name it does not know costs a route
        lookup."""
        if self._is_local(name):
            super().cast(name, msg)
            return
        try:
            self.cluster.messenger.cast(name, msg)
        except NotReplicated:
            owner = self._pinned_elsewhere(name)
            if owner is None:
                raise AgentNotFound(name) from None
            assert self.cluster.pinned is not None
            self.cluster.pinned.value(owner, name, {"op": "cast", "name": name, "msg": msg})

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """`Messenger.call`, to the node's own agent, a replicated one or another node's
        (one hop; tried in that order, as `cast`)."""
        if self._is_local(name):
            return super().call(name, msg, timeout)
        try:
            return self.cluster.messenger.call(name, msg, timeout)
        except NotReplicated:
            owner = self._pinned_elsewhere(name)
            if owner is None:
                raise AgentNotFound(name) from None
        assert self.cluster.pinned is not None
        return self.cluster.pinned.value(owner, name, {"op": "call", "name": name,
                                                       "msg": msg, "timeout": timeout})

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
