"""Test doubles for supervisors: stdlib only, public (like ``trio.testing``).

* :class:`FakeClock`: time moves only when a test says so (``advance``/``jump``),
  never backwards; due ``call_later`` callbacks run inside ``advance``.
* :class:`FakeSpawner`: a :class:`~beamish.supervisor.Spawner` whose children are
  scripted, recording every start and stop in an action log to assert on.
* :class:`ScriptedChild`: a child's script, modelled on OTP's ``supervisor_1.erl``:
  ``ScriptedChild(starts=["ok", "error"], on_term="ignore", exit_after=(0.5, reason))``.

A child that ignores its stop request is killed after ``spec.shutdown`` seconds of
*fake* time: block the supervisor in ``remove_child`` on another thread, then
``clock.wait_for_timers()`` and ``clock.advance(spec.shutdown)``; no real time passes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._clock import _Timer
from ._errors import StartFailed
from ._reason import ExitReason
from ._spec import BRUTAL_KILL, ChildSpec
from ._supervisor import Supervisor

__all__ = ["FakeClock", "FakeHandle", "FakeSpawner", "ScriptedChild"]


class FakeClock:
    """A :class:`~beamish.supervisor.Clock` that moves only when told to.

    Callbacks run on the thread that calls :meth:`advance`/:meth:`jump`, in due
    order (ties in scheduling order), with :meth:`now` reading their due time.

    Args:
        start: The initial time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()

    def now(self) -> float:
        """The fake time.

        Returns:
            Seconds.
        """
        with self._cond:
            return self._now

    def call_later(self, delay: float, fn: Callable[[], object]) -> _Timer:
        """Run ``fn()`` when the fake time reaches ``now() + delay``.

        Args:
            delay: Seconds (negative counts as 0: it runs at the next advance).
            fn: The callback.

        Returns:
            A handle whose ``cancel()`` stops it from running.
        """
        with self._cond:
            timer = _Timer(self._now + max(0.0, delay), next(self._seq), fn)
            heapq.heappush(self._heap, timer)
            self._cond.notify_all()
            return timer

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and not cancelled."""
        with self._cond:
            return sum(1 for t in self._heap if not t.cancelled)

    def next_due(self) -> float | None:
        """When the next callback is due, or ``None``.

        Returns:
            A fake time, or ``None``.
        """
        with self._cond:
            self._drop_cancelled()
            return self._heap[0].due if self._heap else None

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback that falls due on the way.

        Args:
            seconds: How far, >= 0.

        Raises:
            ValueError: ``seconds`` is negative or NaN (time never goes backwards).
        """
        if not seconds >= 0:
            raise ValueError(f"FakeClock cannot go backwards (advance({seconds!r}))")
        with self._cond:
            target = self._now + seconds
        self._run_until(target)

    def jump(self) -> float:
        """Move time to the next scheduled callback and run it (and any due with it).

        Returns:
            How many seconds time moved (0.0 when nothing is scheduled).
        """
        with self._cond:
            self._drop_cancelled()
            if not self._heap:
                return 0.0
            start, target = self._now, max(self._now, self._heap[0].due)
        self._run_until(target)
        return target - start

    def wait_for_timers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait (real time) until at least ``count`` callbacks are scheduled.

        For a test that must advance the clock once another thread (a supervisor)
        has scheduled something.

        Args:
            count: How many.
            timeout: Real seconds.

        Raises:
            TimeoutError: Fewer were scheduled after ``timeout``.
        """
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(1 for t in self._heap if not t.cancelled) >= count, timeout)
        if not ok:
            raise TimeoutError(f"fewer than {count} timers scheduled after {timeout}s")

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)

    def _run_until(self, target: float) -> None:
        while True:
            with self._cond:
                self._drop_cancelled()
                if not self._heap or self._heap[0].due > target:
                    self._now = max(self._now, target)
                    return
                timer = heapq.heappop(self._heap)
                self._now = max(self._now, timer.due)
            timer.fn()


StartScript = Literal["ok", "error"]
TermScript = Literal["exit", "ignore"] | float


@dataclass(frozen=True)
class ScriptedChild:
    """How a fake child behaves (OTP ``supervisor_1.erl``).

    Attributes:
        starts: The outcome of each start in turn, ``"ok"`` or ``"error"``; once
            used up, every start succeeds.
        on_term: What it does when asked to stop: ``"exit"`` at once, ``"ignore"``
            the request (it is killed after its shutdown time; with ``"infinity"`` it
            waits for :meth:`FakeSpawner.release`), or a number of fake seconds it
            takes to exit.
        exit_after: ``(seconds, reason)``: after each start, exit by itself that many
            fake seconds later with that reason.
    """

    starts: Sequence[StartScript] = ()
    on_term: TermScript = "exit"
    exit_after: tuple[float, ExitReason] | None = None


@dataclass(frozen=True, slots=True)
class FakeHandle:
    """The handle :class:`FakeSpawner` returns: unique per incarnation.

    Attributes:
        supervisor: The child's supervisor.
        id: The child.
        n: A serial number.
    """

    supervisor: str
    id: str
    n: int


class FakeSpawner:
    """A :class:`~beamish.supervisor.Spawner` of scripted children.

    It records an action log of ``(op, child_id)`` with ``op`` one of ``"start"``,
    ``"start_error"``, ``"terminate"`` (asked to stop) and ``"kill"``. Bind it to the
    root supervisor (:meth:`bind`) so that :meth:`crash`, ``exit_after`` and the exit
    reports of terminated children reach the right supervisor.

    Args:
        clock: The fake clock that times shutdowns and ``exit_after``.
        children: Scripts by child id; unscripted children always start and exit when asked.
        report_terminations: After terminating a child, also report its exit to the
            supervisor, as the runtime's reaper would (the supervisor must ignore it).
        real_timeout: Real seconds a blocked terminate waits for the clock (or a
            release) before it raises :class:`TimeoutError`, so no test hangs.
    """

    def __init__(
        self,
        clock: FakeClock,
        children: Mapping[str, ScriptedChild] | None = None,
        *,
        report_terminations: bool = True,
        real_timeout: float = 5.0,
    ) -> None:
        self.clock = clock
        self.report_terminations = report_terminations
        self.real_timeout = real_timeout
        self._scripts: dict[str, ScriptedChild] = dict(children or {})
        self._lock = threading.Lock()
        self._log: list[tuple[str, str]] = []
        self._starts: dict[str, int] = {}
        self._live: dict[tuple[str, str], FakeHandle] = {}
        self._release: dict[str, threading.Event] = {}
        self._serial = itertools.count(1)
        self._root: Supervisor | None = None

    # ---- test API ---------------------------------------------------------------------

    @property
    def log(self) -> list[tuple[str, str]]:
        """A copy of the action log."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        """Empty the action log."""
        with self._lock:
            self._log.clear()

    def script(self, id: str, child: ScriptedChild) -> None:
        """Set (or replace) a child's script; its start count starts over.

        Args:
            id: The child.
            child: The script.
        """
        with self._lock:
            self._scripts[id] = child
            self._starts.pop(id, None)

    def bind(self, root: Supervisor) -> None:
        """Route exit reports to ``root`` and the supervisors under it.

        Args:
            root: The root supervisor.
        """
        self._root = root

    def handle(self, id: str, supervisor: str | None = None) -> FakeHandle | None:
        """The live handle of child ``id``.

        Args:
            id: The child.
            supervisor: Its supervisor, when ids repeat across supervisors.

        Returns:
            The handle, or ``None`` if it is not running.
        """
        with self._lock:
            found = [h for (sup, cid), h in self._live.items() if cid == id and supervisor in (None, sup)]
        if len(found) > 1:
            raise ValueError(f"child id {id!r} is live under several supervisors; pass supervisor=")
        return found[0] if found else None

    def live(self) -> list[str]:
        """The ids of the children running now, in the order they started.

        Returns:
            Child ids.
        """
        with self._lock:
            return [h.id for h in sorted(self._live.values(), key=lambda h: h.n)]

    def crash(self, id: str, reason: ExitReason | None = None, supervisor: str | None = None) -> FakeHandle:
        """Make a running child exit by itself and report it, as the OS would.

        Args:
            id: The child.
            reason: Defaults to ``abnormal("crash")``.
            supervisor: Its supervisor, when ids repeat.

        Returns:
            The handle of the incarnation that exited.

        Raises:
            LookupError: The child is not running.
        """
        handle = self.handle(id, supervisor)
        if handle is None:
            raise LookupError(f"child {id!r} is not running")
        self._exit(handle, reason or ExitReason.abnormal("crash"))
        return handle

    def release(self, id: str) -> None:
        """Let a child that ignores stop requests under ``shutdown="infinity"`` exit.

        Args:
            id: The child.
        """
        with self._lock:
            event = self._release.setdefault(id, threading.Event())
        event.set()

    # ---- Spawner ----------------------------------------------------------------------

    def start_child(self, sup_id: str, spec: ChildSpec) -> FakeHandle:
        """Start a scripted child.

        Args:
            sup_id: Its supervisor.
            spec: Its spec.

        Returns:
            A fresh handle.

        Raises:
            StartFailed: Its script says ``"error"`` for this start.
        """
        with self._lock:
            script = self._scripts.get(spec.id, ScriptedChild())
            n = self._starts.get(spec.id, 0)
            self._starts[spec.id] = n + 1
            outcome = script.starts[n] if n < len(script.starts) else "ok"
            if outcome == "error":
                self._log.append(("start_error", spec.id))
                raise StartFailed("scripted start error", spec.id)
            handle = FakeHandle(sup_id, spec.id, next(self._serial))
            self._live[(sup_id, spec.id)] = handle
            self._log.append(("start", spec.id))
        if script.exit_after is not None:
            delay, reason = script.exit_after
            self.clock.call_later(delay, lambda: self._exit(handle, reason))
        return handle

    def terminate_child(self, sup_id: str, spec: ChildSpec, handle: object) -> ExitReason:
        """Stop a scripted child, in fake time.

        Args:
            sup_id: Its supervisor.
            spec: Its spec.
            handle: Its handle.

        Returns:
            ``shutdown`` if it exited when asked (within its shutdown time),
            ``abnormal("killed")`` if it was killed.
        """
        with self._lock:
            if self._live.get((sup_id, spec.id)) != handle:
                return ExitReason.abnormal("already dead")
            script = self._scripts.get(spec.id, ScriptedChild())
        if spec.shutdown == BRUTAL_KILL:
            self._record("kill", spec.id)
            reason = ExitReason.abnormal("killed")
        else:
            self._record("terminate", spec.id)
            if script.on_term == "exit":
                dies_after = 0.0
            elif script.on_term == "ignore":
                dies_after = math.inf
            else:
                dies_after = float(script.on_term)
            limit = spec.shutdown_seconds
            self._wait(spec.id, min(dies_after, limit))
            if dies_after <= limit:
                reason = ExitReason.shutdown()
            else:
                self._record("kill", spec.id)
                reason = ExitReason.abnormal("killed")
        assert isinstance(handle, FakeHandle)
        with self._lock:
            self._live.pop((sup_id, spec.id), None)
        if self.report_terminations:
            self._report(handle, reason)
        return reason

    # ---- internals --------------------------------------------------------------------

    def _record(self, op: str, id: str) -> None:
        with self._lock:
            self._log.append((op, id))

    def _wait(self, id: str, seconds: float) -> None:
        if seconds <= 0:
            return
        if math.isinf(seconds):
            with self._lock:
                event = self._release.setdefault(id, threading.Event())
            if not event.wait(self.real_timeout):
                raise TimeoutError(f"child {id!r} ignores stop requests and was never released")
            return
        done = threading.Event()
        timer = self.clock.call_later(seconds, done.set)
        if not done.wait(self.real_timeout):
            timer.cancel()
            raise TimeoutError(f"FakeClock was not advanced {seconds}s while {id!r} was stopping")

    def _exit(self, handle: FakeHandle, reason: ExitReason) -> None:
        with self._lock:
            if self._live.get((handle.supervisor, handle.id)) != handle:
                return
            del self._live[(handle.supervisor, handle.id)]
        self._report(handle, reason)

    def _report(self, handle: FakeHandle, reason: ExitReason) -> None:
        sup = self._root.find(handle.supervisor) if self._root is not None else None
        if sup is not None:
            sup.child_exited(handle.id, handle, reason)


