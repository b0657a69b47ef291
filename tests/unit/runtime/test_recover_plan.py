"""plan_recover(): one test per rule of what recover's answer means (agent/policy.py).

Pure: the answer and the failure are built by hand; the loop (agent/loop.py
``AgentLoop._recover``) executes the plan.
"""

from __future__ import annotations

from typing import Any

import pytest

from beamish.runtime import Escalate, Failure, Reset, Resume, Skip, Stop
from beamish.runtime.agent.policy import RecoverExit, RecoverPlan, RecoverRaised, plan_recover

SEQ = 7
CAP = 3


def failed(attempt: int = 1, seq: int | None = SEQ) -> Failure:
    in_flight = None if seq is None else {"seq": seq, "kind": "cast"}
    return Failure(kind="exception", exc_type="ValueError", message="boom",
                   in_flight=in_flight, attempt=attempt)


def plan(answer: Any, failure: Failure | None = None, has_state: bool = True) -> RecoverPlan:
    return plan_recover(answer, failure or failed(), has_state, CAP, "a")


# ---- Resume and Skip ---------------------------------------------------------------------


def test_resume_adopts_the_state_and_retries_the_message() -> None:
    assert plan(Resume({"n": 1})) == RecoverPlan(attempted=SEQ, adopt_state=True,
                                                 state={"n": 1})


def test_skip_adopts_the_state_and_gives_the_message_up() -> None:
    assert plan(Skip({"n": 1})) == RecoverPlan(attempted=SEQ, adopt_state=True,
                                               state={"n": 1}, skip=SEQ)


@pytest.mark.parametrize("answer", [Resume({"n": 1}), Skip({"n": 1})])
def test_resume_or_skip_without_a_message_only_adopts_the_state(answer: Any) -> None:
    assert plan(answer, failed(seq=None)) == RecoverPlan(adopt_state=True, state={"n": 1})


@pytest.mark.parametrize("answer", [Resume(None), Skip(None)])
def test_a_none_state_over_a_state_is_bad_return_value_and_the_state_is_kept(
        answer: Any) -> None:
    name = type(answer).__name__
    got = plan(answer)
    assert got.complaint == (
        f"bad_return_value: recover of agent 'a' returned {name}(state=None), expected "
        f"{name}(state) with the state to go on from; the committed state is kept")
    assert not got.adopt_state and not got.reinit
    # Its choice stands: Skip still gives the message up, Resume retries it.
    assert got.skip == (SEQ if isinstance(answer, Skip) else None)


def test_a_none_state_when_the_state_is_none_is_adopted() -> None:
    assert plan(Resume(None), has_state=False) == RecoverPlan(attempted=SEQ, adopt_state=True)


# ---- Reset, a raise, a bad value --------------------------------------------------------


def test_reset_runs_init_again_and_retries_the_message() -> None:
    assert plan(Reset()) == RecoverPlan(attempted=SEQ, reinit=True)


def test_a_raising_recover_is_reset_with_a_complaint() -> None:
    assert plan(RecoverRaised(KeyError("k"))) == RecoverPlan(
        complaint="KeyError: 'k'", attempted=SEQ, reinit=True)


@pytest.mark.parametrize("answer", [None, {"n": 1}, "resume", Resume])
def test_an_answer_that_is_no_choice_is_reset_with_a_complaint(answer: Any) -> None:
    assert plan(answer) == RecoverPlan(
        complaint=f"recover returned {answer!r}, not Resume/Skip/Reset/Stop/Escalate",
        attempted=SEQ, reinit=True)


# ---- the max_attempts cap ---------------------------------------------------------------


@pytest.mark.parametrize("answer", [Resume({"n": 1}), Reset(), RecoverRaised(ValueError()),
                                    "bad"])
def test_a_retry_past_max_attempts_gives_the_message_up(answer: Any) -> None:
    assert plan(answer, failed(attempt=CAP - 1)).skip is None
    assert plan(answer, failed(attempt=CAP)).skip == SEQ
    assert plan(answer, failed(attempt=CAP + 1)).skip == SEQ


# ---- Stop and Escalate: the process exits ------------------------------------------------


def test_stop_gives_the_message_up_and_exits() -> None:
    assert plan(Stop("done")) == RecoverPlan(attempted=SEQ, skip=SEQ, exit=RecoverExit.STOP,
                                             reason="done")


def test_stop_without_a_message_commits_the_state_and_exits() -> None:
    assert plan(Stop("done"), failed(seq=None)) == RecoverPlan(exit=RecoverExit.STOP,
                                                               reason="done")


def test_escalate_keeps_the_message_and_exits() -> None:
    # Not even past max_attempts is it given up: the supervisor fails instead.
    assert plan(Escalate("db gone"), failed(attempt=CAP)) == RecoverPlan(
        attempted=SEQ, exit=RecoverExit.ESCALATE, reason="db gone")


def test_stop_and_escalate_never_adopt_a_state_or_run_init() -> None:
    for answer in (Stop(), Escalate()):
        got = plan(answer)
        assert not got.adopt_state and not got.reinit and got.complaint is None


def test_the_exit_reason_is_kept_as_recover_gave_it() -> None:
    stop, escalate = plan(Stop(None)), plan(Escalate(None))  # type: ignore[arg-type]
    assert (stop.exit, stop.reason) == (RecoverExit.STOP, None)
    assert (escalate.exit, escalate.reason) == (RecoverExit.ESCALATE, None)
