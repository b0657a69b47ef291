"""The supervisor's pure core: ``decide(spec, state, event, now) -> Outcome``.

``decide`` performs no I/O, reads no clock and draws no randomness of its own: the
time is passed in and the backoff jitter comes from ``state.seed``. It returns the new
state and an ordered tuple of primitive actions for the shell (``_supervisor.py``) to
apply. This is OTP's ``supervisor.erl`` with the process starts taken out of the
strategy code.

The restart rules are OTP's ``do_restart``, word for word:

* ``permanent``: always restarted;
* ``transient``: restarted unless the reason is ``normal`` or ``shutdown``;
* ``temporary``: never restarted, forgotten when it exits, and not restarted as a
  ``one_for_all``/``rest_for_one`` bystander either (it is terminated and forgotten).

Where beamish departs from OTP it says so here:

* a transient child that exits normally is *forgotten* rather than kept with no pid,
  so the name is free again (``node.spawn`` under the same name works);
* a temporary child is also forgotten when its supervisor stops, so a restarted
  supervisor does not start it again (OTP's ``init/1`` would start a static one);
* a supervisor that reaches its intensity exits ``abnormal`` (OTP: ``shutdown``), so
  its parent treats it as a failed child whatever its restart type (SPEC);
* ``per_child_intensity`` (the node's root) keeps one restart log per child and marks
  a child past it ``failed`` instead of stopping the supervisor;
* restart ``backoff``: the restart is delayed (``StartAfter``) but counted toward the
  intensity when it is decided, like any other restart;
* ``AdoptChild`` and ``ReleaseChild`` (no OTP counterpart) hand a running child to a
  supervisor and take it back without a start or a termination: a session that falls
  asleep is released (its process then stops orderly, seen by no supervisor) and, woken,
  its new process is adopted at the end of the start order. Neither counts toward the
  intensity or emits anything. Sleep is not an exit, so a release does not wipe the
  child's own restart history either: its restart log and backoff attempt are kept
  (``SupervisorState.released``) for as long as they can still matter (its intensity
  window, or the window after which its backoff resets), and the adoption takes them
  back, so a child that crashes on every wake is counted as one that never slept.

Child statuses move like this (``*`` = any)::

    stopped --Start--> starting --ChildStarted--> running --ChildExited--> (restart rules)
    starting --StartError--> restarting --Retry/RetryRestart--> starting
    restart with backoff: --StartAfter--> backoff --BackoffElapsed--> starting
    per-child intensity exceeded / Escalate: --MarkFailed--> failed --RestartChild--> starting
    (absent) --AdoptChild--> running --ReleaseChild--> (absent, its history kept)
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ._errors import (
    AlreadyPresent,
    AlreadyStarted,
    ChildNotRunning,
    InvalidSpec,
    NotFound,
    NotRunning,
    Running,
    SupervisorError,
)
from ._layered import Draft, Layered
from ._reason import ExitReason
from ._restarts import RestartLog
from ._spec import ChildSpec, RestartType, Strategy, SupervisorSpec

__all__ = [
    "INTENSITY_REASON",
    "Action",
    "AddChild",
    "AdoptChild",
    "BackoffElapsed",
    "Boot",
    "ChildExited",
    "ChildHistory",
    "ChildStarted",
    "ChildState",
    "ChildStatus",
    "Children",
    "Escalate",
    "Event",
    "Forget",
    "Halt",
    "MarkFailed",
    "Outcome",
    "Release",
    "ReleaseChild",
    "RemoveChild",
    "RestartChild",
    "Retry",
    "RetryRestart",
    "ShutdownSelf",
    "Start",
    "StartAfter",
    "StartError",
    "SupervisorState",
    "Terminate",
    "adoption_error",
    "backoff_delay",
    "decide",
]

INTENSITY_REASON = "reached_max_restart_intensity"
"""The ``detail`` of the reason a supervisor exits with when it reaches its intensity."""


class ChildStatus(enum.StrEnum):
    """Where a child is in its life, as the supervisor sees it."""

    STARTING = "starting"
    """A start was asked for and has not been confirmed yet."""
    RUNNING = "running"
    """Started and not known to have exited."""
    RESTARTING = "restarting"
    """Its (re)start failed; a retry is queued (OTP ``restarting``)."""
    BACKOFF = "backoff"
    """Waiting out a restart backoff delay."""
    FAILED = "failed"
    """Past its own restart intensity (per-child intensity only) or escalated; left
    stopped until restarted by hand."""
    STOPPED = "stopped"
    """Not running and not to be restarted by itself (its supervisor is down, or a
    manual restart failed)."""


_LIVE = frozenset({ChildStatus.STARTING, ChildStatus.RUNNING})

OnStartError = Literal["retry", "forget", "stop"]


@dataclass(frozen=True, slots=True)
class ChildState:
    """The supervisor's record of one child (OTP's ``#child``).

    Attributes:
        spec: The child's spec.
        status: Where the child is.
        restarts: How many times it was started after its first start.
        started: Whether it was ever asked to start (the next start is a restart).
        log: Its own restart log (used with ``per_child_intensity``).
        attempt: The backoff exponent: restarts in a row without a long enough run.
        started_at: When its current run was confirmed, if running.
        timer: Whether it holds the backoff timer of its restart group.
        backoff_until: When that timer is due (clock seconds), if it holds it.
        on_start_error: What a failure of the pending start means: ``retry`` (a restart:
            retry through the queue), ``forget`` (``add_child``: forget it) or ``stop``
            (``restart_child``/boot: leave it stopped).
    """

    spec: ChildSpec
    status: ChildStatus = ChildStatus.STOPPED
    restarts: int = 0
    started: bool = False
    log: RestartLog = RestartLog()
    attempt: int = 0
    started_at: float | None = None
    timer: bool = False
    backoff_until: float | None = None
    on_start_error: OnStartError = "retry"

    @property
    def id(self) -> str:
        """The child's id."""
        return self.spec.id


