"""Stateful property test of the supervisor *shell* (threads, queue, Spawner calls),
driven by FakeSpawner + FakeClock and compared step by step with a naive model.

test_supervisor_properties.py checks the pure ``decide``; this one checks that the
thread shell around it applies the decisions: which children run, which got a new
incarnation and which kept theirs, the exact order of starts and stops in the
spawner's log, temporary and transient children forgotten, and the supervisor
giving up (children stopped in reverse start order, ``on_exit`` called) exactly when
more than ``max_restarts`` restarts fall within ``max_seconds``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sup_helpers import WAIT, Recorder

from beamish.supervisor import (
    INTENSITY_REASON,
    ChildSpec,
    ChildStatus,
    ExitReason,
    RestartType,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from beamish.supervisor.testing import FakeClock, FakeHandle, FakeSpawner

REASONS = {
    "normal": ExitReason.normal(),
    "shutdown": ExitReason.shutdown("stopped by itself"),
    "crash": ExitReason.abnormal("crash"),
}
RESTART_TYPES = [RestartType.PERMANENT, RestartType.TRANSIENT, RestartType.TEMPORARY]
SHUTDOWNS = [5.0, "brutal_kill"]

child_specs = st.tuples(st.sampled_from(RESTART_TYPES), st.sampled_from(SHUTDOWNS))


@dataclass
class ModelChild:
    """What the model knows of one child: its spec, and the incarnation it expects."""

    spec: ChildSpec
    handle: FakeHandle | None = None


def stop_op(spec: ChildSpec) -> str:
    """The spawner-log entry for terminating this child."""
    return "kill" if spec.shutdown == "brutal_kill" else "terminate"


def wants_restart(restart: RestartType, reason: ExitReason) -> bool:
    """OTP's rule, written out: permanent always; transient unless normal/shutdown; temporary never."""
    return restart is RestartType.PERMANENT or (restart is RestartType.TRANSIENT and not reason.is_normal)


