"""Plain value types of the public API: failures, recovery choices, limits, info, events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from ._validation import check_limit
from ._values import ACCEPTS_MESSAGES as ACCEPTS_MESSAGES
from ._values import HAD_PROCESS as HAD_PROCESS
from ._values import IN_TREE as IN_TREE
from ._values import STARTED_AT_NODE_START as STARTED_AT_NODE_START
from ._values import AgentStatus as AgentStatus
from ._values import Failure as Failure
from ._values import FailureKind as FailureKind
from ._values import InFlight as InFlight
from ._values import LimitsMap as LimitsMap
from ._values import UserData as UserData
from ._values import WireMap as WireMap
from ._values import agent_status as agent_status

# A record field whose metadata holds this key is left out of its wire form when None.
OMIT_NONE = "beamish_omit_none"


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
        for name in ("memory_mb", "handler_timeout", "cpu_seconds"):
            check_limit(name, getattr(self, name))

    def to_dict(self) -> LimitsMap:
        """Return the limits as msgpack-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class AgentInfo:
    """A snapshot of one agent, from `Node.info`.

    Attributes:
        name: the agent's name.
        pid: its current process id, or None when no process runs.
        status: starting | running | sleeping | restarting | backoff | failed | stopped |
            exited.
        restarts: how many times it has been restarted.
        mailbox_depth: messages waiting in its durable mailbox.
        processed: messages it has handled (committed), over its whole life.
        rss_bytes: resident memory of its process (0 if none).
        cpu_seconds: CPU time of its current process.
        last_failure: the last `Failure`, or None.
        supervisor: the supervisor it belongs to.
        cls: its class path.
        node: the cluster node that runs it (a replicated agent's: the owner of its
            shard, None while nobody owns it); None for a node's own agents.
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
    # Left out of the wire form when None (`OMIT_NONE`): a node's own agents' answers stay
    # as they were, and older clients read them.
    node: str | None = field(default=None, metadata={OMIT_NONE: True})

    @classmethod
    def from_wire(cls, data: WireMap) -> AgentInfo:
        """Rebuild the snapshot the node's ``info``/``ps`` commands sent (its fields by name,
        the failure as `Failure.to_dict`)."""
        return cls(**{**data, "last_failure": Failure.from_dict(data.get("last_failure"))})

    def to_wire(self) -> WireMap:
        """Return the snapshot as JSON/msgpack-ready data (``beamish info/ps --json``)."""
        out = {**vars(self),
               "last_failure": self.last_failure.to_dict() if self.last_failure else None}
        if self.node is None:
            del out["node"]
        return out


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
        held: how many sleeping agents the node keeps a handle for, because something
            links to or monitors them (each handle goes once nothing does).
    """

    pid: int
    dir: str
    durability: str
    uptime: float
    strict: bool
    dropped_frames: DroppedFrames
    awake: int = 0
    held: int = 0

    @classmethod
    def from_wire(cls, data: WireMap) -> NodeStatus:
        """Rebuild the status from the node's ``ping`` answer (``dropped`` holds the
        `DroppedFrames` by socket; ``dropped_frames``, their total, is not needed)."""
        return cls(int(data["pid"]), str(data["dir"]), str(data["durability"]),
                   float(data["uptime"]), bool(data["strict"]),
                   DroppedFrames(**data["dropped"]), int(data.get("awake", 0)),
                   int(data.get("held", 0)))


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
    more: NotRequired[int]
    more_by_status: NotRequired[dict[str, int]]


class DeadLetterInfo(TypedDict):
    """One entry of `Node.dead_letters` (a dict, as ``beamish dead-letters --json`` prints
    it, with ``failure`` as a `Failure` here)."""

    seq: int
    kind: str
    msg: Any  # the user's message (its raw bytes when it did not decode)
    failure: Failure | None
    time: float
