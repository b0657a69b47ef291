"""decide(): one test per rule, table-driven where the rule is a table.

Everything here is pure: times are passed in (0.0, 0.1, ...), nothing sleeps, and the
expected action lists are OTP's (supervisor.erl do_restart/restart/terminate_children).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from beamish.supervisor import (
    INTENSITY_REASON,
    AddChild,
    AdoptChild,
    AlreadyPresent,
    AlreadyStarted,
    BackoffElapsed,
    Boot,
    ChildExited,
    ChildNotRunning,
    ChildSpec,
    ChildStarted,
    ChildStatus,
    Escalate,
    Event,
    ExitReason,
    Forget,
    Halt,
    InvalidSpec,
    MarkFailed,
    NotFound,
    NotRunning,
    Outcome,
    Release,
    ReleaseChild,
    RemoveChild,
    RestartChild,
    RestartType,
    Retry,
    RetryRestart,
    Running,
    ShutdownSelf,
    Start,
    StartAfter,
    StartError,
    Strategy,
    SupervisorError,
    SupervisorSpec,
    SupervisorState,
    Terminate,
    adoption_error,
    backoff_delay,
    decide,
)

CRASH = ExitReason.abnormal("crash")
NORMAL = ExitReason.normal()
SHUTDOWN = ExitReason.shutdown()
T, S, F = Terminate, Start, Forget


def sup(strategy: str = "one_for_one", *children: ChildSpec | str, **kwargs: object) -> SupervisorSpec:
    kids = tuple(c if isinstance(c, ChildSpec) else ChildSpec(c) for c in children)
    return SupervisorSpec("s", Strategy(strategy), children=kids, **kwargs)  # type: ignore[arg-type]


def confirm(spec: SupervisorSpec, outcome: Outcome, now: float) -> SupervisorState:
    """Play the shell: every Start succeeds."""
    state = outcome.state
    for action in outcome.actions:
        if isinstance(action, Start):
            state = decide(spec, state, ChildStarted(action.id), now).state
    return state


def booted(spec: SupervisorSpec, seed: int = 0) -> SupervisorState:
    return confirm(spec, decide(spec, SupervisorState.initial(spec, seed), Boot(), 0.0), 0.0)


def step(spec: SupervisorSpec, state: SupervisorState, event: Event, now: float) -> tuple[SupervisorState, tuple[object, ...]]:
    outcome = decide(spec, state, event, now)
    return confirm(spec, outcome, now), outcome.actions


def statuses(state: SupervisorState) -> dict[str, str]:
    return {id: c.status.value for id, c in state.children.items()}


def crash_times(spec: SupervisorSpec, state: SupervisorState, id: str, times: Iterable[float]) -> list[tuple[object, ...]]:
    out = []
    for now in times:
        state, actions = step(spec, state, ChildExited(id, CRASH), now)
        out.append(actions)
    return out


# ---- boot and halt ------------------------------------------------------------------


def test_sup_start_normal_starts_children_in_order() -> None:
    spec = sup("one_for_one", "a", "b", "c")
    outcome = decide(spec, SupervisorState.initial(spec), Boot(), 0.0)
    assert outcome.actions == (S("a"), S("b"), S("c"))
    assert statuses(outcome.state) == {"a": "starting", "b": "starting", "c": "starting"}
    assert statuses(confirm(spec, outcome, 0.0)) == {"a": "running", "b": "running", "c": "running"}


def test_sup_stop_terminates_children_in_reverse_order() -> None:
    spec = sup("one_for_one", "a", "b", "c")
    outcome = decide(spec, booted(spec), Halt(), 1.0)
    assert outcome.actions == (T("c"), T("b"), T("a"), ShutdownSelf(SHUTDOWN))
    assert not outcome.state.running


def test_halt_forgets_temporary_children() -> None:
    spec = sup("one_for_one", "a", ChildSpec("t", restart=RestartType.TEMPORARY))
    outcome = decide(spec, booted(spec), Halt(), 1.0)
    assert outcome.actions == (T("t"), F("t"), T("a"), ShutdownSelf(SHUTDOWN))
    assert list(outcome.state.children) == ["a"]


def test_halt_of_a_stopped_supervisor_does_nothing() -> None:
    spec = sup("one_for_one", "a")
    state = decide(spec, booted(spec), Halt(), 1.0).state
    assert decide(spec, state, Halt(), 2.0).actions == ()


def test_boot_twice_is_refused() -> None:
    spec = sup("one_for_one", "a")
    with pytest.raises(SupervisorError):
        decide(spec, booted(spec), Boot(), 0.0)


# ---- do_restart: restart type x exit reason ------------------------------------------


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        pytest.param("permanent", NORMAL, (S("a"),), id="test_permanent_normal_exit_is_restarted"),
        pytest.param("permanent", SHUTDOWN, (S("a"),), id="test_permanent_shutdown_exit_is_restarted"),
        pytest.param("permanent", CRASH, (S("a"),), id="test_permanent_abnormal_exit_is_restarted"),
        pytest.param("transient", NORMAL, (F("a"),), id="test_transient_normal_exit_is_forgotten"),
        pytest.param("transient", SHUTDOWN, (F("a"),), id="test_transient_shutdown_exit_is_forgotten"),
        pytest.param("transient", CRASH, (S("a"),), id="test_transient_abnormal_exit_is_restarted"),
        pytest.param("temporary", NORMAL, (F("a"),), id="test_temporary_normal_exit_is_forgotten"),
        pytest.param("temporary", CRASH, (F("a"),), id="test_temporary_abnormal_exit_is_forgotten"),
    ],
)
def test_do_restart(restart: str, reason: ExitReason, expected: tuple[object, ...]) -> None:
    spec = sup("one_for_one", ChildSpec("a", restart=RestartType(restart)), "b")
    outcome = decide(spec, booted(spec), ChildExited("a", reason), 1.0)
    assert outcome.actions == expected
    if expected == (F("a"),):
        assert "a" not in outcome.state.children
        assert outcome.state.log.times == ()  # no restart, nothing counted
    else:
        assert outcome.state.children["a"].status is ChildStatus.STARTING
        assert outcome.state.children["a"].restarts == 1
        assert outcome.state.log.times == (1.0,)


# ---- strategies: the 2nd of 3 children crashes ----------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param("one_for_one", (S("b"),), id="test_one_for_one"),
        pytest.param("one_for_all", (T("c"), T("a"), S("a"), S("b"), S("c")), id="test_one_for_all"),
        pytest.param("rest_for_one", (T("c"), S("b"), S("c")), id="test_rest_for_one"),
    ],
)
def test_strategy_second_of_three_crashes(strategy: str, expected: tuple[object, ...]) -> None:
    spec = sup(strategy, "a", "b", "c")
    outcome = decide(spec, booted(spec), ChildExited("b", CRASH), 1.0)
    assert outcome.actions == expected
    assert outcome.state.log.times == (1.0,)  # one restart counted, bystanders included


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param("one_for_all", (T("c"), F("c"), T("a"), S("a"), S("b")), id="one_for_all"),
        pytest.param("rest_for_one", (T("c"), F("c"), S("b")), id="rest_for_one"),
    ],
)
def test_temporary_bystander_is_terminated_and_forgotten(strategy: str, expected: tuple[object, ...]) -> None:
    spec = sup(strategy, "a", "b", ChildSpec("c", restart=RestartType.TEMPORARY))
    outcome = decide(spec, booted(spec), ChildExited("b", CRASH), 1.0)
    assert outcome.actions == expected
    assert list(outcome.state.children) == ["a", "b"]


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_temporary_child_exit_restarts_no_bystander(strategy: str) -> None:
    spec = sup(strategy, "a", ChildSpec("b", restart=RestartType.TEMPORARY), "c")
    outcome = decide(spec, booted(spec), ChildExited("b", CRASH), 1.0)
    assert outcome.actions == (F("b"),)


def test_rest_for_one_last_child_restarts_alone() -> None:
    spec = sup("rest_for_one", "a", "b", "c")
    assert decide(spec, booted(spec), ChildExited("c", CRASH), 1.0).actions == (S("c"),)


# ---- intensity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "crasher", "give_up"),
    [
        pytest.param("one_for_one", "a", (T("c"), T("b")), id="test_one_for_one_escalation"),
        pytest.param("one_for_all", "b", (T("c"), T("a")), id="test_one_for_all_escalation"),
        pytest.param("rest_for_one", "b", (T("c"), T("a")), id="test_rest_for_one_escalation"),
        pytest.param("simple_one_for_one", "b", (T("c"), T("a")), id="test_simple_one_for_one_escalation"),
    ],
)
def test_escalation(strategy: str, crasher: str, give_up: tuple[object, ...]) -> None:
    if strategy == "simple_one_for_one":
        spec = SupervisorSpec("s", Strategy.SIMPLE_ONE_FOR_ONE, template=ChildSpec("t"))
        state = decide(spec, SupervisorState.initial(spec), Boot(), 0.0).state
        for id in "abc":
            state, _ = step(spec, state, AddChild(spec.child_of_template(id)), 0.0)
    else:
        spec = sup(strategy, "a", "b", "c")
        state = booted(spec)
    results = crash_times(spec, state, crasher, [0.0, 0.1, 0.2, 0.3])
    assert all(not any(isinstance(a, ShutdownSelf) for a in r) for r in results[:3])
    assert results[3] == (*give_up, ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)))


def test_restarts_spread_over_more_than_the_period_never_escalate() -> None:
    spec = sup("one_for_one", "a", max_restarts=1, max_seconds=5.0)
    results = crash_times(spec, booted(spec), "a", [0.0, 5.1, 10.2, 15.3])
    assert all(r == (S("a"),) for r in results)


def test_zero_max_restarts_gives_up_on_the_first_restart() -> None:
    spec = sup("one_for_one", "a", "b", max_restarts=0)
    outcome = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    assert outcome.actions == (T("b"), ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)))
    assert not outcome.state.running
    assert statuses(outcome.state) == {"a": "stopped", "b": "stopped"}


def test_escalation_forgets_temporary_children() -> None:
    spec = sup("one_for_one", "a", ChildSpec("t", restart=RestartType.TEMPORARY), max_restarts=0)
    outcome = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    assert outcome.actions == (T("t"), F("t"), ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)))


def test_multiple_restarts_count_once_per_event() -> None:
    # one_for_all restarts three children per crash but counts one restart (OTP).
    spec = sup("one_for_all", "a", "b", "c", max_restarts=2)
    results = crash_times(spec, booted(spec), "a", [0.0, 0.1, 0.2])
    assert isinstance(results[2][-1], ShutdownSelf)
    assert not isinstance(results[1][-1], ShutdownSelf)


def test_boot_after_escalation_starts_everything_again_with_a_fresh_log() -> None:
    spec = sup("one_for_one", "a", "b", max_restarts=0)
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).state
    outcome = decide(spec, state, Boot(), 1.0)
    assert outcome.actions == (S("a"), S("b"))
    assert outcome.state.log.times == ()
    assert outcome.state.children["a"].restarts == 1


# ---- per-child intensity (the node's root) -----------------------------------------------


def test_per_child_intensity_marks_failed_and_the_others_go_on() -> None:
    spec = sup("one_for_one", "a", "b", per_child_intensity=True)
    state = booted(spec)
    for now in (0.0, 0.1, 0.2):
        state, actions = step(spec, state, ChildExited("a", CRASH), now)
        assert actions == (S("a"),)
    state, actions = step(spec, state, ChildExited("a", CRASH), 0.3)
    assert actions == (MarkFailed("a"),)
    assert state.running
    assert statuses(state) == {"a": "failed", "b": "running"}
    # b has its own log: its restarts are not a's
    state, actions = step(spec, state, ChildExited("b", CRASH), 0.4)
    assert actions == (S("b"),)
    assert state.log.times == ()


def test_restart_child_revives_a_failed_child_with_a_fresh_log() -> None:
    spec = sup("one_for_one", "a", per_child_intensity=True, max_restarts=1)
    state = booted(spec)
    for now in (0.0, 0.1):
        state, _ = step(spec, state, ChildExited("a", CRASH), now)
    assert state.children["a"].status is ChildStatus.FAILED
    state, actions = step(spec, state, RestartChild("a"), 0.2)
    assert actions == (S("a"),)
    assert state.children["a"].status is ChildStatus.RUNNING
    state, actions = step(spec, state, ChildExited("a", CRASH), 0.3)
    assert actions == (S("a"),)  # would have been MarkFailed with the old log


def test_escalate_with_per_child_intensity_fails_only_that_child() -> None:
    spec = sup("one_for_one", "a", "b", per_child_intensity=True)
    outcome = decide(spec, booted(spec), Escalate("a", CRASH), 1.0)
    assert outcome.actions == (T("a"), MarkFailed("a"))
    assert statuses(outcome.state) == {"a": "failed", "b": "running"}


def test_escalate_fails_the_supervisor() -> None:
    spec = sup("one_for_one", "a", "b", "c")
    outcome = decide(spec, booted(spec), Escalate("b", ExitReason.abnormal("context lost")), 1.0)
    assert outcome.actions == (T("c"), T("b"), T("a"),
                               ShutdownSelf(ExitReason.abnormal("escalated by b: abnormal: context lost")))
    assert not outcome.state.running


# ---- child administration ------------------------------------------------------------


def test_add_child_starts_it_last() -> None:
    spec = sup("one_for_one", "a")
    state, actions = step(spec, booted(spec), AddChild(ChildSpec("b")), 1.0)
    assert actions == (S("b"),)
    assert list(state.children) == ["a", "b"]


def test_add_child_already_started_and_already_present() -> None:
    spec = sup("one_for_one", "a", "b", per_child_intensity=True, max_restarts=0)
    state = booted(spec)
    with pytest.raises(AlreadyStarted):
        decide(spec, state, AddChild(ChildSpec("a")), 1.0)
    state, _ = step(spec, state, ChildExited("b", CRASH), 1.0)
    with pytest.raises(AlreadyPresent) as info:
        decide(spec, state, AddChild(ChildSpec("b")), 1.0)
    assert not isinstance(info.value, AlreadyStarted)


def test_add_child_that_fails_to_start_is_forgotten() -> None:
    spec = sup("one_for_one", "a")
    state = decide(spec, booted(spec), AddChild(ChildSpec("b")), 1.0).state
    outcome = decide(spec, state, StartError("b", "boom"), 1.0)
    assert outcome.actions == (F("b"),)
    assert list(outcome.state.children) == ["a"]


# ---- adopt and release (beamish: sessions that sleep and wake) -----------------------------


def test_release_child_forgets_a_running_child_without_terminating_or_counting() -> None:
    spec = sup("one_for_all", "a", "b", "c", max_restarts=0)
    outcome = decide(spec, booted(spec), ReleaseChild("b"), 1.0)
    assert outcome.actions == (Release("b"),)  # no Terminate, no Forget, no bystander touched
    assert statuses(outcome.state) == {"a": "running", "c": "running"}
    assert outcome.state.log == booted(spec).log  # nothing counted


def test_release_child_refuses_an_unknown_or_not_running_child() -> None:
    spec = sup("one_for_one", "a", "b", per_child_intensity=True, max_restarts=0)
    state = booted(spec)
    with pytest.raises(NotFound):
        decide(spec, state, ReleaseChild("z"), 1.0)
    state, _ = step(spec, state, ChildExited("b", CRASH), 1.0)  # past its intensity: failed
    with pytest.raises(ChildNotRunning):
        decide(spec, state, ReleaseChild("b"), 1.0)
    starting = decide(spec, state, AddChild(ChildSpec("c")), 1.0).state
    with pytest.raises(ChildNotRunning):
        decide(spec, starting, ReleaseChild("c"), 1.0)


def test_adopt_child_joins_the_end_of_the_start_order_running_with_no_start() -> None:
    spec = sup("rest_for_one", "a", "b", "c")
    state = decide(spec, booted(spec), ReleaseChild("a"), 1.0).state
    outcome = decide(spec, state, AdoptChild(ChildSpec("a")), 2.0)
    assert outcome.actions == ()
    assert list(outcome.state.children) == ["b", "c", "a"]
    assert outcome.state.children["a"].status is ChildStatus.RUNNING
    # rest_for_one now counts the adopted child last: a crash of b restarts b, c and a.
    _, actions = step(spec, outcome.state, ChildExited("b", CRASH), 3.0)
    assert actions == (T("a"), T("c"), S("b"), S("c"), S("a"))


def test_an_adopted_child_that_crashes_is_restarted_and_counted_like_any_other() -> None:
    spec = sup("one_for_one", "a", max_restarts=1, max_seconds=10)
    state = decide(spec, booted(spec), AdoptChild(ChildSpec("w")), 1.0).state
    state, actions = step(spec, state, ChildExited("w", CRASH), 2.0)
    assert actions == (S("w"),)
    assert state.children["w"].restarts == 1
    outcome = decide(spec, state, ChildExited("w", CRASH), 3.0)  # the second within 10 s
    assert outcome.actions[-1] == ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON))


def test_adopt_child_is_refused_as_add_child_is() -> None:
    spec = sup("one_for_one", "a")
    with pytest.raises(AlreadyStarted):
        decide(spec, booted(spec), AdoptChild(ChildSpec("a")), 1.0)
    with pytest.raises(NotRunning):
        decide(spec, SupervisorState.initial(spec), AdoptChild(ChildSpec("b")), 1.0)
    pool = SupervisorSpec("pool", Strategy.SIMPLE_ONE_FOR_ONE,
                          template=ChildSpec("worker", restart=RestartType.TRANSIENT))
    with pytest.raises(InvalidSpec):
        decide(pool, booted(pool), AdoptChild(ChildSpec("w1")), 1.0)  # not the template
    adopted = decide(pool, booted(pool), AdoptChild(pool.child_of_template("w1")), 1.0)
    assert statuses(adopted.state) == {"w1": "running"}


def sleep_and_wake(spec: SupervisorSpec, state: SupervisorState, id: str, asleep_at: float,
                   awake_at: float) -> SupervisorState:
    """A session falls asleep (released) and wakes (adopted)."""
    state = decide(spec, state, ReleaseChild(id), asleep_at).state
    return decide(spec, state, AdoptChild(spec.children[0] if spec.children else ChildSpec(id)),
                  awake_at).state


def test_per_child_intensity_counts_across_release_and_adopt() -> None:
    # Sleep is not an exit: a child that crashes on every wake is failed as one that
    # never slept would be (3 restarts in 10 s tolerated, the 4th is one too many).
    spec = sup("one_for_one", "a", per_child_intensity=True, max_restarts=3, max_seconds=10.0)
    state, now = booted(spec), 0.0
    for _ in range(3):
        state, actions = step(spec, state, ChildExited("a", CRASH), now)
        assert actions == (S("a"),)
        state = sleep_and_wake(spec, state, "a", now + 0.5, now + 1.0)
        now += 1.5
    outcome = decide(spec, state, ChildExited("a", CRASH), now)
    assert outcome.actions == (MarkFailed("a"),)
    assert outcome.state.children["a"].status is ChildStatus.FAILED


def test_backoff_keeps_growing_across_release_and_adopt() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(0.1, 100.0)), max_restarts=100,
               max_seconds=1000.0)
    state, delays, now = booted(spec), [], 0.0
    for _ in range(4):
        outcome = decide(spec, state, ChildExited("a", CRASH), now)
        (action,) = outcome.actions
        assert isinstance(action, StartAfter)
        delays.append(action.delay)
        now += action.delay
        state, _ = step(spec, outcome.state, BackoffElapsed("a"), now)
        state = sleep_and_wake(spec, state, "a", now + 0.2, now + 0.4)  # idle, then a message
        now += 0.5
    assert [round(d / 0.1) >= 2 ** i for i, d in enumerate(delays)] == [True] * 4
    assert state.children["a"].attempt == 4


def test_the_time_a_released_child_sleeps_counts_as_running() -> None:
    # Awake, a child that ran longer than the window starts its backoff over; asleep too.
    spec = sup("one_for_one", ChildSpec("a", backoff=(1.0, 8.0)), max_restarts=100, max_seconds=5.0)
    outcome = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    state, _ = step(spec, outcome.state, BackoffElapsed("a"), 1.0)
    state = decide(spec, state, ReleaseChild("a"), 2.0).state
    assert "a" in state.released
    state = decide(spec, state, AdoptChild(ChildSpec("a", backoff=(1.0, 8.0))), 8.5).state
    assert (state.children["a"].attempt, state.children["a"].started_at) == (1, 1.0)
    (action,) = decide(spec, state, ChildExited("a", CRASH), 9.5).actions  # ran 8.5 s: over
    assert isinstance(action, StartAfter) and action.delay < 2.0


@pytest.mark.parametrize(("asleep_at", "kept"), [
    (0.5, True),    # its restart at 0.0 is within max_seconds (5 s)
    (5.0, True),    # exactly max_seconds ago still counts (OTP)
    (5.5, False),   # past the window: nothing of it matters
])
def test_release_keeps_a_history_only_while_it_can_matter(asleep_at: float, kept: bool) -> None:
    spec = sup("one_for_one", "a", per_child_intensity=True, max_seconds=5.0)
    state, _ = step(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    state = decide(spec, state, ReleaseChild("a"), asleep_at).state
    assert ("a" in state.released) is kept


def test_release_of_a_child_with_no_recent_restart_keeps_nothing() -> None:
    spec = sup("one_for_one", "a", per_child_intensity=True, backoff=(0.1, 1.0))
    assert len(decide(spec, booted(spec), ReleaseChild("a"), 1.0).state.released) == 0


def test_adopt_after_the_window_starts_afresh_and_expired_histories_are_dropped() -> None:
    spec = sup("one_for_one", "a", "b", per_child_intensity=True, max_seconds=5.0)
    state, _ = step(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    state, _ = step(spec, state, ChildExited("b", CRASH), 0.0)
    state = decide(spec, state, ReleaseChild("a"), 1.0).state
    state = decide(spec, state, ReleaseChild("b"), 1.0).state
    assert list(state.released) == ["a", "b"]
    state = decide(spec, state, AdoptChild(ChildSpec("b")), 9.0).state  # both expired
    assert len(state.released) == 0
    assert (state.children["b"].log.times, state.children["b"].started_at) == ((), 9.0)


@pytest.mark.parametrize("event", [AddChild(ChildSpec("a")), RemoveChild("a"), Boot()])
def test_add_remove_or_boot_forget_a_released_childs_history(event: Event) -> None:
    # A new child of that id is not the one that slept (remove: it left the tree asleep).
    spec = sup("one_for_one", "a", per_child_intensity=True, max_seconds=5.0)
    state, _ = step(spec, booted(spec), ChildExited("a", CRASH), 0.0)
    state = decide(spec, state, ReleaseChild("a"), 1.0).state
    if isinstance(event, Boot):
        state = decide(spec, state, Halt(), 1.0).state
    outcome = decide(spec, state, event, 2.0)
    assert "a" not in outcome.state.released
    assert outcome.actions == ((S("a"),) if isinstance(event, AddChild) else ())
    with pytest.raises(NotFound):  # once forgotten, the id is unknown again
        decide(spec, decide(spec, state, RemoveChild("a"), 2.0).state, RemoveChild("a"), 2.0)


def test_adoption_error_says_what_adopt_child_would_raise() -> None:
    spec = sup("one_for_one", "a")
    state = booted(spec)
    assert adoption_error(spec, state, ChildSpec("w")) is None
    assert isinstance(adoption_error(spec, state, ChildSpec("a")), AlreadyStarted)
    failed, _ = step(sup("one_for_one", "a", per_child_intensity=True, max_restarts=0),
                     state, ChildExited("a", CRASH), 1.0)
    assert type(adoption_error(spec, failed, ChildSpec("a"))) is AlreadyPresent
    assert isinstance(adoption_error(spec, SupervisorState.initial(spec), ChildSpec("w")),
                      NotRunning)
    assert isinstance(adoption_error(spec, decide(spec, state, Halt(), 1.0).state,
                                     ChildSpec("w")), NotRunning)
    pool = SupervisorSpec("pool", Strategy.SIMPLE_ONE_FOR_ONE,
                          template=ChildSpec("worker", restart=RestartType.TRANSIENT))
    assert isinstance(adoption_error(pool, booted(pool), ChildSpec("w1")), InvalidSpec)
    assert adoption_error(pool, booted(pool), pool.child_of_template("w1")) is None


def test_remove_child_terminates_and_forgets() -> None:
    spec = sup("one_for_all", "a", "b", "c")
    outcome = decide(spec, booted(spec), RemoveChild("b"), 1.0)
    assert outcome.actions == (T("b"), F("b"))  # no bystander restarts: it was asked to
    assert list(outcome.state.children) == ["a", "c"]
    with pytest.raises(NotFound):
        decide(spec, outcome.state, RemoveChild("b"), 1.0)


def test_remove_child_while_the_supervisor_is_down_forgets_it() -> None:
    spec = sup("one_for_one", "a", "b")
    state = decide(spec, booted(spec), Halt(), 1.0).state
    outcome = decide(spec, state, RemoveChild("a"), 1.0)
    assert outcome.actions == (F("a"),)
    assert decide(spec, outcome.state, Boot(), 2.0).actions == (S("b"),)


@pytest.mark.parametrize("event", [AddChild(ChildSpec("z")), RestartChild("a")])
def test_a_down_supervisor_refuses_new_work(event: Event) -> None:
    spec = sup("one_for_one", "a")
    state = decide(spec, booted(spec), Halt(), 1.0).state
    with pytest.raises(NotRunning):
        decide(spec, state, event, 1.0)


def test_restart_child_refuses_running_and_unknown_children() -> None:
    spec = sup("one_for_one", "a")
    state = booted(spec)
    with pytest.raises(Running):
        decide(spec, state, RestartChild("a"), 1.0)
    with pytest.raises(NotFound):
        decide(spec, state, RestartChild("nope"), 1.0)


def test_restart_child_that_fails_to_start_stays_stopped() -> None:
    spec = sup("one_for_one", "a", per_child_intensity=True, max_restarts=0)
    state, _ = step(spec, booted(spec), ChildExited("a", CRASH), 1.0)
    state = decide(spec, state, RestartChild("a"), 2.0).state
    outcome = decide(spec, state, StartError("a", "boom"), 2.0)
    assert outcome.actions == ()
    assert outcome.state.children["a"].status is ChildStatus.STOPPED


def test_simple_one_for_one_adds_children_of_the_template() -> None:
    spec = SupervisorSpec("pool", Strategy.SIMPLE_ONE_FOR_ONE, template=ChildSpec("t", restart=RestartType.TRANSIENT))
    state = decide(spec, SupervisorState.initial(spec), Boot(), 0.0).state
    state, actions = step(spec, state, AddChild(spec.child_of_template("w1")), 0.0)
    assert actions == (S("w1"),)
    with pytest.raises(InvalidSpec):
        decide(spec, state, AddChild(ChildSpec("w2", restart=RestartType.PERMANENT)), 0.0)
    assert decide(spec, state, ChildExited("w1", NORMAL), 1.0).actions == (F("w1"),)


# ---- failed starts: RetryRestart (OTP try_again_restart) --------------------------------


def test_failed_restart_is_retried_through_the_queue() -> None:
    spec = sup("one_for_one", "a")
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 1.0).state
    outcome = decide(spec, state, StartError("a", "boom"), 1.0)
    assert outcome.actions == (Retry("a"),)
    assert outcome.state.children["a"].status is ChildStatus.RESTARTING
    again = decide(spec, outcome.state, RetryRestart("a"), 1.1)
    assert again.actions == (S("a"),)
    assert again.state.log.times == (1.1, 1.0)  # the retry counts toward the intensity


def test_hanging_restart_loop_ends_at_the_intensity() -> None:
    spec = sup("one_for_one", "a", "b")
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).state
    now, outcome = 0.0, None
    for _ in range(10):
        outcome = decide(spec, state, StartError("a", "boom"), now)
        assert outcome.actions == (Retry("a"),)
        now += 0.1
        outcome = decide(spec, outcome.state, RetryRestart("a"), now)
        state = outcome.state
        if not state.running:
            break
    assert outcome is not None
    assert outcome.actions == (T("b"), ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)))
    assert now == pytest.approx(0.3)  # 3 retries tolerated after the first restart


@pytest.mark.parametrize(
    ("strategy", "after_error", "retry"),
    [
        pytest.param("one_for_all", {"a": "running", "b": "restarting", "c": "restarting"},
                     (T("a"), S("a"), S("b"), S("c")), id="test_one_for_all_other_child_fails_restart"),
        pytest.param("rest_for_one", {"a": "running", "b": "restarting", "c": "restarting"},
                     (S("b"), S("c")), id="test_rest_for_one_other_child_fails_restart"),
    ],
)
def test_other_child_fails_restart(strategy: str, after_error: dict[str, str], retry: tuple[object, ...]) -> None:
    spec = sup(strategy, "a", "b", "c")
    outcome = decide(spec, booted(spec), ChildExited("b", CRASH), 1.0)
    state = outcome.state
    if strategy == "one_for_all":
        state = decide(spec, state, ChildStarted("a"), 1.0).state  # a restarted, then b fails
    outcome = decide(spec, state, StartError("b", "boom"), 1.0)
    assert outcome.actions == (Retry("b"),)
    assert statuses(outcome.state) == after_error
    assert decide(spec, outcome.state, RetryRestart("b"), 1.1).actions == retry


# ---- backoff ---------------------------------------------------------------------------------


def test_backoff_delays_grow_and_stay_within_bounds() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(0.1, 2.0)), max_restarts=100, max_seconds=1000.0)
    state, delays, now = booted(spec), [], 0.0
    for _ in range(8):
        outcome = decide(spec, state, ChildExited("a", CRASH), now)
        (action,) = outcome.actions
        assert isinstance(action, StartAfter) and action.id == "a"
        delays.append(action.delay)
        assert outcome.state.children["a"].status is ChildStatus.BACKOFF
        now += action.delay
        state, actions = step(spec, outcome.state, BackoffElapsed("a"), now)
        assert actions == (S("a"),)
    assert delays == sorted(delays)
    assert all(0.1 <= d <= 2.0 for d in delays)
    assert delays[0] < 0.2 and delays[-1] == 2.0


def test_backoff_counts_toward_intensity() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(0.5, 1.0)), "b", max_restarts=2)
    state, now = booted(spec), 0.0
    for _ in range(2):
        outcome = decide(spec, state, ChildExited("a", CRASH), now)
        assert isinstance(outcome.actions[0], StartAfter)
        now += 0.01
        state, _ = step(spec, outcome.state, BackoffElapsed("a"), now)
    outcome = decide(spec, state, ChildExited("a", CRASH), now)
    assert outcome.actions == (T("b"), ShutdownSelf(ExitReason.abnormal(INTENSITY_REASON)))


def test_backoff_resets_after_a_long_enough_run() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(1.0, 8.0)), max_restarts=100, max_seconds=5.0)
    state = booted(spec)
    outcome = decide(spec, state, ChildExited("a", CRASH), 0.0)
    state, _ = step(spec, outcome.state, BackoffElapsed("a"), 2.0)
    assert state.children["a"].attempt == 1
    outcome = decide(spec, state, ChildExited("a", CRASH), 2.5)  # crashed soon: keeps growing
    assert outcome.state.children["a"].attempt == 2
    state, _ = step(spec, outcome.state, BackoffElapsed("a"), 5.0)
    outcome = decide(spec, state, ChildExited("a", CRASH), 5.0 + 8.0)  # ran 8 s: starts over
    (action,) = outcome.actions
    assert isinstance(action, StartAfter) and action.delay < 2.0


def test_backoff_uses_the_supervisor_default() -> None:
    spec = sup("one_for_one", "a", backoff=(0.25, 1.0))
    (action,) = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).actions
    assert isinstance(action, StartAfter) and 0.25 <= action.delay < 0.5


def test_backoff_jitter_comes_from_the_seed() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(1.0, 100.0)))
    delays = {seed: decide(spec, booted(spec, seed), ChildExited("a", CRASH), 0.0).actions for seed in range(5)}
    assert delays[0] == decide(spec, booted(spec, 0), ChildExited("a", CRASH), 0.0).actions
    assert len(set(delays.values())) > 1


def test_backoff_one_for_all_delays_the_whole_group() -> None:
    spec = sup("one_for_all", "a", ChildSpec("b", backoff=(1.0, 1.0)), "c")
    outcome = decide(spec, booted(spec), ChildExited("b", CRASH), 0.0)
    assert outcome.actions == (T("c"), T("a"), StartAfter("b", 1.0))
    assert statuses(outcome.state) == {"a": "backoff", "b": "backoff", "c": "backoff"}
    assert decide(spec, outcome.state, BackoffElapsed("b"), 1.0).actions == (S("a"), S("b"), S("c"))


def test_removing_the_child_whose_backoff_the_group_waits_on_hands_the_timer_on() -> None:
    spec = sup("one_for_all", ChildSpec("a", backoff=(2.0, 2.0)), "b", "c")
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).state
    outcome = decide(spec, state, RemoveChild("a"), 0.5)
    assert outcome.actions == (F("a"), StartAfter("b", 1.5))  # the time that was left
    assert decide(spec, outcome.state, BackoffElapsed("b"), 2.0).actions == (S("b"), S("c"))


def test_backoff_elapsed_for_a_removed_child_is_ignored() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(1.0, 1.0)))
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).state
    outcome = decide(spec, state, RemoveChild("a"), 0.5)
    assert outcome.actions == (F("a"),)  # nothing to terminate while it waits
    assert decide(spec, outcome.state, BackoffElapsed("a"), 1.0).actions == ()


def test_restart_child_during_backoff_is_refused() -> None:
    spec = sup("one_for_one", ChildSpec("a", backoff=(1.0, 1.0)))
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 0.0).state
    with pytest.raises(Running, match="backoff"):
        decide(spec, state, RestartChild("a"), 0.5)


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(0, 0.0, 0.5), (0, 0.99, 0.995), (1, 0.0, 1.0), (3, 0.5, 6.0), (4, 0.0, 8.0), (10, 0.0, 10.0), (10_000, 0.0, 10.0)],
)
def test_backoff_delay(attempt: int, jitter: float, expected: float) -> None:
    assert backoff_delay((0.5, 10.0), attempt, jitter) == pytest.approx(expected)


# ---- stale events and purity -----------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [ChildExited("nope", CRASH), ChildStarted("nope"), StartError("nope"), RetryRestart("a"),
     BackoffElapsed("a"), Escalate("nope", CRASH)],
)
def test_stale_events_change_nothing(event: Event) -> None:
    spec = sup("one_for_one", "a")
    state = booted(spec)
    outcome = decide(spec, state, event, 1.0)
    assert outcome.actions == ()
    assert outcome.state == state


def test_exit_of_a_child_already_restarting_is_ignored() -> None:
    spec = sup("one_for_one", "a")
    state = decide(spec, booted(spec), ChildExited("a", CRASH), 1.0).state
    state = decide(spec, state, StartError("a"), 1.0).state
    assert decide(spec, state, ChildExited("a", CRASH), 1.0).actions == ()


def test_decide_is_pure() -> None:
    spec = sup("one_for_all", "a", "b", "c")
    state = booted(spec)
    snapshot = (state.children, state.log)
    first = decide(spec, state, ChildExited("b", CRASH), 1.0)
    second = decide(spec, state, ChildExited("b", CRASH), 1.0)
    assert first == second
    assert (state.children, state.log) == snapshot


def test_decide_rejects_non_events() -> None:
    spec = sup("one_for_one", "a")
    with pytest.raises(TypeError):
        decide(spec, booted(spec), "crash", 0.0)  # type: ignore[arg-type]
