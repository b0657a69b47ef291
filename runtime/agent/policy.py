"""The agent loop's pure decisions: what ``recover``'s answer means, and when a group of
handled messages must be committed.

Pure: no I/O and no clock (the loop passes a group's age in). ``loop.py`` carries the
decisions out: `plan_recover` gives a `RecoverPlan` that ``AgentLoop._recover`` executes
step by step, and `commit_before` / `commit_after` tell the serving loop when to commit
its `loop._Group`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .._types import Escalate, Failure, Reset, Resume, Skip, Stop

# A group of handled messages is committed once it holds this many (see commit_before).
BATCH = 64
# ... or once it is this old, counted from its first handler's start, even mid-batch.
GROUP_WINDOW_S = 0.002


# -- recover -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecoverRaised:
    """``recover`` raised ``exc`` instead of answering (treated as `Reset`)."""

    exc: BaseException


class RecoverExit(enum.Enum):
    """How a process exits after recover chose to end it (the key of its report)."""

    STOP = "stop"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class RecoverPlan:
    """What the loop does with ``recover``'s answer, in this order.

    Attributes:
        complaint: why the answer was not taken as given (a ``recover_failed`` event), or
            None.
        attempted: the failed message's seq, whose failed attempts are on record (the loop
            commits it alone when it handles it again), or None.
        adopt_state: go on from ``state``.
        state: the state ``recover`` returned (when ``adopt_state``).
        reinit: run ``init`` again for a fresh state.
        skip: give this message up (a call's caller gets the error, a cast goes to the
            dead letters) with the state; None: commit the state and keep the message.
        exit: then exit, reporting a stop (the restart type decides what follows) or an
            escalation (it fails the supervisor); None: go on serving.
        reason: the ``Stop`` or ``Escalate`` reason, as recover gave it.
    """

    complaint: str | None = None
    attempted: int | None = None
    adopt_state: bool = False
    state: Any = None
    reinit: bool = False
    skip: int | None = None
    exit: RecoverExit | None = None
    reason: Any = None


def plan_recover(answer: object, failure: Failure, has_state: bool, max_attempts: int,
                 agent: str) -> RecoverPlan:
    """Decide what ``recover``'s answer means.

    Args:
        answer: what ``recover(failure, state)`` returned, or `RecoverRaised`.
        failure: the failure it was called for (its in-flight message and attempt).
        has_state: whether the agent's current state is not None.
        max_attempts: the agent class's cap on attempts at one message.
        agent: the agent's name (for the complaints).

    Returns:
        The plan: `Resume` adopts the state and retries the message, `Skip` adopts it and
        gives the message up, `Reset` (and a raise, and an answer that is none of these)
        runs ``init`` again and retries; a retry of a message already attempted
        ``max_attempts`` times gives it up instead. `Stop` gives the message up and exits,
        `Escalate` keeps it and exits. A `Resume`/`Skip` whose state is None over a
        state that is not keeps the committed state (OTP's bad_return_value), its choice
        standing.
    """
    seq_value = (failure.in_flight or {}).get("seq")
    seq = None if seq_value is None else int(seq_value)
    if isinstance(answer, Stop):
        # The restart itself succeeded; what recover chose is this incarnation's exit (its
        # restart type decides what follows), not a failed start. Stop gives the message
        # up as Skip does, so that the next incarnation serves the next message.
        return RecoverPlan(attempted=seq, skip=seq, exit=RecoverExit.STOP, reason=answer.reason)
    if isinstance(answer, Escalate):
        return RecoverPlan(attempted=seq, exit=RecoverExit.ESCALATE, reason=answer.reason)
    complaint: str | None = None
    adopt = reinit = False
    state: Any = None
    if isinstance(answer, (Resume, Skip)):
        if answer.state is None and has_state:
            complaint = str(bad_return_value(
                "recover", agent, short(answer),
                f"{type(answer).__name__}(state) with the state to go on from"))
        else:
            adopt, state = True, answer.state
    elif isinstance(answer, RecoverRaised):
        complaint = f"{type(answer.exc).__name__}: {answer.exc}"
        reinit = True
    elif isinstance(answer, Reset):
        reinit = True
    else:
        complaint = f"recover returned {answer!r}, not Resume/Skip/Reset/Stop/Escalate"
        reinit = True
    retry = not isinstance(answer, Skip)
    give_up = seq is not None and (not retry or failure.attempt >= max_attempts)
    return RecoverPlan(complaint=complaint, attempted=seq, adopt_state=adopt, state=state,
                       reinit=reinit, skip=seq if give_up else None)


def bad_return_value(handler: str, agent: str, returned: str, expected: str) -> TypeError:
    """The error of a callback that returned what it may not (OTP's bad_return_value)."""
    return TypeError(f"bad_return_value: {handler} of agent {agent!r} returned {returned}, "
                     f"expected {expected}; the committed state is kept")


def short(value: Any) -> str:
    """A short description of a value, for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


# -- group commit ------------------------------------------------------------------------------
class CommitReason(enum.Enum):
    """Why a group of handled messages is committed before the next message's handler."""

    REPLY = "reply"  # it holds a reply: a caller never waits for another message's handler
    RETRIED = "retried"  # the next message failed before: it is committed alone
    FULL = "full"  # it holds BATCH messages
    OLD = "old"  # its first handler began GROUP_WINDOW_S ago or more


def commit_before(size: int, has_reply: bool, age: float, seq: int,
                  attempted: int | None) -> CommitReason | None:
    """Whether (and why) a group must be committed before message ``seq`` is handled.

    Args:
        size: how many handled messages the group holds.
        has_reply: whether it holds a reply to a call.
        age: seconds since its first handler began.
        seq: the next message.
        attempted: the message whose failed attempts are on record, or None.

    Returns:
        The first reason that applies, or None: the message joins the group. Anything
        else that writes (a stop, a crash report, a skip) commits the group
        first, whatever it holds.
    """
    if size == 0:
        return None
    if has_reply:
        return CommitReason.REPLY
    if seq == attempted:
        return CommitReason.RETRIED
    if size >= BATCH:
        return CommitReason.FULL
    if age >= GROUP_WINDOW_S:
        return CommitReason.OLD
    return None


def commit_after(seq: int, attempted: int | None) -> bool:
    """Whether the group must be committed right after message ``seq`` is handled: a
    message that failed before is committed alone, before and after (a hard crash of a
    later message in its group would otherwise run it once more than ``max_attempts``
    allows)."""
    return seq == attempted
