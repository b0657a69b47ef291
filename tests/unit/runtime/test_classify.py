"""classify(): one test per rule of exit classification (node/classify.py).

Pure: the evidence is built by hand, as the spawner gathers it from the zygote's waitpid,
LMDB and the in-flight marker; nothing runs or sleeps.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from beamish.runtime import Failure, Limits
from beamish.runtime.agent.inflight import Unfinished
from beamish.runtime.node.classify import Classification, ExitEvidence, classify
from beamish.runtime.store.records import FailureReport
from beamish.supervisor import ExitReason

INC = 3
KILLED = -signal.SIGKILL
FULL = ", most likely because the filesystem holding '/s' is full (0 KiB free of 64 KiB)"


def evidence(code: int = KILLED, **kwargs: Any) -> ExitEvidence:
    return ExitEvidence(code=code, incarnation=INC, **kwargs)


def report(**fields: Any) -> FailureReport:
    """An agent's failure report of this incarnation (as the spawner reads it from LMDB)."""
    return FailureReport.from_wire({"inc": INC, **fields})


def crash(exc_type: str = "ValueError", in_flight: dict[str, Any] | None = None,
          kind: str = "exception", message: str = "boom") -> dict[str, Any]:
    """A report's failure, as the agent writes it."""
    return Failure(kind=kind, exc_type=exc_type, message=message,  # type: ignore[arg-type]
                   traceback="Traceback ...", in_flight=in_flight).to_dict()


def abnormal(failure: Failure, charge: int | None = None,
             also: tuple[int, ...] = ()) -> Classification:
    return Classification(
        ExitReason.abnormal(f"{failure.kind}: {failure.exc_type or failure.message}"),
        failure, charge=charge, also_charge=also)


# ---- exits the node asked for --------------------------------------------------------


@pytest.mark.parametrize(("asked", "reason"), [
    ("normal", ExitReason.normal("normal")),
    ("shutdown", ExitReason.shutdown("shutdown")),
    ("removed", ExitReason.shutdown("removed")),
])
def test_an_exit_the_node_asked_for_is_normal_or_shutdown_whatever_else_happened(
        asked: str, reason: ExitReason) -> None:
    ev = evidence(KILLED, terminating=asked, report=report(failure=crash()),
                  unfinished=Unfinished(7), kinds={7: "cast"}, limit_kill="oom")
    assert classify(ev) == Classification(reason)


def test_a_report_of_another_incarnation_is_ignored() -> None:
    stale = FailureReport.from_wire({"inc": INC - 1, "stop": "normal"})
    assert classify(evidence(1, report=stale)) == abnormal(
        Failure(kind="exit", message="exited with code 1", exit_code=1))


# ---- what the agent reported -----------------------------------------------------------


def test_escalate_from_recover_escalates_without_a_failure() -> None:
    ev = evidence(0, report=report(phase="recover", escalate="db gone"))
    assert classify(ev) == Classification(ExitReason.abnormal("escalate: db gone"),
                                          escalate="db gone")


@pytest.mark.parametrize(("why", "reason"), [
    ("normal", ExitReason.normal("normal")),
    ("shutdown", ExitReason.shutdown("shutdown")),
])
def test_stop_normal_or_shutdown_is_a_normal_exit(why: str, reason: ExitReason) -> None:
    for phase in ("handle", "recover", "stop"):
        assert classify(evidence(0, report=report(phase=phase, stop=why))) == \
            Classification(reason)


def test_stop_chosen_by_recover_is_abnormal_without_a_failure_to_recover_from() -> None:
    ev = evidence(0, report=report(phase="recover", stop="gave up"))
    assert classify(ev) == Classification(ExitReason.abnormal("gave up"))


def test_stop_from_a_handler_is_an_exit_failure() -> None:
    ev = evidence(0, report=report(phase="stop", stop="done"))
    assert classify(ev) == Classification(
        ExitReason.abnormal("done"), Failure(kind="exit", message="stopped: done", exit_code=0))


