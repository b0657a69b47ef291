"""Sleeping agents: the node puts agents to sleep and wakes them on their next message.

A sleeping agent is its record in the store (status ``sleeping``) and nothing else: no
process, no child in a supervisor shell, no Python object here (except the handle its
links and monitors hold, if it has any). Neither transition is an exit or a start in the
supervisor's sense, so intensity, ``exited``/``restarted`` events and ``Down``/``Exit``
never see them (nor do they reset anything: the supervisor keeps a released child's
restart history for its adoption to take back):

    sleep(name)  shell.release_child ──▶ stop frame "sleep" (terminate("sleep", state))
                 ──▶ txn: status sleeping, pid None, and wakes[id] if its mailbox is not
                 empty ──▶ event ``slept``
    wake(name)   spawner.start_detached (no init if it has state, no recover; one txn:
                 running, wakes[id] deleted) ──▶ shell.adopt_child ──▶ links rebound
                 ──▶ event ``woke``. Asked first (``shell.adoption_error``): a supervisor
                 that is down costs no fork (the wake waits for it); a process that
                 cannot be started is an exit its supervisor handles (restart rules).

Who wakes whom: every append that finds an agent sleeping (a sender's, a fired timer's,
the node's Down/Exit) writes ``wakes[id]`` in its own transaction and hints this
service's datagram socket; the service also scans the (small) wakes table every second
and at start, so a lost hint or a node killed mid-wake costs latency, never a message.
An agent idle for its ``idle_timeout`` hints the socket too (`IdleHint`), and
``[node] max_awake`` puts the least recently active idle agents to sleep
(`activity.choose_sleepers`).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from beamish.supervisor import (
    ChildKind,
    ChildSpec,
    ExitReason,
    NotRunning,
    RestartType,
    StartFailed,
    Supervisor,
    SupervisorError,
)

from .._osproc import bind_datagram
from .._paths import NodePaths
from .._types import AgentStatus, Failure, Limits
from ..errors import AgentNotFound, StoreError
from ..messaging.messenger import hint_node
from ..messaging.wire import WAKE_HINT, IdleHint, SpawnedHint, parse_session_hint
from ..store.protocol import Store, Txn
from ..store.records import AgentRecord
from .activity import Activity, choose_sleepers, observe
from .links import LinkTable
from .registry import Emit, Registry
from .spawner import AgentSpawner, Incarnation

log = logging.getLogger("beamish.node.sessions")
SCAN_S = 1.0  # the wakes table is scanned at least this often (a lost hint's cost)
WAKERS = 16  # wakes run at once
# Sleeps run at once, in their own workers: a sleep waits for its agent's terminate (up
# to its shutdown time), and a message to a sleeping agent must not wait behind it.
SLEEPERS = 16
MAX_AWAKE_EVERY_S = 0.05  # the max_awake rule is applied at most this often after wakes
HINTS_AT_ONCE = 4096  # spawned hints read before their records are (one read for all)
HINT_MAX_BYTES = 65536
WAKES_PAGE = 1024  # wake marks read per store read by a scan
CLAIM_WAIT_S = 60.0  # a sleep waits this long for a wake (or sleep) in progress to end
GONE_LOG_EVERY_S = 60.0  # "its supervisor cannot take it" is logged this often per supervisor
CANCEL_POLL_S = 0.05  # a stop looks this often for the process of a wake it cancels
UPGRADE = "upgrade"  # the why of an upgrade's sleep and wake (`restart_in_place`)
Retry = Callable[[tuple[ExitReason, "Failure | None"]], bool]
"""``retry((reason, failure))``: a start that failed before it was ready; True to start
it once more (`Sessions.restart_in_place`)."""


def _resolved(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


# What every handle held for a sleeping agent shares (node/spawner.py's Incarnation).
_HELD_READY = _resolved(True)
_HELD_EXITED = _resolved((ExitReason.normal(), None))
_HELD_LIMITS = Limits()


def child_spec(shell: Supervisor, rec: AgentRecord) -> ChildSpec | str:
    """The spec agent ``rec`` has under ``shell`` (its name under a simple_one_for_one
    supervisor, whose children are made from its template)."""
    if shell.spec.strategy == "simple_one_for_one":
        return rec.name
    return ChildSpec(rec.name, ChildKind.AGENT, RestartType(rec.restart), rec.shutdown)


def pending_wakes(store: Store, page: int = WAKES_PAGE) -> Iterator[tuple[int, str]]:
    """Every wake mark as ``(agent_id, name)``, by agent id, read ``page`` at a time (one
    store read each): marks that cannot be acted on now (a supervisor that is gone) must
    not hide the ones after them."""
    def read(after: int | None) -> list[tuple[int, str]]:
        return store.read(lambda t: t.wakes(page, after))
    after: int | None = None
    while True:
        marks = read(after)
        yield from marks
        if len(marks) < page:
            return
        after = marks[-1][0]


class Sessions:
    """Puts agents to sleep and wakes them (see the module docstring).

    Args:
        paths: the node's files (the sessions socket).
        store: the node's store.
        registry: the agents' records.
        spawner: starts and stops agent processes.
        links: the links and monitors (held for sleeping agents).
        emit: records an event.
        shell: finds a supervisor shell by name.
        max_awake: ``[node] max_awake`` (None: unlimited).
    """

    def __init__(self, paths: NodePaths, *, store: Store, registry: Registry,
                 spawner: AgentSpawner, links: LinkTable[Incarnation], emit: Emit,
                 shell: Callable[[str], Supervisor | None], max_awake: int | None) -> None:
        self.paths = paths
        self.store = store
        self.registry = registry
        self.spawner = spawner
        self.links = links
        self.emit = emit
        self.shell = shell
        self.max_awake = max_awake
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a transition ends
        self._busy: set[str] = set()  # agents with a wake or sleep in progress
        self._queued: set[str] = set()  # agents whose wake waits for a worker
        self._sleeps_queued: set[str] = set()  # agents whose sleep waits for a worker
        self._held: dict[str, Incarnation] = {}  # sleeping agents' links/monitors handles
        # Agents falling asleep: the released process, whose links and monitors move to
        # _held once it sleeps (a monitor or link meanwhile lands on it, not on noproc).
        self._going: dict[str, Incarnation] = {}
        # Agents being woken: a monitor or link meanwhile lands on their _held handle,
        # which the wake moves to the new process.
        self._waking: set[str] = set()
        self._activity: dict[str, Activity] = {}  # awake agents, for max_awake
        self._limit_at = 0.0  # when the max_awake rule last ran
        self._cannot_wake_logged: dict[str, float] = {}  # supervisor -> when it was logged
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=WAKERS, thread_name_prefix="beamish-wake")
        self._sleepers = ThreadPoolExecutor(max_workers=SLEEPERS,
                                            thread_name_prefix="beamish-sleep")
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.woken = 0
        self.slept = 0
        spawner.kill_sleeper = self.kill_linked
        links.on_released = self._released

    # -- the service ------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the sessions socket and start serving (pending wakes are done now)."""
        sock = bind_datagram(self.paths.sessions_poke)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="beamish-sessions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving (wakes in progress finish; sleeping agents stay asleep)."""
        self._stop.set()
        if self._thread is not None:
            hint_node(self.paths)  # ends its wait now, not at its next scan (up to SCAN_S)
            self._thread.join(timeout=5.0)
        # Wakes and sleeps in progress finish (each within its agent's shutdown time).
        self._sleepers.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.paths.sessions_poke)
            except FileNotFoundError:
                pass

    def _run(self) -> None:
        assert self._sock is not None
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            tick = now >= next_scan
            if tick:
                next_scan = now + SCAN_S
            else:
                select.select([self._sock], [], [], next_scan - now)
            try:
                if (self._drain() or tick) and not self._stop.is_set():
                    self._scan()
                    if self.max_awake is not None:
                        self._apply_max_awake()
            except StoreError as exc:
                log.warning("cannot scan the pending wakes: %s", exc)
            except Exception:  # noqa: BLE001 - a bug must not stop every wake; logged
                log.exception("scanning the pending wakes failed")

    def _drain(self) -> bool:
        """Read the queued hints: act on idle reports; return whether a wake was hinted."""
        assert self._sock is not None
        woke = False
        spawned: list[str] = []
        while len(spawned) < HINTS_AT_ONCE:
            try:
                data = self._sock.recv(HINT_MAX_BYTES)
            except BlockingIOError:
                break
            hint = parse_session_hint(data)
            if hint == WAKE_HINT:
                woke = True
            elif isinstance(hint, SpawnedHint):
                spawned.extend(hint.names)
            elif isinstance(hint, IdleHint):
                name = self.spawner.name_of(hint.id)
                incn = self.spawner.incarnation(name) if name is not None else None
                if name is not None and incn is not None and incn.inc == hint.inc \
                        and incn.ready.done():
                    self._queue_sleep(name, "idle")
        if spawned:
            # Registered by clients straight into the store: their events, read at once.
            recs = self.store.read(lambda t: [t.get_agent(n) for n in spawned])
            for rec in recs:
                if rec is not None and rec.status == AgentStatus.SLEEPING:
                    self.emit("spawned", rec.name, rec.supervisor, "lazy")
        return woke

    def _scan(self) -> None:
        for _, name in pending_wakes(self.store):
            if self._stop.is_set():
                return
            with self._lock:
                if name in self._busy or name in self._queued:
                    continue
                self._queued.add(name)  # one queued wake per agent, however many hints
            self._submit(self.wake, name)

    def _submit(self, fn: Callable[..., object], *args: object,
                pool: ThreadPoolExecutor | None = None) -> None:
        try:
            (pool or self._pool).submit(fn, *args)
        except RuntimeError:
            pass  # the node is stopping: what is pending is found at its next start

    def _queue_sleep(self, name: str, why: str) -> None:
        """Put ``name`` to sleep in a sleep worker, unless its sleep waits for one already
        (max_awake chooses the same idle agents again until they are asleep)."""
        with self._lock:
            if name in self._sleeps_queued:
                return
            self._sleeps_queued.add(name)
        self._submit(self._try_sleep, name, why, pool=self._sleepers)

    def _claim(self, name: str, wait: float = 0.0, cancel_wake: bool = False) -> bool:
        """Take ``name`` for one transition, waiting up to ``wait`` seconds for the one in
        progress to end; False if it does not. ``cancel_wake``: a wake in progress whose
        process is not ready yet is ended by killing that process (see `transition`)."""
        deadline = time.monotonic() + wait
        with self._settled:
            while name in self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if cancel_wake and name in self._waking:
                    self._cancel_start(name)
                    left = min(left, CANCEL_POLL_S)  # its process may not be registered yet
                self._settled.wait(left)
            self._busy.add(name)
            return True

    def _cancel_start(self, name: str) -> None:
        """Kill the process a wake of ``name`` started, if it is not ready yet (under
        self._lock); the wake then puts the agent back to sleep (`_wake`)."""
        incn = self.spawner.incarnation(name)
        if incn is None or not incn.waking or incn.ready.done():
            return
        with self.spawner.lock:
            if self.spawner.by_pid.get(incn.pid) is not incn or incn.terminating is not None:
                return  # exited already, or cancelled already
            incn.terminating = "normal"  # on_exit: a stop, no failure
        log.info("agent %r is stopped while it wakes: its starting process (pid %d) is "
                 "killed", name, incn.pid)
        incn.signal(signal.SIGKILL)

    def _release(self, name: str) -> None:
        with self._settled:
            self._busy.discard(name)
            self._settled.notify_all()

    @contextmanager
    def transition(self, name: str, wait: float = CLAIM_WAIT_S) -> Iterator[None]:
        """Hold agent ``name``'s transition slot for the block: a wake or sleep in progress
        ends first, and none starts until the block ends (a stop or delete changes its
        status inside it, so a wake cannot bring the agent back).

        A wake whose process is still starting (in ``init``/``recover``, not ready) is
        not waited for: that process is killed (nothing it did is committed; ``init`` runs
        again at its next start) and the agent sleeps again, so an agent can stop itself
        from its first wake's ``init``.

        Raises:
            AgentNotFound: a wake or sleep of it did not end within ``wait`` seconds.
        """
        if not self._claim(name, wait, cancel_wake=True):
            raise AgentNotFound(name, f"it has been waking or falling asleep for over "
                                      f"{wait:g} s; try again")
        try:
            yield
        finally:
            self._release(name)

    # -- wake ---------------------------------------------------------------------------------
    def wake(self, name: str) -> bool:
        """Wake agent ``name`` if it sleeps and nothing else is waking or putting it to
        sleep; return whether this call woke it (any thread)."""
        with self._lock:
            self._queued.discard(name)
        if not self._claim(name):
            return False
        with self._lock:
            self._waking.add(name)
        try:
            return self._wake(name)
        except Exception:  # noqa: BLE001 - a worker's bug must not be silent
            log.exception("cannot wake agent %r; its wake stays pending", name)
            return False
        finally:
            with self._lock:
                self._waking.discard(name)
            self._release(name)

    def _wake(self, name: str, retry: Retry | None = None,
              why: str = "a message or timer") -> bool:
        rec = self.registry.get(name)
        if rec is None or rec.status != AgentStatus.SLEEPING:
            self._drop_stale_wake(name)
            return False
        shell = self.shell(rec.supervisor)
        if shell is None:
            self._cannot_wake(rec, "is gone")
            return False
        spec = child_spec(shell, rec)
        refused = shell.adoption_error(spec)
        if isinstance(refused, NotRunning):
            # Down or restarting: no fork now; the wake stays pending, and the scan after
            # it is up again wakes the agent.
            self._cannot_wake(rec, f"is not running ({refused})")
            return False
        if refused is not None:
            # It holds a child of that name already, which a sleeping agent cannot be.
            log.error("cannot wake agent %r: its supervisor %r refuses it (%s); its wake is "
                      "dropped (its next message tries again)", name, rec.supervisor, refused)
            self.store.write(lambda t: self._drop_wake_txn(t, name, rec.id))
            return False
        try:
            started = self.spawner.start_detached(name, wake=True)
        except StartFailed as exc:
            return self._wake_not_started(shell, spec, rec, exc)
        if started is None:  # no longer asleep (stopped, deleted): nothing to adopt
            self._drop_stale_wake(name)
            return False
        incn, outcome = started
        if outcome is not True and retry is not None and incn.terminating is None \
                and retry(outcome):
            # Its caller starts it on something else now (an upgrade: back on its old
            # code): not a crash; asleep again, its wake kept, and started once more.
            self.spawner.forget_failure(name)
            self.store.write(lambda t: self._sleep_txn(t, name, rec.id, keep_wake=True))
            return self._wake(name, why=why)
        if incn.terminating is not None:
            # A stop came while it started, and killed it (`_cancel_start`): asleep again
            # (its wake kept), for that stop to find.
            incn.killed_exit()
            self.store.write(lambda t: self._sleep_txn(t, name, rec.id, keep_wake=True))
            return False
        try:
            shell.adopt_child(spec, incn)
        except SupervisorError as exc:
            # Its supervisor went down since it was asked (rare): back to sleep; the wake
            # stays pending (unless the supervisor holds the name) for a later scan.
            keep = isinstance(exc, NotRunning)
            log.warning("agent %r woke but its supervisor %r cannot adopt it (%s): it "
                        "sleeps again", name, rec.supervisor, exc)
            self._unwake(rec, incn, keep_wake=keep)
            return False
        with self.spawner.lock:
            incn.waking = False
            # Popped by on_exit: it exited while waking, and left the report to us.
            exited = self.spawner.by_pid.get(incn.pid) is not incn
        with self._lock:  # with _waking: a monitor or link lands on the one or the other
            self._waking.discard(name)
            old = self._held.pop(name, None)
            if old is not None:
                self.links.rebind(old, incn)
        if outcome is not True or exited:
            # It failed before (or right after) it was ready (a lazy agent's init raised,
            # an import error, a kill): a crash like any other for its supervisor.
            reason, failure = outcome if outcome is not True else incn.exited.result()
            if outcome is not True:
                self.registry.set_status(name, AgentStatus.RESTARTING, failure=failure,
                                         recover_pending=failure is not None)
            self.emit("woke", name, rec.supervisor, f"and failed: {reason}")
            self._propagate_held(incn, reason)
            shell.child_exited(name, incn, reason)
            return True
        self.woken += 1
        self.emit("woke", name, rec.supervisor, why)
        if self.max_awake is not None \
                and time.monotonic() - self._limit_at >= MAX_AWAKE_EVERY_S:
            self._apply_max_awake()
        return True

    def _cannot_wake(self, rec: AgentRecord, why: str) -> None:
        """Log that ``rec``'s supervisor cannot take it now (its wake stays pending), once
        per `GONE_LOG_EVERY_S` per supervisor: the scan finds its marks every second."""
        now = time.monotonic()
        with self._lock:
            last = self._cannot_wake_logged.get(rec.supervisor)
            if last is not None and now - last < GONE_LOG_EVERY_S:
                return
            self._cannot_wake_logged[rec.supervisor] = now
        log.warning("cannot wake agent %r: its supervisor %r %s; its wake stays pending "
                    "(said once a minute per supervisor, whichever of its agents waits)",
                    rec.name, rec.supervisor, why)

    def _wake_not_started(self, shell: Supervisor, spec: ChildSpec | str, rec: AgentRecord,
                          exc: StartFailed) -> bool:
        """The wake's process could not be started (the zygote lost, the fork refused): a
        crash like any other for its supervisor, which gets it as an exited child (a
        handle with no process), so its restart type, intensity and ``exited`` event
        apply (its restart starts the agent again, or fails and is counted)."""
        name = rec.name
        why = self.spawner.take_start_failure(name) \
            or Failure(kind="exit", message=f"its process could not be started: {exc}")
        inc = self.store.write(lambda t: self._not_started_txn(t, name, rec.id, why))
        if inc is None:
            return False  # stopped or deleted meanwhile
        reason = ExitReason.abnormal(f"it did not wake: {why.message}")
        incn = Incarnation(name, rec.id, inc, 0, None)  # pid 0: no process to signal
        incn.ready.set_result((reason, why))
        incn.exited.set_result((reason, why))
        try:
            shell.adopt_child(spec, incn)
        except SupervisorError as err:
            # It went down since it was asked: asleep again, the wake pending.
            log.warning("agent %r did not wake and its supervisor %r cannot take it (%s): "
                        "its wake stays pending", name, rec.supervisor, err)
            self.store.write(lambda t: self._lost_txn(t, name, rec.id, inc))
            return False
        with self._lock:  # with _waking, as a started wake does (`_wake`)
            self._waking.discard(name)
            old = self._held.pop(name, None)
            if old is not None:
                self.links.rebind(old, incn)
        self.emit("woke", name, rec.supervisor, f"and failed: {reason}")
        self._propagate_held(incn, reason)
        shell.child_exited(name, incn, reason)
        return True

    @staticmethod
    def _not_started_txn(t: Txn, name: str, agent_id: int, why: Failure) -> int | None:
        """Restarting (no recover pending: nothing ran), its wake mark gone (its restart
        handles its mailbox), if the record is still the failed wake's; return its
        incarnation."""
        cur = t.get_agent(name)
        if cur is None or cur.id != agent_id or cur.status != AgentStatus.STARTING:
            return None
        t.put_agent(replace(cur, status=AgentStatus.RESTARTING, pid=None, last_failure=why,
                            recover_pending=False))
        t.delete_wake(agent_id)
        return cur.incarnation

    @staticmethod
    def _drop_wake_txn(t: Txn, name: str, agent_id: int) -> None:
        """Delete sleeping agent ``name``'s wake mark (if it still sleeps as that agent)."""
        cur = t.get_agent(name)
        if cur is not None and cur.id == agent_id and cur.status == AgentStatus.SLEEPING:
            t.delete_wake(agent_id)

    def _unwake(self, rec: AgentRecord, incn: Incarnation, keep_wake: bool = True) -> None:
        """Put a woken process its supervisor could not take back to sleep, its wake kept
        unless ``keep_wake`` is False (the supervisor holds the name: the mark would only
        come back to the same refusal) (what it linked or monitored is held, as for any
        sleep). One that died on its own
        meanwhile (its exit recorded it restarting, and no supervisor holds it) sleeps
        with its failure kept, so that its next wake runs ``recover``."""
        name = rec.name
        live = self._mark_asleep(incn, True)
        if live:
            self._stop_process(rec.supervisor, rec, incn)
        if incn.terminating is None:
            reason, _ = incn.exited.result()
            if live:  # on_exit left its links to us (it was marked asleep)
                self.spawner.propagate(incn, reason)
            self.store.write(lambda t: self._lost_txn(t, name, rec.id, incn.inc))
            return
        self.store.write(lambda t: self._sleep_txn(t, name, rec.id, keep_wake=keep_wake))
        with self._lock:
            self._hold(name, incn)

    def _propagate_held(self, incn: Incarnation, reason: ExitReason) -> None:
        """A woken process that died at once: what it held (rebound) hears of the exit."""
        self.spawner.propagate(incn, reason)

    def _drop_stale_wake(self, name: str) -> None:
        """Delete the wake mark of an agent that is not asleep (woken, stopped, deleted)."""
        def txn(t: Txn) -> None:
            cur = t.get_agent(name)
            after: int | None = None
            while page := t.wakes(1024, after):  # every mark, not only the first page
                for agent_id, marked in page:
                    if marked == name and (cur is None or cur.id != agent_id
                                           or cur.status != AgentStatus.SLEEPING):
                        t.delete_wake(agent_id)
                after = page[-1][0]
        self.store.write(txn)

    # -- sleep --------------------------------------------------------------------------------
    def sleep(self, name: str, why: str, wait: float = CLAIM_WAIT_S) -> None:
        """Put agent ``name`` to sleep now (``why``: requested, idle, max_awake): its
        process runs ``terminate("sleep", state)`` and exits; its record says sleeping.
        One already asleep is left as it is.

        Raises:
            AgentNotFound: no such agent, or it is not running (starting, restarting,
                failed, stopped, or being woken or put to sleep right now).
        """
        if not self._claim(name, wait):
            raise AgentNotFound(name, f"it has been waking or falling asleep for over "
                                      f"{wait:g} s; try again")
        again = False
        try:
            again = self._sleep(name, why)
        finally:
            self._release(name)
        if again:
            self._submit(self.wake, name)

    def restart_in_place(self, name: str, retry: Retry) -> bool:
        """Stop agent ``name``'s process orderly (it finishes its current message, then
        ``terminate("upgrade", state)``) and start it again at once from its committed
        state: a sleep and a wake in one transition, so no other wake or sleep comes
        between, and, as for them, no restart is counted and no Down/Exit sent (its
        messages wait in its mailbox). Used by an upgrade (``node/upgrade.py``), whose
        fork function chooses the zygote. ``retry(outcome)`` is asked if the new process
        fails before it is ready: True starts it once more (its caller changed what it
        starts on), False hands the failure to its supervisor as a crash. Returns whether
        it woke.

        Raises:
            AgentNotFound: no such agent, it is not running, or a wake or sleep of it
                did not end within `CLAIM_WAIT_S`.
        """
        if not self._claim(name, CLAIM_WAIT_S):
            raise AgentNotFound(name, f"it has been waking or falling asleep for over "
                                      f"{CLAIM_WAIT_S:g} s; try again")
        try:
            self._sleep(name, UPGRADE)
            with self._lock:
                self._waking.add(name)
            try:
                return self._wake(name, retry, UPGRADE)
            finally:
                with self._lock:
                    self._waking.discard(name)
        finally:
            self._release(name)

    def _try_sleep(self, name: str, why: str) -> None:
        with self._lock:
            self._sleeps_queued.discard(name)
        try:
            self.sleep(name, why, wait=0.0)  # busy: it is waking or asleep already
        except AgentNotFound as exc:
            log.info("agent %r was not put to sleep (%s): %s", name, why, exc)
        except Exception:  # noqa: BLE001 - a worker's bug must not be silent
            log.exception("cannot put agent %r to sleep (%s)", name, why)

    def _sleep(self, name: str, why: str) -> bool:
        rec = self.registry.get(name)
        if rec is None:
            raise AgentNotFound(name)
        if rec.status == AgentStatus.SLEEPING:
            return False
        shell = self.shell(rec.supervisor)
        if rec.status != AgentStatus.RUNNING or shell is None:
            raise AgentNotFound(name, f"it is {rec.status}, and only a running agent can "
                                      "be put to sleep")
        if why not in ("requested", UPGRADE) and self.store.read(lambda t: bool(t.peek(rec.id, 1))):
            # Chosen idle (max_awake, idle_timeout), busy by now (its sleep waited for a
            # worker): a message in the middle of its handler is still in its mailbox.
            raise AgentNotFound(name, "it has messages to handle, so it is not idle any "
                                      "more")
        incn = self.spawner.incarnation(name)
        if incn is None or not self._going_to_sleep(incn):
            raise AgentNotFound(name, "its process has just exited; its supervisor handles "
                                      "that exit")
        try:
            released = shell.release_child(name)
        except SupervisorError as exc:
            with self._lock:
                self._going.pop(name, None)
            if not self._mark_asleep(incn, False):
                self._report_lost(shell, rec, incn, adopt=False)
            raise AgentNotFound(name, f"its supervisor does not hold it running ({exc})") \
                from None
        if released is not incn:
            # Restarted between the two reads (rare): put the one its supervisor held to
            # sleep instead; one that has exited already was reported to nobody.
            assert isinstance(released, Incarnation)
            old, incn = incn, released
            live = self._going_to_sleep(incn)
            if not self._mark_asleep(old, False):
                # Exited while marked (its supervisor had it terminated meanwhile): what
                # it held still hears of that exit.
                self.spawner.propagate(old, old.exited.result()[0])
            if not live:
                self._report_lost(shell, rec, incn, propagate=False)
                raise AgentNotFound(name, "its process exited while it fell asleep; its "
                                          "supervisor handles that exit")
        self._stop_process(rec.supervisor, rec, incn, "upgrade" if why == UPGRADE else "sleep")
        if incn.terminating is None:
            # It died before the sleep's stop (a crash, a kill, a limit): no sleep, but a
            # crash its supervisor, which has released it, must still hear of.
            reason = self._report_lost(shell, rec, incn)
            raise AgentNotFound(name, f"its process exited ({reason}) before it fell "
                                      "asleep; its supervisor handles that exit")
        woke = self.store.write(lambda t: self._sleep_txn(t, name, rec.id))
        if woke is None:
            # Stopped or deleted meanwhile (that command set its status): what watched it
            # hears of a normal exit, as for any stop.
            with self._lock:
                self._going.pop(name, None)
            with self.spawner.lock:
                incn.asleep = False
            self.spawner.propagate(incn, ExitReason.normal())
            raise AgentNotFound(name, "it was stopped meanwhile")
        with self._lock:
            self._going.pop(name, None)
            self._hold(name, incn)
            self._activity.pop(name, None)
        self.slept += 1
        self.emit("slept", name, rec.supervisor, why)
        return woke

    def _going_to_sleep(self, incn: Incarnation) -> bool:
        """Mark ``incn`` falling asleep, and the handle a monitor or link to its agent
        lands on until it sleeps; return whether its process was still live then."""
        with self._lock:
            self._going[incn.name] = incn
        if self._mark_asleep(incn, True):
            return True
        with self._lock:
            self._going.pop(incn.name, None)
        return False

    def _hold(self, name: str, incn: Incarnation) -> None:
        """Keep ``incn`` (asleep) as ``name``'s handle for what links and monitors it, if
        anything does (under self._lock); a handle made meanwhile is merged into it."""
        made = self._held.pop(name, None)
        if made is not None and made is not incn and made.id == incn.id:
            self.links.rebind(made, incn)
        if self.links.holds(incn):
            self._held[name] = incn

    def _mark_asleep(self, incn: Incarnation, asleep: bool) -> bool:
        """Mark ``incn`` falling asleep (or not any more); return whether its process was
        still live then (else on_exit has taken its exit as it was marked)."""
        with self.spawner.lock:
            incn.asleep = asleep
            return self.spawner.by_pid.get(incn.pid) is incn

    def _report_lost(self, shell: Supervisor, rec: AgentRecord, incn: Incarnation,
                     adopt: bool = True, propagate: bool = True) -> ExitReason:
        """Hand an exit no supervisor heard of (the process died while it fell asleep) to
        its supervisor, as a crash like any other: adopted again (unless it still holds
        it), then reported, so its restart type, intensity and Down/Exit apply."""
        reason, _ = incn.exited.result()
        name = rec.name
        with self._lock:
            self._going.pop(name, None)  # a monitor or link now finds it restarting: noproc
        with self.spawner.lock:
            incn.asleep = False
        if propagate:
            self.spawner.propagate(incn, reason)
        with self._lock:
            self._activity.pop(name, None)
        cur = self.registry.get(name)
        if cur is None or cur.id != rec.id or cur.status != AgentStatus.RESTARTING:
            return reason  # stopped or deleted meanwhile: nothing to restart
        try:
            if adopt:
                shell.adopt_child(child_spec(shell, rec), incn)
        except SupervisorError as exc:
            # Its supervisor cannot take it back now (restarting, stopping): asleep with its
            # wake pending, so the next scan starts it (recovering from the failure kept).
            log.warning("agent %r exited while it fell asleep and its supervisor %r cannot "
                        "take it back (%s): it is woken instead", name, rec.supervisor, exc)
            self.store.write(lambda t: self._lost_txn(t, name, rec.id, incn.inc))
            self.hint()
            return reason
        if incn.escalate is not None:
            shell.escalate(name, incn, ExitReason.abnormal(incn.escalate))
        else:
            shell.child_exited(name, incn, reason)
        return reason

    @staticmethod
    def _lost_txn(t: Txn, name: str, agent_id: int, inc: int) -> None:
        """Sleeping with a wake pending, if the record is still that exit's (its failure
        stays, so the wake's start recovers from it)."""
        cur = t.get_agent(name)
        if cur is not None and cur.id == agent_id and cur.incarnation == inc \
                and cur.status == AgentStatus.RESTARTING:
            t.put_agent(replace(cur, status=AgentStatus.SLEEPING, pid=None))
            t.put_wake(agent_id, name)

    def _stop_process(self, sup: str, rec: AgentRecord, incn: Incarnation,
                      reason: str = "sleep") -> None:
        """Stop the released process orderly with ``reason`` (its shutdown time, then
        SIGKILL); its exit reaches no supervisor and fires no link or monitor."""
        spec = ChildSpec(rec.name, ChildKind.AGENT, RestartType(rec.restart), rec.shutdown)
        with self.spawner.stop_reason(incn.name, reason):
            self.spawner.terminate_child(sup, spec, incn)

    @staticmethod
    def _sleep_txn(t: Txn, name: str, agent_id: int, keep_wake: bool = False) -> bool | None:
        """Mark the agent sleeping; if its mailbox is not empty, mark it to be woken again
        (LMDB's one writer orders this against every append: one before it is in the
        mailbox now, one after it sees ``sleeping`` and marks the wake itself). Returns
        whether it marked a wake, or None if the agent is no longer running."""
        cur = t.get_agent(name)
        if cur is None or cur.id != agent_id or cur.status not in (
                AgentStatus.RUNNING, AgentStatus.STARTING):
            return None
        t.put_agent(replace(cur, status=AgentStatus.SLEEPING, pid=None))
        if keep_wake or t.peek(agent_id, 1):
            t.put_wake(agent_id, name)
            return True
        return False

    # -- what commands ask ---------------------------------------------------------------------
    def hint(self) -> None:
        """Look at the pending wakes now (a command marked one)."""
        hint_node(self.paths)

    def forget(self, name: str, reason: str) -> None:
        """A sleeping agent was stopped or deleted: what watched it hears ``reason``."""
        with self._lock:
            old = self._held.pop(name, None)
        if old is not None:
            old.asleep = False
            self.spawner.propagate(old, ExitReason.normal() if reason == "normal"
                                   else ExitReason.abnormal(reason))

    def kill_linked(self, held: Incarnation, reason: str) -> None:
        """A sleeping agent is linked to one that exited abnormally and does not trap
        exits: wake it, then kill it as the link would an awake one (any thread; its
        supervisor then restarts it as its restart type says)."""
        # A sleep worker: it may wait for a transition in progress (a slow sleep) first.
        self._submit(self._wake_and_kill, held.name, reason, pool=self._sleepers)

    def _wake_and_kill(self, name: str, reason: str) -> None:
        if self._claim(name, CLAIM_WAIT_S):  # let a transition in progress end first
            self._release(name)
        self.wake(name)
        incn = self.spawner.incarnation(name)
        if incn is not None and incn.terminating is None:
            incn.link_kill = reason
            incn.signal(signal.SIGKILL)

    def watch(self, name: str, attach: Callable[[Incarnation], None]) -> bool:
        """Run ``attach`` (a link or monitor) on the handle of agent ``name``'s current
        process, of the one it is falling asleep from, or of the node's hold on it while it
        sleeps or wakes; return False, attaching nothing, if it has none (it is not running,
        starting or asleep). Atomic with the moves of those handles (falling asleep, waking,
        a stop's `forget`), so that what is attached is neither lost nor answered noproc."""
        with self._lock:
            target = self._target(name)
            if target is None:
                return False
            attach(target)
            return True

    def _target(self, name: str) -> Incarnation | None:
        going = self._going.get(name)
        if going is not None:
            return going
        if name not in self._waking:
            live = self.spawner.incarnation(name)
            if live is not None:
                return live
        rec = self.registry.get(name)
        if rec is None or rec.status not in (
                (AgentStatus.SLEEPING, AgentStatus.STARTING, AgentStatus.RUNNING)
                if name in self._waking else (AgentStatus.SLEEPING,)):
            return None
        incn = self._held.get(name)
        if incn is None or incn.id != rec.id:
            # No process to signal; its futures are shared (settled, never set again): a
            # handle is about 330 bytes, not 3.7 KB (tracemalloc).
            incn = Incarnation(name, rec.id, rec.incarnation, 0, None, ready=_HELD_READY,
                               exited=_HELD_EXITED, limits=_HELD_LIMITS, asleep=True)
            self._held[name] = incn
        return incn

    def _released(self, incn: Incarnation) -> None:
        """Nothing links to or monitors ``incn`` any more (its watchers exited): drop it
        if it is a sleeping agent's handle (`LinkTable.on_released`; any thread)."""
        if not incn.asleep:
            return
        with self._lock:
            if self._held.get(incn.name) is incn and not self.links.holds(incn):
                del self._held[incn.name]

    @property
    def awake(self) -> int:
        """How many agent processes the node holds now."""
        return len(self.spawner.current)

    @property
    def held(self) -> int:
        """How many sleeping agents the node keeps a handle for (something links to or
        monitors them)."""
        with self._lock:
            return len(self._held)

    # -- max_awake ------------------------------------------------------------------------------
    def _apply_max_awake(self) -> None:
        """Put the least recently active idle agents to sleep while more than
        ``max_awake`` are awake (activity: a moved count of handled messages)."""
        self._limit_at = time.monotonic()
        limit = self.max_awake
        with self.spawner.lock:
            live = [(i.name, i.id, i.started) for i in self.spawner.current.values()
                    if i.ready.done() and not i.waking]
        if limit is None or len(live) <= limit:
            return

        def read(t: Txn) -> list[tuple[str, int, bool, bool]]:
            out = []
            for name, agent_id, _ in live:
                route = t.get_route(name)
                running = route is not None and route[1] == AgentStatus.RUNNING
                out.append((name, t.processed(agent_id), not t.peek(agent_id, 1), running))
            return out
        now = time.time()
        readings = self.store.read(read)
        awake: list[Activity] = []
        started = {name: at for name, _, at in live}
        with self._lock:
            self._activity = {n: a for n, a in self._activity.items() if n in started}
            for name, processed, idle, running in readings:
                prev = self._activity.get(name)
                # First seen: active since its process started (a wake is activity).
                act = Activity(name, processed, started[name], idle) if prev is None \
                    else observe(prev, processed, idle, now)
                self._activity[name] = act
                busy = name in self._busy
                awake.append(act if running and not busy else replace(act, idle=False))
        for name in choose_sleepers(awake, limit):
            self._queue_sleep(name, "max_awake")
