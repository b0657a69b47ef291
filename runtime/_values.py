"""The ground's lowest values, the ones `errors.py` needs: the aliases of open data,
`AgentStatus` and `Failure`. Nothing here imports the rest of the runtime, so errors.py can
import it without a cycle (``_types.py`` -> ``_validation.py`` -> ``errors.py`` -> here).
``_types.py`` re-exports them with the other public records.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Literal

from beamish.supervisor import ChildStatus

UserData = dict[str, Any]
"""Data whose shape is the user's own: an agent's spawn args, a message or a state that is a
map. The runtime carries it as it is and never reads a field of it."""

WireMap = dict[str, Any]
"""A record's msgpack (or JSON) form: a map of its fields, open because each record has its
own. Built and read by that record's own methods (``to_wire``/``to_dict``, ``from_wire``),
the one place each record meets its wire form; other code only carries it (a boot record
goes node -> zygote -> child as one, the zygote adding its ``ready_fd``). One is still
built outside its record: the node's answer to a command (``node/daemon.py``
``value_answer``, ``error_answer``; read by ``messaging/control.py`` ``Answer.from_wire``)."""

InFlight = dict[str, Any]
"""`Failure.in_flight`: ``{"seq": the mailbox seq, "kind": "call" | "cast" | ...}`` of the
message being handled when an agent failed. A dict because it is public as one (users and
the stored failures read it by key)."""

LimitsMap = dict[str, float | None]
"""`Limits` as the map of its fields (``Limits.to_dict()``; an unset one is None or absent):
the form agent and boot records hold them in, as beamish has always stored them. A stored one
is checked (``check_limits``) before use: an older beamish may have written bad values."""

FailureKind = Literal["exception", "exit", "signal", "oom", "timeout", "cpu", "killed"]


class AgentStatus(enum.StrEnum):
    """Where an agent is in its life, as the node's registry records it. The values are
    the words users see (``beamish ps``, `AgentInfo.status`, JSON) and the stored form."""

    STARTING = "starting"
    """A process is being started (spawn, restart, node start) and is not ready yet."""
    RUNNING = "running"
    """Its process ran ``init``/``recover`` and serves messages."""
    RESTARTING = "restarting"
    """Its process exited; its supervisor is about to start it again."""
    BACKOFF = "backoff"
    """Its supervisor waits out a restart delay before starting it again."""
    FAILED = "failed"
    """Its supervisor gave up on it (intensity, escalation, a start that failed at node
    start); still in the tree until ``beamish restart`` or ``stop``."""
    STOPPED = "stopped"
    """Stopped by hand (``beamish stop``); out of the tree, state and mailbox kept."""
    EXITED = "exited"
    """Left the tree by itself (temporary, or transient after a normal exit)."""
    SLEEPING = "sleeping"
    """In the tree without a process (``node.sleep``, ``idle_timeout``, ``max_awake``, or a
    ``lazy`` spawn): its state and mailbox wait in the store; its next message or timer
    wakes it (the node starts its process again, without ``init`` or ``recover``)."""


ACCEPTS_MESSAGES: frozenset[AgentStatus] = frozenset({
    AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.RESTARTING, AgentStatus.BACKOFF,
    AgentStatus.SLEEPING})
"""It runs, or its supervisor starts it again by itself, or it sleeps (the append that
finds it sleeping also marks it to be woken): a message sent now is appended and handled.
A node start starts again those of `STARTED_AT_NODE_START`."""

STARTED_AT_NODE_START: frozenset[AgentStatus] = frozenset({
    AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.RESTARTING, AgentStatus.BACKOFF})
"""What a node start starts again: the live agents that are not asleep (a sleeping one
stays asleep unless a wake is pending for it)."""

IN_TREE: frozenset[AgentStatus] = ACCEPTS_MESSAGES | {AgentStatus.FAILED}
"""Still a child of its supervisor (a failed one too, until restarted or stopped by
hand; a sleeping one, though its supervisor's shell holds it only while it is awake):
its name is taken, and stopping it takes it out of the tree."""

HAD_PROCESS: frozenset[AgentStatus] = frozenset({AgentStatus.RUNNING, AgentStatus.RESTARTING})
"""It ran (or is between two processes): one that leaves the tree now has exited. Not a
sleeping one: no supervisor holds it, so none reports it removed."""

_OF_CHILD: dict[ChildStatus, AgentStatus] = {
    ChildStatus.STARTING: AgentStatus.STARTING,
    ChildStatus.RUNNING: AgentStatus.RUNNING,
    ChildStatus.RESTARTING: AgentStatus.RESTARTING,
    ChildStatus.BACKOFF: AgentStatus.BACKOFF,
    ChildStatus.FAILED: AgentStatus.FAILED,
    ChildStatus.STOPPED: AgentStatus.STOPPED,
}


def agent_status(child: ChildStatus) -> AgentStatus:
    """The agent status that a supervisor's view of its child (`ChildStatus`) stands for:
    the one place the two vocabularies meet (they share their words; ``exited`` is the
    registry's own: the supervisor has forgotten such a child)."""
    return _OF_CHILD[child]


@dataclass(frozen=True)
class Failure:
    """Why an agent's process ended abnormally, as the node classified it.

    Attributes:
        kind: exception | exit | signal | oom | timeout | cpu | killed.
        exc_type: the exception's class name (kind "exception"), else "".
        message: a human-readable description.
        traceback: the remote traceback text, or "".
        exit_code: the process exit code, if it exited.
        signal: the signal number, if it was signalled.
        in_flight: the message being handled when it failed (``{"seq", "kind"}``), or None.
        attempt: how many times that message has now been attempted.
    """

    kind: FailureKind
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    exit_code: int | None = None
    signal: int | None = None
    in_flight: InFlight | None = None
    attempt: int = 0

    def to_dict(self) -> WireMap:
        """Return the failure as msgpack-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: WireMap | None) -> Failure | None:
        """Rebuild a failure from `to_dict` output (None stays None)."""
        if not data:
            return None
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})
