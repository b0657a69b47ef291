"""The Supervisor shell driven by FakeSpawner + FakeClock, asserting on the action log.

No test sleeps: time is fake, and every wait (wait_idle, futures, joins) has a timeout
so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sup_helpers import WAIT, Recorder

from beamish.supervisor import (
    INTENSITY_REASON,
    AlreadyStarted,
    ChildSpec,
    ChildStatus,
    ExitReason,
    InvalidSpec,
    NotFound,
    NotRunning,
    RestartType,
    Running,
    StartFailed,
    Strategy,
    SubtreeHandle,
    Supervisor,
    SupervisorError,
    SupervisorSpec,
)
from beamish.supervisor.testing import FakeClock, FakeSpawner, ScriptedChild

Make = Callable[..., Supervisor]
CRASH = ExitReason.abnormal("crash")


def settle(sup: Supervisor) -> None:
    sup.wait_idle(WAIT)


def status(sup: Supervisor, id: str) -> ChildStatus:
    return sup.snapshot().child(id).status


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


# ---- start and stop -----------------------------------------------------------------------


def test_sup_start_normal_and_stop_in_reverse_order(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    sup = make("one_for_one", "a", "b", "c")
    assert spawner.log == [("start", "a"), ("start", "b"), ("start", "c")]
    assert [c.status for c in sup.snapshot().children] == [ChildStatus.RUNNING] * 3
    spawner.clear_log()
    sup.shutdown(timeout=WAIT)
    assert spawner.log == [("terminate", "c"), ("terminate", "b"), ("terminate", "a")]
    assert events.events[-1] == ("shutdown", "root", "root", "shutdown")
    assert not sup.snapshot().running
    with pytest.raises(NotRunning):
        sup.add_child(ChildSpec("z"), timeout=WAIT)
    sup.child_exited("a", None, CRASH)  # ignored, does not raise
    sup.shutdown(timeout=WAIT)  # idempotent


def test_sup_start_fails_when_a_child_fails_to_start(make: Make, spawner: FakeSpawner) -> None:
    spawner.script("b", ScriptedChild(starts=["error"]))
    sup = make("one_for_one", "a", "b", "c", start=False)
    with pytest.raises(StartFailed, match="'b'"):
        sup.start(timeout=WAIT)
    assert spawner.log == [("start", "a"), ("start_error", "b"), ("terminate", "a")]
    with pytest.raises(NotRunning):
        sup.start(timeout=WAIT)


# ---- strategies: the 2nd of 3 children crashes ---------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param("one_for_one", [("start", "b")], id="test_one_for_one"),
        pytest.param("one_for_all", [("terminate", "c"), ("terminate", "a"), ("start", "a"), ("start", "b"),
                                     ("start", "c")], id="test_one_for_all"),
        pytest.param("rest_for_one", [("terminate", "c"), ("start", "b"), ("start", "c")], id="test_rest_for_one"),
    ],
)
def test_strategy_second_of_three_crashes(make: Make, spawner: FakeSpawner, strategy: str,
                                          expected: list[tuple[str, str]]) -> None:
    sup = make(strategy, "a", "b", "c")
    spawner.clear_log()
    spawner.crash("b")
    settle(sup)
    # the terminated bystanders' exit reports (report_terminations) were ignored as stale
    assert spawner.log == expected
    assert sorted(spawner.live()) == ["a", "b", "c"]
    assert all(c.status is ChildStatus.RUNNING for c in sup.snapshot().children)


def test_simple_one_for_one(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    spec = SupervisorSpec("pool", Strategy.SIMPLE_ONE_FOR_ONE, template=ChildSpec("worker", restart="transient"))  # type: ignore[arg-type]
    sup = make(spec)
    for id in ("w1", "w2", "w3"):
        sup.add_child(id, timeout=WAIT)
    spawner.crash("w2")
    settle(sup)
    spawner.crash("w3", ExitReason.normal())
    settle(sup)
    assert [c.id for c in sup.snapshot().children] == ["w1", "w2"]
    sup.remove_child("w1", timeout=WAIT)
    assert spawner.log == [("start", "w1"), ("start", "w2"), ("start", "w3"), ("start", "w2"), ("terminate", "w1")]
    with pytest.raises(InvalidSpec):
        sup.add_child(ChildSpec("w9"), timeout=WAIT)  # not the template (restart differs)


def test_release_then_adopt_a_child_as_a_session_sleeps_and_wakes(
        make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    sup = make("one_for_all", "a", "b")
    spawner.clear_log()
    before = list(events.events)
    handle = sup.release_child("a", timeout=WAIT)
    assert handle == spawner.handle("a")  # the caller now owns the process
    assert [c.id for c in sup.snapshot().children] == ["b"]
    spawner.crash("a")  # its exit (the process stopping) reaches nobody
    spawner.crash("b")  # a one_for_all restart leaves the released child alone
    settle(sup)
    assert spawner.log == [("start", "b")]
    woken = spawner.start_child("root", ChildSpec("a"))  # the waker starts the new process
    sup.adopt_child(ChildSpec("a"), woken, timeout=WAIT)
    assert [c.id for c in sup.snapshot().children] == ["b", "a"]
    assert sup.snapshot().child("a").handle == woken
    assert [e for e in events.events if e not in before and e[1] == "a"] == []  # nothing emitted
    spawner.clear_log()
    spawner.crash("a")  # adopted: now supervised like any child 
    settle(sup)
    assert spawner.log == [("terminate", "b"), ("start", "b"), ("start", "a")]
    assert ("restarted", "a", "root", "") in events.events
    with pytest.raises(NotFound):
        sup.release_child("z", timeout=WAIT)


def test_adoption_error_answers_without_waiting_what_adopt_child_would_raise(
        make: Make, spawner: FakeSpawner) -> None:
    sup = make("one_for_one", "a", start=False)
    assert isinstance(sup.adoption_error(ChildSpec("w")), NotRunning)  # not started yet
    sup.start(timeout=WAIT)
    assert sup.adoption_error(ChildSpec("w")) is None
    assert isinstance(sup.adoption_error(ChildSpec("a")), AlreadyStarted)
    handle = sup.release_child("a", timeout=WAIT)
    assert sup.adoption_error(ChildSpec("a")) is None
    sup.adopt_child(ChildSpec("a"), handle, timeout=WAIT)
    sup.shutdown(timeout=WAIT)
    assert isinstance(sup.adoption_error(ChildSpec("w")), NotRunning)


# ---- restart types after normal and abnormal exits ----------------------------------------


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        pytest.param("permanent", ExitReason.normal(), True, id="test_permanent_normal"),
        pytest.param("permanent", CRASH, True, id="test_permanent_abnormal"),
        pytest.param("transient", ExitReason.normal(), False, id="test_transient_normal_exit_is_forgotten"),
        pytest.param("transient", ExitReason.shutdown(), False, id="test_transient_shutdown"),
        pytest.param("transient", CRASH, True, id="test_transient_abnormal"),
        pytest.param("temporary", ExitReason.normal(), False, id="test_temporary_normal"),
        pytest.param("temporary", CRASH, False, id="test_temporary_abnormal"),
    ],
)
def test_restart_type(make: Make, spawner: FakeSpawner, events: Recorder, restart: str, reason: ExitReason,
                      restarted: bool) -> None:
    sup = make("one_for_one", ChildSpec("a", restart=RestartType(restart)), "b")
    spawner.clear_log()
    spawner.crash("a", reason)
    settle(sup)
    assert spawner.log == ([("start", "a")] if restarted else [])
    ids = [c.id for c in sup.snapshot().children]
    assert ids == (["a", "b"] if restarted else ["b"])
    assert ("exited", "a", "root", str(reason)) in events.events
    assert ("restarted" in events.kinds("a")) is restarted


def test_stale_exit_reports_are_ignored(make: Make, spawner: FakeSpawner) -> None:
    sup = make("one_for_one", "a")
    old = spawner.crash("a")
    settle(sup)
    spawner.clear_log()
    sup.child_exited("a", old, CRASH)  # the incarnation that already exited, reported twice
    sup.child_exited("nope", old, CRASH)
    sup.escalate("a", old, CRASH)
    settle(sup)
    assert spawner.log == []
    assert status(sup, "a") is ChildStatus.RUNNING
    assert sup.snapshot().child("a").handle == spawner.handle("a") != old


# ---- shutdown: brutal_kill, timeout, infinity ---------------------------------------------------


def test_sup_stop_brutal_kill(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    sup = make("one_for_one", ChildSpec("a", shutdown="brutal_kill"))
    spawner.clear_log()
    sup.remove_child("a", timeout=WAIT)
    assert spawner.log == [("kill", "a")]
    assert ("stopped", "a", "root", "abnormal: killed") in events.events


def test_sup_stop_timeout_kills_a_child_that_ignores_the_stop_request(
    make: Make, spawner: FakeSpawner, clock: FakeClock, events: Recorder
) -> None:
    spawner.script("a", ScriptedChild(on_term="ignore"))
    sup = make("one_for_one", ChildSpec("a", shutdown=30.0))
    spawner.clear_log()
    began = time.monotonic()
    thread, errors = in_thread(lambda: sup.remove_child("a", timeout=WAIT))
    clock.wait_for_timers(1, timeout=WAIT)  # the spawner is now waiting out the shutdown
    assert spawner.log == [("terminate", "a")]
    clock.advance(29.9)
    assert spawner.log == [("terminate", "a")]
    clock.advance(0.1)
    thread.join(WAIT)
    assert not thread.is_alive() and errors == []
    assert spawner.log == [("terminate", "a"), ("kill", "a")]
    assert ("stopped", "a", "root", "abnormal: killed") in events.events
    assert time.monotonic() - began < 1.0  # 30 fake seconds, no real ones


def test_sup_stop_child_that_exits_within_its_shutdown_is_not_killed(
    make: Make, spawner: FakeSpawner, clock: FakeClock
) -> None:
    spawner.script("a", ScriptedChild(on_term=1.5))
    sup = make("one_for_one", ChildSpec("a", shutdown=5.0))
    spawner.clear_log()
    thread, errors = in_thread(lambda: sup.remove_child("a", timeout=WAIT))
    clock.wait_for_timers(1, timeout=WAIT)
    clock.advance(1.5)
    thread.join(WAIT)
    assert errors == [] and spawner.log == [("terminate", "a")]


def test_sup_stop_infinity_waits_for_the_child(make: Make, spawner: FakeSpawner, clock: FakeClock) -> None:
    spawner.script("a", ScriptedChild(on_term="ignore"))
    sup = make("one_for_one", ChildSpec("a", shutdown="infinity"))
    spawner.clear_log()
    thread, errors = in_thread(lambda: sup.remove_child("a", timeout=WAIT))
    clock.advance(10_000.0)
    thread.join(0.01)
    assert thread.is_alive()  # still waiting: infinity means no kill
    spawner.release("a")
    thread.join(WAIT)
    assert errors == [] and spawner.log == [("terminate", "a")]


def test_call_timeout_while_the_supervisor_is_busy(make: Make, spawner: FakeSpawner, clock: FakeClock) -> None:
    spawner.script("a", ScriptedChild(on_term="ignore"))
    sup = make("one_for_one", ChildSpec("a", shutdown=5.0), "b")
    thread, _ = in_thread(lambda: sup.remove_child("a", timeout=WAIT))
    clock.wait_for_timers(1, timeout=WAIT)
    with pytest.raises(TimeoutError):
        sup.add_child(ChildSpec("c"), timeout=0.01)
    assert sup.snapshot().child("b").status is ChildStatus.RUNNING  # snapshot never waits
    clock.advance(5.0)
    thread.join(WAIT)
    settle(sup)
    assert [c.id for c in sup.snapshot().children] == ["b", "c"]  # the timed-out add still completed


# ---- intensity, escalation, nesting ---------------------------------------------------------------


def test_one_for_one_escalation_at_the_top_calls_on_exit(make: Make, spawner: FakeSpawner, clock: FakeClock,
                                                         events: Recorder) -> None:
    exits: list[ExitReason] = []
    sup = make("one_for_one", "a", "b", on_exit=exits.append)
    for _ in range(3):
        spawner.crash("a")
        settle(sup)
        clock.advance(0.1)
    spawner.clear_log()
    spawner.crash("a")
    settle(sup)
    assert spawner.log == [("terminate", "b")]
    assert exits == [ExitReason.abnormal(INTENSITY_REASON)]
    assert ("escalated", "root", "root", f"abnormal: {INTENSITY_REASON}") in events.events
    assert not sup.snapshot().running
    with pytest.raises(NotRunning):
        sup.restart_child("a", timeout=WAIT)


def nested_tree() -> SupervisorSpec:
    mid = SupervisorSpec("mid", Strategy.ONE_FOR_ONE, max_restarts=0, children=(ChildSpec("m1"), ChildSpec("m2")))
    return SupervisorSpec("root", Strategy.ONE_FOR_ONE, children=(ChildSpec("x"), ChildSpec.for_supervisor(mid), ChildSpec("y")))


def test_nested_escalation_goes_exactly_one_level_up(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    root = make(nested_tree())
    assert spawner.log == [("start", "x"), ("start", "m1"), ("start", "m2"), ("start", "y")]
    first = root.snapshot().child("mid").handle
    assert isinstance(first, SubtreeHandle)
    spawner.clear_log()
    events.events.clear()
    spawner.crash("m1")  # mid has max_restarts=0: it gives up at once
    settle(root)
    assert spawner.log == [("terminate", "m2"), ("start", "m1"), ("start", "m2")]
    assert events.kinds("mid") == ["escalated", "exited", "restarted"]
    assert ("exited", "mid", "root", f"abnormal: {INTENSITY_REASON}") in events.events
    snap = root.snapshot()
    assert snap.running and snap.child("mid").restarts == 1
    assert snap.child("mid").handle != first
    assert [c.status for c in snap.child("mid").supervisor.children] == [ChildStatus.RUNNING] * 2  # type: ignore[union-attr]
    assert spawner.live() == ["x", "y", "m1", "m2"]


def test_three_levels_escalation_stops_at_the_middle(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    low = SupervisorSpec("low", max_restarts=0, children=(ChildSpec("l1"),))
    mid = SupervisorSpec("mid", children=(ChildSpec("m1"), ChildSpec.for_supervisor(low)))
    root = make(SupervisorSpec("root", children=(ChildSpec.for_supervisor(mid),)))
    spawner.clear_log()
    events.events.clear()
    spawner.crash("l1")
    settle(root)
    assert spawner.log == [("start", "l1")]  # low restarted by mid; m1 untouched
    assert [e[:3] for e in events.events] == [
        ("exited", "l1", "low"),
        ("escalated", "low", "low"),
        ("exited", "low", "mid"),
        ("restarted", "l1", "low"),
        ("restarted", "low", "mid"),
    ]
    assert root.find("low") is root.child_supervisor("mid").child_supervisor("low")


def test_supervisor_restart_restarts_its_whole_subtree_with_dynamic_children(
    make: Make, spawner: FakeSpawner
) -> None:
    mid = SupervisorSpec("mid", children=(ChildSpec("m1"),))
    root = make(SupervisorSpec("root", Strategy.ONE_FOR_ALL, children=(ChildSpec("a"), ChildSpec.for_supervisor(mid))))
    root.child_supervisor("mid").add_child(ChildSpec("m2"), timeout=WAIT)  # added at run time
    root.child_supervisor("mid").add_child(ChildSpec("t", restart=RestartType.TEMPORARY), timeout=WAIT)
    spawner.clear_log()
    spawner.crash("a")
    settle(root)
    assert spawner.log == [("terminate", "t"), ("terminate", "m2"), ("terminate", "m1"),
                           ("start", "a"), ("start", "m1"), ("start", "m2")]
    assert [c.id for c in root.child_supervisor("mid").snapshot().children] == ["m1", "m2"]


def test_nested_supervisor_that_cannot_reboot_is_retried_by_its_parent(make: Make, spawner: FakeSpawner) -> None:
    spawner.script("m1", ScriptedChild(starts=["ok", "error", "ok"]))
    root = make(nested_tree())
    spawner.clear_log()
    spawner.crash("m1")  # mid gives up; root restarts it; its boot fails on m1; root retries
    settle(root)
    assert spawner.log == [("terminate", "m2"), ("start_error", "m1"), ("start", "m1"), ("start", "m2")]
    snap = root.snapshot()
    assert snap.running and snap.child("mid").status is ChildStatus.RUNNING
    assert root.child_supervisor("mid").snapshot().running


def test_remove_a_supervisor_child_stops_its_subtree(make: Make, spawner: FakeSpawner) -> None:
    root = make(nested_tree())
    nested = root.child_supervisor("mid")
    spawner.clear_log()
    root.remove_child("mid", timeout=WAIT)
    assert spawner.log == [("terminate", "m2"), ("terminate", "m1")]
    with pytest.raises(NotRunning):
        nested.add_child(ChildSpec("z"), timeout=WAIT)
    with pytest.raises(NotFound):
        root.child_supervisor("mid")


def test_nested_supervisor_cannot_be_started_or_shut_down_directly(make: Make) -> None:
    nested = make(nested_tree()).child_supervisor("mid")
    assert nested.parent is not None and nested.parent.id == "root"
    with pytest.raises(SupervisorError):
        nested.shutdown()
    with pytest.raises(SupervisorError):
        nested.start()


def test_escalate_fails_the_supervisor(make: Make, spawner: FakeSpawner) -> None:
    exits: list[ExitReason] = []
    sup = make("one_for_one", "a", "b", on_exit=exits.append)
    spawner.clear_log()
    sup.escalate("a", spawner.handle("a"), ExitReason.abnormal("unrecoverable"))
    settle(sup)
    assert spawner.log == [("terminate", "b"), ("terminate", "a")]
    assert exits == [ExitReason.abnormal("escalated by a: abnormal: unrecoverable")]


# ---- per-child intensity (the node's root) -------------------------------------------------------------


def test_per_child_intensity_marks_failed_and_restart_child_revives(
    make: Make, spawner: FakeSpawner, clock: FakeClock, events: Recorder
) -> None:
    sup = make("one_for_one", "a", "b", per_child_intensity=True)
    for _ in range(4):
        spawner.crash("a")
        settle(sup)
        clock.advance(0.1)
    assert status(sup, "a") is ChildStatus.FAILED
    assert status(sup, "b") is ChildStatus.RUNNING
    assert sup.snapshot().running
    assert events.kinds("a")[-1] == "failed"
    assert "escalated" not in events.kinds()
    with pytest.raises(AlreadyStarted.__mro__[1]):  # AlreadyPresent: the name is taken by the failed child
        sup.add_child(ChildSpec("a"), timeout=WAIT)
    with pytest.raises(Running):
        sup.restart_child("b", timeout=WAIT)
    handle = sup.restart_child("a", timeout=WAIT)
    assert handle == spawner.handle("a")
    assert status(sup, "a") is ChildStatus.RUNNING
    assert sup.snapshot().child("a").restarts == 4
    spawner.crash("a")  # a fresh log: restarted again
    settle(sup)
    assert status(sup, "a") is ChildStatus.RUNNING


def test_per_child_escalate_marks_only_that_child_failed(make: Make, spawner: FakeSpawner) -> None:
    sup = make("one_for_one", "a", "b", per_child_intensity=True)
    spawner.clear_log()
    sup.escalate("a", spawner.handle("a"), CRASH)
    settle(sup)
    assert spawner.log == [("terminate", "a")]
    assert [c.status for c in sup.snapshot().children] == [ChildStatus.FAILED, ChildStatus.RUNNING]


def test_per_child_root_marks_a_failing_nested_supervisor_failed(make: Make, spawner: FakeSpawner,
                                                                 clock: FakeClock) -> None:
    mid = SupervisorSpec("mid", max_restarts=0, children=(ChildSpec("m1"),))
    root = make(SupervisorSpec("root", per_child_intensity=True, max_restarts=1,
                               children=(ChildSpec("x"), ChildSpec.for_supervisor(mid))))
    for _ in range(2):
        spawner.crash("m1")
        settle(root)
        clock.advance(0.1)
    assert status(root, "mid") is ChildStatus.FAILED
    assert spawner.live() == ["x"]
    root.restart_child("mid", timeout=WAIT)
    assert spawner.live() == ["x", "m1"]


# ---- failed starts: RetryRestart ---------------------------------------------------------------------


def test_failed_restart_is_retried_until_it_starts(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    spawner.script("a", ScriptedChild(starts=["ok", "error", "error", "ok"]))
    sup = make("one_for_one", "a", "b")
    spawner.clear_log()
    spawner.crash("a")
    settle(sup)
    assert spawner.log == [("start_error", "a"), ("start_error", "a"), ("start", "a")]
    assert status(sup, "a") is ChildStatus.RUNNING
    assert sup.snapshot().running


def test_hanging_restart_loop_gives_up_at_the_intensity(make: Make, spawner: FakeSpawner) -> None:
    spawner.script("a", ScriptedChild(starts=["ok"] + ["error"] * 50))
    exits: list[ExitReason] = []
    sup = make("one_for_one", "a", "b", on_exit=exits.append)
    spawner.clear_log()
    spawner.crash("a")
    settle(sup)
    # max_restarts=3: the restart and 2 retries are tolerated, the 3rd retry exceeds
    assert spawner.log == [("start_error", "a")] * 3 + [("terminate", "b")]
    assert exits == [ExitReason.abnormal(INTENSITY_REASON)]


def test_hanging_restart_loop_with_per_child_intensity_fails_the_child(
    make: Make, spawner: FakeSpawner, clock: FakeClock
) -> None:
    spawner.script("a", ScriptedChild(starts=["ok"] + ["error"] * 50))
    spawner.script("park", ScriptedChild(on_term="ignore"))
    sup = make("one_for_one", "a", "b", ChildSpec("park", shutdown=1.0), per_child_intensity=True)
    # Park the supervisor thread in a terminate so that both exits are queued before either is handled.
    thread, _ = in_thread(lambda: sup.remove_child("park", timeout=WAIT))
    clock.wait_for_timers(1, timeout=WAIT)
    spawner.clear_log()
    spawner.crash("a")
    spawner.crash("b")
    clock.advance(1.0)
    thread.join(WAIT)
    settle(sup)
    # a's retry goes through the queue, behind b's exit: no tight loop
    assert spawner.log == [("kill", "park"), ("start_error", "a"), ("start", "b"), ("start_error", "a"),
                           ("start_error", "a")]
    assert [c.status for c in sup.snapshot().children] == [ChildStatus.FAILED, ChildStatus.RUNNING]


def test_one_for_all_other_child_fails_restart(make: Make, spawner: FakeSpawner) -> None:
    spawner.script("b", ScriptedChild(starts=["ok", "error", "ok"]))
    sup = make("one_for_all", "a", "b", "c")
    spawner.clear_log()
    spawner.crash("c")
    settle(sup)
    assert spawner.log == [("terminate", "b"), ("terminate", "a"), ("start", "a"), ("start_error", "b"),
                           ("terminate", "a"), ("start", "a"), ("start", "b"), ("start", "c")]
    assert spawner.live() == ["a", "b", "c"]


def test_add_child_start_failure_raises_and_forgets(make: Make, spawner: FakeSpawner) -> None:
    spawner.script("b", ScriptedChild(starts=["error"]))
    sup = make("one_for_one", "a")
    with pytest.raises(StartFailed) as info:
        sup.add_child(ChildSpec("b"), timeout=WAIT)
    assert info.value.id == "b"
    assert [c.id for c in sup.snapshot().children] == ["a"]
    assert sup.add_child(ChildSpec("b"), timeout=WAIT) == spawner.handle("b")  # second start: ok
    with pytest.raises(AlreadyStarted):
        sup.add_child(ChildSpec("b"), timeout=WAIT)
    with pytest.raises(NotFound):
        sup.remove_child("nope", timeout=WAIT)


def test_a_spawner_bug_is_a_start_failure(make: Make, spawner: FakeSpawner) -> None:
    class Broken(FakeSpawner):
        def start_child(self, sup_id: str, spec: ChildSpec) -> object:
            if spec.id == "bad":
                raise RuntimeError("bug")
            return super().start_child(sup_id, spec)

        def terminate_child(self, sup_id: str, spec: ChildSpec, handle: object) -> ExitReason:
            raise OSError("no such process")

    broken = Broken(spawner.clock)
    sup = Supervisor(SupervisorSpec("s"), broken, spawner.clock)
    sup.start(timeout=WAIT)
    try:
        with pytest.raises(StartFailed, match="RuntimeError: bug"):
            sup.add_child(ChildSpec("bad"), timeout=WAIT)
        sup.add_child(ChildSpec("good"), timeout=WAIT)  # the thread survived
        sup.remove_child("good", timeout=WAIT)  # a terminate that raises is logged, the child forgotten
        assert sup.snapshot().children == ()
    finally:
        sup.shutdown(timeout=WAIT)


# ---- backoff ---------------------------------------------------------------------------------------------


def test_backoff_delays_grow_and_count_toward_intensity(make: Make, spawner: FakeSpawner, clock: FakeClock,
                                                        events: Recorder) -> None:
    exits: list[ExitReason] = []
    sup = make("one_for_one", ChildSpec("a", backoff=(0.1, 10.0)), "b", max_restarts=3, max_seconds=60.0,
               on_exit=exits.append)
    delays = []
    for _ in range(3):
        spawner.clear_log()
        spawner.crash("a")
        settle(sup)
        assert status(sup, "a") is ChildStatus.BACKOFF
        assert spawner.log == []  # not restarted yet
        due = clock.next_due()
        assert due is not None
        delays.append(due - clock.now())
        clock.jump()
        settle(sup)
        assert spawner.log == [("start", "a")]
    assert delays == sorted(delays) and delays[0] >= 0.1 and delays[2] >= 0.4
    assert events.kinds("a").count("backoff") == 3
    spawner.crash("a")  # the 4th restart within 60 s: past the intensity, delayed or not
    settle(sup)
    assert exits == [ExitReason.abnormal(INTENSITY_REASON)]
    assert clock.pending == 0


def test_remove_child_during_backoff_cancels_the_restart(make: Make, spawner: FakeSpawner, clock: FakeClock) -> None:
    sup = make("one_for_one", ChildSpec("a", backoff=(1.0, 1.0)))
    spawner.crash("a")
    settle(sup)
    sup.remove_child("a", timeout=WAIT)
    spawner.clear_log()
    clock.advance(5.0)
    settle(sup)
    assert spawner.log == [] and sup.snapshot().children == ()


def test_exit_after_script_with_backoff(make: Make, spawner: FakeSpawner, clock: FakeClock) -> None:
    spawner.script("a", ScriptedChild(exit_after=(0.5, ExitReason.abnormal("oom"))))
    sup = make("one_for_one", ChildSpec("a", backoff=(1.0, 1.0)), max_restarts=10)
    spawner.clear_log()
    clock.advance(0.5)  # a exits by itself
    settle(sup)
    assert status(sup, "a") is ChildStatus.BACKOFF
    clock.advance(1.0)
    settle(sup)
    assert spawner.log == [("start", "a")]


# ---- snapshot, events, guards ------------------------------------------------------------------------------


def test_snapshot_describes_the_tree(make: Make, spawner: FakeSpawner) -> None:
    snap = make(nested_tree()).snapshot()
    assert (snap.id, snap.strategy, snap.running) == ("root", Strategy.ONE_FOR_ONE, True)
    assert [(s.id, c.id, c.kind.value) for s, c in snap.walk()] == [
        ("root", "x", "agent"), ("root", "mid", "supervisor"), ("mid", "m1", "agent"), ("mid", "m2", "agent"),
        ("root", "y", "agent"),
    ]
    x = snap.child("x")
    assert (x.status, x.restarts, x.handle, x.spec) == (ChildStatus.RUNNING, 0, spawner.handle("x"), ChildSpec("x"))
    with pytest.raises(NotFound):
        snap.child("nope")


def test_events_for_every_action(make: Make, spawner: FakeSpawner, events: Recorder) -> None:
    sup = make("one_for_one", "a")
    spawner.crash("a")
    settle(sup)
    sup.remove_child("a", timeout=WAIT)
    assert events.events == [
        ("spawned", "a", "root", ""),
        ("exited", "a", "root", "abnormal: crash"),
        ("restarted", "a", "root", ""),
        ("stopped", "a", "root", "shutdown"),
        ("removed", "a", "root", ""),
    ]


def test_blocking_call_from_a_supervisor_thread_is_refused(clock: FakeClock, spawner: FakeSpawner) -> None:
    errors: list[BaseException] = []
    holder: list[Supervisor] = []

    def on_event(kind: str, name: str, supervisor: str, reason: str) -> None:
        if kind == "spawned" and name == "a":
            try:
                holder[0].add_child(ChildSpec("b"), timeout=WAIT)
            except SupervisorError as exc:
                errors.append(exc)

    sup = Supervisor(SupervisorSpec("s", children=(ChildSpec("a"),)), spawner, clock, on_event=on_event)
    holder.append(sup)
    sup.start(timeout=WAIT)
    sup.shutdown(timeout=WAIT)
    assert len(errors) == 1 and "deadlock" in str(errors[0])


def test_real_monotonic_clock_smoke() -> None:
    """No clock given: the supervisor owns a MonotonicClock (real, 1-2 ms backoff) and closes it."""
    restarted = threading.Event()

    def on_event(kind: str, name: str, supervisor: str, reason: str) -> None:
        if kind == "restarted":
            restarted.set()

    spawner = FakeSpawner(FakeClock(), real_timeout=WAIT)
    sup = Supervisor(SupervisorSpec("s", children=(ChildSpec("a", backoff=(0.001, 0.002)),)), spawner,
                     on_event=on_event)
    spawner.bind(sup)
    with sup:
        spawner.crash("a")
        assert restarted.wait(WAIT)
        assert spawner.log == [("start", "a"), ("start", "a")]
    assert not sup.snapshot().running


def test_public_methods_are_safe_from_many_threads(make: Make, spawner: FakeSpawner) -> None:
    sup = make("one_for_one", per_child_intensity=True, max_restarts=1000)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                id = f"w{n}-{i}"
                handle = sup.add_child(ChildSpec(id), timeout=WAIT)
                sup.child_exited(id, handle, CRASH)  # restarted
                sup.snapshot()
                if i % 3:
                    sup.remove_child(id, timeout=WAIT)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 5)
    settle(sup)
    assert errors == []
    kept = sorted(c.id for c in sup.snapshot().children)
    assert kept == sorted(f"w{n}-{i}" for n in range(8) for i in range(0, 15, 3))
    assert sorted(spawner.live()) == kept
    assert all(c.status is ChildStatus.RUNNING for c in sup.snapshot().children)


def test_restarted_supervisor_does_not_start_its_temporary_children_again(make: Make, spawner: FakeSpawner) -> None:
    # A deliberate difference from OTP, whose init/1 would start a static temporary child again.
    mid = SupervisorSpec("mid", max_restarts=0, children=(ChildSpec("perm"), ChildSpec("temp", restart="temporary")))
    root = make(SupervisorSpec("root", children=(ChildSpec.for_supervisor(mid),)))
    spawner.clear_log()
    spawner.crash("perm")  # mid gives up at once; root restarts it
    settle(root)
    assert spawner.log == [("terminate", "temp"), ("start", "perm")]
    assert [c.id for c in root.child_supervisor("mid").snapshot().children] == ["perm"]
    assert root.snapshot().child("mid").restarts == 1
