"""The supervisor shell: one thread and an event queue per supervisor, like an OTP
supervisor process.

Layering: ``_spec``/``_restarts``/``_policy`` are pure; this module is the only one
that starts threads, reads the clock or calls the :class:`Spawner`. Each event goes

    queue -> decide(spec, state, event, clock.now()) -> actions -> Spawner / Clock / parent

and the shell reports back what happened (``ChildStarted``/``StartError``) before it
takes the next event. Nested supervisors are shells too, sharing the spawner, the
clock and ``on_event``; a parent only ever *blocks* on its children (to boot or halt
them), never the other way round, so the tree cannot deadlock on itself::

    runtime threads ──add_child/child_exited/...──▶ [queue] root thread ──start/terminate──▶ Spawner
                                                        │  ▲
                                               boot/halt│  │child_exited (a nested supervisor gave up)
                                                        ▼  │
                                                   [queue] nested thread ──▶ Spawner
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._clock import Clock, MonotonicClock, TimerHandle
from ._errors import InvalidSpec, NotFound, NotRunning, StartFailed, SupervisorError
from ._layered import Layered
from ._policy import (
    Action,
    AddChild,
    AdoptChild,
    BackoffElapsed,
    Boot,
    ChildExited,
    ChildStarted,
    ChildStatus,
    Escalate,
    Event,
    Forget,
    Halt,
    MarkFailed,
    Outcome,
    Release,
    ReleaseChild,
    RemoveChild,
    RestartChild,
    Retry,
    RetryRestart,
    ShutdownSelf,
    Start,
    StartAfter,
    StartError,
    SupervisorState,
    Terminate,
    adoption_error,
    decide,
)
from ._reason import ExitReason
from ._spec import ChildKind, ChildSpec, Strategy, SupervisorSpec

__all__ = [
    "ChildSnapshot",
    "EventKind",
    "OnEvent",
    "Spawner",
    "SubtreeHandle",
    "Supervisor",
    "SupervisorSnapshot",
]

_log = logging.getLogger("beamish.supervisor")
_T = TypeVar("_T")


class EventKind(enum.StrEnum):
    """What a supervisor reports through ``on_event`` (like OTP's supervisor reports)."""

    SPAWNED = "spawned"
    """A child started for the first time. ``name``: the child."""
    EXITED = "exited"
    """A running child exited by itself (reported by the runtime). ``name``: the child."""
    RESTARTED = "restarted"
    """A child started again after an exit (or with its restarted supervisor)."""
    ESCALATED = "escalated"
    """A supervisor gave up (intensity exceeded or a child escalated) and stopped all
    its children. ``name``: the supervisor."""
    FAILED = "failed"
    """A child passed its own intensity or escalated, and is left stopped (per-child
    intensity). ``name``: the child."""
    BACKOFF = "backoff"
    """A child's restart is delayed. ``reason``: ``"restart in 0.250s"``."""
    STOPPED = "stopped"
    """The supervisor terminated a child. ``reason``: how it ended (``shutdown``, or
    ``abnormal: killed`` after its shutdown time)."""
    REMOVED = "removed"
    """A child left the tree: a temporary child that exited, a transient one after a
    normal exit, or one taken out with ``remove_child``. ``name``: the child."""
    SHUTDOWN = "shutdown"
    """A supervisor stopped as asked (by ``shutdown()`` or its parent). ``name``: the supervisor."""


OnEvent = Callable[[EventKind, str, str, str], object]
"""``on_event(kind, name, supervisor, reason)``: ``supervisor`` is the id of the
supervisor reporting, ``reason`` human-readable text (``""`` when there is none).
Called on supervisor threads: it must return quickly and must not block on a
supervisor (hand work to another thread)."""


@runtime_checkable
class Spawner(Protocol):
    """Starts and stops the agent children; the runtime implements it with processes.

    Both methods are called on the supervisor's own thread, one call at a time per
    supervisor, and may block.
    """

    def start_child(self, sup_id: str, spec: ChildSpec) -> object:
        """Start an agent and return once it is started.

        Args:
            sup_id: The supervisor the child belongs to.
            spec: The child's spec (per-child arguments are the spawner's business).

        Returns:
            An opaque handle for this incarnation. Handles are compared with ``==``
            and must differ between incarnations (a pid plus start time does).

        Raises:
            StartFailed: The child could not start; the supervisor retries through
                its queue (``RetryRestart``), counting toward its intensity.
        """

    def terminate_child(self, sup_id: str, spec: ChildSpec, handle: object) -> ExitReason:
        """Stop an agent and return once the OS says it is dead.

        Ask it to stop, wait ``spec.shutdown`` seconds, then kill it;
        ``"brutal_kill"`` kills at once; ``"infinity"`` waits for as long as it takes.
        Judge death from the OS, never from the child's word. A child that is
        already dead returns at once.

        Args:
            sup_id: The supervisor the child belongs to.
            spec: The child's spec.
            handle: What ``start_child`` returned.

        Returns:
            How it ended.
        """


@dataclass(frozen=True, slots=True)
class SubtreeHandle:
    """The handle of a nested supervisor's incarnation (its agents have the spawner's).

    Attributes:
        supervisor: The nested supervisor's id.
        incarnation: 1 for its first boot, 2 after its first restart...
    """

    supervisor: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class ChildSnapshot:
    """One child, as :meth:`Supervisor.snapshot` saw it.

    Attributes:
        id: The child's id.
        kind: ``agent`` or ``supervisor``.
        status: ``starting``, ``running``, ``restarting``, ``backoff``, ``failed`` or ``stopped``.
        restarts: How many times it was started after its first start.
        handle: The live incarnation's handle, or ``None``.
        spec: Its spec.
        supervisor: For a supervisor child, the nested snapshot (``None`` before its first start).
    """

    id: str
    kind: ChildKind
    status: ChildStatus
    restarts: int
    handle: object | None
    spec: ChildSpec
    supervisor: SupervisorSnapshot | None = None


@dataclass(frozen=True, slots=True)
class SupervisorSnapshot:
    """A supervisor and its subtree, immutable.

    Attributes:
        id: The supervisor's id.
        strategy: Its strategy.
        running: Whether it is up.
        children: Its children in start order.
    """

    id: str
    strategy: Strategy
    running: bool
    children: tuple[ChildSnapshot, ...]

    def child(self, id: str) -> ChildSnapshot:
        """One child by id.

        Args:
            id: The child's id.

        Returns:
            Its snapshot.

        Raises:
            NotFound: No such child here.
        """
        for child in self.children:
            if child.id == id:
                return child
        raise NotFound(id)

    def walk(self) -> Iterator[tuple[SupervisorSnapshot, ChildSnapshot]]:
        """Every ``(supervisor, child)`` pair of the subtree, depth first, in start order.

        Yields:
            The supervisor snapshot a child belongs to, and the child.
        """
        for child in self.children:
            yield self, child
            if child.supervisor is not None:
                yield from child.supervisor.walk()


class _Tree:
    """State shared by all the shells of one tree: pending jobs and their threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending = 0
        self.threads: set[int] = set()

    def add(self) -> None:
        with self.cond:
            self.pending += 1

    def done(self) -> None:
        with self.cond:
            self.pending -= 1
            if self.pending == 0:
                self.cond.notify_all()

    def is_tree_thread(self) -> bool:
        with self.cond:
            return threading.get_ident() in self.threads


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any], future: Future[Any] | None) -> None:
        self.fn = fn
        self.future = future

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:
            if self.future is None:
                _log.exception("supervisor job %r failed", self.fn)
            else:
                self.future.set_exception(exc)
        else:
            if self.future is not None:
                self.future.set_result(result)


_STOP = _Job(lambda: None, None)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _View:
    state: SupervisorState
    handles: Layered[str, object]
    nested: dict[str, Supervisor]


class Supervisor:
    """An OTP-style supervisor running on its own thread.

    Every public method is thread-safe. The blocking ones (``start``, ``add_child``,
    ``remove_child``, ``restart_child``, ``shutdown``, ``wait_idle``) post to the
    supervisor's queue and wait for the result; calling them from a supervisor
    thread (inside ``on_event`` or a :class:`Spawner` method) raises
    :class:`SupervisorError` instead of deadlocking. ``child_exited`` and ``escalate``
    only post. A ``timeout`` that expires raises :class:`TimeoutError`; the request
    still completes in the background.

    Children of kind ``supervisor`` are nested :class:`Supervisor` shells the tree
    manages itself: starting one starts its subtree, terminating it stops its children
    in reverse order, and when it gives up (intensity exceeded) it stops its children
    and reports itself exited ``abnormal`` to its parent, which applies its own
    strategy. Children added at run time stay part of the tree: when their supervisor
    is restarted they come back too (temporary ones excepted).

    Args:
        spec: The supervisor's spec.
        spawner: Starts and stops the agent children.
        clock: Defaults to a :class:`MonotonicClock` owned (and closed) by this supervisor.
        on_event: Called for every supervisor action, see :data:`OnEvent`.
        on_exit: Called with the reason when this supervisor gives up and has no
            parent (a nested one reports to its parent instead). Not called for a
            requested ``shutdown()``.
        parent: Set by the tree for nested supervisors; leave it ``None``.
        seed: Seeds the backoff jitter (random by default).

    Raises:
        InvalidSpec: ``spec`` is not a :class:`SupervisorSpec`.
    """

    def __init__(
        self,
        spec: SupervisorSpec,
        spawner: Spawner,
        clock: Clock | None = None,
        *,
        on_event: OnEvent | None = None,
        on_exit: Callable[[ExitReason], object] | None = None,
        parent: Supervisor | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise InvalidSpec("spec", spec, "a SupervisorSpec")
        self._spec = spec
        self._spawner = spawner
        self._owns_clock = clock is None
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._on_event = on_event
        self._on_exit = on_exit
        self._parent = parent
        self._tree: _Tree = parent._tree if parent is not None else _Tree()
        self._seed = seed if seed is not None else random.SystemRandom().getrandbits(32)
        self._state = SupervisorState.initial(spec, self._seed)
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        # Immutable versions (a `Layered` map): publishing one after each action is O(1),
        # and changing one handle O(sqrt n), with n children.
        self._handles: Layered[str, object] = Layered()
        # The spec of each live incarnation: a Terminate may be followed by a Forget in
        # the same outcome, so the new state no longer knows the child being stopped.
        self._specs: dict[str, ChildSpec] = {}
        self._timers: dict[str, tuple[int, TimerHandle]] = {}
        self._nested: dict[str, Supervisor] = {}
        self._timer_seq = itertools.count(1)
        self._incarnations = itertools.count(1)
        self._token: SubtreeHandle | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._opened = False
        self._closed = False
        self._view = _View(self._state, self._handles, {})

    # ---- public API -----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The supervisor's id."""
        return self._spec.id

    @property
    def spec(self) -> SupervisorSpec:
        """The supervisor's spec."""
        return self._spec

    @property
    def parent(self) -> Supervisor | None:
        """The parent supervisor, ``None`` for the root."""
        return self._parent

    def start(self, timeout: float | None = None) -> None:
        """Start the thread and the spec's children, in order (OTP ``start_link``).

        Args:
            timeout: Seconds to wait; ``None`` waits for as long as the starts take.

        Raises:
            StartFailed: A child failed to start; those already started were
                terminated in reverse order and the thread ended.
            NotRunning: The supervisor was shut down.
            SupervisorError: It is already running, or it is nested (its parent
                starts it).
        """
        if self._parent is not None:
            raise SupervisorError(f"supervisor {self.id!r} is nested: its parent starts it")
        self._open()
        try:
            self._call("start", self._do_boot, timeout)
        except StartFailed:
            self._close()
            if self._owns_clock:
                self._close_clock()
            raise

    def add_child(self, child: ChildSpec | SupervisorSpec | str, timeout: float | None = None) -> object:
        """Add a child and start it; return once it is started (OTP ``start_child``).

        Args:
            child: A :class:`ChildSpec`; a :class:`SupervisorSpec` (a permanent
                nested supervisor); or, for ``simple_one_for_one``, the new child's id
                (the template renamed; per-child arguments are the spawner's business).
            timeout: Seconds to wait.

        Returns:
            The child's handle (a :class:`SubtreeHandle` for a nested supervisor,
            whose shell :meth:`child_supervisor` gives).

        Raises:
            StartFailed: It failed to start; it is not added.
            AlreadyPresent: The id is taken (:class:`AlreadyStarted` if it runs).
            InvalidSpec: The spec is malformed, or not the template's.
            NotRunning: The supervisor is down.
        """
        spec = self._child_spec(child)
        return self._call("add_child", lambda: self._do_add(spec), timeout)

    def remove_child(self, id: str, timeout: float | None = None) -> None:
        """Terminate a child if it runs (within its shutdown) and forget it.

        Args:
            id: The child.
            timeout: Seconds to wait.

        Raises:
            NotFound: No such child.
            NotRunning: The supervisor's thread has ended.
        """
        self._call("remove_child", lambda: self._run_event(RemoveChild(id)), timeout)

    def adopt_child(self, spec: ChildSpec | str, handle: object,
                    timeout: float | None = None) -> None:
        """Add a child whose process the caller already started (beamish: a session woken
        from sleep): it joins the end of the start order as ``running`` with ``handle``,
        as if ``start_child`` had returned it. Nothing is started, counted or emitted.

        Args:
            spec: The child's spec (an id for ``simple_one_for_one``).
            handle: Its incarnation's handle; later exit reports name it.
            timeout: Seconds to wait.

        Raises:
            AlreadyPresent: The id is taken (:class:`AlreadyStarted` if it runs).
            InvalidSpec: Not the template's spec (``simple_one_for_one``).
            NotRunning: The supervisor is down.
        """
        child = self._child_spec(spec)
        if child.kind is ChildKind.SUPERVISOR:
            raise InvalidSpec("spec", child, "an agent's spec: a supervisor cannot be adopted")
        self._call("adopt_child", lambda: self._do_adopt(child, handle), timeout)

    def adoption_error(self, spec: ChildSpec | str) -> SupervisorError | None:
        """What :meth:`adopt_child` of ``spec`` would raise now, or None: asked before a
        process is started to be adopted (beamish: a session's wake), so a supervisor
        that cannot take it (down, restarting) costs no start. Reads the state as of the
        last event handled, without waiting; the adoption itself may still be refused.

        Args:
            spec: The child's spec (an id for ``simple_one_for_one``).

        Returns:
            :class:`NotRunning`, :class:`AlreadyPresent` (:class:`AlreadyStarted`),
            :class:`InvalidSpec`, or None.
        """
        try:
            child = self._child_spec(spec)
        except InvalidSpec as exc:
            return exc
        if self._closed:
            return NotRunning(self.id)
        return adoption_error(self._spec, self._view.state, child)

    def release_child(self, id: str, timeout: float | None = None) -> object:
        """Take a running child back without terminating it (beamish: a session falling
        asleep); return its handle. The caller stops the process; its exit report, if
        any reaches this supervisor, is ignored. Nothing is counted or emitted.

        Args:
            id: The child.
            timeout: Seconds to wait.

        Raises:
            NotFound: No such child.
            ChildNotRunning: It is not running (starting, restarting, in backoff,
                failed or stopped).
        """
        return self._call("release_child", lambda: self._do_release(id), timeout)

    def restart_child(self, id: str, timeout: float | None = None) -> object:
        """Start a child that is ``failed`` or ``stopped``, with a fresh restart log.

        Args:
            id: The child.
            timeout: Seconds to wait.

        Returns:
            The new handle.

        Raises:
            NotFound: No such child.
            Running: It is running or about to restart.
            StartFailed: It failed to start; it stays ``stopped``.
            NotRunning: The supervisor is down.
        """
        return self._call("restart_child", lambda: self._do_restart(id), timeout)

    def child_exited(self, id: str, handle: object, reason: ExitReason) -> None:
        """Report that the OS says a child exited. Does not block.

        Reports for a handle that is not the child's live incarnation (one the
        supervisor already terminated or replaced) are ignored, as are reports to a
        supervisor whose thread has ended.

        Args:
            id: The child.
            handle: What ``start_child`` returned for the incarnation that exited.
            reason: Why it exited.
        """
        self._post(lambda: self._do_exited(id, handle, reason), drop_if_closed=True)

    def escalate(self, id: str, handle: object, reason: ExitReason) -> None:
        """A running child asks to fail its supervisor, as if the intensity were
        exceeded (with per-child intensity: the child is terminated and marked
        ``failed``). Does not block; stale handles are ignored.

        Args:
            id: The child.
            handle: Its live incarnation's handle.
            reason: Why, for the reports.
        """
        self._post(lambda: self._do_escalate(id, handle, reason), drop_if_closed=True)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every child in reverse start order (each within its shutdown), then
        the thread. Idempotent.

        Args:
            timeout: Seconds to wait.

        Raises:
            SupervisorError: The supervisor is nested (remove it from its parent).
        """
        if self._parent is not None:
            raise SupervisorError(f"supervisor {self.id!r} is nested: remove it from its parent")
        with self._lock:
            running = self._opened and not self._closed
        if running:
            try:
                self._call("shutdown", lambda: self._run_event(Halt()), timeout)
            except NotRunning:
                pass
            self._close(timeout)
        if self._owns_clock:
            self._close_clock()

    def snapshot(self) -> SupervisorSnapshot:
        """The supervisor and its subtree as of the last event each has handled.

        Does not wait on the supervisors, so it can be called from anywhere, even
        while a supervisor is busy terminating a child.

        Returns:
            An immutable nested description.
        """
        view = self._view
        children = []
        for id, child in view.state.children.items():
            nested = view.nested.get(id)
            children.append(
                ChildSnapshot(
                    id,
                    child.spec.kind,
                    child.status,
                    child.restarts,
                    view.handles.get(id),
                    child.spec,
                    nested.snapshot() if nested is not None else None,
                )
            )
        return SupervisorSnapshot(self.id, self._spec.strategy, view.state.running, tuple(children))

    def find(self, sup_id: str) -> Supervisor | None:
        """The supervisor called ``sup_id`` in this subtree (this one included).

        Args:
            sup_id: A supervisor id.

        Returns:
            The shell, or ``None``; with duplicate ids, the first depth first.
        """
        if sup_id == self.id:
            return self
        for nested in self._view.nested.values():
            found = nested.find(sup_id)
            if found is not None:
                return found
        return None

    def child_supervisor(self, id: str) -> Supervisor:
        """The shell of the nested supervisor child ``id``.

        Args:
            id: A child of kind supervisor that has started at least once.

        Returns:
            Its shell (the same object across its restarts).

        Raises:
            NotFound: No such supervisor child.
        """
        nested = self._view.nested.get(id)
        if nested is None:
            raise NotFound(id, f"no supervisor child {id!r} in {self.id!r}")
        return nested

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every supervisor of the tree has handled everything queued.

        Meant for tests: with a fake clock and a fake spawner, after an action the
        tree is settled once this returns.

        Args:
            timeout: Seconds.

        Raises:
            TimeoutError: Still busy after ``timeout``.
            SupervisorError: Called from a supervisor thread.
        """
        self._refuse_tree_thread("wait_idle")
        tree = self._tree
        with tree.cond:
            if not tree.cond.wait_for(lambda: tree.pending == 0, timeout):
                raise TimeoutError(f"supervisor tree of {self.id!r} still busy after {timeout}s")

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Supervisor {self.id!r} {self._spec.strategy.value}>"

    # ---- queue and thread -----------------------------------------------------------

    def _open(self) -> None:
        with self._lock:
            if self._closed:
                raise NotRunning(self.id)
            if self._opened:
                return
            self._opened = True
            self._thread = threading.Thread(target=self._run, name=f"beamish-supervisor-{self.id}", daemon=True)
            self._thread.start()

    def _close(self, timeout: float | None = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._opened:
                return
            self._tree.add()
            self._queue.put(_STOP)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _close_clock(self) -> None:
        close = getattr(self._clock, "close", None)
        if close is not None:
            close()

    def _post(self, fn: Callable[[], Any], future: Future[Any] | None = None, drop_if_closed: bool = False) -> None:
        with self._lock:
            if not self._opened or self._closed:
                if drop_if_closed:
                    return
                raise NotRunning(self.id)
            self._tree.add()
            self._queue.put(_Job(fn, future))

    def _refuse_tree_thread(self, what: str) -> None:
        if self._tree.is_tree_thread():
            raise SupervisorError(
                f"{what}() called from a supervisor thread (on_event or a Spawner) would deadlock; "
                "hand the call to another thread"
            )

    def _call(self, what: str, fn: Callable[[], _T], timeout: float | None) -> _T:
        self._refuse_tree_thread(what)
        return self._call_from_parent(fn, timeout)

    def _call_from_parent(self, fn: Callable[[], _T], timeout: float | None = None) -> _T:
        future: Future[_T] = Future()
        self._post(fn, future)
        return future.result(timeout)

    def _run(self) -> None:
        with self._tree.cond:
            self._tree.threads.add(threading.get_ident())
        try:
            while True:
                job = self._queue.get()
                try:
                    if job is _STOP:
                        break
                    job.run()
                finally:
                    self._tree.done()
        finally:
            for id in list(self._timers):
                self._cancel_timer(id)
            for nested in list(self._nested.values()):
                nested._close()
            with self._tree.cond:
                self._tree.threads.discard(threading.get_ident())

    # ---- jobs (on the supervisor thread) ----------------------------------------------

    def _feed(self, event: Event) -> Outcome:
        outcome = decide(self._spec, self._state, event, self._clock.now())
        self._state = outcome.state
        self._publish()
        return outcome

    def _run_event(self, event: Event) -> StartFailed | None:
        return self._apply(self._feed(event).actions)

    def _do_boot(self) -> SubtreeHandle:
        failure = self._run_event(Boot())
        if failure is not None:
            self._run_event(Halt())
            raise StartFailed(str(failure), self.id)
        self._token = SubtreeHandle(self.id, next(self._incarnations))
        return self._token

    def _do_halt(self) -> ExitReason:
        self._run_event(Halt())
        self._token = None
        return ExitReason.shutdown()

    def _do_add(self, spec: ChildSpec) -> object:
        failure = self._run_event(AddChild(spec))
        if failure is not None:
            raise failure
        return self._handles[spec.id]

    def _do_adopt(self, spec: ChildSpec, handle: object) -> None:
        self._feed(AdoptChild(spec))
        self._handles = self._handles.set(spec.id, handle)
        self._specs[spec.id] = spec
        self._publish()

    def _do_release(self, id: str) -> object:
        handle = self._handles.get(id)
        self._apply(self._feed(ReleaseChild(id)).actions)
        return handle

    def _do_restart(self, id: str) -> object:
        failure = self._run_event(RestartChild(id))
        if failure is not None:
            raise failure
        return self._handles[id]

    def _do_exited(self, id: str, handle: object, reason: ExitReason) -> None:
        current = self._handles.get(id, _MISSING)
        if current is _MISSING or current != handle:
            return  # stale: an incarnation we already terminated or replaced
        self._handles = self._handles.without(id)
        del self._specs[id]
        self._emit(EventKind.EXITED, id, str(reason))
        self._run_event(ChildExited(id, reason))

    def _do_escalate(self, id: str, handle: object, reason: ExitReason) -> None:
        current = self._handles.get(id, _MISSING)
        if current is _MISSING or current != handle:
            return
        self._run_event(Escalate(id, reason))

    def _do_timer(self, id: str, token: int) -> None:
        entry = self._timers.get(id)
        if entry is None or entry[0] != token:
            return  # cancelled or replaced after it fired
        del self._timers[id]
        self._run_event(BackoffElapsed(id))

    # ---- applying actions -------------------------------------------------------------

    def _apply(self, actions: tuple[Action, ...]) -> StartFailed | None:
        """Apply actions in order; after a failed start, skip the remaining starts."""
        failure: StartFailed | None = None
        for action in actions:
            if isinstance(action, Terminate):
                self._terminate(action.id)
            elif isinstance(action, Start):
                if failure is None:
                    failure = self._start(action.id)
            elif isinstance(action, StartAfter):
                if failure is None:
                    self._start_after(action)
            elif isinstance(action, Forget):
                self._forget(action.id)
            elif isinstance(action, Release):
                self._handles = self._handles.without(action.id)
                self._specs.pop(action.id, None)
            elif isinstance(action, MarkFailed):
                self._cancel_timer(action.id)
                self._emit(EventKind.FAILED, action.id, "")
            elif isinstance(action, Retry):
                self._post(functools.partial(self._run_event, RetryRestart(action.id)),
                           drop_if_closed=True)
            elif isinstance(action, ShutdownSelf):
                self._shutdown_self(action.reason)
            else:  # pragma: no cover - decide returns only the actions above
                raise SupervisorError(f"unknown action {action!r}")
            self._publish()
        return failure

    def _start(self, id: str) -> StartFailed | None:
        child = self._state.children[id]
        self._cancel_timer(id)
        try:
            handle = self._start_child(child.spec)
        except StartFailed as exc:
            _log.warning("child %r of supervisor %r failed to start: %s", id, self.id, exc.reason)
            self._apply(self._feed(StartError(id, exc.reason)).actions)
            return StartFailed(exc.reason, id)
        self._handles = self._handles.set(id, handle)
        self._specs[id] = child.spec
        self._feed(ChildStarted(id))
        self._emit(EventKind.RESTARTED if child.restarts > 0 else EventKind.SPAWNED, id, "")
        return None

    def _start_child(self, spec: ChildSpec) -> object:
        if spec.kind is ChildKind.SUPERVISOR:
            nested = self._nested.get(spec.id)
            if nested is None:
                assert spec.supervisor is not None
                nested = Supervisor(
                    spec.supervisor,
                    self._spawner,
                    self._clock,
                    on_event=self._on_event,
                    parent=self,
                    seed=random.Random(f"{self._seed}/{spec.id}").getrandbits(32),
                )
                self._nested[spec.id] = nested
            nested._open()
            return nested._call_from_parent(nested._do_boot)
        try:
            return self._spawner.start_child(self.id, spec)
        except StartFailed:
            raise
        except Exception as exc:  # a Spawner bug must not kill the supervisor thread
            _log.exception("Spawner.start_child(%r, %r) raised", self.id, spec.id)
            raise StartFailed(f"{type(exc).__name__}: {exc}", spec.id) from exc

    def _terminate(self, id: str) -> None:
        self._cancel_timer(id)
        handle = self._handles.get(id, _MISSING)
        self._handles = self._handles.without(id)
        if handle is _MISSING:
            return  # never started (skipped after a failed start) or already gone
        spec = self._specs.pop(id)
        if spec.kind is ChildKind.SUPERVISOR:
            reason = self._nested[id]._call_from_parent(self._nested[id]._do_halt)
        else:
            try:
                reason = self._spawner.terminate_child(self.id, spec, handle)
            except Exception as exc:
                _log.exception("Spawner.terminate_child(%r, %r) raised", self.id, id)
                reason = ExitReason.abnormal(f"terminate failed: {type(exc).__name__}: {exc}")
        self._emit(EventKind.STOPPED, id, str(reason))

    def _start_after(self, action: StartAfter) -> None:
        id = action.id
        self._cancel_timer(id)
        token = next(self._timer_seq)

        def due() -> None:
            self._post(lambda: self._do_timer(id, token), drop_if_closed=True)

        self._timers[id] = (token, self._clock.call_later(action.delay, due))
        self._emit(EventKind.BACKOFF, id, f"restart in {action.delay:.3f}s")

    def _forget(self, id: str) -> None:
        self._emit(EventKind.REMOVED, id, "")
        self._cancel_timer(id)
        self._handles = self._handles.without(id)
        self._specs.pop(id, None)
        nested = self._nested.pop(id, None)
        if nested is not None:
            nested._close()

    def _shutdown_self(self, reason: ExitReason) -> None:
        for id in list(self._timers):
            self._cancel_timer(id)
        if reason.is_normal:
            self._emit(EventKind.SHUTDOWN, self.id, str(reason))
            return
        _log.error("supervisor %r gave up: %s", self.id, reason)
        self._emit(EventKind.ESCALATED, self.id, str(reason))
        token, self._token = self._token, None
        if self._parent is not None:
            if token is not None:
                self._parent.child_exited(self.id, token, reason)
        elif self._on_exit is not None:
            try:
                self._on_exit(reason)
            except Exception:
                _log.exception("on_exit of supervisor %r raised", self.id)

    def _cancel_timer(self, id: str) -> None:
        entry = self._timers.pop(id, None)
        if entry is not None:
            entry[1].cancel()

    def _emit(self, kind: EventKind, name: str, reason: str) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, name, self.id, reason)
        except Exception:
            _log.exception("on_event raised for %s %r", kind.value, name)

    def _publish(self) -> None:
        self._view = _View(self._state, self._handles, dict(self._nested))

    def _child_spec(self, child: ChildSpec | SupervisorSpec | str) -> ChildSpec:
        if isinstance(child, ChildSpec):
            return child
        if isinstance(child, SupervisorSpec):
            return ChildSpec.for_supervisor(child)
        if isinstance(child, str):
            return self._spec.child_of_template(child)
        raise InvalidSpec("child", child, "a ChildSpec, a SupervisorSpec or (simple_one_for_one) an id")
