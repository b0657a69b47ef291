"""The runtime's `Spawner`: starts agents through the zygote, stops them, and turns
every process exit into an `ExitReason` and, when abnormal, a classified `Failure`.

Death is judged from the OS (the zygote's ``waitpid``), never from the agent's own word;
the agent's report in LMDB only adds detail (the exception, a ``Stop`` reason).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beamish.mailbox import Kind, encode_ring, pack
from beamish.supervisor import ChildSpec, ExitReason, StartFailed

import psutil

from ._inflight import read_in_flight, read_marker, was_ready
from ._links import Deliver, KillLinked
from ._osproc import process_start_time
from ._store import Txn
from ._types import Failure
from ._zygote_link import PreloadRefused, ZygoteLost

if TYPE_CHECKING:
    from ._node import NodeDaemon

log = logging.getLogger("beamish.node")
START_TIMEOUT_S = 60.0
KILL_WAIT_S = 10.0


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
    limit_kill: str | None = None  # "oom" | "timeout" | "cpu" when a limit killed it
    limits: dict[str, float] = field(default_factory=dict)
    trap_exits: bool = False  # from its ready report
    link_kill: str | None = None  # why a linked agent's exit killed it

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if the pid is still this incarnation's process."""
        if self.exited.done() or process_start_time(self.pid) != self.create_time:
            return False
        try:
            os.kill(self.pid, signum)
            return True
        except ProcessLookupError:
            return False