@dataclass(frozen=True, slots=True)
class ChildHistory:
    """What a supervisor keeps of a child it released (beamish: a sleeping session) for
    its adoption to take back: sleep is not an exit, so it resets nothing.

    Attributes:
        log: Its own restart log (per-child intensity).
        attempt: Its backoff exponent.
        started_at: When its current run was confirmed (the time it sleeps counts as
            running, as it would have had it stayed awake).
        until: After this clock time (past it) the history no longer matters (its log is past the
            intensity window and its backoff would reset): it is dropped.
    """

    log: RestartLog
    attempt: int
    started_at: float | None
    until: float


def _history_of(spec: SupervisorSpec, child: ChildState, now: float) -> ChildHistory | None:
    """What releasing ``child`` at ``now`` must keep, or None if nothing of it matters."""
    if not child.log.times and not child.attempt:
        return None
    ends = []
    if child.log.times:
        ends.append(child.log.times[0] + spec.max_seconds)
    backoff = spec.backoff_for(child.spec)
    if backoff is not None and child.attempt > 0 and child.started_at is not None:
        ends.append(child.started_at + max(spec.max_seconds, backoff[1]))
    until = max(ends, default=now - 1.0)
    if until < now:
        return None
    return ChildHistory(child.log, child.attempt, child.started_at, until)


