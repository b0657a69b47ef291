"""The runtime's `Spawner`: starts agents through the zygote, stops them, and turns
every process exit into an `ExitReason` and, when abnormal, a classified `Failure`.

Death is judged from the OS (the zygote's ``waitpid``), never from the agent's own word;
the agent's report in LMDB only adds detail (the exception, a ``Stop`` reason). The rules
are the pure ``classify.py``; ``_classify`` gathers their evidence and charges attempts.

The daemon gives it what it uses (`SpawnSettings`, the store, the `Registry`, the
`LinkTable`, and functions to emit an event, ring an inbox, find a supervisor shell and
fork); the commands ask it through methods (`stop_reason`, `forget_failure`,
`take_start_failure`, `incarnation`, `deliver_info`), never through its dicts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from beamish.mailbox import pack
from beamish.supervisor import ChildSpec, ExitReason, StartFailed, Supervisor

from .._osproc import process_start_time
from .._paths import NodePaths
from .._types import ACCEPTS_MESSAGES, AgentStatus, Failure, Limits, WireMap
from .._validation import check_limits
from ..agent.inflight import read_dropped, read_latency, read_marker, read_unfinished, was_ready
from ..errors import ConfigError, StoreFullError
from ..messaging.messenger import append_routed, hint_node
from ..messaging.wire import Report, ring_frame, stop_frame
from ..store import filesystem_full, full_disk_advice
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord, Boot, FailureReport, Message, NodeFields
from .bounded import Bounded
from .classify import ExitEvidence, LimitKind, classify
from .links import Deliver, KillLinked, LinkTable
from .registry import Emit, Registry
from .stats import ExitTally, LiveProcess
from .zygote_link import PreloadRefused, ZygoteLost

log = logging.getLogger("beamish.node")
START_TIMEOUT_S = 60.0
KILL_WAIT_S = 10.0
EARLY_KEPT = 4096  # exits (and zygote deaths) held for pids not registered yet
EARLY_READY_KEPT = 1024  # ready reports held likewise (an agent's own child can send them)
_NO_LIMITS = Limits()


@dataclass(eq=False)
class Incarnation:
    """One process of one agent: the handle the supervisor holds for a running child."""

    name: str
    id: int
    inc: int
    pid: int
    create_time: float | None
    started: float = field(default_factory=time.time)
    ready: Future[Any] = field(default_factory=Future)
    exited: Future[tuple[ExitReason, Failure | None]] = field(default_factory=Future)
    terminating: str | None = None  # the stop reason we asked for
    limit_kill: LimitKind | None = None  # when a limit killed it
    limits: Limits = field(default_factory=Limits)
    trap_exits: bool = False  # from its ready report
    link_kill: str | None = None  # why a linked agent's exit killed it
    # Started by a wake (node/sessions.py) or an eager spawn, not by its supervisor: until
    # the shell has adopted it, its exit is reported by its starter, not here.
    waking: bool = False
    # Stopped to fall asleep: its exit fires no link or monitor (the node holds them for
    # the sleeping agent, and a Down/Exit for it goes to its mailbox and wakes it).
    asleep: bool = False
    # Why it asked to fail its supervisor, when its exit is left to someone else to report
    # (it died while falling asleep: node/sessions.py reports it).
    escalate: str | None = None
    # A stand-in for an agent of node ``remote`` that one of ours monitors or links to
    # (node/cluster_links.py): no process; what its links and monitors fire goes there.
    remote: str | None = None

    @property
    def limited(self) -> bool:
        """Whether it has a resource limit (a `Limits` record is never falsy: ask this)."""
        return self.limits != _NO_LIMITS

    def killed_exit(self) -> ExitReason:
        """Why it exited, once it is dead after a SIGKILL (waits up to `KILL_WAIT_S`); if the
        OS has not reported its death by then, that is logged and ``abnormal: killed``
        returned."""
        try:
            return self.exited.result(KILL_WAIT_S)[0]
        except FutureTimeout:
            log.error("agent %r (pid %d) survived SIGKILL for %g s", self.name, self.pid,
                      KILL_WAIT_S)
            return ExitReason.abnormal("killed")

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if the pid is still this incarnation's process."""
        if self.exited.done() or process_start_time(self.pid) != self.create_time:
            return False
        try:
            os.kill(self.pid, signum)
            return True
        except ProcessLookupError:
            return False


