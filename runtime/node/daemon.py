"""The node daemon: the control plane. It holds the supervisor tree and never runs user code.

    clients ──control (ROUTER)──▶ node main thread ──▶ worker threads (blocking commands)
    agents  ──reports (PULL)───▶      │                    │
    zygote  ──exits (socket)───▶ reader thread ─▶ AgentSpawner ─▶ supervisor shells

Messages between clients and agents never pass through here (see
``messaging/messenger.py``). The node reads and writes the registry in LMDB, forks agents
through the zygote, and turns process exits into supervisor events.

`NodeDaemon` builds the node's parts and wires them: the `Registry` and the `EventLog`,
the `AgentSpawner` (given its collaborators: store, registry, link table, a fork
function...), the `ZygoteLink`, the root supervisor shell, and the `NodeView` the
commands get. Nothing below imports this module. It serves the control socket (each
command on a worker thread, ``events`` and ``shutdown`` on the main loop) and makes every
reply's wire form (`value_answer`, `error_answer`).
"""

from __future__ import annotations

import faulthandler
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any

import zmq

from beamish.mailbox import Envelope, Inbox, Kind, encode
from beamish.supervisor import ExitReason, MonotonicClock, Strategy, Supervisor, SupervisorSpec

from .._events import EventFilter, EventPage
from .._osproc import set_title
from .._paths import (
    NodePaths,
    check_dir_safe,
    dir_error,
    make_dir,
    rotate_agent_log,
    rotate_log,
)
from .._rundir import hold_run_dir, remove_run_dir
from .._types import OMIT_NONE, AgentStatus, DroppedFrames, WireMap
from ..cluster.frontdoor import MESSAGE_OPS, FrontDoor, message_answer, open_front_door
from ..cluster.keys import load_pair
from ..errors import (
    BeamishError,
    BeamishInternalError,
    ConfigError,
    ErrorReply,
    NodeAlreadyRunning,
    NodeNotRunning,
    StoreError,
    StoreFullError,
)
from ..messaging.messenger import Messenger
from ..messaging.wire import Rejected, ReportKind, parse_report, worth_logging
from ..store import memory_path, open_store, wipe
from ..store.protocol import Store, Txn
from ..store.records import NodeFields
from .cluster_drain import Drainer, drain_answer
from .commands import (
    COMMANDS,
    NodeView,
    add_config_entries,
    check_args,
    events,
    shutdown,
    start_persisted,
)
from .config import AgentStartFailure, NodeConfig, StartReport, listen_address
from .eventlog import PAGE_MAX, EventLog
from .links import LinkTable
from .readers import ReaderCheck, reader_check_due
from .registry import ROOT, Registry
from .sessions import Sessions
from .spawner import KILL_WAIT_S, START_TIMEOUT_S, AgentSpawner, Incarnation, SpawnSettings
from .stats import StatsReader
from .timers import TimerService
from .upgrade import Upgrader
from .zygote_link import ZygoteLink
from .zygotes import Zygotes

if TYPE_CHECKING:  # psycopg is loaded only by a node in a cluster
    from .cluster_events import ClusterEvents
    from .cluster_links import ClusterLinks
    from .cluster_node import ClusterNode

log = logging.getLogger("beamish.node")
HOUSEKEEPING_S = 1.0
# Awake agents' logs are checked this often: an agent rotates its own log when it writes
# through Python; this catches what only its C code or subprocesses write.
AGENT_LOG_SWEEP_S = 5.0
LIMITS_CHECK_S = 0.05  # how often memory and handler-time limits are checked
ZYGOTE_MAX_RESTARTS, ZYGOTE_PERIOD_S = 5, 60.0  # a zygote dying more often stops the node
FOLLOWERS_MAX = 4096  # events long-polls parked at once
EVENTS_WAIT_MAX_S = 30.0


@dataclass(frozen=True)
class _Follower:
    """An ``events`` long-poll parked on the main loop until news or its deadline."""

    ident: bytes
    msg_id: bytes
    after: int  # the log is read up to there: news is what comes after
    flt: EventFilter
    limit: int
    deadline: float