class Children(Mapping[str, ChildState]):
    """An immutable mapping of child id to :class:`ChildState`, in start order
    (OTP's ``{Ids, Db}``). Equality compares order too.

    Successive states share most of their children (a `Layered` map): an event that
    changes one child costs O(sqrt n) for n children, not a copy of all n."""

    __slots__ = ("_map",)

    def __init__(self, children: Iterable[ChildState] = ()) -> None:
        """Build the mapping.

        Args:
            children: The children, in start order; ids must be unique.

        Raises:
            ValueError: An id repeats.
        """
        base: dict[str, ChildState] = {}
        for child in children:
            if child.id in base:
                raise ValueError(f"duplicate child id {child.id!r}")
            base[child.id] = child
        self._map: Layered[str, ChildState] = Layered.of(base)

    @classmethod
    def _of(cls, mapping: Layered[str, ChildState]) -> Children:
        new = cls.__new__(cls)
        new._map = mapping
        return new

    def _copy(self) -> Draft[str, ChildState]:
        # A working copy that shares the children no event touched (see `Layered`).
        return self._map.draft()

    def __getitem__(self, id: str) -> ChildState:
        return self._map[id]

    def __contains__(self, id: object) -> bool:
        return id in self._map

    def get(self, id: str, default: ChildState | None = None) -> ChildState | None:  # type: ignore[override]
        """The child ``id``'s state, or ``default``."""
        return self._map.get(id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Children):
            return NotImplemented
        return list(self._map.items()) == list(other._map.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v.status.value}" for k, v in self._map.items())
        return f"Children({inner})"

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids in start order."""
        return tuple(self._map)


@dataclass(frozen=True, slots=True)
class SupervisorState:
    """Everything ``decide`` knows about a supervisor (OTP's ``#state``).

    Attributes:
        children: The children in start order.
        running: Whether this supervisor is up (booted and not shut down).
        log: The supervisor-wide restart log.
        seed: Seeds the backoff jitter, so ``decide`` stays a pure function.
        released: The restart history of the children released lately, by id, oldest
            release first (see :class:`ChildHistory`); an entry leaves when the child is
            adopted, added or removed, or once it no longer matters.
    """

    children: Children = field(default_factory=Children)
    running: bool = False
    log: RestartLog = RestartLog()
    seed: int = 0
    released: Layered[str, ChildHistory] = field(default_factory=Layered)

    @classmethod
    def initial(cls, spec: SupervisorSpec, seed: int = 0) -> SupervisorState:
        """The state of a supervisor that has not booted yet: ``spec.children`` stopped.

        Args:
            spec: The supervisor's spec.
            seed: Seeds the backoff jitter.

        Returns:
            The state; feed it :class:`Boot` to start the children.
        """
        return cls(Children(ChildState(c) for c in spec.children), seed=seed)


# ---- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Boot:
    """Start the supervisor: start every known child in order (OTP ``init``)."""


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop the supervisor: terminate every child in reverse start order, then end."""


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """The shell confirms that a ``Start(id)`` succeeded.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class StartError:
    """The shell reports that a ``Start(id)`` failed; it skips the batch's later starts.

    Attributes:
        id: The child.
        reason: Why, as text.
    """

    id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A running child exited (reported by the OS, not by the child).

    Attributes:
        id: The child.
        reason: Why it exited.
    """

    id: str
    reason: ExitReason


@dataclass(frozen=True, slots=True)
class AddChild:
    """Add a child and start it (OTP ``start_child``).

    Attributes:
        spec: The new child's spec.
    """

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class RemoveChild:
    """Terminate a child if it runs, and forget it (OTP ``terminate_child`` + ``delete_child``).

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class AdoptChild:
    """Add a child that already runs, its process started outside the supervisor (beamish:
    a session woken from sleep). It joins the end of the start order, ``running``; no
    ``Start`` action, nothing counted.

    Attributes:
        spec: The child's spec.
    """

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class ReleaseChild:
    """Forget a running child without terminating it (beamish: a session falling asleep;
    its process is stopped by the caller, and its exit is no supervisor's business).
    Nothing is counted, no bystander is touched.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Start a child that is ``failed`` or ``stopped`` (OTP ``restart_child``).

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class RetryRestart:
    """Try a failed restart again (OTP ``try_again_restart``).

    Attributes:
        id: The child whose restart failed.
    """

    id: str


@dataclass(frozen=True, slots=True)
class BackoffElapsed:
    """A ``StartAfter(id, delay)`` is due.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class Escalate:
    """A running child asks to fail its supervisor, as if the intensity were exceeded.

    Attributes:
        id: The child.
        reason: Why, for the reports.
    """

    id: str
    reason: ExitReason


Event = (
    Boot
    | Halt
    | ChildStarted
    | StartError
    | ChildExited
    | AddChild
    | AdoptChild
    | ReleaseChild
    | RemoveChild
    | RestartChild
    | RetryRestart
    | BackoffElapsed
    | Escalate
)
"""Any input to :func:`decide`."""


# ---- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terminate:
    """Stop the running child: ask, wait its ``shutdown``, then kill.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class Start:
    """Start the child now, then report ``ChildStarted`` or ``StartError``.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class StartAfter:
    """Feed ``BackoffElapsed(id)`` after ``delay`` seconds.

    Attributes:
        id: The child.
        delay: Seconds.
    """

    id: str
    delay: float


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop everything kept about the child (it is already terminated).

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class Release:
    """Drop the child's handle without terminating it or reporting it removed (its
    ``ReleaseChild`` caller takes the handle).

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class MarkFailed:
    """The child is left stopped as ``failed`` (report it).

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Queue ``RetryRestart(id)`` behind the events already waiting (OTP
    ``try_again_restart``): never retry in a tight loop.

    Attributes:
        id: The child.
    """

    id: str


@dataclass(frozen=True, slots=True)
class ShutdownSelf:
    """Every child is terminated: this supervisor ends with ``reason``.

    Attributes:
        reason: ``shutdown`` when asked to stop; ``abnormal`` when it gave up.
    """

    reason: ExitReason


Action = Terminate | Start | StartAfter | Forget | Release | MarkFailed | Retry | ShutdownSelf
"""Any output of :func:`decide`."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`decide` returns.

    Attributes:
        state: The new state.
        actions: What the shell must do, in order.
    """

    state: SupervisorState
    actions: tuple[Action, ...] = ()


# ---- the rules ----------------------------------------------------------------------


def backoff_delay(backoff: tuple[float, float], attempt: int, jitter: float) -> float:
    """The delay of a restart with backoff.

    Exponential with jitter: ``min_s * 2**attempt * (1 + jitter)``, capped at ``max_s``.
    Delays never shrink from one attempt to the next, whatever the jitter.

    Args:
        backoff: ``(min_s, max_s)``.
        attempt: 0 for the first restart in a row, 1 for the next...
        jitter: In ``[0, 1)``.

    Returns:
        Seconds, in ``[min_s, max_s]``.
    """
    low, high = backoff
    return min(high, low * float(2 ** min(attempt, 64)) * (1.0 + jitter))


def _jitter(seed: int, id: str, restarts: int, attempt: int) -> float:
    # A string seed hashes the same in every process (unlike hash()), so the jitter
    # depends only on the state: decide stays a pure, replayable function.
    return random.Random(f"{seed}/{id}/{restarts}/{attempt}").random()


def _wants_restart(restart: RestartType, reason: ExitReason) -> bool:
    # OTP do_restart/4, clause by clause.
    if restart is RestartType.PERMANENT:
        return True
    if reason.is_normal:
        return False
    return restart is RestartType.TRANSIENT


class _Plan:
    """A mutable scratch copy of the state for one ``decide`` call."""

    def __init__(self, spec: SupervisorSpec, state: SupervisorState, now: float) -> None:
        self.spec = spec
        self.now = now
        self.children: Draft[str, ChildState] = state.children._copy()
        self.running = state.running
        self.log = state.log
        self.seed = state.seed
        self.released = state.released
        self.actions: list[Action] = []

    def outcome(self) -> Outcome:
        state = SupervisorState(Children._of(self.children.freeze()), self.running, self.log,
                                self.seed, self.released)
        return Outcome(state, tuple(self.actions))

    def take_history(self, id: str) -> ChildHistory | None:
        """Remove and return the kept history of released child ``id``, if it still
        matters; also drop the oldest entries that no longer do (each entry is dropped
        once: O(1) amortized)."""
        if not self.released:
            return None
        history = self.released.get(id)
        if history is not None:
            self.released = self.released.without(id)
        expired = []
        for other, kept in self.released.items():
            if kept.until >= self.now:
                break
            expired.append(other)
        for other in expired:
            self.released = self.released.without(other)
        return history if history is not None and history.until >= self.now else None

    def get(self, id: str) -> ChildState | None:
        return self.children.get(id)

    def update(self, id: str, **changes: Any) -> None:
        self.children[id] = replace(self.children[id], **changes)

    def forget(self, id: str) -> None:
        del self.children[id]
        self.actions.append(Forget(id))

    def terminate(self, id: str) -> None:
        if self.children[id].status in _LIVE:
            self.actions.append(Terminate(id))
        self.update(id, status=ChildStatus.STOPPED, started_at=None, timer=False)

    def start(self, id: str, on_start_error: OnStartError) -> None:
        child = self.children[id]
        self.update(
            id,
            status=ChildStatus.STARTING,
            started=True,
            restarts=child.restarts + (1 if child.started else 0),
            timer=False,
            on_start_error=on_start_error,
        )
        self.actions.append(Start(id))

    def group(self, id: str) -> list[str]:
        """The children a restart of ``id`` restarts, in start order."""
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self.children)
        if strategy is Strategy.REST_FOR_ONE:
            ids = list(self.children)
            return ids[ids.index(id) :]
        return [id]  # without listing the others: O(1) with any number of children

    def stop_all(self, reason: ExitReason) -> None:
        for id in reversed(list(self.children)):
            self.terminate(id)
            if self.children[id].spec.restart is RestartType.TEMPORARY:
                self.forget(id)
        self.running = False
        self.actions.append(ShutdownSelf(reason))

    def restart(self, id: str) -> None:
        """OTP ``restart/2``: count the restart, then apply the strategy."""
        child = self.children[id]
        if self.spec.per_child_intensity:
            log, exceeded = child.log.record(self.now, self.spec.max_restarts, self.spec.max_seconds)
            self.update(id, log=log)
            if exceeded:
                self.update(id, status=ChildStatus.FAILED)
                self.actions.append(MarkFailed(id))
                return
        else:
            self.log, exceeded = self.log.record(self.now, self.spec.max_restarts, self.spec.max_seconds)
            if exceeded:
                self.stop_all(ExitReason.abnormal(INTENSITY_REASON))
                return
        group = self.group(id)
        for other in reversed(group):  # bystanders stop in reverse start order
            if other != id:
                self.terminate(other)
                if self.children[other].spec.restart is RestartType.TEMPORARY:
                    self.forget(other)
        members = [g for g in group if g in self.children]
        backoff = self.spec.backoff_for(child.spec)
        if backoff is None:
            for member in members:
                self.start(member, "retry")
            return
        child = self.children[id]
        delay = backoff_delay(backoff, child.attempt, _jitter(self.seed, id, child.restarts, child.attempt))
        for member in members:
            self.update(member, status=ChildStatus.BACKOFF, timer=member == id)
        self.update(id, attempt=child.attempt + 1, backoff_until=self.now + delay)
        self.actions.append(StartAfter(id, delay))