Fork = Callable[[WireMap, list[str]], int]
"""``fork(boot, preload)``: fork an agent from the zygote, return its pid (`ZygoteLink.fork`)."""
Ring = Callable[[str, bytes], None]
"""``ring(inbox_path, frame)``: send a doorbell or system frame to an agent's inbox."""
FindShell = Callable[[str], "Supervisor | None"]
"""``shell(name)``: the supervisor shell named ``name``, or None."""


@dataclass
class CurrentProcesses:
    """Each agent's current process by name, and two indexes of it kept in step with it:
    by agent id (to name a report's sender) and those with a memory or handler-time
    limit (polled by the node every 50 ms): neither lookup walks every live agent. Not
    thread-safe: the spawner's lock guards it."""

    by_name: dict[str, Incarnation] = field(default_factory=dict)
    by_id: dict[int, Incarnation] = field(default_factory=dict)
    limited: dict[str, Incarnation] = field(default_factory=dict)

    def put(self, incn: Incarnation) -> None:
        """Make ``incn`` its agent's current process (replacing the one before)."""
        old = self.by_name.get(incn.name)
        if old is not None:
            self.drop(old)
        self.by_name[incn.name] = incn
        self.by_id[incn.id] = incn
        if incn.limited:
            self.limited[incn.name] = incn

    def drop(self, incn: Incarnation) -> None:
        """Forget ``incn`` if it is still its agent's current process (else nothing)."""
        if self.by_name.get(incn.name) is not incn:
            return
        del self.by_name[incn.name]
        if self.by_id.get(incn.id) is incn:
            del self.by_id[incn.id]
        self.limited.pop(incn.name, None)


@dataclass(frozen=True, slots=True)
class SpawnSettings:
    """The node's settings every agent start uses.

    Attributes:
        paths: the node's files (an agent's inbox and in-flight marker).
        node: the boot fields every agent of the node shares (dir, store, durability,
            message size limit).
        sys_path: the module search path agents import with.
        preload: modules the zygote imports before it forks.
        preload_agent_modules: also preload each agent's own module.
    """

    paths: NodePaths
    node: NodeFields
    sys_path: list[str]
    preload: tuple[str, ...] = ()
    preload_agent_modules: bool = False


