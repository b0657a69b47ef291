"""Exit classification: what an agent's process exit means, from the evidence alone.

Pure: `classify` does no I/O. The spawner (``spawner.py``, ``AgentSpawner._classify``) is
its shell: it gathers the `ExitEvidence` (the exit code from the zygote's ``waitpid``, the
agent's failure report popped from LMDB, the in-flight marker, which of the marked
messages are still in the mailbox, why the node itself killed the process), calls
`classify`, then charges the attempts the `Classification` names and records the result.

Death is judged from the OS, never from the agent's word: the report only adds detail
(the exception, a ``Stop`` reason, an escalation), and only a report of the same
incarnation counts. The rules, first match wins:

    the node was stopping it (terminating)      normal/shutdown, no failure
    report: escalate (from recover)             abnormal "escalate: why", escalate
    report: stop normal / shutdown              normal / shutdown, no failure
    report: stop from recover                   abnormal, no failure (recover dealt with it)
    report: stop from a handler                 abnormal, failure "exit" ("stopped: why")
    report: failure                             that failure (MemoryError under a memory
                                                limit is kind "oom")
    killed by the node for a link               "killed", the link's reason
    killed by the node past a limit             "oom" / "timeout" / "cpu"
    killed with the zygote                      "killed"
    SIGXCPU under a CPU limit                   "cpu"
    any other signal                            "killed" (SIGKILL) or "signal"; SIGBUS says
                                                when the store's filesystem is full
    an exit code                                "exit", saying when the filesystem is full

A failure without a word from the agent (no report) is charged to the message the
marker blames (`blame`): the one being handled, or the last one whose handler returned
before the group commit; the rest of that uncommitted group is charged an attempt too.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from beamish.supervisor import ExitReason

from .._types import Failure, Limits
from ..agent.inflight import Unfinished, blame
from ..store.records import FailureReport

LimitKind = Literal["oom", "timeout", "cpu"]


@dataclass(frozen=True, slots=True)
class ExitEvidence:
    """Everything known about one process exit, gathered by the spawner before deciding.

    Attributes:
        code: the Popen-style exit code (``-signum`` when signalled).
        incarnation: the exited process's incarnation (a report of another is ignored).
        report: the agent's failure report from LMDB, or None if it died without a word.
        terminating: the stop reason the node asked for, when it was stopping it.
        unfinished: what the in-flight marker says it had begun and not committed.
        kinds: ``{seq: kind}`` of those marked messages still in the mailbox.
        link_kill: why the node killed it for a linked agent's exit, or None.
        limit_kill: the limit the node killed it for, or None.
        zygote_lost: how the zygote it died with ended, or None.
        limits: its resource limits.
        disk_full: ``", most likely because ..."`` when the store's filesystem is full,
            else "" (the spawner asks the filesystem only for an exit code or a SIGBUS,
            the exits a full disk shows as).
    """

    code: int
    incarnation: int
    report: FailureReport | None = None
    terminating: str | None = None
    unfinished: Unfinished = field(default_factory=Unfinished)
    kinds: Mapping[int, str] = field(default_factory=dict)
    link_kill: str | None = None
    limit_kill: LimitKind | None = None
    zygote_lost: str | None = None
    limits: Limits = field(default_factory=Limits)
    disk_full: str = ""


@dataclass(frozen=True, slots=True)
class Classification:
    """What an exit means, and what the spawner must do about it.

    Attributes:
        reason: the exit reason its supervisor gets.
        failure: the classified failure of an abnormal exit (None for an exit that needs
            no ``recover``); its ``attempt`` is 0 until the spawner charges ``charge``.
        escalate: the reason ``recover`` escalated with, or None.
        charge: the message whose attempt count rises; the new count is the failure's
            ``attempt``. None: no message is charged.
        also_charge: the other uncommitted messages of its group, each charged once.
    """

    reason: ExitReason
    failure: Failure | None = None
    escalate: str | None = None
    charge: int | None = None
    also_charge: tuple[int, ...] = ()


def classify(ev: ExitEvidence) -> Classification:
    """Classify one process exit from its evidence (the rules are in the module doc)."""
    report = ev.report if ev.report is not None and ev.report.inc == ev.incarnation else None
    if ev.terminating is not None:
        why = ev.terminating
        return Classification(ExitReason.normal(why) if why == "normal"
                              else ExitReason.shutdown(why))
    if report is not None and report.escalate:
        why = report.escalate
        return Classification(ExitReason.abnormal(f"escalate: {why}"), escalate=why)
    if report is not None and report.stop is not None:
        return _stopped(report.stop, report.phase, ev.code)
    failure = _failure(ev, report)
    in_flight = failure.in_flight
    also: tuple[int, ...] = ()
    if in_flight is None and report is None:
        # Died without a word (signal, os._exit, limit) while handling a message, or
        # after handlers returned and before their commit: each was an attempt.
        blamed, also = blame(ev.unfinished, set(ev.kinds))
        if blamed is not None:
            in_flight = {"seq": blamed, "kind": ev.kinds[blamed]}
    failure = Failure(**{**failure.to_dict(), "in_flight": in_flight, "attempt": 0})
    return Classification(
        ExitReason.abnormal(f"{failure.kind}: {failure.exc_type or failure.message}"),
        failure, charge=None if in_flight is None else int(in_flight["seq"]),
        also_charge=also)


def _stopped(why: str, phase: str, code: int) -> Classification:
    """An exit the agent reported as a ``Stop(why)``, returned by a handler or recover."""
    if why == "normal":
        return Classification(ExitReason.normal(why))
    if why == "shutdown":
        return Classification(ExitReason.shutdown(why))
    if phase == "recover":
        # recover chose this stop and gave the failed message up: a restart after it has
        # nothing to recover from (no failure, so no recover, and the last failure shown
        # stays the one recover dealt with).
        return Classification(ExitReason.abnormal(why))
    return Classification(ExitReason.abnormal(why),
                          Failure(kind="exit", message=f"stopped: {why}", exit_code=code))


def _failure(ev: ExitEvidence, report: FailureReport | None) -> Failure:
    """The failure of an abnormal exit that was no reported stop or escalation."""
    code = ev.code
    sig = -code if code < 0 else None
    if report is not None and report.failure is not None:
        failure = report.failure
        if failure.exc_type == "MemoryError" and ev.limits.memory_mb is not None:
            # The RLIMIT_DATA backstop made an allocation fail: that is its memory limit.
            failure = Failure(**{**failure.to_dict(), "kind": "oom"})
        return failure
    if ev.link_kill is not None:
        return Failure(kind="killed", message=ev.link_kill, signal=sig)
    if ev.limit_kill is not None:
        return Failure(kind=ev.limit_kill, message=f"exceeded its {ev.limit_kill} limit",
                       signal=sig)
    if ev.zygote_lost is not None:
        return Failure(kind="killed", signal=sig,
                       message=f"killed with the zygote, which died ({ev.zygote_lost})")
    if sig is not None and sig == signal.SIGXCPU and ev.limits.cpu_seconds is not None:
        return Failure(kind="cpu", message=f"used its {ev.limits.cpu_seconds:g} CPU "
                       "seconds (RLIMIT_CPU)", signal=sig)
    if sig is not None:
        full = ev.disk_full if sig == signal.SIGBUS else ""
        return Failure(kind="killed" if sig == signal.SIGKILL else "signal",
                       message=f"killed by {signal.Signals(sig).name}{full}", signal=sig)
    return Failure(kind="exit", message=f"exited with code {code}{ev.disk_full}",
                   exit_code=code)