def _boot(p: _Plan, event: Boot) -> None:
    if p.running:
        raise SupervisorError(f"supervisor {p.spec.id!r} is already running")
    p.running = True
    p.log = RestartLog()
    p.released = Layered()
    for id in list(p.children):
        p.update(id, status=ChildStatus.STOPPED, log=RestartLog(), attempt=0, timer=False)
        p.start(id, "stop")


def _halt(p: _Plan, event: Halt) -> None:
    if p.running:
        p.stop_all(ExitReason.shutdown())


def _child_started(p: _Plan, event: ChildStarted) -> None:
    child = p.get(event.id)
    if child is not None and child.status is ChildStatus.STARTING:
        p.update(event.id, status=ChildStatus.RUNNING, started_at=p.now)


def _start_error(p: _Plan, event: StartError) -> None:
    child = p.get(event.id)
    if child is None or child.status is not ChildStatus.STARTING:
        return
    mode = child.on_start_error
    # The shell applies a batch's starts one by one and skips those after a failure,
    # so any other child still "starting" was never attempted.
    skipped = ChildStatus.RESTARTING if mode == "retry" else ChildStatus.STOPPED
    for other, state in list(p.children.items()):
        if other != event.id and state.status is ChildStatus.STARTING:
            p.update(other, status=skipped)
    if mode == "retry":
        p.update(event.id, status=ChildStatus.RESTARTING)
        p.actions.append(Retry(event.id))
    elif mode == "forget":
        p.forget(event.id)
    else:
        p.update(event.id, status=ChildStatus.STOPPED)