class NodeDaemon:
    """One node: lock the dir, open the store, start the zygote, serve until shutdown.

    Args:
        paths: the node's files.
        config: the validated config (defaults when no file was given).
        sys_path: the module search path agents import with.
        last_lines: reads a log file's last lines, for the dashboard's log tail
            (``client/logs.py``, handed down by the command that runs the daemon), or None.
    """

    def __init__(self, paths: NodePaths, config: NodeConfig, sys_path: list[str],
                 last_lines: Callable[[str, int], list[str]] | None = None) -> None:
        self.paths = paths
        self.last_lines = last_lines
        self.config = config
        self.sys_path = sys_path
        self.durability = config.node.durability
        self.max_message_bytes = config.node.max_message_bytes
        self.preload = list(config.node.preload)
        self.preload_agent_modules = config.node.preload_agent_modules
        self.shells: dict[str, Supervisor] = {}
        self.stopping = threading.Event()
        self.followers: list[_Follower] = []  # main loop only
        self.exit_code = 0
        self.zygote_deaths: list[float] = []  # monotonic times the zygote died
        self.started_at = time.time()
        self.next_log_sweep = 0.0  # monotonic time of the next check of agents' logs
        # The first housekeeping clears what processes of an earlier node left (-1: "exits").
        self.readers = ReaderCheck(time.monotonic(), -1)

    # -- start -------------------------------------------------------------------------------
    def lock_dir(self) -> None:
        """Create the dir (0700), check it is safe, and take its lock.

        Raises:
            NodeAlreadyRunning: another node holds the lock.
            ConfigError: the dir is unsafe or too long.
        """
        self.paths.check_length()
        make_dir(self.paths)
        check_dir_safe(self.paths.dir)
        try:
            self.lock_fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise dir_error(self.paths.dir, exc) from None
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = 0
            try:
                with open(self.paths.info, encoding="utf-8") as fh:
                    pid = int(json.load(fh).get("pid", 0))
            except (OSError, ValueError):
                pass
            os.close(self.lock_fd)
            raise NodeAlreadyRunning(self.paths.dir, pid) from None
        try:
            # On tmpfs where it can be, held while the node runs (_rundir.py).
            self.run_dir = hold_run_dir(self.paths.run)
        except OSError as exc:
            os.close(self.lock_fd)
            raise dir_error(self.paths.dir, exc) from None
        try:
            os.makedirs(self.paths.logs, mode=0o700, exist_ok=True)
            os.makedirs(self.paths.busy, mode=0o700, exist_ok=True)
        except OSError as exc:
            self.run_dir.release()
            os.close(self.lock_fd)
            raise dir_error(self.paths.dir, exc) from None

    def open(self) -> None:
        """Open the store and the sockets, start the zygote, and restore the tree."""
        self.frontdoor: FrontDoor | None = None
        self.cluster_messenger: Messenger | None = None
        cluster = self.config.cluster
        if cluster is not None and cluster.keys is not None:
            load_pair(cluster.keys, "cluster.keys")  # refused before anything starts
        if self.durability == "memory":
            self.store_path = memory_path(self.paths.dir)
            wipe(self.store_path)
        else:
            self.store_path = self.paths.store
        self.store: Store = open_store(self.store_path, self.durability)
        self.events = EventLog(self.store, self.config.node.events_kept)
        self.events.start()
        self.registry = Registry(self.store, self.events.emit, self.stopping)
        self.links: LinkTable[Incarnation] = LinkTable()
        self.spawner = AgentSpawner(
            SpawnSettings(self.paths, NodeFields(self.paths.dir, self.store_path,
                                                 self.durability, self.max_message_bytes,
                                                 self.config.node.agent_log_max_bytes,
                                                 self.config.node.agent_log_keep),
                          self.sys_path, tuple(self.preload), self.preload_agent_modules),
            store=self.store, registry=self.registry, links=self.links,
            emit=self.events.emit, ring=self.ring, shell=self.shell, stopping=self.stopping,
            fork=self._fork)
        # The zygote is started before any ZeroMQ context exists in this process.
        self.zygotes = Zygotes(self._new_zygote(), self._new_zygote, self._order_of)
        self.zctx: zmq.Context[Any] = zmq.Context()
        self.control = Inbox(self.zctx, self.paths.control, router=True,
                             limit=self.max_message_bytes)
        self.reports = Inbox(self.zctx, self.paths.node_in)
        self.results = self.zctx.socket(zmq.PULL)
        self.results.bind("inproc://results")
        self._result_socks = threading.local()
        self.messenger = Messenger(self.paths, self.store, self.max_message_bytes, ctx=self.zctx)
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="beamish-cmd")
        self.clock = MonotonicClock()
        self.root = Supervisor(
            SupervisorSpec(ROOT, Strategy.ONE_FOR_ONE, self.config.node.max_restarts,
                           self.config.node.max_seconds,
                           per_child_intensity=not self.config.node.strict),
            self.spawner, self.clock, on_event=self.registry.on_supervisor_event,
            on_exit=self._on_root_exit)
        self.root.start()
        self.sessions = Sessions(self.paths, store=self.store, registry=self.registry,
                                 spawner=self.spawner, links=self.links, emit=self.events.emit,
                                 shell=self.shell, max_awake=self.config.node.max_awake)
        self.timers = TimerService(self.store, self.paths, self.ring)
        self.timers.start()  # overdue timers (the node was down) fire now
        self.stats = StatsReader(self.paths, self.store, live=self.spawner.live_processes,
                                 tally=self.spawner.tally, events=lambda: self.events.seq,
                                 dropped=self.dropped_frames, started_at=self.started_at)
        if self.config.node.metrics is not None:
            from .metrics import MetricsServer  # prometheus_client: only when asked for
            self.metrics = MetricsServer(listen_address(self.config.node.metrics),
                                         self.stats.take)
            log.info("serving metrics on http://%s/metrics", self.metrics.address)
        self.cluster_events: ClusterEvents | None = None  # set by _start_cluster
        self.cluster_node = self._start_cluster()
        if self.cluster_node is not None and self.config.cluster is not None:
            from .cluster_routes import open_pinned  # node-pinned agents' routes
            own = self.cluster_node.settings
            self.cluster_node.pinned = open_pinned(own.node, own.dsn, own.cluster,
                                                   self.config.cluster.keys, self.store,
                                                   self.max_message_bytes)
        self.cluster_links = self._start_cluster_links()
        self.drainer: Drainer | None = None if self.cluster_node is None else \
            Drainer(self.cluster_node, self.stopping.set)  # beamish node drain
        self.view = NodeView(
            self.paths, self.config, self.started_at, self.store, self.registry,
            self.spawner, self.links, self.events, self.events.emit, self.ring, self.root,
            self.stopping, self.dropped_frames, self.sessions, self.stats.take,
            Upgrader(store=self.store, spawner=self.spawner, sessions=self.sessions,
                     zygotes=self.zygotes, emit=self.events.emit, sys_path=self.sys_path,
                     stopping=self.stopping), cluster=self.cluster_node,
            cluster_links=self.cluster_links, cluster_events=self.cluster_events)
        if self.config.node.dashboard is not None:
            self._start_dashboard(self.config.node.dashboard)
        if self.cluster_node is not None:  # local clients' messages to replicated agents
            from .cluster_node import ClusterMessenger
            self.cluster_messenger = ClusterMessenger(
                self.paths, self.store, self.max_message_bytes, self.cluster_node)
        cluster = self.config.cluster
        if cluster is not None and cluster.listen is not None and cluster.keys is not None:
            messenger = None
            if self.cluster_node is not None:
                from .cluster_node import ClusterMessenger
                messenger = ClusterMessenger(self.paths, self.store, self.max_message_bytes,
                                             self.cluster_node)
            self.frontdoor = open_front_door(
                cluster.listen, cluster.keys, self.paths, self.store, self.max_message_bytes,
                messenger=messenger)
        self._write_info()

    def _start_cluster(self) -> ClusterNode | None:
        """Join the cluster of a config with ``[cluster] postgres`` (None: no cluster)."""
        section = self.config.cluster
        if section is None or not (section.postgres or os.environ.get("BEAMISH_POSTGRES")):
            return None
        from .cluster_node import cluster_settings, start_cluster_node  # loads psycopg
        settings = cluster_settings(self.config.cluster)
        if settings is None:
            return None
        from ..cluster.restarts import RestartIntensity
        settings = replace(settings, intensity=RestartIntensity(
            self.config.node.max_restarts, self.config.node.max_seconds))
        member = start_cluster_node(settings, self.paths, self.spawner.settings.node,
                                    self.sys_path, self.store)
        from .cluster_events import ClusterEvents
        self.cluster_events = ClusterEvents(member.store, self.config.node.events_kept,
                                            self.events)
        self.cluster_events.start()
        member.emit = self.cluster_events.emit  # its replicated agents' events: this
        return member                           # node's log and the cluster's

    def _start_cluster_links(self) -> ClusterLinks | None:
        """Monitors and links across the nodes of this node's cluster (None: none)."""
        member = self.cluster_node
        if member is None:
            return None
        from .cluster_links import start_cluster_links
        links = start_cluster_links(member.settings.dsn, member.settings.cluster,
                                    member.settings.node, lambda: member.membership.incarnation,
                                    self.spawner, self.sessions, self.links)
        member.on_exit = links.replicated_exited
        member.on_stopped = links.replicated_stopped
        return links

    def _start_dashboard(self, bind: str) -> None:
        from .dashboard import CommandSource, DashboardServer
        self.dashboard = DashboardServer(
            listen_address(bind),
            CommandSource(self.command_answer, self.paths.agent_log, self.last_lines),
            self.config.node.dashboard_token)
        log.info("serving the dashboard on %s", self.dashboard.url)

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "store": self.store_path, "durability": self.durability,
                "max_message_bytes": self.max_message_bytes, "started": self.started_at,
                "version": 1}
        tmp = self.paths.info + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            json.dump(info, fh)
        os.replace(tmp, self.paths.info)

    def _fork(self, boot: WireMap, preload: list[str]) -> int:
        return self.zygotes.fork(boot, preload)

    def _new_zygote(self) -> ZygoteLink:
        return ZygoteLink(self.sys_path, self.spawner.on_exit, self.spawner.on_ready,
                          self.spawner.on_zygote_lost)

    def _order_of(self, name: str) -> int | None:
        rec = self.registry.get(name)
        return None if rec is None else rec.order

    @property
    def zygote(self) -> ZygoteLink:
        """The current zygote (the one new agents fork from; node/zygotes.py)."""
        return self.zygotes.current

    # -- supervisors ---------------------------------------------------------------------------
    def shell(self, name: str) -> Supervisor | None:
        """Return the supervisor shell named ``name``, if it exists."""
        return self.root.find(name)

    def _on_root_exit(self, reason: ExitReason) -> None:
        log.error("the root supervisor exceeded its restart intensity (strict mode): "
                  "stopping the node (%s)", reason)
        self.exit_code = 1
        self.stopping.set()

    def restore(self, config: NodeConfig) -> StartReport:
        """Rebuild the persisted tree (adding what the config declares that is not there
        yet), then start every agent that was live, in start order. Returns the agents
        that did not start and the config entries the persisted tree overrode."""
        drift = add_config_entries(self.view, config)
        failed = start_persisted(self.view)
        self.sessions.start()  # pending wakes (the node was killed mid-wake) happen now
        recs = {r.name: r for r in self.store.read(lambda t: t.agents())}
        for agent in config.agent:  # declared, and failed before this start
            rec = recs.get(agent.name)
            if rec is not None and rec.status == AgentStatus.FAILED and agent.name not in failed:
                last = rec.last_failure
                failed[agent.name] = ("it was marked failed before this start"
                                      + (f" ({last.exc_type or last.kind}: "
                                         f"{last.message})" if last else ""))
        return StartReport(
            tuple(AgentStartFailure(name, recs[name].cls if name in recs else "?", why)
                  for name, why in failed.items()), tuple(drift))

    def ring(self, path: str, frame: bytes) -> None:
        """Send a compact doorbell/system frame to an agent inbox (any thread)."""
        self.messenger.ring(path, frame)

    def dropped_frames(self) -> DroppedFrames:
        """Count the invalid frames dropped so far: the node's sockets, and every agent's
        (live processes publish theirs in their in-flight marker; exited ones were added up)."""
        agents, ready = self.spawner.dropped_by_agents()
        return DroppedFrames(control=self.control.dropped, reports=self.reports.dropped,
                             ready=ready + self.zygotes.dropped, agents=agents)

    # -- serving ---------------------------------------------------------------------------------
    def serve(self) -> None:
        """Run the control loop until shutdown, then keep it running while the tree stops:
        agents still starting must have their ready reports heard, or stopping would wait
        for them until their start timed out."""
        poller = zmq.Poller()
        poller.register(self.control.sock, zmq.POLLIN)
        poller.register(self.reports.sock, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        next_limits = time.monotonic() + LIMITS_CHECK_S
        stopper: threading.Thread | None = None
        while stopper is None or stopper.is_alive():
            if stopper is None and self.stopping.is_set():
                log.info("node stopping: shutting down agents")
                stopper = threading.Thread(target=self.shutdown_tree, name="beamish-stop")
                stopper.start()
            events = dict(poller.poll(int(LIMITS_CHECK_S * 1000)))
            if time.monotonic() >= next_limits:
                next_limits = time.monotonic() + LIMITS_CHECK_S
                self.spawner.check_limits()
            if self.control.sock in events:
                self._drain_control()
            if self.reports.sock in events:
                self._drain_reports()
            if self.results in events:
                self._drain_results()
            if self.followers:
                self._serve_followers()
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
                self._housekeeping()
            if not self.zygote.alive() and not self.zygote.closed:
                self._replace_zygote()
            self.zygotes.serve()  # a code upgrade's new zygote

    def _replace_zygote(self) -> None:
        """Start a new zygote after one died (its agents are restarted as killed), unless
        they die too often: then the node stops, as before."""
        now = time.monotonic()
        self.zygote_deaths = [t for t in self.zygote_deaths if now - t < ZYGOTE_PERIOD_S]
        self.zygote_deaths.append(now)
        if len(self.zygote_deaths) > ZYGOTE_MAX_RESTARTS:
            log.error("the zygote died %d times within %g s: stopping the node",
                      len(self.zygote_deaths), ZYGOTE_PERIOD_S)
            self.exit_code = 1
            self.stopping.set()
            self.zygote.close()
            return
        self.zygote.restart()

    def _drain_control(self) -> None:
        for ident, env in self.control.drain(1000):
            if env.kind is not Kind.CALL or not isinstance(env.payload, dict) \
                    or not isinstance(env.payload.get("op"), str):
                self.control.dropped += 1
                continue
            if self.stopping.is_set():
                self._answer(ident, env.msg_id, _STOPPING)
                continue
            if env.payload["op"] == "shutdown":
                # Answered here, before the loop ends, so the reply is not lost with it.
                self._answer(ident, env.msg_id, value_answer(shutdown(self.view)))
                continue
            if env.payload["op"] == "transport":  # the TCP front door's figures
                door = self.frontdoor
                self._answer(ident, env.msg_id, value_answer(door and door.status()))
                continue
            if env.payload["op"] == "events":
                # Served here, never by a pool thread: a waiting follower holds nothing.
                self._events_request(ident, env)
                continue
            if env.payload["op"] == "cluster":  # this node's cluster state
                member = self.cluster_node
                self._answer(ident, env.msg_id,
                             value_answer(member and member.status().to_wire()))
                continue
            if env.payload["op"] == "drain":  # beamish node drain (node/cluster_drain.py)
                self._answer(ident, env.msg_id, drain_answer(self.drainer, env.payload))
                continue
            if env.payload["op"] in MESSAGE_OPS and self.cluster_messenger is not None:
                # A local client's message to a replicated agent (its route is not here).
                self.pool.submit(self._run_message, ident, env)
                continue
            if env.payload["op"] == "spawn" and env.payload.get("lazy") is True \
                    and env.payload.get("durability") is None and self.cluster_node is None:
                # A lazy spawn is one record write: served here, without a thread handoff
                # (100,000 sessions register at the control loop's own pace).
                self._answer(ident, env.msg_id, self._command_answer(env))
                continue
            self.pool.submit(self._run_command, ident, env)

    def _answer(self, ident: bytes, msg_id: bytes, answer: WireMap) -> None:
        self.control.reply(ident, Envelope(Kind.REPLY, msg_id, b"", answer))

    def _events_request(self, ident: bytes, env: Envelope) -> None:
        if self.cluster_events is not None and \
                self.cluster_events.serves(self.store, env.payload.get("name")):
            self.pool.submit(self._run_command, ident, env)  # it reads PostgreSQL
            return
        req = dict(env.payload)
        req.pop("op")
        try:
            check_args("events", events, req)
            found = events(self.view, **req)
            if len(self.followers) >= FOLLOWERS_MAX:
                raise ConfigError(f"too many clients follow events ({FOLLOWERS_MAX}); stop "
                                  "some `beamish events --follow`")
        except ConfigError as exc:
            self._answer(ident, env.msg_id, error_answer(exc))
            return
        wait = float(req.get("wait", 0.0))
        if found.events or wait <= 0:
            self._answer(ident, env.msg_id, value_answer(found))
            return
        self.followers.append(_Follower(
            ident, env.msg_id, found.after,
            EventFilter.of(req.get("since"), req.get("name"), req.get("kind")),
            int(req.get("limit", PAGE_MAX)), time.monotonic() + min(wait, EVENTS_WAIT_MAX_S)))

    def _serve_followers(self) -> None:
        """Answer the parked followers that have news or whose wait ran out."""
        if self.stopping.is_set():
            for f in self.followers:
                self._answer(f.ident, f.msg_id, _STOPPING)
            self.followers = []
            return
        now, committed = time.monotonic(), self.events.committed
        waiting = []
        for f in self.followers:
            page = self.events.page(f.after, f.flt, f.limit) if f.after < committed \
                else EventPage([], f.after, False)
            if page.events or now >= f.deadline:
                self._answer(f.ident, f.msg_id, value_answer(page))
            else:  # nothing it wants yet: it need not read that part of the log again
                waiting.append(replace(f, after=page.after))
        self.followers = waiting

    def _drain_reports(self) -> None:
        for _, env in self.reports.drain(1000):
            report = parse_report(env.payload) if env.kind is Kind.INFO \
                else Rejected(f"a {env.kind.name} envelope is not a report")
            if isinstance(report, Rejected):
                # Sent by a process that runs user code: never trusted, never fatal.
                self.reports.dropped += 1
                if worth_logging(self.reports.dropped):
                    log.warning("dropped an invalid report on %s (%d so far): %s",
                                self.paths.node_in, self.reports.dropped, report.why)
            elif report.ev is ReportKind.READY:
                self.spawner.on_ready(report)
            else:
                # A report sent during recover can beat the zygote's answer to the fork,
                # before the incarnation is registered: the registry knows the name.
                name = (self.spawner.name_of(report.id) or self.registry.name_of(report.id)
                        or f"#{report.id}")
                self.events.emit(report.ev.value, name, self.registry.supervisor_of(name),
                                 report.reason)

    def _drain_results(self) -> None:
        while True:
            try:
                frames = self.results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.control.sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the client went away; its reply has no one to go to

    def _send_result(self, frames: list[bytes]) -> None:
        sock = getattr(self._result_socks, "sock", None)
        if sock is None:
            sock = self.zctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect("inproc://results")
            self._result_socks.sock = sock
        sock.send_multipart(frames)

    def _run_message(self, ident: bytes, env: Envelope) -> None:
        assert self.cluster_messenger is not None
        answer = message_answer(self.cluster_messenger, env.payload)
        self._send_result([ident, *encode(Envelope(Kind.REPLY, env.msg_id, b"", answer))])

    def _run_command(self, ident: bytes, env: Envelope) -> None:
        answer = self._command_answer(env)
        self._send_result([ident, *encode(Envelope(Kind.REPLY, env.msg_id, b"", answer))])

    def _command_answer(self, env: Envelope) -> WireMap:
        req = dict(env.payload)
        op = req.pop("op")
        pinned = self.cluster_node.pinned if self.cluster_node is not None else None
        if pinned is not None and (forwarded := pinned.forward_control(op, req)) is not None:
            return forwarded  # another node's pinned agent: one hop (cluster_routes.py)
        if pinned is None and op == "spawn" and "node" in req:
            return error_answer(ConfigError(f"node={req['node']!r}: this node is not in a "
                                            "cluster (no [cluster] postgres in its config)"))
        return self.command_answer(op, req)

    def command_answer(self, op: str, req: dict[str, Any]) -> WireMap:
        """Run control command ``op`` with ``req`` (any thread but the main loop's, which
        must not wait on a command); return its wire answer, its error included."""
        handler = COMMANDS.get(op)
        try:
            if handler is None:
                raise ConfigError(f"unknown command {op!r}; known: {', '.join(sorted(COMMANDS))}")
            check_args(op, handler, req)
            answer = value_answer(handler(self.view, **req))
        except BeamishError as exc:
            answer = error_answer(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the node; it is logged
            log.exception("command %r failed", op)
            answer = error_answer(BeamishInternalError(
                f"{op!r} failed inside the node ({type(exc).__name__}: {exc}); "
                "this is a bug, please report it with the node log"),
                traceback=traceback.format_exc())
        return answer

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if reader_check_due(self.readers, now, self.spawner.exits):
            self.readers = ReaderCheck(now, self.spawner.exits)
            self.store.reader_check()
        self.zygotes.retire_idle()
        if time.monotonic() >= self.next_log_sweep:
            self.next_log_sweep = time.monotonic() + AGENT_LOG_SWEEP_S
            self._sweep_agent_logs()
        try:
            if rotate_log(self.paths.log, 2, self.config.node.log_max_bytes,
                          self.config.node.log_keep):
                log.info("rotated %s (over %d bytes; %d older kept)", self.paths.log,
                         self.config.node.log_max_bytes, self.config.node.log_keep)
        except OSError as exc:
            log.warning("cannot rotate %s (%s): truncated it without a copy", self.paths.log,
                        exc)
        now = time.time()
        expired = self.store.read(lambda t: t.expired_replies(now))
        if expired:
            def txn(t: Txn) -> None:
                for msg_id in expired:
                    t.delete_reply(msg_id)
            try:
                self.store.write(txn)
            except StoreFullError as exc:  # tried again next second; the loop goes on
                log.warning("cannot delete %d expired replies: %s", len(expired), exc)

    def _sweep_agent_logs(self) -> None:
        node = self.config.node
        for name in list(self.spawner.current):  # the awake ones: only they write
            path = self.paths.agent_log(name)
            try:
                rotate_agent_log(path, node.agent_log_max_bytes, node.agent_log_keep)
            except OSError as exc:
                log.warning("cannot rotate the log of agent %r, %s (%s): truncated it "
                            "without a copy", name, path, exc)

    def close_partial(self) -> None:
        """Release what a failed `open` had opened (the zygote first: it is a process)."""
        for attr in ("cluster_links", "cluster_events", "cluster_node", "cluster_messenger",
                     "dashboard",
                     "frontdoor", "metrics", "sessions",
                     "timers", "zygotes",
                     "messenger", "control", "reports", "events", "store"):
            obj = self.__dict__.get(attr)
            if obj is None:
                continue
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - the start already failed; say so, go on
                log.exception("cannot close the %s of a node that failed to open", attr)
        zctx = self.__dict__.get("zctx")
        if zctx is not None:
            zctx.destroy(linger=0)

    # -- shutdown --------------------------------------------------------------------------------
    def shutdown_tree(self) -> None:
        """Stop every agent in reverse start order; their records stay for the next start
        (sleeping ones stay asleep; no wake starts once the node stops). Replicated
        agents first: their shards are handed back as the node leaves its cluster; before
        them, the front door's calls still running end (they may wait on those agents)."""
        if self.frontdoor is not None:
            self.frontdoor.quiesce()
        if self.cluster_links is not None:
            if self.cluster_node is not None:
                self.cluster_node.on_exit = None
                self.cluster_node.on_stopped = None
            self.cluster_links.close()
            self.cluster_links = None
        if self.cluster_node is not None:
            if self.cluster_events is not None:  # before the store it writes to closes
                self.cluster_node.emit = self.events.emit
                self.cluster_events.close()
            self.cluster_node.close()
            self.cluster_node = None
        self.sessions.close()
        if not self.spawner.close_detached_starts():
            log.error("spawns still starting after %g s; stopping the tree without them",
                      START_TIMEOUT_S + KILL_WAIT_S)
        self.root.shutdown()

    def close(self) -> None:
        """Release everything (after `shutdown_tree`)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for attr in ("cluster_messenger", "dashboard", "frontdoor", "metrics"):
            server = self.__dict__.get(attr)
            if server is not None:
                server.close()
        self.sessions.close()
        self.timers.close()
        self.zygotes.close()
        self.messenger.close()
        self.control.close()
        self.reports.close()
        self.zctx.destroy(linger=0)
        self.events.close()
        self.store.close()
        if self.durability == "memory":
            wipe(self.store_path)
        remove_run_dir(self.paths.run)
        self.run_dir.release()
        for path in (self.paths.info,):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(self.lock_fd)


def to_wire(value: Any) -> Any:
    """A command's answer in its wire form, the one place it is made: each record (a frozen
    dataclass: `AgentInfo`, `Event`, the answers of ``commands.py``) as the map of its
    fields, in their order, and so on down; lists item by item; the rest (the user's data
    in a dead letter included) as it is."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in fields(value)
                if not (f.metadata.get(OMIT_NONE) and getattr(value, f.name) is None)}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


