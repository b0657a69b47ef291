"""Monitors and links across nodes, as Erlang's: ``self.ctx.monitor(name, node="n2")`` and
``self.ctx.link(name, node="n2")`` from an agent of this node to an agent of node n2.

Each remote monitor or link has a number (``ref``) and, on each of its two nodes, a
*stand-in*: an `Incarnation` with ``remote`` set, which stands for the other node's agent
in this node's `LinkTable`. So the local rules (`LinkTable.exited`, ``trap_exits``, the
sleeping agents' holds) apply unchanged on both sides:

    node A: watcher w ──monitor──▶ stand-in of x (ref 7)     requests and exits travel
    node B: stand-in of w (ref 7) ──monitor──▶ x             as rows of
                                                             beamish_link_signals
                                                             (store/postgres/links.py)

* a request (A ▶ B): B attaches the stand-in of w to x if x runs (or sleeps) and answers
  ``attached``; if not, it answers with an exit ``noproc``. The request returns once
  answered (up to `ANSWER_WAIT_S`), so that an exit of x after ``monitor`` returned is
  reported with its own reason, as a local monitor's is;
* when a local agent exits (`AgentSpawner.fire` calls `ClusterLinks.exited` first), each
  stand-in it is related to is dropped and the other node is sent an exit signal; that
  node fires its own stand-in of the agent with the same reason: a Down to a watcher, an
  Exit to a linked agent that traps exits, a kill of one that does not (abnormal exits);
* when a node is lost (its lease expired, or it joined again as a new incarnation), each
  stand-in of its agents fires with reason ``noconnection`` (abnormal), as Erlang's: every
  watcher of one of its agents gets ``Down(name, "noconnection")``, every agent linked to
  one is killed or gets ``Exit(name, "noconnection")``. It is checked every `CHECK_S`.

A monitor of a *replicated* agent (``self.ctx.monitor(name)``, no ``node=``) has a
stand-in on the watcher's node only: it is kept in PostgreSQL by the agent's name, and
the node that owns the agent when its process exits by itself fires it
(`replicated_exited`); a move to another node fires nothing (docs/cluster.md says why).

Each signal is taken (deleted) by one ``DELETE ... RETURNING`` of its receiver, so it is
handled once; it is lost only if the receiving node dies between that commit and its
local delivery, and then the agent it was for died with its node (a monitor or link
belongs to a process, as in Erlang).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from beamish.mailbox import pack
from beamish.supervisor import ExitReason

from .._values import ACCEPTS_MESSAGES
from ..cluster.rounds import run_rounds
from ..errors import StoreError
from ..store.postgres.links import (
    REPLICATED_WATCHER,
    LinkSignal,
    PgLinkListener,
    PgLinks,
    SignalOp,
)
from ..store.records import Message
from .links import NOPROC, LinkTable, down_message
from .sessions import Sessions
from .spawner import AgentSpawner, Incarnation

log = logging.getLogger("beamish.cluster")

NOCONNECTION = "noconnection"
RECHECK_S = 0.5  # signals are taken at least this often (a lost NOTIFY costs this much)
CHECK_S = 1.0  # the leases of the nodes at the other end are checked this often
# How long a monitor or link request waits for the other node's answer (attached, or
# noproc) before it returns: then a crash that follows is reported with its own reason.
# Past it the request stays pending; a lost node is reported as noconnection.
ANSWER_WAIT_S = 5.0
_ACCEPTS = sorted(str(s) for s in ACCEPTS_MESSAGES)  # statuses of agents that can run


@dataclass(slots=True)
class _StandIn:
    """One remote monitor or link, seen from this node."""

    ref: int
    incn: Incarnation  # stands for the other node's agent here
    node: str  # the other node
    node_incarnation: int
    incarnation: int  # this node's incarnation when it was made
    answered: threading.Event = field(default_factory=threading.Event)  # (requests)
    replicated: bool = False  # a monitor of a replicated agent (kept by its name)


def info_record(message: dict[str, str]) -> bytes:
    """The packed mailbox record of an info message (a Down or Exit as data) now."""
    return pack(Message("info", pack(message), time.time()).to_wire())


def stand_in(name: str, node: str) -> Incarnation:
    """A stand-in for agent ``name`` of node ``node``: no process (its ``exited`` is
    settled, so nothing can signal it)."""
    incn = Incarnation(name, -1, 0, 0, None, remote=node)
    incn.ready.set_result(True)
    incn.exited.set_result((ExitReason.abnormal("a stand-in"), None))
    return incn


class ClusterLinks:
    """This node's side of monitors and links across nodes (see the module docstring).

    Args:
        dsn: the cluster's PostgreSQL.
        cluster: the cluster's name.
        node: this node's name in it.
        incarnation: this node's incarnation now (None: not joined, or fenced).
        spawner: the node's agent processes (fires the stand-ins' links and monitors).
        sessions: the node's sleeping agents (a watch finds a sleeping one too).
        links: the node's links and monitors.
    """

    def __init__(self, dsn: str, cluster: str, node: str,
                 incarnation: Callable[[], int | None], spawner: AgentSpawner,
                 sessions: Sessions, links: LinkTable[Incarnation]) -> None:
        self.node = node
        self.incarnation = incarnation
        self.spawner = spawner
        self.sessions = sessions
        self.links = links
        self.pg = PgLinks(dsn, cluster)
        self.listener = PgLinkListener(dsn, cluster, node, self._kick_now)
        self._lock = threading.RLock()
        self._by_ref: dict[int, _StandIn] = {}
        self._by_incn: dict[Incarnation, _StandIn] = {}
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._next_check = 0.0
        self._worker = threading.Thread(target=self._work, name="beamish-cluster-links",
                                        daemon=True)

    def start(self) -> None:
        """Take signals as they come, and watch the other ends' nodes."""
        self.spawner.remote_exit = self.exited
        self.listener.start()
        self._worker.start()

    def close(self) -> None:
        """Stop taking signals (what is in flight stays for this incarnation's successor
        to drop: the others see this one's lease end)."""
        self.spawner.remote_exit = None
        self._stop.set()
        self._kick.set()
        self._worker.join(timeout=5.0)
        self.listener.stop()
        self.pg.close()

    @property
    def watched(self) -> int:
        """How many remote monitors and links this node holds now."""
        with self._lock:
            return len(self._by_ref)

    # -- from the node's commands ------------------------------------------------------------
    def monitor(self, me: Incarnation, target: str, node: str) -> None:
        """``me`` gets ``Down(target, reason)`` when agent ``target`` of node ``node``
        exits: ``noproc`` if it does not run, ``noconnection`` if that node is lost."""
        self._request(SignalOp.MONITOR, me, target, node)

    def link(self, me: Incarnation, target: str, node: str) -> None:
        """Link ``me`` and agent ``target`` of node ``node`` both ways (the local rules on
        each side); a target that does not run sends ``me`` exit ``noproc``, a node that
        is lost, ``noconnection``."""
        self._request(SignalOp.LINK, me, target, node)

    def _request(self, op: SignalOp, me: Incarnation, target: str, node: str) -> None:
        incn = stand_in(target, node)
        attach = self.links.monitor if op is SignalOp.MONITOR else self.links.link
        mine = self.incarnation()
        peer = None if mine is None else self.pg.alive_incarnation(node)
        if mine is None or peer is None:
            attach(me, incn)  # then fire it at once: as Erlang, for a node not connected
            self.spawner.fire(incn, NOCONNECTION, True)
            return
        with self._lock:  # the stand-in is known before the worker can take an answer
            ref = self.pg.request(LinkSignal(op, 0, node, peer, self.node, mine, me.name,
                                             target))
            s = _StandIn(ref, incn, node, peer, mine)
            self._add(s)
            attach(me, incn)
        if not s.answered.wait(ANSWER_WAIT_S):
            log.warning("node %s did not answer within %g s whether agent %r runs there "
                        "(agent %r's %s stays pending)", node, ANSWER_WAIT_S, target,
                        me.name, op)

    def monitor_replicated(self, me: Incarnation, target: str) -> bool:
        """``me`` gets ``Down(target, reason)`` when replicated agent ``target``'s process
        exits by itself (a crash, a `Stop`), wherever it runs; a move to another node is
        not an exit. Return False, monitoring nothing, if no replicated agent of that name
        can run."""
        mine = self.incarnation()
        if mine is None:
            return False
        incn = stand_in(target, "")
        with self._lock:
            ref = self.pg.watch(target, _ACCEPTS, self.node, mine, me.name)
            if ref is None:
                return False
            self._add(_StandIn(ref, incn, "", 0, mine, replicated=True))
            self.links.monitor(me, incn)
        return True

    def monitor_as_replicated(self, watcher: str, target: str) -> bool:
        """Replicated agent ``watcher`` (running here now) gets ``Down(target, reason)`` in
        its mailbox when replicated agent ``target``'s process exits by itself, or is
        stopped or deleted; both may move between nodes meanwhile (the monitor is kept by
        their names in PostgreSQL). A ``target`` that cannot run: ``Down(target,
        "noproc")`` at once, and False."""
        if self.pg.watch(target, _ACCEPTS, REPLICATED_WATCHER, 0, watcher) is not None:
            return True
        self.pg.deliver(watcher, info_record(down_message(target, NOPROC)), _ACCEPTS)
        return False

    def replicated_exited(self, name: str, returncode: int, shard: int, epoch: int) -> None:
        """Replicated agent ``name``'s process exited by itself on this node, which owned
        its ``shard`` at ``epoch``: its watchers, on any node, get their Down (once: the
        rows go in the same transaction as the signals; none if the shard has moved on)."""
        self._fire_replicated(name, ExitReason.from_returncode(returncode), shard, epoch)

    def replicated_stopped(self, name: str, shard: int, epoch: int) -> None:
        """Replicated agent ``name`` was stopped or deleted through the node by this node,
        which owned its ``shard`` at ``epoch``: its watchers get Down with reason normal,
        as for a local agent's stop (once, as `replicated_exited`)."""
        self._fire_replicated(name, ExitReason.normal("normal"), shard, epoch)

    def _fire_replicated(self, name: str, reason: ExitReason, shard: int, epoch: int) -> None:
        mine = self.incarnation()
        if mine is None:
            return
        try:
            self.pg.fire_watches(name, str(reason), not reason.is_normal, self.node, mine,
                                 shard, epoch, info_record(down_message(name, str(reason))),
                                 _ACCEPTS)
        except StoreError as exc:
            log.error("replicated agent %r exited (%s) and its watchers could not be told: "
                      "%s", name, reason, exc)

    # -- from the spawner ---------------------------------------------------------------------
    def exited(self, incn: Incarnation, reason: str, abnormal: bool) -> None:
        """Local ``incn`` exited: drop its stand-ins and tell their nodes (before its
        local links fire; any thread)."""
        related = self.links.related(incn)
        with self._lock:
            gone = [self._by_incn[i] for i in related if i in self._by_incn]
            for s in gone:
                self._drop(s)
        if not gone:
            return
        try:
            self.pg.unwatch(s.ref for s in gone if s.replicated)
            self.pg.send(LinkSignal(SignalOp.EXIT, s.ref, s.node, s.node_incarnation,
                                    self.node, s.incarnation, incn.name, "", reason,
                                    abnormal) for s in gone if not s.replicated)
        except StoreError as exc:
            # Their nodes are not told; their stand-ins of it stay until those nodes see
            # this one's lease end.
            log.error("agent %r exited (%s) and its monitors and links on other nodes "
                      "could not be told: %s", incn.name, reason, exc)

    # -- the worker ----------------------------------------------------------------------------
    def _kick_now(self) -> None:
        self._kick.set()

    def _work(self) -> None:
        run_rounds(self._stop, self._kick, RECHECK_S, self._round, "cluster links")

    def _round(self) -> None:
        self.take()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_S
            self.check_nodes()

    def take(self) -> None:
        """Take the signals sent to this node and act on them, in order."""
        mine = self.incarnation()
        if mine is None:
            return
        with self._lock:
            for sig in self.pg.take(self.node, mine):
                # The rows are taken (deleted) already: one signal's failure must not cost
                # the others of its batch.
                try:
                    self._act(sig, mine)
                except Exception:
                    log.exception("cluster links: signal %s (ref %d) from node %s could not "
                                  "be acted on", sig.op, sig.ref, sig.from_node)

    def _act(self, sig: LinkSignal, mine: int) -> None:
        s = self._by_ref.get(sig.ref)
        if sig.op is SignalOp.ATTACHED:
            if s is not None:
                s.answered.set()
        elif sig.op is SignalOp.EXIT:
            if s is not None and (s.node == sig.from_node or s.replicated):
                self._drop(s)
                self.spawner.fire(s.incn, sig.reason, sig.abnormal)
                s.answered.set()
        else:
            self._accept(sig, mine)

    def _accept(self, sig: LinkSignal, mine: int) -> None:
        """Node ``sig.from_node``'s agent monitors or links to ours, ``sig.target``."""
        incn = stand_in(sig.name, sig.from_node)
        if sig.op is SignalOp.MONITOR:
            def attach(target: Incarnation) -> None:
                self.links.monitor(incn, target)
        else:
            def attach(target: Incarnation) -> None:
                self.links.link(incn, target)
        if self.sessions.watch(sig.target, attach):
            self._add(_StandIn(sig.ref, incn, sig.from_node, sig.from_incarnation, mine))
            answer = LinkSignal(SignalOp.ATTACHED, sig.ref, sig.from_node,
                                sig.from_incarnation, self.node, mine, sig.target)
        else:
            answer = LinkSignal(SignalOp.EXIT, sig.ref, sig.from_node,
                                sig.from_incarnation, self.node, mine, sig.target, "",
                                NOPROC, True)
        self.pg.send([answer])

    def check_nodes(self) -> None:
        """Fire, with ``noconnection``, the stand-ins of agents whose node is lost (and all
        of them if this node has another incarnation now: the others dropped it)."""
        mine = self.incarnation()
        with self._lock:
            peers = {(s.node, s.node_incarnation) for s in self._by_ref.values()
                     if not s.replicated}
            if not peers and all(s.incarnation == mine for s in self._by_ref.values()):
                return
        dead = self.pg.dead(peers)
        with self._lock:
            lost = [s for s in self._by_ref.values() if s.incarnation != mine or (
                not s.replicated and (s.node, s.node_incarnation) in dead)]
            for s in lost:
                self._drop(s)
        for s in lost:  # fired before the database is touched: they are dropped already
            s.answered.set()
            log.info("node %s (incarnation %d) is lost: agent %r there gets noconnection "
                     "(ref %d)", s.node, s.node_incarnation, s.incn.name, s.ref)
            self.spawner.fire(s.incn, NOCONNECTION, True)
        self.pg.unwatch(s.ref for s in lost if s.replicated)

    def _add(self, s: _StandIn) -> None:
        self._by_ref[s.ref] = s
        self._by_incn[s.incn] = s

    def _drop(self, s: _StandIn) -> None:
        self._by_ref.pop(s.ref, None)
        self._by_incn.pop(s.incn, None)


def start_cluster_links(dsn: str, cluster: str, node: str,
                        incarnation: Callable[[], int | None], spawner: AgentSpawner,
                        sessions: Sessions, links: LinkTable[Incarnation]) -> ClusterLinks:
    """Start this node's side of the monitors and links across nodes."""
    cl = ClusterLinks(dsn, cluster, node, incarnation, spawner, sessions, links)
    cl.start()
    return cl