def _child_exited(p: _Plan, event: ChildExited) -> None:
    child = p.get(event.id)
    if not p.running or child is None or child.status not in _LIVE:
        return  # stale: not a child we think is running
    if not _wants_restart(child.spec.restart, event.reason):
        p.forget(event.id)
        return
    attempt = child.attempt
    backoff = p.spec.backoff_for(child.spec)
    # A child that stayed up longer than the window is not crash-looping any more.
    if (backoff is not None and child.started_at is not None
            and p.now - child.started_at >= max(p.spec.max_seconds, backoff[1])):
        attempt = 0
    p.update(event.id, status=ChildStatus.RESTARTING, started_at=None, attempt=attempt)
    p.restart(event.id)


def _retry_restart(p: _Plan, event: RetryRestart) -> None:
    child = p.get(event.id)
    if p.running and child is not None and child.status is ChildStatus.RESTARTING:
        p.restart(event.id)


def _backoff_elapsed(p: _Plan, event: BackoffElapsed) -> None:
    child = p.get(event.id)
    if not p.running or child is None or child.status is not ChildStatus.BACKOFF or not child.timer:
        return
    for member in p.group(event.id):
        state = p.children[member]
        if state.status is ChildStatus.BACKOFF and (member == event.id or not state.timer):
            p.start(member, "retry")


