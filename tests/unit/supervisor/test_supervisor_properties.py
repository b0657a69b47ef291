"""Property tests of decide() against a naive model, over random specs and event sequences.

The harness plays the shell: starts succeed or fail as drawn, ``Retry`` queues a
``RetryRestart``, ``StartAfter`` sets a timer that fires on ``advance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from strategies import commands, start_outcomes, supervisor_specs

from beamish.supervisor import (
    INTENSITY_REASON,
    Action,
    AddChild,
    BackoffElapsed,
    Boot,
    ChildExited,
    ChildSpec,
    ChildStarted,
    ChildStatus,
    Escalate,
    Event,
    ExitReason,
    Forget,
    Halt,
    MarkFailed,
    RemoveChild,
    RestartChild,
    RestartType,
    Retry,
    RetryRestart,
    ShutdownSelf,
    Start,
    StartAfter,
    StartError,
    SupervisorError,
    SupervisorSpec,
    SupervisorState,
    Terminate,
    decide,
)

LIVE = {ChildStatus.STARTING, ChildStatus.RUNNING}
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Model:
    """The naive bookkeeping the properties compare decide() against."""

    spec: SupervisorSpec
    sup_times: list[float] = field(default_factory=list)
    child_times: dict[str, list[float]] = field(default_factory=dict)
    started_temporaries: set[str] = field(default_factory=set)

    def exceeded(self, id: str, now: float) -> bool:
        times = self.child_times.setdefault(id, []) if self.spec.per_child_intensity else self.sup_times
        times.append(now)
        return sum(1 for t in times if t >= now - self.spec.max_seconds) > self.spec.max_restarts


@dataclass
class Run:
    spec: SupervisorSpec
    outcomes: list[bool]
    state: SupervisorState = field(init=False)
    model: Model = field(init=False)
    now: float = 0.0
    n_starts: int = 0
    queue: list[Event] = field(default_factory=list)
    timers: list[tuple[float, int, str]] = field(default_factory=list)
    steps: list[tuple[SupervisorState, Event, SupervisorState, tuple[Action, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = SupervisorState.initial(self.spec, seed=1)
        self.model = Model(self.spec)

    # -- the naive model's expectations, checked on every external or internal event --

    def expect(self, before: SupervisorState, event: Event) -> str | None:
        """'restart'/'exceeded' when the model says a restart is counted, else None."""
        if not before.running:
            return None
        child = before.children.get(getattr(event, "id", ""))
        if child is None:
            return None
        counted = False
        if isinstance(event, ChildExited) and child.status in LIVE:
            restart = child.spec.restart
            counted = restart is RestartType.PERMANENT or (restart is RestartType.TRANSIENT and not event.reason.is_normal)
        elif isinstance(event, RetryRestart) and child.status is ChildStatus.RESTARTING:
            counted = True
        if not counted:
            return None
        return "exceeded" if self.model.exceeded(child.id, self.now) else "restart"

    def feed(self, event: Event) -> None:
        before = self.state
        if isinstance(event, Boot) and not before.running:
            self.model.sup_times.clear()
            self.model.child_times.clear()
        if isinstance(event, RestartChild):
            self.model.child_times.pop(event.id, None)
        expectation = self.expect(before, event)
        try:
            outcome = decide(self.spec, before, event, self.now)
        except SupervisorError:
            return  # refused: nothing changed (the state is immutable)
        self.state = outcome.state
        self.steps.append((before, event, outcome.state, outcome.actions))
        check_outcome(self, before, event, outcome.state, outcome.actions, expectation)
        self.apply(event, outcome.actions)

    def apply(self, cause: Event, actions: tuple[Action, ...]) -> None:
        failed = False
        for action in actions:
            if isinstance(action, Start):
                if failed:
                    continue
                ok = self.outcomes[self.n_starts % len(self.outcomes)]
                self.n_starts += 1
                spec = self.state.children[action.id].spec
                if spec.restart is RestartType.TEMPORARY and not isinstance(cause, (AddChild, RestartChild)):
                    assert action.id not in self.model.started_temporaries, f"temporary {action.id} started again"
                if ok:
                    if spec.restart is RestartType.TEMPORARY:
                        self.model.started_temporaries.add(action.id)
                    self.feed(ChildStarted(action.id))
                else:
                    failed = True
                    self.feed(StartError(action.id, "boom"))
                    if isinstance(cause, Boot):
                        self.feed(Halt())  # as the shell does: a supervisor that cannot boot stops
            elif isinstance(action, StartAfter):
                if not failed:
                    self.timers = [t for t in self.timers if t[2] != action.id]
                    self.timers.append((self.now + action.delay, len(self.steps), action.id))
            elif isinstance(action, Retry):
                self.queue.append(RetryRestart(action.id))
            elif isinstance(action, ShutdownSelf):
                self.timers.clear()
            elif isinstance(action, (Forget, Terminate, MarkFailed)):
                self.timers = [t for t in self.timers if t[2] != action.id]
                if isinstance(action, Forget):
                    self.model.started_temporaries.discard(action.id)

    def drain(self) -> None:
        for _ in range(1000):
            if not self.queue:
                return
            self.feed(self.queue.pop(0))
        raise AssertionError("the retry queue never drains")

    def advance(self, dt: float) -> None:
        target = self.now + dt
        while True:
            due = sorted(t for t in self.timers if t[0] <= target)
            if not due:
                break
            when, _, id = due[0]
            self.timers.remove(due[0])
            self.now = max(self.now, when)
            self.feed(BackoffElapsed(id))
            self.drain()
        self.now = target

    def command(self, cmd: tuple[Any, ...]) -> None:
        kind = cmd[0]
        if kind == "exit":
            self.feed(ChildExited(cmd[1], cmd[2]))
        elif kind == "add":
            if self.spec.template is not None:
                self.feed(AddChild(self.spec.child_of_template(cmd[1])))
            else:
                self.feed(AddChild(ChildSpec(cmd[1], restart=cmd[2])))
        elif kind == "remove":
            self.feed(RemoveChild(cmd[1]))
        elif kind == "restart_child":
            self.feed(RestartChild(cmd[1]))
        elif kind == "escalate":
            self.feed(Escalate(cmd[1], ExitReason.abnormal("asked")))
        elif kind == "advance":
            self.advance(cmd[1])
        elif kind == "halt":
            self.feed(Halt())
        elif kind == "boot":
            self.feed(Boot())
        self.drain()
        self.check_settled()

    def check_settled(self) -> None:
        """Liveness: once the queue is drained nothing is stuck half-way."""
        holders = {id for _, _, id in self.timers}
        children = self.state.children.values()
        for child in children:
            assert child.status not in (ChildStatus.STARTING, ChildStatus.RESTARTING), child
            if child.timer:
                assert child.id in holders, (child, self.timers)
        if any(c.status is ChildStatus.BACKOFF for c in children):
            assert any(c.timer for c in children)


def ids_with(actions: tuple[Action, ...], kind: type) -> list[str]:
    return [a.id for a in actions if isinstance(a, kind)]  # type: ignore[attr-defined]


def check_outcome(run: Run, before: SupervisorState, event: Event, after: SupervisorState,
                  actions: tuple[Action, ...], expectation: str | None) -> None:
    order = list(before.children)
    # No action ever targets an unknown id.
    for action in actions:
        id = getattr(action, "id", None)
        if id is None:
            continue
        if isinstance(action, Terminate):
            assert id in before.children and before.children[id].status in LIVE, (action, before)
        elif isinstance(action, (Start, StartAfter)):
            assert id in after.children, (action, after)
        elif isinstance(action, MarkFailed):
            assert after.children[id].status is ChildStatus.FAILED
        elif isinstance(action, Forget):
            assert id in before.children and id not in after.children
        elif isinstance(action, Retry):
            assert after.children[id].status is ChildStatus.RESTARTING
    # Terminates go in reverse start order; starts in start order.
    terminated = [order.index(i) for i in ids_with(actions, Terminate)]
    assert terminated == sorted(terminated, reverse=True)
    started = [list(after.children).index(i) for i in ids_with(actions, Start)]
    assert started == sorted(started)
    # ShutdownSelf comes last and leaves nothing running.
    shutdowns = [a for a in actions if isinstance(a, ShutdownSelf)]
    if shutdowns:
        assert isinstance(actions[-1], ShutdownSelf) and len(shutdowns) == 1
        assert not after.running
        assert all(c.status is ChildStatus.STOPPED for c in after.children.values())
        assert all(c.spec.restart is not RestartType.TEMPORARY for c in after.children.values())
        # every child still running was terminated (the one whose exit caused this is dead already)
        dead = event.id if isinstance(event, (ChildExited, RetryRestart)) else None
        running = {i for i, c in before.children.items() if c.status in LIVE and i != dead}
        assert running <= set(ids_with(actions, Terminate))
    # Intensity exceedance matches the naive count.
    gave_up = ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)) in actions
    failed = isinstance(event, (ChildExited, RetryRestart)) and MarkFailed(event.id) in actions
    if expectation == "exceeded":
        assert (failed if run.spec.per_child_intensity else gave_up), (event, actions)
    else:
        assert not gave_up and not failed, (event, actions, expectation)
    if expectation == "restart":
        assert event.id in ids_with(actions, Start) + ids_with(actions, StartAfter)  # type: ignore[union-attr]
    # do_restart: a running child's exit that is not a restart forgets it, and nothing else.
    if (isinstance(event, ChildExited) and expectation is None and before.running
            and event.id in before.children and before.children[event.id].status in LIVE):
        assert actions == (Forget(event.id),), (event, actions)
    # Nothing but these events start anything; removing the holder of a group's backoff
    # timer hands the timer on.
    if not isinstance(event, (Boot, AddChild, RestartChild, ChildExited, RetryRestart, BackoffElapsed)):
        assert not ids_with(actions, Start)
        handoff = isinstance(event, RemoveChild) and before.children[event.id].timer
        assert len(ids_with(actions, StartAfter)) == (1 if handoff and ids_with(actions, StartAfter) else 0)


def run_commands(spec: SupervisorSpec, cmds: list[tuple[Any, ...]], outcomes: list[bool]) -> Run:
    run = Run(spec, outcomes)
    run.feed(Boot())
    run.drain()
    for cmd in cmds:
        run.command(cmd)
    return run


@PROPERTY
@given(spec=supervisor_specs(), cmds=commands, outcomes=start_outcomes)
def test_decide_against_the_naive_model(spec: SupervisorSpec, cmds: list[tuple[Any, ...]],
                                        outcomes: list[bool]) -> None:
    run_commands(spec, cmds, outcomes)


@PROPERTY
@given(spec=supervisor_specs(), cmds=commands, outcomes=start_outcomes)
def test_decide_is_deterministic(spec: SupervisorSpec, cmds: list[tuple[Any, ...]], outcomes: list[bool]) -> None:
    first = run_commands(spec, cmds, outcomes)
    second = run_commands(spec, cmds, outcomes)
    assert [s[3] for s in first.steps] == [s[3] for s in second.steps]
    assert first.state == second.state


@PROPERTY
@given(spec=supervisor_specs(), cmds=commands, outcomes=start_outcomes)
def test_statuses_stay_consistent(spec: SupervisorSpec, cmds: list[tuple[Any, ...]], outcomes: list[bool]) -> None:
    run = run_commands(spec, cmds, outcomes)
    for _, _, after, _ in run.steps:
        for child in after.children.values():
            assert child.restarts >= 0
            if not after.running:
                assert child.status is ChildStatus.STOPPED
            if child.status is ChildStatus.FAILED:
                assert run.spec.per_child_intensity
        timer_holders = [c for c in after.children.values() if c.timer]
        assert all(c.status is ChildStatus.BACKOFF for c in timer_holders)
