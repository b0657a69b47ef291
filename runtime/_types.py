"""Plain value types of the public API: failures, recovery choices, limits, info, events."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from beamish.supervisor import ChildStatus

UserData = dict[str, Any]
"""Data whose shape is the user's own: an agent's spawn args, a message or a state that is a
map. The runtime carries it as it is and never reads a field of it."""

WireMap = dict[str, Any]
"""A record's msgpack (or JSON) form: a map of its fields. Built and read only by that
record's own ``to_dict``/``from_wire`` methods, the one place each record meets its wire form."""

InFlight = dict[str, Any]
"""`Failure.in_flight`: ``{"seq": the mailbox seq, "kind": "call" | "cast" | ...}`` of the
message being handled when an agent failed. A dict because it is public as one (users and
the stored failures read it by key)."""

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


@dataclass(frozen=True)
class Resume:
    """Recovery: go on from ``state`` and retry the in-flight message."""

    state: Any


@dataclass(frozen=True)
class Skip:
    """Recovery: give up on the in-flight message (a call's caller gets `RemoteError`,
    a cast goes to the dead letters), then go on from ``state``."""

    state: Any


@dataclass(frozen=True)
class Reset:
    """Recovery: discard the state, run ``init`` again, then retry the in-flight message."""


@dataclass(frozen=True)
class Stop:
    """Stop the agent with ``reason`` ("normal" and "shutdown" are normal exits).

    Returned from a handler in place of the new state, or from ``recover``: there it first
    gives the in-flight message up as `Skip` does; the restart type then decides whether
    the agent comes back (without running ``recover`` again) to serve the next message.
    """

    reason: str = "normal"
    reply: Any = None  # a call's reply, when a handle_call returns Stop


@dataclass(frozen=True)
class Escalate:
    """Recovery: fail the agent's supervisor, as if its restart intensity were exceeded."""

    reason: str = "escalated"


@dataclass(frozen=True)
class Down:
    """A monitored agent exited (delivered to ``handle_info``)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Exit:
    """A linked agent exited abnormally and this agent traps exits (``handle_info``)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """Per-agent resource limits; exceeding one kills the agent (kind oom/timeout/cpu).

    Each is None (no limit) or a finite number > 0 and at most 1e9; anything else raises
    `ConfigError` here, and again at the node for a spawn that skipped this class.

    Attributes:
        memory_mb: resident memory limit in MiB, or None.
        handler_timeout: seconds one message may take, or None.
        cpu_seconds: total CPU seconds per incarnation, or None.
    """

    memory_mb: float | None = None
    handler_timeout: float | None = None
    cpu_seconds: float | None = None

    def __post_init__(self) -> None:
        """Check every field (raises `ConfigError` naming the field, value and rule)."""
        from ._validation import check_limit
        for name in ("memory_mb", "handler_timeout", "cpu_seconds"):
            check_limit(name, getattr(self, name))

    def to_dict(self) -> dict[str, float | None]:
        """Return the limits as msgpack-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class AgentInfo:
    """A snapshot of one agent, from `Node.info`.

    Attributes:
        name: the agent's name.
        pid: its current process id, or None when no process runs.
        status: starting | running | restarting | backoff | failed | stopped | exited.
        restarts: how many times it has been restarted.
        mailbox_depth: messages waiting in its durable mailbox.
        processed: messages it has handled (committed), over its whole life.
        rss_bytes: resident memory of its process (0 if none).
        cpu_seconds: CPU time of its current process.
        last_failure: the last `Failure`, or None.
        supervisor: the supervisor it belongs to.
        cls: its class path.
    """

    name: str
    pid: int | None
    status: str
    restarts: int
    mailbox_depth: int
    processed: int
    rss_bytes: int
    cpu_seconds: float
    last_failure: Failure | None
    supervisor: str = "root"
    cls: str = ""

    @classmethod
    def from_wire(cls, data: WireMap) -> AgentInfo:
        """Rebuild the snapshot the node's ``info``/``ps`` commands sent (its fields by name,
        the failure as `Failure.to_dict`)."""
        return cls(**{**data, "last_failure": Failure.from_dict(data.get("last_failure"))})

    def to_wire(self) -> WireMap:
        """Return the snapshot as JSON/msgpack-ready data (``beamish info/ps --json``)."""
        return {**vars(self),
                "last_failure": self.last_failure.to_dict() if self.last_failure else None}


@dataclass(frozen=True)
class Event:
    """A supervisor report: something happened to an agent or a supervisor.

    Attributes:
        kind: spawned | exited | restarted | escalated | failed | stopped | dead_lettered | ...
        name: the agent or supervisor concerned.
        supervisor: its supervisor.
        reason: why (an exit reason, a failure description), or "".
        time: wall-clock time (``time.time()``).
    """

    kind: str
    name: str
    supervisor: str
    reason: str
    time: float
    seq: int = field(default=0, compare=False)

    @classmethod
    def from_wire(cls, data: WireMap) -> Event:
        """Rebuild an event the node's ``events`` command sent (its fields by name)."""
        return cls(**data)


@dataclass(frozen=True)
class DroppedFrames:
    """Invalid frames (malformed, oversized, not a known report) dropped and counted, by
    where they arrived. Nothing dropped is ever fatal.

    Attributes:
        control: on the node's control socket (from clients).
        reports: on the node's report socket (from agents).
        ready: ready reports from agents (through the zygote) that were invalid.
        agents: on agents' own sockets (doorbells, reply inboxes), over every process of
            every agent since the node started.
    """

    control: int = 0
    reports: int = 0
    ready: int = 0
    agents: int = 0

    @property
    def total(self) -> int:
        """All of them."""
        return self.control + self.reports + self.ready + self.agents


@dataclass(frozen=True)
class NodeStatus:
    """A running node, from `Node.status` (CLI: ``beamish node status``).

    Attributes:
        pid: the daemon's pid.
        dir: the node dir.
        durability: "process", "fsync" or "memory".
        uptime: seconds since it started.
        strict: whether the root's intensity stops the node.
        dropped_frames: the invalid frames dropped, by socket.
        awake: how many agent processes the node holds now (sleeping agents have none).
    """

    pid: int
    dir: str
    durability: str
    uptime: float
    strict: bool
    dropped_frames: DroppedFrames
    awake: int = 0

    @classmethod
    def from_wire(cls, data: WireMap) -> NodeStatus:
        """Rebuild the status from the node's ``ping`` answer (``dropped`` holds the
        `DroppedFrames` by socket; ``dropped_frames``, their total, is not needed)."""
        return cls(int(data["pid"]), str(data["dir"]), str(data["durability"]),
                   float(data["uptime"]), bool(data["strict"]),
                   DroppedFrames(**data["dropped"]), int(data.get("awake", 0)))


class TreeNode(TypedDict):
    """One node of `Node.tree` (a dict, as ``beamish tree --json`` prints it): a supervisor
    with its strategy, restart counts and children, or an agent with its pid and class."""

    name: str
    kind: Literal["supervisor", "agent"]
    status: str
    restarts: int
    strategy: NotRequired[str]
    child_restarts: NotRequired[int]
    children: NotRequired[list[TreeNode]]
    pid: NotRequired[int | None]
    cls: NotRequired[str]


class DeadLetterInfo(TypedDict):
    """One entry of `Node.dead_letters` (a dict, as ``beamish dead-letters --json`` prints
    it, with ``failure`` as a `Failure` here)."""

    seq: int
    kind: str
    msg: Any  # the user's message (its raw bytes when it did not decode)
    failure: Failure | None
    time: float