def test_an_exception_report_is_the_failure_and_charges_its_message() -> None:
    in_flight = {"seq": 12, "kind": "call"}
    ev = evidence(0, report=report(phase="handle", failure=crash(in_flight=in_flight)),
                  unfinished=Unfinished(12, 10, 11), kinds={10: "cast", 11: "cast", 12: "call"})
    expected = Failure.from_dict(crash(in_flight=in_flight))
    assert expected is not None
    # The group's other messages are not charged: the agent's report names its message.
    assert classify(ev) == abnormal(expected, charge=12)


def test_an_exception_report_without_a_message_charges_nothing() -> None:
    ev = evidence(0, report=report(phase="init", failure=crash()),
                  unfinished=Unfinished(5), kinds={5: "cast"})
    expected = Failure.from_dict(crash())
    assert expected is not None
    assert classify(ev) == abnormal(expected)


def test_the_reported_attempt_is_not_the_failures_attempt() -> None:
    # The attempt count lives in the store: the spawner sets it from the charge.
    failure = {**crash(in_flight={"seq": 4, "kind": "cast"}), "attempt": 9}
    verdict = classify(evidence(0, report=report(failure=failure)))
    assert verdict.failure is not None and verdict.failure.attempt == 0
    assert verdict.charge == 4


def test_memory_error_under_a_memory_limit_is_oom() -> None:
    ev = evidence(0, report=report(failure=crash("MemoryError")), limits=Limits(memory_mb=64))
    verdict = classify(ev)
    assert verdict.failure is not None and verdict.failure.kind == "oom"
    assert verdict.reason == ExitReason.abnormal("oom: MemoryError")
    # Without a memory limit it is the exception it was.
    verdict = classify(evidence(0, report=report(failure=crash("MemoryError"))))
    assert verdict.failure is not None and verdict.failure.kind == "exception"


def test_closed_stdio_is_the_exit_failure_the_agent_reported() -> None:
    closed = crash(kind="exit", exc_type="", message="the agent closed or replaced its "
                   "standard streams (fd 0-2); restarted")
    ev = evidence(0, report=report(phase="handle", failure=closed),
                  unfinished=Unfinished(None, 3, 4), kinds={3: "cast", 4: "cast"})
    expected = Failure.from_dict(closed)
    assert expected is not None
    assert classify(ev) == abnormal(expected)  # a report: the marker blames nothing


# ---- what the node knows: it killed the process, or the zygote died -----------------------


def test_a_kill_for_a_linked_agent_is_killed_with_the_links_reason() -> None:
    why = "linked agent 'a' exited: exception: ValueError"
    assert classify(evidence(KILLED, link_kill=why)) == abnormal(
        Failure(kind="killed", message=why, signal=signal.SIGKILL))


@pytest.mark.parametrize("limit", ["oom", "timeout", "cpu"])
def test_a_kill_past_a_limit_is_that_limits_kind(limit: Any) -> None:
    assert classify(evidence(KILLED, limit_kill=limit)) == abnormal(
        Failure(kind=limit, message=f"exceeded its {limit} limit", signal=signal.SIGKILL))


def test_a_death_with_the_zygote_is_killed() -> None:
    assert classify(evidence(KILLED, zygote_lost="killed by SIGKILL")) == abnormal(
        Failure(kind="killed", message="killed with the zygote, which died (killed by "
                "SIGKILL)", signal=signal.SIGKILL))


def test_sigxcpu_under_a_cpu_limit_is_cpu() -> None:
    ev = evidence(-signal.SIGXCPU, limits=Limits(cpu_seconds=1.5))
    assert classify(ev) == abnormal(Failure(
        kind="cpu", message="used its 1.5 CPU seconds (RLIMIT_CPU)", signal=signal.SIGXCPU))
    # Without a CPU limit, SIGXCPU is a signal like any other.
    verdict = classify(evidence(-signal.SIGXCPU))
    assert verdict.failure is not None and verdict.failure.kind == "signal"


