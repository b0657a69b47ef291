"""A plain-threads runtime for the same `beamish.runtime.Agent` classes: the baseline.

Every agent is a thread with a `queue.Queue` mailbox, in the caller's process; state
lives in memory. It is meant to be the best honest version of "just use threads", so
the benchmarks compare beamish with something people would really write:

- no sleeps and no polling: a call puts ``(msg, reply slot)`` on the agent's queue and
  blocks on the slot (one reusable `queue.SimpleQueue` per calling thread, replies
  matched by a call id so a late reply to a timed-out call is dropped);
- supervision is beamish's own: the root is a `beamish.supervisor.Supervisor`
  (``one_for_one`` with per-child intensity, like a beamish node's root) and this module
  is its `Spawner`, so restart types, intensity and backoff follow the same ``decide()``;
- "let it crash" as in beamish: a handler that raises ends the agent's thread; the
  supervisor starts a new thread with a new `Agent` instance, which runs
  ``recover(failure, last_state)`` and honours `Resume` / `Skip` / `Reset` / `Stop` /
  `Escalate` (the default skips a message whose handler raised: its caller gets a
  `RemoteError`). The mailbox outlives the thread, so nothing queued is lost;
- ``async def`` handlers run on an asyncio loop owned by the agent's thread, one
  message at a time.

What it does not do, by design (these are what beamish's processes and LMDB buy):
no isolation (one agent's spinning handler or segfault takes everyone's latency or the
whole process with it), no durability (state is gone with the process), no limits,
and no serialization: the state is kept *by reference*, so a handler that mutates its
state in place and then raises leaves that mutation in the state the next incarnation
recovers (beamish recovers the last committed copy). A thread cannot be killed: one that
outstays its shutdown time is abandoned (it is a daemon thread, and its later results
are discarded).

Example::

    from benchmarks.threads_runtime import ThreadsNode
    with ThreadsNode() as node:
        ref = node.spawn("tests.agents.basic:Counter", name="c")
        ref.cast("incr")
        assert ref.call("get") == 1
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import logging
import queue
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from beamish.runtime import Agent, Escalate, Failure, Reset, Resume, Skip, Stop
from beamish.runtime.errors import AgentNotFound, CallTimeout, RemoteError, SpawnError
from beamish.supervisor import (
    ChildSpec,
    EventKind,
    ExitReason,
    RestartType,
    StartFailed,
    Supervisor,
    SupervisorSpec,
)

__all__ = ["ThreadsNode", "ThreadsRef", "load_class"]

ROOT = "root"
START_TIMEOUT_S = 60.0
# Mailbox entries are tuples whose first item is one of these.
_CALL, _CAST, _INFO, _WAKE = 0, 1, 2, 3
_NO_STATE = object()
_LIVE = frozenset({"starting", "running", "restarting"})


def load_class(cls: Any) -> type[Agent]:
    """Return the `Agent` subclass ``cls`` names (``"package.module:Class"``) or is.

    Raises:
        TypeError: it is not an `Agent` subclass.
    """
    obj: Any = cls
    if isinstance(cls, str):
        module_name, _, qual = cls.partition(":")
        obj = importlib.import_module(module_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise TypeError(f"{cls!r} is not a beamish.runtime.Agent subclass")
    return obj


_log = logging.getLogger("beamish.benchmarks.threads")

class _Context:
    """What ``self.ctx`` gives a handler here: the same methods as beamish's
    `AgentContext` (``call``, ``cast``, ``spawn``, ``send_after``, ``name``)."""

    def __init__(self, node: ThreadsNode, rec: _Record, incn: _Incarnation) -> None:
        self.name = rec.name
        self._node = node
        self._rec = rec
        self._incn = incn

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        return self._node.call(name, msg, timeout)

    def cast(self, name: str, msg: Any) -> None:
        self._node.cast(name, msg)

    def spawn(self, cls: Any, args: dict[str, Any] | None = None, name: str | None = None,
              **options: Any) -> str:
        # One root supervisor and no limits here: ``supervisor`` and ``limits`` are ignored.
        kept = {k: v for k, v in options.items() if k in ("restart", "shutdown", "timeout")}
        return self._node.spawn(cls, args, name, **kept).name

    def send_after(self, seconds: float, msg: Any) -> None:
        # Like beamish, a timer belongs to the incarnation: a restart cancels it.
        incn, mailbox = self._incn, self._rec.mailbox
        timer = threading.Timer(seconds, mailbox.put, ((_INFO, msg, incn),))
        timer.daemon = True
        incn.timers.append(timer)
        timer.start()


@dataclass(eq=False)
class _Incarnation:
    """One thread of one agent: the handle the supervisor holds."""

    number: int
    thread: threading.Thread | None = None
    ready: Future[Failure | None] = field(default_factory=Future)  # None: init/recover ran
    exited: Future[ExitReason] = field(default_factory=Future)
    stop_reason: str | None = None  # set by terminate_child
    abandoned: bool = False  # outstayed its shutdown time: its results are discarded
    timers: list[threading.Timer] = field(default_factory=list)


@dataclass(eq=False)
class _Record:
    """An agent across its incarnations: the mailbox and the state outlive threads."""

    name: str
    cls: type[Agent]
    args: dict[str, Any]
    spec: ChildSpec
    mailbox: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    state: Any = _NO_STATE
    status: str = "starting"
    restarts: int = 0
    processed: int = 0
    failure: Failure | None = None  # handed to the next incarnation's recover
    in_flight: tuple[Any, ...] | None = None  # the message its handler failed on
    held: tuple[Any, ...] | None = None  # taken off the queue by a stopping thread, unhandled
    attempts: int = 0  # attempts at ``in_flight`` so far
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    current: _Incarnation | None = None


class _Crash(Exception):
    """Unwinds an agent thread that failed; ``failure`` says why."""

    def __init__(self, failure: Failure, reason: ExitReason) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.reason = reason


class ThreadsRef:
    """A handle on one thread agent, by name (the shape of `beamish.runtime.AgentRef`)."""

    def __init__(self, node: ThreadsNode, name: str) -> None:
        self.node = node
        self.name = name

    def call(self, msg: Any, timeout: float = 5.0) -> Any:
        """See `ThreadsNode.call`."""
        return self.node.call(self.name, msg, timeout)

    def cast(self, msg: Any) -> None:
        """See `ThreadsNode.cast`."""
        self.node.cast(self.name, msg)

    def stop(self) -> None:
        """See `ThreadsNode.stop`."""
        self.node.stop(self.name)

    def __repr__(self) -> str:
        return f"ThreadsRef({self.name!r})"


class ThreadsNode:
    """Runs agents as threads of this process, under one ``one_for_one`` root supervisor.

    Safe to use from several threads at once. Use it as a context manager, or call
    `shutdown` in a ``finally``.

    Args:
        max_restarts: the root's intensity, per child (as a beamish node's root).
        max_seconds: the intensity period.
    """

    def __init__(self, max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        self._agents: dict[str, _Record] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._call_ids = itertools.count(1)
        self._incarnations = itertools.count(1)
        self._names = itertools.count(1)
        self._closed = False
        self._root = Supervisor(
            SupervisorSpec(ROOT, max_restarts=max_restarts, max_seconds=max_seconds,
                           per_child_intensity=True),
            _ThreadSpawner(self), on_event=self._on_event)
        self._root.start()

    # -- messages ------------------------------------------------------------------------------
    def _live(self, name: str) -> _Record:
        rec = self._agents.get(name)
        if rec is None:
            raise AgentNotFound(name)
        if rec.status not in _LIVE:
            raise AgentNotFound(name, f"it is {rec.status}")
        return rec

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Send ``msg`` to agent ``name`` and wait for its reply.

        Raises:
            CallTimeout: no reply within ``timeout`` (the message is still handled).
            AgentNotFound: no live or restarting agent has this name.
            RemoteError: the handler failed on this message.
        """
        rec = self._live(name)
        slot: queue.SimpleQueue[tuple[int, bool, Any]] | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = queue.SimpleQueue()
        call_id = next(self._call_ids)
        rec.mailbox.put((_CALL, msg, slot, call_id))
        deadline = time.monotonic() + timeout
        while True:
            try:
                got_id, ok, value = slot.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CallTimeout(name, timeout) from None
            if got_id != call_id:
                continue  # a late reply to an earlier call of this thread that timed out
            if ok:
                return value
            failure: Failure = value
            raise RemoteError(name, failure.exc_type or failure.kind, failure.message,
                              failure.traceback, failure)

    def cast(self, name: str, msg: Any) -> None:
        """Put ``msg`` in agent ``name``'s mailbox and return at once.

        Raises:
            AgentNotFound: no live or restarting agent has this name.
        """
        self._live(name).mailbox.put((_CAST, msg))

    def ref(self, name: str) -> ThreadsRef:
        """Return a `ThreadsRef` for ``name`` (not checked until used)."""
        return ThreadsRef(self, name)

    # -- the tree ------------------------------------------------------------------------------
    def spawn(self, cls: Any, args: dict[str, Any] | None = None, name: str | None = None,
              restart: str = "permanent", shutdown: float | str = 5.0,
              timeout: float = 30.0) -> ThreadsRef:
        """Start an agent thread and return once its ``init`` ran.

        Spawning the name of a stopped agent resumes its state (as beamish does).

        Raises:
            SpawnError: the name is in use, the class is not an Agent, or init failed.
        """
        try:
            klass = load_class(cls)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise SpawnError(name or "?", f"cannot load {cls!r}: {exc}") from None
        if name is None:
            name = f"{klass.__name__.lower()}-{next(self._names)}"
        spec = ChildSpec(name, restart=RestartType(restart), shutdown=shutdown)
        with self._lock:
            old = self._agents.get(name)
            if old is not None and old.status != "stopped":
                raise SpawnError(name, f"the name {name!r} is in use")
            rec = _Record(name, klass, dict(args or {}), spec)
            if old is not None:  # resume: keep the state and the queued messages
                rec.state, rec.mailbox, rec.processed = old.state, old.mailbox, old.processed
            self._agents[name] = rec
        try:
            self._root.add_child(spec, timeout=timeout)
        except StartFailed as exc:
            with self._lock:
                if self._agents.get(name) is rec:
                    del self._agents[name]
            raise SpawnError(name, f"init failed: {exc}", rec.failure) from None
        return ThreadsRef(self, name)

    def stop(self, name: str, timeout: float = 120.0) -> None:
        """Stop an agent in order (``terminate``, then its thread ends); its state stays,
        so spawning the name again resumes it.

        Raises:
            AgentNotFound: no agent has this name.
        """
        rec = self._agents.get(name)
        if rec is None:
            raise AgentNotFound(name)
        self._root.remove_child(name, timeout=timeout)
        rec.status = "stopped"

    def status(self, name: str) -> str:
        """The agent's status: starting, running, restarting, failed, exited or stopped.

        Raises:
            AgentNotFound: no agent has this name.
        """
        rec = self._agents.get(name)
        if rec is None:
            raise AgentNotFound(name)
        return rec.status

    def restarts(self, name: str) -> int:
        """How many times agent ``name`` has been restarted."""
        rec = self._agents.get(name)
        if rec is None:
            raise AgentNotFound(name)
        return rec.restarts

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """The casts set aside by `Skip` for agent ``name``, with their failures."""
        rec = self._agents.get(name)
        if rec is None:
            raise AgentNotFound(name)
        return list(rec.dead_letters)

    def shutdown(self, timeout: float | None = 60.0) -> None:
        """Stop every agent in reverse start order, then the supervisor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._root.shutdown(timeout)
        for rec in self._agents.values():
            if rec.status in _LIVE:
                rec.status = "stopped"

    def __enter__(self) -> ThreadsNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- supervisor reports ----------------------------------------------------------------------
    def _on_event(self, kind: EventKind, name: str, supervisor: str, reason: str) -> None:
        rec = self._agents.get(name)
        if rec is None:
            return
        if kind is EventKind.FAILED:
            # Past its restart intensity: no incarnation will take its mailbox, so the
            # callers waiting in it get the failure now instead of a timeout.
            rec.status = "failed"
            failure = rec.failure or Failure(kind="exit", message="restart intensity exceeded")
            items = [rec.in_flight] if rec.in_flight is not None else []
            rec.in_flight = None
            while True:
                try:
                    items.append(rec.mailbox.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if item[0] == _CALL:
                    item[2].put((item[3], False, failure))
        elif kind is EventKind.BACKOFF:
            rec.status = "restarting"

    # -- the agent thread ------------------------------------------------------------------------
    def _start(self, rec: _Record) -> _Incarnation:
        incn = _Incarnation(next(self._incarnations))
        incn.thread = threading.Thread(target=self._run, args=(rec, incn),
                                       name=f"agent-{rec.name}", daemon=True)
        rec.current = incn
        incn.thread.start()
        try:
            failure = incn.ready.result(START_TIMEOUT_S)
        except FutureTimeout:
            incn.abandoned = True
            raise StartFailed(f"agent {rec.name!r} was not ready within {START_TIMEOUT_S:g} s",
                              rec.name) from None
        if failure is not None:
            rec.failure = failure
            raise StartFailed(f"{failure.kind}: {failure.exc_type} {failure.message}".strip(),
                              rec.name)
        if rec.status == "restarting":
            rec.restarts += 1
        rec.status = "running"
        return incn

    def _terminate(self, rec: _Record, incn: _Incarnation) -> ExitReason:
        if incn.exited.done():
            return incn.exited.result()
        incn.stop_reason = "shutdown"
        rec.mailbox.put((_WAKE, incn))
        seconds = rec.spec.shutdown_seconds
        try:
            return incn.exited.result(None if seconds == float("inf") else seconds)
        except FutureTimeout:
            incn.abandoned = True  # a thread cannot be killed: forget it
            return ExitReason.abnormal("killed")

    def _run(self, rec: _Record, incn: _Incarnation) -> None:
        agent = rec.cls()
        agent.ctx = _Context(self, rec, incn)  # type: ignore[assignment]
        loop: list[asyncio.AbstractEventLoop] = []

        def user(fn: Any, *args: Any) -> Any:
            result = fn(*args)
            if inspect.isawaitable(result):
                if not loop:
                    loop.append(asyncio.new_event_loop())
                result = loop[0].run_until_complete(result)
            return result

        reason = ExitReason.normal()
        try:
            try:
                pending = self._boot(rec, agent, user)
            except _Crash as crash:
                incn.ready.set_result(crash.failure)
                incn.exited.set_result(crash.reason)
                return
            incn.ready.set_result(None)
            reason = self._serve(rec, incn, agent, user, pending)
        except _Crash as crash:
            rec.failure = crash.failure
            reason = crash.reason
        finally:
            for timer in incn.timers:
                timer.cancel()
            if loop:
                loop[0].close()
            if not incn.exited.done():
                incn.exited.set_result(reason)
        if incn.stop_reason is None and not incn.abandoned and not self._closed:
            self._exited(rec, incn, reason)

    def _exited(self, rec: _Record, incn: _Incarnation, reason: ExitReason) -> None:
        """The thread ended by itself (a crash or a `Stop`): tell the supervisor."""
        restart = rec.spec.restart
        if restart is RestartType.TEMPORARY or (restart is RestartType.TRANSIENT
                                                and reason.is_normal):
            rec.status = "exited"
        else:
            rec.status = "restarting"
        self._root.child_exited(rec.name, incn, reason)

    def _boot(self, rec: _Record, agent: Agent, user: Any) -> tuple[Any, ...] | None:
        """Run ``init`` or ``recover``; return the message to retry first, if any."""
        failure, rec.failure = rec.failure, None
        try:
            if rec.state is _NO_STATE:
                rec.state = user(agent.init, dict(rec.args))
            if failure is None:
                held, rec.held = rec.held, None
                return held
            try:
                decision = user(agent.recover, failure, rec.state)
            except Exception:  # a raising recover is treated as Reset, as in beamish
                decision = Reset()
            if isinstance(decision, (Resume, Skip)):
                rec.state = decision.state
            elif isinstance(decision, (Stop, Escalate)):
                why = decision.reason
                reason = (ExitReason.normal(why) if isinstance(decision, Stop)
                          and why in ("normal", "shutdown") else ExitReason.abnormal(why))
                raise _Crash(Failure(kind="exit", message=f"recover: {why}"), reason)
            else:  # Reset, or an unknown decision
                rec.state = user(agent.init, dict(rec.args))
        except _Crash:
            raise
        except BaseException as exc:  # noqa: BLE001 - a failing init is the agent's failure
            failure = _failure(exc, None, 0)
            raise _Crash(failure, ExitReason.abnormal(f"init: {failure.exc_type}")) from None
        item, rec.in_flight = rec.in_flight, None
        if item is None:
            return None
        retry = isinstance(decision, (Resume, Reset)) and \
            rec.attempts < rec.cls.max_attempts
        if retry:
            return item
        rec.attempts = 0
        if item[0] == _CALL:
            item[2].put((item[3], False, failure))
        elif item[0] == _CAST:
            rec.dead_letters.append({"message": item[1], "failure": failure,
                                     "time": time.time()})
        return None

    def _serve(self, rec: _Record, incn: _Incarnation, agent: Agent, user: Any,
               pending: tuple[Any, ...] | None) -> ExitReason:
        get = rec.mailbox.get
        while True:
            item = pending if pending is not None else get()
            pending = None
            if incn.stop_reason is not None:
                if item[0] != _WAKE:
                    rec.held = item  # not handled: the next incarnation takes it first
                try:
                    user(agent.terminate, incn.stop_reason, rec.state)
                except Exception as exc:  # noqa: BLE001 - the stop goes on, as in beamish
                    _log.warning("terminate of agent %r failed: %s: %s", rec.name,
                                 type(exc).__name__, exc)
                return ExitReason.shutdown(incn.stop_reason)
            kind = item[0]
            if kind == _WAKE:
                continue
            if kind == _INFO and item[2] is not incn:
                continue  # a timer of an earlier incarnation
            try:
                if kind == _CALL:
                    result = user(agent.handle_call, item[1], rec.state)
                    if isinstance(result, Stop):
                        reply, state, stop = result.reply, rec.state, result
                    elif isinstance(result, tuple) and len(result) == 2:
                        (reply, state), stop = result, None
                    else:
                        raise TypeError(f"bad_return_value: handle_call of agent {rec.name!r} "
                                        f"returned {type(result).__name__}, expected "
                                        "(reply, new_state) or Stop")
                else:
                    fn = agent.handle_cast if kind == _CAST else agent.handle_info
                    state = user(fn, item[1], rec.state)
                    stop = None
                    if isinstance(state, Stop):
                        state, stop = rec.state, state
            except Exception as exc:  # noqa: BLE001 - let it crash
                rec.in_flight = item if kind != _INFO else None
                rec.attempts += 1
                failure = _failure(exc, item, rec.attempts)
                raise _Crash(failure, ExitReason.abnormal(f"exception: {failure.exc_type}")) \
                    from None
            if incn.abandoned:
                return ExitReason.abnormal("killed")
            rec.state = state
            rec.processed += 1
            rec.attempts = 0
            if kind == _CALL:
                item[2].put((item[3], True, reply))
            if stop is not None:
                why = stop.reason
                return (ExitReason.normal(why) if why == "normal" else
                        ExitReason.shutdown(why) if why == "shutdown" else
                        ExitReason.abnormal(why))


def _failure(exc: BaseException, item: tuple[Any, ...] | None, attempt: int) -> Failure:
    in_flight = None
    if item is not None:
        in_flight = {"kind": {_CALL: "call", _CAST: "cast"}.get(item[0], "info")}
    return Failure(kind="exception", exc_type=type(exc).__name__, message=str(exc),
                   traceback="".join(traceback.format_exception(exc)), in_flight=in_flight,
                   attempt=attempt)


class _ThreadSpawner:
    """The `beamish.supervisor.Spawner` that starts and stops agent threads."""

    def __init__(self, node: ThreadsNode) -> None:
        self.node = node

    def start_child(self, sup_id: str, spec: ChildSpec) -> _Incarnation:
        rec = self.node._agents.get(spec.id)
        if rec is None:
            raise StartFailed(f"agent {spec.id!r} has no record", spec.id)
        return self.node._start(rec)

    def terminate_child(self, sup_id: str, spec: ChildSpec, handle: object) -> ExitReason:
        rec = self.node._agents.get(spec.id)
        assert isinstance(handle, _Incarnation)
        if rec is None:
            return handle.exited.result() if handle.exited.done() else ExitReason.shutdown()
        return self.node._terminate(rec, handle)