class ShellMachine(RuleBasedStateMachine):
    """Random adds, exits, removals and clock moves against one supervisor shell."""

    def __init__(self) -> None:
        super().__init__()
        self.sup: Supervisor | None = None
        self.children: list[ModelChild] = []  # start order
        self.restart_times: list[float] = []
        self.alive = False
        self.serial = 0
        self.events = Recorder()
        self.exits: list[ExitReason] = []
        self.gone: list[str] = []  # ids this supervisor forgot
        self.dead: list[tuple[str, FakeHandle | None]] = []  # the last incarnations of a stopped supervisor

    # ---- helpers ------------------------------------------------------------------

    def new_spec(self, restart: RestartType, shutdown: float | str, reuse: int | None = None) -> ChildSpec:
        """A child spec with a fresh id, or (``reuse``) the id of a child this supervisor
        already forgot, which must be free again."""
        if reuse is not None and self.gone:
            id = self.gone.pop(reuse % len(self.gone))
        else:
            self.serial += 1
            id = f"c{self.serial}"
        return ChildSpec(id, restart=restart, shutdown=shutdown)  # type: ignore[arg-type]

    def forget(self, child: ModelChild) -> None:
        self.children.remove(child)
        self.gone.append(child.spec.id)

    def settle(self) -> None:
        assert self.sup is not None
        self.sup.wait_idle(WAIT)

    def take_log(self) -> list[tuple[str, str]]:
        log = self.spawner.log
        self.spawner.clear_log()
        return log

    def take_events(self) -> list[tuple[str, str, str, str]]:
        events = list(self.events.events)
        self.events.events.clear()
        return events

    def ids(self) -> list[str]:
        return [c.spec.id for c in self.children]

    def pick(self, index: int) -> ModelChild:
        return self.children[index % len(self.children)]

    def record_handles(self, ids: list[str]) -> None:
        for child in self.children:
            if child.spec.id in ids:
                new = self.spawner.handle(child.spec.id)
                assert new is not None, f"{child.spec.id} should run"
                assert new != child.handle, f"{child.spec.id} should be a new incarnation"
                child.handle = new

    # ---- rules --------------------------------------------------------------------

    @initialize(
        strategy=st.sampled_from([Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE]),
        max_restarts=st.integers(0, 3),
        max_seconds=st.sampled_from([1.0, 2.5, 5.0]),
        initial=st.lists(child_specs, max_size=3),
    )
    def boot(self, strategy: Strategy, max_restarts: int, max_seconds: float,
             initial: list[tuple[RestartType, float | str]]) -> None:
        self.clock = FakeClock()
        self.spawner = FakeSpawner(self.clock, real_timeout=WAIT)
        self.spec = SupervisorSpec("root", strategy, max_restarts=max_restarts, max_seconds=max_seconds)
        self.start_supervisor(initial)

    @precondition(lambda self: not self.alive)
    @rule(initial=st.lists(child_specs, max_size=3))
    def boot_another(self, initial: list[tuple[RestartType, float | str]]) -> None:
        """After a shutdown, check that late exit reports change nothing, then go on with a
        fresh supervisor of the same kind (same spawner and clock)."""
        assert self.sup is not None
        before = self.sup.snapshot()
        for id, handle in self.dead:
            self.sup.child_exited(id, handle, REASONS["crash"])
        self.sup.wait_idle(WAIT)
        assert self.take_log() == []
        assert self.sup.snapshot() == before
        self.sup_done()
        self.start_supervisor(initial)

    def start_supervisor(self, initial: list[tuple[RestartType, float | str]]) -> None:
        specs = tuple(self.new_spec(r, s) for r, s in initial)
        self.spec = dataclasses.replace(self.spec, children=specs)
        self.restart_times = []
        self.exits = []
        self.gone = []
        self.sup = Supervisor(self.spec, self.spawner, self.clock, on_event=self.events,
                              on_exit=self.exits.append, seed=1)
        self.spawner.bind(self.sup)
        self.sup.start(timeout=WAIT)
        self.alive = True
        self.children = [ModelChild(s) for s in specs]
        assert self.take_log() == [("start", s.id) for s in specs]
        self.record_handles(self.ids())
        assert [k for k, *_ in self.take_events()] == ["spawned"] * len(specs)

    def sup_done(self) -> None:
        if self.sup is not None:
            self.sup.shutdown(timeout=WAIT)  # idempotent; ends the thread
            self.sup = None

    @precondition(lambda self: self.alive)
    @rule(child=child_specs, reuse=st.none() | st.integers(0, 63))
    def add_child(self, child: tuple[RestartType, float | str], reuse: int | None) -> None:
        assert self.sup is not None
        spec = self.new_spec(*child, reuse=reuse)
        handle = self.sup.add_child(spec, timeout=WAIT)
        self.children.append(ModelChild(spec))
        assert self.take_log() == [("start", spec.id)]
        self.record_handles([spec.id])
        assert handle == self.children[-1].handle
        assert self.take_events() == [("spawned", spec.id, "root", "")]

    @precondition(lambda self: self.alive and self.children)
    @rule(index=st.integers(0, 63), reason=st.sampled_from(sorted(REASONS)))
    def child_exits(self, index: int, reason: str) -> None:
        exit_reason = REASONS[reason]
        child = self.pick(index)
        id = child.spec.id
        assert self.spawner.crash(id, exit_reason) == child.handle
        self.settle()
        log, events = self.take_log(), self.take_events()
        assert events[0] == ("exited", id, "root", str(exit_reason))
        events = events[1:]

        if not wants_restart(child.spec.restart, exit_reason):
            event(f"{child.spec.restart.value} not restarted after {reason}")
            self.forget(child)
            assert log == []
            assert events == [("removed", id, "root", "")]
            return

        now = self.clock.now()
        self.restart_times = [t for t in self.restart_times if t >= now - self.spec.max_seconds] + [now]
        if len(self.restart_times) > self.spec.max_restarts:
            event(f"gave up ({self.spec.strategy.value})")
            self.gave_up(child, log, events)
            return

        ids = self.ids()
        at = ids.index(id)
        group = {Strategy.ONE_FOR_ONE: [id], Strategy.ONE_FOR_ALL: ids,
                 Strategy.REST_FOR_ONE: ids[at:]}[self.spec.strategy]
        bystanders = [c for c in reversed(self.children) if c.spec.id in group and c is not child]
        dropped = [c.spec.id for c in bystanders if c.spec.restart is RestartType.TEMPORARY]
        self.children = [c for c in self.children if c.spec.id not in dropped]
        self.gone += dropped
        restarted = [c.spec.id for c in self.children if c.spec.id in group]
        event(f"{self.spec.strategy.value}: restarted {min(len(restarted), 2)}+, dropped {min(len(dropped), 1)}+")
        assert log == ([(stop_op(c.spec), c.spec.id) for c in bystanders]
                       + [("start", i) for i in restarted])
        kept = {c.spec.id: c.handle for c in self.children if c.spec.id not in restarted}
        self.record_handles(restarted)
        for kept_id, handle in kept.items():
            assert self.spawner.handle(kept_id) == handle, f"{kept_id} should keep its incarnation"
        assert [n for k, n, *_ in events if k == "restarted"] == restarted
        assert [n for k, n, *_ in events if k == "removed"] == dropped
        assert self.exits == []

    @precondition(lambda self: self.alive and self.children)
    @rule(index=st.integers(0, 63))
    def child_crashes(self, index: int) -> None:
        """Crashes are what supervisors are for: weigh them more than the other steps."""
        self.child_exits(index, "crash")

    def gave_up(self, child: ModelChild, log: list[tuple[str, str]],
                events: list[tuple[str, str, str, str]]) -> None:
        """The intensity is exceeded: every other child stopped in reverse start order."""
        assert self.sup is not None
        others = [c for c in reversed(self.children) if c is not child]
        assert log == [(stop_op(c.spec), c.spec.id) for c in others]
        assert self.spawner.live() == []
        reason = ExitReason.abnormal(INTENSITY_REASON)
        assert self.exits == [reason]
        assert ("escalated", "root", "root", str(reason)) in events
        assert not any(k in ("restarted", "spawned") for k, *_ in events)
        snap = self.sup.snapshot()
        assert not snap.running
        kept = [c.spec.id for c in self.children if c.spec.restart is not RestartType.TEMPORARY]
        assert [c.id for c in snap.children] == kept
        assert all(c.status is ChildStatus.STOPPED and c.handle is None for c in snap.children)
        self.alive = False
        self.dead = [(c.spec.id, c.handle) for c in self.children]
        self.children = []

    @precondition(lambda self: self.alive and self.children)
    @rule(index=st.integers(0, 63))
    def remove_child(self, index: int) -> None:
        assert self.sup is not None
        child = self.pick(index)
        self.sup.remove_child(child.spec.id, timeout=WAIT)
        self.settle()  # the stale exit report of the terminated child
        self.forget(child)
        assert self.take_log() == [(stop_op(child.spec), child.spec.id)]
        assert [k for k, *_ in self.take_events()] == ["stopped", "removed"]

    @rule(seconds=st.sampled_from([0.0, 0.3, 1.0, 2.6]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()
        assert self.take_log() == []

    @precondition(lambda self: self.alive)
    @rule()
    def shutdown(self) -> None:
        assert self.sup is not None
        self.sup.shutdown(timeout=WAIT)
        assert self.take_log() == [(stop_op(c.spec), c.spec.id) for c in reversed(self.children)]
        assert self.take_events()[-1] == ("shutdown", "root", "root", "shutdown")
        assert self.exits == []  # a requested shutdown is not a failure
        self.alive = False
        self.dead = [(c.spec.id, c.handle) for c in self.children]
        self.children = []

    # ---- invariants ---------------------------------------------------------------

    @invariant()
    def shell_matches_model(self) -> None:
        if self.sup is None or not self.alive:
            return
        snap = self.sup.snapshot()
        assert snap.running
        assert [c.id for c in snap.children] == self.ids()
        assert all(c.status is ChildStatus.RUNNING for c in snap.children)
        assert [c.handle for c in snap.children] == [c.handle for c in self.children]
        assert sorted(self.spawner.live()) == sorted(self.ids())

    def teardown(self) -> None:
        self.sup_done()


ShellMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_supervisor_shell_against_model = ShellMachine.TestCase