def _new_child_error(spec: SupervisorSpec, running: bool, existing: ChildState | None,
                     child: ChildSpec) -> SupervisorError | None:
    if not running:
        return NotRunning(spec.id)
    if spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        expected = spec.child_of_template(child.id)
        if child != expected:
            return InvalidSpec("spec", child, f"the template of {spec.id!r} with id {child.id!r}: {expected!r}")
    if existing is not None:
        return AlreadyStarted(child.id) if existing.status in _LIVE else AlreadyPresent(child.id)
    return None


def adoption_error(spec: SupervisorSpec, state: SupervisorState, child: ChildSpec) -> SupervisorError | None:
    """The error ``AdoptChild(child)`` would raise in ``state``, or None if it would be
    adopted (beamish: asked before a session's process is started for its wake, so a
    supervisor that cannot take it costs no fork). Pure.

    Args:
        spec: The supervisor's spec.
        state: Its state.
        child: The child's spec.

    Returns:
        :class:`NotRunning` (the supervisor is down), :class:`InvalidSpec` (not the
        template's), :class:`AlreadyStarted`/:class:`AlreadyPresent` (the id is taken),
        or None.
    """
    return _new_child_error(spec, state.running, state.children.get(child.id), child)


def _check_new_child(p: _Plan, spec: ChildSpec) -> None:
    error = _new_child_error(p.spec, p.running, p.get(spec.id), spec)
    if error is not None:
        raise error


def _add_child(p: _Plan, event: AddChild) -> None:
    spec = event.spec
    _check_new_child(p, spec)
    p.take_history(spec.id)  # a new child: what a released one of that id did is not its
    p.children[spec.id] = ChildState(spec)
    p.start(spec.id, "forget")


def _adopt_child(p: _Plan, event: AdoptChild) -> None:
    spec = event.spec
    _check_new_child(p, spec)
    history = p.take_history(spec.id)
    if history is None:
        p.children[spec.id] = ChildState(spec, status=ChildStatus.RUNNING, started=True,
                                         started_at=p.now)
        return
    p.children[spec.id] = ChildState(spec, status=ChildStatus.RUNNING, started=True,
                                     log=history.log, attempt=history.attempt,
                                     started_at=history.started_at)