def test_sigkill_is_killed() -> None:
    assert classify(evidence(KILLED)) == abnormal(
        Failure(kind="killed", message="killed by SIGKILL", signal=signal.SIGKILL))


def test_another_signal_is_signal_and_only_sigbus_blames_a_full_disk() -> None:
    assert classify(evidence(-signal.SIGSEGV, disk_full=FULL)) == abnormal(
        Failure(kind="signal", message="killed by SIGSEGV", signal=signal.SIGSEGV))
    assert classify(evidence(-signal.SIGBUS, disk_full=FULL)) == abnormal(
        Failure(kind="signal", message=f"killed by SIGBUS{FULL}", signal=signal.SIGBUS))


def test_an_exit_code_is_exit_and_says_when_the_disk_is_full() -> None:
    assert classify(evidence(3)) == abnormal(
        Failure(kind="exit", message="exited with code 3", exit_code=3))
    assert classify(evidence(1, disk_full=FULL)) == abnormal(
        Failure(kind="exit", message=f"exited with code 1{FULL}", exit_code=1))


@pytest.mark.parametrize(("first", "second", "kind"), [
    ({"report": report(failure=crash())}, {"link_kill": "linked"}, "exception"),
    ({"link_kill": "linked"}, {"limit_kill": "oom"}, "killed"),
    ({"limit_kill": "timeout"}, {"zygote_lost": "gone"}, "timeout"),
    ({"zygote_lost": "gone"}, {"limits": Limits(cpu_seconds=1.0)}, "killed"),
])
def test_the_first_matching_rule_wins(first: dict[str, Any], second: dict[str, Any],
                                      kind: str) -> None:
    verdict = classify(evidence(-signal.SIGXCPU, **first, **second))
    assert verdict.failure is not None and verdict.failure.kind == kind


# ---- which messages a death without a word is charged to -----------------------------------


def test_a_death_while_handling_charges_that_message_and_its_uncommitted_group() -> None:
    ev = evidence(KILLED, unfinished=Unfinished(9, 5, 8),
                  kinds={5: "cast", 6: "cast", 8: "cast", 9: "call"})
    assert classify(ev) == abnormal(
        Failure(kind="killed", message="killed by SIGKILL", signal=signal.SIGKILL,
                in_flight={"seq": 9, "kind": "call"}), charge=9, also=(5, 6, 8))


def test_a_death_after_the_handler_returned_charges_the_last_uncommitted_message() -> None:
    ev = evidence(-signal.SIGSEGV, unfinished=Unfinished(None, 5, 7),
                  kinds={5: "cast", 6: "cast", 7: "call"})
    assert classify(ev) == abnormal(
        Failure(kind="signal", message="killed by SIGSEGV", signal=signal.SIGSEGV,
                in_flight={"seq": 7, "kind": "call"}), charge=7, also=(5, 6))


def test_a_death_while_idle_charges_nothing() -> None:
    assert classify(evidence(KILLED, unfinished=Unfinished())).charge is None
    verdict = classify(evidence(KILLED, unfinished=Unfinished(None, 5, 7)))  # committed
    assert (verdict.charge, verdict.also_charge) == (None, ())
    assert verdict.failure is not None and verdict.failure.in_flight is None


def test_a_handled_message_no_longer_in_the_mailbox_is_not_charged() -> None:
    # Marked as being handled, but its removal was committed (a Skip, a refusal).
    ev = evidence(KILLED, unfinished=Unfinished(9, 5, 6), kinds={5: "cast", 6: "cast"})
    verdict = classify(ev)
    assert (verdict.charge, verdict.also_charge) == (None, (5, 6))
    assert verdict.failure is not None and verdict.failure.in_flight is None


def test_a_limit_kill_while_handling_charges_that_message() -> None:
    ev = evidence(KILLED, limit_kill="timeout", unfinished=Unfinished(4), kinds={4: "call"})
    assert classify(ev) == abnormal(
        Failure(kind="timeout", message="exceeded its timeout limit", signal=signal.SIGKILL,
                in_flight={"seq": 4, "kind": "call"}), charge=4)