def value_answer(value: Any) -> WireMap:
    """The reply to a command that returned ``value``: its records in their wire form."""
    return {"ok": True, "value": to_wire(value)}


def error_answer(exc: BeamishError, **extra: Any) -> WireMap:
    """The reply to a command that raised ``exc``: its type, message and attributes (what
    `errors.error_from_wire` rebuilds it from), plus ``extra`` attributes."""
    reply = ErrorReply.of(exc)
    return {"ok": False, "error": replace(reply, attrs={**reply.attrs, **extra}).to_wire()}


_STOPPING = error_answer(NodeNotRunning("the node is stopping"))


def _raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: the node, its zygote and the agents
    (which inherit it) hold sockets and LMDB files per agent and per client."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("cannot raise the open-files limit from %d", soft)


def run_daemon(paths: NodePaths, config: NodeConfig, sys_path: list[str],
               ready_fd: int | None = None,
               last_lines: Callable[[str, int], list[str]] | None = None) -> int:
    """Run a node in this process until it is shut down; return its exit status.

    Args:
        ready_fd: if given, write one line (``ok`` or an error) there once serving.
        last_lines: reads a log's last lines (the dashboard's log tail; see `NodeDaemon`).
    """
    node = NodeDaemon(paths, config, sys_path, last_lines)
    set_title(f"beamish node {paths.dir}", "beamish-node")

    def report(line: str) -> None:
        if ready_fd is not None:
            os.write(ready_fd, (line + "\n").encode())
            os.close(ready_fd)

    def refuse(exc: BeamishError) -> int:
        # Said on stderr too: in the foreground (systemd, Docker) that is all the user sees.
        print(f"beamish: the node did not start: {exc}", file=sys.stderr, flush=True)
        report(f"{type(exc).__name__}\t{exc}")
        return 2
    try:
        node.lock_dir()
    except BeamishError as exc:
        return refuse(exc)
    _raise_fd_limit()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stopping.set())
    # `kill -USR1 <node pid>` writes every thread's stack to the node log (for bug reports).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        node.open()
    except BeamishError as exc:
        node.close_partial()
        return refuse(exc)
    except OSError as exc:
        log.exception("cannot open the node")
        node.close_partial()
        return refuse(StoreError(
            f"cannot open the node's files in {paths.dir!r}: {exc.strerror or exc}: "
            f"{exc.filename}; move that path away or use another --dir (traceback in the "
            "log)"))

    def restore() -> None:
        # Restoring starts agents, whose readiness the serving loop hears: run it beside it.
        try:
            started = node.restore(config)
        except Exception as exc:  # noqa: BLE001 - reported to the starter, then we stop
            log.exception("cannot restore the tree")
            report(f"{type(exc).__name__}\t{exc}")
            node.exit_code = 2
            node.stopping.set()
            return
        for line in started.lines():
            log.warning("%s", line)
        if started.failures and config.node.strict:
            log.error("strict mode: %d agent(s) of the tree did not start: stopping the node",
                      len(started.failures))
            report(f"failed\t{started.to_json()}")
            node.exit_code = 1
            node.stopping.set()
            return
        report(f"ok\t{started.to_json()}" if started.failures or started.drift else "ok")
        log.info("node serving on %s (pid %d, durability %s)", paths.dir, os.getpid(),
                 node.durability)
    threading.Thread(target=restore, name="beamish-restore", daemon=True).start()
    try:
        node.serve()
    finally:
        if not node.stopping.is_set():  # serve() raised: still stop every agent
            node.stopping.set()
            node.shutdown_tree()
        node.close()
        log.info("node stopped")
    return node.exit_code