def _release_child(p: _Plan, event: ReleaseChild) -> None:
    child = p.get(event.id)
    if child is None:
        raise NotFound(event.id)
    if child.status is not ChildStatus.RUNNING:
        raise ChildNotRunning(event.id, child.status.value)
    # A running child holds no backoff timer (only one in backoff does): nothing to hand on.
    del p.children[event.id]
    p.take_history(event.id)  # (prunes the expired ones)
    history = _history_of(p.spec, child, p.now)
    if history is not None:
        p.released = p.released.set(event.id, history)
    p.actions.append(Release(event.id))


def _remove_child(p: _Plan, event: RemoveChild) -> None:
    child = p.get(event.id)
    if child is None:
        if event.id in p.released:
            p.take_history(event.id)  # a released child leaves the tree: its history too
            return
        raise NotFound(event.id)
    waiting = [
        member
        for member in p.group(event.id)
        if member != event.id and p.children[member].status is ChildStatus.BACKOFF and not p.children[member].timer
    ]
    p.terminate(event.id)
    p.forget(event.id)
    if child.timer and waiting and child.backoff_until is not None:
        # It held its group's backoff timer: hand it on, for the time that is left, so the
        # rest of the group does not wait forever.
        heir = waiting[0]
        p.update(heir, timer=True, backoff_until=child.backoff_until)
        p.actions.append(StartAfter(heir, max(0.0, child.backoff_until - p.now)))


def _restart_child(p: _Plan, event: RestartChild) -> None:
    if not p.running:
        raise NotRunning(p.spec.id)
    child = p.get(event.id)
    if child is None:
        raise NotFound(event.id)
    if child.status not in (ChildStatus.FAILED, ChildStatus.STOPPED):
        raise Running(event.id, child.status.value)
    p.update(event.id, log=RestartLog(), attempt=0, timer=False)
    p.start(event.id, "stop")


def _escalate(p: _Plan, event: Escalate) -> None:
    child = p.get(event.id)
    if not p.running or child is None or child.status not in _LIVE:
        return
    if p.spec.per_child_intensity:
        p.terminate(event.id)
        p.update(event.id, status=ChildStatus.FAILED)
        p.actions.append(MarkFailed(event.id))
    else:
        p.stop_all(ExitReason.abnormal(f"escalated by {event.id}: {event.reason}"))


_HANDLERS: dict[type, Callable[[_Plan, Any], None]] = {
    Boot: _boot,
    Halt: _halt,
    ChildStarted: _child_started,
    StartError: _start_error,
    ChildExited: _child_exited,
    AddChild: _add_child,
    AdoptChild: _adopt_child,
    ReleaseChild: _release_child,
    RemoveChild: _remove_child,
    RestartChild: _restart_child,
    RetryRestart: _retry_restart,
    BackoffElapsed: _backoff_elapsed,
    Escalate: _escalate,
}


def decide(spec: SupervisorSpec, state: SupervisorState, event: Event, now: float) -> Outcome:
    """Apply one event to a supervisor's state. Pure: no I/O, no clock, no randomness.

    Events about children that are unknown or not in the expected status (a late
    exit report, a stale timer) change nothing and return no actions.

    Args:
        spec: The supervisor's spec.
        state: Its current state.
        event: What happened.
        now: The current clock time in seconds (monotonic).

    Returns:
        The new state and the ordered actions for the shell.

    Raises:
        NotFound: ``RemoveChild``/``RestartChild``/``ReleaseChild`` of an unknown id.
        AlreadyPresent: ``AddChild``/``AdoptChild`` of a known id (``AlreadyStarted`` if
            it runs).
        ChildNotRunning: ``ReleaseChild`` of a child that is not running.
        Running: ``RestartChild`` of a child that runs or is about to restart.
        NotRunning: ``AddChild``/``AdoptChild``/``RestartChild`` while the supervisor is
            down.
        InvalidSpec: ``AddChild``/``AdoptChild`` to a ``simple_one_for_one`` supervisor with a spec
            that is not its template.
        SupervisorError: ``Boot`` of a running supervisor.
        TypeError: ``event`` is not an event.
    """
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a supervisor event: {event!r}")
    plan = _Plan(spec, state, now)
    handler(plan, event)
    return plan.outcome()