class AgentSpawner:
    """Starts and stops agent processes for the supervisor shells of one node."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.by_pid: dict[int, Incarnation] = {}
        self.current: dict[str, Incarnation] = {}
        self.next_failure: dict[str, Failure] = {}
        self.start_failures: dict[str, Failure] = {}
        self.stop_reasons: dict[str, str] = {}
        self.early_exits: dict[int, int] = {}  # pid -> code, for exits seen before registration
        self.early_ready: dict[int, dict[str, Any]] = {}  # pid -> ready report, likewise
        self.lost_with_zygote: dict[int, str] = {}  # pid -> how the zygote it died with ended

    # -- Spawner protocol ----------------------------------------------------------------------
    def start_child(self, sup_id: str, spec: ChildSpec) -> Incarnation:
        """Fork the agent ``spec.id`` and return once its ``init``/``recover`` ran.

        Raises:
            StartFailed: it exited (or hung) before it was ready.
        """
        node = self.node
        name = spec.id
        failure = self.next_failure.pop(name, None)

        def txn(t: Txn) -> dict[str, Any] | None:
            rec = t.get_agent(name)
            if rec is None:
                return None
            rec["incarnation"] = int(rec.get("incarnation", 0)) + 1
            # Counted before the fork, so a caller that sees the new process's reply
            # also sees the restart. A spawn (or a node start) marks the first start fresh.
            if not rec.pop("fresh", False):
                rec["restarts"] = int(rec.get("restarts", 0)) + 1
            rec["status"] = "starting"
            t.put_agent(rec)
            return rec
        rec = node.store.write(txn)
        if rec is None:
            raise StartFailed(f"agent {name!r} has no record")
        boot = {
            "dir": node.paths.dir, "store": node.store_path, "durability": node.durability,
            "id": rec["id"], "name": name, "cls": rec["cls"], "args": rec.get("args", {}),
            "incarnation": rec["incarnation"], "failure": failure.to_dict() if failure else None,
            "max_message_bytes": node.max_message_bytes, "sys_path": node.sys_path,
            "limits": rec.get("limits") or {},
        }
        preload = list(node.preload)
        if node.preload_agent_modules:
            preload.append(rec["cls"].partition(":")[0])
        # Not under self.lock: the zygote's reader thread, which answers this fork, may be
        # taking that lock for another agent's exit at the same moment.
        try:
            pid = node.zygote.fork(boot, preload)
        except PreloadRefused as exc:
            self.start_failures[name] = Failure(
                kind="exit", message=f"module {exc.module!r} cannot be loaded: {exc.why} "
                "(found by a trial import in a throwaway process; the zygote and the other "
                "agents are unharmed): fix the module, it would kill any agent importing it")
            raise StartFailed(str(exc)) from None
        except ZygoteLost as exc:
            raise StartFailed(f"agent {name!r} was not forked: {exc}") from None
        incn = Incarnation(name, rec["id"], rec["incarnation"], pid, process_start_time(pid),
                           limits={k: v for k, v in (rec.get("limits") or {}).items() if v})
        with self.lock:
            self.by_pid[pid] = incn
            self.current[name] = incn
            ready = self.early_ready.pop(pid, None)
            early = self.early_exits.pop(pid, None)
        if ready is not None:
            self.on_ready(ready)  # its report beat the zygote's answer to us
        if early is not None:
            self.on_exit(pid, early)  # it died before we had registered it
        try:
            outcome = incn.ready.result(START_TIMEOUT_S)
        except FutureTimeout:
            incn.signal(signal.SIGKILL)
            raise StartFailed(f"agent {name!r} was not ready within {START_TIMEOUT_S:g} s") \
                from None
        if outcome is not True:
            reason, start_failure = outcome
            if start_failure is not None:
                self.start_failures[name] = start_failure
            raise StartFailed(str(reason))
        node.set_status(name, "running", pid=pid)
        return incn

    def terminate_child(self, sup_id: str, spec: ChildSpec, handle: Any) -> ExitReason:
        """Stop the agent: ask, wait ``spec.shutdown`` seconds, then SIGKILL.

        Returns once the OS reports the process dead.
        """
        incn: Incarnation = handle
        reason = self.stop_reasons.pop(spec.id, "shutdown")
        if incn.exited.done():
            return incn.exited.result()[0]
        incn.terminating = reason
        wait: float | None
        if spec.shutdown == "brutal_kill":
            incn.signal(signal.SIGKILL)
            wait = KILL_WAIT_S
        else:
            self.node.ring(self.node.paths.agent_inbox(incn.id),
                           encode_ring(Kind.SYSTEM, b"", pack({"op": "stop", "reason": reason})))
            wait = None if spec.shutdown == "infinity" else float(spec.shutdown)  # type: ignore[arg-type]
        try:
            return incn.exited.result(wait)[0]
        except FutureTimeout:
            log.warning("agent %r (pid %d) did not stop within %s s: killing it",
                        spec.id, incn.pid, spec.shutdown)
            self.node.emit("killed", spec.id, sup_id, f"did not stop within {spec.shutdown} s")
            incn.signal(signal.SIGKILL)
        try:
            return incn.exited.result(KILL_WAIT_S)[0]
        except FutureTimeout:
            log.error("agent %r (pid %d) survived SIGKILL for %g s", spec.id, incn.pid,
                      KILL_WAIT_S)
            return ExitReason.abnormal("killed")

    # -- limits --------------------------------------------------------------------------------
    def check_limits(self) -> None:
        """Kill every agent past its memory or handler-time limit (the node polls this)."""
        with self.lock:
            limited = [i for i in self.current.values() if i.limits and i.ready.done()]
        for incn in limited:
            why = self._over_limit(incn)
            if why is not None and incn.limit_kill is None and incn.terminating is None:
                incn.limit_kill = why[0]
                log.warning("agent %r (pid %d) %s: killing it", incn.name, incn.pid, why[1])
                incn.signal(signal.SIGKILL)

    def _over_limit(self, incn: Incarnation) -> tuple[str, str] | None:
        timeout = incn.limits.get("handler_timeout")
        if timeout:
            marker = read_marker(self.node.paths.agent_busy(incn.id), incn.inc)
            if marker is not None and marker[1] > timeout:
                return "timeout", f"handled one message for {marker[1]:.2f} s (limit {timeout:g})"
        mem = incn.limits.get("memory_mb")
        if mem:
            try:
                rss = psutil.Process(incn.pid).memory_info().rss
            except psutil.Error:
                return None
            if rss > mem * 1024 * 1024:
                return "oom", f"uses {rss / 1048576:.0f} MiB (limit {mem:g} MiB)"
        return None

    # -- exits ---------------------------------------------------------------------------------
    def on_ready(self, payload: dict[str, Any]) -> None:
        """An agent reported that its init/recover ran."""
        with self.lock:
            incn = self.by_pid.get(int(payload.get("pid", -1)))
            if incn is None:
                self.early_ready[int(payload.get("pid", -1))] = payload
                return
        if (incn.inc == payload.get("inc") and incn.id == payload.get("id")
                and not incn.ready.done()):
            incn.trap_exits = bool(payload.get("trap_exits"))
            incn.ready.set_result(True)

    def on_exit(self, pid: int, code: int) -> None:
        """The zygote reaped ``pid`` with Popen-style ``code`` (from its reader thread)."""
        with self.lock:
            incn = self.by_pid.pop(pid, None)
            if incn is None:
                self.early_exits[pid] = code  # start_child registers it in a moment
                return
            # A ready report read after this exit is stale: never let it meet a new process
            # that reuses the pid.
            self.early_ready.pop(pid, None)
            if self.current.get(incn.name) is incn:
                del self.current[incn.name]
        try:
            reason, failure, escalate = self._classify(incn, code)
        except Exception:  # noqa: BLE001 - an exit must never be lost to a bug in its report
            log.exception("cannot classify the exit of agent %r", incn.name)
            reason, failure, escalate = ExitReason.abnormal(f"exit code {code}"), None, None
        self._propagate(incn, reason)
        if not incn.ready.done() and was_ready(self.node.paths.agent_busy(incn.id), incn.inc):
            # It started, then died before its ready report reached the main loop. The
            # shell is still inside start_child; the exit posted below queues behind it.
            incn.ready.set_result(True)
        if not incn.ready.done():
            incn.exited.set_result((reason, failure))
            incn.ready.set_result((reason, failure))
            self.node.emit("exited", incn.name, self.node.sup_of(incn.name), str(reason))
            return
        incn.exited.set_result((reason, failure))
        sup = self.node.sup_of(incn.name)
        if incn.terminating is not None:
            return  # terminate_child is waiting for this; the shell knows
        if failure is not None:
            self.next_failure[incn.name] = failure
        self.node.set_status(incn.name, "restarting", pid=None, failure=failure)
        shell = self.node.shell(sup)
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
            self.lost_with_zygote[pid] = why
            self.on_exit(pid, -signal.SIGKILL)

    def _propagate(self, incn: Incarnation, reason: ExitReason) -> None:
        """Fire the exited incarnation's monitors and links."""
        if self.node.stopping.is_set():
            # The whole node is going down: a Down or Exit queued now would wait in a
            # durable mailbox and reach the next node's incarnations about this one's stop.
            self.node.links.exited(incn, "shutdown", False, {})
            return
        with self.lock:
            traps = {i: i.trap_exits for i in self.current.values()}
        for action in self.node.links.exited(incn, str(reason), not reason.is_normal, traps):
            if isinstance(action, Deliver):
                self.node.deliver_info(action.to, action.message)
            elif isinstance(action, KillLinked) and action.target.terminating is None:
                action.target.link_kill = action.reason
                action.target.signal(signal.SIGKILL)

    def _classify(self, incn: Incarnation, code: int
                  ) -> tuple[ExitReason, Failure | None, str | None]:
        node = self.node

        # What its marker says it was handling (when it died without a word, below): not
        # always the mailbox head, since a group's messages are removed in one commit.
        busy = read_in_flight(node.paths.agent_busy(incn.id), incn.inc)

        def take_report(t: Txn) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            report = t.pop_failure(incn.id)
            return report, (t.message(incn.id, busy) if busy is not None else None)
        report, busy_msg = node.store.write(take_report)
        lost = self.lost_with_zygote.pop(incn.pid, None)
        if report is not None and report.get("inc") != incn.inc:
            report = None
        if incn.terminating is not None:
            r = incn.terminating
            return (ExitReason.normal(r) if r == "normal" else ExitReason.shutdown(r)), None, None
        if report is not None and report.get("escalate"):
            why = str(report["escalate"])
            return ExitReason.abnormal(f"escalate: {why}"), None, why
        if report is not None and "stop" in report:
            why = str(report["stop"])
            if why == "normal":
                return ExitReason.normal(why), None, None
            if why == "shutdown":
                return ExitReason.shutdown(why), None, None
            failure = Failure(kind="exit", message=f"stopped: {why}", exit_code=code)
            return ExitReason.abnormal(why), failure, None
        if report is not None and report.get("failure"):
            failure = Failure.from_dict(report["failure"])
            assert failure is not None
            if failure.exc_type == "MemoryError" and "memory_mb" in incn.limits:
                # The RLIMIT_DATA backstop made an allocation fail: that is its memory limit.
                failure = Failure(**{**failure.to_dict(), "kind": "oom"})
        elif incn.link_kill is not None:
            failure = Failure(kind="killed", message=incn.link_kill, signal=-code if code < 0 else None)
        elif incn.limit_kill is not None:
            failure = Failure(kind=incn.limit_kill, message=f"exceeded its {incn.limit_kill} limit",  # type: ignore[arg-type]
                              signal=-code if code < 0 else None)
        elif lost is not None:
            failure = Failure(kind="killed", message=f"killed with the zygote, which died ({lost})",
                              signal=-code if code < 0 else None)
        elif code < 0 and -code == signal.SIGXCPU and "cpu_seconds" in incn.limits:
            failure = Failure(kind="cpu", message=f"used its {incn.limits['cpu_seconds']:g} CPU "
                              "seconds (RLIMIT_CPU)", signal=-code)
        elif code < 0:
            sig = -code
            kind = "killed" if sig == signal.SIGKILL else "signal"
            failure = Failure(kind=kind, message=f"killed by {signal.Signals(sig).name}",
                              signal=sig)
        else:
            failure = Failure(kind="exit", message=f"exited with code {code}", exit_code=code)
        in_flight = failure.in_flight
        if in_flight is None and report is None and busy_msg is not None:
            # Died without a word (signal, os._exit, limit) while handling that message.
            in_flight = {"seq": busy, "kind": busy_msg["k"]}
        attempt = 0
        if in_flight is not None:
            seq = int(in_flight["seq"])
            attempt = node.store.write(lambda t: t.bump_attempts(incn.id, seq))
        failure = Failure(**{**failure.to_dict(), "in_flight": in_flight, "attempt": attempt})
        return ExitReason.abnormal(f"{failure.kind}: {failure.exc_type or failure.message}"), \
            failure, None


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