class AgentSpawner:
    """Starts and stops agent processes for the supervisor shells of one node.

    Args:
        settings: the node's settings for agent starts.
        store: the node's store.
        registry: the agents' records and status transitions.
        links: the links and monitors between incarnations.
        emit: records an event.
        ring: rings an agent's inbox.
        shell: finds a supervisor shell by name (an exit goes to its supervisor).
        stopping: set while the node stops.
        fork: forks an agent from the zygote.
    """

    def __init__(self, settings: SpawnSettings, *, store: Store, registry: Registry,
                 links: LinkTable[Incarnation], emit: Emit, ring: Ring, shell: FindShell,
                 stopping: threading.Event, fork: Fork) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.links = links
        self.emit = emit
        self.ring = ring
        self.shell = shell
        self.stopping = stopping
        self.fork = fork
        # ``remote_exit(incn, reason, abnormal)``: an exit to tell the nodes whose agents
        # link to or monitor ``incn`` (node/cluster_links.py; None: not in a cluster).
        self.remote_exit: Callable[[Incarnation, str, bool], None] | None = None
        self.lock = threading.Lock()
        # Notified when an incarnation is registered: a request its init sends (monitor,
        # link) can beat the zygote's answer to the fork, and waits for it.
        self.registered = threading.Condition(self.lock)
        self.by_pid: dict[int, Incarnation] = {}
        self.live = CurrentProcesses()
        self.current = self.live.by_name  # read here; changed only through self.live
        self._next_failure: dict[str, Failure] = {}  # what an agent's next start recovers from
        self._start_failures: dict[str, Failure] = {}  # why an agent's last start failed
        self._stop_reasons: dict[str, str] = {}  # why a command takes an agent out of the tree
        # What arrives about a pid before start_child registers it, bounded: an exit nobody
        # registers (its fork request timed out) or a report from an agent's own child
        # must not pile up, nor meet a later process on its pid.
        self._early_exits: Bounded[int, int] = Bounded(EARLY_KEPT)  # pid -> code
        self._early_ready: Bounded[int, Report] = Bounded(EARLY_READY_KEPT)
        self._lost_with_zygote: Bounded[int, str] = Bounded(EARLY_KEPT)  # how it ended
        # A sleeping agent linked to one that exited abnormally: woken and killed, so its
        # supervisor restarts it as it would an awake one (set by node/sessions.py).
        self.kill_sleeper: Callable[[Incarnation, str], None] | None = None
        self.rejected_reports = 0  # ready reports for pids never registered, dropped
        self.agent_dropped = 0  # frames dropped by agents' sockets, of exited processes
        # Eager spawns starting beside their supervisors (`detached_start`), which the
        # node's stop waits for: no supervisor knows of them until they are adopted.
        self._detached = threading.Condition(threading.Lock())
        self._detached_now = 0
        self._detached_closed = False
        self.tally = ExitTally()  # restarts by failure kind, exited processes' latencies
        self.exits = 0  # agent processes reaped so far (the node then clears reader slots)

    # -- Spawner protocol ----------------------------------------------------------------------
    def start_child(self, sup_id: str, spec: ChildSpec) -> Incarnation:
        """Fork the agent ``spec.id`` and return once its ``init``/``recover`` ran.

        Raises:
            StartFailed: it exited (or hung) before it was ready.
        """
        failure = self._next_failure.pop(spec.id, None)
        try:
            return self._start(spec.id, failure)
        except BaseException:
            if failure is not None:
                # Still pending: only a start that ran recover to the end consumes it, so
                # a recover that kills its process runs again at the next (counted) restart.
                self._next_failure.setdefault(spec.id, failure)
            raise

    def _start(self, name: str, failure: Failure | None) -> Incarnation:
        incn = self._launch(name, failure)
        assert incn is not None  # only a wake is refused
        self._await_ready(incn)
        return incn

    def start_detached(self, name: str, *, wake: bool) -> tuple[Incarnation, Any] | None:
        """Start agent ``name``'s process with no supervisor asked (its starter hands it
        to one with ``adopt_child``): a wake (``wake``: the agent sleeps), or an eager
        spawn (its record reserved ``starting`` by the spawn), so that independent spawns
        and wakes never wait for each other on a supervisor's thread. Return it and its
        start's outcome (True: ready; else ``(ExitReason, Failure | None)``: it exited
        before). Its exit is reported to no supervisor until the starter clears
        ``waking``. None: the record changed while its process started (stopped, deleted,
        no longer asleep): the start is dropped, and a process it started is killed.

        Raises:
            StartFailed: it could not be forked (no process exists).
        """
        incn = self._launch(name, None, wake=wake, detached=True)
        if incn is None:
            return None
        try:
            outcome = incn.ready.result(START_TIMEOUT_S)
        except FutureTimeout:
            incn.signal(signal.SIGKILL)
            outcome = incn.exited.result(KILL_WAIT_S + START_TIMEOUT_S)
        if outcome is True:
            def txn(t: Txn) -> bool:
                # Running (a spawn: completed too), and a wake's mark gone, in one
                # transaction; only if the record is still this start's (restarting: it
                # died meanwhile, on_exit said so, and the starter reports it).
                rec = t.get_agent(name)
                if rec is None or rec.id != incn.id or rec.incarnation != incn.inc \
                        or rec.status not in (AgentStatus.STARTING, AgentStatus.RESTARTING):
                    return False
                if rec.status == AgentStatus.STARTING:
                    t.put_agent(replace(rec, status=AgentStatus.RUNNING, pid=incn.pid,
                                        recover_pending=False,
                                        spawning=rec.spawning if wake else None))
                if wake:
                    t.delete_wake(rec.id)
                return True
            try:
                adopt = self.store.write(txn)
            except StoreFullError:
                log.exception("cannot record that agent %r (pid %d) runs", name, incn.pid)
                adopt = True
            if not adopt:
                log.info("agent %r was stopped or deleted while it started: its new process "
                         "(pid %d) is killed", name, incn.pid)
                self.kill_unadopted(incn)
                return None
        return incn, outcome

    @contextmanager
    def detached_start(self) -> Iterator[None]:
        """Hold the node's stop for the start and hand-over of a spawn started beside its
        supervisor (`start_detached` ... ``adopt_child``): the stop waits for it, as a
        supervisor's own stop waits for the start it is running.

        Raises:
            StartFailed: the node is stopping (nothing was started).
        """
        with self._detached:
            if self._detached_closed:
                raise StartFailed("the node is stopping")
            self._detached_now += 1
        try:
            yield
        finally:
            with self._detached:
                self._detached_now -= 1
                self._detached.notify_all()

    def close_detached_starts(self, timeout: float = START_TIMEOUT_S + KILL_WAIT_S) -> bool:
        """Refuse new `detached_start` blocks and wait up to ``timeout`` seconds for those
        running to end; return whether they all did."""
        with self._detached:
            self._detached_closed = True
            return self._detached.wait_for(lambda: self._detached_now == 0, timeout)

    def kill_unadopted(self, incn: Incarnation) -> None:
        """Kill a process `start_detached` started that no supervisor took, and wait for its
        exit (which then reports nothing: no status written, no failure)."""
        incn.terminating = "normal"
        incn.signal(signal.SIGKILL)
        incn.killed_exit()

    def _launch(self, name: str, failure: Failure | None, wake: bool = False,
                detached: bool = False) -> Incarnation | None:
        def txn(t: Txn) -> AgentRecord | None:
            rec = t.get_agent(name)
            if rec is None or (wake and rec.status != AgentStatus.SLEEPING):
                return None  # a wake of one no longer asleep (stopped, deleted) is dropped
            if detached and not wake and (rec.status != AgentStatus.STARTING
                                          or rec.spawning is None):
                return None  # a spawn's reservation undone meanwhile (stopped, deleted)
            # Counted before the fork, so a caller that sees the new process's reply
            # also sees the restart. A spawn (or a node start) marks the first start fresh;
            # a wake is no restart.
            rec = replace(rec, incarnation=rec.incarnation + 1, fresh=False,
                          restarts=rec.restarts if rec.fresh or wake else rec.restarts + 1,
                          status=AgentStatus.STARTING)
            t.put_agent(rec)
            return rec
        rec = self.store.write(txn)
        if rec is None and detached:
            return None
        if rec is None:
            raise StartFailed(f"agent {name!r} has no record")
        try:
            # Every start goes through here (spawn, restart, node start): a record stored by
            # an older beamish with a bad limit must not reach the limit checks.
            limits = check_limits(rec.limits)
        except ConfigError as exc:
            why = (f"its stored limits are invalid ({exc}); `beamish stop {name}`, then spawn "
                   "it again with valid limits")
            self._start_failures[name] = Failure(kind="exit", message=why)
            raise StartFailed(why) from None
        if failure is None and rec.recover_pending:
            # The node restarted between a failure and the start that runs recover for it.
            failure = rec.last_failure
        settings = self.settings
        boot = Boot(settings.node, rec.id, name, rec.cls, rec.args, rec.incarnation, failure,
                    settings.sys_path, limits, idle_timeout=rec.idle_timeout)
        preload = list(settings.preload)
        if settings.preload_agent_modules:
            preload.append(rec.cls.partition(":")[0])
        # Not under self.lock: the zygote's reader thread, which answers this fork, may be
        # taking that lock for another agent's exit at the same moment.
        try:
            pid = self.fork(boot.to_wire(), preload)
        except PreloadRefused as exc:
            self._start_failures[name] = Failure(
                kind="exit", message=f"module {exc.module!r} cannot be loaded: {exc.why} "
                "(found by a trial import in a throwaway process; the zygote and the other "
                "agents are unharmed): fix the module, it would kill any agent importing it")
            raise StartFailed(str(exc)) from None
        except ZygoteLost as exc:
            raise StartFailed(f"agent {name!r} was not forked: {exc}") from None
        incn = Incarnation(name, rec.id, rec.incarnation, pid, process_start_time(pid),
                           limits=Limits(**limits), waking=detached)
        with self.registered:
            self.by_pid[pid] = incn
            self.live.put(incn)
            ready = self._early_ready.pop(pid)
            early = self._early_exits.pop(pid)
            self.registered.notify_all()
        if ready is not None:
            self.on_ready(ready)  # its report beat the zygote's answer to us
        if early is not None:
            self.on_exit(pid, early)  # it died before we had registered it
        return incn

    def _await_ready(self, incn: Incarnation) -> None:
        name, pid = incn.name, incn.pid
        try:
            outcome = incn.ready.result(START_TIMEOUT_S)
        except FutureTimeout:
            incn.signal(signal.SIGKILL)
            raise StartFailed(f"agent {name!r} was not ready within {START_TIMEOUT_S:g} s") \
                from None
        if outcome is not True:
            reason, start_failure = outcome
            if start_failure is not None:
                self._start_failures[name] = start_failure
            raise StartFailed(str(reason))
        self._mark_running(name, pid)

    def _mark_running(self, name: str, pid: int) -> None:
        try:
            # This start ran recover if a failure was pending: it is consumed.
            self.registry.set_status(name, AgentStatus.RUNNING, pid=pid, recover_pending=False)
        except StoreFullError:
            # It runs: the supervisor must hold it. The registry catches up at its next write.
            log.exception("cannot record that agent %r (pid %d) runs", name, pid)

    # -- what the node and its commands ask --------------------------------------------------
    @contextmanager
    def stop_reason(self, name: str, reason: str) -> Iterator[None]:
        """Stop agent ``name`` with ``reason`` (not "shutdown") if its supervisor
        terminates it within this block (a command taking it out of the tree)."""
        self._stop_reasons[name] = reason
        try:
            yield
        finally:
            self._stop_reasons.pop(name, None)

    def forget_failure(self, name: str) -> None:
        """Drop the failure agent ``name``'s next start would recover from (a new spawn
        of the name is not a restart)."""
        self._next_failure.pop(name, None)

    def take_start_failure(self, name: str) -> Failure | None:
        """Take why agent ``name``'s last start failed, if its process (or the zygote)
        said so; None otherwise."""
        return self._start_failures.pop(name, None)

    def pid_of(self, name: str) -> int | None:
        """Return the pid of agent ``name``'s current process, or None."""
        incn = self.current.get(name)
        return None if incn is None else incn.pid

    def is_current(self, incn: Incarnation) -> bool:
        """Whether ``incn`` is still its agent's current process."""
        return self.current.get(incn.name) is incn

    def deliver_info(self, to: Incarnation, message: dict[str, str]) -> None:
        """Append an info message (a Down or Exit) to the mailbox of incarnation ``to``, if it
        is still the agent's live process, or the one it had when it fell asleep (any
        thread): a sleeping agent's append marks it to be woken, in the same transaction."""
        record = Message("info", pack(message), time.time())
        if to.asleep:
            packed = pack(record.to_wire())

            def txn(t: Txn) -> bool:
                route = t.get_route(to.name)
                if route is None or route[0] != to.id or route[1] not in ACCEPTS_MESSAGES:
                    return False
                append_routed(t, to.name, route, [packed])
                return route[1] == AgentStatus.SLEEPING
            if self.store.write(txn):
                hint_node(self.settings.paths)
            return
        if not self.is_current(to):
            return
        seq = self.store.write(lambda t: t.append(to.id, record))
        self.ring(self.settings.paths.agent_inbox(to.id), ring_frame(seq, pack(record.to_wire())))

    def name_of(self, agent_id: int) -> str | None:
        """Return the name of the agent with a registered process and id ``agent_id``."""
        with self.lock:
            incn = self.live.by_id.get(agent_id)
        return None if incn is None else incn.name

    def dropped_by_agents(self) -> tuple[int, int]:
        """Return the invalid frames dropped so far by agents' sockets (of the processes
        that exited, plus what the live ones published), and the invalid ready reports."""
        with self.lock:
            live = [(incn.id, incn.inc) for incn in self.current.values()]
            agents, ready = self.agent_dropped, self.rejected_reports
        agents += sum(read_dropped(self.settings.paths.agent_busy(i), inc) for i, inc in live)
        return agents, ready

    def live_processes(self) -> list[LiveProcess]:
        """The agents' processes that are ready and not exited, with their tallies (one
        moment: a process is either listed or its latency carried, never both)."""
        with self.lock:
            out = []
            for incn in self.current.values():
                if not incn.ready.done() or incn.exited.done() or incn.ready.result() is not True:
                    continue
                carried, kinds = self.tally.carried(incn.name)
                out.append(LiveProcess(incn.name, incn.id, incn.inc, incn.pid,
                                       incn.create_time, carried, kinds))
            return out

    def incarnation(self, name: str, inc: int | None = None,
                    wait: float = 0.0) -> Incarnation | None:
        """Return agent ``name``'s live process, one still in ``init``/``recover`` included
        (as in Erlang, a process exists from its spawn), or ``None``.

        Args:
            name: the agent.
            inc: only this incarnation; wait up to ``wait`` seconds for it to be registered.
            wait: seconds.
        """
        def found() -> Incarnation | None:
            incn = self.current.get(name)
            if incn is None or (inc is not None and incn.inc != inc) or incn.exited.done():
                return None
            return incn

        def settled() -> bool:
            incn = self.current.get(name)
            return found() is not None or (incn is not None and inc is not None
                                           and incn.inc > inc)
        with self.registered:
            if inc is not None and wait > 0:
                self.registered.wait_for(settled, wait)
            return found()

    def terminate_child(self, sup_id: str, spec: ChildSpec, handle: Any) -> ExitReason:
        """Stop the agent: ask, wait ``spec.shutdown`` seconds, then SIGKILL.

        Returns once the OS reports the process dead.
        """
        incn: Incarnation = handle
        reason = self._stop_reasons.pop(spec.id, "shutdown")
        if incn.exited.done():
            return incn.exited.result()[0]
        with self.lock:
            # One falling asleep whose exit on_exit has already taken was not stopped by us:
            # that exit stays what it was (a crash, a kill) for the sleeper to report.
            gone = incn.asleep and self.by_pid.get(incn.pid) is not incn
            if not gone:
                incn.terminating = reason
        if gone:
            try:
                return incn.exited.result(KILL_WAIT_S)[0]
            except FutureTimeout:
                log.error("the exit of agent %r (pid %d) was not classified within %g s",
                          spec.id, incn.pid, KILL_WAIT_S)
                return ExitReason.abnormal("killed")
        wait: float | None
        if spec.shutdown == "brutal_kill":
            incn.signal(signal.SIGKILL)
            wait = KILL_WAIT_S
        else:
            self.ring(self.settings.paths.agent_inbox(incn.id), stop_frame(reason))
            wait = None if spec.shutdown == "infinity" else float(spec.shutdown)  # type: ignore[arg-type]
        try:
            return incn.exited.result(wait)[0]
        except FutureTimeout:
            log.warning("agent %r (pid %d) did not stop within %s s: killing it",
                        spec.id, incn.pid, spec.shutdown)
            self.emit("killed", spec.id, sup_id, f"did not stop within {spec.shutdown} s")
            incn.signal(signal.SIGKILL)
        return incn.killed_exit()

    # -- limits --------------------------------------------------------------------------------
    def check_limits(self) -> None:
        """Kill every agent past its memory or handler-time limit (the node polls this)."""
        with self.lock:
            limited = [i for i in self.live.limited.values() if i.ready.done()]
        for incn in limited:
            try:
                why = self._over_limit(incn)
            except Exception:  # noqa: BLE001 - one agent's check must not stop the node
                log.exception("cannot check the limits of agent %r (pid %d)", incn.name, incn.pid)
                continue
            if why is not None and incn.limit_kill is None and incn.terminating is None:
                incn.limit_kill = why[0]
                log.warning("agent %r (pid %d) %s: killing it", incn.name, incn.pid, why[1])
                incn.signal(signal.SIGKILL)

    def _over_limit(self, incn: Incarnation) -> tuple[LimitKind, str] | None:
        timeout = incn.limits.handler_timeout
        if timeout:
            marker = read_marker(self.settings.paths.agent_busy(incn.id), incn.inc)
            if marker is not None and marker[1] > timeout:
                return "timeout", f"handled one message for {marker[1]:.2f} s (limit {timeout:g})"
        mem = incn.limits.memory_mb
        if mem:
            try:
                rss = psutil.Process(incn.pid).memory_info().rss
            except psutil.Error:
                return None
            if rss > mem * 1024 * 1024:
                return "oom", f"uses {rss / 1048576:.0f} MiB (limit {mem:g} MiB)"
        return None

    # -- exits ---------------------------------------------------------------------------------
    def on_ready(self, report: Report) -> None:
        """An agent reported that its init/recover ran (``report``: a ready report, checked
        by `wire.parse_report` or `wire.parse_ready`)."""
        with self.lock:
            incn = self.by_pid.get(report.pid)
            if incn is None:
                # Held until start_child registers the pid (the report can beat the
                # zygote's answer to the fork). Bounded: reports for pids that never become
                # ours (an agent's own child's) must not pile up.
                self.rejected_reports += self._early_ready.put(report.pid, report)
                return
        if incn.inc == report.inc and incn.id == report.id and not incn.ready.done():
            incn.trap_exits = report.trap_exits
            incn.ready.set_result(True)

    def on_exit(self, pid: int, code: int) -> None:
        """The zygote reaped ``pid`` with Popen-style ``code`` (from its reader thread)."""
        with self.lock:
            self.exits += 1
            incn = self.by_pid.pop(pid, None)
            if incn is None:
                # start_child registers it in a moment; an exit nobody registers (its fork
                # request timed out) must not pile up, nor meet a later process on its pid.
                self._early_exits.put(pid, code)
                return
            # A ready report read after this exit is stale: never let it meet a new process
            # that reuses the pid.
            self._early_ready.pop(pid)
            self.live.drop(incn)
            waking = incn.waking  # read with the pop: the waker reports it then
            asleep = incn.asleep
            # Falling asleep, and dead before the sleep's stop (terminate_child sets that
            # under this lock, and only while the process is ours): a crash, a kill or a
            # limit the sleeper reports to its supervisor (Sessions._sleep).
            lost = asleep and incn.terminating is None
            # Before a new process of the agent resets the marker.
            self.agent_dropped += read_dropped(self.settings.paths.agent_busy(incn.id), incn.inc)
            # Under the lock: a stats snapshot sees this process live or its latency carried.
            self.tally.exited(incn.name, read_latency(self.settings.paths.agent_busy(incn.id),
                                                      incn.inc))
        try:
            reason, failure, escalate = self._classify(incn, code)
        except Exception:  # noqa: BLE001 - an exit must never be lost to a bug in its report
            log.exception("cannot classify the exit of agent %r", incn.name)
            reason, failure, escalate = ExitReason.abnormal(f"exit code {code}"), None, None
        if not asleep:  # one that fell asleep keeps its links and monitors
            self._propagate(incn, reason)
        if not incn.ready.done() and was_ready(self.settings.paths.agent_busy(incn.id), incn.inc):
            # It started, then died before its ready report reached the main loop. The
            # shell is still inside start_child; the exit posted below queues behind it.
            incn.ready.set_result(True)
        if not incn.ready.done():
            if failure is not None and waking:
                self._next_failure[incn.name] = failure  # its supervisor restarts it
            incn.exited.set_result((reason, failure))
            incn.ready.set_result((reason, failure))
            self.emit("exited", incn.name, self.registry.supervisor_of(incn.name),
                           str(reason))
            return
        if incn.terminating is not None:
            incn.exited.set_result((reason, failure))
            return  # terminate_child is waiting for this; the shell knows
        sup = self.registry.supervisor_of(incn.name)
        if failure is not None:
            self._next_failure[incn.name] = failure
            self.tally.restarted(incn.name, failure.kind)
        if lost:
            # Its status first: the sleeper reads the exit, then hands it to the supervisor,
            # whose restart must not be overwritten by this write.
            incn.escalate = escalate
            try:
                self.registry.set_status(incn.name, AgentStatus.RESTARTING, pid=None,
                                         failure=failure, recover_pending=failure is not None)
            except StoreFullError:
                log.exception("cannot record the exit of agent %r", incn.name)
            incn.exited.set_result((reason, failure))
            return
        incn.exited.set_result((reason, failure))
        if waking:
            # Not adopted yet: the waker reports it to the supervisor once it is.
            self.registry.set_status(incn.name, AgentStatus.RESTARTING, pid=None,
                                     failure=failure, recover_pending=failure is not None)
            return
        try:
            self.registry.set_status(incn.name, AgentStatus.RESTARTING, pid=None, failure=failure,
                                 recover_pending=failure is not None)
        except StoreFullError:
            # The exit must still reach its supervisor (this is the zygote's reader thread).
            log.exception("cannot record the exit of agent %r", incn.name)
        shell = self.shell(sup)
        if shell is None:
            return
        if escalate is not None:
            shell.escalate(incn.name, incn, ExitReason.abnormal(escalate))
        else:
            shell.child_exited(incn.name, incn, reason)

    def on_zygote_lost(self, pids: set[int], why: str) -> None:
        """The zygote died (``why``): the agents it had forked (``pids``) die with it
        (PDEATHSIG). Make sure each is dead, then report each exit as a SIGKILL, so its
        supervisor restarts it (from a new zygote) as its spec says."""
        with self.lock:
            victims = [self.by_pid[pid] for pid in pids if pid in self.by_pid]
        for incn in victims:
            incn.signal(signal.SIGKILL)
        for pid in pids:
            # What an agent started, in its process group, has no PDEATHSIG: kill it. The
            # group's members keep its id from being reused as a pid meanwhile.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for incn in victims:
            _wait_gone(incn.pid, incn.create_time)
        for pid in pids:
            # A pid not registered yet is held as an early exit, bounded (see on_exit): one
            # whose fork request timed out is never registered and must not pile up.
            with self.lock:
                self._lost_with_zygote.put(pid, why)
            self.on_exit(pid, -signal.SIGKILL)

    def propagate(self, incn: Incarnation, reason: ExitReason) -> None:
        """Fire the monitors and links of ``incn``, which exited (or, asleep, was stopped
        or deleted) with ``reason``."""
        self._propagate(incn, reason)

    def _propagate(self, incn: Incarnation, reason: ExitReason) -> None:
        """Fire the exited incarnation's monitors and links."""
        if self.stopping.is_set():
            # The whole node is going down: a Down or Exit queued now would wait in a
            # durable mailbox and reach the next node's incarnations about this one's stop.
            self.links.exited(incn, "shutdown", False, {})
            return
        self.fire(incn, str(reason), not reason.is_normal)

    def fire(self, incn: Incarnation, reason: str, abnormal: bool) -> None:
        """Fire the monitors and links of ``incn`` (an exit, or a remote agent's stand-in:
        its exit or its node's loss): a Down or Exit delivered, a linked agent killed."""
        if self.remote_exit is not None and incn.remote is None:
            self.remote_exit(incn, reason, abnormal)  # the other nodes' ends first
        with self.lock:
            traps = {i: i.trap_exits for i in self.current.values()}
        for action in self.links.exited(incn, reason, abnormal, traps):
            if (action.to if isinstance(action, Deliver) else action.target).remote is not None:
                continue  # a stand-in: remote_exit told its node
            if isinstance(action, Deliver):
                try:
                    self.deliver_info(action.to, action.message)
                except StoreFullError:
                    log.exception("cannot deliver %r to agent %r", action.message,
                                  action.to.name)
            elif isinstance(action, KillLinked) and action.target.asleep:
                if self.kill_sleeper is not None:
                    self.kill_sleeper(action.target, action.reason)
            elif isinstance(action, KillLinked) and action.target.terminating is None:
                action.target.link_kill = action.reason
                action.target.signal(signal.SIGKILL)

    def _disk_full(self) -> str:
        """Why an agent that died without a report may have died: its store's (or the node
        dir's) filesystem is full. A full disk shows as an I/O error (exit code 1) or, for
        a write through a shared mapping on a full tmpfs, as SIGBUS."""
        for path in (self.settings.node.store, self.settings.paths.dir):
            full = filesystem_full(path)
            if full is not None:
                return (f", most likely because {full}; what to do: "
                        f"{full_disk_advice(self.settings.node.durability)}")
        return ""

    def _classify(self, incn: Incarnation, code: int
                  ) -> tuple[ExitReason, Failure | None, str | None]:
        """Gather the exit's evidence, `classify` it (pure), then charge the attempts."""
        # What its marker says it had begun and not committed (when it died without a
        # word): not always the mailbox head, since a group commits in one go.
        unfinished = read_unfinished(self.settings.paths.agent_busy(incn.id), incn.inc)

        def take_report(t: Txn) -> tuple[FailureReport | None, dict[int, str]]:
            report = t.pop_failure(incn.id)
            kinds = t.kinds_between(incn.id, unfinished.first, unfinished.last) \
                if unfinished.last else {}
            if unfinished.handling is not None:
                msg = t.message(incn.id, unfinished.handling)
                if msg is not None:
                    kinds[unfinished.handling] = str(msg.kind) if isinstance(msg, Message) \
                        else "malformed"
            return report, kinds
        report, kinds = self.store.write(take_report)
        verdict = classify(ExitEvidence(
            code=code, incarnation=incn.inc,
            report=report, terminating=incn.terminating,
            unfinished=unfinished, kinds=kinds, link_kill=incn.link_kill,
            limit_kill=incn.limit_kill, zygote_lost=self._lost_with_zygote.pop(incn.pid),
            limits=incn.limits,
            disk_full=self._disk_full() if code >= 0 or code == -signal.SIGBUS else ""))
        failure = verdict.failure
        if failure is not None and (verdict.charge is not None or verdict.also_charge):
            seq, also = verdict.charge, verdict.also_charge

            def bump(t: Txn) -> int:
                for other in also:
                    t.bump_attempts(incn.id, other)
                return t.bump_attempts(incn.id, seq) if seq is not None else 0
            failure = replace(failure, attempt=self.store.write(bump))
        return verdict.reason, failure, verdict.escalate


def _wait_gone(pid: int, create_time: float | None) -> None:
    """Wait (up to `KILL_WAIT_S`) until process ``pid`` of ``create_time`` is dead."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() != create_time or proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.01)
    log.error("agent pid %d outlived its zygote for %g s", pid, KILL_WAIT_S)
